"""The synthetic valley: the shipped network on spectra of its own SSP library and of another one.

Generates two held-out sets that differ only in the stellar library (same seed, so the same
histories, dust, dispersions and noise draws): ``library="emiles"``, the library the network was
trained on, and ``library="bc03"`` (BC03-MILES at all ages, see :mod:`sfh_ml.synthesis.ssp`), then
prints the NMAD and bias of the mean quantities (bin level: the predicted and true binned histories
reduced the same way; exact level: against the files' per-object truths, whose light weights come
from each set's own library) and the coverage of the 1- and 2-sigma uncertainties.

    python benchmarks/valley.py [--n 2000] [--snr 50] [--seed 9] [--dir DIR] [--workers 1]

The sets are kept in ``--dir`` (default: a temporary directory) and reused when they are there.
"""

import argparse
import tempfile
from pathlib import Path

import sfh_ml
from sfh_ml.network import evaluate
from sfh_ml.synthesis import DatasetConfig, generate
from sfh_ml.synthesis.ssp import LIBRARY_VARIANTS

QUANTITIES = ("mw_log_age", "lw_log_age", "mw_zh", "lw_zh")


def valley(model, folder, n, snr, seed, workers=1):
    """Metrics of ``model`` on one set per SSP library, dict library -> :func:`evaluate` result."""
    out = {}
    for library in LIBRARY_VARIANTS:
        config = DatasetConfig(n=n, seed=seed, snr=(snr, snr), library=library)
        path = Path(folder) / f"valley_{library}_n{n}_snr{snr:g}_seed{seed}.h5"
        generate(config, path, workers=workers, progress=False)  # reused if already complete
        out[library] = evaluate(model, path)
    return out


def print_table(results):
    libs = list(results)
    print(
        f"{'quantity':12s} {'level':6s} "
        + " ".join(f"{lib + ' NMAD':>12s} {lib + ' bias':>12s}" for lib in libs)
    )
    for q in QUANTITIES:
        for level in ("bin", "exact"):
            cells = []
            for lib in libs:
                r = results[lib]
                s = (r["mean_quantities"] if level == "bin" else r["exact"]["mean_quantities"])[q]
                cells.append(f"{s['nmad']:12.4f} {s['bias']:+12.4f}")
            print(f"{q:12s} {level:6s} " + " ".join(cells))
    print(f"{'coverage':19s} " + " ".join(f"{lib:>25s}" for lib in libs))
    for target in ("sfh_cum", "zh"):
        for k in ("1sigma", "2sigma"):
            row = " ".join(f"{results[lib]['coverage'][target][k]['all']:25.3f}" for lib in libs)
            print(f"{target + ' ' + k:19s} {row}")
    print("objects used: " + ", ".join(f"{lib} {results[lib]['n_objects']}" for lib in libs))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="objects per set")
    parser.add_argument("--snr", type=float, default=50.0, help="S/N per MUSE pixel (fixed)")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--dir", default=None, help="where to keep the sets (default: a temporary directory)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    model = sfh_ml.load_pretrained()
    with tempfile.TemporaryDirectory() as tmp:
        results = valley(model, args.dir or tmp, args.n, args.snr, args.seed, args.workers)
    print(f"shipped network, {args.n} objects per set, S/N {args.snr:g}, seed {args.seed}")
    print_table(results)


if __name__ == "__main__":
    main()
