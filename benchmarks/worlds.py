"""The networks and pPXF on the own held-out world and on every test world, side by side (issue 10).

Each test world (:data:`sfh_ml.synthesis.TEST_WORLDS`: another stellar library, other history
families, other dust laws and birth-cloud ages, observational errors) is one held-out set of ``--n``
objects at S/N ``--snr`` with the same seed, so every world holds the same draws but for the one
thing it changes. On each: the shipped network and any ``--model`` networks (all objects), pPXF
without HST on the first ``--ppxf-n`` objects (``sfh_ml.fitting``, cached), and, with ``--goodness``,
the fraction of objects the re-synthesis score flags (:mod:`sfh_ml.network.goodness`).

``--leave-out AXIS ...`` runs the leave-one-out protocol (issue 18): for each axis of
:data:`sfh_ml.synthesis.AXES` (or ``all``: every axis randomised, :data:`sfh_ml.synthesis.TRAINING_WORLD`)
a v2 network trained on ``--loo-n`` spectra of the training world with that axis left out
(:func:`sfh_ml.synthesis.leave_out_world`; S/N 10-100, seed 7200, ``--epochs``, early stopping), each
then scored on every world beside the others: a left-out network meets its axis's test worlds as a
shift it has not seen. Sets and networks are kept in ``--out`` and reused; an interrupted training
resumes.

``--train N`` first runs the domain-randomisation experiment: two v2 networks of the same size,
seed and epochs, one trained on ``N`` default (E-MILES) spectra, one on ``N`` spectra whose stars mix
E-MILES and BC03 with a random weight per object (``DatasetConfig(library="mix")``), both scored on
every world. Training resumes after an interruption (``sfh_ml.network.train``); sets are reused.

Prints a Markdown table (mass-weighted log age and [M/H], bin level: bias = mean error, NMAD; the
young-dominated objects' log-age bias) and writes ``worlds.csv`` (the rows of
:func:`sfh_ml.network.metrics.score_rows` with ``method`` and ``world``) and ``worlds.md`` to ``--out``.

    python benchmarks/worlds.py [--n 1000] [--snr 50] [--ppxf-n 100] [--workers 2] [--goodness]
        [--train 30000 --epochs 12 --library-mix 0:1] [--leave-out all library ... --loo-n 50000]
        [--model PATH ...] [--worlds own bc03 ...] [--out DIR]
"""

import argparse
import csv
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from sfh_ml.files import atomic_write_text  # noqa: E402
from sfh_ml.fitting import DEFAULT_REGUL, ppxf_fits  # noqa: E402
from sfh_ml.network.metrics import SCORE_COLUMNS, score_rows  # noqa: E402
from sfh_ml.synthesis import (  # noqa: E402
    AXES,
    TEST_WORLDS,
    TRAINING_WORLD,
    DatasetConfig,
    generate,
    leave_out_world,
    read_dataset,
    world_config,
)

SEED = 7100  # held-out worlds: a seed no training, calibration or comparison set uses
TRAIN_SEED = 7200  # the domain-randomisation experiment's training sets
CHUNK_SIZE = 250
CALIB_N, CALIB_SEED = 5000, 7201  # the leave-one-out networks' calibration set (own world, S/N 10-100)
SUMMARY = (("mw_log_age", "all"), ("mw_log_age", "young"), ("mw_zh", "all"))


def world_set(folder, world, n, snr, workers):
    """The held-out set of one world (generated once, then reused)."""
    path = Path(folder) / f"world_{world}_n{n}_snr{snr:g}_seed{SEED}.h5"
    generate(
        world_config(world, n, SEED, snr=snr, chunk_size=CHUNK_SIZE), path, workers=workers, progress=True
    )
    return path


def train_pair(folder, n, epochs, workers, library_mix=(0.0, 1.0)):
    """Two v2 networks, on E-MILES and on library-mixed spectra (E-MILES share uniform in
    ``library_mix``): name -> .keras path."""
    from sfh_ml.network import train

    out = {}
    for library in ("emiles", "mix"):
        mix = {} if library == "emiles" or tuple(library_mix) == (0.0, 1.0) else {"library_mix": library_mix}
        tag = library + ("" if not mix else f"{library_mix[0]:g}-{library_mix[1]:g}")
        data = Path(folder) / f"train_{tag}_n{n}_seed{TRAIN_SEED}.h5"
        config = DatasetConfig(
            n=n, seed=TRAIN_SEED, snr=(10.0, 100.0), library=library, chunk_size=CHUNK_SIZE, **mix
        )
        generate(config, data, workers=workers, progress=True)
        model = Path(folder) / f"v2_{tag}_n{n}_e{epochs}.keras"
        if not model.exists():
            train(data, version="v2", out_path=model, epochs=epochs, seed=42, verbose=2)
        out[f"network ({tag} {n // 1000}k)"] = model
    return out


def leave_out_networks(folder, axes, n, epochs, workers):
    """The leave-one-out networks, trained once (resumed if interrupted): label -> .keras path.

    ``axes``: keys of :data:`AXES` or ``"all"``; each network is trained on ``n`` spectra of
    :func:`leave_out_world` (S/N 10-100, seed :data:`TRAIN_SEED`).
    """
    from sfh_ml.network import calibrate, train

    out = {}
    for axis in axes:
        tag = "all" if axis == "all" else f"no-{axis}"
        world = leave_out_world(None if axis == "all" else axis)
        config = DatasetConfig(n=n, seed=TRAIN_SEED, snr=(10.0, 100.0), chunk_size=CHUNK_SIZE, **world)
        if axis != "all" and world == leave_out_world(None):
            print(f"{axis}: not randomised in the training world; its network is the all-axes one")
            tag = "all"
        data = Path(folder) / f"loo_{tag}_n{n}_seed{TRAIN_SEED}.h5"
        model = Path(folder) / f"v2_loo_{tag}_n{n}_e{epochs}.keras"
        if not model.exists():
            generate(config, data, workers=workers, progress=True)
            train(data, version="v2", out_path=model, epochs=epochs, seed=42, verbose=2)
        calibrated = model.with_name(model.stem + "_calibrated.keras")
        if not calibrated.exists():  # the sigmas and tails, on the own world as the shipped network's
            calib = Path(folder) / f"loo_calibration_n{CALIB_N}_seed{CALIB_SEED}.h5"
            own = DatasetConfig(n=CALIB_N, seed=CALIB_SEED, snr=(10.0, 100.0), chunk_size=CHUNK_SIZE)
            generate(own, calib, workers=workers, progress=True)
            calibrate(model, calib, calibrated)
        out[f"{tag} ({n // 1000}k)"] = calibrated
    return out


def leave_out_table(networks, folder, n, workers):
    """The leave-one-out table: each network on each world of benchmarks/trust.py (S/N 10-100), the
    worlds it never saw in training marked, and the networks as one ensemble (a deep ensemble whose
    members were trained on different worlds); returns (rows, Markdown)."""
    from trust import world_rows

    from sfh_ml.network import load_model

    rows = []
    models = {name: load_model(path) for name, path in networks.items()}
    if len(models) > 1:  # members trained on different worlds: their spread is a modelling error
        models["ensemble of these"] = list(models.values())
    for name, model in models.items():
        axis = name.split(" ")[0].removeprefix("no-")
        # unseen: the left-out axis's worlds, and those of the axes the training world does not randomise
        unseen = set(AXES.get(axis, {}).get("worlds", ()))
        unseen |= {
            w for a in AXES.values() if not set(a["options"]) & set(TRAINING_WORLD) for w in a["worlds"]
        }
        for r in world_rows(model, folder, n, workers)[0]:
            rows.append({"network": name, "left_out": r["world"] in unseen, **r})  # left_out: unseen
    head = (
        "| network | world | log age bias / NMAD | wrong | hit rate | false alarms | AUC "
        "| SFH 1 / 2 sigma | [M/H] 1 / 2 sigma |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        world = f"**{r['world']}** (unseen)" if r["left_out"] else r["world"]
        lines.append(
            f"| {r['network']} | {world} | {r['age_bias']:+.3f} / {r['age_nmad']:.3f} "
            f"| {r['wrong_fraction']:.2f} | {r['hit_rate']:.2f} | {r['false_alarm']:.2f} | {r['auc']:.2f} "
            f"| {r['coverage_sfh_cum_1sigma']:.2f} / {r['coverage_sfh_cum_2sigma']:.2f} "
            f"| {r['coverage_zh_1sigma']:.2f} / {r['coverage_zh_2sigma']:.2f} |"
        )
    return rows, "\n".join(lines)


def score_world(path, networks, ppxf_n, folder, workers, goodness):
    """Rows of every method on one world's set, the flagged fractions and the flag's hit rates.

    Returns ``(rows, flagged, hits)``: ``flagged`` and ``hits`` (empty without ``goodness``) map each
    network to the fraction of objects carrying the out-of-distribution flag and to
    ``{"hit_rate", "n_lost"}``: the fraction of the objects whose mass-weighted log age is off by more
    than ``sfh_ml.network.goodness.OOD_AGE_ERROR_DEX`` (bin level) that carry it (NaN when none is),
    and how many those are.
    """
    from sfh_ml.network import QUALITY_FLAGS, load_data, predict
    from sfh_ml.network.goodness import OOD_AGE_ERROR_DEX as AGE_ERROR_DEX
    from sfh_ml.network.goodness import age_error, flag_rate

    data = load_data(path)
    truth = {"sfh": data["sfh"], "zh": data["zh"], **data["mean_truth"]}
    preds, flagged, hits = {}, {}, {}
    for method, model in networks.items():
        kw = {}
        if goodness:
            extra = read_dataset(path, ["noise", "photometry_err"])
            kw = dict(goodness=True, noise=extra["noise"], photometry_err=extra["photometry_err"])
        preds[method] = predict(model, data["spectra"], data["photometry"], wave_aa=data["wave_aa"],
                                filters=data["filters"], **kw)  # fmt: skip
        if goodness:
            flag = preds[method]["quality"] & QUALITY_FLAGS["out_of_distribution"] > 0
            flagged[method] = float(np.mean(flag))
            lost = np.abs(age_error(preds[method]["sfh"], data["sfh"], data["age_bins_yr"])) > AGE_ERROR_DEX
            hits[method] = {"hit_rate": flag_rate(flag, lost), "n_lost": int(lost.sum())}
    rows = []
    if ppxf_n:
        fits = ppxf_fits(path, ppxf_n, False, DEFAULT_REGUL, workers, folder)
        sub = {k: (v[:ppxf_n] if isinstance(v, np.ndarray) and len(v) == len(data["sfh"]) else v)
               for k, v in truth.items()}  # fmt: skip
        for row in score_rows(fits["pred"], sub, data["age_bins_yr"], data["bin_light"], data["zh_grid"]):
            rows.append({"method": "pPXF", **row})
    for method, pred in preds.items():
        for row in score_rows(pred, truth, data["age_bins_yr"], data["bin_light"], data["zh_grid"]):
            rows.append({"method": method, **row})
    return rows, flagged, hits


def _get(rows, method, world, quantity, sample, level="bin"):
    for r in rows:
        key = (r["method"], r["world"], r["quantity"], r["sample"], r["level"])
        if key == (method, world, quantity, sample, level):
            return r
    return None


def markdown(rows, flagged, hits=None):
    """The summary table: one row per method and world (``hits``: the flag's hit rates of
    :func:`score_world`, keyed by (method, world))."""
    hits = hits or {}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    worlds = list(dict.fromkeys(r["world"] for r in rows))
    head = (
        "| method | world | n | mw log age bias / NMAD | young-dominated bias | mw [M/H] bias / NMAD "
        "| flagged | hit rate |"
    )
    lines = [head, "|" + "---|" * 8]
    for method in methods:
        for world in worlds:
            age, young, zh = (_get(rows, method, world, q, s) for q, s in SUMMARY)
            if age is None:
                continue
            flag = flagged.get((method, world))
            cells = [
                method,
                world,
                str(age["n"]),
                f"{age['bias']:+.3f} / {age['nmad']:.3f}",
                "–" if young is None or young["bias"] is None else f"{young['bias']:+.3f} (n={young['n']})",
                f"{zh['bias']:+.3f} / {zh['nmad']:.3f}",
                "–" if flag is None else f"{flag:.2f}",
                _hit_cell(hits.get((method, world))),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _hit_cell(hit):
    if not hit or hit.get("hit_rate") is None or not np.isfinite(hit["hit_rate"]):
        return "–"
    return f"{hit['hit_rate']:.2f} (n={hit['n_lost']})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="objects per world")
    parser.add_argument("--snr", type=float, default=50.0)
    parser.add_argument("--ppxf-n", type=int, default=100, help="objects per world fitted by pPXF (0: none)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--goodness", action="store_true", help="also the out-of-distribution flag rates")
    parser.add_argument("--train", type=int, default=0, metavar="N", help="domain-randomisation experiment")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument(
        "--library-mix", default="0:1", help="E-MILES share of the mixed training set, MIN:MAX (uniform)"
    )
    parser.add_argument(
        "--leave-out", nargs="*", default=[], metavar="AXIS", choices=["all", *AXES],
        help="leave-one-out networks: 'all' (every axis randomised) and/or axes of sfh_ml.synthesis.AXES",
    )  # fmt: skip
    parser.add_argument("--loo-n", type=int, default=50_000, help="training spectra per left-out network")
    parser.add_argument(
        "--trust-n", type=int, default=1500,
        help="objects per world of the leave-one-out table (benchmarks/trust.py's sets; 0: none)",
    )  # fmt: skip
    parser.add_argument("--model", nargs="*", default=[], metavar="PATH")
    parser.add_argument("--no-shipped", action="store_true")
    parser.add_argument("--worlds", nargs="*", default=list(TEST_WORLDS), choices=list(TEST_WORLDS))
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "sfh_ml_worlds"))
    args = parser.parse_args(argv)
    from sfh_ml.fitting import load_networks
    from sfh_ml.network import load_model

    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    networks = load_networks(shipped=not args.no_shipped, model_paths=args.model)
    if args.train:
        mix = tuple(float(v) for v in args.library_mix.split(":"))
        for name, path in train_pair(folder, args.train, args.epochs, args.workers, mix).items():
            networks[name] = load_model(path)
    if args.leave_out:
        loo = leave_out_networks(folder, args.leave_out, args.loo_n, args.epochs, args.workers)
        for name, path in loo.items():
            networks[name] = load_model(path)
        if args.trust_n:
            (folder / "trust").mkdir(exist_ok=True)
            loo_rows, table = leave_out_table(loo, folder / "trust", args.trust_n, args.workers)
            atomic_write_text(folder / "leave_out.md", table + "\n")
            # for the model card (benchmarks/release_model.py --leave-out DIR/leave_out.json)
            atomic_write_text(folder / "leave_out.json", json.dumps(loo_rows, indent=1) + "\n")
            print(table, flush=True)
    rows, flagged, hits = [], {}, {}
    for world in args.worlds:
        path = world_set(folder, world, args.n, args.snr, args.workers)
        world_rows, world_flags, world_hits = score_world(
            path, networks, args.ppxf_n, folder, args.workers, args.goodness
        )
        rows += [{"world": world, **r} for r in world_rows]
        flagged.update({(m, world): f for m, f in world_flags.items()})
        hits.update({(m, world): h for m, h in world_hits.items()})
        print(f"{world}: scored", flush=True)
    table = markdown(rows, flagged, hits)
    columns = ("method", "world", *SCORE_COLUMNS)
    with open(folder / "worlds.csv.tmp", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(folder / "worlds.csv.tmp", folder / "worlds.csv")
    header = f"S/N {args.snr:g}, {args.n} objects per world (pPXF: the first {args.ppxf_n}), seed {SEED}\n\n"
    atomic_write_text(folder / "worlds.md", header + table + "\n")
    print(header + table)
    return rows


if __name__ == "__main__":
    main()
