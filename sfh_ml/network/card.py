"""The model card of a shipped network: Markdown rendered from a JSON of results.

``benchmarks/release_model.py`` measures everything and writes ``results.json``;
:func:`render_model_card` turns it into ``MODEL_CARD.md``, which ships beside the model
(``sfh_ml/pretrained/``) and is a page of the book. The card states nothing that is not in the
results: every number comes from them, so a card and its figures cannot disagree.

The results JSON
----------------
A dict (all numbers plain floats or ints; ``None`` where not measured). Required keys are marked
*; a missing optional section renders as "not measured".

``name`` * : str
    The model's name in the manifest (``sfh_ml.load_pretrained(name)``).
``created`` : str
    Date of the release (ISO 8601).
``model`` * : dict
    ``architecture`` * (``"v1"`` or ``"v2"``), ``n_members`` * (1 for a single network),
    ``n_parameters`` * (per member), ``size_mb`` * (all member files together, MB of 10^6 bytes),
    ``files`` (member file names), ``n_wave`` (spectral pixels), ``wave_range_aa`` ([first, last]
    pixel, rest frame, Angstrom), ``filters`` (band names, in order), ``age_bins_yr`` (edges,
    years), ``zh_range`` ([min, max], dex), ``calibrated`` (bool), ``ood_thresholds`` (the
    model's out-of-distribution table, ``[[snr_model, threshold], ...]``, see
    :func:`sfh_ml.network.calibrate_ood`; None or absent: the module default).
``training`` * : dict
    ``n_train`` * (spectra), ``dataset_config`` (the training set's
    :class:`~sfh_ml.synthesis.config.DatasetConfig` as a dict; its ``seed`` is the data seed),
    ``seed`` * (seed of the weights, split and augmentation; member ``i`` uses ``seed + i``),
    ``epochs`` (maximum), ``batch_size``, ``learning_rate``, ``patience``, ``val_fraction``,
    ``augment`` (bool), ``schedule`` (``"cosine"`` or ``"plateau"``, of the learning rate; absent:
    cosine), ``epochs_run``, ``best_epoch`` and ``stopped`` (why training ended; lists, one per
    member), ``history`` (member 0's rows ``{"epoch", "point_error", "val_point_error", "val_loss",
    "learning_rate"}``, one per epoch), ``backend``
    (Keras backend), ``device``, ``seconds`` (wall time of the training runs), ``calibration``
    (``{"n": spectra, "seed": data seed, "snr": [min, max]}`` of the calibration set, or None),
    ``test_sets`` (list of ``{"label", "n", "seed", "snr": [min, max]}``).
``generator`` * : dict
    ``sfh_ml_version`` *, ``schema_version`` * (of the synthetic-set files), ``library_version`` *
    (of the SSP library), ``git_commit`` (of the code that made the release, or None).
``domain`` : dict
    What the training set spans, for the limitations: ``age_range_yr`` ([youngest SSP, oldest
    history start], years), ``wave_range_aa`` ([min, max], rest frame), ``sigma_kms`` ([min, max]
    stellar dispersion), ``snr`` and ``snr_phot`` ([min, max] of the spectra and of the HST
    fluxes; for the fluxes, a str instead where the S/N follows a per-band model),
    ``zh_range`` ([min, max], dex), ``seam_age_yr`` (age where the SSP library changes
    from BC03 to E-MILES), ``tau_bc`` and ``tau_ism`` ([min, max] V-band optical depths of the
    Charlot & Fall dust), ``birth_cloud_age_yr``.
``metrics`` * : list of dict
    One row per held-out test set: ``label`` * (e.g. ``"S/N 50"``), ``snr`` ([min, max]),
    ``n_objects``, ``bin`` * and ``exact``: ``{quantity: stats}`` for the quantities
    ``mw_log_age``, ``lw_log_age``, ``mw_zh``, ``lw_zh`` (mass- and light-weighted log age and
    [M/H], dex), where ``stats`` holds at least ``nmad``, ``std`` and ``bias`` (mean of predicted
    minus true), as :func:`sfh_ml.network.metrics.scatter_stats` returns them. *bin*: predicted
    against true bins; *exact*: predicted bins against the per-object truth of the synthetic set.
``metrics_fast`` : list of dict
    The same for the first member alone (``load_pretrained(members="fast")``), for an ensemble.
``zh_prior`` : dict
    Whether the network is pulled toward its [M/H] prior: ``label`` (the test set, e.g. ``"S/N 50"``),
    ``zh_bins`` (edges of the true mass-weighted [M/H], dex), ``rows``: list of ``{"zh_range": [lo, hi],
    "n": int, "mw_zh": {"bias", "nmad"}, "mw_log_age": {"bias", "nmad"}}``, one per non-empty bin of the
    true mass-weighted [M/H] (objects with ``lo <= [M/H] < hi``), in order; bias and NMAD of predicted
    minus true (dex, bin level) of the mass-weighted [M/H] and log age, from ``by_true_zh`` of
    :func:`sfh_ml.network.metrics.evaluate_predictions`.
``coverage`` : list of dict
    One row per test set: ``label``, ``before`` and ``after`` (calibration; ``after`` None if not
    calibrated), each ``{output: {"1sigma": fraction, "2sigma": fraction}}`` for the outputs
    ``sfh_cum`` (cumulative SFH), ``zh`` ([M/H] per bin) and ``zh_mass_weighted`` (the same,
    weighted by the true mass fractions); fractions of true values within 1 and 2 predicted sigma.
``ablation`` : dict
    With and without the HST photometry (a second network, trained alike on spectra only):
    ``young_definition`` (str, how the young sample is chosen, e.g. ``"true mass-weighted age
    below 100 Myr"``), ``statistic`` (str, e.g. ``"NMAD (dex), bin level"``), ``rows``: list of
    ``{"snr": float, "sample": "all" | "young", "n_objects": int, "with_photometry": {quantity:
    value}, "without_photometry": {quantity: value}}``.
``valley`` : dict
    The synthetic valley: the shipped network on each test world (:data:`sfh_ml.synthesis.TEST_WORLDS`,
    held-out sets made unlike the training set, :func:`sfh_ml.synthesis.world_config`). ``snr`` (S/N
    per pixel of every world's set), ``n_objects`` (per world), ``seed`` (data seed, the same for
    every world), ``statistic`` (str, e.g. ``"bin level"``), ``note`` (str, optional: e.g. what a
    domain-randomised training set mixed, so which worlds are partly seen), ``rows``: list of
    ``{"world": str, "description": str, "mw_log_age": stats, "mw_log_age_young": stats or None,
    "mw_zh": stats, "flagged": fraction or None, "hit_rate": fraction or None}``, where ``stats`` is
    ``{"bias", "nmad", "n"}`` (dex; predicted minus true, mass-weighted), ``mw_log_age_young`` that of
    the young-dominated objects (true mass-weighted age below 100 Myr), ``flagged`` the fraction of
    objects carrying the out-of-distribution flag
    (``sfh_ml.network.QUALITY_FLAGS["out_of_distribution"]``) and ``hit_rate`` the fraction of the
    objects whose mass-weighted log age is off by more than 0.3 dex that carry it; ``n_lost``
    (optional) how many objects are that far off.
``trust`` : dict
    The trust score (:mod:`sfh_ml.network.trust`) on every test world: ``n_objects`` (per world),
    ``snr`` ([min, max]), ``seed``, ``rows``: list of ``{"world", "wrong_fraction", "hit_rate",
    "false_alarm", "auc", "coverage_sfh_cum_1sigma", "coverage_sfh_cum_2sigma", "coverage_zh_1sigma",
    "coverage_zh_2sigma", "age_bias", "age_nmad"}`` (each world scored with parameters fitted on the
    others; ``benchmarks/trust.py``).
``leave_out`` : dict
    The leave-one-out table of ``benchmarks/worlds.py --leave-out``: ``rows``, the keys of a
    ``trust`` row plus ``network`` (which axis was left out) and ``left_out`` (bool: the world is one
    the network never saw in training).
``speed`` : dict
    ``batch_size``, ``backend``, ``device``, ``rows``: list of ``{"what": str, "spectra_per_s":
    float}``.
``limitations`` : list of str
    Limitations beyond those the card derives from ``domain``.
``reproduce`` * : str
    The command that reproduces the model (shell).
"""

import math

from .metrics import gaussian_coverage
from .trust import RIGHT_AGE_DEX, WRONG_AGE_DEX

__all__ = ["render_model_card", "card_summary", "QUANTITY_LABELS", "COVERAGE_LABELS"]

QUANTITY_LABELS = {
    "mw_log_age": "log age, mass-weighted",
    "lw_log_age": "log age, light-weighted",
    "mw_zh": "[M/H], mass-weighted",
    "lw_zh": "[M/H], light-weighted",
}
COVERAGE_LABELS = {
    "sfh_cum": "cumulative SFH",
    "zh": "[M/H] per bin",
    "zh_mass_weighted": "[M/H] per bin, mass-weighted",
}
STATS = {"nmad": "NMAD", "std": "std", "bias": "bias"}  # the figures of the metrics table, in dex
DASH = "–"  # a value not measured
REQUIRED = {
    "": ("name", "model", "training", "generator", "metrics", "reproduce"),
    "model": ("architecture", "n_members", "n_parameters", "size_mb"),
    "training": ("n_train", "seed"),
    "generator": ("sfh_ml_version", "schema_version", "library_version"),
}


# ----------------------------------------------------------------------------------------- cells
FOLD_ROWS = 8  # tables longer than this are folded (see _table)


def _num(value, fmt):
    """A number formatted, or the dash for None / NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return format(value, fmt)


def _dex(value):
    return _num(value, ".3f")


def _signed(value):
    return _num(value, "+.3f")


def _age(age_yr):
    """1e6 -> "1 Myr", 1.41e10 -> "14.1 Gyr"."""
    if age_yr >= 1e9:
        return f"{age_yr / 1e9:.3g} Gyr"
    return f"{age_yr / 1e6:.3g} Myr"


def _age_or_range(value):
    """An age, or a (min, max) range of them drawn per object: "10 Myr", "3-30 Myr (per object)"."""
    if isinstance(value, (list, tuple)):
        lo, hi = _age(value[0]), _age(value[1])
        if lo.split()[1] == hi.split()[1]:
            lo = lo.split()[0]
        return f"{lo}-{hi}, per object"
    return _age(value)


def _range(pair, unit="", fmt="g", sep="-"):
    lo, hi = pair
    return f"{lo:{fmt}}{unit}" if lo == hi else f"{lo:{fmt}}{sep}{hi:{fmt}}{unit}"


def _snr_phot(value):
    """The S/N of the HST fluxes: a [min, max] range, or the words of a per-band model."""
    return value if isinstance(value, str) else _range(value)


def _table(header, rows):
    """A Markdown table: header cells, then rows of cells (str).

    A table of more than :data:`FOLD_ROWS` rows is folded into a ``<details>`` block, which GitHub,
    JupyterLab and the book all show closed, with the number of rows on its label: the reader sees
    the figures and the short tables first, and opens a long one when looking something up.
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    table = "\n".join(lines)
    if len(rows) <= FOLD_ROWS:
        return table
    return f"<details>\n<summary>The table ({len(rows)} rows)</summary>\n\n{table}\n\n</details>"


# ----------------------------------------------------------------------------------------- checks
def _check(results):
    for section, keys in REQUIRED.items():
        block = results if not section else results.get(section)
        if not isinstance(block, dict):
            raise ValueError(f"the results lack the section {section!r} (see sfh_ml.network.card)")
        missing = [k for k in keys if block.get(k) is None]
        if missing:
            where = f"results[{section!r}]" if section else "the results"
            raise ValueError(f"{where} lack {missing} (see the schema in sfh_ml.network.card)")
    if not results["metrics"]:
        raise ValueError("the results hold no metrics rows (results['metrics'] is empty)")


# ----------------------------------------------------------------------------------------- sections
def _headline(results):
    """One sentence of figures at S/N 50 (bin level, mass-weighted), if a row for S/N 50 exists."""
    rows = [r for r in results["metrics"] if list(r.get("snr") or []) == [50, 50]]
    if not rows:
        return ""
    b = rows[0]["bin"]
    age, zh = b.get("mw_log_age", {}), b.get("mw_zh", {})
    return (
        f" On held-out synthetic spectra at S/N 50, the mass-weighted log age is recovered with an NMAD "
        f"of {_dex(age.get('nmad'))} dex (standard deviation {_dex(age.get('std'))} dex) and the "
        f"mass-weighted [M/H] with an NMAD of {_dex(zh.get('nmad'))} dex."
    )


def _summary(results):
    m, t = results["model"], results["training"]
    kind = "one network" if m["n_members"] == 1 else f"a deep ensemble of {m['n_members']} networks"
    inputs = ""
    if m.get("wave_range_aa") and m.get("filters"):
        inputs = (
            f" from a MUSE spectrum ({_range(m['wave_range_aa'], ' Å', '.0f')} rest frame) and "
            f"{len(m['filters'])} HST fluxes"
        )
    bins = f" in {len(m['age_bins_yr']) - 1} age bins" if m.get("age_bins_yr") else ""
    return (
        f"`{results['name']}` is {kind} of architecture {m['architecture']} that predicts the star "
        f"formation history (mass fraction formed{bins}) and the [M/H] history, each with a 1σ "
        f"uncertainty,{inputs}. It was trained on {t['n_train']:,} synthetic spectra.{_headline(results)} "
        "Load it with `sfh_ml.load_pretrained()`; `sfh-ml predict` and `sfh-ml apply` use it when no "
        "`--model` is given."
    )


def _model_section(results):
    m = results["model"]
    rows = [
        ("Architecture", f"{m['architecture']} (see `sfh_ml.network.architectures`)"),
        ("Members", f"{m['n_members']}" + ("" if m["n_members"] == 1 else " (deep ensemble)")),
        ("Parameters", f"{m['n_parameters']:,}" + (" per member" if m["n_members"] > 1 else "")),
        ("Size", f"{m['size_mb']:.1f} MB" + (" (all members)" if m["n_members"] > 1 else "")),
    ]
    if m.get("files"):
        rows.append(("Files", ", ".join(f"`{f}`" for f in m["files"])))
    if m.get("n_wave") and m.get("wave_range_aa"):
        rows.append(("Spectrum", f"{m['n_wave']} pixels, {_range(m['wave_range_aa'], ' Å', '.2f')}"))
    if m.get("filters"):
        rows.append(("Photometry", ", ".join(m["filters"])))
    if m.get("age_bins_yr"):
        edges = m["age_bins_yr"]
        rows.append(("Age bins", f"{len(edges) - 1}, edges {', '.join(_age(e) for e in edges)}"))
    if m.get("zh_range"):
        rows.append(("[M/H] range", _range(m["zh_range"], " dex", "+.2f", " to ")))
    if m.get("calibrated") is not None:
        rows.append(("Uncertainties calibrated", "yes" if m["calibrated"] else "no"))
    if m.get("ood_thresholds"):
        nodes = ", ".join(f"{t:.4f} at S/N {snr:.0f}" for snr, t in m["ood_thresholds"])
        rows.append(("Out-of-distribution thresholds (residual fraction)", nodes))
    return "## What the model is\n\n" + _table(("", ""), [(f"**{k}**", v) for k, v in rows])


def _training_section(results):
    t = results["training"]
    rows = [
        ("Training spectra", f"{t['n_train']:,}"),
        ("Seed (weights, split, augmentation)", f"{t['seed']}"),
    ]
    if results["model"]["n_members"] > 1:
        rows.append(("Member seeds", f"{t['seed']} + member index"))
    for key, label in (
        ("epochs", "Epochs (maximum)"),
        ("batch_size", "Batch size"),
        ("learning_rate", "Initial learning rate"),
        ("schedule", "Learning-rate schedule"),
        ("patience", "Early-stopping patience (epochs)"),
        ("val_fraction", "Validation fraction"),
        ("augment", "Augmentation (masked spans, missing bands)"),
        ("epochs_run", "Epochs run, per member"),
        ("best_epoch", "Best epoch, per member"),
        ("stopped", "Training ended, per member"),
        ("backend", "Keras backend"),
        ("device", "Device"),
    ):
        value = t.get(key)
        if isinstance(value, bool):
            value = "yes" if value else "no"
        if value is not None:
            rows.append((label, ", ".join(map(str, value)) if isinstance(value, list) else str(value)))
    if t.get("seconds") is not None:
        hours = t["seconds"] / 3600
        rows.append(("Training time", f"{hours:.1f} h" if hours >= 1 else f"{t['seconds'] / 60:.0f} min"))
    text = "## Training\n\n" + _table(("", ""), [(f"**{k}**", v) for k, v in rows])
    cfg = t.get("dataset_config")
    if cfg:
        cells = [(f"`{k}`", f"`{v}`") for k, v in sorted(cfg.items())]
        text += "\n\nThe training set's generation config (`sfh_ml.DatasetConfig`):\n\n" + _table(
            ("Parameter", "Value"), cells
        )
    sets = [("calibration", t["calibration"])] if t.get("calibration") else []
    sets += [(s["label"], s) for s in t.get("test_sets") or []]
    if sets:
        cells = [(label, f"{s['n']:,}", str(s.get("seed", DASH)), _range(s["snr"])) for label, s in sets]
        text += "\n\nHeld-out sets, each generated with its own seed:\n\n" + _table(
            ("Set", "Spectra", "Data seed", "S/N per pixel"), cells
        )
    return text


_SCHEDULES = {
    "cosine": "cosine decay over the maximum epochs",
    "plateau": "halved after 2 epochs without improvement",
}


def _history_section(results):
    """How long it trained: the validation curve, the best epoch and why training ended."""
    t = results["training"]
    rows = t.get("history")
    title = "## How long it trained"
    if not rows:
        return f"{title}\n\nThe training curve was not recorded."
    best = (t.get("best_epoch") or [None])[0]
    stopped = (t.get("stopped") or [None])[0]
    cells = []
    for r in rows:
        epoch = str(r["epoch"]) if r["epoch"] != best else f"**{r['epoch']}** (shipped)"
        cells.append(
            [
                epoch,
                _num(r.get("val_point_error"), ".4f"),
                _num(r.get("point_error"), ".4f"),
                _num(r.get("val_loss"), ".3f"),
                _num(r.get("learning_rate"), ".2g"),
            ]
        )
    first, last = (
        rows[0].get("val_point_error"),
        min((r["val_point_error"] for r in rows if r.get("val_point_error") is not None), default=None),
    )
    gain = (
        f" The validation error fell from {_num(first, '.4f')} after the first epoch to {_num(last, '.4f')}."
        if first is not None and last is not None
        else ""
    )
    member = " (member 0)" if results["model"]["n_members"] > 1 else ""
    return (
        f"{title}\n\n"
        f"Training{member} ran {len(rows)} epochs, with the learning rate "
        f"{_SCHEDULES.get(t.get('schedule', 'cosine'), t.get('schedule', 'cosine'))}; the weights of "
        f"the epoch with the lowest validation point error ship (epoch {_num(best, 'd')}); it ended: "
        f"{stopped or DASH}.{gain} *Point error*: the mean absolute error of the cumulative SFH plus that "
        "of [M/H] per bin, on the training set's validation part (held out by the seed) and on the "
        "training batches (augmented); *loss*: the validation negative log-likelihood.\n\n"
        + _table(
            ("Epoch", "validation point error", "training point error", "validation loss", "learning rate"),
            cells,
        )
    )


def _generator_section(results):
    g = results["generator"]
    rows = [
        ("sfh_ml version", str(g["sfh_ml_version"])),
        ("Synthetic-set schema version", str(g["schema_version"])),
        ("SSP library version", str(g["library_version"])),
    ]
    if g.get("git_commit"):
        rows.append(("Code (git commit)", f"`{g['git_commit']}`"))
    return "## Generator\n\n" + _table(("", ""), [(f"**{k}**", v) for k, v in rows])


def _metrics_table(rows):
    header = ["Test set", "Quantity"] + [f"{s} ({lvl})" for lvl in ("bins", "exact") for s in STATS.values()]
    cells = []
    for row in rows:
        for q, label in QUANTITY_LABELS.items():
            levels = [(row.get(lvl) or {}).get(q) or {} for lvl in ("bin", "exact")]
            if not any(levels):
                continue
            figures = [(_signed if s == "bias" else _dex)(level.get(s)) for level in levels for s in STATS]
            cells.append([row["label"], label, *figures])
    return _table(header, cells)


def _metrics_section(results):
    text = (
        "## Accuracy on held-out synthetic spectra\n\n"
        "Predicted minus true, in dex: NMAD (1.4826 × median absolute deviation), standard deviation and "
        "mean bias. *bins*: the mean quantities of the predicted bins against those of the true bins "
        "(the network's error alone); *exact*: against the per-object truth of the synthetic set (also "
        "the error of describing a history by bins).\n\n" + _metrics_table(results["metrics"])
    )
    if results.get("metrics_fast"):
        text += '\n\nThe first member alone (`sfh_ml.load_pretrained(members="fast")`):\n\n' + _metrics_table(
            results["metrics_fast"]
        )
    return text


def _zh_prior_section(results):
    zp = results.get("zh_prior")
    title = "## Is the network pulled toward its [M/H] prior?"
    if not zp or not zp.get("rows"):
        return f"{title}\n\nNot measured."
    header = ("True [M/H] (mw)", "Objects", "[M/H] (mw) bias / NMAD", "log age (mw) bias / NMAD")
    cells = []
    for row in zp["rows"]:
        zh, age = row.get("mw_zh") or {}, row.get("mw_log_age") or {}
        cells.append(
            [
                _range(row["zh_range"], "", "+.2f", " to "),
                _num(row.get("n"), ","),
                f"{_signed(zh.get('bias'))} / {_dex(zh.get('nmad'))}",
                f"{_signed(age.get('bias'))} / {_dex(age.get('nmad'))}",
            ]
        )
    where = f" on the {zp['label']} test set" if zp.get("label") else ""
    return (
        f"{title}\n\n"
        f"Predicted minus true, in dex (bin level){where}, per bin of the true mass-weighted [M/H]: mean "
        "bias and NMAD of the mass-weighted [M/H] and log age. A network pulled toward the centre of its "
        "[M/H] prior shows a positive [M/H] bias for metal-poor objects and a negative one for metal-rich "
        "objects; a bias that stays near zero across the bins means no such pull.\n\n" + _table(header, cells)
    )


def _coverage_section(results):
    rows = results.get("coverage")
    if not rows:
        return "## Uncertainties\n\nNot measured."
    one, two = (f"{float(gaussian_coverage(k)):.3f}" for k in (1.0, 2.0))
    header = (
        "Test set",
        "Output",
        "within 1σ, before",
        "within 1σ, after",
        "within 2σ, before",
        "within 2σ, after",
    )
    cells = []
    for row in rows:
        before, after = row.get("before") or {}, row.get("after") or {}
        for key, label in COVERAGE_LABELS.items():
            if key not in before and key not in after:
                continue
            b, a = before.get(key) or {}, after.get(key) or {}
            figures = [_num(d.get(k), ".3f") for k in ("1sigma", "2sigma") for d in (b, a)]
            cells.append([row["label"], label, *figures])
    calibrated = any(row.get("after") for row in rows)
    note = (
        ", before and after calibrating the uncertainties on a held-out calibration set."
        if calibrated
        else ". The uncertainties were not calibrated: the *after* columns are empty."
    )
    return (
        "## Uncertainties: coverage before and after calibration\n\n"
        f"Fraction of true values within 1σ and 2σ of the prediction (a Gaussian has {one} and {two})"
        f"{note}\n\n" + _table(header, cells)
    )


def _ablation_section(results):
    ab = results.get("ablation")
    if not ab or not ab.get("rows"):
        return "## Does the photometry help?\n\nNot measured (the release was made without the ablation)."
    header = ("S/N", "Sample", "Objects", "Quantity", "with HST", "without HST")
    cells = []
    for row in ab["rows"]:
        n = _num(row.get("n_objects"), ",")
        for q, value in row["with_photometry"].items():
            without = row["without_photometry"].get(q)
            cells.append(
                [f"{row['snr']:g}", row["sample"], n, QUANTITY_LABELS.get(q, q), _dex(value), _dex(without)]
            )
    return (
        "## Does the photometry help? (ablation)\n\n"
        "The same network trained alike on the spectra alone (the HST fluxes masked), against one member "
        f"with them. {ab.get('statistic', 'NMAD (dex)')}; young: {ab.get('young_definition', DASH)}.\n\n"
        + _table(header, cells)
    )


def _valley_section(results):
    va = results.get("valley")
    title = "## The synthetic valley: test worlds"
    if not va or not va.get("rows"):
        return f"{title}\n\nNot measured."
    header = (
        "World",
        "What it changes",
        "Objects",
        "log age (mw) bias / NMAD",
        "young-dominated bias",
        "[M/H] (mw) bias / NMAD",
        "flagged",
        "hit rate",
    )
    cells = []
    for row in va["rows"]:
        age, young, zh = (row.get(k) or {} for k in ("mw_log_age", "mw_log_age_young", "mw_zh"))
        young_cell, hit_cell = _signed(young.get("bias")), _num(row.get("hit_rate"), ".2f")
        if young_cell != DASH and young.get("n") is not None:
            young_cell += f" (n={young['n']:,})"
        if row.get("n_lost") is not None:
            hit_cell += f" (n={row['n_lost']:,})"
        cells.append(
            [
                row["world"],
                row.get("description") or DASH,
                _num(age.get("n"), ","),
                f"{_signed(age.get('bias'))} / {_dex(age.get('nmad'))}",
                young_cell,
                f"{_signed(zh.get('bias'))} / {_dex(zh.get('nmad'))}",
                _num(row.get("flagged"), ".2f"),
                hit_cell,
            ]
        )
    where = ", ".join(
        part
        for part in (
            f"S/N {va['snr']:g}" if va.get("snr") is not None else "",
            f"{va['n_objects']:,} objects per world" if va.get("n_objects") is not None else "",
            f"data seed {va['seed']}" if va.get("seed") is not None else "",
        )
        if part
    )
    note = f"\n\n{va['note']}" if va.get("note") else ""
    return (
        f"{title}\n\n"
        "Every figure above is measured on held-out spectra of the project's own world. A test "
        "world (`sfh_ml.synthesis.TEST_WORLDS`) is a held-out set made unlike it in one thing (another "
        "stellar library, other history families, other dust, the errors of real observations) with every "
        "other draw the same, so its row against *own* (the training population's own world, the "
        "generator's defaults) is the "
        f"effect of that one thing{' (' + where + ')' if where else ''}. Predicted minus true, in dex, "
        f"{va.get('statistic', 'bin level')}: mean bias and NMAD of the mass-weighted log age and [M/H]; "
        "young-dominated: the objects whose true mass-weighted age is below 100 Myr. *flagged*: the "
        "fraction of objects carrying the out-of-distribution quality flag (re-synthesis goodness of "
        "fit); *hit rate*: the fraction of the objects whose mass-weighted log age is off by more than "
        f"0.3 dex that carry it (*n*: how many are).{note}\n\n" + _table(header, cells)
    )


def _trust_cells(row):
    """The trust score's and the coverage's cells of one row of results["trust"] or ["leave_out"]."""
    cov = lambda key: " / ".join(_num(row.get(f"coverage_{key}_{k}sigma"), ".2f") for k in (1, 2))  # noqa: E731
    return [
        _num(row.get("wrong_fraction"), ".2f"),
        _num(row.get("hit_rate"), ".2f"),
        _num(row.get("false_alarm"), ".2f"),
        _num(row.get("auc"), ".2f"),
        cov("sfh_cum"),
        cov("zh"),
    ]


_TRUST_HEADER = (
    "wrong",
    "hit rate",
    "false alarms",
    "ROC AUC",
    "cumulative SFH within 1σ / 2σ",
    "[M/H] within 1σ / 2σ",
)


def _trust_words():
    return (
        f"*wrong*: the fraction of objects whose mass-weighted log age is off by more than "
        f"{WRONG_AGE_DEX:g} dex (bin level); *hit rate*: the fraction of those flagged untrusted; "
        f"*false alarms*: the fraction of the right ones (within {RIGHT_AGE_DEX:g} dex) flagged; *ROC "
        "AUC*: how well the score orders the two (0.5: not at all); coverage: the fraction of true "
        "values within the predicted 1σ and 2σ (a Gaussian has 0.68 and 0.95)"
    )


def _trust_section(results):
    tr = results.get("trust")
    title = "## How far to trust an answer: the trust score on every test world"
    if not tr or not tr.get("rows"):
        return f"{title}\n\nNot measured."
    cells = [[r["world"], *_trust_cells(r)] for r in tr["rows"]]
    where = f"{tr['n_objects']:,} objects per test world at S/N {_range(tr['snr'])}, data seed {tr['seed']}"
    return (
        f"{title}\n\n"
        "`predict(..., trust=True)` (`sfh-ml predict/apply --trust`) scores how far each answer can be "
        "trusted, from the network's own calibrated sigmas and the shift of its answer without the HST "
        "fluxes (`sfh_ml.network.trust`), and flags the untrusted ones. Each world is scored with the "
        f"score's parameters fitted on the other worlds ({where}): {_trust_words()}.\n\n"
        + _table(("World", *_TRUST_HEADER), cells)
    )


def _leave_out_section(results):
    lo = results.get("leave_out")
    title = "## Unseen shifts: leave one axis out"
    if not lo or not lo.get("rows"):
        return f"{title}\n\nNot measured for this release."
    cells = []
    for r in lo["rows"]:
        world = f"**{r['world']}** (unseen)" if r.get("left_out") else r["world"]
        age = f"{_signed(r.get('age_bias'))} / {_dex(r.get('age_nmad'))}"
        cells.append([r["network"], world, age, *_trust_cells(r)])
    return (
        f"{title}\n\n"
        "Networks of the workshop size (`benchmarks/worlds.py --leave-out`), each trained on the "
        "training world with one axis of its domain randomisation left out (`sfh_ml.synthesis.AXES`), "
        "then tested on every world: the rows marked *unseen* are the worlds of the left-out axis, what "
        "a real spectrum made otherwise than the training set is to a network. Log age: mass-weighted "
        f"bias / NMAD, dex; {_trust_words()}.\n\n"
        + _table(("Network", "World", "log age bias / NMAD", *_TRUST_HEADER), cells)
    )


def _worst_world(results):
    """The valley row with the largest mass-weighted log-age error (bias and NMAD together), or None."""
    rows = [
        r
        for r in (results.get("valley") or {}).get("rows") or []
        if r.get("world") != "own" and (r.get("mw_log_age") or {}).get("nmad") is not None
    ]
    if not rows:
        return None
    return max(rows, key=lambda r: math.hypot(r["mw_log_age"].get("bias") or 0.0, r["mw_log_age"]["nmad"]))


def _speed_section(results):
    sp = results.get("speed")
    if not sp or not sp.get("rows"):
        return "## Inference speed\n\nNot measured."
    cells = [(r["what"], _num(r.get("spectra_per_s"), ",.0f")) for r in sp["rows"]]
    where = ", ".join(str(sp[k]) for k in ("backend", "device") if sp.get(k))
    return (
        "## Inference speed\n\n"
        f"Spectra per second at batch {sp.get('batch_size', DASH)} ({where}); other load on the machine "
        "slows it.\n\n" + _table(("What", "Spectra per second"), cells)
    )


def _limitations(results):
    d = results.get("domain") or {}
    items = []
    if d.get("age_range_yr"):
        items.append(
            f"**Ages.** The training histories span {_age(d['age_range_yr'][0])} to "
            f"{_age(d['age_range_yr'][1])}; stars younger than the first bin's lower edge are counted in "
            "the first bin."
        )
    if d.get("seam_age_yr"):
        items.append(
            f"**Library seam.** The SSP library joins BC03 (younger) to E-MILES at {_age(d['seam_age_yr'])}; "
            "spectra dominated by populations near that age carry the seam's mismatch, and the two "
            "libraries' differences (IMF, stellar spectra) enter there."
        )
    if d.get("wave_range_aa"):
        items.append(
            f"**Wavelengths.** Rest frame {_range(d['wave_range_aa'], ' Å', '.0f')} only: the MUSE cube "
            "of a redshifted galaxy misses the red end of it (masked as missing pixels), and spectra "
            "with more missing pixels than the training's masked spans are less certain than the "
            "figures above."
        )
    if d.get("sigma_kms"):
        lo, hi = d["sigma_kms"]
        items.append(
            f"**Dispersions.** Trained at stellar velocity dispersions of {_range(d['sigma_kms'], ' km/s')}: "
            f"narrower spectra must be broadened to {lo:g} km/s (`sfh-ml apply` does), broader than "
            f"{hi:g} km/s are outside the training set."
        )
    if d.get("snr"):
        items.append(
            f"**S/N.** Spectra at S/N per pixel {_range(d['snr'])}"
            + (f", HST fluxes at S/N {_snr_phot(d['snr_phot'])}" if d.get("snr_phot") else "")
            + "; outside that the figures above do not apply."
        )
    if d.get("tau_bc") or d.get("tau_ism"):
        bc_age = (
            f" (stars younger than {_age_or_range(d['birth_cloud_age_yr'])})"
            if d.get("birth_cloud_age_yr")
            else ""
        )
        items.append(
            "**Dust.** Charlot & Fall (2000) screens only: a birth cloud"
            + (f" of V-band optical depth {_range(d['tau_bc'])}" if d.get("tau_bc") else "")
            + bc_age
            + " and the diffuse ISM"
            + (f" of V-band optical depth {_range(d['tau_ism'])}" if d.get("tau_ism") else "")
            + "; clumpy or mixed dust changes the colours of young regions in ways the model never saw."
        )
    if d.get("zh_range"):
        items.append(f"**[M/H].** Predictions stay within {_range(d['zh_range'], ' dex', '+.2f', ' to ')}.")
    items.append(
        "**The synthetic valley.** Every figure above is measured on spectra made by the same synthesizer "
        "as the training set. Real spectra differ (template mismatch, [α/Fe], sky residuals, dust "
        "geometry, HST and MUSE apertures). By itself the network does not know when it is lost: "
        "`predict(..., goodness=True)` (`sfh-ml predict/apply --goodness`) re-synthesises each prediction "
        "and flags the inputs it cannot explain, and full spectral fitting on a few regions (chapters 4 "
        "and 5 of the book) is the check to make before trusting it on real data."
        + _worst_world_sentence(results)
    )
    items += list(results.get("limitations") or [])
    return "## Known limitations\n\n" + "\n".join(f"- {item}" for item in items)


def _worst_world_sentence(results):
    worst = _worst_world(results)
    if worst is None:
        return ""
    age = worst["mw_log_age"]
    hit = worst.get("hit_rate")
    caught = (
        f"; the out-of-distribution flag marks {hit:.0%} of its objects off by more than 0.3 dex"
        if hit is not None and math.isfinite(hit)
        else ""
    )
    return (
        f" Of the test worlds (the synthetic valley, above), the mass-weighted log age suffers most on "
        f"*{worst['world']}* (bias {_signed(age.get('bias'))} dex, NMAD {_dex(age['nmad'])} dex){caught}."
    )


def _reproduce_section(results):
    return (
        "## Reproducing this model\n\n"
        "From a checkout of the sfh_ml commit named above, with the model data in place (`make data`):\n\n"
        f"```bash\n{results['reproduce']}\n```"
    )


# ----------------------------------------------------------------------------------------- card
def render_model_card(results):
    """The model card (Markdown) of a released network, from its results.

    Parameters
    ----------
    results : dict
        The results JSON of the release (schema in this module's docstring).

    Returns
    -------
    str
        The card: a summary paragraph, then the sections *What the model is*, *Training*,
        *How long it trained*, *Generator*, *Accuracy*, *Is the network pulled toward its [M/H]
        prior?*, *Uncertainties*, *Does the photometry help?*, *The synthetic valley*, *How far to
        trust an answer*, *Unseen shifts: leave one axis out*, *Inference speed*, *Known
        limitations* and *Reproducing this model*.

    Raises
    ------
    ValueError
        A required key of the schema is missing (the message names it).
    """
    _check(results)
    created = f" (released {results['created']})" if results.get("created") else ""
    sections = [
        f"# Model card: {results['name']}{created}",
        _summary(results),
        _model_section(results),
        _training_section(results),
        _history_section(results),
        _generator_section(results),
        _metrics_section(results),
        _zh_prior_section(results),
        _coverage_section(results),
        _ablation_section(results),
        _valley_section(results),
        _trust_section(results),
        _leave_out_section(results),
        _speed_section(results),
        _limitations(results),
        _reproduce_section(results),
    ]
    return "\n\n".join(sections) + "\n"


def card_summary(text):
    """The part of a model card before its first section: the title and the summary paragraph."""
    head = []
    for line in text.splitlines():
        if line.startswith("## "):
            break
        head.append(line)
    return "\n".join(head).strip()
