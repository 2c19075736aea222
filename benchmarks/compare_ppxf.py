"""pPXF (without and with the five HST fluxes) against the networks, on identical held-out sets.

Generates once into ``--out`` one held-out set per S/N (``--n`` objects of the default population at
a fixed S/N per pixel; complete files are reused), fits the first ``--n-fit`` objects of each with
pPXF without and with the HST fluxes (:func:`sfh_ml.fitting.fit_file`; the fits are cached in
``--out`` per set, photometry and ``regul``, so a rerun does not refit), predicts them with the
shipped network and any ``--model`` networks (:func:`sfh_ml.network.predict`), and scores every
method on the same objects with :func:`sfh_ml.network.metrics.score_rows`: bias, NMAD and standard
deviation of the mass- and light-weighted log age and [M/H] (bin and exact levels), the cumulative
mass error per object and the per-bin SFH errors, for all objects, the young-dominated (true
mass-weighted age < 100 Myr) and the old-dominated (> 1 Gyr) ones.

Speed: pPXF's seconds per fit on one BLAS thread (as each fit measured itself) and the wall time per
spectrum with ``--workers`` processes; the networks' wall time per spectrum of ``predict`` at batch
1024 over ``--speed-n`` spectra (the held-out spectra repeated), after one untimed pass.

Writes ``compare_ppxf.csv`` (one row per method x S/N x sample x quantity x level; speed rows have
quantity ``seconds_per_spectrum`` and the number in ``value``) and ``compare_ppxf.md`` to ``--out``,
and prints the all-objects table and the speed ratio. Numbers only, no assertions.

Usage: ``python benchmarks/compare_ppxf.py [--n 200] [--snr 10 20 50 100] [--workers 2] [--n-fit N]
[--model PATH ...] [--no-shipped] [--regul 3] [--speed-n 4096] [--out DIR]``.
"""

import argparse
import csv
import io
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from sfh_ml.files import atomic_write_text, tmp_path  # noqa: E402
from sfh_ml.fitting import DEFAULT_REGUL, fit_file, to_predictions  # noqa: E402
from sfh_ml.network.metrics import MEAN_QUANTITIES, SCORE_COLUMNS, score_rows  # noqa: E402
from sfh_ml.network.training import load_data  # noqa: E402
from sfh_ml.synthesis import DatasetConfig, generate  # noqa: E402

__all__ = ["SNRS", "held_out_set", "ppxf_fits", "network_speed", "markdown", "main"]

SNRS = (10.0, 20.0, 50.0, 100.0)
# Held-out seed = SEED_BASE + S/N: none of the training (1), calibration (2), card test (3-6) or
# shipped-model test (2026) seeds.
SEED_BASE = 9000
CHUNK_SIZE = 50  # objects per generation chunk (part of the set's config: keep it fixed)
BATCH_SIZE = 1024
COLUMNS = ("method", "snr", *SCORE_COLUMNS, "value")
SAMPLE_TITLES = {
    "all": "all objects",
    "young": "young-dominated (< 100 Myr)",
    "old": "old-dominated (> 1 Gyr)",
}


def held_out_set(folder, n, snr, workers=1):
    """The held-out set of ``n`` objects at S/N ``snr`` in ``folder`` (generated once, then reused)."""
    seed = SEED_BASE + int(round(snr))
    path = Path(folder) / f"heldout_snr{snr:g}_n{n}_seed{seed}.h5"
    config = DatasetConfig(n=n, seed=seed, snr=(snr, snr), chunk_size=CHUNK_SIZE)
    return generate(config, path, workers=workers, progress=False)  # returns at once if complete


def _stamp(path):
    st = Path(path).stat()
    return np.array([st.st_size, st.st_mtime_ns], dtype=np.int64)


def ppxf_fits(set_path, n_fit, photometry, regul, workers, folder):
    """pPXF fits of the first ``n_fit`` objects of a set, cached in ``folder``.

    The cache (``ppxf_<set>_<spec|spec_hst>_regul<r>.npz``) is reused when it was made from this very
    file (size and modification time) and holds at least ``n_fit`` objects.

    Returns
    -------
    dict
        ``pred`` (:func:`sfh_ml.fitting.to_predictions`), ``seconds`` (n_fit,): one-thread wall time
        of each fit; ``wall_per_fit``: wall time of the whole run per object; ``workers``.
    """
    variant = "spec_hst" if photometry else "spec"
    cache = Path(folder) / f"ppxf_{Path(set_path).stem}_{variant}_regul{regul:g}.npz"
    stamp = _stamp(set_path)
    if cache.exists():
        with np.load(cache) as c:
            if np.array_equal(c["stamp"], stamp) and len(c["sfh"]) >= n_fit:
                cached = {k: c[k] for k in c.files}
                pred = to_predictions({k: cached[k][:n_fit] for k in ("sfh", "zh", "failed")})
                return {
                    "pred": pred,
                    "seconds": cached["seconds"][:n_fit],
                    "wall_per_fit": float(cached["wall_s"]) / len(cached["sfh"]),
                    "workers": int(cached["workers"]),
                }
    start = time.perf_counter()
    res = fit_file(
        set_path, slice(0, n_fit), photometry=photometry, regul=regul, workers=workers, progress=False
    )
    wall = time.perf_counter() - start
    tmp = tmp_path(cache, ".npz")
    try:
        np.savez(tmp, sfh=res["sfh"], zh=res["zh"], failed=res["failed"], seconds=res["seconds"],
                 wall_s=wall, workers=workers, stamp=stamp)  # fmt: skip
        os.replace(tmp, cache)
    finally:
        tmp.unlink(missing_ok=True)
    return {
        "pred": to_predictions(res),
        "seconds": res["seconds"],
        "wall_per_fit": wall / n_fit,
        "workers": workers,
    }


def network_speed(model, spectra, photometry, n_spectra):
    """Wall seconds per spectrum of ``predict`` at batch 1024 over ``n_spectra`` (the inputs repeated).

    One untimed pass first (graph tracing, XLA compilation), then one timed pass.
    """
    from sfh_ml.network import predict

    rows = np.resize(np.arange(len(spectra)), max(int(n_spectra), 1))
    x, p = spectra[rows], photometry[rows]
    predict(model, x, p, batch_size=BATCH_SIZE)
    start = time.perf_counter()
    predict(model, x, p, batch_size=BATCH_SIZE)
    return (time.perf_counter() - start) / len(rows)


def _load_networks(args):
    from sfh_ml import load_pretrained
    from sfh_ml.network import load_model

    networks = {} if args.no_shipped else {"network (shipped)": load_pretrained()}
    for path in args.model:
        networks[f"network ({Path(path).stem})"] = load_model(path)
    return networks


def _fmt(value, sign=False):
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def markdown(rows, sample="all", level="exact"):
    """A Markdown table of one sample and level: per method and S/N, the cumulative mass error and
    bias / NMAD / std (dex) of the four mean quantities."""
    cells = {(r["method"], r["snr"], r["quantity"]): r for r in rows if r["sample"] == sample}
    keys = sorted({(r["method"], r["snr"]) for r in rows if r["sample"] == sample and r["level"] == level},
                  key=lambda k: (float(k[1]), k[0]))  # fmt: skip
    head = ["S/N", "method", "n", "cum. mass MAE", *(f"{q} bias / NMAD / std" for q in MEAN_QUANTITIES)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, snr in keys:
        cum = cells.get((method, snr, "cum_sfh_mae"), {})
        stats = []
        for q in MEAN_QUANTITIES:
            r = next((x for x in rows if (x["method"], x["snr"], x["sample"], x["quantity"], x["level"])
                      == (method, snr, sample, q, level)), None)  # fmt: skip
            stats.append(
                "n/a" if r is None else f"{_fmt(r['bias'], True)} / {_fmt(r['nmad'])} / {_fmt(r['std'])}"
            )
        n = f"{cum.get('n')} (+{cum.get('n_failed')} failed)" if cum.get("n_failed") else str(cum.get("n"))
        lines.append(f"| {snr} | {method} | {n} | {_fmt(cum.get('bias'))} | " + " | ".join(stats) + " |")
    return "\n".join(lines)


def _speed_rows(speed):
    return [{**{c: None for c in COLUMNS}, "method": m, "snr": s, "sample": "all",
             "quantity": "seconds_per_spectrum", "level": level, "value": v}
            for (m, s, level), v in speed.items()]  # fmt: skip


def _speed_table(speed):
    lines = ["| method | S/N | timing | seconds per spectrum |", "|---|---|---|---|"]
    lines += [f"| {m} | {s} | {level} | {v:.4g} |" for (m, s, level), v in speed.items()]
    return "\n".join(lines)


def _csv_text(rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in COLUMNS} for r in rows)
    return buf.getvalue()


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
    args = parser.parse_args(argv)
    n_fit = args.n if args.n_fit is None else min(args.n_fit, args.n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    networks = _load_networks(args)

    rows, speed, inputs = [], {}, []
    for snr in args.snr:
        path = held_out_set(out, args.n, snr, workers=args.workers)
        data = load_data(path, n_max=n_fit)
        truth = {"sfh": data["sfh"], "zh": data["zh"], **data["mean_truth"]}
        inputs.append((data["spectra"], data["photometry"]))
        preds = {}
        for photometry in (False, True):
            method = "pPXF + HST" if photometry else "pPXF"
            fits = ppxf_fits(path, n_fit, photometry, args.regul, args.workers, out)
            preds[method] = fits["pred"]
            ok = np.isfinite(fits["seconds"])
            speed[(method, f"{snr:g}", "one thread, mean per fit")] = float(fits["seconds"][ok].mean())
            speed[(method, f"{snr:g}", f"wall, {fits['workers']} workers")] = fits["wall_per_fit"]
        for method, model in networks.items():
            from sfh_ml.network import predict

            preds[method] = predict(model, data["spectra"], data["photometry"], batch_size=BATCH_SIZE,
                                    wave_aa=data["wave_aa"], filters=data["filters"])  # fmt: skip
        for method, pred in preds.items():
            for row in score_rows(pred, truth, data["age_bins_yr"], data["bin_light"], data["zh_grid"]):
                rows.append({"method": method, "snr": f"{snr:g}", **row, "value": None})
        print(f"S/N {snr:g}: {n_fit} objects scored for {len(preds)} methods", flush=True)

    spectra = np.concatenate([s for s, _ in inputs])
    photometry = np.concatenate([p for _, p in inputs])
    for method, model in networks.items():
        speed[(method, "all", f"predict, batch {BATCH_SIZE}")] = network_speed(
            model, spectra, photometry, args.speed_n
        )
    rows += _speed_rows(speed)

    tables = [f"# pPXF against the networks: {n_fit} objects per S/N, pPXF regul {args.regul:g}\n"]
    for sample in SAMPLE_TITLES:
        for level in ("exact", "bin"):
            tables.append(f"## {SAMPLE_TITLES[sample]}, {level} level\n\n{markdown(rows, sample, level)}\n")
    tables.append(f"## Speed\n\n{_speed_table(speed)}\n")
    atomic_write_text(out / "compare_ppxf.csv", _csv_text(rows))
    atomic_write_text(out / "compare_ppxf.md", "\n".join(tables))

    print(markdown(rows, "all", "exact"))
    print(_speed_table(speed))
    fit_s = np.mean(
        [v for (m, _, level), v in speed.items() if m == "pPXF" and level.startswith("one thread")]
    )
    for method in networks:
        net_s = speed[(method, "all", f"predict, batch {BATCH_SIZE}")]
        print(f"{method}: {net_s:.3g} s per spectrum, pPXF (one thread) {fit_s:.3g} s per fit: "
              f"network / pPXF time = {net_s / fit_s:.2g} ({fit_s / net_s:.3g} times faster)")  # fmt: skip
    print(f"wrote {out / 'compare_ppxf.csv'} and {out / 'compare_ppxf.md'}")
    return rows


if __name__ == "__main__":
    main()
