"""Calibrated uncertainties: one variance scaling per output and age bin, fitted on held-out data.

A network trained with a Gaussian NLL need not give sigmas that mean what they say: the fraction of
truths within 1 sigma of a v2 on its test set was 0.88 for the cumulative SFH (too cautious) and
0.71 for [M/H]. :func:`calibrate` predicts a labelled *calibration set* (objects the network was
not trained on), measures ``z = |pred - true| / sigma`` of each output in each age bin ``k`` and
takes as factor ``s_k`` the ``z`` below which 68.27 % of the set lies (:func:`sigma_scale_factors`),
with the weights of :func:`sfh_ml.network.metrics.coverage_targets`: every object alike for the
cumulative SFH, the true mass fraction of the bin for [M/H] (a bin where an object formed no stars
says nothing about its [M/H]). Multiplying ``sigma_k`` by ``s_k`` makes the 1-sigma coverage 0.683
on the calibration set in every bin, and on new objects drawn alike. The errors have heavier tails
than a Gaussian's (the cumulative SFH's youngest bins most: a few young objects far off, many old
ones with almost no young mass), so 2 sigma would hold far fewer than 95 %: the same fit at 95.45 %
on the calibrated sigmas gives tail factors ``t_k`` (``tail_scale_sfh_cum``, ``tail_scale_zh``),
and ``predict`` returns the 2-sigma half-widths ``2 t_k sigma_k`` (``sfh_cum_2sigma``,
``zh_2sigma``). A bin with fewer than
:data:`MIN_EFFECTIVE_OBJECTS` effective objects (``(sum w)^2 / sum w^2``) takes the factor pooled
over all bins; so does the last bin of the cumulative SFH (1 by construction, weight 0).

The factors are stored in the model (:class:`~sfh_ml.network.layers.HistoryHead`'s
``sigma_scale_sfh_cum`` and ``sigma_scale_zh``) and applied by :func:`sfh_ml.network.predict`, so
that :func:`~sfh_ml.network.evaluate`, :func:`~sfh_ml.network.predict_file` and
:func:`sfh_ml.observations.apply_cube` all give calibrated sigmas. Calibrating a calibrated model
multiplies its factors by the new ones (fitted to the sigmas it already gives).

:func:`calibrate_ood` calibrates the other number a model carries about itself: the thresholds of
its out-of-distribution flag (:mod:`~sfh_ml.network.goodness`), fitted on held-out sets of its own
world with noise (:func:`~sfh_ml.network.goodness.fit_ood_thresholds`) and stored in the head's
``ood_thresholds``, which ``predict(..., goodness=True)`` then uses.
"""

from pathlib import Path

import numpy as np

from ..files import check_output
from ..utils import check_positive_int
from . import metrics
from .goodness import (
    MIN_OOD_OBJECTS,
    OOD_AGE_ERROR_DEX,
    OOD_PERCENTILE,
    age_is_right,
    fit_ood_thresholds,
    flag_rate,
)
from .inference import (
    QUALITY_UNUSABLE,
    _band_order,
    _goodness,
    describe_quality,
    mask_missing,
    predict,
)
from .loading import load_data, load_model
from .metadata import check_compatible, get_metadata
from .training import _atomic_save_model

__all__ = [
    "TARGET_COVERAGE",
    "TWO_SIGMA_COVERAGE",
    "MIN_OBJECTS",
    "MIN_EFFECTIVE_OBJECTS",
    "sigma_scale_factors",
    "calibrate",
    "calibrate_ood",
]

TARGET_COVERAGE = float(metrics.gaussian_coverage(1.0))  # 0.6827: a Gaussian within 1 sigma
TWO_SIGMA_COVERAGE = float(metrics.gaussian_coverage(2.0))  # 0.9545: within 2 sigma
# Usable objects a calibration set needs: the 1-sigma coverage of one bin from n objects scatters by
# sqrt(0.683 * 0.317 / n), 0.03 at n = 200.
MIN_OBJECTS = 200
MIN_EFFECTIVE_OBJECTS = 30  # a bin with fewer (effective, weighted) objects takes the pooled factor
# Which coverage target (metrics.coverage_targets) each factor calibrates.
SCALED_TARGETS = {"sigma_scale_sfh_cum": "sfh_cum", "sigma_scale_zh": "zh_mass_weighted"}


def _weighted_quantile(z, w, q):
    """The smallest ``z_i`` with ``sum(w[z <= z_i]) >= q sum(w)`` (the coverage definition of metrics)."""
    order = np.argsort(z)
    cum = np.cumsum(w[order])
    return float(z[order][np.searchsorted(cum, q * cum[-1])])


def _bin_factors(pred, sigma, true, weights, target, min_effective):
    """Factors (n_bins,) and the bins that took the pooled factor, for one coverage target."""
    z = np.abs(pred - true) / sigma  # (n, n_bins)
    w = np.ones_like(z) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), z.shape)
    valid = np.isfinite(z) & (w > 0)
    if not valid.any():
        raise ValueError("no element with a finite error and a weight > 0 to calibrate on")
    pooled = _weighted_quantile(z[valid], w[valid], target)
    factors, pooled_bins = np.full(z.shape[1], pooled), []
    for k in range(z.shape[1]):
        wk = w[valid[:, k], k]
        n_eff = wk.sum() ** 2 / (wk**2).sum() if wk.size else 0.0
        if n_eff < min_effective:
            pooled_bins.append(k)
        else:
            factors[k] = _weighted_quantile(z[valid[:, k], k], wk, target)
    return factors, pooled_bins


def sigma_scale_factors(pred, truth, target=TARGET_COVERAGE, min_effective=MIN_EFFECTIVE_OBJECTS):
    """Per-bin factors of the predicted sigmas that give a chosen 1-sigma coverage.

    Parameters
    ----------
    pred : dict of array, each shape (n, n_bins)
        :func:`sfh_ml.network.predict` output of usable objects: ``sfh_cum``, ``sfh_cum_sigma``,
        ``zh``, ``zh_sigma``.
    truth : dict of array, each shape (n, n_bins)
        ``sfh`` (mass fractions) and ``zh`` (dex).
    target : float
        Fraction of the (weighted) truths to bring within 1 sigma (default 0.6827).
    min_effective : float
        Bins with fewer effective objects take the factor pooled over all bins.

    Returns
    -------
    dict
        ``sigma_scale_sfh_cum`` and ``sigma_scale_zh``: ndarray (n_bins,) of factors > 0, to multiply
        ``sfh_cum_sigma`` and ``zh_sigma`` by; ``pooled_bins``: for each, the list of bins that took
        the pooled factor.

    Raises
    ------
    ValueError
        A sigma is missing from ``pred``, or a factor would be 0 (errors of exactly 0: nothing to
        calibrate against).
    """
    if not 0 < target < 1:
        raise ValueError(f"target must be in (0, 1), got {target}")
    targets = metrics.coverage_targets(pred, truth)
    out = {"pooled_bins": {}}
    for name, key in SCALED_TARGETS.items():
        if key not in targets:
            raise ValueError(f"pred has no sigma for {key} (sfh_cum_sigma, zh_sigma)")
        p, sigma, true, weights = (None if a is None else np.asarray(a, np.float64) for a in targets[key])
        factors, pooled = _bin_factors(p, sigma, true, weights, target, min_effective)
        if not np.all(factors > 0):
            raise ValueError(f"{name}: the errors of {key} are 0 in bins {np.flatnonzero(factors <= 0)}")
        out[name], out["pooled_bins"][name] = factors, pooled
    return out


def _coverage(pred, truth):
    """1- and 2-sigma coverage of each target, overall and per bin (JSON-able; None: no weight)."""
    out = {}
    for name, cov in metrics.target_coverage(pred, truth).items():
        out[name] = {
            k: {"all": v["all"], "per_bin": [None if np.isnan(x) else float(x) for x in v["per_bin"]]}
            for k, v in cov.items()
        }
    return out


def _checked_set(model, meta, model_path, path, filters, n_max):
    """A labelled set (:func:`~sfh_ml.network.loading.load_data`) on the model's grids and bands;
    ValueError naming the file and the model otherwise."""
    data = load_data(path, n_max=n_max)
    bands = _band_order(data["filters"], filters, path, meta)
    try:
        check_compatible(model, data["wave_aa"], data["age_bins_yr"], bands)
    except ValueError as err:
        raise ValueError(f"{path} cannot calibrate {model_path}: {err}") from None
    return data


def calibrate(model_path, calib_path, out_path, overwrite=False, n_max=None, batch_size=1024, filters=None):
    """Fit the sigma factors of a model on a calibration set and save the calibrated model.

    Parameters
    ----------
    model_path : str or Path
        A trained model (``.keras``).
    calib_path : str or Path
        A labelled set (``sfh-ml generate`` schema) on the model's grids, of objects the model was
        not trained on (a fresh seed), drawn like those it will be used on.
    out_path : str or Path
        Where the calibrated model goes (``.keras``; written atomically, never over the model or
        the data).
    overwrite : bool
        Replace an existing ``out_path``.
    n_max : int, optional
        Use only the first ``n_max`` objects of the set.
    batch_size : int
    filters : sequence of str, optional
        Band order of the set's photometry; required if it has no ``filters`` dataset.

    Returns
    -------
    dict
        ``model``, ``data``, ``out`` (paths), ``n_objects`` (usable objects used), ``n_unusable``,
        ``quality`` (counts per flag), ``sigma_scale_sfh_cum`` and ``sigma_scale_zh`` (the factors
        now in the model, lists of n_bins floats), ``tail_scale_sfh_cum`` and ``tail_scale_zh`` (the
        factors of the 2-sigma half-widths, fitted on the calibrated sigmas), ``pooled_bins``, and
        ``coverage_before`` / ``coverage_after`` on the calibration set (``sfh_cum``, ``zh``,
        ``zh_mass_weighted``: within 1 sigma and the 2-sigma interval, overall and per bin).

    Raises
    ------
    FileExistsError
        ``out_path`` exists and ``overwrite`` is False.
    ValueError
        ``out_path`` is an input; the set is on other grids or bands, or has fewer than
        :data:`MIN_OBJECTS` usable objects (the message names the file).
    """
    check_output(out_path, overwrite, inputs=(model_path, calib_path))
    model = load_model(model_path)
    meta = get_metadata(model)
    data = _checked_set(model, meta, model_path, calib_path, filters, n_max)
    pred = predict(model, data["spectra"], data["photometry"], batch_size=batch_size)
    quality = pred["quality"]
    usable = (quality & QUALITY_UNUSABLE) == 0
    if usable.sum() < MIN_OBJECTS:
        raise ValueError(
            f"{calib_path} has {int(usable.sum())} usable objects ({usable.size} in all, flags "
            f"{describe_quality(quality)}): calibration needs at least {MIN_OBJECTS}"
        )
    pred = {key: value[usable] for key, value in pred.items() if key != "quality"}
    truth = {"sfh": data["sfh"][usable], "zh": data["zh"][usable]}
    fit = sigma_scale_factors(pred, truth)
    before = _coverage(pred, truth)
    pred["sfh_cum_sigma"] = pred["sfh_cum_sigma"] * fit["sigma_scale_sfh_cum"]
    pred["zh_sigma"] = pred["zh_sigma"] * fit["sigma_scale_zh"]
    # the 2-sigma half-widths, fitted on the calibrated sigmas: 95.45 % of the truths within 2 s t sigma
    tails = sigma_scale_factors(pred, truth, target=TWO_SIGMA_COVERAGE)
    tails = {name: tails[name] / 2.0 for name in SCALED_TARGETS}
    pred["sfh_cum_2sigma"] = 2.0 * pred["sfh_cum_sigma"] * tails["sigma_scale_sfh_cum"]
    pred["zh_2sigma"] = 2.0 * pred["zh_sigma"] * tails["sigma_scale_zh"]
    after = _coverage(pred, truth)
    scales = {}
    for name in SCALED_TARGETS:  # fitted to the sigmas the model gives: on top of its own factors
        scales[name] = fit[name] * (1.0 if meta[name] is None else meta[name])
    head = model.get_layer("history")
    head.set_sigma_scale(scales["sigma_scale_sfh_cum"], scales["sigma_scale_zh"])
    head.set_tail_scale(tails["sigma_scale_sfh_cum"], tails["sigma_scale_zh"])  # relative: replaced
    _atomic_save_model(model, out_path)
    return {
        "model": str(model_path),
        "data": str(calib_path),
        "out": str(out_path),
        "n_objects": int(usable.sum()),
        "n_unusable": int((~usable).sum()),
        "quality": describe_quality(quality),
        **{name: value.tolist() for name, value in scales.items()},
        "tail_scale_sfh_cum": tails["sigma_scale_sfh_cum"].tolist(),
        "tail_scale_zh": tails["sigma_scale_zh"].tolist(),
        "pooled_bins": fit["pooled_bins"],
        "coverage_before": before,
        "coverage_after": after,
    }


def calibrate_ood(
    model_path,
    data_paths,
    out_path,
    overwrite=False,
    n_nodes=1,
    n_max=None,
    batch_size=1024,
    filters=None,
    percentile=OOD_PERCENTILE,
    max_age_error_dex=OOD_AGE_ERROR_DEX,
    min_objects=MIN_OOD_OBJECTS,
    progress=None,
):
    """Fit the out-of-distribution thresholds of a model on held-out sets and save the model with them.

    Each set is predicted, each prediction re-synthesised and fitted to the data as
    ``predict(..., goodness=True)`` does (:func:`sfh_ml.network.goodness.resynthesis_fit`), and the
    table is :func:`~sfh_ml.network.goodness.fit_ood_thresholds` of the objects' ``residual_fraction``
    over those whose age is right (:func:`~sfh_ml.network.goodness.age_is_right`): one node per set
    (``n_nodes`` per set for sets spanning a range of S/N). The thresholds replace any the model had
    (they do not depend on them); the rest of the model is untouched.

    Parameters
    ----------
    model_path : str or Path
        A trained model (``.keras``).
    data_paths : str or Path, or sequence of them
        Labelled sets (``sfh-ml generate`` schema, with ``noise`` and ``photometry_err``) on the
        model's grids, of objects it was not trained on, drawn from its own world: typically one
        per S/N (as ``benchmarks/ood.py --calibrate``: 1000 objects at S/N 10, 20, 50 and 100).
    out_path : str or Path
        Where the model with its thresholds goes (``.keras``; written atomically, never over the
        model or the data).
    overwrite : bool
        Replace an existing ``out_path``.
    n_nodes : int
        Nodes of the table per set: bins of equal numbers of objects in the model S/N (1: each set
        is one S/N).
    n_max : int, optional
        Use only the first ``n_max`` objects of each set.
    batch_size : int
    filters : sequence of str, optional
        Band order of the sets' photometry; required for a set without a ``filters`` dataset.
    percentile : float
        Percentile of ``residual_fraction`` over the right-age objects (90: ~10 % false alarms).
    max_age_error_dex : float
        An object's age is right within this (mass-weighted log age, bin level).
    min_objects : int
        The fewest right-age objects a node may be fitted on.
    progress : bool, optional
        tqdm bar of the goodness of fit (default: for large sets).

    Returns
    -------
    dict
        ``model``, ``data`` (list), ``out`` (paths); ``ood_thresholds``: the table now in the model,
        list of ``[snr_model, threshold]``; ``sets``: per set, ``data``, ``n_objects``, ``n_fitted``
        (usable and re-synthesised), ``n_age_right``, ``median_snr_model``, and ``false_alarm`` /
        ``false_alarm_before``: the fraction of its right-age objects flagged with the new table and
        with the one the model used before (its own or the module default).

    Raises
    ------
    FileExistsError
        ``out_path`` exists and ``overwrite`` is False.
    ValueError
        ``out_path`` is an input; a set is on other grids or bands; a node has fewer than
        ``min_objects`` right-age objects (the messages name the file).
    KeyError
        A set has no ``noise`` or ``photometry_err``.
    """
    from ..synthesis.dataset import read_dataset
    from .goodness import ood_threshold

    paths = [data_paths] if isinstance(data_paths, str | Path) else list(data_paths)
    if not paths:
        raise ValueError("calibrate_ood needs at least one held-out set")
    check_positive_int(n_nodes, "n_nodes (--ood-nodes)")  # before any work
    check_output(out_path, overwrite, inputs=(model_path, *paths))
    model = load_model(model_path)
    meta = get_metadata(model)
    rows = slice(0, None if n_max is None else int(n_max))
    columns = {key: [] for key in ("residual_fraction", "snr_model", "ok", "group")}
    for path in paths:
        data = _checked_set(model, meta, model_path, path, filters, n_max)
        errors = read_dataset(path, ["noise", "photometry_err"], index=rows)
        spectra, photometry = mask_missing(data["spectra"], data["photometry"])
        pred = predict(model, spectra, photometry, batch_size=batch_size)
        fit = _goodness(
            meta,
            pred,
            spectra.astype(np.float64),
            errors["noise"],
            photometry.astype(np.float64),
            errors["photometry_err"],
            keys=("residual_fraction", "snr_model"),
        )
        columns["residual_fraction"].append(fit["residual_fraction"])
        columns["snr_model"].append(fit["snr_model"])
        columns["ok"].append(age_is_right(pred["sfh"], data["sfh"], data["age_bins_yr"], max_age_error_dex))
        columns["group"].append(np.full(len(pred["sfh"]), str(path), dtype=object))
    rf, snr, ok, group = (np.concatenate(columns[k]) for k in columns)
    table = fit_ood_thresholds(rf, snr, ok, group, n_nodes, percentile, min_objects)
    before = ood_threshold(snr, meta["ood_thresholds"])
    after = ood_threshold(snr, table)
    sets = []
    for path in paths:
        mine = group == str(path)
        fitted = mine & np.isfinite(rf) & np.isfinite(snr)
        right = fitted & ok
        sets.append(
            {
                "data": str(path),
                "n_objects": int(mine.sum()),
                "n_fitted": int(fitted.sum()),
                "n_age_right": int(right.sum()),
                "median_snr_model": float(np.median(snr[fitted])) if fitted.any() else float("nan"),
                "false_alarm": flag_rate(rf > after, right),
                "false_alarm_before": flag_rate(rf > before, right),
            }
        )
    model.get_layer("history").set_ood_thresholds(table)
    _atomic_save_model(model, out_path)
    return {
        "model": str(model_path),
        "data": [str(path) for path in paths],
        "out": str(out_path),
        "ood_thresholds": table.tolist(),
        "sets": sets,
    }


def calibrate_trust(
    model_path,
    data_paths,
    out_path,
    overwrite=False,
    n_max=None,
    batch_size=1024,
    filters=None,
    false_alarm=None,
):
    """Fit the trust score of a model on held-out sets and save the model with its parameters.

    Each set is predicted with and without its HST fluxes, the features of
    :func:`sfh_ml.network.trust.trust_features` are computed, and
    :func:`~sfh_ml.network.trust.fit_trust` fits the logistic regression of the wrong answers
    (mass-weighted log age off by more than :data:`~sfh_ml.network.trust.WRONG_AGE_DEX`) on them,
    over all the sets together, with the threshold that flags ``false_alarm`` of the right ones. The
    sets should span what the network will meet: its own world and the test worlds of
    :data:`sfh_ml.synthesis.TEST_WORLDS`, at a range of S/N, none of them used in training. The
    parameters are stored in the head (``trust_params``) and used by ``predict(..., trust=True)``;
    the rest of the model is untouched. Calibrate the sigmas first (:func:`calibrate`): the features
    are the calibrated sigmas.

    Parameters
    ----------
    model_path : str or Path
        A trained (and calibrated) model (``.keras``).
    data_paths : str or Path, or sequence of them
        Labelled sets (``sfh-ml generate`` schema) on the model's grids.
    out_path : str or Path
        Where the model with its trust parameters goes (atomic, never over an input).
    overwrite : bool
        Replace an existing ``out_path``.
    n_max : int, optional
        Use only the first ``n_max`` objects of each set.
    batch_size : int
    filters : sequence of str, optional
        Band order of the sets' photometry; required for a set without a ``filters`` dataset.
    false_alarm : float, optional
        Fraction of the right answers flagged (default :data:`~sfh_ml.network.trust.FALSE_ALARM`).

    Returns
    -------
    dict
        ``model``, ``data``, ``out`` (paths); ``trust_params``: what is now in the model; ``sets``:
        per set, ``data``, ``n_objects`` and :func:`~sfh_ml.network.trust.trust_rates` of the fitted
        score on it (in-sample: measure on other sets, as ``benchmarks/trust.py`` does, leaving
        each world out).

    Raises
    ------
    FileExistsError
        ``out_path`` exists and ``overwrite`` is False.
    ValueError
        ``out_path`` is an input; a set is on other grids or bands; fewer than 10 wrong or 10 right
        answers in all.
    """
    from . import trust

    paths = [data_paths] if isinstance(data_paths, str | Path) else list(data_paths)
    if not paths:
        raise ValueError("calibrate_trust needs at least one held-out set")
    check_output(out_path, overwrite, inputs=(model_path, *paths))
    model = load_model(model_path)
    meta = get_metadata(model)
    features, errors = [], []
    for path in paths:
        data = _checked_set(model, meta, model_path, path, filters, n_max)
        spectra, photometry = mask_missing(data["spectra"], data["photometry"])
        pred = predict(model, spectra, photometry, batch_size=batch_size)
        no_phot = predict(model, spectra, np.full_like(photometry, np.nan), batch_size=batch_size)
        features.append(trust.trust_features(pred, no_phot, meta["age_bins_yr"]))
        edges = data["age_bins_yr"]
        errors.append(metrics.mean_log_age(pred["sfh"], edges) - metrics.mean_log_age(data["sfh"], edges))
    kw = {} if false_alarm is None else {"false_alarm": float(false_alarm)}
    params = trust.fit_trust(np.concatenate(features), np.concatenate(errors), **kw)
    sets = []
    for path, x, err in zip(paths, features, errors):
        rates = trust.trust_rates(trust.trust_score(x, params), err, params["threshold"])
        sets.append({"data": str(path), "n_objects": len(err), **rates})
    model.get_layer("history").set_trust_params(params)
    _atomic_save_model(model, out_path)
    return {
        "model": str(model_path),
        "data": [str(p) for p in paths],
        "out": str(out_path),
        "trust_params": model.get_layer("history").trust_params,
        "sets": sets,
    }
