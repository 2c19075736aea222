"""Training the networks: data feeding, augmentation, resumable checkpoints, early stopping.

Reads the HDF5 training sets written by ``sfh-ml generate`` (datasets ``wave_aa``, ``spectra``,
``photometry``, ``sfh``, ``zh``, ``age_bins_yr``, ...) with :func:`sfh_ml.network.loading.load_data`.
:func:`train` is resumable: every epoch it writes a checkpoint (``OUT.ckpt.keras``, the model with its
optimizer state, and ``OUT.ckpt.json``, the epoch reached, the early-stopping state, the history so far,
and the data and options of the run), so an interrupted run started again with the same arguments
continues where it stopped; one started with other data or options is refused. Given the same seed, data
and backend, two runs give the same weights (on TensorFlow, :func:`train` enables op determinism).
"""

import csv
import hashlib
import io
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from ..constants import ZH_RANGE
from ..files import atomic_write_text, check_output, output_lock, tmp_path
from ..synthesis.instrument import SKY_LINE_WINDOWS_AA, SKY_Z_RANGE, muse_wave
from ..utils import check_positive_int, is_missing
from .architectures import adapt, build_model, resolve_hyper
from .loading import load_data, load_model
from .losses import make_targets
from .metadata import check_compatible

__all__ = [
    "split_indices",
    "augment_batch",
    "HistoryDataset",
    "TrainingResult",
    "TrainingError",
    "data_fingerprint",
    "train",
]

MIN_LR_FRACTION = 0.01  # the cosine schedule ends at this fraction of the initial learning rate
SCHEDULES = ("cosine", "plateau")
# "plateau": the learning rate is halved after PLATEAU_PATIENCE epochs without improvement of the
# monitor, down to MIN_LR_FRACTION of the initial one; training stops after `patience` such epochs.
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 2
# A training set whose spectra are missing (NaN, inf, flags: sfh_ml.utils.is_missing) in more than this
# fraction of their pixels is refused: the augmentation masks at most ~25 % of a spectrum, so such a
# set teaches nothing (an all-NaN set would train to the prior and save a confident model).
MAX_MISSING_FRACTION = 0.5
CHECK_BLOCK_ROWS = 4096  # rows checked at a time (bounds the temporary arrays of the missing-value test)


# ----------------------------------------------------------------------------------------- data
def _check_spectra(spectra, path):
    """Refuse spectra missing in more than :data:`MAX_MISSING_FRACTION` of their pixels (ValueError
    naming the file)."""
    n_missing = n_empty = 0
    for start in range(0, len(spectra), CHECK_BLOCK_ROWS):
        missing = is_missing(spectra[start : start + CHECK_BLOCK_ROWS])  # (b, n_wave)
        n_missing += int(missing.sum())
        n_empty += int(missing.all(axis=1).sum())
    fraction = n_missing / max(spectra.size, 1)
    if fraction > MAX_MISSING_FRACTION:
        raise ValueError(
            f"{path}: dataset 'spectra' is missing (NaN, inf or a missing-value flag) in "
            f"{100 * fraction:.0f} % of its pixels ({n_empty} of {len(spectra)} spectra have no pixel at "
            f"all; at most {100 * MAX_MISSING_FRACTION:.0f} % may be): nothing to learn from; "
            "regenerate the set (sfh-ml generate)"
        )


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


def augment_batch(
    spectra,
    photometry,
    rng,
    p_span=0.3,
    max_spans=3,
    span_px=(10, 300),
    p_band=0.1,
    p_edge=0.3,
    p_sky=0.3,
    max_z=SKY_Z_RANGE[1],
    wave_aa=None,
):
    """Random masked pixel spans, missing ends, sky-line windows and missing bands, as NaN (in place).

    The ends and the sky windows are what an observation at redshift z does to a rest-frame
    spectrum (they depend on the observation, so the synthetic sets do not hold them): the
    observed range and the sky lines move by a factor 1 / (1 + z) in the rest frame.

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
    p_edge : float
        Probability, for each end independently, that it is cut as by a redshift z ~ U(0, max_z):
        rest-frame pixels red-ward of lambda_max / (1 + z) (up to 270 A at z = 0.03 on the MUSE
        grid), or blue-ward of lambda_min (1 + z) (up to 140 A: a cube that starts red-ward of the
        model grid, or a blueshift).
    p_sky : float
        Probability that an object has the sky-line windows
        (:data:`sfh_ml.synthesis.instrument.SKY_LINE_WINDOWS_AA`) masked, at rest-frame wavelengths
        lambda / (1 + z) with z ~ U(0, max_z).
    max_z : float
        Largest redshift of the ends and the sky windows (default the top of
        :data:`sfh_ml.synthesis.instrument.SKY_Z_RANGE`, 0.03).
    wave_aa : ndarray, shape (n_wave,), optional
        Rest-frame wavelengths of the spectra, Angstrom (default the MUSE grid's first ``n_wave``
        pixels).

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
    wave = muse_wave(n_wave=n_wave) if wave_aa is None else np.asarray(wave_aa, dtype=float)
    # a redshift for each cut end and for the sky windows; NaN where the object is left alone
    z_blue, z_red, z_sky = (
        np.where(rng.random(b) < p, rng.uniform(0.0, max_z, b), np.nan) for p in (p_edge, p_edge, p_sky)
    )
    spectra[wave[None, :] < wave[0] * (1.0 + z_blue[:, None])] = np.nan
    spectra[wave[None, :] > wave[-1] / (1.0 + z_red[:, None])] = np.nan
    sky = np.isfinite(z_sky)
    if sky.any():
        obs = wave[None, :] * (1.0 + z_sky[sky, None])  # (b_sky, n_wave): observed frame
        windows = SKY_LINE_WINDOWS_AA[np.argsort(SKY_LINE_WINDOWS_AA[:, 0])]
        j = np.searchsorted(windows[:, 0], obs, side="right") - 1  # last window starting below
        hit = (j >= 0) & (obs <= np.maximum.accumulate(windows[:, 1])[np.maximum(j, 0)])
        rows = spectra[sky]
        rows[hit] = np.nan
        spectra[sky] = rows
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
            augment_batch(spectra, photometry, rng, **{"wave_aa": self.data.get("wave_aa"), **self.augment})
        x = {"spectrum": spectra, "photometry": photometry}
        return x, make_targets(self.data["sfh"][idx], self.data["zh"][idx])


# ----------------------------------------------------------------------------------------- files
def _atomic_save(save, path, suffix):
    """``save(tmp)`` then rename to ``path``; the temporary file never outlives a failure."""
    tmp = tmp_path(path, suffix)  # Keras needs the suffix (.keras, .weights.h5) to pick the format
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _atomic_save_model(model, path):
    _atomic_save(model.save, path, ".keras")


def _atomic_save_weights(model, path):
    _atomic_save(model.save_weights, path, ".weights.h5")


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
    atomic_write_text(paths["json"], json.dumps(history, indent=1))
    columns = list(dict.fromkeys(k for row in history for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(paths["csv"], text.getvalue())


def _check_output(paths, data_path):
    """Refuse an output the run could not write, or one that is its input, before any training."""
    model_path = Path(paths["model"])
    folder = model_path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tmp_path(paths["state"], ".probe")
        probe.write_text("")  # os.access can say yes where writing fails (root, ACLs, read-only mounts)
        probe.unlink()
    except OSError as err:
        raise OSError(
            f"cannot write the model {model_path}: {err.strerror or err} in {folder}; "
            "choose a writable folder (--out)"
        ) from None
    check_output(model_path, overwrite=True, inputs=(data_path,))


# ----------------------------------------------------------------------------------------- runs
def data_fingerprint(data):
    """What identifies a loaded training set: its size and a hash of its grids and a few rows.

    Parameters
    ----------
    data : dict
        From :func:`load_data`.

    Returns
    -------
    dict
        ``n`` (objects) and ``sha256`` (16 hex digits of the SHA-256 of the grids, the band names
        and the first, middle and last rows of the spectra, photometry and targets).
    """
    n = len(data["sfh"])
    rows = sorted({0, n // 2, n - 1})
    digest = hashlib.sha256()
    for key in ("wave_aa", "age_bins_yr"):
        digest.update(np.ascontiguousarray(data[key], dtype=np.float64).tobytes())
    digest.update(json.dumps(data["filters"]).encode())
    for key in ("spectra", "photometry", "sfh", "zh"):
        digest.update(np.ascontiguousarray(data[key][rows], dtype=np.float32).tobytes())
    return {"n": n, "sha256": digest.hexdigest()[:16]}


def _run_record(data_path, data, version, options, hyper):
    """The data and options of a run, as stored in (and compared with) the checkpoint JSON."""
    return {
        "data": {"path": str(Path(data_path).resolve()), **data_fingerprint(data)},
        # JSON round trip: tuples become lists, as they come back from the checkpoint
        "options": json.loads(json.dumps({"version": version, **options, **resolve_hyper(version, hyper)})),
    }


def _run_differences(saved, now):
    """What differs between the run recorded in a checkpoint and this one (list of str)."""
    if "data" not in saved or "options" not in saved:
        return ["the checkpoint records no data or options (it was written by an older sfh_ml)"]
    out = []
    old, new = saved["data"], now["data"]
    if (old["n"], old["sha256"]) != (new["n"], new["sha256"]):
        out.append(
            f"data: the checkpoint was trained on {old['path']} ({old['n']} objects, fingerprint "
            f"{old['sha256']}), this run reads {new['path']} ({new['n']} objects, "
            f"fingerprint {new['sha256']})"
        )
    for key in sorted(set(saved["options"]) | set(now["options"])):
        before, after = saved["options"].get(key), now["options"].get(key)
        if before != after:
            out.append(f"{key}: {before!r} in the checkpoint, {after!r} now")
    return out


# ----------------------------------------------------------------------------------------- training
class TrainingError(RuntimeError):
    """Training failed (e.g. the loss became non-finite); no model was saved."""


NON_FINITE = "non-finite loss"


class _Checkpointer(keras.callbacks.Callback):
    """Per-epoch bookkeeping: epoch-seeded data, early stopping, checkpoint, best weights, history.

    Its state is plain JSON, so that early stopping resumes exactly after an interruption. A
    non-finite loss stops training at the batch where it appears; the epoch is then neither
    checkpointed nor recorded, so the checkpoint keeps the last good epoch.
    """

    def __init__(self, dataset, state, paths, monitor, patience, plateau_lr=None):
        super().__init__()
        self.dataset, self.state, self.paths = dataset, state, paths
        self.monitor, self.patience = monitor, patience
        self.plateau_lr = plateau_lr  # the initial learning rate of a "plateau" schedule, else None

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.set_epoch(epoch)
        if self.plateau_lr is not None:  # the state's rate: a resumed run goes on where it was
            self.model.optimizer.learning_rate = self.state.setdefault("lr", self.plateau_lr)

    def _plateau(self, improved):
        """Halve the learning rate after PLATEAU_PATIENCE epochs without improvement (state: JSON)."""
        state = self.state
        state["lr_wait"] = 0 if improved else state.get("lr_wait", 0) + 1
        if state["lr_wait"] >= PLATEAU_PATIENCE:
            state["lr"] = max(state["lr"] * PLATEAU_FACTOR, self.plateau_lr * MIN_LR_FRACTION)
            state["lr_wait"] = 0

    def on_train_batch_end(self, batch, logs=None):
        if not math.isfinite(float((logs or {}).get("loss", 0.0))):
            self.state["stopped"] = NON_FINITE
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        for p in ("", "val_"):  # the point errors: a monitor that outliers of the NLL cannot swing
            if f"{p}sfh_cum_mae" in logs and f"{p}zh_mae" in logs:
                logs[f"{p}point_error"] = logs[f"{p}sfh_cum_mae"] + logs[f"{p}zh_mae"]
        state = self.state
        if state["stopped"] == NON_FINITE or not math.isfinite(logs.get("loss", math.nan)):
            state.update(stopped=NON_FINITE, failed_epoch=epoch)
            self.model.stop_training = True
            return  # keep the last good checkpoint
        value = logs.get(self.monitor, math.nan)
        improved = math.isfinite(value) and (state["best"] is None or value < state["best"])
        if improved:
            state.update(best=value, best_epoch=epoch, wait=0)
            _atomic_save_weights(self.model, self.paths["best"])
        else:
            state["wait"] += 1
        if self.plateau_lr is not None:
            logs["learning_rate"] = state["lr"]
            self._plateau(improved)
        if state["wait"] >= self.patience:
            state["stopped"] = f"no improvement of {self.monitor} in {self.patience} epochs"
            self.model.stop_training = True
        state["history"].append({"epoch": epoch, **logs})
        state["epoch"] = epoch + 1
        state["iterations"] = int(self.model.optimizer.iterations.numpy())
        _atomic_save_model(self.model, self.paths["ckpt"])
        atomic_write_text(self.paths["state"], json.dumps(state, indent=1))
        _write_history(state["history"], self.paths)


class _Progress(keras.callbacks.Callback):
    """One tqdm bar over every batch of the run, with the last epoch's validation errors beside it.

    What a notebook shows instead of Keras's per-epoch lines: one line that stays one line in the
    executed page (updated at most every ``mininterval`` seconds).
    """

    def __init__(self, epochs, initial_epoch, steps, desc, mininterval=5.0):
        super().__init__()
        self.epochs, self.steps = epochs, steps
        self.initial, self.desc, self.mininterval = initial_epoch * steps, desc, mininterval

    def on_train_begin(self, logs=None):
        from tqdm import tqdm

        total = self.epochs * self.steps
        self.bar = tqdm(
            total=total, initial=self.initial, desc=self.desc, unit="batch", mininterval=self.mininterval
        )

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = {"epoch": epoch + 1}
        for key, label in (("val_sfh_cum_mae", "val cum-SFH MAE"), ("val_zh_mae", "val [M/H] MAE")):
            if key in logs:
                shown[label] = f"{float(logs[key]):.4f}"
        self.bar.set_postfix(shown, refresh=False)

    def on_train_end(self, logs=None):
        self.bar.close()


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
        One row per epoch: ``epoch``, losses, metrics (``sfh_cum_mae``, ``zh_mae``,
        ``point_error`` and their ``val_`` versions), ``learning_rate``.
    best_epoch : int or None
        Epoch (0-based) whose weights were kept.
    initial_epoch : int
        Epoch at which this call started (> 0 when it resumed from a checkpoint).
    stopped : str or None
        Why training stopped before ``epochs`` (early stopping), if it did.
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


def _check_options(epochs, batch_size, learning_rate, patience, val_fraction):
    """ValueError naming the first option out of range (with its command-line name)."""
    for name, flag, value in (
        ("epochs", "--epochs", epochs),
        ("batch_size", "--batch-size", batch_size),
        ("patience", "--patience", patience),
    ):
        check_positive_int(value, f"{name} ({flag})")
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate (--lr) must be a positive number, got {learning_rate!r}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction (--val-fraction) must be in [0, 1), got {val_fraction!r}")


def _fresh_state(run):
    return {
        **run,
        "epoch": 0,
        "best": None,
        "best_epoch": None,
        "wait": 0,
        "stopped": None,
        "history": [],
    }


def _resume_or_build(paths, data, train_idx, run, resume, learning_rate, hyper):
    """The checkpointed model and its state, or a new model (standardisation adapted) and a fresh state.

    A checkpoint is resumed only if it was made with the same data and options (else ValueError,
    naming the differences). A fresh start removes what an earlier run left under these names.
    """
    has_checkpoint = os.path.exists(paths["ckpt"]) and os.path.exists(paths["state"])
    if resume and has_checkpoint:
        with open(paths["state"]) as f:
            state = json.load(f)
        differences = _run_differences(state, run)
        if differences:
            raise ValueError(
                f"{paths['ckpt']} was made by another run: {'; '.join(differences)}. Re-run with the "
                f"checkpoint's data and options to resume it, or start again with --no-resume "
                f"(resume=False), which replaces {paths['model']}"
            )
        model = load_model(paths["ckpt"])  # the reader that names a damaged file
        if int(model.optimizer.iterations.numpy()) != state.get("iterations"):
            warnings.warn(
                f"{paths['ckpt']} and {paths['state']} disagree on the step reached (interrupted while "
                f"saving?): resuming at epoch {state['epoch']} with the checkpoint's weights",
                stacklevel=3,
            )
        check_compatible(model, data["wave_aa"], data["age_bins_yr"], data["filters"])
        return model, state
    if resume and os.path.exists(paths["model"]):
        raise ValueError(
            f"{paths['model']} exists and has no checkpoint of this training beside it: delete it, "
            "choose another --out, or pass --no-resume (resume=False) to replace it"
        )
    for key in ("model", "ckpt", "state", "best"):  # what an earlier run left: never mixed with this one
        if os.path.exists(paths[key]):
            os.remove(paths[key])
    version = run["options"]["version"]
    model = build_model(
        version,
        data["wave_aa"].size,
        data["photometry"].shape[1],
        data["sfh"].shape[1],
        zh_range=data["zh_range"] or ZH_RANGE,
        wave_aa=data["wave_aa"],
        age_bins_yr=data["age_bins_yr"],
        filters=data["filters"],
        learning_rate=learning_rate,
        bin_light=data["bin_light"],
        zh_grid=data["zh_grid"],
        **hyper,
    )
    adapt(model, data["spectra"], data["photometry"], index=train_idx)
    return model, _fresh_state(run)


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
    schedule="cosine",
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
        Total number of epochs (including those of a resumed run), >= 1.
    batch_size : int
        Objects per batch, >= 1.
    val_fraction : float
        Fraction of objects held out (deterministically, from ``seed``) for validation, early
        stopping and the choice of the best epoch; 0 monitors the training set.
    seed : int
        Seeds the weights, the split, the order of the batches and the augmentation.
    learning_rate : float
        Initial learning rate (> 0).
    patience : int
        Early stopping: epochs without improvement of the point error (MAE of the cumulative SFH
        plus MAE of [M/H]) on the validation set.
    n_max : int, optional
        Use only the first ``n_max`` objects.
    resume : bool
        Continue from the checkpoint of ``out_path`` if there is one. It must have been made
        with the same data (path, size and fingerprint, see :func:`data_fingerprint`) and options
        (``version``, ``epochs``, ``batch_size``, ``val_fraction``, ``seed``, ``learning_rate``,
        ``augment`` and the hyper-parameters); otherwise the run is refused, naming the
        differences. False starts again and replaces what is there.
    augment : bool or dict
        Random masked spans and missing bands in the training batches (a dict passes keyword
        arguments to :func:`augment_batch`).
    verbose : int or "tqdm"
        Keras progress bar (0 silent, 1 bar, 2 one line per epoch), or ``"tqdm"``: one tqdm bar for
        the whole run, with the validation errors of the last epoch (what the book shows).
    callbacks : list of keras.callbacks.Callback, optional
        Extra callbacks, run after the checkpoint is written.
    deterministic : bool
        On TensorFlow, enable op determinism (process-wide) so that runs are reproducible.
    schedule : {"cosine", "plateau"}
        ``"cosine"``: the learning rate decays with a cosine over ``epochs`` to 1 % of it (a run
        of a fixed length); ``"plateau"``: it is halved after :data:`PLATEAU_PATIENCE` epochs without
        improvement of the validation point error, down to 1 % (training until it stops improving:
        give a generous ``epochs`` and let ``patience`` end it). Stored with the checkpoint.
    **hyper
        Network hyper-parameters (see :func:`sfh_ml.network.build_model`).

    Returns
    -------
    TrainingResult

    Raises
    ------
    ValueError
        Options out of range, unusable data (see :func:`load_data`; also spectra missing in more
        than :data:`MAX_MISSING_FRACTION` of their pixels), or a checkpoint of another run.
    OSError
        The output folder cannot be written (found before any training), or the output is the data.
    sfh_ml.files.OutputLockedError
        Another live run writes the same output (it holds ``OUT.lock``).
    TrainingError
        The loss became non-finite: no model is saved (the checkpoint of the last good epoch stays).

    Notes
    -----
    A new model's input standardisation is fitted to the training objects (see
    :func:`sfh_ml.network.adapt`), and it carries the set's light table (``bin_light``,
    ``zh_grid``) for light-weighted means; a set without one gives a model without light-weighted
    means (a warning says so). The learning rate follows the cosine from epoch 0 even when
    resuming, so a resumed run follows the same schedule as an uninterrupted one.
    """
    _check_options(epochs, batch_size, learning_rate, patience, val_fraction)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule (--schedule) must be one of {SCHEDULES}, got {schedule!r}")
    paths = _paths(out_path)
    _check_output(paths, data_path)
    # One run per output: a second run on the same --out would mix its checkpoint with this one's
    # history (sfh_ml.files.output_lock, as generate and apply).
    with output_lock(paths["model"], command="sfh-ml train"):
        _set_determinism(seed, deterministic)
        data = load_data(data_path, n_max=n_max)
        _check_spectra(data["spectra"], data_path)
        if data["bin_light"] is None:
            warnings.warn(
                f"{data_path} has no light table (datasets bin_light, zh_grid: a set made before they "
                "existed): the model will give no light-weighted means (NaN); regenerate the set to get them",
                stacklevel=2,
            )
        train_idx, val_idx = split_indices(len(data["sfh"]), val_fraction, seed)
        options = dict(
            epochs=epochs,
            batch_size=batch_size,
            val_fraction=val_fraction,
            seed=seed,
            learning_rate=learning_rate,
            augment=augment,
            **({} if schedule == "cosine" else {"schedule": schedule}),  # old checkpoints: cosine
        )
        run = _run_record(data_path, data, version, options, hyper)
        model, state = _resume_or_build(paths, data, train_idx, run, resume, learning_rate, hyper)
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
            plateau = schedule == "plateau"
            cbs = [
                *(
                    []
                    if plateau
                    else [keras.callbacks.LearningRateScheduler(_cosine_schedule(learning_rate, epochs))]
                ),
                _Checkpointer(train_set, state, paths, monitor, patience, learning_rate if plateau else None),
                *(callbacks or []),
            ]
            if verbose == "tqdm":
                cbs.append(
                    _Progress(epochs, initial_epoch, len(train_set), f"training {Path(paths['model']).name}")
                )
            model.fit(
                train_set,
                validation_data=val_set,
                epochs=epochs,
                initial_epoch=initial_epoch,
                callbacks=cbs,
                verbose=0 if verbose == "tqdm" else verbose,
                shuffle=False,
            )
        if state["stopped"] == NON_FINITE:
            raise TrainingError(
                f"training {paths['model']} failed: the loss became non-finite (NaN or inf) in epoch "
                f"{state.get('failed_epoch')}; no model was saved. The checkpoint of the last good epoch "
                f"({state['epoch']} epochs) stays in {paths['ckpt']}. Lower the learning rate (--lr), check "
                "the data, and start again with --no-resume"
            )
        if os.path.exists(paths["best"]):
            model.load_weights(paths["best"])
        _atomic_save_model(model, paths["model"])
        _write_history(state["history"], paths)
        return TrainingResult(model, state["history"], state["best_epoch"], initial_epoch, state["stopped"])
