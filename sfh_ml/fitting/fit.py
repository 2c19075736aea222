"""One pPXF full-spectrum fit (Cappellari 2017, 2023) with the generator's own physics.

What pPXF is given, so that the comparison with the network is fair:

* templates of the same SSP library at the MUSE resolution, per unit mass formed, with the nebular
  continuum on the young ones (:mod:`sfh_ml.fitting.templates`);
* the generator's dust law through pPXF's ``dust=`` keyword: a Charlot & Fall (2000) ISM screen
  on every template and a birth-cloud screen on the templates younger than 10 Myr, the same
  power law (:func:`sfh_ml.synthesis.dust.attenuation_curve`), each V-band optical depth fitted
  within the range the generator draws it from (:data:`TAU_V_BOUNDS`: the prior the network learned
  too). With wider bounds pPXF hides a little mass of very young stars behind a birth cloud of
  tau_V ~ 5: it barely changes the observed spectrum, but its dust-free light makes the
  light-weighted age up to 1.6 dex too young (24 objects at S/N 50, both bounds at 5: light-weighted
  log age NMAD 0.133 dex, errors correlated with the fitted tau_bc at r = -0.85; with the prior's
  bounds 0.092 dex);
* no additive or multiplicative polynomials (the synthetic spectra have a perfect flux
  calibration and the dust law is exact, so polynomials could only absorb age and [M/H]);
* the per-pixel noise of the file, the emission lines masked (:mod:`sfh_ml.fitting.lines`);
* velocity and stellar dispersion fitted (``moments=2``);
* optionally the five HST fluxes with their errors (``phot=``);
* second-order regularisation of the (age, [M/H]) weights (``regul``, ``reg_ord=2``) or none.
"""

import dataclasses
import time

import numpy as np
from ppxf.ppxf import ppxf

from ..synthesis import DatasetConfig
from ..synthesis.dust import attenuation_curve
from ..utils import is_missing
from .templates import log_rebin_spectra

__all__ = ["DEFAULT_REGUL", "FIT_VERSION", "TAU_V_BOUNDS", "SIGMA_START_KMS", "cf00_screen", "fit_spectrum"]

# Regularisation of the mass weights (templates and galaxy normalised by their medians; Delta = 1 /
# regul is the allowed second difference of neighbouring weights), chosen by accuracy against the truth
# on calibration sets that no comparison uses (30 objects each at S/N 20 and 50, seeds 8020 and 8050):
# of regul 1, 3 and 10, 3 gives the smallest [M/H] NMAD at both S/N (0.046 and 0.034 dex, against
# 0.068 / 0.053 for 1 and 0.088 / 0.057 for 10) and mass-weighted log-age NMADs within 0.015 dex of
# the best. The Delta chi2 = sqrt(2 N_good) criterion of the pPXF examples (Press et al. 1992;
# sfh_ml.fitting.regul_by_delta_chi2) scatters from 1 to 300 between objects (median 65 on eight at
# S/N 50) and at 30 doubles the [M/H] scatter: it is shown in chapter 5, not used.
DEFAULT_REGUL = 3.0
# Version of the fit's settings (templates, masks, dust bounds, kinematics): part of the name of
# cached fits (sfh_ml.fitting.compare), so that fits made with other settings are never reused.
# 2: dust bounds from the training prior (were 0-5 for both screens).
FIT_VERSION = 2
# (min, max) of the fitted V-band optical depths of the ISM and the birth clouds: the ranges the
# training sets are drawn from (DatasetConfig's defaults).
TAU_V_BOUNDS = {
    name: f.default for f in dataclasses.fields(DatasetConfig) if (name := f.name) in ("tau_ism", "tau_bc")
}
TAU_V_START = 0.3
MIN_GOOD_FRACTION = 0.5  # a real spectrum with fewer pixels with data than this is not fitted
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
    flagged = is_missing(spectrum) & np.isfinite(spectrum)  # -9999 and the other missing-value flags
    if flagged.any():
        raise ValueError(
            f"{what} holds missing-value flags (-9999, |f| >= 1e30, ...) in {flagged.sum()} pixels: mark "
            "them missing (good=False, or NaN with good=) instead of fitting them as fluxes"
        )
    if not np.all(np.isfinite(spectrum)):
        raise ValueError(f"{what} holds NaN or infinite values ({np.sum(~np.isfinite(spectrum))} pixels)")
    if not np.all(np.isfinite(noise)):
        raise ValueError(f"noise holds NaN or infinite values ({np.sum(~np.isfinite(noise))} pixels)")
    if np.any(noise <= 0):
        raise ValueError(f"noise must be > 0 (1-sigma per pixel); {np.sum(noise <= 0)} pixels are not")
    return spectrum, noise


def _fill_missing(templates, spectrum, noise, good, mask):
    """Missing pixels interpolated over (flux) or set to the largest error, and left out of the mask."""
    n_wave = templates.wave_aa.size
    good = np.asarray(good, dtype=bool)
    spectrum = np.asarray(spectrum, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    if good.shape != (n_wave,) or spectrum.shape != (n_wave,) or noise.shape != (n_wave,):
        raise ValueError(
            f"good, spectrum and noise have shapes {good.shape}, {spectrum.shape}, {noise.shape}; the "
            f"templates were built for a grid of {n_wave} pixels (wrong wavelength grid?)"
        )
    good = good & ~is_missing(spectrum) & ~is_missing(noise) & (noise > 0)
    if good.mean() < MIN_GOOD_FRACTION:
        raise ValueError(
            f"only {good.mean():.0%} of the spectrum's pixels have data (at least {MIN_GOOD_FRACTION:.0%} "
            "needed): nothing reliable for pPXF to fit"
        )
    idx = np.arange(n_wave)
    spectrum = np.where(good, spectrum, np.interp(idx, idx[good], spectrum[good]))
    noise = np.where(good, noise, noise[good].max())
    touched, _, _ = log_rebin_spectra(templates.wave_aa, (~good).astype(np.float64), templates.velscale)
    keep = touched <= 1e-6
    return spectrum, noise, keep if mask is None else (np.asarray(mask, dtype=bool) & keep)


def _photometry(templates, photometry, photometry_err, norm):
    """pPXF's ``phot`` dict of the bands with a flux and an error (None if no band has both)."""
    n_band = len(templates.filters)
    photometry = np.asarray(photometry, dtype=np.float64)
    photometry_err = np.asarray(photometry_err, dtype=np.float64)
    if photometry.shape != (n_band,) or photometry_err.shape != (n_band,):
        raise ValueError(
            f"photometry and photometry_err have shapes {photometry.shape}, {photometry_err.shape}; the "
            f"templates have {n_band} bands {list(templates.filters)}"
        )
    keep = ~is_missing(photometry) & ~is_missing(photometry_err)  # -9999: no measurement, not a flux
    if not keep.any():
        return None
    flux, err = _checked(photometry[keep], photometry_err[keep], int(keep.sum()), what="photometry")
    return {
        "templates": templates.phot_templates[keep],
        "galaxy": flux / norm,
        "noise": err / norm,
        "lam": templates.phot_lam[keep],
    }


def _dust(young, tau_bounds):
    """pPXF ``dust`` list: the ISM screen on every template, the birth cloud on the young ones."""
    return [
        {
            "start": [float(np.clip(TAU_V_START, *tau_bounds[name]))],
            "bounds": [list(tau_bounds[name])],
            "func": cf00_screen,
            "component": component,
        }
        for name, component in (
            ("tau_ism", np.ones(young.size, dtype=bool)),
            ("tau_bc", young.ravel().copy()),
        )
    ]


def fit_spectrum(
    templates,
    spectrum,
    noise,
    mask=None,
    photometry=None,
    photometry_err=None,
    regul=DEFAULT_REGUL,
    tau_bounds=None,
    good=None,
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
        of ``spectrum``: fitted jointly with it when given. A band whose flux or error is missing
        (NaN, inf, -9999 and the other flags of :func:`sfh_ml.utils.is_missing`) is left out.
    regul : float
        Second-order regularisation (0: none).
    tau_bounds : dict, optional
        ``{"tau_ism": (min, max), "tau_bc": (min, max)}``, bounds of the fitted V-band optical
        depths (default :data:`TAU_V_BOUNDS`, the training prior).
    good : ndarray of bool, shape (n_wave,), optional
        Pixels of ``spectrum`` with data (real spectra: masked pixels False, where ``spectrum`` and
        ``noise`` may be NaN). The log-rebinned pixels that touch a missing one are left out of the
        fit. Default: every pixel, which must then be finite.

    Returns
    -------
    dict
        ``mass`` (n_age, n_zh): mass formed in each SSP, in the spectrum's units per template unit;
        ``velocity_kms``, ``sigma_kms``: stellar kinematics; ``tau_ism``, ``tau_bc``: V-band optical
        depths; ``chi2``: chi^2 per good pixel (spectrum and fluxes); ``n_bands``: the bands fitted
        (missing ones left out); ``seconds``: wall time.

    Raises
    ------
    ValueError
        A spectrum on another grid, NaN / inf / missing-value flags (-9999) in the spectrum without
        ``good``, NaN / inf / non-positive noise, or photometry without errors.
    """
    t0 = time.perf_counter()
    if good is not None:
        spectrum, noise, mask = _fill_missing(templates, spectrum, noise, good, mask)
    spectrum, noise = _checked(spectrum, noise, templates.wave_aa.size)
    galaxy, _, _ = log_rebin_spectra(templates.wave_aa, spectrum, templates.velscale)
    sigma, _, _ = log_rebin_spectra(templates.wave_aa, noise, templates.velscale)
    norm = float(np.median(galaxy))
    if not norm > 0:
        raise ValueError("the spectrum's median flux is not positive: nothing for pPXF to fit")
    phot, n_bands = None, 0
    if photometry is not None:
        if photometry_err is None:
            raise ValueError("photometry needs photometry_err (1-sigma errors)")
        phot = _photometry(templates, photometry, photometry_err, norm)
        n_bands = 0 if phot is None else len(phot["galaxy"])
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
        dust=_dust(templates.young, TAU_V_BOUNDS if tau_bounds is None else tau_bounds),
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
        "n_bands": n_bands,
        "seconds": time.perf_counter() - t0,
    }
