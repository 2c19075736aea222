"""Training the networks: data feeding, augmentation, resumable checkpoints, early stopping.

Reads the HDF5 training sets written by ``sfh-ml generate`` (datasets ``wave_aa``, ``spectra``,
``photometry``, ``sfh``, ``zh``, ``age_bins_yr``, ...). :func:`train` is resumable: every epoch it
writes a checkpoint (``OUT.ckpt.keras``, the model with its optimizer state, and ``OUT.ckpt.json``,
the epoch reached, the early-stopping state and the history so far), so an interrupted run started
again with the same arguments continues where it stopped. Given the same seed, data and backend,
two runs give the same weights (on TensorFlow, :func:`train` enables op determinism).
"""

import csv
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
import numpy as np
from tqdm import tqdm

from ..constants import ZH_RANGE
from ..utils import as_str
from .architectures import adapt, build_model
from .losses import make_targets
from .metadata import check_compatible

__all__ = [
    "REQUIRED_KEYS",
    "load_data",
    "split_indices",
    "augment_batch",
    "HistoryDataset",
    "TrainingResult",
    "train",
]

REQUIRED_KEYS = ("wave_aa", "spectra", "photometry", "age_bins_yr", "sfh", "zh")
READ_CHUNK = 16384  # rows read from HDF5 at a time
MIN_LR_FRACTION = 0.01  # the cosine schedule ends at this fraction of the initial learning rate


# ----------------------------------------------------------------------------------------- data
def _read_rows(dset, n, desc):
    """First n rows of a 2-D HDF5 dataset as float32, in chunks with a progress bar."""
    out = np.empty((n,) + dset.shape[1:], dtype=np.float32)
    for start in tqdm(range(0, n, READ_CHUNK), desc=desc, disable=n <= READ_CHUNK, leave=False):
        out[start : start + READ_CHUNK] = dset[start : min(start + READ_CHUNK, n)]
    return out


def load_data(path, n_max=None, noiseless=False):
    """Load a training set into memory.

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
        ``filters`` (list of str or None); ``snr`` (n,) or None; ``zh_range`` (tuple or None).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    suffix = "_noiseless" if noiseless else ""
    with h5py.File(path, "r") as f:
        missing = [k for k in REQUIRED_KEYS if k not in f] + [
            k + suffix for k in ("spectra", "photometry") if noiseless and k + suffix not in f
        ]
        if missing:
            raise ValueError(f"{path} lacks the datasets {missing} (required: {list(REQUIRED_KEYS)})")
        n_total = f["spectra"].shape[0]
        n = n_total if n_max is None else min(int(n_max), n_total)
        if n < 1:
            raise ValueError(f"{path} holds no objects to load (n_max={n_max})")
        data = {
            "spectra": _read_rows(f["spectra" + suffix], n, "spectra"),
            "photometry": _read_rows(f["photometry" + suffix], n, "photometry"),
            "sfh": _read_rows(f["sfh"], n, "sfh"),
            "zh": _read_rows(f["zh"], n, "zh"),
            "wave_aa": f["wave_aa"][:].astype(np.float64),
            "age_bins_yr": f["age_bins_yr"][:].astype(np.float64),
            "filters": as_str(f["filters"][:]) if "filters" in f else None,
            "snr": f["snr"][:n].astype(np.float64) if "snr" in f else None,
            "zh_range": (float(f.attrs["zh_min"]), float(f.attrs["zh_max"])) if "zh_min" in f.attrs else None,
        }
    _check_data(data, path)
    return data


def _check_data(data, path):
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
            raise ValueError(f"{path}: {key} has shape {data[key].shape}, expected {shape}")
    bad = np.abs(data["sfh"].sum(axis=1) - 1.0) > 1e-3
    if bad.any():
        raise ValueError(f"{path}: {bad.sum()} sfh rows do not sum to 1 (first: row {np.argmax(bad)})")


def split_indices(n, val_fraction, seed):
    """Deterministic train/validation split.

    Returns
    -------
    train, val : ndarray of int
        Sorted object indices; ``round(val_fraction * n)`` of them (at least 1 if
        ``val_fraction > 0``) in ``val``.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
    if n - n_val < 1:
        raise ValueError(f"{n} objects leave none for training with val_fraction={val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def augment_batch(spectra, photometry, rng, p_span=0.3, max_spans=3, span_px=(10, 300), p_band=0.1):
    """Random masked pixel spans and missing bands, as NaN (in place).

    Parameters
    ----------
    spectra : ndarray, shape (b, n_wave)
    photometry : ndarray, shape (b, n_bands)
    rng : numpy.random.Generator
    p_span : float
        Probability that an object gets masked spans (then 1..max_spans of them).
    span_px : (int, int)
        Range of span lengths in pixels (300 px = 375 A, about the MUSE AO notch-filter gap).
    p_band : float
        Probability that each band is missing.

    Returns
    -------
    spectra, photometry : ndarray
        The same arrays, with NaN written into them.
    """
    b, n_wave = spectra.shape
    n_spans = (rng.random(b) < p_span) * rng.integers(1, max_spans + 1, b)  # (b,)
    length = rng.integers(span_px[0], span_px[1] + 1, (b, max_spans))  # (b, max_spans)
    start = rng.integers(0, max(n_wave - span_px[0], 1), (b, max_spans))  # (b, max_spans)
    active = np.arange(max_spans) < n_spans[:, None]  # (b, max_spans)
    pix = np.arange(n_wave)  # (n_wave,)
    inside = (pix >= start[..., None]) & (pix < (start + length)[..., None]) & active[..., None]
    spectra[inside.any(axis=1)] = np.nan  # (b, n_wave)
    photometry[rng.random(photometry.shape) < p_band] = np.nan
    return spectra, photometry


class HistoryDataset(keras.utils.PyDataset):
    """Batches ``({"spectrum", "photometry"}, {"sfh", "zh"})`` from in-memory arrays.

    The order of the objects is a permutation drawn from ``(seed, epoch)`` and the augmentation of
    batch ``i`` from ``(seed, epoch, i)``: the batches depend only on the epoch number, so a run
    resumed at epoch ``e`` sees the same data as an uninterrupted one. Set the epoch with
    :meth:`set_epoch` (done by :func:`train` at the start of every epoch).

    Parameters
    ----------
    data : dict
        From :func:`load_data`.
    indices : array of int
        The objects of this set.
    batch_size : int
    shuffle : bool
    seed : int
    augment : dict or None
        Keyword arguments of :func:`augment_batch` (``{}`` for its defaults), or None for none.
    """

    def __init__(self, data, indices, batch_size=256, shuffle=True, seed=0, augment=None, **kwargs):
        super().__init__(**kwargs)
        self.data = data
        self.indices = np.asarray(indices)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.augment = augment
        self.set_epoch(0)

    def set_epoch(self, epoch):
        """Select the permutation and augmentation of this epoch."""
        self.epoch = int(epoch)
        rng = np.random.default_rng([self.seed, self.epoch])
        self.order = rng.permutation(self.indices) if self.shuffle else self.indices

    def __len__(self):
        return math.ceil(len(self.indices) / self.batch_size)

    def __getitem__(self, i):
        idx = np.sort(self.order[i * self.batch_size : (i + 1) * self.batch_size])
        spectra, photometry = self.data["spectra"][idx], self.data["photometry"][idx]  # copies
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            augment_batch(spectra, photometry, rng, **self.augment)
        x = {"spectrum": spectra, "photometry": photometry}
        return x, make_targets(self.data["sfh"][idx], self.data["zh"][idx])


# ----------------------------------------------------------------------------------------- files
def _atomic_write_text(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _atomic_save_model(model, path):
    tmp = f"{path}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def _atomic_save_weights(model, path):
    tmp = f"{path}.tmp.weights.h5"
    model.save_weights(tmp)
    os.replace(tmp, path)


def _paths(out_path):
    out = str(out_path)
    stem = out[: -len(".keras")] if out.endswith(".keras") else out
    return {
        "model": out,
        "ckpt": out + ".ckpt.keras",
        "state": out + ".ckpt.json",
        "best": out + ".best.weights.h5",
        "csv": stem + "_history.csv",
        "json": stem + "_history.json",
    }


def _write_history(history, paths):
    _atomic_write_text(paths["json"], json.dumps(history, indent=1))
    columns = list(dict.fromkeys(k for row in history for k in row))
    tmp = paths["csv"] + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, paths["csv"])


# ----------------------------------------------------------------------------------------- training
class _Checkpointer(keras.callbacks.Callback):
    """Per-epoch bookkeeping: epoch-seeded data, early stopping, checkpoint, best weights, history.

    Its state is plain JSON, so that early stopping resumes exactly after an interruption.
    """

    def __init__(self, dataset, state, paths, monitor, patience):
        super().__init__()
        self.dataset, self.state, self.paths = dataset, state, paths
        self.monitor, self.patience = monitor, patience

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.set_epoch(epoch)

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        for p in ("", "val_"):  # the point errors: a monitor that outliers of the NLL cannot swing
            if f"{p}sfh_sfh_cum_mae" in logs and f"{p}zh_zh_mae" in logs:
                logs[f"{p}point_error"] = logs[f"{p}sfh_sfh_cum_mae"] + logs[f"{p}zh_zh_mae"]
        state = self.state
        if not math.isfinite(logs.get("loss", math.nan)):
            state["stopped"] = "non-finite loss"
            self.model.stop_training = True
            return  # keep the last good checkpoint
        value = logs.get(self.monitor, math.nan)
        if math.isfinite(value) and (state["best"] is None or value < state["best"]):
            state.update(best=value, best_epoch=epoch, wait=0)
            _atomic_save_weights(self.model, self.paths["best"])
        else:
            state["wait"] += 1
        if state["wait"] >= self.patience:
            state["stopped"] = f"no improvement of {self.monitor} in {self.patience} epochs"
            self.model.stop_training = True
        state["history"].append({"epoch": epoch, **logs})
        state["epoch"] = epoch + 1
        state["iterations"] = int(self.model.optimizer.iterations.numpy())
        _atomic_save_model(self.model, self.paths["ckpt"])
        _atomic_write_text(self.paths["state"], json.dumps(state, indent=1))
        _write_history(state["history"], self.paths)


def _cosine_schedule(learning_rate, epochs):
    def schedule(epoch, lr=None):
        cos = 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))
        return learning_rate * (MIN_LR_FRACTION + (1.0 - MIN_LR_FRACTION) * cos)

    return schedule


@dataclass
class TrainingResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : keras.Model
        The trained network, with the weights of its best epoch.
    history : list of dict
        One row per epoch: ``epoch``, losses, metrics, ``learning_rate``.
    best_epoch : int or None
        Epoch (0-based) whose weights were kept.
    initial_epoch : int
        Epoch at which this call started (> 0 when it resumed from a checkpoint).
    stopped : str or None
        Why training stopped before ``epochs`` (early stopping, non-finite loss), if it did.
    """

    model: keras.Model
    history: list
    best_epoch: int | None
    initial_epoch: int
    stopped: str | None


def _set_determinism(seed, deterministic):
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # TF-only switch, not part of the models

        tf.config.experimental.enable_op_determinism()


def _resume_or_build(paths, data, train_idx, version, resume, learning_rate, hyper):
    """The checkpointed model and its state, or a new model (standardisation adapted) and a fresh state."""
    if resume and os.path.exists(paths["ckpt"]) and os.path.exists(paths["state"]):
        with open(paths["state"]) as f:
            state = json.load(f)
        model = keras.models.load_model(paths["ckpt"])
        if int(model.optimizer.iterations.numpy()) != state.get("iterations"):
            warnings.warn(
                f"{paths['ckpt']} and {paths['state']} disagree on the step reached (interrupted while "
                f"saving?): resuming at epoch {state['epoch']} with the checkpoint's weights",
                stacklevel=3,
            )
        if state.get("version") != version:
            raise ValueError(
                f"checkpoint {paths['ckpt']} is a {state.get('version')} model, not {version}: "
                "delete it or pass resume=False"
            )
        check_compatible(model, data["wave_aa"], data["age_bins_yr"], data["filters"])
        return model, state
    n_bands, n_bins = data["photometry"].shape[1], data["sfh"].shape[1]
    zh_range = data["zh_range"] or ZH_RANGE
    model = build_model(
        version,
        data["wave_aa"].size,
        n_bands,
        n_bins,
        zh_range=zh_range,
        wave_aa=data["wave_aa"],
        age_bins_yr=data["age_bins_yr"],
        filters=data["filters"],
        learning_rate=learning_rate,
        **hyper,
    )
    adapt(model, data["spectra"], data["photometry"], index=train_idx)
    state = {
        "version": version,
        "epoch": 0,
        "best": None,
        "best_epoch": None,
        "wait": 0,
        "stopped": None,
        "history": [],
    }
    return model, state


def train(
    data_path,
    version="v2",
    out_path="model.keras",
    epochs=30,
    batch_size=256,
    val_fraction=0.1,
    seed=42,
    learning_rate=1e-3,
    patience=5,
    n_max=None,
    resume=True,
    augment=True,
    verbose=1,
    callbacks=None,
    deterministic=True,
    **hyper,
):
    """Train a network on an HDF5 training set and save it.

    Parameters
    ----------
    data_path : str or Path
        Training set (``sfh-ml generate`` schema).
    version : {"v1", "v2"}
    out_path : str or Path
        Where the final model goes (``.keras``). Beside it: ``OUT.ckpt.keras`` and
        ``OUT.ckpt.json`` (checkpoint), ``OUT.best.weights.h5``, ``STEM_history.csv`` and
        ``STEM_history.json``.
    epochs : int
        Total number of epochs (including those of a resumed run).
    batch_size : int
    val_fraction : float
        Fraction of objects held out (deterministically, from ``seed``) for validation, early
        stopping and the choice of the best epoch; 0 monitors the training set.
    seed : int
        Seeds the weights, the split, the order of the batches and the augmentation.
    learning_rate : float
        Initial learning rate, decayed with a cosine over ``epochs`` to 1 % of it.
    patience : int
        Early stopping: epochs without improvement of the point error (MAE of the cumulative SFH
        plus MAE of [M/H]) on the validation set.
    n_max : int, optional
        Use only the first ``n_max`` objects.
    resume : bool
        Continue from the checkpoint of ``out_path`` if there is one.
    augment : bool or dict
        Random masked spans and missing bands in the training batches (a dict passes keyword
        arguments to :func:`augment_batch`).
    verbose : int
        Keras progress bar (0 silent, 1 bar, 2 one line per epoch).
    callbacks : list of keras.callbacks.Callback, optional
        Extra callbacks, run after the checkpoint is written.
    deterministic : bool
        On TensorFlow, enable op determinism (process-wide) so that runs are reproducible.
    **hyper
        Network hyper-parameters (see :func:`sfh_ml.network.build_model`).

    Returns
    -------
    TrainingResult

    Notes
    -----
    A new model's input standardisation is fitted to the training objects (see
    :func:`sfh_ml.network.adapt`). The learning rate follows the cosine from epoch 0 even when
    resuming, so a resumed run follows the same schedule as an uninterrupted one.
    """
    paths = _paths(out_path)
    Path(paths["model"]).parent.mkdir(parents=True, exist_ok=True)
    _set_determinism(seed, deterministic)
    data = load_data(data_path, n_max=n_max)
    train_idx, val_idx = split_indices(len(data["sfh"]), val_fraction, seed)
    model, state = _resume_or_build(paths, data, train_idx, version, resume, learning_rate, hyper)
    initial_epoch = state["epoch"]
    if initial_epoch < epochs and not state["stopped"]:
        if initial_epoch > 0 and verbose:
            print(f"resuming from {paths['ckpt']} at epoch {initial_epoch}")
        aug = (augment if isinstance(augment, dict) else {}) if augment else None
        train_set = HistoryDataset(data, train_idx, batch_size, shuffle=True, seed=seed, augment=aug)
        val_set = HistoryDataset(data, val_idx, batch_size, shuffle=False) if len(val_idx) else None
        # Early stopping and the best epoch follow the point errors (cumulative SFH + [M/H] MAE), not the
        # NLL: a few over-confident objects can swing a validation NLL while the histories improve.
        monitor = "val_point_error" if val_set is not None else "point_error"
        cbs = [
            keras.callbacks.LearningRateScheduler(_cosine_schedule(learning_rate, epochs)),
            _Checkpointer(train_set, state, paths, monitor, patience),
            *(callbacks or []),
        ]
        model.fit(
            train_set,
            validation_data=val_set,
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=cbs,
            verbose=verbose,
            shuffle=False,
        )
    if os.path.exists(paths["best"]):
        model.load_weights(paths["best"])
    _atomic_save_model(model, paths["model"])
    _write_history(state["history"], paths)
    return TrainingResult(model, state["history"], state["best_epoch"], initial_epoch, state["stopped"])
