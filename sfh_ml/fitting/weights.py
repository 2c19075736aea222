"""From pPXF's mass weights on the (age, [M/H]) grid to the histories the network predicts.

The weights are masses formed in each SSP (age, [M/H]). They give

* per SSP age: the mass formed and its mass-weighted [M/H], comparable to a synthetic set's
  ``sfh_ssp`` / ``zh_ssp``, and the mass- and light-weighted means on that grid, defined as the
  synthesizer defines the truths ``mw_log_age``, ``mw_zh``, ``lw_log_age``, ``lw_zh`` (light: the
  5500 A flux of each SSP before dust, :func:`sfh_ml.synthesis.synthesizer.v_band_flux`);
* per target age bin (the set's ``age_bins_yr``): the mass fraction and [M/H], comparable to
  ``sfh`` / ``zh``. Each SSP stands for the stars formed uniformly in time over its age bin
  (``SSPLibrary.age_edges_yr``, as in :func:`sfh_ml.synthesis.synthesizer.bin_light`), so its mass
  is shared among the target bins in proportion to the time they overlap. A bin that receives no
  mass gets the object's mass-weighted [M/H] (its weight is zero in every mass- or light-weighted
  mean). Means over the bins are those of :func:`sfh_ml.network.metrics.mean_quantities`.
"""

import numpy as np

from ..network.metrics import mean_zh
from ..synthesis.sfh import closed_edges, time_overlap

__all__ = ["ssp_histories", "binned_histories", "ssp_means"]


def ssp_histories(mass, zh_grid):
    """Mass fraction and mass-weighted [M/H] per SSP age.

    Parameters
    ----------
    mass : ndarray, shape (n, n_age, n_zh)
        Mass formed in each SSP (any units, >= 0).
    zh_grid : ndarray, shape (n_zh,)
        [M/H] of the SSPs, dex.

    Returns
    -------
    sfh_ssp : ndarray, shape (n, n_age)
        Fraction of the mass formed at each SSP age (rows sum to 1).
    zh_ssp : ndarray, shape (n, n_age)
        Its mass-weighted [M/H], dex (the object's mass-weighted [M/H] where no mass was formed).
    """
    mass = np.asarray(mass, dtype=np.float64)
    per_age = mass.sum(axis=2)
    total = per_age.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError("every object needs some mass formed (all pPXF weights are zero)")
    mw_zh = np.einsum("naz,z->n", mass, zh_grid) / total[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        zh = np.einsum("naz,z->na", mass, zh_grid) / per_age
    return per_age / total, np.where(per_age > 0, zh, mw_zh[:, None])


def _overlap_matrix(ssp_edges_yr, age_bins_yr):
    """Share of each SSP age bin's time falling in each target bin: (n_age, n_bins), rows sum to 1."""
    overlap = time_overlap(ssp_edges_yr, closed_edges(age_bins_yr))
    return overlap / overlap.sum(axis=1, keepdims=True)


def binned_histories(sfh_ssp, zh_ssp, ssp_edges_yr, age_bins_yr):
    """Mass fraction and mass-weighted [M/H] per target age bin.

    Parameters
    ----------
    sfh_ssp, zh_ssp : ndarray, shape (n, n_age)
        From :func:`ssp_histories`.
    ssp_edges_yr : ndarray, shape (n_age + 1,)
        Age bins of the SSPs (``SSPLibrary.age_edges_yr``), yr.
    age_bins_yr : ndarray, shape (n_bins + 1,)
        Target bin edges, yr (the first bin also holds younger stars, the last ends at 14.1 Gyr).

    Returns
    -------
    sfh : ndarray, shape (n, n_bins)
    zh : ndarray, shape (n, n_bins)
    """
    share = _overlap_matrix(np.asarray(ssp_edges_yr, dtype=float), age_bins_yr)  # (n_age, n_bins)
    sfh = sfh_ssp @ share
    metal = (sfh_ssp * zh_ssp) @ share
    mw_zh = mean_zh(sfh_ssp, zh_ssp)
    with np.errstate(invalid="ignore", divide="ignore"):
        zh = np.where(sfh > 0, metal / sfh, mw_zh[:, None])
    return sfh, zh


def ssp_means(mass, log_age, zh_grid, v_flux):
    """Mass- and light-weighted mean log age and [M/H] on the SSP grid, as the synthesizer's truths.

    Parameters
    ----------
    mass : ndarray, shape (n, n_age, n_zh)
        Mass formed in each SSP.
    log_age : ndarray, shape (n_age,)
        log10 SSP ages, yr.
    zh_grid : ndarray, shape (n_zh,)
        [M/H] of the SSPs, dex.
    v_flux : ndarray, shape (n_age, n_zh)
        5500 A flux per unit mass of each SSP (:func:`sfh_ml.synthesis.synthesizer.v_band_flux`).

    Returns
    -------
    dict of ndarray, shape (n,)
        ``mw_log_age``, ``lw_log_age`` (log10 yr), ``mw_zh``, ``lw_zh`` (dex).
    """
    mass = np.asarray(mass, dtype=np.float64)
    light = mass * v_flux
    out = {}
    for prefix, w in (("mw", mass), ("lw", light)):
        out[f"{prefix}_log_age"] = mean_zh(w.sum(axis=2), np.broadcast_to(log_age, w.shape[:2]))
        out[f"{prefix}_zh"] = mean_zh(w.sum(axis=1), np.broadcast_to(zh_grid, (w.shape[0], w.shape[2])))
    return out
