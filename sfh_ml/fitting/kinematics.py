"""Stellar kinematics of real spectra: a pPXF fit of the velocity and the dispersion only.

The network needs each spectrum's stellar velocity (for the rest frame) and dispersion (to bring it
to the model's). Where the caller does not give them, they are measured here with pPXF (Cappellari
2017, 2023) and the project's own templates (:func:`sfh_ml.fitting.build_templates`: the SSP library
at the MUSE line-spread function), on the spectrum already on the model's rest-frame grid.

An instrument other than MUSE has its own line-spread function. So that pPXF's dispersion is the
stellar one, galaxy and templates are first brought to the broader of the two LSFs at each
wavelength: the galaxy is convolved where the instrument is sharper than MUSE (sigma^2 =
sigma_MUSE^2 - sigma_instr^2, Gaussian sigmas in Angstrom), the templates where it is broader
(sigma_instr^2 - sigma_MUSE^2). Both then share one LSF and the fitted dispersion is sigma_stars.

The fit: ``moments=2``, additive Legendre polynomials of degree :data:`KINEMATICS_DEGREE` (which absorb
dust and flux-calibration differences without biasing the line widths; Cappellari 2017, sect. 3.3),
no regularisation, the emission lines masked (:func:`sfh_ml.fitting.emission_line_mask`). Velocities
are returned relative to the redshift the spectrum was brought to the rest frame with, as
``(1 + z_total) = (1 + z)(1 + v / c)`` (:func:`sfh_ml.observations.total_redshift`); pPXF's own
velocity is c ln(1 + z_v).
"""

import numpy as np
from ppxf.ppxf import ppxf

from ..constants import C_KMS, FWHM_TO_SIGMA
from ..synthesis.instrument import broadening_matrix, muse_lsf_fwhm
from ..synthesis.ssp import load_library
from .fit import MIN_GOOD_FRACTION, SIGMA_START_KMS, _fill_missing
from .lines import emission_line_mask
from .templates import build_templates, log_rebin_spectra

__all__ = ["KINEMATICS_DEGREE", "KINEMATICS_KEYS", "kinematics_templates", "fit_kinematics"]

KINEMATICS_DEGREE = 8  # additive polynomial degree of the kinematics fits
KINEMATICS_KEYS = ("v_kms", "v_kms_err", "sigma_kms", "sigma_kms_err", "chi2")
_TEMPLATES = {}  # templates by (grid, library): built once per process (seconds each)


def kinematics_templates(wave_aa, library=None):
    """The pPXF templates of :func:`build_templates` for a grid, built once per process.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        The rest-frame linear grid of the spectra (the model's), Angstrom.
    library : SSPLibrary, optional
        Default :func:`sfh_ml.synthesis.ssp.load_library`.

    Returns
    -------
    PPXFTemplates
    """
    wave_aa = np.asarray(wave_aa, dtype=np.float64)
    key = (wave_aa.tobytes(), None if library is None else id(library))
    if key not in _TEMPLATES:
        if len(_TEMPLATES) > 4:
            _TEMPLATES.clear()
        _TEMPLATES[key] = build_templates(wave_aa, load_library() if library is None else library)
    return _TEMPLATES[key]


def _match_lsf(templates, wave_aa, flux, var, good, fwhm_aa):
    """Galaxy (on ``wave_aa``) and templates brought to the broader of the instrument's and MUSE's LSF.

    Returns (flux, var, good, templates array (n_pix_temp, n_templates)).
    """
    tpl = templates.templates.reshape(templates.templates.shape[0], -1)
    if fwhm_aa is None:
        return flux, var, good, tpl
    d2 = (np.asarray(fwhm_aa, dtype=float) ** 2 - muse_lsf_fwhm(wave_aa) ** 2) * FWHM_TO_SIGMA**2  # A^2
    if np.any(d2 < 0):  # sharper than MUSE there: the galaxy is degraded (bad pixels left out)
        op = broadening_matrix(wave_aa, wave_aa, np.sqrt(np.clip(-d2, 0.0, None)))
        g = good.astype(float)
        norm = op @ g
        with np.errstate(invalid="ignore", divide="ignore"):
            flux = (op @ np.where(good, flux, 0.0)) / norm
            var = (op.multiply(op) @ np.where(good, var, 0.0)) / norm**2
        good = good & (norm > 0)
    if np.any(d2 > 0):  # broader than MUSE there: the templates are broadened
        lam = templates.lam_temp
        sigma_t = np.sqrt(np.clip(np.interp(lam, wave_aa, d2), 0.0, None))
        tpl = broadening_matrix(lam, lam, sigma_t) @ tpl
    return flux, var, good, tpl


def fit_kinematics(wave_aa, flux, var, fwhm_aa=None, templates=None, library=None, degree=KINEMATICS_DEGREE):
    """Stellar velocity and dispersion of rest-frame spectra with pPXF (see the module).

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Rest-frame linear grid (the model's), Angstrom.
    flux, var : ndarray, shape (n, n_wave)
        Flux density and variance on it (NaN where missing), e.g. :attr:`PreparedSpectra.flux`
        before any broadening.
    fwhm_aa : ndarray, shape (n_wave,) or (n, n_wave), optional
        The instrument's rest-frame FWHM on the grid, Angstrom (:attr:`PreparedSpectra.fwhm_aa`);
        None: the MUSE LSF.
    templates : PPXFTemplates, optional
        Default :func:`kinematics_templates` for ``wave_aa``.
    library : SSPLibrary, optional
        For the default templates and the emission-line mask.
    degree : int
        Additive polynomial degree.

    Returns
    -------
    dict of ndarray, shape (n,)
        ``v_kms`` (relative to the rest frame of the input), ``sigma_kms`` (stellar), their formal
        1-sigma errors ``v_kms_err`` and ``sigma_kms_err`` (times sqrt(chi2)), ``chi2`` (per pixel);
        NaN where a spectrum has data in fewer than half its pixels, or a median flux <= 0.
    """
    wave_aa = np.asarray(wave_aa, dtype=float)
    flux = np.atleast_2d(np.asarray(flux, dtype=float))
    var = np.atleast_2d(np.asarray(var, dtype=float))
    n = flux.shape[0]
    lib = load_library() if library is None else library
    templates = kinematics_templates(wave_aa, library) if templates is None else templates
    fwhm = None if fwhm_aa is None else np.broadcast_to(np.asarray(fwhm_aa, dtype=float), flux.shape)
    line_mask = emission_line_mask(lib, templates.lam)
    out = {key: np.full(n, np.nan) for key in KINEMATICS_KEYS}
    for i in range(n):  # pPXF fits one spectrum at a time
        with np.errstate(invalid="ignore"):
            good = np.isfinite(flux[i]) & np.isfinite(var[i]) & (var[i] > 0)
        if good.mean() < MIN_GOOD_FRACTION or not np.median(flux[i, good]) > 0:
            continue
        fwhm_i = None if fwhm is None else fwhm[i]
        f, v, g, tpl = _match_lsf(templates, wave_aa, flux[i], var[i], good, fwhm_i)
        try:
            f, noise, mask = _fill_missing(templates, f, np.sqrt(v), g, line_mask)
        except ValueError:  # too few pixels left
            continue
        galaxy, _, _ = log_rebin_spectra(wave_aa, f, templates.velscale)
        sigma, _, _ = log_rebin_spectra(wave_aa, noise, templates.velscale)
        norm = float(np.median(galaxy))
        pp = ppxf(
            tpl / np.median(tpl),
            galaxy / norm,
            sigma / norm,
            templates.velscale,
            [0.0, SIGMA_START_KMS],
            moments=2,
            degree=degree,
            mdegree=0,
            lam=templates.lam,
            lam_temp=templates.lam_temp,
            mask=mask,
            quiet=True,
            plot=False,
        )
        err = np.asarray(pp.error, dtype=float) * np.sqrt(pp.chi2)
        out["v_kms"][i] = C_KMS * np.expm1(pp.sol[0] / C_KMS)  # pPXF's c ln(1 + z_v) as c z_v
        out["v_kms_err"][i] = err[0] * np.exp(pp.sol[0] / C_KMS)
        out["sigma_kms"][i] = pp.sol[1]
        out["sigma_kms_err"][i] = err[1]
        out["chi2"][i] = pp.chi2
    return out
