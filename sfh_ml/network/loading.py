"""Reading what the networks are made of and from: saved models and labelled training sets.

:func:`load_model` reads a network saved by :func:`sfh_ml.network.train` (custom layers and losses
registered, damaged files named); :func:`load_data` reads an ``sfh-ml generate`` set into memory,
with its targets checked. Training (:mod:`~sfh_ml.network.training`: resuming a checkpoint) and
inference (:mod:`~sfh_ml.network.inference`: ``evaluate``, ``predict_file``) both read through here,
so neither imports the other.
"""

from pathlib import Path

import keras
import numpy as np

from ..constants import ZH_RANGE
from ..synthesis.dataset import read_dataset
from . import layers, losses  # noqa: F401  (registers the custom layers and losses with Keras)
from .metadata import get_metadata
from .metrics import check_light_table

__all__ = [
    "load_model",
    "load_data",
    "ModelFileError",
    "REQUIRED_KEYS",
    "MEAN_TRUTH_KEYS",
    "XLA_BACKENDS",
]

XLA_BACKENDS = ("tensorflow", "jax")  # backends whose predict loops compile with XLA when asked
REQUIRED_KEYS = ("wave_aa", "spectra", "photometry", "age_bins_yr", "sfh", "zh")
# Optional per-object truths (n,) of a synthetic set, read for the exact-level metrics
# (sfh_ml.network.metrics.EXACT_TRUTH_KEYS); older sets lack some of them.
MEAN_TRUTH_KEYS = ("mw_log_age_exact", "mw_log_age", "mw_zh", "lw_log_age", "lw_zh")
SFH_SUM_ATOL = 1e-3  # rows of sfh must sum to 1 within this
ZH_ATOL = 1e-3  # [M/H] targets may exceed the file's zh_min/zh_max by this much (dex; float32 rounding)


# ----------------------------------------------------------------------------------------- models
class ModelFileError(OSError):
    """A model file exists but cannot be read as an sfh_ml network (damaged, truncated, or another file)."""


def load_model(path):
    """Load a network saved by :func:`sfh_ml.network.train` (``.keras``), custom layers included.

    Importing this module registers the custom layers and losses with Keras, so the caller needs
    nothing else
    (``import sfh_ml; sfh_ml.load_model("v2.keras")``).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    keras.Model

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError
        The file is damaged (truncated, overwritten), not a Keras file, or not an sfh_ml network.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    try:
        model = keras.models.load_model(path)
    except Exception as err:  # Keras reports a broken zip as anything from "File not found" to KeyError
        raise ModelFileError(
            f"the model file {path} is damaged or not a Keras model ({type(err).__name__}: {err}); "
            "copy it again or re-train it"
        ) from err
    try:
        get_metadata(model)
    except ValueError as err:
        raise ModelFileError(f"the model file {path} holds no sfh_ml network: {err}") from None
    if not model.compiled and keras.backend.backend() in XLA_BACKENDS:
        # A file saved without its optimizer loads uncompiled, and Keras then predicts without XLA:
        # 2,900 instead of 5,300 spectra/s for v2 on 2 CPU cores (benchmarks/inference.py).
        model.jit_compile = True
    return model


# ----------------------------------------------------------------------------------------- data
def load_data(path, n_max=None, noiseless=False):
    """Load a training set into memory (through :func:`sfh_ml.synthesis.dataset.read_dataset`).

    Parameters
    ----------
    path : str or Path
        HDF5 file with the ``sfh-ml generate`` schema.
    n_max : int, optional
        Load only the first ``n_max`` objects.
    noiseless : bool
        Use ``spectra_noiseless`` / ``photometry_noiseless`` instead of the noisy inputs.

    Returns
    -------
    dict
        ``spectra`` (n, n_wave) and ``photometry`` (n, n_bands) float32; ``sfh``, ``zh``
        (n, n_bins) float32; ``wave_aa`` (n_wave,), ``age_bins_yr`` (n_bins + 1,) float64;
        ``filters`` (list of str or None); ``snr`` (n,) or None; ``zh_range`` (tuple or None);
        ``bin_light`` (n_bins, n_zh) and ``zh_grid`` (n_zh,) float64, the light table (None for
        sets written before it existed); ``mean_truth``: the per-object truths of
        :data:`MEAN_TRUTH_KEYS` the file holds, each (n,) float64.

    Raises
    ------
    ValueError
        A required dataset is missing, shapes disagree, or the targets are unusable: non-finite
        values, negative mass fractions, rows of ``sfh`` that do not sum to 1, or [M/H] outside
        the file's ``zh_min``/``zh_max``, or a light table of the wrong shape or with values that are
        not finite and > 0. The message names the file and the dataset.
    """
    path = Path(path)
    if n_max is not None and (int(n_max) != n_max or n_max < 1):
        raise ValueError(f"n_max must be a positive integer, got {n_max}")
    suffix = "_noiseless" if noiseless else ""
    rows = slice(0, None if n_max is None else int(n_max))
    per_object = {key: key + suffix for key in ("spectra", "photometry")} | {"sfh": "sfh", "zh": "zh"}
    try:
        grids = read_dataset(path, keys=["wave_aa", "age_bins_yr"])
        arrays = read_dataset(path, keys=list(per_object.values()), index=rows)
    except KeyError as err:
        required = list(REQUIRED_KEYS) + [k + suffix for k in ("spectra", "photometry") if noiseless]
        raise ValueError(f"{path} lacks a dataset: {err.args[0]} (required: {required})") from None
    attrs = grids["attrs"]
    data = {key: np.asarray(arrays[name], dtype=np.float32) for key, name in per_object.items()}
    data.update(
        wave_aa=np.asarray(grids["wave_aa"], dtype=np.float64),
        age_bins_yr=np.asarray(grids["age_bins_yr"], dtype=np.float64),
        filters=_optional(path, "filters", None),
        snr=_optional(path, "snr", rows),
        zh_range=(float(attrs["zh_min"]), float(attrs["zh_max"])) if "zh_min" in attrs else None,
        bin_light=_optional(path, "bin_light", None),
        zh_grid=_optional(path, "zh_grid", None),
    )
    data["mean_truth"] = {}
    for key in MEAN_TRUTH_KEYS:
        value = _optional(path, key, rows)
        if value is not None:
            data["mean_truth"][key] = np.asarray(value, dtype=np.float64)
    if data["filters"] is not None:
        data["filters"] = [str(f) for f in data["filters"]]
    if data["snr"] is not None:
        data["snr"] = np.asarray(data["snr"], dtype=np.float64)
    if len(data["sfh"]) < 1:
        raise ValueError(f"{path} holds no objects to load")
    _check_data(data, path)
    _check_light_table(data, path)
    return data


def _optional(path, key, index):
    """An optional dataset of a training set, or None where the file has none."""
    try:
        return read_dataset(path, keys=[key], index=index)[key]
    except KeyError:
        return None


def _check_data(data, path):
    """Shapes and targets of a loaded training set; ValueError naming the file and the dataset."""
    n, n_wave = data["spectra"].shape
    n_bins = data["age_bins_yr"].size - 1
    expected = {
        "wave_aa": (n_wave,),
        "photometry": (n, data["photometry"].shape[1]),
        "sfh": (n, n_bins),
        "zh": (n, n_bins),
    }
    for key, shape in expected.items():
        if data[key].shape != shape:
            raise ValueError(f"{path}: dataset {key!r} has shape {data[key].shape}, expected {shape}")
    for key in ("wave_aa", "age_bins_yr", "sfh", "zh"):
        bad = ~np.isfinite(data[key])
        if bad.any():
            first = np.argwhere(bad)[0].tolist()
            raise ValueError(
                f"{path}: dataset {key!r} holds {bad.sum()} non-finite values (first at {first}): "
                "the targets and grids of a training set must be finite; regenerate the set"
            )
    negative = data["sfh"] < 0
    if negative.any():
        row = int(np.argwhere(negative)[0, 0])
        raise ValueError(
            f"{path}: dataset 'sfh' holds {negative.sum()} negative mass fractions (first in row {row}): "
            "mass fractions must be >= 0"
        )
    bad = np.abs(data["sfh"].sum(axis=1) - 1.0) > SFH_SUM_ATOL
    if bad.any():
        raise ValueError(
            f"{path}: {bad.sum()} rows of dataset 'sfh' do not sum to 1 (first: row {np.argmax(bad)})"
        )
    lo, hi = data["zh_range"] or ZH_RANGE
    outside = (data["zh"] < lo - ZH_ATOL) | (data["zh"] > hi + ZH_ATOL)
    if outside.any():
        row = int(np.argwhere(outside)[0, 0])
        raise ValueError(
            f"{path}: dataset 'zh' holds {outside.sum()} values outside the [M/H] range [{lo}, {hi}] "
            f"(first in row {row}): the network cannot predict them"
        )


def _check_light_table(data, path):
    """The light table of a loaded set, as float64 arrays (both or neither); ValueError naming the file."""
    if data["bin_light"] is None and data["zh_grid"] is None:
        return
    if data["bin_light"] is None or data["zh_grid"] is None:
        missing = "bin_light" if data["bin_light"] is None else "zh_grid"
        raise ValueError(f"{path}: the light table is incomplete: dataset {missing!r} is missing")
    try:
        data["bin_light"], data["zh_grid"] = check_light_table(
            data["bin_light"], data["zh_grid"], data["age_bins_yr"].size - 1
        )
    except ValueError as err:
        raise ValueError(f"{path}: datasets 'bin_light' / 'zh_grid': {err}") from None
