"""End-to-end throughput and peak memory of ``apply_cube`` on a synthetic cube of PHANGS format.

Writes a MUSE-like cube (``DATA`` + ``STAT``, float32, 3681 channels, 0.2" spaxels) of ``--spaxels``
spaxels, channel by channel (a continuum whose level falls with radius, plus Gaussian noise), then
times :func:`sfh_ml.observations.apply.apply_cube` on it for each ``--bins`` choice: read, bin,
prepare, predict, write the maps and tables. Prints spaxels per second (end to end, set-up included)
and the peak memory of the process, sampled from ``/proc/self/status`` every 0.1 s: anonymous memory
(``RssAnon``: what the run needs) and the resident set (``VmRSS``, which also counts pages of the
memory-mapped cube that the kernel may drop at will); ``ru_maxrss`` is printed too.

The network is an untrained v2 at the default (paper) size unless ``--model`` names a trained one:
the speed does not depend on the weights. A PHANGS mosaic has ~10^6 spaxels (a 29 GB cube);
the default 40,000 spaxels (1.2 GB) runs in a few minutes, and the rate per spaxel is what to
extrapolate (the work is per chunk of bins, so it scales linearly; memory does not grow with the
cube beyond the set-up's per-spaxel maps, a few tens of bytes per spaxel).

Usage: ``python benchmarks/apply.py [--spaxels 40000] [--bins none grid:4] [--model M.keras]
[--dask local] [--folder DIR] [--keep] [--json PATH]`` (``--json``: also write the numbers to PATH,
for ``benchmarks/report.py``).
"""

import argparse
import json
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402

__all__ = ["write_synthetic_cube", "MemorySampler", "main"]

N_WAVE = 3681
WAVE0_AA, DWAVE_AA = 4749.89, 1.25
CENTRE_DEG = (170.0625, 12.9915)


def write_synthetic_cube(path, ny, nx, seed=0):
    """A PHANGS-format cube written one channel at a time (memory: one (ny, nx) plane).

    DATA: level(y, x) * (lambda / 6000 A)^-1 + N(0, 2^2), with level = 200 exp(-r / (nx / 4));
    STAT: 4 everywhere; BUNIT 1e-20 erg/s/cm2/A; celestial TAN WCS with 0.2" spaxels.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:ny, :nx]
    level = (200.0 * np.exp(-np.hypot(yy - ny / 2, xx - nx / 2) / (nx / 4))).astype(np.float32)
    wave = WAVE0_AA + DWAVE_AA * np.arange(N_WAVE)
    header = fits.Header()
    header.update(
        XTENSION="IMAGE",
        BITPIX=-32,
        NAXIS=3,
        NAXIS1=nx,
        NAXIS2=ny,
        NAXIS3=N_WAVE,
        PCOUNT=0,
        GCOUNT=1,
        CTYPE1="RA---TAN",
        CTYPE2="DEC--TAN",
        CRVAL1=CENTRE_DEG[0],
        CRVAL2=CENTRE_DEG[1],
        CRPIX1=(nx + 1) / 2,
        CRPIX2=(ny + 1) / 2,
        CD1_1=-0.2 / 3600,
        CD1_2=0.0,
        CD2_1=0.0,
        CD2_2=0.2 / 3600,
        CTYPE3="AWAV",
        CUNIT3="Angstrom",
        CRVAL3=WAVE0_AA,
        CRPIX3=1.0,
        CD3_3=DWAVE_AA,
        BUNIT="10**(-20)*erg/s/cm**2/Angstrom",
    )
    # Raw FITS blocks: each header padded to 2880 bytes, data big-endian, padded likewise.
    with open(path, "wb") as f:
        f.write(fits.PrimaryHDU().header.tostring().encode("ascii"))
        for name in ("DATA", "STAT"):
            h = header.copy()
            h["EXTNAME"] = name
            f.write(h.tostring().encode("ascii"))
            for k in range(N_WAVE):
                if name == "DATA":
                    plane = level * np.float32((wave[k] / 6000.0) ** -1)
                    plane += rng.standard_normal((ny, nx), dtype=np.float32) * np.float32(2.0)
                else:
                    plane = np.full((ny, nx), 4.0, dtype=np.float32)
                f.write(plane.astype(">f4").tobytes())
            f.write(b"\0" * (-(N_WAVE * ny * nx * 4) % 2880))
    return path


class MemorySampler:
    """Peaks of ``VmRSS`` and ``RssAnon`` (bytes) of this process, sampled in a background thread."""

    def __init__(self, interval_s=0.1):
        self.interval_s = interval_s
        self.peak = {"VmRSS": 0, "RssAnon": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self):
        values = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in self.peak:
                    values[key] = int(rest.split()[0]) * 1024
        return values

    def _run(self):
        while not self._stop.is_set():
            for key, value in self._read().items():
                self.peak[key] = max(self.peak[key], value)
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self.peak = {k: 0 for k in self.peak}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop.clear()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spaxels", type=int, default=40_000, help="spaxels of the square cube (default 40000)"
    )
    parser.add_argument("--bins", nargs="+", default=["none", "grid:4"], help="binnings to time")
    parser.add_argument("--model", default=None, help="trained model (default: untrained v2, paper size)")
    parser.add_argument("--dask", default=None, help="'local' or a scheduler address (default: serial)")
    parser.add_argument("--chunk-bins", type=int, default=1024)
    parser.add_argument(
        "--folder", default=None, help="where to write the cube (default: a temporary folder)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the cube and outputs")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the numbers here")
    args = parser.parse_args(argv)
    record = {"benchmark": "apply", "spaxels": args.spaxels, "dask": args.dask, "runs": []}

    from sfh_ml import network
    from sfh_ml.observations.apply import apply_cube
    from sfh_ml.synthesis.photometry import PHANGS_FILTERS
    from sfh_ml.synthesis.sfh import default_age_bins

    side = int(round(np.sqrt(args.spaxels)))
    folder = Path(args.folder or tempfile.mkdtemp(prefix="sfh_ml_apply_bench_"))
    folder.mkdir(parents=True, exist_ok=True)
    cube = folder / "cube.fits"
    start = time.perf_counter()
    write_synthetic_cube(cube, side, side)
    size_gb = cube.stat().st_size / 1e9
    print(f"cube {side} x {side} = {side * side} spaxels x {N_WAVE} channels, {size_gb:.2f} GB, written in "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    if args.model:
        model = network.load_model(args.model)
    else:
        wave = WAVE0_AA + DWAVE_AA * np.arange(N_WAVE)
        age_bins = default_age_bins()  # 19 bins: 1-3, 3-6, 6-10 Myr and 16 from 10 Myr to 14.1 Gyr
        model = network.build_model(
            "v2",
            N_WAVE,
            5,
            age_bins.size - 1,
            wave_aa=wave,
            age_bins_yr=age_bins,
            filters=list(PHANGS_FILTERS),
        )
    print(f"model: {args.model or 'untrained v2 (default size)'}, {model.count_params()} parameters; "
          f"{os.cpu_count()} CPUs; client: {args.dask or 'serial'}")  # fmt: skip
    print(f"{'bins':>10s} {'n_bins':>8s} {'seconds':>8s} {'spaxels/s':>10s} {'bins/s':>8s} "
          f"{'RssAnon GB':>10s} {'VmRSS GB':>9s}")  # fmt: skip
    try:
        for bins in args.bins:
            out = folder / f"out_{bins.replace(':', '_')}"
            shutil.rmtree(out, ignore_errors=True)
            with MemorySampler() as mem:
                t0 = time.perf_counter()
                result = apply_cube(
                    model, cube, out, redshift=0.0, bins=bins, chunk_bins=args.chunk_bins, client=args.dask,
                    progress=False,
                )  # fmt: skip
                seconds = time.perf_counter() - t0
            n_sp = result.summary["n_spaxels_binned"]
            rates = f"{n_sp / seconds:10.0f} {result.n_bins / seconds:8.0f}"
            peaks = f"{mem.peak['RssAnon'] / 1e9:10.2f} {mem.peak['VmRSS'] / 1e9:9.2f}"
            print(f"{bins:>10s} {result.n_bins:8d} {seconds:8.1f} {rates} {peaks}")
            record["runs"].append({
                "bins": bins, "n_bins": int(result.n_bins), "n_spaxels": int(n_sp), "seconds": seconds,
                "spaxels_per_s": n_sp / seconds, "bins_per_s": result.n_bins / seconds,
                "rss_anon_gb": mem.peak["RssAnon"] / 1e9, "vm_rss_gb": mem.peak["VmRSS"] / 1e9,
            })  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    maxrss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # ru_maxrss: kB on Linux
    print(f"ru_maxrss of the whole process (cube writing and model included): {maxrss_gb:.2f} GB")
    record.update(side=side, cube_gb=size_gb, ru_maxrss_gb=maxrss_gb)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
