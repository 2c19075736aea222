"""Train the release's comparison networks (v1, and v2 on smaller sets) with the shipped recipe.

Chapter 3 compares v1 with v2 and draws a learning curve. Networks of workshop size (chapter 2)
say little about either, and paper-size ones take an hour each on 2 cores, so the book reads these
figures from the release instead (``sfh_ml.network.pretrained_comparisons()``). This script makes
them, resumably (every step is kept in ``OUT/steps``, training resumes from its checkpoint):

1. the shipped network's training set, regenerated from the configuration its card records
   (same seed, same size: the same spectra), and its held-out test sets at S/N 10, 20 and 50;
2. v1 on the whole set, and v2 on its first ``--learning-curve`` objects, each with the shipped
   network's epochs, batch size, learning rate, patience and seed;
3. ``sfh_ml.network.evaluate`` of each on the test sets (uncalibrated, like the ablation);
4. ``OUT/release/comparisons.json``; with ``--install``, copied into ``sfh_ml/pretrained/`` and
   the manifest written again with its digest.

The shipped network itself (165,000 spectra) and its spectra-only twin are not retrained: their
figures are in ``results.json`` (``metrics``, ``ablation``).

Usage (about an hour on 2 cores)::

    python benchmarks/release_comparisons.py --out _build/release_comparisons --workers 2 --install
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import release_model  # noqa: E402  (benchmarks/release_model.py: steps, training, evaluation rows)

from sfh_ml import DatasetConfig, generate
from sfh_ml.files import atomic_write_text
from sfh_ml.network import pretrained

LEARNING_CURVE = (10_000, 40_000)  # training-set sizes of the v2 learning curve (the shipped: 165,000)
TEST_LABELS = ("S/N 10", "S/N 20", "S/N 50")  # the release test sets the comparisons are scored on


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="_build/release_comparisons", help="work folder")
    parser.add_argument("--workers", type=int, default=1, help="processes generating the synthetic sets")
    parser.add_argument(
        "--learning-curve", type=int, nargs="*", default=list(LEARNING_CURVE), help="v2 training-set sizes"
    )
    parser.add_argument("--n-test", type=int, help="spectra per test set (default: the release's)")
    parser.add_argument(
        "--n-train", type=int, help="training spectra (default: the release's; fewer only for a smoke test)"
    )
    parser.add_argument("--epochs", type=int, help="epochs (default: the release's; fewer for a smoke test)")
    parser.add_argument("--skip-v1", action="store_true", help="no v1 network")
    parser.add_argument(
        "--install", action="store_true", help="copy comparisons.json into sfh_ml/pretrained/"
    )
    args = parser.parse_args(argv)
    args.stop_at = None  # release_model.train_one's time limit: none here
    return args


def recipe_args(results, args):
    """The shipped network's training options, as the attributes release_model.train_one reads."""
    training = results["training"]
    args.epochs = args.epochs or training["epochs"]
    args.batch_size = training["batch_size"]
    args.lr, args.patience, args.seed = training["learning_rate"], training["patience"], training["seed"]
    args.n_train = args.n_train or training["n_train"]
    return args


def reference_entry(results):
    """The shipped network the comparisons are trained beside, as comparisons.json keeps it: a later
    release with another recipe (``benchmarks/release_model.py`` carries the file on) still shows
    v1, the learning curve and the spectra-only twin against the network of their own recipe."""
    return pretrained.comparisons_reference({}, results)  # no reference yet: the shipped one is it


def make_sets(results, args, out):
    """The shipped network's training set and its test sets, regenerated from the card's configs."""
    training = results["training"]
    config = DatasetConfig.from_json(json.dumps({**training["dataset_config"], "n": args.n_train}))
    paths = {"train": out / "data" / "train.h5"}
    specs = {"train": config}
    for row in training["test_sets"]:
        if row["label"] in TEST_LABELS:
            n = args.n_test or row["n"]
            specs[row["label"]] = DatasetConfig(n=n, seed=row["seed"], snr=tuple(row["snr"]))
            paths[row["label"]] = out / "data" / f"{release_model._slug(row['label'])}.h5"
    for name, cfg in specs.items():
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        print(f"[data] {name}: {cfg.n:,} spectra -> {paths[name]}", flush=True)
        generate(cfg, paths[name], workers=args.workers, progress=True)
    return specs, paths


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    results = pretrained.pretrained_results()
    args = recipe_args(results, args)
    steps = release_model.Steps(out / "steps")
    specs, paths = make_sets(results, args, out)

    networks = {} if args.skip_v1 else {"v1": ("v1", None)}
    networks.update({f"v2_n{n}": ("v2", n) for n in sorted(args.learning_curve)})
    models = out / "models"
    records = {}
    for name, (version, n_max) in networks.items():
        hyper = {} if n_max is None else {"n_max": n_max}
        trained = release_model.train_one(
            args, steps, paths["train"], models / f"{name}.keras", args.seed, version=version, **hyper
        )
        history_path = models / f"{name}_history.json"
        history = json.loads(history_path.read_text()) if history_path.exists() else []
        keep = ("epoch", "loss", "val_loss", "sfh_cum_mae", "val_sfh_cum_mae", "zh_mae", "val_zh_mae")
        metrics = []
        for label in specs:
            if label == "train":
                continue
            ev = release_model.evaluation(steps, name, [models / f"{name}.keras"], label, paths[label])
            metrics.append(release_model.metrics_row(label, list(specs[label].snr), ev))
        records[name] = {
            "version": version,
            "n_train": n_max or args.n_train,
            **{k: trained[k] for k in ("epochs_run", "best_epoch", "seconds", "backend", "device")},
            "history": [{k: row[k] for k in keep if k in row} for row in history],
            "metrics": metrics,
        }

    comparisons = {
        "created": time.strftime("%Y-%m-%d"),
        "shipped": results["name"],
        "recipe": {
            "dataset_config": results["training"]["dataset_config"],
            "n_train": args.n_train,
            "epochs": args.epochs,
            **{k: results["training"][k] for k in ("batch_size", "learning_rate", "patience", "seed")},
        },
        "test_sets": [r for r in results["training"]["test_sets"] if r["label"] in TEST_LABELS],
        "statistic": "bin level, uncalibrated networks (the point estimates do not depend on calibration)",
        "networks": records,
        # the full-size network of this recipe, which later releases (another recipe) compare against
        "reference": reference_entry(results),
        "reproduce": "python benchmarks/release_comparisons.py --out OUT --workers 2 --learning-curve "
        + " ".join(str(n) for n in sorted(args.learning_curve))
        + (" --skip-v1" if args.skip_v1 else "")
        + (f" --n-train {args.n_train}" if args.n_train != results["training"]["n_train"] else "")
        + (f" --epochs {args.epochs}" if args.epochs != results["training"]["epochs"] else ""),
    }
    release = out / "release"
    release.mkdir(parents=True, exist_ok=True)
    atomic_write_text(release / pretrained.COMPARISONS_NAME, json.dumps(comparisons, indent=1) + "\n")
    print(f"wrote {release / pretrained.COMPARISONS_NAME}")
    if args.install:
        target = Path(pretrained.PRETRAINED_DIR)
        tmp = target / f".{pretrained.COMPARISONS_NAME}.tmp"
        shutil.copyfile(release / pretrained.COMPARISONS_NAME, tmp)
        tmp.replace(target / pretrained.COMPARISONS_NAME)
        manifest = json.loads((target / pretrained.MANIFEST_NAME).read_text())
        members = manifest["models"][manifest["default"]]["members"]
        pretrained.write_manifest(target, manifest["default"], members)
        problems = pretrained.verify_pretrained()
        if problems:
            sys.exit("release_comparisons: the installed files fail their check:\n" + "\n".join(problems))
        print(f"installed {pretrained.COMPARISONS_NAME} into {target}")


if __name__ == "__main__":
    main()
