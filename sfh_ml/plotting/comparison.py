"""Figures of chapter 5 (the network against pPXF).

``rows`` are the score rows of :func:`sfh_ml.fitting.compare_methods` (or
:func:`sfh_ml.fitting.read_csv_rows` of its CSV); the helpers of :mod:`sfh_ml.fitting.compare` turn
them into arrays.
"""

import textwrap

import matplotlib.pyplot as plt
import numpy as np

from ..network.metrics import bin_centres_yr
from ._axes import (
    axes_or_new,
    book_figure,
    formed_by_edges,
    legend_panel,
    lookback_axis,
    panel_grid,
    snr_axis,
    step_band,
)
from .style import BOOK_WIDTH_IN
from .validation import MEAN_QUANTITY_LABELS, plot_per_bin_error

__all__ = [
    "STAT_LABELS",
    "SCORE_LABELS",
    "plot_regul_choice",
    "plot_method_histories",
    "plot_accuracy_vs_snr",
    "plot_per_bin_by_method",
    "plot_young_old",
    "plot_speed",
    "plot_valley",
    "plot_worlds",
    "plot_real_spectra_check",
]

STAT_LABELS = {"bias": "bias", "nmad": "NMAD", "std": "std", "mae": "mean abs. error"}
SCORE_LABELS = {**MEAN_QUANTITY_LABELS, "cum_sfh_mae": "cumulative-mass error"}


def _score_label(quantity, stat):
    if quantity == "cum_sfh_mae":  # the mean of each object's error is the "bias" of its row
        return "cumulative-mass error:\nmean"
    unit = " (dex)" if quantity in MEAN_QUANTITY_LABELS else ""
    return f"{SCORE_LABELS.get(quantity, quantity)}:\n{STAT_LABELS.get(stat, stat)}{unit}"


def _score_level(quantity, level):
    return "object" if quantity == "cum_sfh_mae" else level


def _grouped_bars(ax, groups, series, log=False):
    """Bars of each series (label -> values per group) side by side within each group."""
    x = np.arange(len(groups))
    width = 0.8 / max(len(series), 1)
    for k, (label, values) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=label, color=f"C{k}")
    ax.set_xticks(x, groups)
    if log:
        ax.set_yscale("log")
    return ax


def _panels(axs, n, row_height_in):
    """The given Axes, or a new grid of ``n`` panels (two per row) with a spare panel for the legend."""
    if axs is not None:
        return list(np.atleast_1d(axs)), None
    _, panels, spare = panel_grid(n, row_height_in, spare=True)
    return panels, spare


def _legend(panels, spare, **kw):
    if spare is not None:
        legend_panel(spare, panels[0]).set_title(kw.get("title"))
    else:
        panels[0].legend(**kw)


@book_figure
def plot_regul_choice(grid, delta_chi2, threshold, chosen=None, ax=None):
    """The Delta chi^2 criterion: chi^2 increase against ``regul`` for each object, and sqrt(2 N).

    Parameters
    ----------
    grid : ndarray, shape (n_grid,)
        ``regul`` values.
    delta_chi2 : ndarray, shape (n_obj, n_grid)
        Increase of chi^2 over the unregularised fit (:func:`sfh_ml.fitting.regul_by_delta_chi2`).
    threshold : float
        sqrt(2 N_good), drawn as a horizontal line.
    chosen : float, optional
        The adopted ``regul``, drawn as a vertical line.
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = axes_or_new(ax, 3.8)
    for i, curve in enumerate(np.atleast_2d(delta_chi2)):
        ax.plot(grid, curve, "o-", ms=3, lw=1, label=f"object {i}")
    ax.axhline(threshold, color="k", ls="--", lw=1, label=r"$\sqrt{2 N_{\rm good}}$")
    if chosen is not None:
        ax.axvline(chosen, color="C3", ls=":", lw=1.5, label=f"regul = {chosen:g}")
    ax.set(xscale="log", yscale="symlog", xlabel="regul (pPXF regularisation)", ylabel=r"$\Delta\chi^2$")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


@book_figure
def plot_method_histories(age_bins_yr, true_sfh, true_zh, preds, axs=None):
    """One object's cumulative mass and [M/H] history: the truth and each method's recovery.

    Parameters
    ----------
    age_bins_yr : ndarray, shape (n_bins + 1,)
    true_sfh, true_zh : ndarray, shape (n_bins,)
    preds : dict
        Method -> dict with ``sfh`` (n_bins,) or ``sfh_cum`` (n_bins,), and ``zh`` (n_bins,);
        ``sfh_cum_sigma`` and ``zh_sigma`` (the network's) are drawn as bands.
    axs : two Axes, optional
        Created side by side at the book width, the legend below, if omitted.

    Returns
    -------
    pair of Axes
    """
    owns = axs is None
    if owns:
        fig, axs = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 3.6))
    ax1, ax2 = axs
    edges = np.asarray(age_bins_yr, dtype=float)
    c = bin_centres_yr(edges)
    ax1.step(edges[:-1], formed_by_edges(np.cumsum(true_sfh)), where="post", color="k", lw=2, label="truth")
    ax2.plot(c, true_zh, "o-", color="k", lw=2, ms=3, label="truth")
    for k, (label, p) in enumerate(preds.items()):
        cum = p["sfh_cum"] if p.get("sfh_cum") is not None else np.cumsum(p["sfh"])
        colour = f"C{k}"
        if p.get("sfh_cum_sigma") is None:
            ax1.step(edges[:-1], formed_by_edges(cum), where="post", color=colour, lw=1.3, label=label)
        else:
            sig = np.concatenate([[0.0], np.asarray(p["sfh_cum_sigma"])[:-1]])
            step_band(ax1, edges[:-1], formed_by_edges(cum), sig, colour, lw=1.3, label=label)
        ax2.plot(c, p["zh"], "o-", color=colour, lw=1.2, ms=3, label=label)
        if p.get("zh_sigma") is not None:
            zh, zs = np.asarray(p["zh"]), np.asarray(p["zh_sigma"])
            ax2.fill_between(c, zh - zs, zh + zs, color=colour, alpha=0.2, lw=0)
    lookback_axis(ax1, "mass fraction formed", legend=not owns)
    lookback_axis(ax2, "[M/H] of the stars formed (dex)", legend=False)
    if owns:
        handles, labels = ax1.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=3)
    return axs


@book_figure
def plot_accuracy_vs_snr(
    rows,
    panels=(
        ("mw_log_age", "bias"),
        ("mw_log_age", "nmad"),
        ("mw_zh", "bias"),
        ("mw_zh", "nmad"),
        ("cum_sfh_mae", "bias"),
    ),
    sample="all",
    level="exact",
    axs=None,
):
    """Bias and scatter of each method against S/N: one panel per (quantity, statistic), a line per method.

    ``("cum_sfh_mae", "bias")`` is the mean of each object's cumulative-mass error
    (:func:`sfh_ml.network.metrics.cumulative_sfh_mae`). Two panels per row; the legend in the
    spare panel when there is one.

    Returns
    -------
    list of Axes, one per panel
    """
    from ..fitting.compare import score_series

    axes, spare = _panels(axs, len(panels), 2.7)
    for ax, (quantity, stat) in zip(axes, panels):
        series = score_series(rows, quantity, stat, sample, _score_level(quantity, level))
        for k, (method, (snr, value)) in enumerate(series.items()):
            ax.plot(snr, value, "o-", ms=4, color=f"C{k}", label=method)
        if stat == "bias" and quantity != "cum_sfh_mae":
            ax.axhline(0.0, color="0.6", lw=0.8)
        snr_axis(ax, np.concatenate([snr for snr, _ in series.values()] or [[]]))
        ax.set_ylabel(_score_label(quantity, stat))
    _legend(axes, spare, title="method")
    return axes


@book_figure
def plot_per_bin_by_method(rows, age_bins_yr, snrs, sample="all", cumulative=True, stat="mae", axs=None):
    """Per-age-bin SFH error of each method, one panel per S/N (:func:`plot_per_bin_error`).

    Returns
    -------
    list of Axes, one per S/N
    """
    from ..fitting.compare import per_bin_errors

    axes, spare = _panels(axs, len(snrs), 2.8)
    what = "cumulative mass" if cumulative else "mass fraction"
    for ax, snr in zip(axes, snrs):
        curves = per_bin_errors(rows, snr, sample, cumulative=cumulative, stat=stat)
        plot_per_bin_error(age_bins_yr, curves, f"{what}: {STAT_LABELS.get(stat, stat)}", ax=ax)
        ax.set_title(f"S/N = {float(snr):g}")
        if len(axes) > 1:
            ax.get_legend().remove()
    if len(axes) > 1:
        _legend(axes, spare, title="method")
    return axes


@book_figure
def plot_young_old(
    rows,
    snr,
    panels=(("mw_log_age", "nmad"), ("mw_zh", "nmad"), ("cum_sfh_mae", "bias")),
    samples=("all", "young", "old"),
    level="exact",
    axs=None,
):
    """One statistic per method for all, young-dominated and old-dominated objects at one S/N.

    One panel per (quantity, statistic); within it a group of bars per sample, a bar per method (NaN,
    i.e. no bar, where a sample has no objects).

    Returns
    -------
    list of Axes, one per panel
    """
    from ..fitting.compare import sample_stats

    axes, spare = _panels(axs, len(panels), 2.7)
    for ax, (quantity, stat) in zip(axes, panels):
        series = sample_stats(rows, snr, quantity, stat, _score_level(quantity, level), samples)
        _grouped_bars(ax, list(samples), series)
        ax.set(xlabel="objects (dominated by)", ylabel=_score_label(quantity, stat))
        ax.set_title(f"S/N = {float(snr):g}")
    _legend(axes, spare, title="method")
    return axes


@book_figure
def plot_speed(seconds_per_spectrum, workers=None, n_bins=40_000, n_spaxels=200_000, axs=None):
    """Seconds per spectrum of each method, and the time for one cube (its Voronoi bins, its spaxels).

    Parameters
    ----------
    seconds_per_spectrum : dict
        Method -> measured seconds per spectrum (on ``workers[method]`` cores at once: pPXF's
        one-thread seconds per fit, or a network's wall time per spectrum with all cores).
    workers : dict, optional
        Method -> cores the cube is shared among; a method left out counts once (its seconds are
        already the wall time on the machine, labelled "as measured").
    n_bins, n_spaxels : int
        Spectra of one cube: Voronoi bins and spaxels (a PHANGS-MUSE galaxy: ~4e4 and ~2e5).
    axs : two Axes, optional
        Created one above the other at the book width if omitted.

    Returns
    -------
    axs; the cube's hours are ``seconds * n / workers / 3600`` (:func:`sfh_ml.fitting.cube_hours`).
    """
    from ..fitting.compare import cube_hours

    if axs is None:
        _, axs = plt.subplots(2, 1, figsize=(BOOK_WIDTH_IN, 5.6))
    ax1, ax2 = axs
    workers = workers or {}
    methods = list(seconds_per_spectrum)
    seconds = np.array([seconds_per_spectrum[m] for m in methods], dtype=float)
    cores = np.array([workers.get(m, 1) for m in methods], dtype=float)
    ax1.bar(methods, seconds, color=[f"C{k}" for k in range(len(methods))])
    ax1.set(yscale="log", xlabel="method", ylabel="seconds per spectrum")
    hours = {
        f"{n_bins:,} Voronoi bins": cube_hours(seconds, n_bins, cores),
        f"{n_spaxels:,} spaxels": cube_hours(seconds, n_spaxels, cores),
    }
    labels = [
        f"{m}\n({c:g} core{'s' if c > 1 else ''})" if m in workers else f"{m}\n(as measured)"
        for m, c in zip(methods, cores)
    ]
    _grouped_bars(ax2, labels, hours, log=True)
    ax2.set(xlabel="method (cores the cube is shared among)", ylabel="hours for one cube")
    ax2.legend(title="one cube")
    return axs


@book_figure
def plot_valley(
    rows_by_library,
    snr,
    panels=(("mw_log_age", "bias"), ("mw_log_age", "nmad"), ("mw_zh", "bias"), ("mw_zh", "nmad")),
    level="exact",
    axs=None,
):
    """The synthetic valley: each method on the training library's stars and on another library's.

    Parameters
    ----------
    rows_by_library : dict
        Library (or test world) label (e.g. ``"E-MILES"``, ``"BC03"``) -> score rows of the same
        objects made with it.
    snr : float
    panels : sequence of (quantity, statistic)
    level : {"exact", "bin"}
    axs : sequence of Axes, optional
        One per panel; created two per row at the book width if omitted.

    One panel per (quantity, statistic); a group of bars per method, a bar per library.

    Returns
    -------
    list of Axes, one per panel
    """
    from ..fitting.compare import sample_stats

    axes, spare = _panels(axs, len(panels), 2.2 + 0.12 * len(rows_by_library))
    libraries = list(rows_by_library)
    per_lib = {lib: {} for lib in libraries}
    for ax, (quantity, stat) in zip(axes, panels):
        methods = []
        for lib in libraries:
            per_lib[lib] = sample_stats(
                rows_by_library[lib], snr, quantity, stat, _score_level(quantity, level), ("all",)
            )
            methods += [m for m in per_lib[lib] if m not in methods]
        series = {lib: [per_lib[lib].get(m, [np.nan])[0] for m in methods] for lib in libraries}
        _grouped_bars(ax, [textwrap.fill(m, 12) for m in methods], series)
        if stat == "bias":
            ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set(xlabel="method", ylabel=_score_label(quantity, stat))
    axes[0].legend(title="stars (test set)", ncols=1 if len(libraries) < 4 else 2)
    return axes


@book_figure
def plot_worlds(stats, trust=None, goals=(0.8, 0.15), axs=None):
    """One network on many test worlds: a row per world, bias and NMAD, and the trust score's rates.

    Parameters
    ----------
    stats : dict
        World name -> ``{"age_bias", "age_nmad", "zh_bias", "zh_nmad"}`` (dex): the mass-weighted log
        age's and [M/H]'s bias and NMAD.
    trust : dict, optional
        World name -> :func:`sfh_ml.network.trust.trust_rates` (``hit_rate``, ``false_alarm``): a
        second row of panels, the wrong answers flagged and the right ones flagged.
    goals : (float, float)
        The hit rate to reach and the false-alarm rate not to pass (dashed lines).
    axs : sequence of Axes, optional
        Two panels (four with ``trust``).

    Returns
    -------
    list of Axes
    """
    worlds = list(stats)
    y = np.arange(len(worlds))[::-1]  # the first world on top
    n_panels = 2 if trust is None else 4
    if axs is None:
        _, axs, _ = panel_grid(n_panels, 0.6 + 0.2 * len(worlds))
    axs = list(np.atleast_1d(axs))
    for ax, (key, label) in zip(axs, (("age", "mass-weighted log age"), ("zh", "mass-weighted [M/H]"))):
        nmad = [stats[w][f"{key}_nmad"] for w in worlds]
        bias = [stats[w][f"{key}_bias"] for w in worlds]
        ax.barh(y, nmad, height=0.6, color="C0", alpha=0.5, label="NMAD")
        ax.plot(bias, y, "o", color="C3", ms=4, label="bias")
        ax.axvline(0.0, color="0.6", lw=0.8)
        ax.set(xlabel=f"{label} (dex)")
    if trust is not None:
        for ax, (key, label, goal) in zip(
            axs[2:],
            (
                ("hit_rate", "wrong answers flagged", goals[0]),
                ("false_alarm", "right answers flagged", goals[1]),
            ),
        ):
            ax.barh(y, [trust[w][key] for w in worlds], height=0.6, color="C2" if key == "hit_rate" else "C1")
            ax.axvline(goal, color="k", ls="--", lw=0.8)
            ax.set(xlabel=f"{label} (fraction)", xlim=(0, 1))
    for k, ax in enumerate(axs):
        ax.set_yticks(y, worlds if k % 2 == 0 else [""] * len(worlds))
        ax.set_ylim(-0.6, len(worlds) - 0.4)
        ax.set_ylabel("test world" if k % 2 == 0 else "(the same worlds)")
    # above the first panel: every row's bars may reach its right end
    axs[0].legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False, borderaxespad=0.2)
    return axs


@book_figure
def plot_real_spectra_check(result, axs=None):
    """The network against pPXF on real spectra: mass-weighted log age and [M/H], with the 1:1 line.

    Parameters
    ----------
    result : dict
        From :func:`sfh_ml.observations.real_spectra_check` (``network_*``, ``ppxf_*``, ``usable``, ``snr``).
    axs : pair of Axes, optional

    Returns
    -------
    ndarray of Axes, shape (2,)
    """
    if axs is None:
        _, axs = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 3.8))
    ok = np.asarray(result["usable"], dtype=bool)
    snr = np.asarray(result["snr"], dtype=float)
    vmin, vmax = (np.nanmin(snr[ok]), np.nanmax(snr[ok])) if ok.any() else (None, None)
    for ax, key, label in zip(
        axs, ("mw_log_age", "mw_zh"), ("mass-weighted log$_{10}$(age / yr)", "mass-weighted [M/H] (dex)")
    ):
        x, y = np.asarray(result[f"ppxf_{key}"])[ok], np.asarray(result[f"network_{key}"])[ok]
        points = ax.scatter(
            x, y, c=snr[ok], cmap="viridis", s=40, edgecolor="k", zorder=3, vmin=vmin, vmax=vmax
        )
        lo, hi = np.nanmin(np.r_[x, y]) - 0.1, np.nanmax(np.r_[x, y]) + 0.1
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="1:1")
        ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel=f"pPXF: {label}", ylabel=f"network: {label}")
        ax.set_aspect("equal")
        ax.legend(loc="upper left")
    axs[0].figure.colorbar(points, ax=list(axs), label="continuum S/N per pixel", shrink=0.8)
    return axs
