"""Speed and accuracy of the pPXF baseline (:mod:`sfh_ml.fitting`) on a small synthetic set.

Generates (once, into ``--dir``) ``--n`` objects of the default training distribution at a fixed S/N,
fits them with pPXF with and without the HST fluxes, and prints the seconds per fit (one BLAS
thread per fit) and the bias and NMAD of the mass-weighted log age and [M/H] against the file's
truths (``mw_log_age``, ``mw_zh``, on the SSP grid). Numbers only, no assertions.

``--choose-regul`` instead applies the Delta chi^2 = sqrt(2 N_good) criterion (Press et al. 1992;
the pPXF examples) on the first objects: the unregularised fit's noise is rescaled to chi^2 / N = 1,
then the largest ``regul`` of a grid whose chi^2 stays within sqrt(2 N_good) of it is reported
(:func:`sfh_ml.fitting.regul_by_delta_chi2`).

Usage: ``python benchmarks/ppxf_fit.py [--n 20] [--snr 50] [--workers 2] [--regul 100] [--choose-regul 8]``.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from sfh_ml.fitting import fit_file, regul_by_delta_chi2
from sfh_ml.network.metrics import scatter_stats
from sfh_ml.synthesis import DatasetConfig, generate, read_dataset

__all__ = ["make_set", "main"]


def make_set(folder, n, snr, seed=7):
    """A synthetic set of ``n`` objects at S/N ``snr`` (generated once, reused)."""
    path = Path(folder) / f"ppxf_bench_n{n}_snr{snr:g}_seed{seed}.h5"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        generate(DatasetConfig(n=n, seed=seed, snr=(snr, snr), chunk_size=max(n, 1)), path, progress=False)
    return path


def _report(name, result, truth):
    ok = ~result["failed"]
    sec = result["seconds"][ok]
    print(f"{name}: {ok.sum()} fits, {np.median(sec):.2f} s per fit (median; mean {sec.mean():.2f} s)")
    for key in ("mw_log_age", "mw_zh", "lw_log_age", "lw_zh"):
        s = scatter_stats(result[key][ok], truth[key][ok])
        print(f"  {key:11s} bias {s['bias']:+.3f}  NMAD {s['nmad']:.3f}  std {s['std']:.3f} dex")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--snr", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--regul", type=float, default=None, help="default: sfh_ml.fitting.DEFAULT_REGUL")
    parser.add_argument("--choose-regul", type=int, default=0, metavar="N_OBJECTS")
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "sfh_ml_ppxf_bench"))
    args = parser.parse_args(argv)
    path = make_set(args.dir, args.n, args.snr)
    if args.choose_regul:
        res = regul_by_delta_chi2(path, slice(0, args.choose_regul))  # sfh_ml.fitting.regul
        for delta, chi2_0 in zip(res["delta_chi2"], res["chi2_unregularised"]):
            print(f"  chi2/N unregularised {chi2_0:.3f}: Delta chi2 {np.round(delta, 1)}")
        chosen = res["chosen"]
        print(f"regul by Delta chi2 = sqrt(2N): {chosen}, median {np.median(chosen):g}")
        return
    truth = read_dataset(path, ["mw_log_age", "mw_zh", "lw_log_age", "lw_zh"])
    kw = {} if args.regul is None else {"regul": args.regul}
    for photometry in (False, True):
        start = time.perf_counter()
        result = fit_file(path, photometry=photometry, workers=args.workers, progress=False, **kw)
        wall = time.perf_counter() - start
        _report(
            f"spectrum{' + HST fluxes' if photometry else ''} ({wall:.0f} s wall, {args.workers} workers)",
            result,
            truth,
        )


if __name__ == "__main__":
    main()
