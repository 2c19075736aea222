"""Accuracy of recovered SFHs and [M/H] histories (pure numpy).

Compares predicted and true binned histories: per-bin errors of the mass fractions and of the
cumulative mass curve, per-bin bias and scatter of [M/H], the bias and scatter of mean ages and
metallicities (mass- and light-weighted, computed from the bins on both sides so that only the
network's error enters), their dependence on S/N and on the age of the dominant population, and
the coverage of the predicted uncertainties. :func:`evaluate_predictions` gathers everything into
one JSON-serialisable dict.

Conventions: arrays of shape (n, n_bins), bins ordered from young to old as ``age_bins_yr``;
``sfh_cum[:, k] = sum_{j <= k} sfh[:, j]``; scatter is given both as the robust normalised median
absolute deviation (``NMAD = 1.4826 * median(|d - median(d)|)``) and as the standard deviation.
"""

import numpy as np
from scipy.special import erf

__all__ = [
    "YOUNGEST_AGE_YR",
    "LIGHT_TO_MASS_SLOPE",
    "DEFAULT_SNR_BINS",
    "bin_centres_yr",
    "snr_bin_centres",
    "light_to_mass_weights",
    "mean_log_age",
    "mean_zh",
    "scatter_stats",
    "sfh_bin_errors",
    "cumulative_sfh_mae",
    "zh_bin_errors",
    "coverage",
    "gaussian_coverage",
    "coverage_curve",
    "uncertainty_coverage_curves",
    "grouped_stats",
    "group_statistic",
    "first_dominated_by",
    "learning_curve",
    "mean_quantities_table",
    "evaluate_predictions",
]

YOUNGEST_AGE_YR = 6.3e6  # youngest SSP of the library: a first bin edge <= 0 is taken as this
# Light-to-mass ratio of an SSP falls roughly as age^-0.8 in the V band from 10 Myr to 10 Gyr
# (log M/L_V rises by ~0.8 dex per dex of age in Bruzual & Charlot 2003 SSPs): the default light
# weights when the caller does not pass the library's own.
LIGHT_TO_MASS_SLOPE = -0.8
DEFAULT_SNR_BINS = (0.0, 5.0, 10.0, 20.0, 50.0, 100.0, np.inf)
# Where an open S/N bin is drawn: (0, a) at a / OPEN_END_FACTOR, (b, inf) at b * OPEN_END_FACTOR
# (about half a bin beyond the finite edge for the default bins, which grow by factors of 2 to 2.5).
OPEN_END_FACTOR = 1.5
NMAD_FACTOR = 1.4826  # NMAD = sigma for a Gaussian


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


def light_to_mass_weights(age_bins_yr, slope=LIGHT_TO_MASS_SLOPE):
    """Approximate relative light per unit mass of each bin, ``(centre / 1 Gyr)**slope``: (n_bins,)."""
    return (bin_centres_yr(age_bins_yr) / 1e9) ** slope


def _weights(sfh, light_to_mass):
    """Normalised weights (n, n_bins): mass fractions, times light per mass if given."""
    w = np.asarray(sfh, dtype=np.float64)
    if light_to_mass is not None:
        w = w * np.asarray(light_to_mass, dtype=np.float64)
    total = w.sum(axis=-1, keepdims=True)
    return w / np.where(total > 0, total, 1.0)


def mean_log_age(sfh, age_bins_yr, light_to_mass=None):
    """Mass-weighted (or light-weighted) mean log10 age from binned mass fractions.

    Parameters
    ----------
    sfh : array, shape (n, n_bins)
        Mass fraction per bin.
    age_bins_yr : array, shape (n_bins + 1,)
    light_to_mass : array, shape (n_bins,) or (n, n_bins), optional
        Light per unit mass of each bin; given, the mean is light-weighted.

    Returns
    -------
    ndarray, shape (n,)
        ``sum_k w_k log10(centre_k / yr)``.
    """
    return _weights(sfh, light_to_mass) @ np.log10(bin_centres_yr(age_bins_yr))


def mean_zh(sfh, zh, light_to_mass=None):
    """Mass-weighted (or light-weighted) mean [M/H] (dex) of binned histories: (n,)."""
    return np.sum(_weights(sfh, light_to_mass) * np.asarray(zh, dtype=np.float64), axis=-1)


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
        For each k (key ``"1sigma"``, ...): ``{"all": float, "per_bin": ndarray (n_bins,)}``.
    """
    z = np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64)) / np.asarray(sigma, np.float64)
    w = np.ones_like(z) if weights is None else np.asarray(weights, np.float64)
    out = {}
    for k in n_sigma:
        inside = z <= k
        out[f"{k:g}sigma"] = {"all": float((w * inside).sum() / w.sum()), "per_bin": inside.mean(0)}
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


def _coverage_targets(pred, truth):
    """The uncertainties whose coverage is measured: {name: (pred, sigma, true, weights or None)}.

    ``sfh_cum``: the cumulative mass curve, its last bin (1 by construction) left out; ``zh``: [M/H]
    in every bin; ``zh_mass_weighted``: [M/H] weighted by the true mass fraction of each bin.
    """
    out = {}
    if "sfh_cum_sigma" in pred:
        cum_true = np.cumsum(truth["sfh"], axis=-1)
        cum_pred = pred.get("sfh_cum", np.cumsum(pred["sfh"], axis=-1))
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
        for name, (p, s, t, w) in _coverage_targets(pred, truth).items()
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


def learning_curve(metrics_by_model, sizes, quantity="mw_log_age", key="nmad"):
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

    Returns
    -------
    n_train : ndarray of int, shape (n_models,)
        Sizes in increasing order.
    value : ndarray, shape (n_models,)
        The statistic (NaN where undefined), in dex.
    """
    rows = sorted((n, name) for name, n in sizes.items() if name in metrics_by_model)
    value = [metrics_by_model[name]["mean_quantities"][quantity].get(key) for _, name in rows]
    return (
        np.array([n for n, _ in rows], dtype=np.int64),
        np.array([np.nan if v is None else v for v in value], dtype=np.float64),
    )


MEAN_QUANTITIES = ("mw_log_age", "mw_zh", "lw_log_age", "lw_zh")


def mean_quantities_table(metrics_by_model, quantities=MEAN_QUANTITIES):
    """Bias / scatter (median bias / NMAD, dex) of the mean quantities of several models, as text.

    Parameters
    ----------
    metrics_by_model : dict
        Model name -> :func:`evaluate_predictions` output.
    quantities : sequence of str
        Keys of its ``mean_quantities``.

    Returns
    -------
    str
        A header line, then one line per model.
    """

    def cell(stats):
        if stats["median_bias"] is None or stats["nmad"] is None:
            return f"{'n/a':>15s}"
        return f"{stats['median_bias']:+.3f} / {stats['nmad']:.3f}".rjust(15)

    width = max([5, *(len(name) for name in metrics_by_model)])
    lines = [f"{'model':{width}s} " + " ".join(f"{q:>15s}" for q in quantities)]
    for name, m in metrics_by_model.items():
        lines.append(f"{name:{width}s} " + " ".join(cell(m["mean_quantities"][q]) for q in quantities))
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


def _mean_quantities(pred, truth, age_bins_yr, light_to_mass):
    """Predicted and true mean ages / metallicities: {name: (pred (n,), true (n,))}."""
    out = {}
    for prefix, l2m in (("mw", None), ("lw", light_to_mass)):
        out[f"{prefix}_log_age"] = tuple(mean_log_age(d["sfh"], age_bins_yr, l2m) for d in (pred, truth))
        out[f"{prefix}_zh"] = tuple(mean_zh(d["sfh"], d["zh"], l2m) for d in (pred, truth))
    return out


def _by_group(quantities, groups, n_groups):
    return {name: grouped_stats(p, t, groups, n_groups) for name, (p, t) in quantities.items()}


def _uncertainty_coverage(pred, truth):
    targets = _coverage_targets(pred, truth)
    return {name: coverage(p, sig, t, weights=w) for name, (p, sig, t, w) in targets.items()}


def evaluate_predictions(pred, truth, age_bins_yr, snr=None, snr_bins=DEFAULT_SNR_BINS, light_to_mass=None):
    """All the metrics, as one JSON-serialisable nested dict.

    Parameters
    ----------
    pred : dict of array, each shape (n, n_bins)
        ``sfh`` and ``zh``; optionally ``sfh_cum``, ``sfh_cum_sigma``, ``zh_sigma`` (as returned by
        :func:`sfh_ml.network.predict`) for the coverage of the uncertainties.
    truth : dict of array, each shape (n, n_bins)
        ``sfh`` (mass fractions) and ``zh`` (dex).
    age_bins_yr : array, shape (n_bins + 1,)
    snr : array, shape (n,), optional
        S/N of each object; given, the mean quantities are also reported per S/N bin.
    snr_bins : sequence of float
        S/N bin edges.
    light_to_mass : array, shape (n_bins,) or (n, n_bins), optional
        Light per unit mass of each age bin for the light-weighted means; default
        :func:`light_to_mass_weights` (a power law in age).

    Returns
    -------
    dict
        ``n_objects``; ``sfh_bins`` (per-bin ``mae``, ``bias``, ``cum_mae``, ``cum_bias``);
        ``zh_bins`` and ``zh_bins_mass_weighted``; ``mean_quantities`` (``mw_log_age``,
        ``lw_log_age``, ``mw_zh``, ``lw_zh``: bias, median_bias, nmad, std, mae in dex);
        ``by_dominant_age`` (the same per bin holding most of the true mass, with the bin centres);
        ``by_snr`` (the same per S/N bin, if ``snr`` is given); ``coverage`` (``sfh_cum``, ``zh``,
        ``zh_mass_weighted``: fraction within 1 and 2 sigma, overall and per bin).
        Empty groups and undefined values are None.
    """
    _check(pred, truth)
    n, n_bins = np.shape(truth["sfh"])
    if light_to_mass is None:
        light_to_mass = light_to_mass_weights(age_bins_yr)
    quantities = _mean_quantities(pred, truth, age_bins_yr, light_to_mass)
    dominant = np.argmax(truth["sfh"], axis=-1)
    result = {
        "n_objects": n,
        "age_bin_centres_yr": bin_centres_yr(age_bins_yr),
        "sfh_bins": sfh_bin_errors(pred["sfh"], truth["sfh"]),
        "zh_bins": zh_bin_errors(pred["zh"], truth["zh"]),
        "zh_bins_mass_weighted": zh_bin_errors(pred["zh"], truth["zh"], weights=truth["sfh"]),
        "mean_quantities": {name: scatter_stats(p, t) for name, (p, t) in quantities.items()},
        "by_dominant_age": {
            "bin_centres_yr": bin_centres_yr(age_bins_yr),
            **_by_group(quantities, dominant, n_bins),
        },
        "coverage": _uncertainty_coverage(pred, truth),
    }
    if snr is not None:
        snr = np.asarray(snr, dtype=np.float64)
        if snr.shape != (n,):
            raise ValueError(f"snr must have shape ({n},), got {snr.shape}")
        edges = np.asarray(snr_bins, dtype=np.float64)
        groups = np.digitize(snr, edges) - 1  # bin i holds edges[i] <= snr < edges[i + 1]
        result["by_snr"] = {"snr_bins": edges, **_by_group(quantities, groups, edges.size - 1)}
    return _jsonable(result)
