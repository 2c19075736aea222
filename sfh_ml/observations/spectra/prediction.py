"""Histories of spectra of any instrument: the network's (:func:`predict_spectra`, one table row per
spectrum, the schema of ``sfh-ml apply``'s per-bin table) and pPXF's (:func:`ppxf_spectra`)."""

import os
import warnings

import numpy as np
from astropy.table import Table

from .. import flags as qf
from ..apply.options import MIN_SNR, SIGMA_MODEL_KMS, SIGMA_MODEL_MAX_KMS
from ..apply.outputs import combine_quality, model_fingerprint, result_table, usable_mask
from ..apply.summary import summarise_histories
from ..binning import continuum_snr
from ..flags import NETWORK_FLAG_SHIFT, quality_bits
from ..prepare import SIGMA_TOLERANCE_KMS, deredden_mw, to_rest_frame, total_redshift
from ..readers import vacuum_to_air
from .preparation import (
    measure_kinematics,
    per_spectrum,
    prepare_observed,
    require_resolution,
    rest_frame_redshifts,
)

__all__ = ["UNUSABLE_FLAGS", "predict_spectra", "ppxf_spectra"]

# Objects with any of these preparation bits get NaN predictions: their rest frame or resolution is
# not the model's (the other bits inform, as in sfh-ml apply).
UNUSABLE_FLAGS = qf.NO_DATA | qf.TOO_BROAD | qf.NO_KINEMATICS


def _spectrum_photometry(spectra, z_total, ebv, filters):
    """Band means of the dereddened rest-frame spectra at their own sampling (``spectrum_bands``)."""
    from ..real_spectra import spectrum_bands

    n = len(spectra)
    phot = np.full((n, len(filters)), np.nan)
    for rows, n_col in spectra.groups():
        wave = np.array(spectra.wave_aa[rows[0], :n_col], dtype=float)
        if spectra.medium == "vacuum":
            wave = vacuum_to_air(wave)
        flux = np.where(spectra.mask[rows, :n_col], np.nan, spectra.flux[rows, :n_col])
        var = np.where(spectra.mask[rows, :n_col], np.nan, spectra.var[rows, :n_col])
        if spectra.frame == "observed" and np.any(ebv[rows] != 0):
            flux, var = deredden_mw(wave, flux, var, ebv[rows])
        with np.errstate(invalid="ignore"):
            rest, flux, var = to_rest_frame(wave, flux, var, z_total[rows])
        phot[rows], _ = spectrum_bands(rest, flux, var, filters)
    return phot


def _models(model):
    from ...network import load_model, load_pretrained

    if model is None:
        return load_pretrained(), "shipped network (sfh_ml.load_pretrained)"
    if isinstance(model, list | tuple):
        return [load_model(m) if isinstance(m, str | os.PathLike) else m for m in model], "ensemble"
    if isinstance(model, str | os.PathLike):
        return load_model(model), str(model)
    return model, "model object"


def predict_spectra(
    spectra,
    model=None,
    *,
    v_kms=None,
    sigma_kms=None,
    ebv_mw=0.0,
    photometry="spectrum",
    min_snr=MIN_SNR,
    batch_size=1024,
    library=None,
    sigma_max_kms=SIGMA_MODEL_MAX_KMS,
    trust=False,
):
    """SFHs and [M/H] histories of spectra of any instrument, one table row per spectrum.

    Parameters
    ----------
    spectra : Spectra
        From :func:`read_spectra`.
    model : keras.Model, str, Path or list of them, optional
        Default: the shipped network (:func:`sfh_ml.load_pretrained`).
    v_kms, sigma_kms : float or ndarray, shape (n_spec,), optional
        Stellar velocity (relative to the redshift) and dispersion, km/s; what is not given is
        measured with pPXF (:func:`measure_kinematics`; about a second per spectrum). Given values win.
    ebv_mw : float or ndarray, shape (n_spec,)
        Milky Way foreground E(B-V), mag.
    photometry : "spectrum", None or ndarray, shape (n_spec, n_bands)
        The network's HST bands: ``"spectrum"``, the band means of each rest-frame spectrum for the
        bands it covers entirely (:func:`sfh_ml.fitting.spectrum_bands`, as in chapter 5), the others
        missing; None, all missing; or fluxes in the spectra's unit, in the model's band order.
    min_snr : float
        Below this continuum S/N per pixel (5300-5700 A rest frame) a spectrum gets ``LOW_SNR``.
    batch_size : int
    library : SSPLibrary, optional
        For the kinematics' templates.
    sigma_max_kms : float
        The highest stellar dispersion of the training spectra: effective dispersions beyond it get
        ``TOO_BROAD`` (and NaN predictions).
    trust : bool
        Also score how far to trust each answer and check the redshift
        (:func:`sfh_ml.network.predict` with ``trust`` and ``goodness``): ``trust`` and
        ``redshift_offset_kms`` columns, the goodness of fit's ``chi2_pixel``, ``phot_rms`` and
        ``ood_score``, and the ``NETWORK_UNTRUSTED`` and ``NETWORK_WRONG_REDSHIFT`` flags.

    Returns
    -------
    astropy.table.Table
        One row per spectrum, the columns of ``sfh-ml apply``'s per-bin table (``sfh``,
        ``sfh_cum``, ``sfh_cum_sigma``, ``zh``, ``zh_sigma`` per age bin; ``mw_log_age``,
        ``mw_log_age_err``, ``lw_log_age``, ``mw_zh``, ``mw_zh_err``, ``lw_zh``, ``f_young``, ...;
        ``photometry``, ``coverage``, ``quality``) after ``name``, ``source``, ``redshift``,
        ``v_kms``, ``v_kms_err``, ``sigma_kms``, ``sigma_kms_err``, ``kinematics_source``, ``snr``,
        ``usable`` and ``quality_names``. Predictions are NaN where the network found a spectrum
        unusable or where its preparation set a bit of :data:`UNUSABLE_FLAGS`. ``meta``: the age
        bins, the quality bits, the options.
    """
    from ...network import GOODNESS_KEYS, INTERVAL_KEYS, PREDICTION_KEYS, get_metadata, predict
    from ...network.trust import TRUST_KEYS

    n = len(spectra)
    z = rest_frame_redshifts(spectra)  # refusals before any work
    require_resolution(spectra)
    models, model_label = _models(model)
    first = models[0] if isinstance(models, list) else models
    meta = get_metadata(first)
    if meta["wave_aa"] is None or meta["age_bins_yr"] is None:
        raise ValueError(
            "the model records no wavelength grid or age bins: rebuild it with wave_aa= and age_bins_yr="
        )
    wave_model = np.asarray(meta["wave_aa"], dtype=float)
    sigma_model = float(meta.get("sigma_kms") or SIGMA_MODEL_KMS)
    tolerance = max(float(sigma_max_kms) - sigma_model, SIGMA_TOLERANCE_KMS)
    ebv = per_spectrum(ebv_mw, n, "ebv_mw")
    v_given, s_given = per_spectrum(v_kms, n, "v_kms"), per_spectrum(sigma_kms, n, "sigma_kms")
    kin = {k: np.full(n, np.nan) for k in ("v_kms", "v_kms_err", "sigma_kms", "sigma_kms_err")}
    # Resampled, not broadened: the S/N (as a cube's, before any smoothing) and the kinematics fit.
    resampled = prepare_observed(spectra, wave_model, ebv_mw=ebv, broaden=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        signal, noise = continuum_snr(resampled.flux.T, resampled.var.T, wave_model)
        snr = signal / noise
    if v_given is None or s_given is None:
        fitted = measure_kinematics(spectra, wave_model, library=library, prepared=resampled)
        kin.update({k: fitted[k] for k in kin})
    if v_given is not None:
        kin["v_kms"], kin["v_kms_err"] = v_given, np.full(n, np.nan)
    if s_given is not None:
        kin["sigma_kms"], kin["sigma_kms_err"] = s_given, np.full(n, np.nan)
    origin = lambda given: "given" if given is not None else "pPXF"
    source = f"v: {origin(v_given)}; sigma: {origin(s_given)}"
    prep = prepare_observed(
        spectra,
        wave_model,
        sigma_model_kms=sigma_model,
        v_kms=kin["v_kms"],
        sigma_kms=kin["sigma_kms"],
        ebv_mw=ebv,
        tolerance_kms=tolerance,
    )
    z_total = total_redshift(z, np.nan_to_num(kin["v_kms"]))
    if isinstance(photometry, str) and photometry == "spectrum":
        phot = _spectrum_photometry(spectra, z_total, ebv, meta["filters"])
        phot_source = "band means of each rest-frame spectrum, for the bands it covers entirely"
    elif photometry is None:
        phot = np.full((n, meta["n_bands"]), np.nan)
        phot_source = "none: the network predicted from the spectra alone (bands masked)"
    else:
        phot = np.asarray(photometry, dtype=float).reshape(n, meta["n_bands"])
        phot_source = "given (photometry=)"
    pred = predict(
        models,
        prep.flux,
        phot,
        batch_size=batch_size,
        wave_aa=wave_model,
        filters=meta["filters"],
        trust=trust,
        goodness=trust,
        noise=np.sqrt(prep.var) if trust else None,
    )
    keys = PREDICTION_KEYS + INTERVAL_KEYS + ((*GOODNESS_KEYS, *TRUST_KEYS) if trust else ())
    res = {k: np.array(pred[k], dtype=np.float64) for k in keys}
    res["network_quality"] = np.asarray(pred["quality"], dtype=np.int64)
    res["flags"] = prep.flags
    res["coverage"] = prep.coverage
    res["quality"] = combine_quality(res, snr, min_snr)
    unusable = (prep.flags & UNUSABLE_FLAGS) != 0
    for k in PREDICTION_KEYS + INTERVAL_KEYS:
        res[k][unusable] = np.nan
    usable = usable_mask(res["quality"]) & ~unusable
    summary = summarise_histories(res, meta["age_bins_yr"], meta["bin_light"], meta["zh_grid"])
    names = {bit: name for name, bit in quality_bits().items()}
    extra = {
        "name": spectra.names,
        "source": spectra.source,
        "redshift": np.full(n, np.nan) if spectra.frame == "rest" else z,
        **kin,
        "kinematics_source": np.full(n, source),
        "snr": snr,
        "usable": usable,
        "quality_names": np.array(
            [",".join(names[b] for b in names if q & b) for q in res["quality"]], dtype=str
        ),
    }
    options = {
        "model": model_fingerprint(first, meta),
        "model_label": model_label,
        "spectra": sorted(set(spectra.source.tolist())),
        "medium": spectra.medium,
        "frame": spectra.frame,
        "resolution": spectra.resolution_source,
        "notes": list(spectra.meta.get("notes", [])),
        "ebv_mw": [float(e) for e in np.unique(ebv)],
        "sigma_model_kms": sigma_model,
        "sigma_max_kms": max(float(sigma_max_kms), sigma_model),
        "min_snr": float(min_snr),
        "network_flag_shift": NETWORK_FLAG_SHIFT,
    }
    unit = None if spectra.flux_unit is None else str(spectra.flux_unit)
    return result_table(
        res,
        summary,
        extra,
        meta,
        options,
        photometry=phot,
        flux_unit=unit,
        photometry_source=phot_source,
        sigma_source=source,
        units=dict.fromkeys(("v_kms", "v_kms_err", "sigma_kms", "sigma_kms_err"), "km / s"),
    )


def ppxf_spectra(spectra, table=None, *, ebv_mw=0.0, regul=None, library=None, model=None, workers=1):
    """pPXF's histories of the same spectra, prepared as for the network but not broadened
    (:func:`sfh_ml.fitting.fit_arrays`, as :func:`sfh_ml.fitting.real_spectra_check` fits them).

    Parameters
    ----------
    spectra : Spectra
    table : astropy.table.Table, optional
        :func:`predict_spectra`'s table: its ``v_kms`` gives the rest frame (else pPXF's kinematics
        fit, :func:`measure_kinematics`) and its ``meta["age_bins_yr"]`` the bins.
    ebv_mw : float or ndarray, shape (n_spec,)
    regul : float, optional
        pPXF's regularisation (default :data:`sfh_ml.fitting.DEFAULT_REGUL`).
    library : SSPLibrary, optional
    model : keras.Model, optional
        For the grid and the age bins without ``table`` (default: the shipped network).
    workers : int

    Returns
    -------
    astropy.table.Table
        ``name``; ``ppxf_mw_log_age``, ``ppxf_lw_log_age`` (log10 yr), ``ppxf_mw_zh``, ``ppxf_lw_zh``
        (dex); ``ppxf_sfh``, ``ppxf_zh`` (n_spec, n_bins) on the age bins; ``ppxf_sigma_kms``
        (effective dispersion against the MUSE-resolution templates), ``ppxf_chi2``; NaN where a
        spectrum has too little data.
    """
    from ...fitting import DEFAULT_REGUL, fit_arrays
    from ...fitting.fit import MIN_GOOD_FRACTION
    from ...network import get_metadata

    models, _ = _models(model)
    meta = get_metadata(models[0] if isinstance(models, list) else models)
    wave_model = np.asarray(meta["wave_aa"], dtype=float)
    age_bins = np.asarray(table.meta["age_bins_yr"] if table is not None else meta["age_bins_yr"])
    n = len(spectra)
    ebv = per_spectrum(ebv_mw, n, "ebv_mw")
    if table is not None:
        v = np.asarray(table["v_kms"], dtype=float)
    else:
        v = measure_kinematics(spectra, wave_model, ebv_mw=ebv, library=library)["v_kms"]
    prep = prepare_observed(spectra, wave_model, v_kms=v, ebv_mw=ebv, broaden=False)
    good = np.isfinite(prep.flux) & np.isfinite(prep.var) & (prep.var > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without data: not fitted
        level = np.nanmedian(np.where(good, prep.flux, np.nan), axis=1)
    fit_ok = (good.mean(axis=1) > MIN_GOOD_FRACTION) & (level > 0)
    out = Table()
    out["name"] = spectra.names
    n_bins = age_bins.size - 1
    cols = {
        f"ppxf_{k}": np.full(n, np.nan)
        for k in ("mw_log_age", "lw_log_age", "mw_zh", "lw_zh", "sigma_kms", "chi2")
    }
    cols["ppxf_sfh"] = np.full((n, n_bins), np.nan)
    cols["ppxf_zh"] = np.full((n, n_bins), np.nan)
    if fit_ok.any():
        fits_ = fit_arrays(
            wave_model,
            np.where(good, prep.flux, np.nan)[fit_ok],
            np.sqrt(np.where(good, prep.var, np.nan))[fit_ok],
            age_bins,
            regul=DEFAULT_REGUL if regul is None else regul,
            workers=workers,
            library=library,
            progress=False,
            good=good[fit_ok],
        )
        for k in ("mw_log_age", "lw_log_age", "mw_zh", "lw_zh", "sigma_kms", "chi2", "sfh", "zh"):
            cols[f"ppxf_{k}"][fit_ok] = fits_[k]
    for k, values in cols.items():
        out[k] = values
    out.meta["age_bins_yr"] = [float(a) for a in age_bins]
    return out
