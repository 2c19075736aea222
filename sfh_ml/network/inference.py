"""Inference: load a trained network, predict histories, evaluate against truth, predict files.

:func:`predict` takes arrays in physical units (NaN = masked); :func:`predict_file` runs a model
over an HDF5 file chunk by chunk and writes the predictions atomically; :func:`evaluate` scores a
model on a labelled synthetic set with :mod:`sfh_ml.network.metrics`.
"""

import os

import h5py
import keras
import numpy as np
from tqdm import tqdm

from ..utils import as_str
from . import metrics
from .metadata import check_compatible, get_metadata
from .training import load_data

__all__ = ["load_model", "predict", "evaluate", "predict_file", "PREDICTION_KEYS"]

PREDICTION_KEYS = ("sfh", "sfh_cum", "sfh_cum_sigma", "zh", "zh_sigma")
READ_CHUNK = 16384  # rows read from HDF5 at a time


def load_model(path):
    """Load a network saved by :func:`sfh_ml.network.train` (``.keras``), custom layers included.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    keras.Model
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path}")
    return keras.models.load_model(path)


def _load_model(model_or_path):
    return model_or_path if isinstance(model_or_path, keras.Model) else load_model(model_or_path)


def _check_inputs(meta, spectra, photometry):
    spectra = np.atleast_2d(np.asarray(spectra, dtype=np.float32))
    photometry = np.atleast_2d(np.asarray(photometry, dtype=np.float32))
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


def _predict_one(model, spectra, photometry, batch_size, verbose):
    inputs = {"spectrum": spectra, "photometry": photometry}
    out = model.predict(inputs, batch_size=batch_size, verbose=verbose)
    sfh, zh = (np.asarray(out[k], dtype=np.float64) for k in ("sfh", "zh"))
    return sfh[..., 0], np.exp(sfh[..., 1]), zh[..., 0], np.exp(zh[..., 1])


def predict(model, spectra, photometry, batch_size=1024, verbose=0):
    """Predict SFHs and [M/H] histories with uncertainties.

    Parameters
    ----------
    model : keras.Model or list of keras.Model
        One network, or several trained alike (a deep ensemble: means averaged, and the spread of
        the members' means added in quadrature to their mean variance).
    spectra : array, shape (n, n_wave)
        Flux densities per Angstrom in any units; NaN for masked pixels.
    photometry : array, shape (n, n_bands)
        Band-mean flux densities per Angstrom in the spectra's units; NaN for missing bands.
    batch_size : int
    verbose : int
        Keras progress bar (0 = silent).

    Returns
    -------
    dict of ndarray, each shape (n, n_bins), float64
        ``sfh`` (mass fraction per bin), ``sfh_cum`` (cumulative from the youngest bin),
        ``sfh_cum_sigma``, ``zh`` (dex), ``zh_sigma`` (dex).
    """
    models = list(model) if isinstance(model, list | tuple) else [model]
    meta = get_metadata(models[0])
    for other in models[1:]:
        other_meta = get_metadata(other)
        if any(other_meta[k] != meta[k] for k in ("n_wave", "n_bands", "n_bins", "zh_range")):
            raise ValueError("ensemble members must share n_wave, n_bands, n_bins and zh_range")
    spectra, photometry = _check_inputs(meta, spectra, photometry)
    members = [_predict_one(m, spectra, photometry, batch_size, verbose) for m in models]
    sfh, cum_sigma, zh, zh_sigma = (np.stack(v) for v in zip(*members))  # (n_models, n, n_bins)
    cum = np.cumsum(sfh, axis=-1)
    return {
        "sfh": sfh.mean(0),
        "sfh_cum": cum.mean(0),
        "sfh_cum_sigma": np.sqrt(np.mean(cum_sigma**2, 0) + cum.var(0)),
        "zh": zh.mean(0),
        "zh_sigma": np.sqrt(np.mean(zh_sigma**2, 0) + zh.var(0)),
    }


def evaluate(model_or_path, data_path, n_max=None, batch_size=1024, noiseless=False, snr_bins=None):
    """Metrics of a model on a labelled data set.

    Parameters
    ----------
    model_or_path : keras.Model or str
    data_path : str or Path
        HDF5 with the training-set schema (its grids must match the model's).
    n_max : int, optional
        Evaluate on the first ``n_max`` objects only.
    noiseless : bool
        Use the noiseless inputs.
    snr_bins : sequence of float, optional
        S/N bin edges (default :data:`sfh_ml.network.metrics.DEFAULT_SNR_BINS`).

    Returns
    -------
    dict
        :func:`sfh_ml.network.metrics.evaluate_predictions` plus ``model`` (version) and ``data`` (path).
    """
    model = _load_model(model_or_path)
    data = load_data(data_path, n_max=n_max, noiseless=noiseless)
    check_compatible(model, data["wave_aa"], data["age_bins_yr"], data["filters"])
    pred = predict(model, data["spectra"], data["photometry"], batch_size=batch_size)
    result = metrics.evaluate_predictions(
        pred,
        {"sfh": data["sfh"], "zh": data["zh"]},
        data["age_bins_yr"],
        snr=data["snr"],
        snr_bins=metrics.DEFAULT_SNR_BINS if snr_bins is None else snr_bins,
    )
    return {"model": get_metadata(model)["version"], "data": str(data_path), **result}


def _per_object_keys(f, n):
    """Root datasets with one value per object (identifiers, scalars), except the predictions."""
    is_per_object = lambda d: isinstance(d, h5py.Dataset) and d.shape == (n,)
    return [k for k, d in f.items() if is_per_object(d) and k not in PREDICTION_KEYS]


def predict_file(model_path, data_path, out_path, batch_size=1024, chunk=READ_CHUNK):
    """Predict every object of an HDF5 file and write the predictions to another (atomically).

    The input needs ``spectra`` (n, n_wave), ``photometry`` (n, n_bands) and ``wave_aa``; its
    ``age_bins_yr`` and ``filters``, if present, are checked against the model.

    The output holds ``sfh``, ``sfh_cum``, ``sfh_cum_sigma``, ``zh``, ``zh_sigma`` (n, n_bins)
    float32 (see :func:`predict`), ``mw_log_age_pred`` and ``mw_zh_pred`` (n,), the
    model's ``age_bins_yr``, ``index`` (row in the input), copies of the input's per-object 1-D
    datasets (identifiers, S/N, true scalars) and of its ``filters``.
    """
    model = _load_model(model_path)
    meta = get_metadata(model)
    tmp = f"{out_path}.tmp"
    with h5py.File(data_path, "r") as src, h5py.File(tmp, "w") as dst:
        for key in ("spectra", "photometry", "wave_aa"):
            if key not in src:
                raise ValueError(f"{data_path} lacks the dataset {key!r}")
        age_bins = src["age_bins_yr"][:] if "age_bins_yr" in src else None
        filters = as_str(src["filters"][:]) if "filters" in src else None
        check_compatible(model, src["wave_aa"][:], age_bins, filters)
        n = src["spectra"].shape[0]
        for key in PREDICTION_KEYS:
            dst.create_dataset(key, (n, meta["n_bins"]), dtype=np.float32)
        for key in ("mw_log_age_pred", "mw_zh_pred"):
            dst.create_dataset(key, (n,), dtype=np.float32)
        for start in tqdm(range(0, n, chunk), desc="predict", disable=n <= chunk):
            stop = min(start + chunk, n)
            pred = predict(model, src["spectra"][start:stop], src["photometry"][start:stop], batch_size)
            for key in PREDICTION_KEYS:
                dst[key][start:stop] = pred[key]
            dst["mw_log_age_pred"][start:stop] = metrics.mean_log_age(pred["sfh"], meta["age_bins_yr"])
            dst["mw_zh_pred"][start:stop] = metrics.mean_zh(pred["sfh"], pred["zh"])
        dst["index"] = np.arange(n)
        dst["age_bins_yr"] = meta["age_bins_yr"]
        for key in _per_object_keys(src, n) + (["filters"] if "filters" in src else []):
            if key not in dst:
                src.copy(src[key], dst, name=key)
        dst.attrs.update(model_path=str(model_path), model_version=str(meta["version"]))
        dst.attrs["data_path"] = str(data_path)
    os.replace(tmp, out_path)
