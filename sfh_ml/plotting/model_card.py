"""Figures of the model card page: the shipped network's accuracy against S/N, the calibration of
its uncertainties and its results on the test worlds, from ``pretrained_results()``."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from ..network.card import COVERAGE_LABELS, QUANTITY_LABELS
from ..network.metrics import gaussian_coverage
from ._axes import book_figure, legend_below, snr_axis
from .style import BOOK_WIDTH_IN
from .validation import _single_snr_rows

__all__ = ["plot_card_metrics", "plot_card_coverage", "plot_card_valley", "plot_card_training"]

CARD_QUANTITIES = ("mw_log_age", "lw_log_age", "mw_zh", "lw_zh")


@book_figure
def plot_card_metrics(results, level="bin", axs=None):
    """NMAD and bias of the four mean quantities against S/N, from the test sets at one S/N.

    Parameters
    ----------
    results : dict
        ``pretrained_results()``: ``metrics`` rows with ``snr`` ([lo, hi]) and ``level`` ->
        quantity -> ``nmad``, ``bias`` (dex); the rows with a range of S/N are left out.
    level : {"bin", "exact"}
        Predicted bins against the true bins, or against each object's exact truth.
    axs : pair of Axes, optional

    Returns
    -------
    pair of Axes
    """
    owns = axs is None
    if owns:
        fig, axs = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 3.5))
    rows = _single_snr_rows(results["metrics"])
    snr = np.array(list(rows))
    for k, quantity in enumerate(CARD_QUANTITIES):
        ls = "-" if quantity.startswith("mw") else "--"
        for ax, stat in zip(axs, ("nmad", "bias")):
            y = [row[level][quantity][stat] for row in rows.values()]
            ax.plot(snr, y, "o" + ls, color=f"C{k}", label=QUANTITY_LABELS.get(quantity, quantity))
    axs[1].axhline(0.0, color="0.6", lw=0.8)
    for ax, stat in zip(axs, ("NMAD", "bias (predicted − true)")):
        snr_axis(ax, snr).set_ylabel(f"{stat} (dex)")
    legend_below(axs[0].figure, axs[0], ncol=2, owns_figure=owns)
    return axs


@book_figure
def plot_card_coverage(results, axs=None):
    """Fraction of true values within 1 and 2 predicted sigma, before and after calibration.

    Parameters
    ----------
    results : dict
        ``pretrained_results()``: ``coverage`` rows with ``label`` (the test set), ``before`` and
        ``after`` (None if not calibrated) -> output (``sfh_cum``, ``zh``, ``zh_mass_weighted``) ->
        ``1sigma``, ``2sigma`` (fractions).
    axs : pair of Axes, optional

    Returns
    -------
    pair of Axes
        One per interval, with the Gaussian fraction (0.683, 0.954) as a dotted line.
    """
    owns = axs is None
    if owns:
        fig, axs = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 3.7))
    rows = results["coverage"]
    outputs = [o for o in COVERAGE_LABELS if any(o in (r.get("before") or {}) for r in rows)]
    x = np.arange(len(rows))
    step = 0.7 / max(len(outputs), 1)
    for ax, (key, n_sigma) in zip(axs, (("1sigma", 1.0), ("2sigma", 2.0))):
        ax.axhline(gaussian_coverage(n_sigma), color="k", ls=":", lw=1)
        for k, output in enumerate(outputs):
            dx = (k - (len(outputs) - 1) / 2) * step
            for when, face in (("before", "none"), ("after", f"C{k}")):
                y = [((r.get(when) or {}).get(output) or {}).get(key, np.nan) for r in rows]
                ax.plot(x + dx, y, "o", mfc=face, mec=f"C{k}", mew=1.5, ms=6)
        ax.set_xticks(x, [r["label"] for r in rows])
        ax.set(xlabel="test set", ylabel=f"fraction within {n_sigma:g}σ")
    handles = [Line2D([], [], ls="", marker="s", color=f"C{k}", ms=7) for k in range(len(outputs))]
    handles += [Line2D([], [], ls="", marker="o", mfc=f, mec="0.3", ms=6) for f in ("none", "0.3")]
    handles += [Line2D([], [], color="k", ls=":")]
    labels = [COVERAGE_LABELS[o] for o in outputs] + ["before calibration", "after", "Gaussian"]
    if owns:
        fig.legend(handles, labels, loc="outside lower center", ncol=3)
    else:
        axs[0].legend(handles, labels, loc="lower left")
    return axs


@book_figure
def plot_card_valley(results, axs=None):
    """Bias and NMAD of the mass-weighted log age and [M/H] on each test world.

    Parameters
    ----------
    results : dict
        ``pretrained_results()``: ``valley`` with ``snr`` and ``rows`` (``world``, ``mw_log_age`` and
        ``mw_zh`` -> ``bias``, ``nmad`` in dex, ``flagged``: fraction carrying the
        out-of-distribution flag, or None).
    axs : pair of Axes, optional
        Created one above the other (the worlds' names on the y-axis) if omitted.

    Returns
    -------
    pair of Axes
    """
    valley = results["valley"]
    rows = valley["rows"]
    owns = axs is None
    if owns:
        fig, axs = plt.subplots(2, 1, figsize=(BOOK_WIDTH_IN, 1.6 + 0.55 * len(rows)))
    names = [
        r["world"] + ("" if r.get("flagged") is None else f" ({100 * r['flagged']:.0f} % flagged)")
        for r in rows
    ]
    y = np.arange(len(rows))
    for ax, stat in zip(axs, ("bias", "nmad")):
        for k, quantity in enumerate(("mw_log_age", "mw_zh")):
            values = [(r.get(quantity) or {}).get(stat, np.nan) for r in rows]
            ax.barh(y + (k - 0.5) * 0.38, values, 0.38, color=f"C{k}", label=QUANTITY_LABELS[quantity])
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set(ylabel="test world", xlabel=f"{'bias' if stat == 'bias' else 'NMAD'} (dex)")
    axs[0].axvline(0.0, color="0.6", lw=0.8)
    snr = valley.get("snr")
    axs[0].set_title(f"test worlds at S/N = {snr:g}" if snr else "test worlds")
    axs[1].legend(loc="lower right")
    return axs


@book_figure
def plot_card_training(results, axs=None):
    """The training curve: validation and training point errors per epoch, and the learning rate.

    Parameters
    ----------
    results : dict
        ``pretrained_results()``: ``training["history"]`` rows of ``epoch``, ``val_point_error``,
        ``point_error`` and ``learning_rate``, and ``training["best_epoch"]`` (one per member).
    axs : pair of Axes, optional

    Returns
    -------
    pair of Axes
        The point errors (log scale) against the epoch, the shipped (best) epoch marked; the
        learning rate against the epoch.

    Raises
    ------
    ValueError
        The results hold no training curve (networks released before it was recorded).
    """
    rows = results["training"].get("history")
    if not rows:
        raise ValueError(f"the results of {results.get('name')!r} hold no training curve (training.history)")
    owns = axs is None
    if owns:
        fig, axs = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 3.4), width_ratios=(2, 1))
    epoch = np.array([r["epoch"] for r in rows])
    get = lambda key: np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float)  # noqa: E731
    ax, lr = axs
    ax.plot(epoch, get("val_point_error"), "o-", color="C0", ms=4, label="validation")
    ax.plot(epoch, get("point_error"), "--", color="C1", label="training (augmented)")
    best = (results["training"].get("best_epoch") or [None])[0]
    for a in axs if best is not None else ():
        a.axvline(best, color="0.5", ls=":", lw=1, label="shipped epoch" if a is ax else None)
    ax.set(xlabel="epoch", ylabel="point error", yscale="log")
    lr.step(epoch, get("learning_rate"), where="mid", color="C2")
    lr.set(xlabel="epoch", ylabel="learning rate", yscale="log")
    legend_below(ax.figure, ax, ncol=3, owns_figure=owns)
    return axs
