"""pPXF against the networks on identical held-out sets: the sets, the cached fits, the scores, the
tables and the speeds (chapter 5 and ``benchmarks/compare_ppxf.py``).

One held-out set per S/N (the default population at a fixed S/N per pixel; same seed for the E-MILES
and the BC03 library, so the two differ only in the stars), pPXF fits without and with the five HST
fluxes (:func:`sfh_ml.fitting.fit_file`, cached per set, photometry and ``regul``), the networks'
predictions (:func:`sfh_ml.network.predict`), all scored on the same objects by
:func:`sfh_ml.network.metrics.score_rows` for all objects, the young-dominated (true mass-weighted age
< 100 Myr) and the old-dominated (> 1 Gyr) ones.

Speeds: pPXF's seconds per fit on one BLAS thread (as each fit measured itself) and the wall time per
spectrum with ``workers`` processes; a network's wall time per spectrum of ``predict`` at batch 1024
(after one untimed pass). :func:`cube_hours` turns seconds per spectrum into the time for one cube.
"""

import csv
import io
import os
import time
from pathlib import Path

import numpy as np

from ..files import atomic_write_text, tmp_path
from ..network.metrics import MEAN_QUANTITIES, SCORE_COLUMNS, score_rows
from ..synthesis import DatasetConfig, generate
from .batch import fit_file, to_predictions
from .fit import DEFAULT_REGUL, FIT_VERSION

__all__ = [
    "SNRS",
    "SEED_BASE",
    "BATCH_SIZE",
    "COLUMNS",
    "SAMPLE_TITLES",
    "PHANGS_CUBE_BINS",
    "PHANGS_CUBE_SPAXELS",
    "held_out_set",
    "ppxf_fits",
    "network_speed",
    "load_networks",
    "score_set",
    "compare_methods",
    "markdown",
    "speed_rows",
    "speed_table",
    "speed_summary",
    "cube_hours",
    "csv_text",
    "read_csv_rows",
    "write_tables",
    "score_series",
    "per_bin_errors",
    "sample_stats",
]

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
# One PHANGS-MUSE galaxy (Emsellem et al. 2022): ~2e5 spaxels, ~4e4 Voronoi bins at the DAP's S/N.
PHANGS_CUBE_SPAXELS = 200_000
PHANGS_CUBE_BINS = 40_000
SPEED_ONE_THREAD = "one thread, mean per fit"
SPEED_PREDICT = f"predict, batch {BATCH_SIZE}"


def held_out_set(folder, n, snr, workers=1, library="emiles"):
    """The held-out set of ``n`` objects at S/N ``snr`` in ``folder`` (generated once, then reused).

    ``library="bc03"`` makes the same objects (same seed: histories, dust, dispersions, noise draws)
    with the BC03 stars, a library the network was not trained on (the synthetic valley).
    """
    seed = SEED_BASE + int(round(snr))
    tag = "" if library == "emiles" else f"_{library}"
    path = Path(folder) / f"heldout{tag}_snr{snr:g}_n{n}_seed{seed}.h5"
    config = DatasetConfig(n=n, seed=seed, snr=(snr, snr), chunk_size=CHUNK_SIZE, library=library)
    return generate(config, path, workers=workers, progress=False)  # returns at once if complete


def _stamp(path):
    st = Path(path).stat()
    return np.array([st.st_size, st.st_mtime_ns], dtype=np.int64)


def ppxf_fits(set_path, n_fit, photometry, regul, workers, folder, progress=False):
    """pPXF fits of the first ``n_fit`` objects of a set, cached in ``folder``.

    ``progress`` (bool or str, the label): a tqdm bar while fitting (none when the cache is used).

    The cache (``ppxf_<set>_<spec|spec_hst>_regul<r>_fit<v>.npz``, ``v`` the fit's
    :data:`~sfh_ml.fitting.fit.FIT_VERSION`) is reused when it was made from this very file (size and
    modification time) with the same fit settings and holds at least ``n_fit`` objects.

    Returns
    -------
    dict
        ``pred`` (:func:`sfh_ml.fitting.to_predictions`), ``seconds`` (n_fit,): one-thread wall time
        of each fit; ``wall_per_fit``: wall time of the whole run per object; ``workers``.
    """
    variant = "spec_hst" if photometry else "spec"
    cache = Path(folder) / f"ppxf_{Path(set_path).stem}_{variant}_regul{regul:g}_fit{FIT_VERSION}.npz"
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
        set_path, slice(0, n_fit), photometry=photometry, regul=regul, workers=workers, progress=progress
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
    from ..network import predict

    rows = np.resize(np.arange(len(spectra)), max(int(n_spectra), 1))
    x, p = spectra[rows], photometry[rows]
    predict(model, x, p, batch_size=BATCH_SIZE)
    start = time.perf_counter()
    predict(model, x, p, batch_size=BATCH_SIZE)
    return (time.perf_counter() - start) / len(rows)


def load_networks(shipped=True, model_paths=()):
    """Method name -> Keras model: ``network (shipped)`` and ``network (<file stem>)`` per path."""
    from ..network import load_model
    from ..network.pretrained import load_pretrained

    networks = {"network (shipped)": load_pretrained()} if shipped else {}
    for path in model_paths:
        networks[f"network ({Path(path).stem})"] = load_model(path)
    return networks


def score_set(
    set_path, n_fit, networks, folder, regul=DEFAULT_REGUL, workers=1, snr_label=None, progress=False
):
    """pPXF (without and with HST) and each network on the first ``n_fit`` objects of one set.

    ``progress``: a tqdm bar for each pPXF run (labelled with the method and ``snr_label``).

    Returns
    -------
    dict
        ``rows``: :func:`score_rows` rows with ``method`` and ``snr`` (``snr_label``) added;
        ``speed``: (method, snr_label, timing) -> seconds per spectrum of the pPXF runs;
        ``pred``: method -> predictions; ``data``: the set as :func:`sfh_ml.network.training.load_data`
        reads it (first ``n_fit`` objects).
    """
    from ..network import predict
    from ..network.training import load_data

    data = load_data(set_path, n_max=n_fit)
    truth = {"sfh": data["sfh"], "zh": data["zh"], **data["mean_truth"]}
    preds, speed = {}, {}
    for photometry in (False, True):
        method = "pPXF + HST" if photometry else "pPXF"
        label = progress and f"{method}, S/N {snr_label}"
        fits = ppxf_fits(set_path, n_fit, photometry, regul, workers, folder, progress=label)
        preds[method] = fits["pred"]
        ok = np.isfinite(fits["seconds"])
        speed[(method, snr_label, SPEED_ONE_THREAD)] = float(fits["seconds"][ok].mean())
        speed[(method, snr_label, f"wall, {fits['workers']} workers")] = fits["wall_per_fit"]
    for method, model in networks.items():
        preds[method] = predict(model, data["spectra"], data["photometry"], batch_size=BATCH_SIZE,
                                wave_aa=data["wave_aa"], filters=data["filters"])  # fmt: skip
    rows = []
    for method, pred in preds.items():
        for row in score_rows(pred, truth, data["age_bins_yr"], data["bin_light"], data["zh_grid"]):
            rows.append({"method": method, "snr": snr_label, **row, "value": None})
    return {"rows": rows, "speed": speed, "pred": preds, "data": data}


def compare_methods(
    folder,
    n,
    snrs=SNRS,
    networks=None,
    n_fit=None,
    regul=DEFAULT_REGUL,
    workers=1,
    speed_n=4096,
    library="emiles",
    log=print,
    progress=False,
):
    """Every method on the held-out set of each S/N, and the networks' speed.

    Parameters
    ----------
    folder : str or Path
        Where the sets and the pPXF caches are kept (reused when complete).
    n : int
        Objects per held-out set; ``n_fit`` (default ``n``) of them are fitted and scored.
    snrs : sequence of float
    networks : dict, optional
        Method name -> model (default :func:`load_networks`: the shipped network).
    regul, workers
        pPXF's regularisation and parallel processes (also the generation's).
    speed_n : int
        Spectra of the networks' timed pass (0: no network timing).
    library : {"emiles", "bc03"}
        SSP library of the held-out sets' stars.
    log : callable or None
        Progress lines.
    progress : bool
        A tqdm bar for each pPXF run.

    Returns
    -------
    dict
        ``rows`` (scores and speed rows, keys :data:`COLUMNS`), ``speed`` ((method, snr, timing) ->
        seconds per spectrum), ``sets`` (snr label -> path), ``pred`` and ``data`` (snr label -> the
        :func:`score_set` entries), ``n_fit``, ``regul``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    networks = load_networks() if networks is None else networks
    n_fit = n if n_fit is None else min(n_fit, n)
    out = {"rows": [], "speed": {}, "sets": {}, "pred": {}, "data": {}, "n_fit": n_fit, "regul": regul}
    for snr in snrs:
        label = f"{snr:g}"
        path = held_out_set(folder, n, snr, workers=workers, library=library)
        scored = score_set(
            path, n_fit, networks, folder, regul=regul, workers=workers, snr_label=label, progress=progress
        )
        out["rows"] += scored["rows"]
        out["speed"].update(scored["speed"])
        out["sets"][label], out["pred"][label], out["data"][label] = path, scored["pred"], scored["data"]
        if log:
            log(f"S/N {label}: {n_fit} objects scored for {len(scored['pred'])} methods")
    if speed_n and networks:
        spectra = np.concatenate([d["spectra"] for d in out["data"].values()])
        photometry = np.concatenate([d["photometry"] for d in out["data"].values()])
        for method, model in networks.items():
            out["speed"][(method, "all", SPEED_PREDICT)] = network_speed(model, spectra, photometry, speed_n)
    out["rows"] += speed_rows(out["speed"])
    return out


# ------------------------------------------------------------------------------------------ tables
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


def speed_rows(speed):
    """Rows of :data:`COLUMNS` for the speeds (quantity ``seconds_per_spectrum``, number in ``value``)."""
    return [{**{c: None for c in COLUMNS}, "method": m, "snr": s, "sample": "all",
             "quantity": "seconds_per_spectrum", "level": level, "value": v}
            for (m, s, level), v in speed.items()]  # fmt: skip


def speed_table(speed):
    """A Markdown table of the speeds: method, S/N, timing, seconds per spectrum."""
    lines = ["| method | S/N | timing | seconds per spectrum |", "|---|---|---|---|"]
    lines += [f"| {m} | {s} | {level} | {v:.4g} |" for (m, s, level), v in speed.items()]
    return "\n".join(lines)


def speed_summary(speed):
    """Seconds per spectrum of each method on this machine, averaged over the S/N.

    Returns
    -------
    dict
        method -> {``one_thread``: pPXF's mean seconds per fit on one thread (None for a network),
        ``wall``: wall seconds per spectrum (pPXF: with its workers; network: ``predict``),
        ``workers``: pPXF's processes (None for a network)}.
    """
    out = {}
    for (method, _, timing), value in speed.items():
        entry = out.setdefault(method, {"one_thread": [], "wall": [], "workers": None})
        if timing == SPEED_ONE_THREAD:
            entry["one_thread"].append(value)
        elif timing.startswith("wall, "):
            entry["wall"].append(value)
            entry["workers"] = int(timing.split()[1])
        elif timing == SPEED_PREDICT:
            entry["wall"].append(value)
    return {
        m: {k: (float(np.mean(v)) if v else None) if k != "workers" else v for k, v in e.items()}
        for m, e in out.items()
    }


def cube_hours(seconds_per_spectrum, n_spectra=PHANGS_CUBE_BINS, workers=1):
    """Hours for ``n_spectra`` spectra at ``seconds_per_spectrum`` each, shared by ``workers`` cores."""
    return np.asarray(seconds_per_spectrum, dtype=float) * n_spectra / workers / 3600.0


def csv_text(rows):
    """The rows as CSV text with the header :data:`COLUMNS` (None as empty)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in COLUMNS} for r in rows)
    return buf.getvalue()


def read_csv_rows(path):
    """Rows written by :func:`write_tables` back as dicts (numbers as float or int, empty as None)."""
    ints = {"n", "n_failed"}
    floats = {"bias", "median_bias", "nmad", "std", "mae", "value"}
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ints | floats:
            r[k] = None if r[k] == "" else (int(r[k]) if k in ints else float(r[k]))
    return rows


def write_tables(out, rows, speed, n_fit, regul):
    """``compare_ppxf.csv`` and ``compare_ppxf.md`` (all samples, both levels, speeds) in ``out``."""
    out = Path(out)
    tables = [f"# pPXF against the networks: {n_fit} objects per S/N, pPXF regul {regul:g}\n"]
    for sample in SAMPLE_TITLES:
        for level in ("exact", "bin"):
            tables.append(f"## {SAMPLE_TITLES[sample]}, {level} level\n\n{markdown(rows, sample, level)}\n")
    tables.append(f"## Speed\n\n{speed_table(speed)}\n")
    atomic_write_text(out / "compare_ppxf.csv", csv_text(rows))
    atomic_write_text(out / "compare_ppxf.md", "\n".join(tables))
    return out / "compare_ppxf.csv", out / "compare_ppxf.md"


# ------------------------------------------------------------------------- rows -> arrays (figures)
def _scored(rows):
    return [r for r in rows if r["quantity"] != "seconds_per_spectrum"]


def _methods(rows):
    return list(dict.fromkeys(r["method"] for r in rows))


def score_series(rows, quantity, stat, sample="all", level="exact"):
    """One statistic against S/N for each method.

    Returns
    -------
    dict
        method -> (snr (n,), value (n,)), sorted by S/N; NaN where a statistic is missing.
    """
    rows = _scored(rows)
    out = {}
    for method in _methods(rows):
        key = (method, sample, quantity, level)
        pick = {
            float(r["snr"]): r[stat]
            for r in rows
            if (r["method"], r["sample"], r["quantity"], r["level"]) == key
        }
        if pick:
            snr = np.array(sorted(pick))
            out[method] = (snr, np.array([np.nan if pick[s] is None else pick[s] for s in snr], dtype=float))
    return out


def per_bin_errors(rows, snr, sample="all", cumulative=True, stat="mae"):
    """Per-age-bin SFH error of each method at one S/N: method -> array (n_bins,), youngest first.

    ``cumulative``: the error of the cumulative mass curve (``sfh_cum_KK``), else of the mass
    fraction (``sfh_bin_KK``); ``stat``: ``mae`` or ``bias``.
    """
    prefix = "sfh_cum_" if cumulative else "sfh_bin_"
    rows = [r for r in _scored(rows) if f"{float(r['snr']):g}" == f"{float(snr):g}" and r["sample"] == sample]
    out = {}
    for method in _methods(rows):
        cells = sorted((r["quantity"], r[stat]) for r in rows if r["method"] == method
                       and r["quantity"].startswith(prefix))  # fmt: skip
        if cells:
            out[method] = np.array([np.nan if v is None else v for _, v in cells], dtype=float)
    return out


def sample_stats(rows, snr, quantity, stat, level="exact", samples=tuple(SAMPLE_TITLES)):
    """One statistic per method and sample at one S/N: method -> array (n_samples,), NaN if absent."""
    rows = [r for r in _scored(rows) if f"{float(r['snr']):g}" == f"{float(snr):g}"]
    out = {}
    for method in _methods(rows):
        values = []
        for sample in samples:
            r = next((x for x in rows if (x["method"], x["sample"], x["quantity"], x["level"])
                      == (method, sample, quantity, level)), None)  # fmt: skip
            values.append(np.nan if r is None or r[stat] is None else r[stat])
        out[method] = np.array(values, dtype=float)
    return out
