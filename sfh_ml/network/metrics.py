"""Accuracy of recovered SFHs and [M/H] histories (pure numpy).

Compares predicted and true binned histories: per-bin errors of the mass fractions and of the
cumulative mass curve, per-bin bias and scatter of [M/H], the bias and scatter of mean ages and
metallicities, their dependence on S/N, on the age of the dominant population and on the true
[M/H], and the coverage of the predicted uncertainties. :func:`evaluate_predictions` gathers
everything into one JSON-serialisable dict.

Mean quantities are mass-weighted (weights: the mass fraction of each bin) or light-weighted
(weights: :func:`bin_light_weights`, the 5500 A light of each bin before dust, from the table
``bin_light`` of the training set, which a model carries). They are compared at two levels:
*bin* (predicted bins against true bins through the same function, so that only the network's
error enters) and *exact* (predicted bins against the per-object truth of the synthetic set, which
also holds the error of describing a history by bins).

Conventions: arrays of shape (n, n_bins), bins ordered from young to old as ``age_bins_yr``;
``sfh_cum[:, k] = sum_{j <= k} sfh[:, j]``; scatter is given both as the robust normalised median
absolute deviation (``NMAD = 1.4826 * median(|d - median(d)|)``) and as the standard deviation.
"""

import numpy as np
from scipy.special import erf

from ..constants import NMAD_FACTOR

__all__ = [
    "YOUNGEST_AGE_YR",
    "YOUNG_AGE_YR",
    "DEFAULT_SNR_BINS",
    "DEFAULT_ZH_BINS",
    "MEAN_QUANTITIES",
    "EXACT_TRUTH_KEYS",
    "bin_centres_yr",
    "snr_bin_centres",
    "check_light_table",
    "bin_light_weights",
    "mean_log_age",
    "mean_zh",
    "mean_quantities",
    "scatter_stats",
    "sfh_bin_errors",
    "cumulative_sfh_mae",
    "zh_bin_errors",
    "coverage",
    "coverage_targets",
    "target_coverage",
    "TWO_SIGMA_KEYS",
    "gaussian_coverage",
    "coverage_curve",
    "uncertainty_coverage_curves",
    "grouped_stats",
    "group_statistic",
    "first_dominated_by",
    "learning_curve",
    "mean_quantities_table",
    "evaluate_predictions",
    "OLD_AGE_YR",
    "SCORE_COLUMNS",
    "age_samples",
    "score_rows",
]

YOUNGEST_AGE_YR = 1e6  # youngest SSP of the library: a first bin edge <= 0 is taken as this
YOUNG_AGE_YR = 1e8  # "young" objects: true mass-weighted age below this (reported separately)
OLD_AGE_YR = 1e9  # "old" objects (score_rows): true mass-weighted age above this
DEFAULT_SNR_BINS = (0.0, 5.0, 10.0, 20.0, 50.0, 100.0, np.inf)
# Bins of the true mass-weighted [M/H] (dex) for the bias against [M/H] (a pull towards the prior's
# middle shows as a positive bias at low [M/H] and a negative one at high [M/H]); the outer edges lie
# beyond the E-MILES range (-1.71, +0.22).
DEFAULT_ZH_BINS = (-2.0, -1.25, -1.0, -0.75, -0.5, -0.25, 0.0, 0.5)
MEAN_QUANTITIES = ("mw_log_age", "mw_zh", "lw_log_age", "lw_zh")
# The per-object truths of a synthetic set the "exact" level compares with, in order of preference:
# the mass-weighted age of the continuous history, else the one on the SSP age grid (older sets);
# light-weighted ones before dust.
EXACT_TRUTH_KEYS = {
    "mw_log_age": ("mw_log_age_exact", "mw_log_age"),
    "mw_zh": ("mw_zh",),
    "lw_log_age": ("lw_log_age",),
    "lw_zh": ("lw_zh",),
}
# Where an open S/N bin is drawn: (0, a) at a / OPEN_END_FACTOR, (b, inf) at b * OPEN_END_FACTOR
# (about half a bin beyond the finite edge for the default bins, which grow by factors of 2 to 2.5).
OPEN_END_FACTOR = 1.5


def bin_centres_yr(age_bins_yr):
    """Geometric centres of the age bins.

    Parameters
    ----------
    age_bins_yr : array, shape (n_bins + 1,)
        Bin edges in years; a first edge <= 0 is replaced by :data:`YOUNGEST_AGE_YR`.

    Returns
    -------
    ndarray, shape (n_bins,)
        Centres in years.
    """
    edges = np.array(age_bins_yr, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("age_bins_yr must be a strictly increasing 1-D array of at least 2 edges")
    if edges[0] <= 0:
        edges[0] = YOUNGEST_AGE_YR
    return np.sqrt(edges[:-1] * edges[1:])


def snr_bin_centres(snr_bins=DEFAULT_SNR_BINS):
    """Geometric centres of S/N bins, open ends included, for plotting against S/N.

    Parameters
    ----------
    snr_bins : sequence of float, shape (n_groups + 1,)
        Increasing S/N bin edges, as ``evaluate_predictions(...)["by_snr"]["snr_bins"]``. The first
        edge may be 0 and the last infinite; either may be None (as the JSON output writes them).

    Returns
    -------
    ndarray, shape (n_groups,)
        ``sqrt(lo * hi)`` for each bin. An open first bin ``(0, a)`` is centred on ``a / 1.5`` and an
        open last bin ``(b, inf)`` on ``1.5 * b`` (:data:`OPEN_END_FACTOR`): 2.5 and 150 for the
        default bins.
    """
    edges = np.array([np.nan if e is None else e for e in snr_bins], dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2:
        raise ValueError(f"snr_bins must hold at least 2 edges, got {snr_bins}")
    lo, hi = edges[:-1].copy(), edges[1:].copy()
    if not lo[0] > 0:  # 0 or NaN (None): open towards zero
        lo[0] = hi[0] / OPEN_END_FACTOR**2
    if np.isnan(hi[-1]) or np.isposinf(hi[-1]):
        hi[-1] = lo[-1] * OPEN_END_FACTOR**2
    if not (np.all(np.isfinite(lo) & np.isfinite(hi)) and np.all(lo > 0) and np.all(hi > lo)):
        raise ValueError(f"snr_bins must be increasing edges > 0 (the two ends may be open), got {snr_bins}")
    return np.sqrt(lo * hi)


def check_light_table(bin_light, zh_grid, n_bins=None):
    """The light table of a training set or model as float64 arrays; ValueError if unusable.

    Parameters
    ----------
    bin_light : array, shape (n_bins, n_zh)
        5500 A luminosity (before dust) per solar mass formed at a constant rate over each age bin,
        for each [M/H] of ``zh_grid`` (L_sun / Angstrom per M_sun; only ratios matter here).
    zh_grid : array, shape (n_zh,)
        Strictly increasing [M/H] of the library, dex.
    n_bins : int, optional
        Number of age bins the table must have.

    Returns
    -------
    bin_light : ndarray, shape (n_bins, n_zh)
    zh_grid : ndarray, shape (n_zh,)
    """
    table = np.asarray(bin_light, dtype=np.float64)
    grid = np.asarray(zh_grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 1 or np.any(np.diff(grid) <= 0) or not np.all(np.isfinite(grid)):
        raise ValueError(f"zh_grid must be a strictly increasing 1-D array of finite [M/H], got {grid}")
    if table.ndim != 2 or table.shape[1] != grid.size:
        raise ValueError(
            f"bin_light must have shape (n_bins, {grid.size}) (zh_grid has {grid.size}), got {table.shape}"
        )
    if n_bins is not None and table.shape[0] != n_bins:
        raise ValueError(f"bin_light has {table.shape[0]} age bins, expected {n_bins}")
    if not np.all(np.isfinite(table) & (table > 0)):
        raise ValueError("bin_light must be finite and > 0 (a luminosity per unit mass)")
    return table, grid


def bin_light_weights(sfh, zh, bin_light, zh_grid):
    """The 5500 A light of each age bin: its mass fraction times the table's light per unit mass.

    The light per unit mass of bin ``k`` is ``bin_light[k]`` interpolated linearly in [M/H] on
    ``zh_grid`` at the bin's [M/H] (held at the end values outside the grid). Normalised per object,
    these are the weights of light-weighted means (:func:`mean_log_age`, :func:`mean_zh`).

    Parameters
    ----------
    sfh : array, shape (n, n_bins)
        Mass fraction formed in each bin (true or predicted).
    zh : array, shape (n, n_bins)
        [M/H] of the stars formed in each bin, dex.
    bin_light : array, shape (n_bins, n_zh)
        Light per solar mass formed at a constant rate over each bin (see :func:`check_light_table`).
    zh_grid : array, shape (n_zh,)
        [M/H] of the table's columns, dex.

    Returns
    -------
    ndarray, shape (n, n_bins)
        Light of each bin per unit mass formed in total (units of ``bin_light``); NaN where ``sfh`` or
        ``zh`` is NaN.
    """
    sfh = np.asarray(sfh, dtype=np.float64)
    zh = np.asarray(zh, dtype=np.float64)
    table, grid = check_light_table(bin_light, zh_grid)
    if sfh.shape != zh.shape or sfh.ndim != 2 or sfh.shape[1] != table.shape[0]:
        raise ValueError(
            f"sfh {sfh.shape} and zh {zh.shape} must both be (n, {table.shape[0]}) (the bins of bin_light)"
        )
    k = np.arange(table.shape[0])  # (n_bins,), broadcast against (n, n_bins)
    if grid.size == 1:
        return sfh * table[:, 0]
    z = np.clip(zh, grid[0], grid[-1])  # NaN stays NaN
    j = np.clip(np.searchsorted(grid, z, side="right") - 1, 0, grid.size - 2)  # (n, n_bins)
    t = (z - grid[j]) / (grid[j + 1] - grid[j])
    return sfh * (table[k, j] * (1.0 - t) + table[k, j + 1] * t)


def _normalised(weights):
    """Weights (n, n_bins) divided by their sum over the bins (rows that sum to 0 stay 0)."""
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum(axis=-1, keepdims=True)
    return w / np.where(total > 0, total, 1.0)


def mean_log_age(weights, age_bins_yr):
    """Weighted mean log10 age of binned histories.

    Parameters
    ----------
    weights : array, shape (n, n_bins)
        Mass fractions (mass-weighted mean) or :func:`bin_light_weights` (light-weighted mean);
        normalised here.
    age_bins_yr : array, shape (n_bins + 1,)

    Returns
    -------
    ndarray, shape (n,)
        ``sum_k w_k log10(centre_k / yr) / sum_k w_k``, log10 yr.
    """
    return _normalised(weights) @ np.log10(bin_centres_yr(age_bins_yr))


def mean_zh(weights, zh):
    """Weighted mean [M/H] of binned histories, dex: (n,).

    ``weights`` (n, n_bins) as in :func:`mean_log_age`; ``zh`` (n, n_bins) in dex.
    """
    return np.sum(_normalised(weights) * np.asarray(zh, dtype=np.float64), axis=-1)


def mean_quantities(sfh, zh, age_bins_yr, bin_light=None, zh_grid=None):
    """Mass- and light-weighted mean log age and [M/H] of binned histories.

    Parameters
    ----------
    sfh, zh : array, shape (n, n_bins)
        Mass fractions and [M/H] (dex) of each bin.
    age_bins_yr : array, shape (n_bins + 1,)
    bin_light, zh_grid : array, shape (n_bins, n_zh) and (n_zh,), optional
        The light table (see :func:`bin_light_weights`); without it the light-weighted means are
        left out (never approximated).

    Returns
    -------
    dict of ndarray, shape (n,)
        ``mw_log_age`` (log10 yr), ``mw_zh`` (dex) and, with the table, ``lw_log_age``, ``lw_zh``.
    """
    if (bin_light is None) != (zh_grid is None):
        raise ValueError("bin_light and zh_grid go together: give both or neither")
    out = {"mw_log_age": mean_log_age(sfh, age_bins_yr), "mw_zh": mean_zh(sfh, zh)}
    if bin_light is not None:
        light = bin_light_weights(sfh, zh, bin_light, zh_grid)
        out.update(lw_log_age=mean_log_age(light, age_bins_yr), lw_zh=mean_zh(light, zh))
    return out


def _nmad(d, axis=None):
    med = np.median(d, axis=axis, keepdims=True)
    return NMAD_FACTOR * np.median(np.abs(d - med), axis=axis)


def scatter_stats(pred, true):
    """Bias and scatter of ``pred - true`` over objects.

    Returns
    -------
    dict
        ``n``, ``bias`` (mean), ``median_bias``, ``nmad``, ``std``, ``mae``; None when n = 0.
    """
    d = np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    if d.size == 0:
        return {"n": 0, "bias": None, "median_bias": None, "nmad": None, "std": None, "mae": None}
    return {
        "n": int(d.size),
        "bias": float(d.mean()),
        "median_bias": float(np.median(d)),
        "nmad": float(_nmad(d)),
        "std": float(d.std()),
        "mae": float(np.abs(d).mean()),
    }


def sfh_bin_errors(sfh_pred, sfh_true):
    """Per-bin errors of the SFH.

    Returns
    -------
    dict of ndarray, shape (n_bins,)
        ``mae``, ``bias`` of the mass fractions; ``cum_mae``, ``cum_bias`` of the cumulative curve.
    """
    d = np.asarray(sfh_pred, np.float64) - np.asarray(sfh_true, np.float64)  # (n, n_bins)
    d_cum = np.cumsum(d, axis=-1)
    return {
        "mae": np.abs(d).mean(0),
        "bias": d.mean(0),
        "cum_mae": np.abs(d_cum).mean(0),
        "cum_bias": d_cum.mean(0),
    }


def cumulative_sfh_mae(sfh_cum_pred, sfh_true):
    """Mean absolute error of each object's cumulative mass curve.

    Parameters
    ----------
    sfh_cum_pred : array, shape (n, n_bins)
        Predicted cumulative mass fraction from the youngest bin (``predict(...)["sfh_cum"]``).
    sfh_true : array, shape (n, n_bins)
        True mass fraction per bin (rows sum to 1).

    Returns
    -------
    ndarray, shape (n,)
        Mean over the first ``n_bins - 1`` bins of ``|sfh_cum_pred - cumsum(sfh_true)|``; the last
        cumulative value is 1 on both sides by construction and is left out.
    """
    cum_pred = np.asarray(sfh_cum_pred, np.float64)
    cum_true = np.cumsum(np.asarray(sfh_true, np.float64), axis=-1)
    if cum_pred.shape != cum_true.shape or cum_true.ndim != 2 or cum_true.shape[1] < 2:
        raise ValueError(
            f"sfh_cum_pred {cum_pred.shape} and sfh_true {cum_true.shape} must both be (n, n_bins >= 2)"
        )
    return np.abs(cum_pred[:, :-1] - cum_true[:, :-1]).mean(axis=1)


def zh_bin_errors(zh_pred, zh_true, weights=None):
    """Per-bin bias and scatter of [M/H] (dex).

    Parameters
    ----------
    zh_pred, zh_true : array, shape (n, n_bins)
    weights : array, shape (n, n_bins), optional
        E.g. the true mass fractions: bins where little mass formed count little. Weighted
        statistics are the weighted mean (``bias``) and weighted standard deviation (``std``).

    Returns
    -------
    dict of ndarray, shape (n_bins,)
        Unweighted: ``bias``, ``nmad``, ``std``, ``mae``. Weighted: ``bias``, ``std``, ``mae``.
    """
    d = np.asarray(zh_pred, np.float64) - np.asarray(zh_true, np.float64)  # (n, n_bins)
    if weights is None:
        return {"bias": d.mean(0), "nmad": _nmad(d, axis=0), "std": d.std(0), "mae": np.abs(d).mean(0)}
    w = np.asarray(weights, np.float64)
    w_sum = np.where(w.sum(0) > 0, w.sum(0), np.nan)
    bias = (w * d).sum(0) / w_sum
    std = np.sqrt((w * (d - bias) ** 2).sum(0) / w_sum)
    return {"bias": bias, "std": std, "mae": (w * np.abs(d)).sum(0) / w_sum}


def coverage(pred, sigma, true, n_sigma=(1.0, 2.0), weights=None):
    """Fraction of truths within ``k`` predicted sigma (0.683 and 0.954 expected for k = 1, 2).

    Parameters
    ----------
    pred, sigma, true : array, shape (n, n_bins)
    weights : array, shape (n, n_bins), optional
        Weight of each element in the overall fraction (e.g. the true mass fractions).

    Returns
    -------
    dict
        For each k (key ``"1sigma"``, ...): ``{"all": float, "per_bin": ndarray (n_bins,)}``, both
        weighted (``per_bin`` NaN for a bin whose weights sum to 0).
    """
    z = np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64)) / np.asarray(sigma, np.float64)
    w = np.ones_like(z) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), z.shape)
    w_bin = w.sum(0)
    out = {}
    for k in n_sigma:
        inside = z <= k
        per_bin = (w * inside).sum(0) / np.where(w_bin > 0, w_bin, np.nan)
        out[f"{k:g}sigma"] = {"all": float((w * inside).sum() / w.sum()), "per_bin": per_bin}
    return out


def gaussian_coverage(n_sigma):
    """Fraction of a Gaussian within ``n_sigma`` standard deviations of its mean, ``erf(k / sqrt(2))``.

    Parameters
    ----------
    n_sigma : float or array, any shape

    Returns
    -------
    ndarray, shape of ``n_sigma``
        0.683 for k = 1, 0.954 for k = 2.
    """
    return erf(np.asarray(n_sigma, dtype=np.float64) / np.sqrt(2.0))


def coverage_curve(pred, sigma, true, n_sigma, weights=None):
    """Observed fraction of truths within ``k`` predicted sigma, for each ``k``.

    Plotted against :func:`gaussian_coverage` of the same ``k``: on the diagonal the uncertainties
    are calibrated, below it over-confident, above it too cautious.

    Parameters
    ----------
    pred, sigma, true : array, shape (n, n_bins)
        Prediction, its predicted standard deviation (> 0) and the truth.
    n_sigma : array, shape (n_k,)
        Multiples of sigma.
    weights : array, shape (n, n_bins), optional
        Weight of each element (e.g. the true mass fractions); default equal weights.

    Returns
    -------
    ndarray, shape (n_k,)
        Weighted fraction of elements with ``|pred - true| <= k * sigma``.
    """
    z = np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64)) / np.asarray(sigma, np.float64)
    w = np.ones_like(z) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), z.shape)
    if not w.sum() > 0:
        raise ValueError("the weights sum to zero: no element to count")
    k = np.asarray(n_sigma, dtype=np.float64)
    return np.array([(w * (z <= kk)).sum() for kk in k.ravel()]).reshape(k.shape) / w.sum()


def coverage_targets(pred, truth):
    """The uncertainties whose coverage is measured (and calibrated, :mod:`sfh_ml.network.calibration`).

    Parameters
    ----------
    pred : dict of array, each shape (n, n_bins)
        ``predict`` output (``sfh_cum`` or ``sfh``, ``sfh_cum_sigma``, ``zh``, ``zh_sigma``).
    truth : dict of array, each shape (n, n_bins)
        ``sfh`` (mass fractions) and ``zh`` (dex).

    Returns
    -------
    dict
        ``{name: (pred, sigma, true, weights or None)}``, arrays (n, n_bins), for those whose sigma
        ``pred`` holds: ``sfh_cum``, the cumulative mass curve, its last bin (1 by construction)
        weighted 0; ``zh``, [M/H] in every bin; ``zh_mass_weighted``, [M/H] weighted by the true
        mass fraction of each bin.
    """
    out = {}
    if "sfh_cum_sigma" in pred:
        cum_true = np.cumsum(truth["sfh"], axis=-1)
        cum_pred = pred["sfh_cum"] if "sfh_cum" in pred else np.cumsum(pred["sfh"], axis=-1)
        w = np.ones_like(cum_true, dtype=np.float64)
        w[:, -1] = 0.0
        out["sfh_cum"] = (cum_pred, pred["sfh_cum_sigma"], cum_true, w)
    if "zh_sigma" in pred:
        out["zh"] = (pred["zh"], pred["zh_sigma"], truth["zh"], None)
        out["zh_mass_weighted"] = (pred["zh"], pred["zh_sigma"], truth["zh"], truth["sfh"])
    return out


def uncertainty_coverage_curves(pred, truth, n_sigma):
    """:func:`coverage_curve` of each predicted uncertainty, as in :func:`evaluate_predictions`.

    Parameters
    ----------
    pred : dict of array, each shape (n, n_bins)
        ``predict`` output: ``sfh_cum`` and ``sfh_cum_sigma``, ``zh`` and ``zh_sigma``.
    truth : dict of array, each shape (n, n_bins)
        ``sfh`` (mass fractions) and ``zh`` (dex).
    n_sigma : array, shape (n_k,)

    Returns
    -------
    dict of ndarray, each shape (n_k,)
        ``sfh_cum`` (cumulative mass curve, the last bin left out), ``zh`` (every bin) and
        ``zh_mass_weighted`` (bins weighted by the true mass fraction), for those present in ``pred``.
    """
    return {
        name: coverage_curve(p, s, t, n_sigma, weights=w)
        for name, (p, s, t, w) in coverage_targets(pred, truth).items()
    }


def grouped_stats(pred, true, groups, n_groups):
    """:func:`scatter_stats` of ``pred - true`` within each group.

    Parameters
    ----------
    pred, true : array, shape (n,)
    groups : int array, shape (n,)
        Group index of each object, in 0..n_groups-1 (others are ignored).
    n_groups : int

    Returns
    -------
    list of dict, length n_groups
    """
    groups = np.asarray(groups)
    pred, true = np.asarray(pred), np.asarray(true)
    return [scatter_stats(pred[groups == g], true[groups == g]) for g in range(n_groups)]


def group_statistic(groups, key="nmad"):
    """One statistic of each group as an array, NaN for empty groups (for plotting).

    Parameters
    ----------
    groups : list of dict, length n_groups
        :func:`grouped_stats` output, e.g. ``evaluate_predictions(...)["by_snr"]["mw_log_age"]``.
    key : str
        A key of :func:`scatter_stats`: ``n``, ``bias``, ``median_bias``, ``nmad``, ``std``, ``mae``.

    Returns
    -------
    ndarray, shape (n_groups,), float64
    """
    return np.array([np.nan if g.get(key) is None else g[key] for g in groups], dtype=np.float64)


def first_dominated_by(sfh, bins):
    """Index of the first object whose largest mass fraction lies in each of the given age bins.

    Parameters
    ----------
    sfh : array, shape (n, n_bins)
        Mass fraction per age bin.
    bins : sequence of int
        Age-bin indices (0 = youngest).

    Returns
    -------
    list of int
        One object index per bin that dominates at least one object, in the order of ``bins``;
        bins that dominate none are skipped.
    """
    dominant = np.argmax(np.asarray(sfh), axis=-1)
    return [int(np.flatnonzero(dominant == b)[0]) for b in bins if np.any(dominant == b)]


def _level(metrics, level):
    """The tables of one level of an :func:`evaluate_predictions` output ("bin": the top level)."""
    if level == "bin":
        return metrics
    if level == "exact":
        return metrics.get("exact", {})
    raise ValueError(f"level must be 'bin' or 'exact', got {level!r}")


def learning_curve(metrics_by_model, sizes, quantity="mw_log_age", key="nmad", level="bin"):
    """One mean-quantity statistic against the training-set size.

    Parameters
    ----------
    metrics_by_model : dict
        Model name -> :func:`evaluate_predictions` output.
    sizes : dict
        Model name -> number of training spectra; names missing from ``metrics_by_model`` are skipped.
    quantity : {"mw_log_age", "lw_log_age", "mw_zh", "lw_zh"}
    key : str
        A key of :func:`scatter_stats`.
    level : {"bin", "exact"}
        Bin level (predicted against true bins) or exact level (against the per-object truth).

    Returns
    -------
    n_train : ndarray of int, shape (n_models,)
        Sizes in increasing order.
    value : ndarray, shape (n_models,)
        The statistic (NaN where undefined or not evaluated, e.g. light-weighted without a light
        table), in dex.
    """
    rows = sorted((n, name) for name, n in sizes.items() if name in metrics_by_model)
    table = lambda name: _level(metrics_by_model[name], level).get("mean_quantities", {})
    value = [table(name).get(quantity, {}).get(key) for _, name in rows]
    return (
        np.array([n for n, _ in rows], dtype=np.int64),
        np.array([np.nan if v is None else v for v in value], dtype=np.float64),
    )


def mean_quantities_table(metrics_by_model, quantities=MEAN_QUANTITIES, level="bin"):
    """Bias / scatter (median bias / NMAD, dex) of the mean quantities of several models, as text.

    Parameters
    ----------
    metrics_by_model : dict
        Model name -> :func:`evaluate_predictions` output.
    quantities : sequence of str
        Keys of its ``mean_quantities``.
    level : {"bin", "exact"}
        Which comparison (see :func:`evaluate_predictions`).

    Returns
    -------
    str
        A header line, then one line per model; ``n/a`` where a quantity was not evaluated.
    """

    def cell(stats):
        if stats is None or stats["median_bias"] is None or stats["nmad"] is None:
            return f"{'n/a':>15s}"
        return f"{stats['median_bias']:+.3f} / {stats['nmad']:.3f}".rjust(15)

    width = max([5, *(len(name) for name in metrics_by_model)])
    lines = [f"{'model':{width}s} " + " ".join(f"{q:>15s}" for q in quantities)]
    for name, m in metrics_by_model.items():
        table = _level(m, level).get("mean_quantities", {})
        lines.append(f"{name:{width}s} " + " ".join(cell(table.get(q)) for q in quantities))
    return "\n".join(lines)


def _jsonable(obj):
    """Nested dicts/lists of numpy values -> plain Python (NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    return obj


def _check(pred, truth):
    for key in ("sfh", "zh"):
        if key not in pred or key not in truth:
            raise ValueError(f"pred and truth need a {key!r} array")
        if np.shape(pred[key]) != np.shape(truth[key]) or np.ndim(truth[key]) != 2:
            shapes = f"pred {np.shape(pred[key])} and truth {np.shape(truth[key])}"
            raise ValueError(f"{key}: {shapes} must both be (n, n_bins)")


def _exact_pairs(pred_means, truth, n, notes):
    """Predicted means against the truth's per-object values: ({name: (pred, true)}, {name: truth key})."""
    pairs, used = {}, {}
    for name, keys in EXACT_TRUTH_KEYS.items():
        key = next((k for k in keys if truth.get(k) is not None), None)
        if key is None:
            notes.append(f"exact {name} skipped: the truth has no {' or '.join(keys)}")
            continue
        if name not in pred_means:
            continue  # light-weighted without a light table: noted once by the caller
        true = np.asarray(truth[key], dtype=np.float64)
        if true.shape != (n,):
            raise ValueError(f"truth[{key!r}] must have shape ({n},), got {true.shape}")
        if key != keys[0]:
            notes.append(
                f"exact {name}: the truth has no {keys[0]} (a set made before it existed); compared "
                f"with {key} instead"
            )
        pairs[name], used[name] = (pred_means[name], true), key
    return pairs, used


def _tables(pairs, groupings, young, young_age_yr):
    """The tables of one level: :func:`scatter_stats` over all, per group, and over the young objects.

    ``pairs``: {quantity: (pred (n,), true (n,))}; ``groupings``: {key: (entries to add, group index
    of each object (n,), n_groups)}; ``young``: bool (n,).
    """
    out = {"mean_quantities": {name: scatter_stats(p, t) for name, (p, t) in pairs.items()}}
    for key, (extra, groups, n_groups) in groupings.items():
        out[key] = {
            **extra,
            **{name: grouped_stats(p, t, groups, n_groups) for name, (p, t) in pairs.items()},
        }
    out["young"] = {
        "max_age_yr": float(young_age_yr),
        **{name: scatter_stats(p[young], t[young]) for name, (p, t) in pairs.items()},
    }
    return out


# The 2-sigma half-width (predict's output) of each coverage target, where the prediction holds one.
TWO_SIGMA_KEYS = {"sfh_cum": "sfh_cum_2sigma", "zh": "zh_2sigma", "zh_mass_weighted": "zh_2sigma"}


def target_coverage(pred, truth):
    """1- and 2-sigma coverage of each :func:`coverage_targets` uncertainty.

    The 2-sigma coverage is the fraction within the 2-sigma interval: +-``sfh_cum_2sigma`` and
    +-``zh_2sigma`` where ``pred`` holds them (:func:`sfh_ml.network.predict`: calibrated for
    heavier tails than a Gaussian's), else +-2 sigma.

    Parameters
    ----------
    pred, truth : dict of array, each shape (n, n_bins)
        As :func:`coverage_targets`.

    Returns
    -------
    dict
        ``{name: {"1sigma": {"all", "per_bin"}, "2sigma": {"all", "per_bin"}}}`` (see :func:`coverage`).
    """
    out = {}
    for name, (p, sig, t, w) in coverage_targets(pred, truth).items():
        out[name] = coverage(p, sig, t, n_sigma=(1.0, 2.0), weights=w)
        half_width = pred.get(TWO_SIGMA_KEYS[name])
        if half_width is not None:
            within = coverage(p, np.asarray(half_width) / 2.0, t, n_sigma=(2.0,), weights=w)
            out[name]["2sigma"] = within["2sigma"]
    return out


def evaluate_predictions(
    pred,
    truth,
    age_bins_yr,
    snr=None,
    snr_bins=DEFAULT_SNR_BINS,
    bin_light=None,
    zh_grid=None,
    zh_bins=DEFAULT_ZH_BINS,
    young_age_yr=YOUNG_AGE_YR,
):
    """All the metrics, as one JSON-serialisable nested dict.

    Parameters
    ----------
    pred : dict of array, each shape (n, n_bins)
        ``sfh`` and ``zh``; optionally ``sfh_cum``, ``sfh_cum_sigma``, ``zh_sigma`` (as returned by
        :func:`sfh_ml.network.predict`) for the coverage of the uncertainties.
    truth : dict of array
        ``sfh`` (mass fractions) and ``zh`` (dex), each (n, n_bins); optionally the per-object
        truths of a synthetic set, each (n,), for the exact level: ``mw_log_age_exact`` (or, in older
        sets, ``mw_log_age``), ``mw_zh``, ``lw_log_age``, ``lw_zh`` (light-weighted before dust).
    age_bins_yr : array, shape (n_bins + 1,)
    snr : array, shape (n,), optional
        S/N of each object; given, the mean quantities are also reported per S/N bin.
    snr_bins : sequence of float
        S/N bin edges.
    bin_light, zh_grid : array, shape (n_bins, n_zh) and (n_zh,), optional
        The light table of the set or the model (:func:`bin_light_weights`); without it the
        light-weighted quantities are skipped, and ``notes`` says so.
    zh_bins : sequence of float
        Edges of the true mass-weighted [M/H] (dex) for ``by_true_zh``.
    young_age_yr : float
        Objects whose true (binned) mass-weighted age is below this are also reported apart.

    Returns
    -------
    dict
        ``n_objects``; ``sfh_bins`` (per-bin ``mae``, ``bias``, ``cum_mae``, ``cum_bias``);
        ``zh_bins`` and ``zh_bins_mass_weighted``; ``coverage`` (``sfh_cum``, ``zh``,
        ``zh_mass_weighted``: fraction within 1 and 2 sigma, overall and per bin); ``notes`` (list
        of str: what was skipped or substituted, and why).

        Mean quantities (``mw_log_age``, ``mw_zh``, ``lw_log_age``, ``lw_zh``: :func:`scatter_stats`,
        dex) at the bin level (predicted against true bins, both through :func:`mean_quantities`):
        ``mean_quantities`` (all objects); ``by_dominant_age`` (per bin holding most of the true
        mass, with ``bin_centres_yr``); ``by_true_zh`` (per bin of the true mass-weighted [M/H],
        with ``zh_bins``); ``young`` (objects with a true mass-weighted age below ``max_age_yr``);
        ``by_snr`` (per S/N bin, with ``snr_bins``, if ``snr`` is given).

        ``exact``: the same tables (same groupings) with the predicted means against the truth's
        per-object values, and ``truth`` (quantity -> the truth's key used); quantities whose
        truth is missing are skipped.

        Empty groups and undefined values are None.
    """
    _check(pred, truth)
    n, n_bins = np.shape(truth["sfh"])
    notes = []
    if bin_light is None and zh_grid is None:
        notes.append(
            "light-weighted quantities skipped: no bin_light / zh_grid light table (a set or model made "
            "before they existed)"
        )
    pred_means = mean_quantities(pred["sfh"], pred["zh"], age_bins_yr, bin_light, zh_grid)
    true_means = mean_quantities(truth["sfh"], truth["zh"], age_bins_yr, bin_light, zh_grid)
    bin_pairs = {name: (pred_means[name], true_means[name]) for name in pred_means}
    exact_pairs, exact_truth = _exact_pairs(pred_means, truth, n, notes)

    zh_edges = np.asarray(zh_bins, dtype=np.float64)
    young = age_samples(truth["sfh"], age_bins_yr, young_age_yr=young_age_yr)["young"]
    groupings = {
        "by_dominant_age": (
            {"bin_centres_yr": bin_centres_yr(age_bins_yr)},
            np.argmax(truth["sfh"], axis=-1),
            n_bins,
        ),
        "by_true_zh": (
            {"zh_bins": zh_edges},
            np.digitize(true_means["mw_zh"], zh_edges) - 1,
            zh_edges.size - 1,
        ),
    }
    if snr is not None:
        snr = np.asarray(snr, dtype=np.float64)
        if snr.shape != (n,):
            raise ValueError(f"snr must have shape ({n},), got {snr.shape}")
        edges = np.asarray(snr_bins, dtype=np.float64)
        groups = np.digitize(snr, edges) - 1  # bin i holds edges[i] <= snr < edges[i + 1]
        groupings["by_snr"] = ({"snr_bins": edges}, groups, edges.size - 1)

    result = {
        "n_objects": n,
        "age_bin_centres_yr": bin_centres_yr(age_bins_yr),
        "sfh_bins": sfh_bin_errors(pred["sfh"], truth["sfh"]),
        "zh_bins": zh_bin_errors(pred["zh"], truth["zh"]),
        "zh_bins_mass_weighted": zh_bin_errors(pred["zh"], truth["zh"], weights=truth["sfh"]),
        **_tables(bin_pairs, groupings, young, young_age_yr),
        "exact": {"truth": exact_truth, **_tables(exact_pairs, groupings, young, young_age_yr)},
        "coverage": target_coverage(pred, truth),
        "notes": notes,
    }
    return _jsonable(result)


# Columns of a score_rows row (the statistics those of scatter_stats; None where not defined).
SCORE_COLUMNS = ("sample", "quantity", "level", "n", "n_failed", "bias", "median_bias", "nmad", "std", "mae")


def age_samples(sfh_true, age_bins_yr, young_age_yr=YOUNG_AGE_YR, old_age_yr=OLD_AGE_YR):
    """All objects, the young-dominated and the old-dominated ones, as boolean masks.

    Parameters
    ----------
    sfh_true : array, shape (n, n_bins)
        True mass fractions per bin.
    age_bins_yr : array, shape (n_bins + 1,)
    young_age_yr, old_age_yr : float
        Young: true (binned) mass-weighted age below ``young_age_yr``, the definition of
        :func:`evaluate_predictions`'s ``young``; old: above ``old_age_yr``.

    Returns
    -------
    dict of ndarray, shape (n,), bool
        ``all``, ``young``, ``old``.
    """
    age = mean_log_age(sfh_true, age_bins_yr)
    return {
        "all": np.ones(age.shape, dtype=bool),
        "young": age < np.log10(young_age_yr),
        "old": age > np.log10(old_age_yr),
    }


def score_rows(pred, truth, age_bins_yr, bin_light=None, zh_grid=None, samples=None):
    """Flat rows of the main metrics for each sample of objects, for a table comparing methods.

    Objects whose predicted ``sfh`` or ``zh`` is not finite (a failed fit, an unusable spectrum) are
    left out and counted in ``n_failed``. Each sample is scored by :func:`evaluate_predictions`
    alone, so that its per-bin SFH errors are those of its own objects.

    Parameters
    ----------
    pred : dict of array, shape (n, n_bins)
        ``sfh``, ``zh`` and optionally ``sfh_cum`` (else the cumulative sum of ``sfh``).
    truth : dict of array
        As in :func:`evaluate_predictions` (``sfh``, ``zh`` and the per-object truths of the exact
        level).
    age_bins_yr : array, shape (n_bins + 1,)
    bin_light, zh_grid : array, optional
        The light table (see :func:`evaluate_predictions`).
    samples : dict of array, shape (n,), bool, optional
        Sample name -> objects; default :func:`age_samples` of the truth. Empty samples are skipped.

    Returns
    -------
    list of dict
        Keys :data:`SCORE_COLUMNS`. Quantities: ``mw_log_age``, ``lw_log_age`` (log10 yr),
        ``mw_zh``, ``lw_zh`` (dex) at ``level`` ``bin`` and ``exact`` (:func:`scatter_stats` of
        :func:`evaluate_predictions`); ``cum_sfh_mae`` (level ``object``): the statistics of each
        object's :func:`cumulative_sfh_mae` (``bias`` its mean, ``median_bias`` its median, ``nmad``
        and ``std`` its spread); ``sfh_bin_KK`` and ``sfh_cum_KK`` (level ``bin``, ``KK`` the age
        bin from the youngest, 00): ``bias`` and ``mae`` of the bin's mass fraction and of the
        cumulative mass curve there (:func:`sfh_bin_errors`).
    """
    sfh_true = np.asarray(truth["sfh"], dtype=np.float64)
    sfh = np.asarray(pred["sfh"], dtype=np.float64)
    zh = np.asarray(pred["zh"], dtype=np.float64)
    cum = np.cumsum(sfh, axis=-1) if pred.get("sfh_cum") is None else np.asarray(pred["sfh_cum"], np.float64)
    ok = np.all(np.isfinite(sfh) & np.isfinite(zh), axis=-1)
    samples = age_samples(sfh_true, age_bins_yr) if samples is None else samples
    exact_keys = dict.fromkeys(k for keys in EXACT_TRUTH_KEYS.values() for k in keys)  # ordered, unique
    truth_keys = [k for k in ("sfh", "zh", *exact_keys) if truth.get(k) is not None]
    rows = []
    for name, in_sample in samples.items():
        in_sample = np.asarray(in_sample, dtype=bool)
        keep = in_sample & ok
        if not keep.any():
            continue
        head = {"sample": name, "n_failed": int((in_sample & ~ok).sum())}
        p = {"sfh": sfh[keep], "zh": zh[keep]}
        t = {k: np.asarray(truth[k])[keep] for k in truth_keys}
        ev = evaluate_predictions(p, t, age_bins_yr, bin_light=bin_light, zh_grid=zh_grid)
        for level, table in (("bin", ev["mean_quantities"]), ("exact", ev["exact"]["mean_quantities"])):
            for quantity, stats in table.items():
                rows.append(_score_row(head, quantity, level, stats))
        cum_mae = cumulative_sfh_mae(cum[keep], t["sfh"])
        rows.append(_score_row(head, "cum_sfh_mae", "object", scatter_stats(cum_mae, np.zeros_like(cum_mae))))
        errors, count = ev["sfh_bins"], int(keep.sum())
        for k in range(len(errors["mae"])):
            rows.append(
                _score_row(
                    head,
                    f"sfh_bin_{k:02d}",
                    "bin",
                    {"n": count, "bias": errors["bias"][k], "mae": errors["mae"][k]},
                )
            )
            rows.append(
                _score_row(
                    head,
                    f"sfh_cum_{k:02d}",
                    "bin",
                    {"n": count, "bias": errors["cum_bias"][k], "mae": errors["cum_mae"][k]},
                )
            )
    return rows


def _score_row(head, quantity, level, stats):
    row = {key: None for key in SCORE_COLUMNS}
    row.update(head, quantity=quantity, level=level)
    row.update({key: value for key, value in stats.items() if key in SCORE_COLUMNS})
    return row
