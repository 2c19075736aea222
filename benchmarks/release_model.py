"""Make the network that ships with sfh_ml: data, training, calibration, evaluation, card, manifest.

Steps, each resumable (run the same command again after an interruption; what is done is kept):

1. synthetic sets (``sfh_ml.generate``, the default :class:`~sfh_ml.DatasetConfig` apart from the
   size, seed and S/N): training (``--n-train``, S/N 10-100 log-uniform; domain-randomised with
   :data:`TRAINING_WORLD` unless ``--no-randomisation``), calibration (``--n-calib``, S/N 10-100) and
   four test sets (``--n-test`` each: S/N 10, 20, 50 and 10-100), these in the project's own world;
2. training v2 (``sfh_ml.network.train``): ``--members`` networks (member ``i`` seeded
   ``--seed + i``; one is a single network, more a deep ensemble), and for the photometry ablation
   a network trained alike on the spectra alone (``use_photometry=False``; ``--skip-ablation``
   leaves it out);
3. calibrating each member's uncertainties on the calibration set (``sfh_ml.network.calibrate``;
   ``--skip-calibration`` ships them uncalibrated), then its out-of-distribution thresholds on the
   same set (``sfh_ml.network.calibrate_ood``, in :data:`OOD_NODES` bins of S/N), then its trust
   score on ``--trust-n`` objects of every test world at S/N 10-100 (``sfh_ml.network.calibrate_trust``,
   seed :data:`TRUST_FIT_SEED`; ``--skip-trust`` leaves it out);
4. the release files in ``OUT/release/``: the members saved without optimizer state (the files
   that ship), then every figure measured on exactly those files: ``sfh_ml.network.evaluate`` on
   each test set (bin and exact levels), the coverage before (uncalibrated members) and after
   calibration, the ablation (member 0 against the spectra-only network, uncalibrated both, at
   S/N 10, 20 and 50: all objects and the young ones), the synthetic valley (the shipped files on
   every test world of :data:`sfh_ml.synthesis.TEST_WORLDS`, ``--valley-n`` objects each at S/N 50,
   with the out-of-distribution flag, by ``benchmarks/worlds.py``; sets in ``OUT/worlds/``;
   ``--skip-valley`` leaves it out), the trust score's hit and false-alarm rates, ROC AUC and the
   coverage at 1 and 2 sigma on every test world (``benchmarks/trust.py``'s sets and protocol: each
   world scored with parameters fitted on the others) and the inference speed; the training curve
   (validation error and learning rate per epoch) and, with ``--leave-out JSON``, the leave-one-out
   table of ``benchmarks/worlds.py --leave-out`` go into the card too;
5. ``results.json`` (schema: :mod:`sfh_ml.network.card`), ``MODEL_CARD.md``
   (:func:`sfh_ml.network.card.render_model_card`) and ``MANIFEST.json``
   (:func:`sfh_ml.network.pretrained.write_manifest`) in ``OUT/release/``;
6. with ``--install``, copying them into the package (``sfh_ml/pretrained/``) and loading them back
   through ``sfh_ml.load_pretrained()``.

Every step's result is recorded in ``OUT/steps/NAME.json`` with what it depends on (options,
digests of its input files): a step whose record matches is skipped, one whose inputs changed is
done again. Training resumes from its checkpoint, and refuses one made with other options (use
another ``--out``, or delete ``OUT/models``). The speed is measured again on another machine: run
the same command there (with ``OUT`` copied) to quote the 2-core machine's speed after training
on a GPU; the card keeps the training's backend and device.

Usage (any Keras backend; on a GPU machine, e.g. ``KERAS_BACKEND=jax``)::

    python benchmarks/release_model.py --out _build/release --members 3 --workers 16 --install

On a machine with many cores or a GPU, the networks can be trained side by side, one process each,
then the rest done as usual::

    python benchmarks/release_model.py --out OUT --stop-after data --workers 16
    for n in m0 m1 nophot; do python benchmarks/release_model.py --out OUT --only $n & done; wait
    python benchmarks/release_model.py --out OUT

A smoke test of the whole chain takes a few minutes on 2 cores::

    python benchmarks/release_model.py --out /tmp/release-smoke --n-train 400 --n-calib 300 \\
        --n-test 200 --epochs 1 --members 2
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import sfh_ml  # noqa: E402
from sfh_ml import DatasetConfig, generate  # noqa: E402
from sfh_ml.constants import BIRTH_CLOUD_AGE_YR, MAX_AGE_YR  # noqa: E402
from sfh_ml.files import atomic_write_text  # noqa: E402
from sfh_ml.network import (  # noqa: E402
    calibrate_ood,
    calibrate_trust,
    evaluate,
    get_metadata,
    load_data,
    load_model,
    predict,
    pretrained,
    train,
)
from sfh_ml.network.card import QUANTITY_LABELS, render_model_card  # noqa: E402
from sfh_ml.synthesis import (  # noqa: E402
    AXES,
    TEST_WORLDS,
    TRAINING_WORLD,
    WORLD_DESCRIPTIONS,
    photometry,
    world_config,
)
from sfh_ml.synthesis.schema import SCHEMA_VERSION  # noqa: E402
from sfh_ml.synthesis.ssp import LIBRARY_VERSION, SEAM_AGE_YR, load_library  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import trust as trust_bench  # noqa: E402  (benchmarks/trust.py)
import worlds  # noqa: E402  (benchmarks/worlds.py)
from inference import inference_rate  # noqa: E402  (benchmarks/inference.py)

REPO = Path(__file__).resolve().parent.parent
PAPER_N_TRAIN = 165_000  # Galceran et al. (2026): the size the issue asks for at least
SNR_RANGE = (10.0, 100.0)  # S/N per pixel of the training, calibration and mixed test sets
# name: (data seed, S/N per pixel) of the held-out sets; the training set uses seed 1, calibration 2
TEST_SETS = {
    "S/N 10": (3, (10.0, 10.0)),
    "S/N 20": (4, (20.0, 20.0)),
    "S/N 50": (5, (50.0, 50.0)),
    "S/N 10-100": (6, SNR_RANGE),
}
ABLATION_SETS = ("S/N 10", "S/N 20", "S/N 50")
# Domain randomisation of the training set (``--no-randomisation`` leaves it out): one home, in
# sfh_ml.synthesis.worlds.
OOD_NODES = 4  # S/N bins of the out-of-distribution thresholds fitted on the calibration set (10-100)
VALLEY_SNR = 50.0  # S/N per pixel of the test worlds' sets (their seed: worlds.SEED)
VAL_FRACTION = 0.1  # held out of the training set for early stopping and the best epoch
SPEED_BATCH = 1024  # batch of the speed figures (the target: 5,000 spectra/s at batch 1024)
# The trust score's fitting sets: every test world at S/N 10-100 (--trust-n objects each), a seed no
# other set uses; its rates are then measured on benchmarks/trust.py's sets (seed trust_bench.SEED),
# each world with parameters fitted on the others.
TRUST_FIT_SEED = 7500


def _slug(label):
    return label.replace("S/N ", "snr").replace("-", "_")


# ----------------------------------------------------------------------------------------- steps
class Steps:
    """Resumable steps: ``run(name, params, fn)`` calls ``fn()`` once per ``params`` and keeps its result.

    ``params`` holds what the step depends on (options, and the digests of its input files), so a
    step whose inputs changed is done again.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def run(self, name, params, fn):
        path = self.folder / f"{name}.json"
        params = json.loads(json.dumps(params))  # as it comes back from the record
        if path.exists():
            record = json.loads(path.read_text())
            if record["params"] == params:
                print(f"[{name}] done before, kept ({path})")
                return record["result"]
            old = record["params"]
            changed = sorted(k for k in set(params) | set(old) if params.get(k) != old.get(k))
            print(f"[{name}] its inputs or options changed ({', '.join(changed)}): doing it again")
        print(f"[{name}] ...", flush=True)
        start = time.perf_counter()
        result = fn()
        print(f"[{name}] done in {time.perf_counter() - start:.0f} s", flush=True)
        atomic_write_text(path, json.dumps({"params": params, "result": result}, indent=1))
        return result


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch, kept in a JSON file, so that a resumed training's total time is known.

    With ``stop_at`` (a ``time.time()`` value), training stops after the last epoch that ends before it
    (judged by the slowest epoch so far): for a machine lent for a fixed time.
    """

    def __init__(self, path, stop_at=None):
        super().__init__()
        self.path, self.stop_at, self.slowest, self.hit = Path(path), stop_at, 0.0, False

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        times = json.loads(self.path.read_text()) if self.path.exists() else {}
        times[str(epoch)] = time.perf_counter() - self.start
        atomic_write_text(self.path, json.dumps(times))
        self.slowest = max(self.slowest, times[str(epoch)])
        if self.stop_at is not None and time.time() + 1.05 * self.slowest > self.stop_at:
            print(f"time limit: stopping after epoch {epoch} ({len(times)} epochs run)", flush=True)
            self.model.stop_training = True
            self.hit = True


# ----------------------------------------------------------------------------------------- 1. data
def make_sets(args, out):
    """Generate (or resume) every synthetic set; returns {name: (config, path)}."""
    sets = {
        "train": DatasetConfig(
            n=args.n_train, seed=1, snr=SNR_RANGE, **({} if args.no_randomisation else TRAINING_WORLD)
        ),
        "calibration": DatasetConfig(n=args.n_calib, seed=2, snr=SNR_RANGE),
        **{
            label: DatasetConfig(n=args.n_test, seed=seed, snr=snr)
            for label, (seed, snr) in TEST_SETS.items()
        },
    }
    paths = {}
    for name, config in sets.items():
        if name == "calibration" and args.skip_calibration:
            continue
        path = out / "data" / f"{_slug(name)}.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"[data] {name}: {config.n:,} spectra -> {path}", flush=True)
        generate(config, path, workers=args.workers, progress=True)
        paths[name] = (config, path)
    return paths


# ----------------------------------------------------------------------------------------- 2. training
def train_one(args, steps, train_path, out_path, seed, version="v2", **hyper):
    """Train (or resume) one network; returns its record (epochs run, best epoch, seconds)."""
    timer = Path(f"{out_path}.epoch_seconds.json")
    options = dict(
        version=version,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=seed,
        learning_rate=args.lr,
        patience=args.patience,
        val_fraction=VAL_FRACTION,
        augment=True,
        **({} if args.schedule == "cosine" else {"schedule": args.schedule}),  # the v2 run's record
    )

    def run():
        epoch_timer = EpochTimer(timer, args.stop_at)
        result = train(
            train_path,
            out_path=out_path,
            verbose=2,
            callbacks=[epoch_timer],
            **options,
            **hyper,
        )
        seconds = sum(json.loads(timer.read_text()).values()) if timer.exists() else None
        return {
            "epochs_run": len(result.history),
            "best_epoch": result.best_epoch,
            "stopped": result.stopped or ("time limit (--time-limit)" if epoch_timer.hit else None),
            "seconds": seconds,
            "backend": keras.backend.backend(),
            "device": _device(),
        }

    params = {"data": str(train_path), "n_train": args.n_train, **options, **hyper}
    return steps.run(f"train_{Path(out_path).stem}", params, run)


def calibrate_one(steps, model_path, calib_path, out_path):
    """Calibrate one member's uncertainties (``sfh_ml.network.calibrate``) into ``out_path``."""
    try:
        calibrate = sfh_ml.network.calibrate
    except AttributeError:
        sys.exit(
            "release_model: sfh_ml.network.calibrate is not in this sfh_ml yet: update sfh_ml, or pass "
            "--skip-calibration to ship uncalibrated uncertainties"
        )

    def run():
        # overwrite: a file left by an interrupted run of this step (the step's record is what counts)
        result = calibrate(model_path, calib_path, out_path, overwrite=True)
        as_list = lambda value: np.asarray(value).tolist()
        return json.loads(json.dumps(result, default=as_list)) if isinstance(result, dict) else None

    params = {"model_sha256": pretrained.file_digest(model_path), "calibration": str(calib_path)}
    return steps.run(f"calibrate_{Path(model_path).stem}", params, run)


def calibrate_ood_one(steps, model_path, calib_path, out_path):
    """Fit a member's out-of-distribution thresholds (``sfh_ml.network.calibrate_ood``) on the
    calibration set, in OOD_NODES bins of S/N, into ``out_path``."""

    def run():
        result = calibrate_ood(model_path, calib_path, out_path, overwrite=True, n_nodes=OOD_NODES)
        return json.loads(json.dumps(result, default=lambda value: np.asarray(value).tolist()))

    params = {
        "model_sha256": pretrained.file_digest(model_path),
        "calibration": str(calib_path),
        "nodes": OOD_NODES,
    }
    return steps.run(f"calibrate_ood_{Path(model_path).stem}", params, run)


def trust_fit_sets(args, out):
    """The sets the trust score is fitted on: every test world, S/N 10-100, ``--trust-n`` objects."""
    folder = out / "trust_fit"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for world in TEST_WORLDS:
        path = folder / f"world_{world}_n{args.trust_n}_seed{TRUST_FIT_SEED}.h5"
        config = world_config(world, args.trust_n, TRUST_FIT_SEED, snr=SNR_RANGE, chunk_size=250)
        generate(config, path, workers=args.workers, progress=True)
        paths.append(path)
    return paths


def calibrate_trust_one(steps, model_path, fit_paths, out_path):
    """Fit a member's trust score (``sfh_ml.network.calibrate_trust``) on the trust sets into ``out_path``."""

    def run():
        return calibrate_trust(model_path, fit_paths, out_path, overwrite=True)

    params = {"model_sha256": pretrained.file_digest(model_path), "data": [str(p) for p in fit_paths]}
    return steps.run(f"calibrate_trust_{Path(model_path).stem}", params, run)


def trust_figures(args, steps, out, release, names):
    """results["trust"]: the shipped files' trust-score rates and coverage on every test world
    (``benchmarks/trust.py``'s sets and protocol: each world scored with parameters fitted on the
    others, S/N 10-100)."""
    files = [release / n for n in names]

    def run():
        folder = out / "trust"
        folder.mkdir(parents=True, exist_ok=True)
        models = [load_model(f) for f in files]
        rows, _ = trust_bench.world_rows(
            models if len(models) > 1 else models[0], folder, args.trust_n, args.workers
        )
        return {"n_objects": args.trust_n, "snr": list(SNR_RANGE), "seed": trust_bench.SEED, "rows": rows}

    params = {
        "models": {n: pretrained.file_digest(release / n) for n in names},
        "n": args.trust_n,
        "worlds": TEST_WORLDS,
        "schema_version": SCHEMA_VERSION,
    }
    return steps.run("trust", params, run)


def training_history(out_path):
    """The validation curve of one training run (``STEM_history.json`` beside the model): rows of
    ``epoch``, ``point_error``, ``val_point_error``, ``val_loss`` and ``learning_rate``."""
    path = Path(out_path).with_name(f"{Path(out_path).stem}_history.json")
    if not path.is_file():
        return None
    keys = ("epoch", "point_error", "val_point_error", "val_loss", "learning_rate")
    return [{k: _finite(row.get(k)) for k in keys} for row in json.loads(path.read_text())]


# ----------------------------------------------------------------------------------------- 4. release files
def release_files(steps, sources, release, name):
    """Save the members without optimizer state into ``release/``; returns their file names.

    The shipped files are an inference copy: the weights, the metadata and the calibration live in
    the layers' configs and weights, the optimizer state (two thirds of a training file) does not ship.
    """
    names = [f"{name}.keras"] if len(sources) == 1 else [f"{name}_m{i}.keras" for i in range(len(sources))]

    def run():
        release.mkdir(parents=True, exist_ok=True)
        for stale in release.glob("*.keras"):
            if stale.name not in names:
                stale.unlink()
        for src, dst in zip(sources, names):
            model = keras.models.load_model(src, compile=False)
            tmp = release / f"{dst}.tmp.keras"
            model.save(tmp)
            os.replace(tmp, release / dst)
            load_model(release / dst)  # an sfh_ml network, readable as shipped
        return {n: pretrained.file_digest(release / n) for n in names}

    params = {"sources": {str(s): pretrained.file_digest(s) for s in sources}, "names": names}
    digests = steps.run("release_files", params, run)
    for n in names:  # the files on disk must still be those the figures below are measured on
        if not (release / n).is_file() or pretrained.file_digest(release / n) != digests[n]:
            sys.exit(
                f"release_model: {release / n} changed since it was written: delete "
                f"{steps.folder / 'release_files.json'} to write the release files again"
            )
    return names


def evaluation(steps, key, models, label, path):
    """``sfh_ml.network.evaluate`` of a model (or ensemble) on one test set, kept as a step."""
    models = [Path(m) for m in models]
    params = {"models": {str(m): pretrained.file_digest(m) for m in models}, "data": str(path)}
    return steps.run(
        f"evaluate_{key}_{_slug(label)}", params, lambda: evaluate([str(m) for m in models], path)
    )


# ----------------------------------------------------------------------------------------- figures
def metrics_row(label, snr, ev):
    """One row of results["metrics"] from an evaluate() output."""

    def pick(table):
        return {q: table[q] for q in QUANTITY_LABELS if table.get(q)}

    return {
        "label": label,
        "snr": list(snr),
        "n_objects": ev["n_objects"],
        "n_unusable": ev["n_unusable"],
        "bin": pick(ev["mean_quantities"]),
        "exact": pick(ev.get("exact", {}).get("mean_quantities", {})),
    }


def coverage_figures(ev):
    """{output: {"1sigma": fraction, "2sigma": fraction}} of an evaluate() output."""
    return {k: {s: v[s]["all"] for s in ("1sigma", "2sigma")} for k, v in ev["coverage"].items()}


def zh_prior_figures(ev, label):
    """results["zh_prior"] from an evaluate() output (its ``by_true_zh``, bin level): bias and NMAD of the
    mass-weighted [M/H] and log age per bin of the true mass-weighted [M/H], empty bins left out; None
    where the output has no such table."""
    table = ev.get("by_true_zh")
    if not table:
        return None
    edges = [float(e) for e in table["zh_bins"]]
    rows = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        zh, age = table["mw_zh"][i], table["mw_log_age"][i]
        if not zh.get("n"):
            continue
        row = {"zh_range": [lo, hi], "n": int(zh["n"])}
        for q, stats in (("mw_zh", zh), ("mw_log_age", age)):
            row[q] = {k: _finite(stats.get(k)) for k in ("bias", "nmad")}
        rows.append(row)
    return {"label": label, "zh_bins": edges, "rows": rows}


def ablation_rows(with_phot, without_phot):
    """Rows of results["ablation"]: NMAD (bin level) with and without photometry, all and young objects."""

    def nmad(table):
        return {q: (table.get(q) or {}).get("nmad") for q in QUANTITY_LABELS if q in table}

    rows = []
    for label in ABLATION_SETS:
        w, wo = with_phot[label], without_phot[label]
        samples = [("all", "mean_quantities")] + ([("young", "young")] if "young" in w else [])
        for sample, key in samples:
            n = w["n_objects"] if sample == "all" else w[key]["mw_log_age"]["n"]
            rows.append(
                {
                    "snr": TEST_SETS[label][1][0],
                    "sample": sample,
                    "n_objects": n,
                    "with_photometry": nmad(w[key]),
                    "without_photometry": nmad(wo[key]),
                }
            )
    return rows


def valley(args, steps, out, release, names):
    """The shipped files on every test world (``benchmarks/worlds.py``): results["valley"] but its note."""
    files = [release / n for n in names]
    folder = out / "worlds"

    def run():
        folder.mkdir(parents=True, exist_ok=True)
        method = "release"
        networks = {method: [load_model(f) for f in files]}
        rows = []
        for world in TEST_WORLDS:
            path = worlds.world_set(folder, world, args.valley_n, VALLEY_SNR, args.workers)
            scored, flagged, hits = worlds.score_world(path, networks, 0, folder, args.workers, goodness=True)
            rows.append(valley_row(world, scored, flagged.get(method), hits.get(method)))
            print(f"[valley] {world}: scored", flush=True)
        return {
            "snr": VALLEY_SNR,
            "n_objects": args.valley_n,
            "seed": worlds.SEED,
            "statistic": "bin level",
            "rows": rows,
        }

    params = {
        "models": {n: pretrained.file_digest(release / n) for n in names},
        "n": args.valley_n,
        "snr": VALLEY_SNR,
        "seed": worlds.SEED,
        "worlds": TEST_WORLDS,
        "schema_version": SCHEMA_VERSION,
        "library_version": LIBRARY_VERSION,
    }
    return steps.run("valley", params, run)


def valley_row(world, scored, flagged, hits):
    """One row of results["valley"] (but its description) from a world's score_rows rows (bin level)
    and flag figures."""

    def stats(quantity, sample):
        for r in scored:
            if (r["quantity"], r["sample"], r["level"]) == (quantity, sample, "bin"):
                return {k: _finite(r.get(k)) for k in ("bias", "nmad", "n")}
        return None

    hits = hits or {}
    return {
        "world": world,
        "mw_log_age": stats("mw_log_age", "all"),
        "mw_log_age_young": stats("mw_log_age", "young"),
        "mw_zh": stats("mw_zh", "all"),
        "flagged": _finite(flagged),
        "hit_rate": _finite(hits.get("hit_rate")),
        "n_lost": hits.get("n_lost"),
    }


def _finite(value):
    """A plain number for the JSON, None for a missing or non-finite one."""
    if value is None:
        return None
    value = value.item() if isinstance(value, np.generic) else value
    return value if np.isfinite(value) else None


def randomisation_note(world):
    """What a domain-randomised training set (``TRAINING_WORLD``) mixed: the valley's note, or None.

    The worlds named as partly seen are those of the axes (:data:`sfh_ml.synthesis.AXES`) whose
    options the training world sets."""
    parts = []
    if world.get("library") == "mix":
        lo, hi = world.get("library_mix", (0.0, 1.0))
        parts.append(f"E-MILES and BC03 stars mixed per object (E-MILES share uniform in {lo:g}-{hi:g})")
    for key, label in (
        ("parametric_frac", "{:.0%} of the histories from the parametric families"),
        ("zh_track_frac", "{:.0%} of the [M/H] tracks constant or falling"),
        ("burst_any_age", "{:.0%} of the histories with a burst at any age"),
        ("line_scatter", "metal-line ratios scattered by {:g} dex per ion"),
    ):
        if world.get(key):
            parts.append(label.format(world[key]))
    for key, label in (
        ("dust_slope", "the ISM power-law index {:g} to {:g} per object"),
        ("ml_slope", "an IMF-like mass-to-light slope of {:g} to {:g} per object"),
    ):
        if isinstance(world.get(key), tuple) and world[key][0] != world[key][1]:
            parts.append(label.format(*world[key]))
    if isinstance(world.get("birth_cloud_age_yr"), tuple):
        lo, hi = (a / 1e6 for a in world["birth_cloud_age_yr"])
        parts.append(f"birth clouds dispersed after {lo:g}-{hi:g} Myr per object")
    errors = [
        (key, label)
        for key, label in (
            ("flux_calibration", "flux calibration {:.0%}"),
            ("lsf_error", "LSF width {:.0%}"),
            ("wave_shift_kms", "wavelength shift {:g} km/s"),
            ("sky_residual", "sky residuals {:g}× the noise"),
        )
        if world.get(key)
    ]
    if errors:
        parts.append(
            "observational errors (" + ", ".join(label.format(world[key]) for key, label in errors) + ")"
        )
    seen = [w for axis in AXES.values() if set(axis["options"]) & set(world) for w in axis["worlds"]]
    if not parts:
        return None
    names = [f"*{w}*" for w in seen]
    names = (", ".join(names[:-1]) + " and " if len(names) > 1 else "") + names[-1]
    names += " worlds are" if len(seen) > 1 else " world is"
    return (
        f"The training set was domain-randomised: {'; '.join(parts)}. The {names} therefore partly "
        "seen in training, unlike the others."
    )


def _device():
    """The accelerator(s) Keras uses, in words."""
    try:
        devices = ", ".join(keras.distribution.list_devices())
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        devices = "unknown device"
    if keras.backend.backend() == "jax":
        import jax  # the device's name, on the backend that has one at hand

        devices += f" ({jax.devices()[0].device_kind})"
    return f"{devices}; {os.cpu_count()} CPU cores"


def measure_speed(steps, release, names, test_path):
    """Spectra per second: one member's network, and sfh_ml.predict with all members and with one."""

    def run():
        data = load_data(test_path)
        n = 8 * SPEED_BATCH
        reps = -(-n // len(data["spectra"]))
        x = {k: np.tile(data[k], (reps, 1))[:n] for k in ("spectra", "photometry")}
        models = [load_model(release / f) for f in names]
        network = {"spectrum": x["spectra"], "photometry": x["photometry"]}
        rows = [
            ("one network, Keras model.predict", inference_rate(models[0], network, batch_size=SPEED_BATCH))
        ]
        if len(models) == 1:
            rows.append(("sfh_ml.predict (masking and quality flags included)", _predict_rate(models, x)))
        else:
            rows.append((f"sfh_ml.predict, all {len(models)} members", _predict_rate(models, x)))
            rows.append(('sfh_ml.predict, first member (members="fast")', _predict_rate(models[:1], x)))
        rows = [{"what": what, "spectra_per_s": rate} for what, rate in rows]
        return {
            "batch_size": SPEED_BATCH,
            "backend": keras.backend.backend(),
            "device": _device(),
            "rows": rows,
        }

    params = {"models": {f: pretrained.file_digest(release / f) for f in names}, "host": os.uname().nodename}
    return steps.run("speed", params, run)


def _predict_rate(models, x, repeats=3):
    predict(
        models, x["spectra"][:SPEED_BATCH], x["photometry"][:SPEED_BATCH], batch_size=SPEED_BATCH
    )  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(models, x["spectra"], x["photometry"], batch_size=SPEED_BATCH)
        times.append(time.perf_counter() - start)
    return len(x["spectra"]) / float(np.median(times))


def _git_commit():
    """The commit of the code (with "+uncommitted changes" if the package's code differs from it; the
    installed release files in sfh_ml/pretrained/ do not count), or None."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "sfh_ml", ":!sfh_ml/pretrained"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + (" + uncommitted changes" if status.stdout.strip() else "")


def _pair(value):
    """A (min, max) option of a DatasetConfig as a list, or None when it is not a pair of numbers."""
    try:
        lo, hi = value
        return [float(lo), float(hi)]
    except (TypeError, ValueError):
        return None


def _snr_phot(value, filters):
    """The S/N of the training set's HST fluxes for the card: [min, max], or the per-band model in words."""
    if value != "phangs":
        return _pair(value)
    median = getattr(photometry, "PHANGS_SNR_MEDIAN", {})
    bands = [(f.split("_")[-1], median.get(f.split("_")[-1])) for f in filters or []]
    typical = ", ".join(f"{band} {snr:g}" for band, snr in bands if snr is not None)
    return "drawn per band like the PHANGS-HST catalogues" + (f" (median {typical})" if typical else "")


def reproduce_command(args, backend):
    options = [
        f"--name {shlex.quote(args.name)}",
        f"--n-train {args.n_train}",
        f"--n-calib {args.n_calib}",
        f"--n-test {args.n_test}",
        f"--epochs {args.epochs}",
        f"--batch-size {args.batch_size}",
        f"--lr {args.lr:g}",
        f"--patience {args.patience}",
        *([] if args.schedule == "cosine" else [f"--schedule {args.schedule}"]),
        f"--seed {args.seed}",
        f"--members {args.members}",
        *(["--no-randomisation"] if args.no_randomisation else []),
        *(["--skip-ablation"] if args.skip_ablation else []),
        *(["--skip-valley"] if args.skip_valley else [f"--valley-n {args.valley_n}"]),
        *(["--skip-trust"] if args.skip_trust else [f"--trust-n {args.trust_n}"]),
        *([f"--ablation-seed {args.ablation_seed}"] if args.ablation_seed is not None else []),
        *(["--skip-calibration"] if args.skip_calibration else []),
        *([f"--time-limit {args.time_limit:g}"] if args.time_limit is not None else []),
    ]
    return f"KERAS_BACKEND={backend} python benchmarks/release_model.py --out OUT " + " ".join(options)


def build_results(args, sets, trained, names, release, evals, speed, valley_figures=None):
    """The results JSON of the release (schema: sfh_ml.network.card)."""
    model = load_model(release / names[0])
    meta = get_metadata(model)
    train_config = sets["train"][0]
    cfg = json.loads(train_config.to_json())
    lib = load_library()
    members = [trained[f"m{i}"] for i in range(args.members)]
    test_sets = [
        {"label": label, "n": sets[label][0].n, "seed": seed, "snr": list(snr)}
        for label, (seed, snr) in TEST_SETS.items()
    ]
    calibration = None if args.skip_calibration else {"n": args.n_calib, "seed": 2, "snr": list(SNR_RANGE)}
    results = {
        "name": args.name,
        "created": time.strftime("%Y-%m-%d"),
        "model": {
            "architecture": meta["version"],
            "n_members": args.members,
            "n_parameters": int(model.count_params()),
            "size_mb": sum((release / n).stat().st_size for n in names) / 1e6,
            "files": names,
            "n_wave": meta["n_wave"],
            "wave_range_aa": [float(meta["wave_aa"][0]), float(meta["wave_aa"][-1])],
            "filters": meta["filters"],
            "age_bins_yr": [float(e) for e in meta["age_bins_yr"]],
            "zh_range": list(meta["zh_range"]),
            "calibrated": not args.skip_calibration,
            "ood_thresholds": None if meta.get("ood_thresholds") is None else meta["ood_thresholds"].tolist(),
        },
        "training": {
            "n_train": args.n_train,
            "dataset_config": cfg,
            "seed": args.seed,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "patience": args.patience,
            "schedule": args.schedule,
            "val_fraction": VAL_FRACTION,
            "augment": True,
            "epochs_run": [m["epochs_run"] for m in members],
            "best_epoch": [m["best_epoch"] for m in members],
            "stopped": [m.get("stopped") or "all epochs run" for m in members],
            "backend": members[0].get("backend"),
            "device": members[0].get("device"),
            "seconds": sum(m["seconds"] or 0.0 for m in members) or None,
            "calibration": calibration,
            "test_sets": test_sets,
        },
        "generator": {
            "sfh_ml_version": sfh_ml.__version__,
            "schema_version": SCHEMA_VERSION,
            "library_version": LIBRARY_VERSION,
            "git_commit": _git_commit(),
        },
        "domain": {
            "age_range_yr": [float(lib.age_yr[0]), MAX_AGE_YR],
            "wave_range_aa": [float(meta["wave_aa"][0]), float(meta["wave_aa"][-1])],
            "sigma_kms": _pair(cfg.get("sigma_kms")),
            "snr": _pair(cfg.get("snr")),
            "snr_phot": _snr_phot(cfg.get("snr_phot"), meta["filters"]),
            "zh_range": list(meta["zh_range"]),
            "seam_age_yr": SEAM_AGE_YR,
            "tau_bc": _pair(cfg.get("tau_bc")),
            "tau_ism": _pair(cfg.get("tau_ism")),
            "birth_cloud_age_yr": cfg.get("birth_cloud_age_yr", BIRTH_CLOUD_AGE_YR),
        },
        "metrics": [metrics_row(label, TEST_SETS[label][1], evals["release"][label]) for label in TEST_SETS],
        "coverage": [
            {
                "label": label,
                "before": coverage_figures(evals["before"][label]),
                "after": None if args.skip_calibration else coverage_figures(evals["release"][label]),
            }
            for label in TEST_SETS
        ],
        "speed": speed,
        "reproduce": reproduce_command(args, members[0].get("backend") or keras.backend.backend()),
    }
    if args.members > 1:
        results["metrics_fast"] = [
            metrics_row(label, TEST_SETS[label][1], evals["fast"][label]) for label in TEST_SETS
        ]
    if valley_figures is not None:
        note = None if args.no_randomisation else randomisation_note(TRAINING_WORLD)
        rows = [{**r, "description": WORLD_DESCRIPTIONS.get(r["world"], "")} for r in valley_figures["rows"]]
        results["valley"] = {**valley_figures, "rows": rows, **({"note": note} if note else {})}
    zh_prior = zh_prior_figures(evals["release"]["S/N 50"], "S/N 50")
    if zh_prior is not None:
        results["zh_prior"] = zh_prior
    if not args.skip_ablation:
        young = evals["m0"][ABLATION_SETS[0]].get("young", {}).get("max_age_yr")
        results["ablation"] = {
            "young_definition": "true mass-weighted age (from the bins) below "
            + (f"{young / 1e6:g} Myr" if young else "the evaluation's limit"),
            "statistic": "NMAD (dex), bin level",
            "rows": ablation_rows(evals["m0"], evals["nophot"]),
        }
    return results


# ----------------------------------------------------------------------------------------- 6. install
def carry_comparisons(release):
    """Carry the installed comparisons.json (v1, the learning curve: benchmarks/release_comparisons.py)
    into the release, where it has none of its own and the installed one names the network it was
    trained beside (its ``reference``): chapter 3 then shows them against that network, beside this."""
    target = release / pretrained.COMPARISONS_NAME
    if target.exists():
        return
    try:
        comparisons = pretrained.pretrained_comparisons()
    except pretrained.PretrainedError:  # none installed, or damaged: the release has no comparisons
        return
    if "reference" not in comparisons:
        print("note: the installed comparisons.json names no reference network: not carried on")
        return
    atomic_write_text(target, json.dumps(comparisons, indent=1) + "\n")
    print(f"carried on the comparisons of release {comparisons['reference']['name']!r}")


def install(release):
    """Copy the release into sfh_ml/pretrained/ (the manifest last), then load it back."""
    target = Path(pretrained.PRETRAINED_DIR)
    manifest = json.loads((release / pretrained.MANIFEST_NAME).read_text())
    shipped = set(manifest["files"])
    for old in target.glob("*.keras"):
        if old.name not in shipped:
            old.unlink()
    for name in sorted(shipped) + [pretrained.MANIFEST_NAME]:
        tmp = target / f".{name}.tmp"
        shutil.copyfile(release / name, tmp)
        os.replace(tmp, target / name)
    problems = pretrained.verify_pretrained()
    if problems:
        sys.exit("release_model: the installed files fail their check:\n" + "\n".join(problems))
    model = pretrained.load_pretrained()
    n = len(model) if isinstance(model, list) else 1
    print(f"installed {sorted(shipped)} into {target}; sfh_ml.load_pretrained() loads {n} network(s)")


# ----------------------------------------------------------------------------------------- main
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="_build/release", help="work folder (default _build/release)")
    parser.add_argument("--name", default="v2", help="the model's name in the manifest (default v2)")
    parser.add_argument("--n-train", type=int, default=200_000, help="training spectra (default 200,000)")
    parser.add_argument("--n-calib", type=int, default=20_000, help="calibration spectra (default 20,000)")
    parser.add_argument("--n-test", type=int, default=10_000, help="spectra per test set (default 10,000)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3, help="initial learning rate")
    parser.add_argument("--patience", type=int, default=5, help="early-stopping patience (epochs)")
    parser.add_argument(
        "--schedule",
        choices=("cosine", "plateau"),
        default="cosine",
        help="learning rate: cosine over --epochs, or halved on a plateau (train until it stops improving)",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of member 0 (member i: seed + i)")
    parser.add_argument("--members", type=int, default=1, help="networks in the shipped ensemble (default 1)")
    parser.add_argument("--workers", type=int, default=1, help="processes generating the synthetic sets")
    parser.add_argument(
        "--skip-ablation", action="store_true", help="no spectra-only network, no ablation table"
    )
    parser.add_argument("--skip-calibration", action="store_true", help="ship uncalibrated uncertainties")
    parser.add_argument("--skip-valley", action="store_true", help="no test worlds, no valley table")
    parser.add_argument("--skip-trust", action="store_true", help="no trust score fitted, no trust table")
    parser.add_argument(
        "--trust-n", type=int, default=1000, help="objects per test world to fit and measure the trust score"
    )
    parser.add_argument(
        "--leave-out",
        metavar="JSON",
        help="the leave-one-out table for the card (leave_out.json of benchmarks/worlds.py --leave-out)",
    )
    parser.add_argument(
        "--valley-n", type=int, default=1000, help="objects per test world of the valley table (default 1000)"
    )
    parser.add_argument(
        "--no-randomisation",
        action="store_true",
        help="train on the project's own world only (no TRAINING_WORLD domain randomisation)",
    )
    parser.add_argument(
        "--ablation-seed", type=int, help="seed of the spectra-only network (default: that of member 0)"
    )
    parser.add_argument("--install", action="store_true", help="copy the release into sfh_ml/pretrained/")
    parser.add_argument(
        "--stop-after",
        choices=("data", "train"),
        help="stop once the sets (data) or the networks (train) are made, e.g. to train elsewhere",
    )
    parser.add_argument(
        "--only",
        metavar="NETWORK",
        help="train only this network (m0, m1, ..., nophot) and stop: run one process per network to "
        "train them side by side on a machine with many cores or a GPU",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop training after the last epoch that ends within this many seconds of the start "
        "(the learning rate then has not decayed to its end: the card's epoch count says how far it got)",
    )
    args = parser.parse_args(argv)
    args.stop_at = None if args.time_limit is None else time.time() + args.time_limit
    if args.members < 1:
        parser.error("--members must be >= 1")
    if not args.name or Path(args.name).name != args.name:
        parser.error(f"--name must be a plain name (a file stem), got {args.name!r}")
    return args


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    steps = Steps(out / "steps")
    release = out / "release"
    print(
        f"release of {args.name!r} in {out}: Keras backend {keras.backend.backend()}, {_device()}", flush=True
    )
    if args.n_train < PAPER_N_TRAIN:
        print(
            f"note: {args.n_train:,} training spectra, fewer than the paper's {PAPER_N_TRAIN:,}", flush=True
        )

    sets = make_sets(args, out)
    if args.stop_after == "data":
        return
    train_path = sets["train"][1]
    models = out / "models"
    networks = {f"m{i}": (args.seed + i, {}) for i in range(args.members)}
    if not args.skip_ablation:
        networks["nophot"] = (
            args.seed if args.ablation_seed is None else args.ablation_seed,
            {"use_photometry": False},
        )
    if args.only is not None:
        if args.only not in networks:
            sys.exit(f"release_model: --only {args.only!r} is not one of {sorted(networks)}")
        networks = {args.only: networks[args.only]}
    trained = {
        name: train_one(args, steps, train_path, models / f"{name}.keras", seed, **hyper)
        for name, (seed, hyper) in networks.items()
    }
    if args.only is not None or args.stop_after == "train":
        return
    raw = [models / f"m{i}.keras" for i in range(args.members)]
    if args.skip_calibration:
        shipped = raw
    else:
        calibrated = [models / f"m{i}_calibrated.keras" for i in range(args.members)]
        ood = [models / f"m{i}_ood.keras" for i in range(args.members)]
        shipped = [models / f"m{i}_shipped.keras" for i in range(args.members)]
        fit_paths = None if args.skip_trust else trust_fit_sets(args, out)
        for src, mid, with_ood, dst in zip(raw, calibrated, ood, shipped):
            calibrate_one(steps, src, sets["calibration"][1], mid)
            if fit_paths is None:
                calibrate_ood_one(steps, mid, sets["calibration"][1], dst)
            else:
                calibrate_ood_one(steps, mid, sets["calibration"][1], with_ood)
                calibrate_trust_one(steps, with_ood, fit_paths, dst)

    names = release_files(steps, shipped, release, args.name)
    files = [release / n for n in names]
    evals = {"release": {}, "before": {}, "fast": {}, "m0": {}, "nophot": {}}
    for label in TEST_SETS:
        path = sets[label][1]
        evals["release"][label] = evaluation(steps, "release", files, label, path)
        evals["before"][label] = evaluation(steps, "uncalibrated", raw, label, path)
        if args.members > 1:
            evals["fast"][label] = evaluation(steps, "fast", files[:1], label, path)
        if not args.skip_ablation and label in ABLATION_SETS:
            evals["m0"][label] = (
                evals["before"][label] if args.members == 1 else evaluation(steps, "m0", raw[:1], label, path)
            )
            evals["nophot"][label] = evaluation(steps, "nophot", [models / "nophot.keras"], label, path)
    valley_figures = None if args.skip_valley else valley(args, steps, out, release, names)
    trust = None if args.skip_trust else trust_figures(args, steps, out, release, names)
    speed = measure_speed(steps, release, names, sets["S/N 50"][1])

    results = build_results(args, sets, trained, names, release, evals, speed, valley_figures)
    results["training"]["history"] = training_history(raw[0])
    if trust is not None:
        results["trust"] = trust
    if args.leave_out is not None:  # benchmarks/worlds.py --leave-out ... writes it
        results["leave_out"] = {"rows": json.loads(Path(args.leave_out).read_text())}
    atomic_write_text(release / pretrained.RESULTS_NAME, json.dumps(results, indent=1) + "\n")
    atomic_write_text(release / pretrained.CARD_NAME, render_model_card(results))
    carry_comparisons(release)
    pretrained.write_manifest(release, args.name, names)
    print(f"wrote {release}: {', '.join(sorted(p.name for p in release.iterdir()))}")
    if results["generator"]["git_commit"] and "uncommitted" in results["generator"]["git_commit"]:
        print(
            "note: sfh_ml/ has uncommitted changes: commit them first, so that the card's commit "
            "reproduces the model"
        )
    if args.install:
        install(release)
    else:
        print("check OUT/release/MODEL_CARD.md, then run the same command with --install to ship it")


if __name__ == "__main__":
    main()
