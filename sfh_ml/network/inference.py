"""Inference: predict histories, evaluate against truth, predict files.

:func:`predict` takes arrays in physical units. Before the network sees them, missing values are
masked (:func:`mask_missing`) and every object gets a quality flag (:func:`quality_flags`, a bit
mask of :data:`QUALITY_FLAGS`, 0 = good); objects that cannot be trusted (:data:`QUALITY_UNUSABLE`)
get NaN predictions, never plausible numbers. :func:`predict_file` runs a model over an HDF5 file
chunk by chunk and writes the predictions atomically, never over an existing file unless asked and
never over an input; :func:`evaluate` scores a model on a labelled synthetic set with
:mod:`sfh_ml.network.metrics`.
"""

import functools
import json
import math
import os

import h5py
import keras
import numpy as np
from tqdm import tqdm

from ..files import check_output, tmp_path
from ..utils import MISSING_VALUES, as_str, check_positive_int, is_missing, pixel_edges
from . import metrics
from . import trust as trust_lib
from .goodness import GOODNESS_KEYS
from .loading import ModelFileError, load_data, load_model  # noqa: F401  (ModelFileError: older imports)
from .metadata import check_compatible, get_metadata
from .quality import (
    QUALITY_FEW_PIXELS,
    QUALITY_FLAGS,
    QUALITY_MISSING_BANDS,
    QUALITY_NEGATIVE_SPECTRUM,
    QUALITY_NO_NOISE,
    QUALITY_NO_SPECTRUM,
    QUALITY_OUT_OF_DISTRIBUTION,
    QUALITY_PHOTOMETRY_SCALE,
    QUALITY_UNTRUSTED,
    QUALITY_UNUSABLE,
    QUALITY_WRONG_REDSHIFT,
)

__all__ = [
    "predict",
    "evaluate",
    "predict_file",
    "mask_missing",
    "quality_flags",
    "describe_quality",
    "NoUsableObjectError",
    "PREDICTION_KEYS",
    "INTERVAL_KEYS",
    "MISSING_VALUES",
]

PREDICTION_KEYS = ("sfh", "sfh_cum", "sfh_cum_sigma", "zh", "zh_sigma")
# The 2-sigma half-widths (95.45 % intervals; 2 sigma where the model has no tail factors).
INTERVAL_KEYS = ("sfh_cum_2sigma", "zh_2sigma")
READ_CHUNK = 16384  # rows read from HDF5 at a time
# Rows masked and checked at a time (mask_missing, quality_flags): a block's temporaries (a few MB on
# the MUSE grid) stay in the CPU caches, which makes the checks ~3x faster than on whole arrays.
QUALITY_BLOCK = 256

# ----------------------------------------------------------------------------------------- quality
MIN_VALID_FRACTION = 0.5  # fewer usable pixels than this fraction: QUALITY_FEW_PIXELS
# Band flux over the spectrum's mean flux density in the band: outside [1/30, 30] the two cannot be
# the same object in the same units (dust, apertures and partial overlap move it by tens of per cent).
PHOT_SCALE_TOLERANCE = 30.0
MIN_BAND_OVERLAP = 0.5  # a band is compared with the spectrum if this much of its throughput is covered


def mask_missing(spectra, photometry):
    """Missing values as NaN, which the network masks.

    Spectra: non-finite pixels, exact zeros (the fill value of cube pipelines outside the field or
    in masked spaxels), the flags :data:`MISSING_VALUES`, ``|f| >= 1e30`` and the masked entries of a
    :class:`numpy.ma.MaskedArray` (see :func:`sfh_ml.utils.is_missing`). Photometry: the same, and
    any band flux <= 0 (a PHANGS non-detection or flag carries no usable colour).

    Parameters
    ----------
    spectra : array or numpy.ma.MaskedArray, shape (n, n_wave)
    photometry : array or numpy.ma.MaskedArray, shape (n, n_bands)

    Returns
    -------
    spectra, photometry : ndarray, float32
        Copies with NaN where the input was missing.
    """
    return _masked_spectra(spectra), _masked_photometry(photometry)


def _masked_spectra(spectra):
    """A float32 copy of spectra with NaN where missing or exactly 0 (see :func:`mask_missing`)."""
    spectra = _nan_filled(spectra)
    for block in [spectra] if spectra.ndim != 2 else _row_blocks(spectra):  # views: masked in place
        block[_missing_pixels(block)] = np.nan
    return spectra


def _missing_pixels(spectra):
    """Where :func:`mask_missing` puts NaN in spectra (any shape): missing values and exact zeros."""
    return is_missing(spectra) | (spectra == 0)


def _masked_photometry(photometry):
    """A float32 copy of photometry with NaN where missing or <= 0 (see :func:`mask_missing`)."""
    photometry = _nan_filled(photometry)
    with np.errstate(invalid="ignore"):
        photometry[is_missing(photometry) | ~(photometry > 0)] = np.nan
    return photometry


def _row_blocks(values):
    """Views of :data:`QUALITY_BLOCK` rows each of a 2-D array."""
    return [values[start : start + QUALITY_BLOCK] for start in range(0, len(values), QUALITY_BLOCK)]


def _nan_filled(values, dtype=np.float32, copy=True):
    """``values`` as a plain array (a copy unless ``copy`` is False and no conversion is needed), the
    masked entries of a MaskedArray as NaN."""
    if np.ma.isMaskedArray(values):
        return np.ma.filled(np.ma.asarray(values).astype(dtype), np.nan)
    return np.array(values, dtype=dtype) if copy else np.asarray(values, dtype=dtype)


@functools.lru_cache(maxsize=8)
def _band_overlap(filters, wave_bytes):
    """Throughput weights of each band on the spectral pixels, and each band's full weight.

    Returns ``(weights (n_bands, n_wave), totals (n_bands,))``, or None if pyphot does not know a
    band (then the photometry cannot be compared with the spectrum).
    """
    from ..synthesis.photometry import load_filters

    wave_aa = np.frombuffer(wave_bytes, dtype=np.float64)
    try:
        curves = load_filters(list(filters))
    except (KeyError, ImportError, OSError):
        return None
    dw = np.diff(pixel_edges(wave_aa))  # (n_wave,)
    # photon-weighted band mean (as photometry.band_weights): weight T(lambda) lambda dlambda
    weights = np.array([np.interp(wave_aa, fw, ft, left=0.0, right=0.0) * wave_aa * dw for fw, ft in curves])
    totals = np.array([np.trapezoid(ft * fw, fw) for fw, ft in curves])  # (n_bands,)
    return weights.astype(np.float32), totals.astype(np.float32)


def _photometry_ratio(block, valid, photometry, overlap):
    """Band flux over the spectrum's photon-weighted mean flux in the band's overlap, (b, n_bands).

    ``block`` (b, n_wave) are spectra, ``valid`` their usable pixels, ``photometry`` (b, n_bands)
    their fluxes and ``overlap`` what :func:`_band_overlap` gives. NaN where a band is missing or
    covered by usable pixels for less than :data:`MIN_BAND_OVERLAP` of its throughput.
    """
    weights, totals = overlap  # (n_bands, n_wave), (n_bands,)
    covered = valid.astype(np.float32) @ weights.T  # (b, n_bands)
    level = np.where(valid, block, 0.0) @ weights.T / np.maximum(covered, np.finfo(np.float32).tiny)
    level[covered < MIN_BAND_OVERLAP * totals] = np.nan
    return photometry / level


def quality_flags(spectra, photometry, wave_aa=None, filters=None, min_valid_fraction=MIN_VALID_FRACTION):
    """Per-object quality flags (bit mask of :data:`QUALITY_FLAGS`; 0 = good).

    Parameters
    ----------
    spectra : ndarray, shape (n, n_wave)
        Flux densities per Angstrom, missing pixels NaN (see :func:`mask_missing`).
    photometry : ndarray, shape (n, n_bands)
        Band-mean flux densities per Angstrom in the spectra's units, missing bands NaN.
    wave_aa : array, shape (n_wave,), optional
        Wavelengths of the pixels, Angstrom.
    filters : sequence of str, optional
        pyphot names of the bands. With ``wave_aa``, each band that overlaps the spectrum (by at
        least half its throughput, on usable pixels) is compared with the spectrum's mean flux
        density there: a ratio beyond 30 either way sets :data:`QUALITY_PHOTOMETRY_SCALE` (fluxes
        in another unit, e.g. mJy against erg/s/cm2/A). Without them, or for bands pyphot does
        not know, no comparison is made.
    min_valid_fraction : float
        Fewer usable pixels than this fraction sets :data:`QUALITY_FEW_PIXELS`.

    Returns
    -------
    ndarray, shape (n,), int32
        :data:`QUALITY_NO_SPECTRUM` (no usable pixel), :data:`QUALITY_FEW_PIXELS`,
        :data:`QUALITY_NEGATIVE_SPECTRUM` (median of the usable pixels < 0),
        :data:`QUALITY_PHOTOMETRY_SCALE` and :data:`QUALITY_MISSING_BANDS` (informative only).
    """
    return _quality_flags(spectra, photometry, _overlap_of(wave_aa, filters), min_valid_fraction)


def _overlap_of(wave_aa, filters):
    """:func:`_band_overlap` of the bands on the grid (cached), or None without them: no photometry
    check (None too for a band pyphot lacks)."""
    if wave_aa is None or filters is None:
        return None
    return _band_overlap(tuple(filters), np.asarray(wave_aa, dtype=np.float64).tobytes())


def _quality_flags(spectra, photometry, overlap, min_valid_fraction, raw=False):
    """:func:`quality_flags`, block by block; ``overlap`` from :func:`_band_overlap` (None: no
    photometry check). ``raw``: the spectra are not masked yet, and the pixels :func:`mask_missing`
    would set to NaN count as missing (the same flags, without a masked copy of the spectra)."""
    n, n_wave = spectra.shape
    n_valid, n_negative = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)  # (n,)
    ratio = np.full(photometry.shape, np.nan, dtype=np.float32)  # (n, n_bands)
    for start in range(0, n, QUALITY_BLOCK):
        rows = slice(start, start + QUALITY_BLOCK)
        block = spectra[rows]  # (b, n_wave)
        valid = ~_missing_pixels(block) if raw else np.isfinite(block)
        negative = (block < 0) & valid if raw else block < 0  # NaN compares False
        n_valid[rows] = np.count_nonzero(valid, axis=1)
        n_negative[rows] = np.count_nonzero(negative, axis=1)
        if overlap is not None:
            ratio[rows] = _photometry_ratio(block, valid, photometry[rows], overlap)
    flags = np.zeros(n, dtype=np.int32)
    flags[n_valid == 0] |= QUALITY_NO_SPECTRUM
    flags[(n_valid > 0) & (n_valid < min_valid_fraction * n_wave)] |= QUALITY_FEW_PIXELS
    flags[(n_valid > 0) & (2 * n_negative > n_valid)] |= QUALITY_NEGATIVE_SPECTRUM
    flags[np.isnan(photometry).any(axis=1)] |= QUALITY_MISSING_BANDS
    with np.errstate(invalid="ignore", divide="ignore"):
        off = np.abs(np.log10(ratio)) > math.log10(PHOT_SCALE_TOLERANCE)  # NaN -> False
    flags[off.any(axis=1)] |= QUALITY_PHOTOMETRY_SCALE
    return flags


def describe_quality(quality):
    """How many objects carry each flag: ``{"good": n0, "no_spectrum": n1, ...}`` (only non-zero counts)."""
    quality = np.asarray(quality)
    counts = {"good": int((quality == 0).sum())}
    counts.update({name: int((quality & bit > 0).sum()) for name, bit in QUALITY_FLAGS.items()})
    return {name: count for name, count in counts.items() if count}


# ----------------------------------------------------------------------------------------- models
class NoUsableObjectError(ValueError):
    """Not one object of the input is usable (see :data:`QUALITY_UNUSABLE`)."""


def _load_model(model_or_path):
    """A model, or a list of them for a list (an ensemble) of models or paths."""
    if isinstance(model_or_path, list | tuple):
        return [_load_model(m) for m in model_or_path]
    return model_or_path if isinstance(model_or_path, keras.Model) else load_model(model_or_path)


def _first(model):
    """The model itself, or the first member of an ensemble (which the others must match)."""
    return model[0] if isinstance(model, list) else model


def _check_inputs(meta, spectra, photometry, batch_size):
    check_positive_int(batch_size, "batch_size (--batch-size)")
    # no copy of the spectra (predict masks them batch by batch); masked entries: missing, as NaN
    spectra = np.atleast_2d(_nan_filled(spectra, copy=False))
    photometry = np.atleast_2d(_nan_filled(photometry, copy=False))
    if spectra.size == 0 or len(spectra) == 0:
        raise ValueError(
            f"no spectra to predict (spectra has shape {spectra.shape}): give at least one spectrum "
            f"of {meta['n_wave']} pixels"
        )
    if spectra.ndim != 2 or spectra.shape[1] != meta["n_wave"]:
        raise ValueError(
            f"wavelength grid mismatch: the model expects spectra of shape (n, {meta['n_wave']}), "
            f"got {spectra.shape}"
        )
    if photometry.ndim != 2 or photometry.shape[1] != meta["n_bands"]:
        raise ValueError(
            f"the model expects photometry of shape (n, {meta['n_bands']}) (bands {meta['filters']}), "
            f"got {photometry.shape}"
        )
    if spectra.shape[0] != photometry.shape[0]:
        raise ValueError(f"{spectra.shape[0]} spectra but {photometry.shape[0]} photometry rows")
    return spectra, photometry


def _predict_members(models, spectra, photometry, rows, batch_size, verbose):
    """Each network's raw outputs ``{"sfh", "zh"}`` (n_rows, n_bins, 2) on the objects ``rows``.

    ``spectra`` (n, n_wave) are not masked yet (:func:`mask_missing` is applied here), ``photometry``
    (n, n_bands) is. Silent (``verbose=0``), each batch is gathered and masked into one buffer and
    goes through every member's compiled predict step (``predict_on_batch``): the same batches and
    graph as ``model.predict``, without its tf.data pipeline, and without a masked copy of all the
    spectra (a fresh allocation of that size costs up to a third of the network's time once
    TensorFlow has run).
    """
    if verbose:  # Keras's progress bar comes with model.predict
        x = {"spectrum": _masked_spectra(spectra[rows]), "photometry": photometry[rows]}
        return [model.predict(x, batch_size=batch_size, verbose=verbose) for model in models]
    buffer = np.empty((min(batch_size, rows.size), spectra.shape[1]), dtype=np.float32)
    outputs = [[] for _ in models]  # per member, per batch
    for start in range(0, rows.size, batch_size):
        index = rows[start : start + batch_size]
        batch = buffer[: index.size]
        np.take(spectra, index, axis=0, out=batch, mode="clip")  # "clip": not buffered; index is valid
        for block in _row_blocks(batch):
            block[_missing_pixels(block)] = np.nan
        x = {"spectrum": batch, "photometry": photometry[index]}
        for member, model in zip(outputs, models):
            member.append(model.predict_on_batch(x))
    return [{key: np.concatenate([b[key] for b in member]) for key in ("sfh", "zh")} for member in outputs]


def _calibrated(model, out):
    """One network's mass fractions, cumulative sigma, [M/H] and its sigma, and the 2-sigma half-widths
    of the cumulative SFH and of [M/H], each (n, n_bins), from its raw outputs ``out``: the sigmas
    times the model's calibration factors, the half-widths 2 sigma times its tail factors (1 where
    it has none)."""
    sfh, zh = (np.asarray(out[k], dtype=np.float64) for k in ("sfh", "zh"))  # (n, n_bins, 2)
    meta = get_metadata(model)
    scale = lambda key: 1.0 if meta.get(key) is None else meta[key]  # (n_bins,)
    cum_sigma = np.exp(sfh[..., 1]) * scale("sigma_scale_sfh_cum")
    zh_sigma = np.exp(zh[..., 1]) * scale("sigma_scale_zh")
    cum_2sigma = 2.0 * cum_sigma * scale("tail_scale_sfh_cum")
    zh_2sigma = 2.0 * zh_sigma * scale("tail_scale_zh")
    return sfh[..., 0], cum_sigma, zh[..., 0], zh_sigma, cum_2sigma, zh_2sigma


# ----------------------------------------------------------------------------------------- predict
def predict(
    model,
    spectra,
    photometry,
    batch_size=1024,
    verbose=0,
    wave_aa=None,
    filters=None,
    min_valid_fraction=MIN_VALID_FRACTION,
    goodness=False,
    noise=None,
    photometry_err=None,
    trust=False,
    trust_params=None,
):
    """Predict SFHs and [M/H] histories with uncertainties, and a quality flag per object.

    Parameters
    ----------
    model : keras.Model or list of keras.Model
        One network, or several trained alike (a deep ensemble: means averaged, and the spread of
        the members' means added in quadrature to their mean variance). The sigmas of each network
        are multiplied by its calibration factors (``get_metadata(model)["sigma_scale_sfh_cum"]``,
        ``["sigma_scale_zh"]``, set by :func:`sfh_ml.network.calibrate`), if it has any.
    spectra : array, shape (n, n_wave)
        Flux densities per Angstrom in any units. NaN, inf, exact zeros, -9999 (and the other
        :data:`MISSING_VALUES`) and ``|f| >= 1e30`` are masked pixels.
    photometry : array, shape (n, n_bands)
        Band-mean flux densities per Angstrom in the spectra's units. NaN, values <= 0 (-9999,
        the PHANGS missing-value flag, among them) and ``>= 1e30`` are missing bands.
    batch_size : int
    verbose : int
        Keras progress bar (0 = silent).
    wave_aa : array, shape (n_wave,), optional
        Wavelengths of the spectral pixels, Angstrom: checked against the model's grid
        (ValueError if they differ by more than 1e-3 A). Without it the spectra are *assumed* to be
        on the model's grid and only their pixel count is checked: pass it for any spectra that
        were not made for this model.
    filters : sequence of str, optional
        Names of the photometry columns, in order: checked against the model's bands. Without
        it the columns are assumed to be in the model's order (``get_metadata(model)["filters"]``).
    min_valid_fraction : float
        Objects with fewer usable pixels than this fraction are unusable.
    goodness : bool
        Also re-synthesise each prediction and score its fit to the data
        (:func:`sfh_ml.network.goodness.resynthesis_fit`; needs ``noise`` and the SSP library, and
        costs about 1 ms per spectrum on 2 cores, 5 times the network's own time); objects with
        ``ood_score > 1`` get :data:`QUALITY_OUT_OF_DISTRIBUTION`, objects that cannot be scored
        (no usable noise) :data:`QUALITY_NO_NOISE`. The score is measured against the
        model's own thresholds (``get_metadata(model)["ood_thresholds"]``, set by
        :func:`sfh_ml.network.calibrate_ood`; for an ensemble, those of its first member, which
        also gives the grids), else against :data:`sfh_ml.network.goodness.OOD_THRESHOLDS`, those
        of the first shipped network (a rough guess for any other network: calibrate it).
    noise : array, shape (n, n_wave), optional
        1-sigma noise of the spectra, same units (NaN, inf, <= 0: pixel left out of the fit; an
        object with no pixel left gets :data:`QUALITY_NO_NOISE` and NaN scores). Required with
        ``goodness``.
    photometry_err : array, shape (n, n_bands), optional
        1-sigma errors of the fluxes; without them the fluxes stay out of the fit and ``phot_rms``
        is NaN.
    trust : bool
        Also score how far to trust each answer (:mod:`sfh_ml.network.trust`; one more pass of the
        network, without the fluxes): ``trust`` in [0, 1], :data:`QUALITY_UNTRUSTED` below the
        parameters' threshold. With ``goodness`` also the wrong-redshift check
        (:func:`sfh_ml.network.trust.redshift_offset`): ``redshift_offset_kms``, and
        :data:`QUALITY_WRONG_REDSHIFT` where the features match the model best away from lag 0.
    trust_params : dict, optional
        :func:`sfh_ml.network.trust.fit_trust` output (default: the model's own, set by
        :func:`sfh_ml.network.calibrate_trust`, else :data:`sfh_ml.network.trust.TRUST_PARAMS`,
        fitted for the first shipped network; for an ensemble, its first member's).

    Returns
    -------
    dict
        ``sfh`` (mass fraction per bin), ``sfh_cum`` (cumulative from the youngest bin),
        ``sfh_cum_sigma``, ``zh`` (dex), ``zh_sigma`` (dex), and the 2-sigma half-widths
        ``sfh_cum_2sigma`` and ``zh_2sigma`` (:data:`INTERVAL_KEYS`: the intervals that hold 95.45 %
        of the truths, 2 sigma times the model's tail factors, set by
        :func:`sfh_ml.network.calibrate`; 2 sigma without them): each shape (n, n_bins), float64, NaN
        for unusable objects; ``quality``: shape (n,), int32, the flags of :func:`quality_flags`
        (0 = good; objects with a bit of :data:`QUALITY_UNUSABLE` have NaN predictions). No
        exception is raised when no object is usable: check ``quality``. With ``goodness``, also
        :data:`~sfh_ml.network.goodness.GOODNESS_KEYS`, shape (n,) each (NaN where not fitted):
        ``chi2_pixel`` (chi-square per fitted pixel), ``phot_rms`` (rms of (obs - model) / err
        over the bands), ``ood_score`` (> 1: out of distribution). With ``trust``: ``trust`` (n,),
        NaN where not predicted; with ``goodness`` too, ``redshift_offset_kms`` (n,).
    """
    models = list(model) if isinstance(model, list | tuple) else [model]
    meta = get_metadata(models[0])
    for other in models[1:]:
        other_meta = get_metadata(other)
        if any(other_meta[k] != meta[k] for k in ("n_wave", "n_bands", "n_bins", "zh_range")):
            raise ValueError("ensemble members must share n_wave, n_bands, n_bins and zh_range")
    if not 0 <= min_valid_fraction <= 1:
        raise ValueError(f"min_valid_fraction must be in [0, 1], got {min_valid_fraction}")
    check_compatible(models[0], wave_aa, None, filters)
    if goodness and noise is None:
        raise ValueError("goodness=True needs the noise of the spectra (noise=)")
    spectra, photometry = _check_inputs(meta, spectra, photometry, batch_size)  # spectra: not copied
    photometry = _masked_photometry(photometry)
    overlap = _overlap_of(meta["wave_aa"], meta["filters"])
    quality = _quality_flags(spectra, photometry, overlap, min_valid_fraction, raw=True)
    usable = (quality & QUALITY_UNUSABLE) == 0  # (n,)
    out = {key: np.full((len(spectra), meta["n_bins"]), np.nan) for key in PREDICTION_KEYS + INTERVAL_KEYS}
    if usable.any():
        raw = _predict_members(models, spectra, photometry, np.flatnonzero(usable), batch_size, verbose)
        members = [_calibrated(m, r) for m, r in zip(models, raw)]
        # each (n_models, n_usable, n_bins)
        sfh, cum_sigma, zh, zh_sigma, cum_2sigma, zh_2sigma = (np.stack(v) for v in zip(*members))
        cum = np.cumsum(sfh, axis=-1)
        out["sfh"][usable] = sfh.mean(0)
        out["sfh_cum"][usable] = cum.mean(0)
        out["sfh_cum_sigma"][usable] = np.sqrt(np.mean(cum_sigma**2, 0) + cum.var(0))
        out["zh"][usable] = zh.mean(0)
        out["zh_sigma"][usable] = np.sqrt(np.mean(zh_sigma**2, 0) + zh.var(0))
        # the members' spread widens the 2-sigma intervals as it widens the sigmas
        out["sfh_cum_2sigma"][usable] = np.sqrt(np.mean(cum_2sigma**2, 0) + 4.0 * cum.var(0))
        out["zh_2sigma"][usable] = np.sqrt(np.mean(zh_2sigma**2, 0) + 4.0 * zh.var(0))
    if trust:
        trust_params = trust_params or meta.get("trust_params") or trust_lib.TRUST_PARAMS
        out["trust"] = _trust(models, meta, out, spectra, photometry, usable, batch_size, trust_params)
        threshold = trust_params["threshold"]
        quality[out["trust"] < threshold] |= QUALITY_UNTRUSTED  # NaN compares False
    if goodness:
        masked = _masked_spectra(spectra)
        scores = _goodness(meta, out, masked, noise, photometry, photometry_err, models=trust)
        if trust:
            offset = trust_lib.redshift_offset(masked, noise, scores.pop("model_spectra"), meta["wave_aa"])
            out["redshift_offset_kms"] = offset["offset_kms"]
            quality[trust_lib.wrong_redshift(offset)] |= QUALITY_WRONG_REDSHIFT
        out.update(scores)
        quality[scores["ood_score"] > 1] |= QUALITY_OUT_OF_DISTRIBUTION  # NaN compares False
        # predicted, yet not scored: no pixel with a usable noise (NaN, inf or <= 0 everywhere)
        quality[usable & ~np.isfinite(scores["chi2_pixel"])] |= QUALITY_NO_NOISE
    out["quality"] = quality
    return out


def _trust(models, meta, out, spectra, photometry, usable, batch_size, params):
    """The trust score of each object (n,), NaN where not predicted: a second pass without the fluxes."""
    if params is None and trust_lib.TRUST_PARAMS is None:
        raise ValueError("no trust parameters: fit them with sfh_ml.network.trust.fit_trust")
    score = np.full(len(spectra), np.nan)
    rows = np.flatnonzero(usable)
    if rows.size:
        no_phot = np.full_like(photometry, np.nan)
        raw = _predict_members(models, spectra, no_phot, rows, batch_size, 0)
        sfh = np.mean([_calibrated(m, r)[0] for m, r in zip(models, raw)], axis=0)
        mine = {key: out[key][rows] for key in ("sfh", "sfh_cum_sigma", "zh_sigma")}
        features = trust_lib.trust_features(mine, {"sfh": sfh}, meta["age_bins_yr"])
        score[rows] = trust_lib.trust_score(features, params)
    return score


def _goodness(meta, pred, spectra, noise, photometry, photometry_err, keys=GOODNESS_KEYS, models=False):
    """``keys`` (default :data:`GOODNESS_KEYS`) of :func:`sfh_ml.network.goodness.resynthesis_fit`,
    each (n,), with the OOD thresholds of the model ``meta`` describes (the module's if it has none);
    with ``models`` also ``model_spectra`` (n, n_wave)."""
    from .goodness import resynthesis_fit

    n = len(spectra)
    noise = np.atleast_2d(_nan_filled(noise, np.float64))  # masked entries: no noise
    if noise.shape != spectra.shape:
        raise ValueError(f"noise has shape {noise.shape}, the spectra {spectra.shape}")
    if photometry_err is None:
        photometry_err = np.full(photometry.shape, np.nan)
    photometry_err = np.atleast_2d(np.asarray(photometry_err, dtype=np.float64))
    if photometry_err.shape != photometry.shape:
        raise ValueError(
            f"photometry_err has shape {photometry_err.shape}, the photometry {photometry.shape}"
        )
    if meta["age_bins_yr"] is None or meta["filters"] is None or meta["wave_aa"] is None:
        raise ValueError("the goodness of fit needs a model that records its grids, bands and age bins")
    fit = resynthesis_fit(
        pred,
        spectra,
        noise,
        photometry,
        photometry_err,
        meta["wave_aa"],
        meta["filters"],
        meta["age_bins_yr"],
        ood_thresholds=meta.get("ood_thresholds"),
        return_models=models,
    )
    out = {key: np.asarray(fit[key], dtype=np.float64).reshape(n) for key in keys}
    if models:
        out["model_spectra"] = fit["model_spectra"]
    return out


def _band_order(file_filters, filters, data_path, meta):
    """The band order of a file's photometry: its ``filters`` dataset or the one given (equal if both)."""
    if filters is not None:
        filters = [as_str(f) for f in filters]
        if file_filters is not None and list(file_filters) != filters:
            raise ValueError(
                f"{data_path} lists its bands as {list(file_filters)}, but the filters given are {filters}: "
                "drop --filters (filters=) or correct the file"
            )
        return filters
    if file_filters is None:
        raise ValueError(
            f"{data_path} has no 'filters' dataset, so the order of its photometry columns is unknown: "
            "give it with --filters NAME,NAME,... (Python: filters=[...]); the model expects "
            f"{meta['filters']}"
        )
    return list(file_filters)


def _no_usable_message(source, quality):
    counts = ", ".join(f"{name} {count}" for name, count in describe_quality(quality).items())
    return (
        f"no usable object in {source} ({len(quality)} objects; flags: {counts}): see "
        "sfh_ml.network.inference.QUALITY_FLAGS; check the units and the missing-value flags of the input"
    )


# ----------------------------------------------------------------------------------------- evaluate
def evaluate(
    model_or_path, data_path, n_max=None, batch_size=1024, noiseless=False, snr_bins=None, filters=None
):
    """Metrics of a model on a labelled data set.

    Parameters
    ----------
    model_or_path : keras.Model or str, or a list of them
        A network, or the members of an ensemble (see :func:`predict`).
    data_path : str or Path
        HDF5 with the training-set schema (its grids must match the model's).
    n_max : int, optional
        Evaluate on the first ``n_max`` objects only.
    noiseless : bool
        Use the noiseless inputs.
    snr_bins : sequence of float, optional
        S/N bin edges (default :data:`sfh_ml.network.metrics.DEFAULT_SNR_BINS`).
    filters : sequence of str, optional
        Band order of the file's photometry; required if the file has no ``filters`` dataset.

    Returns
    -------
    dict
        :func:`sfh_ml.network.metrics.evaluate_predictions` over the usable objects (bin and exact
        levels; the exact one against the file's per-object truths, see
        :data:`sfh_ml.network.loading.MEAN_TRUTH_KEYS`), plus ``model`` (version), ``data``
        (path), ``n_unusable`` (objects left out), ``quality`` (counts per flag, see
        :func:`describe_quality`), ``light_table`` (where the light table of the light-weighted
        means came from: ``"model"``, ``"data"`` when the model has none, or None: skipped) and
        ``sigma_calibrated`` (whether the model's sigmas carry calibration factors).

    Raises
    ------
    NoUsableObjectError
        Not one object is usable.
    """
    model = _load_model(model_or_path)
    meta = get_metadata(_first(model))
    data = load_data(data_path, n_max=n_max, noiseless=noiseless)
    bands = _band_order(data["filters"], filters, data_path, meta)
    check_compatible(_first(model), data["wave_aa"], data["age_bins_yr"], bands)
    pred = predict(model, data["spectra"], data["photometry"], batch_size=batch_size)
    quality = np.asarray(pred.get("quality", np.zeros(len(data["sfh"]), np.int32)))
    usable = (quality & QUALITY_UNUSABLE) == 0  # (n,)
    if not usable.any():
        raise NoUsableObjectError(_no_usable_message(data_path, quality))
    bin_light, zh_grid, source, note = _light_table(meta, data, data_path)
    truth = {"sfh": data["sfh"][usable], "zh": data["zh"][usable]}
    truth.update({key: value[usable] for key, value in data["mean_truth"].items()})
    result = metrics.evaluate_predictions(
        {key: pred[key][usable] for key in PREDICTION_KEYS},
        truth,
        data["age_bins_yr"],
        snr=None if data["snr"] is None else data["snr"][usable],
        snr_bins=metrics.DEFAULT_SNR_BINS if snr_bins is None else snr_bins,
        bin_light=bin_light,
        zh_grid=zh_grid,
    )
    if note:
        result["notes"].insert(0, note)
    return {
        "model": meta["version"],
        "data": str(data_path),
        "n_unusable": int((~usable).sum()),
        "quality": describe_quality(quality),
        "light_table": source,
        "sigma_calibrated": _is_calibrated(meta),
        **result,
    }


def _is_calibrated(meta):
    """Whether a model's sigmas carry calibration factors (:func:`sfh_ml.network.calibrate`)."""
    return meta["sigma_scale_sfh_cum"] is not None or meta["sigma_scale_zh"] is not None


def _light_table(meta, data, data_path):
    """The light table for evaluation: the model's, else the data's; (bin_light, zh_grid, source, note)."""
    model_table, data_table = (meta["bin_light"], meta["zh_grid"]), (data["bin_light"], data["zh_grid"])
    if model_table[0] is None:
        if data_table[0] is None:
            return None, None, None, None
        note = f"the model carries no light table: the light-weighted means use that of {data_path}"
        return *data_table, "data", note
    note = None
    same = data_table[0] is not None and all(
        a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=0) for a, b in zip(model_table, data_table)
    )
    if data_table[0] is not None and not same:
        note = (
            f"the model's light table differs from that of {data_path} (another SSP library?): "
            "the model's is used"
        )
    return *model_table, "model", note


# ----------------------------------------------------------------------------------------- files
def _per_object_keys(f, n):
    """Root datasets with one value per object (identifiers, scalars), except the predictions."""
    is_per_object = lambda d: isinstance(d, h5py.Dataset) and d.shape == (n,)
    return [k for k, d in f.items() if is_per_object(d) and k not in PREDICTION_KEYS + ("quality",)]


def _open_input(path):
    try:
        return h5py.File(path, "r")
    except OSError as err:
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such input file: {path}") from None
        raise OSError(f"cannot read {path} as HDF5: {err}") from None


def _noise_of(src, start, stop):
    """The 1-sigma noise of rows ``start:stop`` of a file: its ``noise``, or from its ``ivar``."""
    if "noise" in src:
        return src["noise"][start:stop]
    with np.errstate(divide="ignore"):
        return 1.0 / np.sqrt(src["ivar"][start:stop].astype(np.float64))


def _write_predictions(model, meta, src, dst, bands, batch_size, chunk, goodness=False, trust=False):
    """Predict ``src`` chunk by chunk into ``dst``; returns the quality flags, shape (n,)."""
    n = src["spectra"].shape[0]
    for key in PREDICTION_KEYS:
        dst.create_dataset(key, (n, meta["n_bins"]), dtype=np.float32)
    trust_keys = trust_lib.TRUST_KEYS if trust and goodness else trust_lib.TRUST_KEYS[:1] if trust else ()
    extra = ("mw_log_age_pred", "mw_zh_pred") + (GOODNESS_KEYS if goodness else ()) + trust_keys
    for key in extra:
        dst.create_dataset(key, (n,), dtype=np.float32)
    quality = np.zeros(n, dtype=np.int32)
    for start in tqdm(range(0, n, chunk), desc="predict", disable=n <= chunk):
        stop = min(start + chunk, n)
        spectra, photometry = src["spectra"][start:stop], src["photometry"][start:stop]
        if goodness:
            err = src["photometry_err"][start:stop] if "photometry_err" in src else None
            pred = predict(
                model,
                spectra,
                photometry,
                batch_size,
                goodness=True,
                noise=_noise_of(src, start, stop),
                photometry_err=err,
                trust=trust,
            )
            for key in GOODNESS_KEYS:
                dst[key][start:stop] = pred[key]
        else:
            pred = predict(model, spectra, photometry, batch_size, trust=trust)
        for key in trust_keys:
            dst[key][start:stop] = pred[key]
        for key in PREDICTION_KEYS:
            dst[key][start:stop] = pred[key]
        with np.errstate(invalid="ignore"):  # NaN rows of unusable objects stay NaN
            dst["mw_log_age_pred"][start:stop] = metrics.mean_log_age(pred["sfh"], meta["age_bins_yr"])
            dst["mw_zh_pred"][start:stop] = metrics.mean_zh(pred["sfh"], pred["zh"])
        quality[start:stop] = pred["quality"]
    dst["quality"] = quality
    dst["quality"].attrs["flags"] = json.dumps(QUALITY_FLAGS)
    dst["quality"].attrs["unusable"] = QUALITY_UNUSABLE
    dst["index"] = np.arange(n)
    dst["age_bins_yr"] = meta["age_bins_yr"]
    dst["filters"] = np.array(bands, dtype="S")
    for key in _per_object_keys(src, n):
        if key not in dst:
            src.copy(src[key], dst, name=key)
    return quality


def predict_file(
    model_path,
    data_path,
    out_path,
    batch_size=1024,
    chunk=READ_CHUNK,
    filters=None,
    overwrite=False,
    goodness=False,
    trust=False,
):
    """Predict every object of an HDF5 file and write the predictions to another (atomically).

    The input needs ``spectra`` (n, n_wave), ``photometry`` (n, n_bands) and ``wave_aa``, and the
    band order: its ``filters`` dataset or the ``filters`` argument. Its ``wave_aa``,
    ``age_bins_yr`` (if present) and bands are checked against the model.

    The output holds ``sfh``, ``sfh_cum``, ``sfh_cum_sigma``, ``zh``, ``zh_sigma`` (n, n_bins)
    float32 (see :func:`predict`; NaN for unusable objects), ``quality`` (n,) int32 (the flags of
    :func:`quality_flags`, described in its attributes), ``mw_log_age_pred`` and ``mw_zh_pred``
    (n,), the model's ``age_bins_yr``, ``index`` (row in the input), ``filters`` and copies of the
    input's per-object 1-D datasets (identifiers, S/N, true scalars); its attribute
    ``sigma_calibrated`` says whether the sigmas carry the model's calibration factors. With
    ``goodness``, also ``chi2_pixel``, ``phot_rms`` and ``ood_score`` (n,) float32 (see
    :func:`predict`), and :data:`QUALITY_OUT_OF_DISTRIBUTION` in ``quality``. With ``trust``,
    ``trust`` (n,) float32 and :data:`QUALITY_UNTRUSTED`; with both, also ``redshift_offset_kms``
    and :data:`QUALITY_WRONG_REDSHIFT`.

    Parameters
    ----------
    model_path : str or Path or keras.Model, or a list of them
        A network, or the members of an ensemble (see :func:`predict`).
    data_path, out_path : str or Path
    batch_size : int
    chunk : int
        Objects read from the input at a time.
    filters : sequence of str, optional
        Band order of the input's photometry columns (required if it has no ``filters``).
    overwrite : bool
        Replace an existing ``out_path`` (never the input itself).
    goodness : bool
        Score each prediction's re-synthesis against the data (:func:`predict`): the input needs
        ``noise`` or ``ivar`` (n, n_wave), and ``photometry_err`` (n, n_bands) for the fluxes to
        enter (synthetic sets have all of them).
    trust : bool
        Score how far to trust each answer (:func:`predict`).

    Returns
    -------
    dict
        ``n_objects``, ``n_usable`` and ``quality`` (counts per flag).

    Raises
    ------
    FileExistsError
        ``out_path`` exists and ``overwrite`` is False.
    ValueError
        ``out_path`` is the input or the model, grids or bands differ, or the bands are unknown.
    NoUsableObjectError
        Not one object is usable: nothing is written.

    Nothing is left under ``out_path`` or its temporary name when the call fails.
    """
    given = list(model_path) if isinstance(model_path, list | tuple) else [model_path]
    paths = [str(m) for m in given if not isinstance(m, keras.Model)]
    check_positive_int(batch_size, "batch_size (--batch-size)")
    check_positive_int(chunk, "chunk")
    check_output(out_path, overwrite, inputs=(data_path, *paths))
    model = _load_model(model_path)
    meta = get_metadata(_first(model))
    tmp = tmp_path(out_path)
    try:
        with _open_input(data_path) as src:
            missing = [key for key in ("spectra", "photometry", "wave_aa") if key not in src]
            if missing:
                raise ValueError(f"{data_path} lacks the datasets {missing} (spectra, photometry, wave_aa)")
            if src["spectra"].shape[0] == 0:
                raise ValueError(
                    f"{data_path} holds no spectra (dataset 'spectra' has 0 rows): nothing to predict"
                )
            if src["photometry"].shape[0] != src["spectra"].shape[0]:
                raise ValueError(
                    f"{data_path}: {src['spectra'].shape[0]} spectra but {src['photometry'].shape[0]} "
                    "photometry rows"
                )
            file_filters = as_str(src["filters"][:]) if "filters" in src else None
            bands = _band_order(file_filters, filters, data_path, meta)
            age_bins = src["age_bins_yr"][:] if "age_bins_yr" in src else None
            check_compatible(_first(model), src["wave_aa"][:], age_bins, bands)
            if goodness and "noise" not in src and "ivar" not in src:
                raise ValueError(f"{data_path} has neither 'noise' nor 'ivar': the goodness of fit needs one")
            with h5py.File(tmp, "w") as dst:
                quality = _write_predictions(model, meta, src, dst, bands, batch_size, chunk, goodness, trust)
                dst.attrs.update(model_path="; ".join(paths) if paths else _first(model).name)
                dst.attrs.update(model_version=str(meta["version"]), data_path=str(data_path))
                dst.attrs["sigma_calibrated"] = _is_calibrated(meta)
        usable = (quality & QUALITY_UNUSABLE) == 0
        if not usable.any():
            raise NoUsableObjectError(_no_usable_message(data_path, quality) + "; nothing was written")
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"n_objects": len(quality), "n_usable": int(usable.sum()), "quality": describe_quality(quality)}
