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

__all__ = [
    "YOUNGEST_AGE_YR",
    "LIGHT_TO_MASS_SLOPE",
    "DEFAULT_SNR_BINS",
    "bin_centres_yr",
    "light_to_mass_weights",
    "mean_log_age",
    "mean_zh",
    "scatter_stats",
    "sfh_bin_errors",
    "zh_bin_errors",
    "coverage",
    "grouped_stats",
    "evaluate_predictions",
]

YOUNGEST_AGE_YR = 6.3e6  # youngest SSP of the library: a first bin edge <= 0 is taken as this
# Light-to-mass ratio of an SSP falls roughly as age^-0.8 in the V band from 10 Myr to 10 Gyr
# (log M/L_V rises by ~0.8 dex per dex of age in Bruzual & Charlot 2003 SSPs): the default light
# weights when the caller does not pass the library's own.
LIGHT_TO_MASS_SLOPE = -0.8
DEFAULT_SNR_BINS = (0.0, 5.0, 10.0, 20.0, 50.0, 100.0, np.inf)
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
    out = {}
    if "sfh_cum_sigma" in pred:
        cum_true = np.cumsum(truth["sfh"], axis=-1)
        cum_pred = pred.get("sfh_cum", np.cumsum(pred["sfh"], axis=-1))
        # The last cumulative value is 1 by construction: it is left out of the overall fraction.
        w = np.ones_like(cum_true)
        w[:, -1] = 0.0
        out["sfh_cum"] = coverage(cum_pred, pred["sfh_cum_sigma"], cum_true, weights=w)
    if "zh_sigma" in pred:
        out["zh"] = coverage(pred["zh"], pred["zh_sigma"], truth["zh"])
        out["zh_mass_weighted"] = coverage(pred["zh"], pred["zh_sigma"], truth["zh"], weights=truth["sfh"])
    return out


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
