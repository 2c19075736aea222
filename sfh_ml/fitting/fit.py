"""One pPXF full-spectrum fit (Cappellari 2017, 2023) with the generator's own physics.

What pPXF is given, so that the comparison with the network is fair:

* templates of the same SSP library at the MUSE resolution, per unit mass formed, with the nebular
  continuum on the young ones (:mod:`sfh_ml.fitting.templates`);
* the generator's dust law through pPXF's ``dust=`` keyword: a Charlot & Fall (2000) ISM screen
  on every template and a birth-cloud screen on the templates younger than 10 Myr, the same
  power law (:func:`sfh_ml.synthesis.dust.attenuation_curve`), each V-band optical depth fitted in
  [0, :data:`TAU_V_MAX`];
* no additive or multiplicative polynomials (the synthetic spectra have a perfect flux
  calibration and the dust law is exact, so polynomials could only absorb age and [M/H]);
* the per-pixel noise of the file, the emission lines masked (:mod:`sfh_ml.fitting.lines`);
* velocity and stellar dispersion fitted (``moments=2``);
* optionally the five HST fluxes with their errors (``phot=``);
* second-order regularisation of the (age, [M/H]) weights (``regul``, ``reg_ord=2``) or none.
"""

import time

import numpy as np
from ppxf.ppxf import ppxf

from ..synthesis.dust import attenuation_curve
from .templates import log_rebin_spectra

__all__ = ["DEFAULT_REGUL", "TAU_V_MAX", "SIGMA_START_KMS", "cf00_screen", "fit_spectrum"]

# Regularisation of the mass weights (templates and galaxy normalised by their medians; Delta = 1 /
# regul is the allowed second difference of neighbouring weights), chosen with the criterion of the
# pPXF examples (Press et al. 1992): the largest regul whose chi2 exceeds the unregularised one (noise
# rescaled to chi2 / N = 1) by at most sqrt(2 N_good). PROVISIONAL: measured on one object at S/N 50
# so far (regul 3 of the grid 1, 3, 10, ...; `python benchmarks/ppxf_fit.py --choose-regul 8` repeats it).
DEFAULT_REGUL = 3.0
TAU_V_MAX = 5.0  # upper bound of both fitted V-band optical depths (the generator draws <= 2)
TAU_V_START = 0.3
SIGMA_START_KMS = 200.0  # starting stellar dispersion (the generator draws 150-350 km/s)


def cf00_screen(lam_aa, tau_v):
    """Transmission exp(-tau_V (lambda / 5500 A)^-0.7) of a CF00 screen, for pPXF's ``dust["func"]``.

    Parameters
    ----------
    lam_aa : ndarray, any shape
        Rest-frame wavelengths, Angstrom (pPXF passes (n_pix,) and (n_band, n_templates)).
    tau_v : float
        V-band optical depth.

    Returns
    -------
    ndarray, shape of ``lam_aa``
    """
    lam_aa = np.asarray(lam_aa, dtype=float)
    return np.exp(-tau_v * attenuation_curve(lam_aa.ravel())).reshape(lam_aa.shape)


def _checked(spectrum, noise, n_wave, what="spectrum"):
    spectrum = np.asarray(spectrum, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    if spectrum.shape != (n_wave,):
        raise ValueError(
            f"{what} has shape {spectrum.shape}; the templates were built for a grid of {n_wave} pixels "
            f"(wrong wavelength grid?)"
        )
    if noise.shape != spectrum.shape:
        raise ValueError(f"noise has shape {noise.shape}, {what} {spectrum.shape}")
    if not np.all(np.isfinite(spectrum)):
        raise ValueError(f"{what} holds NaN or infinite values ({np.sum(~np.isfinite(spectrum))} pixels)")
    if not np.all(np.isfinite(noise)):
        raise ValueError(f"noise holds NaN or infinite values ({np.sum(~np.isfinite(noise))} pixels)")
    if np.any(noise <= 0):
        raise ValueError(f"noise must be > 0 (1-sigma per pixel); {np.sum(noise <= 0)} pixels are not")
    return spectrum, noise


def _dust(young):
    """pPXF ``dust`` list: the ISM screen on every template, the birth cloud on the young ones."""
    common = {"start": [TAU_V_START], "bounds": [[0.0, TAU_V_MAX]], "func": cf00_screen}
    return [
        {**common, "component": np.ones(young.size, dtype=bool)},
        {**common, "component": young.ravel().copy()},
    ]


def fit_spectrum(
    templates,
    spectrum,
    noise,
    mask=None,
    photometry=None,
    photometry_err=None,
    regul=DEFAULT_REGUL,
):
    """Fit one spectrum (and optionally its HST fluxes) with pPXF.

    Parameters
    ----------
    templates : PPXFTemplates
        From :func:`sfh_ml.fitting.build_templates` for the spectrum's grid.
    spectrum, noise : ndarray, shape (n_wave,)
        Flux density and its 1-sigma error per pixel on ``templates.wave_aa`` (rest frame), in
        L_sun / A per M_sun formed for masses in M_sun (any units: masses come out in the same
        units per template unit).
    mask : ndarray of bool, shape (n_pix,), optional
        Log-rebinned pixels to fit (:func:`sfh_ml.fitting.emission_line_mask`); default all.
    photometry, photometry_err : ndarray, shape (n_band,), optional
        Band-mean flux densities in ``templates.filters`` and their 1-sigma errors, in the units
        of ``spectrum``: fitted jointly with it when given.
    regul : float
        Second-order regularisation (0: none).

    Returns
    -------
    dict
        ``mass`` (n_age, n_zh): mass formed in each SSP, in the spectrum's units per template unit;
        ``velocity_kms``, ``sigma_kms``: stellar kinematics; ``tau_ism``, ``tau_bc``: V-band optical
        depths; ``chi2``: chi^2 per good pixel (spectrum and fluxes); ``seconds``: wall time.

    Raises
    ------
    ValueError
        A spectrum on another grid, NaN / inf / non-positive noise, or photometry without errors.
    """
    t0 = time.perf_counter()
    spectrum, noise = _checked(spectrum, noise, templates.wave_aa.size)
    galaxy, _, _ = log_rebin_spectra(templates.wave_aa, spectrum, templates.velscale)
    sigma, _, _ = log_rebin_spectra(templates.wave_aa, noise, templates.velscale)
    norm = float(np.median(galaxy))
    if not norm > 0:
        raise ValueError("the spectrum's median flux is not positive: nothing for pPXF to fit")
    phot = None
    if photometry is not None:
        if photometry_err is None:
            raise ValueError("photometry needs photometry_err (1-sigma errors)")
        n_band = len(templates.filters)
        photometry, photometry_err = _checked(photometry, photometry_err, n_band, what="photometry")
        phot = {
            "templates": templates.phot_templates,
            "galaxy": photometry / norm,
            "noise": photometry_err / norm,
            "lam": templates.phot_lam,
        }
    pp = ppxf(
        templates.templates,
        galaxy / norm,
        sigma / norm,
        templates.velscale,
        [0.0, SIGMA_START_KMS],
        moments=2,
        degree=-1,
        mdegree=0,
        lam=templates.lam,
        lam_temp=templates.lam_temp,
        mask=mask,
        dust=_dust(templates.young),
        regul=regul,
        reg_ord=2,
        phot=phot,
        quiet=True,
        plot=False,
    )
    weights = np.asarray(pp.weights, dtype=np.float64).reshape(templates.shape)
    tau = [float(d["sol"][0]) for d in pp.dust]
    return {
        "mass": weights * norm / templates.scale,
        "velocity_kms": float(pp.sol[0]),
        "sigma_kms": float(pp.sol[1]),
        "tau_ism": tau[0],
        "tau_bc": tau[1],
        "chi2": float(pp.chi2),
        "seconds": time.perf_counter() - t0,
    }
