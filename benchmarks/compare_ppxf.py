"""pPXF (without and with the five HST fluxes) against the networks, on identical held-out sets.

A thin command-line wrapper of :func:`sfh_ml.fitting.compare_methods` (see
:mod:`sfh_ml.fitting.compare`): generates once into ``--out`` one held-out set per S/N (``--n``
objects of the default population at a fixed S/N per pixel; complete files are reused), fits the
first ``--n-fit`` objects of each with pPXF without and with the HST fluxes (cached in ``--out`` per
set, photometry and ``regul``, so a rerun does not refit), predicts them with the shipped network and
any ``--model`` networks, and scores every method on the same objects with
:func:`sfh_ml.network.metrics.score_rows`, for all objects, the young-dominated (true mass-weighted
age < 100 Myr) and the old-dominated (> 1 Gyr) ones.

Speed: pPXF's seconds per fit on one BLAS thread (as each fit measured itself) and the wall time per
spectrum with ``--workers`` processes; the networks' wall time per spectrum of ``predict`` at batch
1024 over ``--speed-n`` spectra (the held-out spectra repeated), after one untimed pass.

Writes ``compare_ppxf.csv`` (one row per method x S/N x sample x quantity x level; speed rows have
quantity ``seconds_per_spectrum`` and the number in ``value``) and ``compare_ppxf.md`` to ``--out``
(and ``--json``: the speeds and the all-objects exact-level scores, for ``benchmarks/report.py``),
and prints the all-objects table and the speed ratio. Numbers only, no assertions.

Usage: ``python benchmarks/compare_ppxf.py [--n 200] [--snr 10 20 50 100] [--workers 2] [--n-fit N]
[--model PATH ...] [--no-shipped] [--regul 3] [--speed-n 4096] [--out DIR] [--json PATH]``.
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from sfh_ml.files import atomic_write_text  # noqa: E402
from sfh_ml.fitting import DEFAULT_REGUL, compare_methods, load_networks, markdown, write_tables  # noqa: E402
from sfh_ml.fitting.compare import (  # noqa: E402
    SNRS,
    SPEED_ONE_THREAD,
    SPEED_PREDICT,
    speed_summary,
    speed_table,
)

__all__ = ["main"]


def _summary(result, argv):
    """The JSON record for report.py: settings, speeds per method, all-objects exact-level scores."""
    scores = [
        {k: r[k] for k in ("method", "snr", "quantity", "level", "n", "n_failed", "bias", "nmad", "std")}
        for r in result["rows"]
        if r["sample"] == "all" and r["level"] in ("exact", "object") and r["value"] is None
    ]
    return {
        "benchmark": "compare_ppxf",
        "argv": argv,
        "n_fit": result["n_fit"],
        "regul": result["regul"],
        "speed": speed_summary(result["speed"]),
        "scores": scores,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="objects per held-out set")
    parser.add_argument("--snr", type=float, nargs="+", default=list(SNRS))
    parser.add_argument("--n-fit", type=int, default=None, help="objects scored per set (default --n)")
    parser.add_argument("--workers", type=int, default=2, help="pPXF and generation processes")
    parser.add_argument("--regul", type=float, default=DEFAULT_REGUL)
    parser.add_argument("--model", nargs="*", default=[], metavar="PATH", help="more networks (.keras)")
    parser.add_argument("--no-shipped", action="store_true", help="leave out the shipped network")
    parser.add_argument("--speed-n", type=int, default=4096, help="spectra of the network speed pass")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "sfh_ml_compare_ppxf"))
    parser.add_argument(
        "--library", default="emiles", choices=("emiles", "bc03"),
        help="stars of the held-out sets: bc03 is the synthetic valley (use another --out)",
    )  # fmt: skip
    parser.add_argument("--json", default=None, metavar="PATH", help="also write a JSON summary here")
    args = parser.parse_args(argv)
    networks = load_networks(shipped=not args.no_shipped, model_paths=args.model)
    result = compare_methods(
        args.out, args.n, args.snr, networks, n_fit=args.n_fit, regul=args.regul, workers=args.workers,
        speed_n=args.speed_n, log=lambda line: print(line, flush=True), library=args.library,
    )  # fmt: skip
    rows, speed = result["rows"], result["speed"]
    csv_path, md_path = write_tables(args.out, rows, speed, result["n_fit"], args.regul)
    if args.json:
        atomic_write_text(args.json, json.dumps(_summary(result, argv), indent=1))

    print(markdown(rows, "all", "exact"))
    print(speed_table(speed))
    fit_s = np.mean([v for (m, _, level), v in speed.items() if m == "pPXF" and level == SPEED_ONE_THREAD])
    for method in networks:
        net_s = speed[(method, "all", SPEED_PREDICT)]
        print(f"{method}: {net_s:.3g} s per spectrum, pPXF (one thread) {fit_s:.3g} s per fit: "
              f"network / pPXF time = {net_s / fit_s:.2g} ({fit_s / net_s:.3g} times faster)")  # fmt: skip
    print(f"wrote {csv_path} and {md_path}")
    return rows


if __name__ == "__main__":
    main()
