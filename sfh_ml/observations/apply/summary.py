"""Mean ages, [M/H] and mass fractions of predicted histories: the numbers of the maps and tables."""

import numpy as np

__all__ = [
    "YOUNG_EDGE_YR",
    "OLD_EDGE_YR",
    "LW_NOTE_TABLE",
    "LW_NOTE_NO_TABLE",
    "age_fraction_edges",
    "summarise_histories",
]

# Mass fractions: young, intermediate and old populations, split at the model's age-bin edges nearest
# (in log age) to these ages; the edges used are written into every output.
YOUNG_EDGE_YR, OLD_EDGE_YR = 1e8, 1e9
# What summary.json says of the light-weighted means (LW_LOG_AGE, LW_ZH), with a light table or without.
LW_NOTE_TABLE = "weighted by the 5500 A light of each bin from the model's light table (bin_light)"
LW_NOTE_NO_TABLE = (
    "the model carries no light table (bin_light, zh_grid: trained on a set made before they existed): "
    "the light-weighted means LW_LOG_AGE and LW_ZH are NaN; retrain on a current set to get them"
)


def age_fraction_edges(age_bins_yr, young_yr=YOUNG_EDGE_YR, old_yr=OLD_EDGE_YR):
    """Indices of the model's age-bin edges nearest (in log age) to the young and old limits.

    Returns
    -------
    i_young, i_old : int
        Edges ``age_bins_yr[i_young]`` and ``age_bins_yr[i_old]``, with 0 < i_young < i_old < n_bins.
    """
    edges = np.log10(np.asarray(age_bins_yr, dtype=float))
    inner = np.arange(1, edges.size - 1)
    if inner.size < 2:
        raise ValueError("the model needs at least three age bins for young, intermediate and old fractions")
    i_young = int(inner[np.argmin(np.abs(edges[inner] - np.log10(young_yr)))])
    i_old = int(inner[np.argmin(np.abs(edges[inner] - np.log10(old_yr)))])
    if i_old <= i_young:
        i_old = min(i_young + 1, edges.size - 2)
    return i_young, i_old


def summarise_histories(pred, age_bins_yr, bin_light=None, zh_grid=None):
    """Mean ages, [M/H] and mass fractions of predicted histories, with their uncertainties.

    Uncertainties, from the network's per-bin sigmas taken as independent (the network gives no
    covariance, so these are first estimates): the mass-weighted log age is
    a_N - sum_k c_k (a_(k+1) - a_k) with c_k the cumulative fractions and a_k the log bin centres, so
    sigma^2 = sum_k (a_(k+1) - a_k)^2 sigma_c,k^2; the mass-weighted [M/H] sum_k s_k zh_k has
    sigma^2 = sum_k s_k^2 sigma_zh,k^2 (the SFH's own error left out). Fractions: young = c at the young
    edge (sigma: its cumulative sigma), old = 1 - c at the old edge (likewise), intermediate = their
    difference (sigmas in quadrature). Light-weighted means are weighted by
    :func:`sfh_ml.network.metrics.bin_light_weights` (the model's light table); they get no
    uncertainty, and are NaN for a model without a table.

    Parameters
    ----------
    pred : dict
        ``sfh``, ``sfh_cum``, ``sfh_cum_sigma``, ``zh``, ``zh_sigma``, each shape (n, n_bins).
    age_bins_yr : ndarray, shape (n_bins + 1,)
    bin_light, zh_grid : ndarray, shape (n_bins, n_zh) and (n_zh,), optional
        The model's light table (``get_metadata(model)["bin_light"]``, ``["zh_grid"]``).

    Returns
    -------
    dict of ndarray, shape (n,)
        ``mw_log_age``, ``mw_log_age_err``, ``lw_log_age`` (log10 yr), ``mw_zh``, ``mw_zh_err``,
        ``lw_zh`` (dex), ``f_young``, ``f_young_err``, ``f_intermediate``, ``f_intermediate_err``,
        ``f_old``, ``f_old_err`` (mass fractions).
    """
    from ...network import metrics

    sfh, cum, cum_sig = pred["sfh"], pred["sfh_cum"], pred["sfh_cum_sigma"]
    zh, zh_sig = pred["zh"], pred["zh_sigma"]
    log_centre = np.log10(metrics.bin_centres_yr(age_bins_yr))
    i_young, i_old = age_fraction_edges(age_bins_yr)
    with np.errstate(invalid="ignore"):
        means = metrics.mean_quantities(sfh, zh, age_bins_yr, bin_light, zh_grid)
        no_light = np.full(len(sfh), np.nan)  # no light table: never an approximation
        out = {
            "mw_log_age": means["mw_log_age"],
            "mw_log_age_err": np.sqrt((cum_sig[:, :-1] ** 2) @ (np.diff(log_centre) ** 2)),
            "lw_log_age": means.get("lw_log_age", no_light),
            "mw_zh": means["mw_zh"],
            "mw_zh_err": np.sqrt(np.sum((sfh * zh_sig) ** 2, axis=1)),
            "lw_zh": means.get("lw_zh", no_light),
            "f_young": cum[:, i_young - 1],
            "f_young_err": cum_sig[:, i_young - 1],
            "f_intermediate": cum[:, i_old - 1] - cum[:, i_young - 1],
            "f_intermediate_err": np.hypot(cum_sig[:, i_old - 1], cum_sig[:, i_young - 1]),
            "f_old": 1.0 - cum[:, i_old - 1],
            "f_old_err": cum_sig[:, i_old - 1],
        }
    return out
