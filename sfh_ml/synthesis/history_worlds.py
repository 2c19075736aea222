"""Histories unlike the training population's, for held-out worlds and domain randomisation.

The training histories (:mod:`sfh_ml.synthesis.sfh`) enrich with time, every track rising from
``zh_start`` to ``zh_final`` as the mass builds up (:class:`~sfh_ml.synthesis.sfh.ChemicalEvolution`),
and only the skew-normal family has bursts, younger than 2 Gyr. Real galaxies need neither: accreted
metal-poor gas dilutes the interstellar medium (a [M/H] that falls with time), a closed box that
enriched early stays flat, and mergers trigger bursts at any age. These functions change one of
those things of an :class:`~sfh_ml.synthesis.sfh.SFHBatch` and keep everything else:

* :func:`with_zh_tracks`: tracks that are constant ([M/H] of the track's end at every age) or
  falling (start and end swapped: the first stars the most metal-rich);
* :func:`with_bursts`: a top-hat burst at a look-back age drawn log-uniformly over
  :data:`ANY_BURST_AGE_YR`, of :data:`ANY_BURST_FRAC` of the mass, lasting :data:`BURST_DURATION_FRAC`
  of its age (it replaces the history's own burst, if it had one).
"""

from dataclasses import replace

import numpy as np

from ..constants import MAX_AGE_YR

__all__ = [
    "ZH_TRACKS",
    "ANY_BURST_AGE_YR",
    "ANY_BURST_FRAC",
    "BURST_DURATION_FRAC",
    "with_zh_tracks",
    "with_bursts",
]

ZH_TRACKS = ("rising", "constant", "falling")
ANY_BURST_AGE_YR = (1e6, 1.2e10)  # log-uniform: every age the bins resolve
ANY_BURST_FRAC = (0.05, 0.5)  # log-uniform share of the total mass
BURST_DURATION_FRAC = 0.1  # duration over look-back age: 1 Gyr at 10 Gyr, 1 Myr at 10 Myr


def with_zh_tracks(sfh, tracks):
    """The histories with other metallicity tracks.

    Parameters
    ----------
    sfh : SFHBatch
        ``n`` histories.
    tracks : ndarray of str, shape (n,)
        One of :data:`ZH_TRACKS` per history: ``"rising"`` keeps the track, ``"constant"`` puts
        every star at the track's final [M/H], ``"falling"`` swaps its start and end.

    Returns
    -------
    SFHBatch
        The same star formation histories; the tracks changed (``zh_start``, ``zh_final``).
    """
    tracks = np.asarray(tracks)
    if tracks.shape != (len(sfh),) or not np.isin(tracks, ZH_TRACKS).all():
        raise ValueError(f"tracks must hold one of {ZH_TRACKS} per history")
    start, final = sfh.zh_start.copy(), sfh.zh_final.copy()
    constant, falling = tracks == "constant", tracks == "falling"
    start[constant] = final[constant]
    start[falling], final[falling] = sfh.zh_final[falling], sfh.zh_start[falling]
    return replace(sfh, zh_start=start, zh_final=final, params=dict(sfh.params))


def with_bursts(sfh, rng, chosen=None):
    """The histories with a burst at any age.

    Parameters
    ----------
    sfh : SFHBatch
    rng : numpy.random.Generator
        Draws the burst of every history (also of those not ``chosen``: the draws do not depend on
        which are).
    chosen : ndarray of bool, shape (n,), optional
        The histories that get one (default: all).

    Returns
    -------
    SFHBatch
        ``burst_frac`` of each chosen history's mass formed at a constant rate between look-back ages
        ``a`` and ``a (1 + BURST_DURATION_FRAC)`` (capped at the age of the Universe), the rest as
        before, scaled by ``1 - burst_frac``; ``params`` updated (``burst_age_yr``,
        ``burst_duration_yr``, ``burst_frac``).
    """
    n = len(sfh)
    chosen = np.ones(n, dtype=bool) if chosen is None else np.asarray(chosen, dtype=bool)
    log_age = rng.uniform(*np.log10(ANY_BURST_AGE_YR), n)
    frac = 10.0 ** rng.uniform(*np.log10(ANY_BURST_FRAC), n)
    age = 10.0**log_age
    duration = np.minimum(BURST_DURATION_FRAC * age, MAX_AGE_YR - age)
    b_frac, b_age, b_dur = (
        np.where(chosen, new, old)
        for new, old in ((frac, sfh.burst_frac), (age, sfh.burst_age_yr), (duration, sfh.burst_duration_yr))
    )
    params = dict(sfh.params)
    params.update(
        burst_frac=np.where(chosen, frac, params.get("burst_frac", np.full(n, np.nan))),
        burst_age_yr=np.where(chosen, age, params.get("burst_age_yr", np.full(n, np.nan))),
        burst_duration_yr=np.where(chosen, duration, params.get("burst_duration_yr", np.full(n, np.nan))),
    )
    return replace(sfh, burst_frac=b_frac, burst_age_yr=b_age, burst_duration_yr=b_dur, params=params)
