"""Spectra of any instrument on the model's grid (:func:`prepare_observed`), and their stellar
kinematics (:func:`measure_kinematics`, pPXF)."""

import numpy as np

from ..apply.options import SIGMA_MODEL_KMS
from ..prepare import MIN_COVERAGE, SIGMA_TOLERANCE_KMS, PreparedSpectra, prepare_spectra
from ..readers import vacuum_to_air
from .parts import RESOLUTION_FIX

__all__ = [
    "rest_frame_redshifts",
    "require_resolution",
    "per_spectrum",
    "prepare_observed",
    "measure_kinematics",
]


def _files(spectra, rows=None):
    names = np.unique(spectra.source if rows is None else spectra.source[rows])
    return ", ".join(names[:3]) + (f" (+{names.size - 3} more)" if names.size > 3 else "")


def rest_frame_redshifts(spectra):
    """The redshift each spectrum is brought to the rest frame with (0 for rest-frame wavelengths)."""
    if spectra.frame == "rest":
        return np.zeros(len(spectra))
    if spectra.redshift is None:
        raise ValueError(
            f"{_files(spectra)}: observed-frame wavelengths and no redshift: pass redshift= (--redshift Z), "
            "or frame='rest' (--frame rest) if the wavelengths are already rest-frame"
        )
    return np.asarray(spectra.redshift, dtype=float)


def require_resolution(spectra, rows=None, n_columns=None):
    rows = np.arange(len(spectra)) if rows is None else rows
    fwhm = None if spectra.fwhm_aa is None else spectra.fwhm_aa[rows][:, :n_columns]
    if fwhm is None or np.all(np.isnan(fwhm)):
        raise ValueError(f"{_files(spectra, rows)}: the instrument's resolution is unknown; {RESOLUTION_FIX}")
    return fwhm


def per_spectrum(value, n, name):
    if value is None:
        return None
    value = np.asarray(value, dtype=float)
    if value.ndim and value.shape != (n,):
        raise ValueError(f"{name} must be one number or one per spectrum ({n}), got shape {value.shape}")
    return np.broadcast_to(value, (n,)).copy()


def prepare_observed(
    spectra,
    wave_model_aa,
    *,
    sigma_model_kms=SIGMA_MODEL_KMS,
    v_kms=None,
    sigma_kms=None,
    ebv_mw=0.0,
    tolerance_kms=SIGMA_TOLERANCE_KMS,
    min_coverage=MIN_COVERAGE,
    broaden=True,
):
    """Spectra of any instrument on the model's grid: :func:`~sfh_ml.observations.prepare_spectra`
    for each group of spectra that share a grid (see the module).

    Parameters
    ----------
    spectra : Spectra
    wave_model_aa : ndarray, shape (n_wave_model,)
        The model's rest-frame (air) grid, Angstrom.
    sigma_model_kms : float
        The model's stellar dispersion, km/s.
    v_kms, sigma_kms : float or ndarray, shape (n_spec,), optional
        Stellar velocity relative to the redshift, and stellar dispersion, km/s (NaN:
        ``NO_KINEMATICS``). ``sigma_kms`` is needed with ``broaden``.
    ebv_mw : float or ndarray, shape (n_spec,)
        Milky Way foreground E(B-V), mag (observed-frame spectra only).
    tolerance_kms : float
        Effective dispersions up to this much above the model's are used as they are; beyond,
        ``TOO_BROAD``.
    min_coverage : float
        Fraction of the model grid the valid pixels must cover (below: ``LOW_COVERAGE``).
    broaden : bool
        Bring each spectrum's LSF and dispersion to the model's; False: resample only (for the
        kinematics fit).

    Returns
    -------
    PreparedSpectra
        Rows in the order of ``spectra``; ``fwhm_aa`` holds the rest-frame instrumental FWHM on the
        model grid where the resolution is known.

    Raises
    ------
    ValueError
        Observed-frame spectra without a redshift; an unknown resolution (with ``broaden``); a file
        none of whose spectra covers ``min_coverage`` of the model grid at its redshift; dereddening
        asked for rest-frame spectra.
    """
    wave_model = np.asarray(wave_model_aa, dtype=float)
    n = len(spectra)
    z = rest_frame_redshifts(spectra)
    v = per_spectrum(v_kms, n, "v_kms")
    sigma = per_spectrum(sigma_kms, n, "sigma_kms")
    ebv = per_spectrum(ebv_mw, n, "ebv_mw")
    observed = spectra.frame == "observed"
    if not observed and np.any(ebv != 0):
        raise ValueError(
            f"{_files(spectra)}: Milky Way dereddening needs observed-frame wavelengths; deredden the "
            "rest-frame spectra before, or pass the observed-frame ones with their redshift"
        )
    if broaden and sigma is None:
        raise ValueError("broadening needs the stellar dispersion (sigma_kms=; see measure_kinematics)")
    out = {
        "flux": np.full((n, wave_model.size), np.nan),
        "var": np.full((n, wave_model.size), np.nan),
        "flags": np.zeros(n, dtype=np.int64),
        "coverage": np.zeros(n),
        "fwhm_aa": np.full((n, wave_model.size), np.nan),
    }
    for rows, n_col in spectra.groups():
        wave = np.array(spectra.wave_aa[rows[0], :n_col], dtype=float)
        fwhm = None if spectra.fwhm_aa is None else spectra.fwhm_aa[rows][:, :n_col]
        if fwhm is not None and np.all(np.isnan(fwhm)):
            fwhm = None
        if broaden:
            fwhm = require_resolution(spectra, rows, n_col)
        if spectra.medium == "vacuum":
            air = vacuum_to_air(wave)
            fwhm = None if fwhm is None else fwhm * air / wave
            wave = air
        flux, var = spectra.flux[rows, :n_col], spectra.var[rows, :n_col]
        with np.errstate(invalid="ignore"):
            bad = spectra.mask[rows, :n_col] | ~(flux > 0)  # NaN, zero and negative pixels
        scale = 1.0 + z[rows]
        with np.errstate(invalid="ignore"):
            covered = np.mean(
                (wave_model[None, :] >= wave[0] / scale[:, None])
                & (wave_model[None, :] <= wave[-1] / scale[:, None]),
                axis=1,
            )
        if not np.any(covered >= min_coverage):
            raise ValueError(
                f"{_files(spectra, rows)}: its rest-frame wavelengths ({wave[0] / scale[0]:.0f}-"
                f"{wave[-1] / scale[0]:.0f} A at z = {z[rows[0]]:g}) cover "
                f"{100 * np.nanmax(covered):.0f} % of the model's grid "
                f"({wave_model[0]:.0f}-{wave_model[-1]:.0f} A); at least "
                f"{100 * min_coverage:.0f} % is needed. Check the redshift (--redshift) and the wavelength "
                "unit, or use a model trained on this wavelength range"
            )
        prep = prepare_spectra(
            wave,
            flux,
            var,
            wave_model,
            sigma_model_kms=sigma_model_kms,
            z_sys=z[rows],
            v_kms=None if v is None else v[rows],
            ebv_mw=0.0 if ebv is None else ebv[rows],
            sigma_obs_kms=sigma[rows] if broaden else None,
            dq=bad.astype(np.uint8),
            mask_sky=observed,
            min_coverage=min_coverage,
            tolerance_kms=tolerance_kms,
            fwhm_obs_aa=fwhm,
        )
        out["flux"][rows], out["var"][rows] = prep.flux, prep.var
        out["flags"][rows], out["coverage"][rows] = prep.flags, prep.coverage
        if prep.fwhm_aa is not None:
            out["fwhm_aa"][rows] = prep.fwhm_aa
    if np.all(np.isnan(out["fwhm_aa"])):
        out["fwhm_aa"] = None
    return PreparedSpectra(**out)


def measure_kinematics(spectra, wave_model_aa, *, ebv_mw=0.0, library=None, prepared=None):
    """Stellar velocity and dispersion of each spectrum (pPXF, :func:`sfh_ml.fitting.fit_kinematics`).

    Parameters
    ----------
    spectra : Spectra
    wave_model_aa : ndarray, shape (n_wave_model,)
        The model's rest-frame grid (the templates are built for it), Angstrom.
    ebv_mw : float or ndarray, shape (n_spec,)
    library : SSPLibrary, optional
    prepared : PreparedSpectra, optional
        :func:`prepare_observed` with ``broaden=False``, if already made.

    Returns
    -------
    dict of ndarray, shape (n_spec,)
        ``v_kms`` (relative to the redshift), ``v_kms_err``, ``sigma_kms`` (stellar), ``sigma_kms_err``,
        ``chi2``: NaN where a spectrum cannot be fitted (too few pixels, no positive flux).
    """
    from ...fitting.kinematics import fit_kinematics

    if prepared is None:
        prepared = prepare_observed(spectra, wave_model_aa, ebv_mw=ebv_mw, broaden=False)
    return fit_kinematics(
        wave_model_aa, prepared.flux, prepared.var, fwhm_aa=prepared.fwhm_aa, library=library
    )
