"""Figures of chapter 3 (validation): the poster's Fig. 4, recovered against true values, errors per
age bin and per group, learning curves, the calibration of the uncertainties, and the release's
comparison of networks."""

import matplotlib.pyplot as plt
import numpy as np

from ..network.metrics import bin_centres_yr, group_statistic, scatter_stats, snr_bin_centres
from ..network.pretrained import comparisons_reference
from ._axes import (
    SNR_LABEL,
    WAVE_LABEL,
    axes_or_new,
    book_figure,
    formed_by_edges,
    lookback_axis,
    new_figure,
    snr_axis,
    step_band,
)
from .style import BOOK_WIDTH_IN

__all__ = [
    "MEAN_QUANTITY_LABELS",
    "plot_recovery",
    "plot_one_to_one",
    "plot_per_bin_error",
    "plot_scatter_by_group",
    "plot_learning_curve",
    "plot_coverage",
    "plot_release_comparison",
    "plot_release_learning_curve",
]

MEAN_QUANTITY_LABELS = {
    "mw_log_age": "mass-weighted log age",
    "lw_log_age": "light-weighted log age",
    "mw_zh": "mass-weighted [M/H]",
    "lw_zh": "light-weighted [M/H]",
}


@book_figure
def plot_recovery(
    wave_aa, spectrum, pivots_aa, photometry, age_bins_yr, true_sfh, true_zh, pred, index=0, axs=None
):
    """The poster's Fig. 4 for one object: inputs, cumulative SFH and metallicity evolution.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Angstrom.
    spectrum : ndarray, shape (n_wave,)
        The network's input spectrum.
    pivots_aa, photometry : ndarray, shape (n_band,)
        Pivot wavelengths (Angstrom) and input fluxes (the spectrum's unit).
    age_bins_yr : ndarray, shape (n_bins + 1,)
    true_sfh, true_zh : ndarray, shape (n_bins,)
        Truth: mass fraction and [M/H] per bin.
    pred : dict of ndarray
        Output of :func:`sfh_ml.network.predict` (``sfh_cum``, ``sfh_cum_sigma``, ``zh``, ``zh_sigma``,
        each of shape (n_obj, n_bins)); object ``index`` is drawn.
    index : int
    axs : sequence of three Axes, optional
        Created if omitted: the inputs across the top, the two histories below.

    Returns
    -------
    tuple of three Axes
    """
    if axs is None:
        mosaic = new_figure(5.6).subplot_mosaic([["inputs", "inputs"], ["cum", "zh"]])
        axs = mosaic["inputs"], mosaic["cum"], mosaic["zh"]
    ax0, ax1, ax2 = axs
    norm = np.nanmean(spectrum)
    ax0.plot(wave_aa, spectrum / norm, color="0.3", lw=0.5, label="MUSE spectrum")
    ax0.plot(pivots_aa, photometry / norm, "o", color="C3", ms=5, label="HST fluxes")
    ax0.set(xlabel=WAVE_LABEL, ylabel="flux / mean flux", yscale="log")
    ax0.legend(loc="lower right")
    # Fraction of the mass formed by look-back time edges[k] (the young edge of bin k); the predicted
    # cumulative runs from young to old like the bins.
    edges = np.asarray(age_bins_yr, dtype=float)
    cum_true = formed_by_edges(np.cumsum(true_sfh))
    mean = formed_by_edges(pred["sfh_cum"][index])
    sig = np.concatenate([[0.0], pred["sfh_cum_sigma"][index][:-1]])
    ax1.step(edges[:-1], cum_true, where="post", color="k", lw=1.8, label="input")
    step_band(ax1, edges[:-1], mean, sig, "C3", lw=1.5, label="recovered ± 1σ")
    lookback_axis(ax1, "mass fraction formed")
    c = bin_centres_yr(edges)
    zh, zs = pred["zh"][index], pred["zh_sigma"][index]
    ax2.plot(c, true_zh, "o-", color="k", ms=3, label="input")
    ax2.plot(c, zh, "o-", color="C2", ms=3, label="recovered ± 1σ")
    ax2.fill_between(c, zh - zs, zh + zs, color="C2", alpha=0.25, lw=0)
    lookback_axis(ax2, "[M/H] of the stars formed (dex)")
    return axs


@book_figure
def plot_one_to_one(true, pred, label, ax=None, color=None, lim=None):
    """Recovered against true values with the bias and robust scatter (1.4826 MAD) written on.

    Parameters
    ----------
    true, pred : ndarray, shape (n,)
    label : str
        The quantity, with its unit (e.g. ``"mass-weighted log age"``).
    ax : Axes, optional
    color : str, optional
        Colour of the written statistics.
    lim : (float, float), optional
        Range of both axes.

    Returns
    -------
    Axes
        With a colour bar of the objects per hexagon.
    """
    ax = axes_or_new(ax, 4.4)
    true, pred = np.asarray(true), np.asarray(pred)
    stats = scatter_stats(pred, true)
    lo, hi = lim or (min(true.min(), pred.min()), max(true.max(), pred.max()))
    cells = ax.hexbin(true, pred, gridsize=40, extent=(lo, hi, lo, hi), mincnt=1, bins="log", cmap="Blues")
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel=f"true {label}", ylabel=f"recovered {label}")
    ax.set_aspect("equal", adjustable="box")
    ax.text(
        0.04,
        0.96,
        f"bias {stats['median_bias']:+.3f}\nscatter {stats['nmad']:.3f}",
        transform=ax.transAxes,
        va="top",
        color=color or "k",
    )
    ax.figure.colorbar(cells, ax=ax, label="objects per cell", shrink=0.9)
    return ax


@book_figure
def plot_per_bin_error(age_bins_yr, curves, ylabel, ax=None):
    """Error per age bin for several models.

    Parameters
    ----------
    age_bins_yr : ndarray, shape (n_bins + 1,)
    curves : dict
        Label -> ndarray of shape (n_bins,).
    ylabel : str
        The error, with its unit.
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = axes_or_new(ax, 3.6)
    c = bin_centres_yr(age_bins_yr)
    for label, y in curves.items():
        ax.plot(c, y, "o-", ms=3, label=label)
    lookback_axis(ax, ylabel)
    return ax


@book_figure
def plot_scatter_by_group(metrics_by_model, quantity="mw_log_age", key="nmad", axs=None):
    """A statistic of a mean quantity against S/N and against the age of the dominant bin.

    Parameters
    ----------
    metrics_by_model : dict
        Model name -> :func:`sfh_ml.network.metrics.evaluate_predictions` output, computed with
        ``snr`` (so that it has ``by_snr``) on a set with a range of S/N.
    quantity : {"mw_log_age", "lw_log_age", "mw_zh", "lw_zh"}
    key : str
        The statistic (:func:`sfh_ml.network.metrics.scatter_stats` key), in dex.
    axs : pair of Axes, optional

    Returns
    -------
    pair of Axes
    """
    if axs is None:
        _, axs = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 3.4))
    labels = {"nmad": "scatter", "median_bias": "bias", "bias": "mean bias", "mae": "MAE", "std": "std"}
    ylabel = f"{labels.get(key, key)} of {MEAN_QUANTITY_LABELS.get(quantity, quantity)} (dex)"
    for name, m in metrics_by_model.items():
        by_snr, by_age = m["by_snr"], m["by_dominant_age"]
        snr_centres = snr_bin_centres(by_snr["snr_bins"])
        axs[0].plot(snr_centres, group_statistic(by_snr[quantity], key), "o-", label=name)
        axs[1].plot(by_age["bin_centres_yr"], group_statistic(by_age[quantity], key), "o-", label=name)
    axs[0].set(xscale="log", xlabel=SNR_LABEL, ylabel=ylabel)
    axs[1].set(xscale="log", xlabel="look-back time of the dominant bin (yr)", ylabel=ylabel)
    axs[0].legend()
    return axs


@book_figure
def plot_learning_curve(n_train, curves, ax=None, ylabel="scatter (dex)"):
    """Errors against the number of training spectra, on log-log axes.

    Parameters
    ----------
    n_train : ndarray, shape (n_models,)
        Training-set sizes.
    curves : dict
        Label -> ndarray of shape (n_models,), e.g. from :func:`sfh_ml.network.metrics.learning_curve`.
    ax : Axes, optional
    ylabel : str

    Returns
    -------
    Axes
    """
    ax = axes_or_new(ax, 3.6)
    for (label, y), marker in zip(curves.items(), "os^vD"):
        ax.plot(n_train, y, f"{marker}-", label=label)
    ax.set(xscale="log", yscale="log", xlabel="training spectra", ylabel=ylabel)
    ax.legend()
    return ax


@book_figure
def plot_coverage(nominal, observed, labels, ax=None):
    """Calibration of the uncertainties: observed coverage against nominal for each output.

    Parameters
    ----------
    nominal : ndarray, shape (n_k,)
        Gaussian coverage of each interval (e.g. :func:`sfh_ml.network.metrics.gaussian_coverage`).
    observed : sequence of ndarray, shape (n_k,)
        Fraction of true values inside, one per output.
    labels : sequence of str
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = axes_or_new(ax, 4.2)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="calibrated")
    for obs, label in zip(observed, labels):
        ax.plot(nominal, obs, "o-", ms=3, label=label)
    ax.set(xlabel="nominal coverage (Gaussian)", ylabel="observed coverage", xlim=(0, 1), ylim=(0, 1))
    ax.set_aspect("equal", adjustable="box")
    ax.legend(loc="lower right")
    return ax


# ------------------------------------------------------------------- the release's comparisons
RELEASE_QUANTITIES = {"mw_log_age": "mass-weighted log age", "mw_zh": "mass-weighted [M/H]"}


def _single_snr_rows(rows):
    """S/N -> row of the test sets at one S/N (``snr`` [s, s]), in S/N order."""
    out = {float(r["snr"][0]): r for r in rows if np.ndim(r["snr"]) and r["snr"][0] == r["snr"][-1]}
    return dict(sorted(out.items()))


def _nmad_by_snr(rows, quantity, level="bin"):
    single = _single_snr_rows(rows)
    return np.array(list(single)), np.array([r[level][quantity]["nmad"] for r in single.values()])


@book_figure
def plot_release_comparison(comparisons, results, axs=None):
    """NMAD of the mass-weighted log age and [M/H] (bin level) against S/N: v1, the v2 of the same
    recipe and its spectra-only twin, and the shipped network where it is another one.

    Parameters
    ----------
    comparisons : dict
        ``pretrained_comparisons()``: ``{"networks": {name: {"version", "n_train", "history",
        "metrics"}}, "reference": {"name", "n_train", "metrics", "ablation"}}``, ``metrics`` rows like
        ``results["metrics"]`` (``label``, ``snr`` [lo, hi], ``bin`` -> quantity -> ``nmad``...),
        ``ablation`` rows ``snr``, ``sample``, ``without_photometry`` -> quantity -> NMAD. Without
        ``reference`` the comparisons are taken to be the shipped network's own.
    results : dict
        ``pretrained_results()``: the shipped network's ``name`` and ``metrics``.
    axs : pair of Axes, optional

    Returns
    -------
    pair of Axes
    """
    if axs is None:
        _, axs = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 3.4))
    networks = comparisons.get("networks", {})
    ref = comparisons_reference(comparisons, results)
    shipped = results.get("name", ref["name"])
    ablation = [r for r in (ref.get("ablation") or {}).get("rows", []) if r["sample"] == "all"]
    ablation = sorted(ablation, key=lambda r: r["snr"])
    for ax, (quantity, label) in zip(axs, RELEASE_QUANTITIES.items()):
        if "v1" in networks:
            ax.plot(*_nmad_by_snr(networks["v1"]["metrics"], quantity), "s-", color="C1", label="v1")
        own = " (shipped)" if ref["name"] == shipped else ""
        ax.plot(*_nmad_by_snr(ref["metrics"], quantity), "o-", color="C0", label=f"{ref['name']}{own}")
        if ablation:
            snr = [r["snr"] for r in ablation]
            nmad = [r["without_photometry"][quantity] for r in ablation]
            ax.plot(snr, nmad, "^--", color="C2", label=f"{ref['name']}, spectra only")
        if ref["name"] != shipped:
            ax.plot(*_nmad_by_snr(results["metrics"], quantity), "*-", color="C3", ms=9,
                    label=f"{shipped} (shipped)")  # fmt: skip
        snr_axis(ax, list(_single_snr_rows(ref["metrics"]))).set_ylabel(f"NMAD of {label} (dex)")
    axs[0].legend()
    return axs


@book_figure
def plot_release_learning_curve(comparisons, results, ax=None, snr=50.0):
    """NMAD (bin level) of the mass-weighted log age and [M/H] against the number of training spectra.

    Parameters
    ----------
    comparisons : dict
        ``pretrained_comparisons()``; its networks named ``v2_n*`` (``n_train``, ``metrics``) and its
        ``reference`` (the full-size network of the same recipe, see :func:`plot_release_comparison`).
    results : dict
        ``pretrained_results()``: the shipped network, at ``results["training"]["n_train"]``; drawn
        apart (its own recipe) where it is not the reference.
    ax : Axes, optional
    snr : float
        The test set (single S/N) the NMAD is read from.

    Returns
    -------
    Axes
    """
    ax = axes_or_new(ax, 3.6)
    runs = [net for name, net in comparisons.get("networks", {}).items() if name.startswith("v2_n")]
    runs = sorted(runs, key=lambda net: net["n_train"])
    ref = comparisons_reference(comparisons, results)
    other = results.get("name", ref["name"]) != ref["name"]
    for k, (quantity, label) in enumerate(RELEASE_QUANTITIES.items()):
        n = [net["n_train"] for net in runs] + [ref["n_train"]]
        y = [_single_snr_rows(net["metrics"])[snr]["bin"][quantity]["nmad"] for net in runs]
        y.append(_single_snr_rows(ref["metrics"])[snr]["bin"][quantity]["nmad"])
        ax.plot(n, y, "o-", color=f"C{k}", label=label)
        shipped = _single_snr_rows(results["metrics"])[snr]["bin"][quantity]["nmad"]
        ax.plot(results["training"]["n_train"], shipped, "*", color=f"C{k}", ms=13, mec="k")
    shipped_label = f"shipped ({results.get('name')}, its own recipe)" if other else "shipped network"
    ax.plot([], [], "*", color="0.6", mec="k", ms=13, label=shipped_label)
    ax.set(xscale="log", xlabel="training spectra", ylabel=f"NMAD at S/N = {snr:g} (dex)")
    ax.legend()
    return ax
