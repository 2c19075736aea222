"""The paper-scale configuration: 165,000 training spectra, v2, evaluated at S/N = 50.

Galceran et al. (2026) train on 165,000 synthetic spectra + 5 HST fluxes and report a scatter of
about 0.12 dex in age and 0.03 dex in metallicity. This script makes the same-size set (S/N per
pixel drawn log-uniformly in 10-100, as in the book), trains v2 on it, and prints the bias and
scatter of the mass-weighted log age and [M/H] on a held-out set at S/N = 50, with the targets of
the project. Everything is resumable: run it again after an interruption.

    python benchmarks/paper_scale.py [--out _build/paper] [--epochs 20] [--arch v2] [--n-train 165000]

On 2 CPU cores: about 1 min to synthesise the sets, about 2 min per epoch of v2 (40 min for 20).
"""

import argparse
import json
import time
from pathlib import Path

from sfh_ml import DatasetConfig, generate
from sfh_ml.network import evaluate, train

TARGETS = {"mw_log_age": 0.10, "mw_zh": 0.03}  # scatter (dex) the project aims at, |bias| <= 0.02


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="_build/paper")
    parser.add_argument("--n-train", type=int, default=165_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--arch", default="v2", choices=("v1", "v2"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    train_path = generate(
        DatasetConfig(n=args.n_train, seed=1, snr=(10.0, 100.0)), out / f"train_{args.n_train // 1000}k.h5"
    )
    test50 = generate(DatasetConfig(n=args.n_test, seed=2, snr=50.0), out / "test_snr50.h5")
    testmix = generate(DatasetConfig(n=args.n_test, seed=3, snr=(5.0, 100.0)), out / "test_snrmix.h5")
    print(f"data sets ready in {time.perf_counter() - t0:.0f} s")

    model_path = out / f"{args.arch}_{args.n_train // 1000}k.keras"
    t0 = time.perf_counter()
    result = train(
        train_path, args.arch, model_path, epochs=args.epochs, batch_size=args.batch_size, seed=42, verbose=2
    )
    print(
        f"trained {model_path}: {len(result.history)} epochs (best {result.best_epoch}), "
        f"{time.perf_counter() - t0:.0f} s in this run"
    )

    for name, path in (("S/N = 50", test50), ("S/N 5-100", testmix)):
        metrics = evaluate(model_path, path)
        (out / f"metrics_{args.arch}_{path.stem}.json").write_text(json.dumps(metrics, indent=1))
        print(f"\nheld-out set at {name} ({metrics['n_objects']} objects)")
        for key, stats in metrics["mean_quantities"].items():
            target = f"   target scatter <= {TARGETS[key]}" if key in TARGETS else ""
            print(
                f"  {key:11s} bias {stats['median_bias']:+.3f}  scatter (NMAD) {stats['nmad']:.3f}  "
                f"std {stats['std']:.3f} dex{target}"
            )
        cov = metrics["coverage"]
        print(
            f"  coverage within 1 sigma: cumulative SFH {cov['sfh_cum']['1sigma']['all']:.3f}, "
            f"[M/H] (mass-weighted) {cov['zh_mass_weighted']['1sigma']['all']:.3f} (0.683 expected)"
        )


if __name__ == "__main__":
    main()
