"""Throughput of the synthesis pipeline: SFH draw to noisy MUSE spectrum + five HST fluxes.

Prints spectra per second for the in-memory pipeline (as `sfh-ml generate` runs it, in chunks of
1024) and for writing an HDF5 set, and the time a paper-size set (165,000 spectra) would take.

    python benchmarks/synthesis.py [--n 20000] [--workers 1] [--json PATH]

``--json`` also writes the numbers to PATH (for ``benchmarks/report.py``).
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from sfh_ml.synthesis import DatasetConfig, generate, generate_chunk


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the numbers here")
    args = parser.parse_args(argv)
    record = {"benchmark": "synthesis", "n": args.n, "workers": args.workers, "in_memory": []}

    fixed = DatasetConfig(n=args.n, seed=0, snr=(10.0, 100.0), sigma_kms=(150.0, 150.0))
    ranged = DatasetConfig(n=args.n, seed=0, snr=(10.0, 100.0))  # the default dispersion range
    span = f"{ranged.sigma_kms[0]:.0f}-{ranged.sigma_kms[1]:.0f}"
    for config, what in (
        (fixed, "sigma = 150 km/s, the seed"),
        (ranged, f"sigma drawn in {span} km/s, the default"),
    ):
        t0 = time.perf_counter()
        synth = config.synthesizer()
        setup = time.perf_counter() - t0
        generate_chunk(config, 0, synth)  # warm-up
        t0 = time.perf_counter()
        for i in range(config.n_chunks):
            generate_chunk(config, i, synth)
        dt = time.perf_counter() - t0
        print(
            f"in memory : {args.n} spectra in {dt:.2f} s = {args.n / dt:,.0f} spectra/s ({what}; "
            f"set-up {setup:.1f} s, {synth.sigma_nodes_kms.size} broadened template sets)"
        )
        record["in_memory"].append({"what": what, "spectra_per_s": args.n / dt, "setup_s": setup})

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate(ranged, Path(tmp) / "bench.h5", workers=args.workers, progress=False)
        dt = time.perf_counter() - t0
    rate = args.n / dt
    print(
        f"to HDF5   : {args.n} spectra in {dt:.2f} s = {rate:,.0f} spectra/s with {args.workers} worker(s), "
        f"default config, set-up included"
    )
    print(f"paper-size set (165,000 spectra): about {165_000 / rate:.0f} s")
    print(f"cores: {len(os.sched_getaffinity(0))}; numpy {np.__version__}")
    record.update(to_hdf5_spectra_per_s=rate, paper_size_s=165_000 / rate)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
