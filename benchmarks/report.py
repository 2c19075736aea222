"""One Markdown report of every benchmark (``make bench``), with the machine it ran on.

Reads the JSON records that the benchmarks write with ``--json`` into ``--dir``: ``synthesis.json``
(benchmarks/synthesis.py), ``inference.json`` (inference.py), ``apply.json`` (apply.py) and
``compare_ppxf.json`` (compare_ppxf.py); a missing one is reported as not run. The book's wall time
is not measured here: it is read from the executed chapters of the last ``make book`` (``--book``,
default ``_build/src/book``) and ``make test`` (``--test-chapters``, default ``_build/test-chapters``),
whose papermill metadata hold each chapter's duration and end time.

Writes ``--out`` (default ``<dir>/REPORT.md``): the machine (CPU model, cores, memory, OS, Python,
numpy / scipy / keras / tensorflow / ppxf / dask versions, date, git commit), a headline table (the
rows of the README's "Performance" table), then one section per benchmark.

Usage: ``python benchmarks/report.py [--dir _build/bench] [--book _build/src/book]
[--test-chapters _build/test-chapters] [--out PATH] [--quick]``.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from sfh_ml.fitting.compare import PHANGS_CUBE_BINS, PHANGS_CUBE_SPAXELS

__all__ = ["machine_info", "chapter_times", "headline", "assemble", "main"]

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("numpy", "scipy", "keras", "tensorflow", "ppxf", "dask", "distributed", "h5py")
# Other distributions of a library (the first installed one is reported).
DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly")}
RECORDS = ("synthesis", "inference", "apply", "compare_ppxf")


# ----------------------------------------------------------------------------------------- machine
def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024**2  # kB -> GiB
    except OSError:
        pass
    return None


def _git(*args):
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info():
    """What the benchmarks ran on: dict of CPU, cores, memory, OS, Python, library versions, date, commit."""
    versions = {}
    for name in LIBRARIES:
        versions[name] = "not installed"
        for dist in DISTRIBUTIONS.get(name, (name,)):
            try:
                found = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
            versions[name] = found if dist == name else f"{found} ({dist})"
            break
    commit = _git("rev-parse", "--short=12", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": None if commit is None else commit + (" (with uncommitted changes)" if dirty else ""),
    }


# -------------------------------------------------------------------------------------------- book
def chapter_times(folder):
    """Wall time of each executed chapter in ``folder`` from its papermill metadata.

    Returns
    -------
    list of dict
        ``chapter``, ``seconds``, ``end_time`` (ISO), sorted by chapter; empty if none.
    """
    out = []
    for path in sorted(Path(folder).glob("[0-9]*.ipynb")):
        if path.name.endswith(".running.ipynb"):
            continue
        try:
            meta = json.loads(path.read_text())["metadata"].get("papermill", {})
        except (OSError, ValueError, KeyError):
            continue
        if meta.get("duration") is not None:
            out.append(
                {"chapter": path.stem, "seconds": float(meta["duration"]), "end_time": meta.get("end_time")}
            )
    return out


# ------------------------------------------------------------------------------------------ report
def _f(value, fmt=".3g", none="n/a"):
    return none if value is None else format(value, fmt)


def _scores(compare, method, snr, quantity):
    level = "object" if quantity == "cum_sfh_mae" else "exact"
    return next(
        (
            r
            for r in compare.get("scores", [])
            if (r["method"], str(r["snr"]), r["quantity"], r["level"]) == (method, snr, quantity, level)
        ),
        None,
    )


def _network(compare):
    return next((m for m in compare.get("speed", {}) if m.startswith("network")), None)


def headline(records, book, cores):
    """Rows (measure, value, settings) of the README's Performance table."""
    rows = []
    syn, inf, app, cmp_ = (records.get(k) for k in RECORDS)
    if syn:
        rows.append(
            (
                "synthesis: spectra per second (to HDF5)",
                f"{syn['to_hdf5_spectra_per_s']:,.0f}",
                f"{syn['n']} spectra, {syn['workers']} worker(s)",
            )
        )
        rows.append(
            ("synthesis: paper-size set (165,000 spectra)", f"{syn['paper_size_s'] / 60:.1f} min", "")
        )
    if inf:
        for m in inf["models"]:
            rows.append(
                (
                    f"network {m['version']}: inference, spectra per second",
                    f"{m['infer_per_s']:,.0f}",
                    f"batch 1024, {inf['n_infer']} spectra",
                )
            )
            rows.append(
                (
                    f"network {m['version']}: training, spectra per second",
                    f"{m['train_per_s']:,.0f}",
                    "batch 256",
                )
            )
    if app:
        for r in app["runs"]:
            rows.append(
                (
                    f"cube application ({r['bins']}): spaxels per second",
                    f"{r['spaxels_per_s']:,.0f}",
                    f"{app['spaxels']} spaxels, peak RssAnon {r['rss_anon_gb']:.2f} GB",
                )
            )
    if cmp_:
        speed = cmp_["speed"]
        net = _network(cmp_)
        ppxf = speed.get("pPXF", {}).get("one_thread")
        net_s = speed.get(net, {}).get("wall") if net else None
        rows.append(("pPXF: seconds per fit (one thread)", _f(ppxf), f"regul {cmp_['regul']:g}"))
        rows.append(("network: seconds per spectrum (all cores)", _f(net_s), "predict, batch 1024"))
        if ppxf and net_s:
            rows.append(
                (
                    "network speed-up over pPXF on this machine",
                    f"{ppxf / cores / net_s:,.0f}x",
                    f"pPXF on {cores} cores",
                )
            )
            for n, what in ((PHANGS_CUBE_BINS, "Voronoi bins"), (PHANGS_CUBE_SPAXELS, "spaxels")):
                rows.append(
                    (
                        f"one PHANGS cube ({n:,} {what}): pPXF / network",
                        f"{ppxf * n / cores / 3600:.2f} h / {net_s * n / 60:.2f} min",
                        f"pPXF on {cores} cores",
                    )
                )
        snrs = sorted({str(r["snr"]) for r in cmp_.get("scores", [])}, key=float)
        snr = "50" if "50" in snrs else (snrs[-1] if snrs else None)
        for quantity in ("mw_log_age", "mw_zh"):
            cells = [(m, _scores(cmp_, m, snr, quantity)) for m in (net, "pPXF", "pPXF + HST") if m]
            cells = [(m, c) for m, c in cells if c is not None]  # the methods that were run
            if cells:
                rows.append(
                    (
                        f"{quantity} NMAD at S/N {snr} (dex): " + " / ".join(m for m, _ in cells),
                        " / ".join(f"{c['nmad']:.3f}" for _, c in cells),
                        f"{cells[0][1]['n']} objects",
                    )
                )
    for label, times in book.items():
        if times:
            rows.append(
                (
                    f"`make {label}`: chapters' wall time",
                    f"{sum(t['seconds'] for t in times) / 60:.1f} min",
                    f"{len(times)} chapters, last run {max(t['end_time'] or '' for t in times)[:16]}",
                )
            )
    return rows


def _table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _sections(records, book, cores):
    syn, inf, app, cmp_ = (records.get(k) for k in RECORDS)
    out = []
    out.append("## Synthesis (benchmarks/synthesis.py)\n")
    if syn:
        rows = [(r["what"], f"{r['spectra_per_s']:,.0f}", f"{r['setup_s']:.1f}") for r in syn["in_memory"]]
        rows.append(("to HDF5, set-up included", f"{syn['to_hdf5_spectra_per_s']:,.0f}", ""))
        out.append(_table(("pipeline", "spectra / s", "set-up (s)"), rows) + "\n")
    else:
        out.append("not run\n")
    out.append("## Networks (benchmarks/inference.py)\n")
    if inf:
        rows = [
            (m["version"], f"{m['params']:,}", f"{m['infer_per_s']:,.0f}", f"{m['train_per_s']:,.0f}")
            for m in inf["models"]
        ]
        out.append(f"Backend {inf.get('backend', '?')}, {inf['n_infer']} spectra, random inputs.\n")
        out.append(
            _table(("model", "parameters", "inference / s (batch 1024)", "training / s (batch 256)"), rows)
            + "\n"
        )
    else:
        out.append("not run\n")
    out.append("## Application to a cube (benchmarks/apply.py)\n")
    if app:
        rows = [
            (
                r["bins"],
                r["n_bins"],
                f"{r['seconds']:.1f}",
                f"{r['spaxels_per_s']:,.0f}",
                f"{r['bins_per_s']:,.0f}",
                f"{r['rss_anon_gb']:.2f}",
                f"{r['vm_rss_gb']:.2f}",
            )
            for r in app["runs"]
        ]
        out.append(
            f"Synthetic PHANGS-format cube of {app['spaxels']:,} spaxels "
            f"({_f(app.get('cube_gb'), '.2f')} GB), "
            f"Dask: {app.get('dask') or 'serial'}; ru_maxrss {_f(app.get('ru_maxrss_gb'), '.2f')} GB.\n"
        )
        head = (
            "bins",
            "n_bins",
            "seconds",
            "spaxels / s",
            "bins / s",
            "peak RssAnon (GB)",
            "peak VmRSS (GB)",
        )
        out.append(_table(head, rows) + "\n")
    else:
        out.append("not run\n")
    out.append("## pPXF against the network (benchmarks/compare_ppxf.py)\n")
    if cmp_:
        out.append(
            f"{cmp_['n_fit']} objects per S/N, pPXF regul {cmp_['regul']:g}; full tables in "
            "`compare_ppxf/compare_ppxf.md`.\n"
        )
        rows = []
        for method, s in cmp_["speed"].items():
            per_cube = s["one_thread"] if s["one_thread"] is not None else s["wall"]
            n_cores = cores if s["one_thread"] is not None else 1
            rows.append(
                (
                    method,
                    _f(s["one_thread"]),
                    _f(s["wall"]),
                    s["workers"] or "all",
                    f"{per_cube * PHANGS_CUBE_BINS / n_cores / 3600:.3g}",
                )
            )
        head = (
            "method",
            "s per fit, one thread",
            "s per spectrum, wall",
            "workers",
            f"hours per cube ({cores} cores)",
        )
        out.append(_table(head, rows) + "\n")
        rows = []
        for r in sorted(cmp_.get("scores", []), key=lambda r: (float(r["snr"]), r["method"])):
            if r["quantity"] in ("mw_log_age", "mw_zh", "cum_sfh_mae"):
                rows.append(
                    (
                        r["snr"],
                        r["method"],
                        r["quantity"],
                        r["n"],
                        _f(r["bias"], "+.3f"),
                        _f(r["nmad"], ".3f"),
                    )
                )
        out.append("All objects, exact level (cum_sfh_mae: the mean per-object error in the bias column):\n")
        out.append(_table(("S/N", "method", "quantity", "n", "bias", "NMAD"), rows) + "\n")
    else:
        out.append("not run\n")
    out.append("## The book\n")
    for label, times in book.items():
        if times:
            rows = [(t["chapter"], f"{t['seconds']:.0f}", (t["end_time"] or "")[:19]) for t in times]
            rows.append(("total", f"{sum(t['seconds'] for t in times):.0f}", ""))
            out.append(f"`make {label}` (last run, papermill's duration per chapter):\n")
            out.append(_table(("chapter", "seconds", "finished"), rows) + "\n")
        else:
            out.append(f"`make {label}`: no executed chapters found\n")
    return out


def assemble(bench_dir, book_dir, test_dir, machine=None, quick=False):
    """The report's Markdown text from the records in ``bench_dir`` and the executed chapters."""
    bench_dir = Path(bench_dir)
    records = {}
    for name in RECORDS:
        path = bench_dir / f"{name}.json"
        if path.exists():
            records[name] = json.loads(path.read_text())
    machine = machine_info() if machine is None else machine
    cores = machine.get("cores_available") or machine.get("cores") or 1
    book = {"book": chapter_times(book_dir), "test": chapter_times(test_dir)}
    v = machine["versions"]
    mem = machine.get("memory_gb")
    lines = [
        "# sfh_ml performance report",
        "",
        f"Generated by `make bench{' BENCH_QUICK=1' if quick else ''}` on {machine['date']}, "
        f"commit {machine['commit'] or 'unknown'}."
        + (" **Quick mode: small sizes, numbers not to quote.**" if quick else ""),
        "",
        "## Machine",
        "",
        _table(
            ("item", "value"),
            [
                ("CPU", machine["cpu"]),
                ("cores", f"{machine['cores']} ({machine.get('cores_available')} available to the run)"),
                ("memory", "n/a" if mem is None else f"{mem:.1f} GiB"),
                ("OS", machine["os"]),
                ("Python", machine["python"]),
                *((name, v[name]) for name in v),
            ],
        ),
        "",
        "## Headline",
        "",
        _table(("measure", "value", "settings"), headline(records, book, cores)),
        "",
    ]
    lines += _sections(records, book, cores)
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=str(ROOT / "_build" / "bench"), help="the benchmarks' JSON records")
    parser.add_argument("--book", default=str(ROOT / "_build" / "src" / "book"))
    parser.add_argument("--test-chapters", default=str(ROOT / "_build" / "test-chapters"))
    parser.add_argument("--out", default=None, help="default: <dir>/REPORT.md")
    parser.add_argument("--quick", action="store_true", help="say in the report that the sizes were small")
    args = parser.parse_args(argv)
    text = assemble(args.dir, args.book, args.test_chapters, quick=args.quick)
    out = Path(args.out or Path(args.dir) / "REPORT.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
