"""How far to trust a prediction: a score of whether the answer is right, and a wrong-redshift check.

The out-of-distribution flag (:mod:`~sfh_ml.network.goodness`) answers "was this spectrum made by our
generator?", which is "no" for every real spectrum, right or wrong. The trust score answers "is the
mass-weighted age right?" (within :data:`RIGHT_AGE_DEX` of the truth, against wrong: off by more than
:data:`WRONG_AGE_DEX`), from what the network itself says about each object:

* its calibrated 1-sigma of the cumulative SFH and of [M/H], averaged over the bins (a network
  calibrated by :func:`sfh_ml.network.calibrate` quotes sigmas on one scale, whatever its size);
* how much the mass-weighted age moves when the HST fluxes are left out (one more pass of the
  network: the two halves of the data, the spectrum and the photometry, agree or not).

A logistic regression of these (:func:`fit_trust`) gives the probability that the age is wrong;
``trust = 1 - p_wrong`` in [0, 1] and the flag :data:`~sfh_ml.network.quality.QUALITY_UNTRUSTED`
is set below the fitted threshold, chosen so that about :data:`FALSE_ALARM` of the right answers of
the calibration worlds are flagged. A network carries its own parameters once
:func:`sfh_ml.network.calibrate_trust` has fitted them into its file (the shipped v3 does); the
others use :data:`TRUST_PARAMS`, fitted for the earlier v2 network by
``benchmarks/trust.py --fit`` on every test world of :data:`sfh_ml.synthesis.TEST_WORLDS`; the
benchmark measures each world with the parameters fitted on the others (leave one world out). The
fit gives the [M/H] sigma and the photometry shift almost no weight: the sigma of the cumulative SFH
carries what the network knows about its own errors. What it measured for the v2 network (1500
objects per world, S/N 10-100): ROC AUC 0.83-0.94 on every world, 65-87 % of the wrong answers
flagged at 11-18 % false alarms, except on bursts at any age (46 % of the answers wrong; 83 %
flagged, 32 % false alarms): the score knows when an answer is uncertain, not when the network is
confidently wrong, and a prior the training never had (a late burst in an old population) is the
second kind.

Tried and left out (``benchmarks/trust.py``, shipped network and the workshop network of chapter
2): the spread of the mass-weighted age over four predictions each made with a quarter of the
spectrum masked adds nothing to the sigmas (ROC AUC 0.91 with it, 0.90-0.91 without) at four times
the cost; the residual of the re-synthesised prediction (``residual_fraction``) grows with every
difference of the data from the generator, right or wrong (AUC 0.38-0.63), and it is what model
error inflates on real spectra. The disagreement with a full regularised pPXF fit on the same templates
(the strongest per-object refinement) separates less than the sigmas (AUC 0.40-0.87 against
0.87-0.96 on the own, bursts, parametric and falling-[M/H] worlds) and adds nothing combined: pPXF's
regularisation is a prior too, and it is as wrong where the network's is. The predicted
mass-weighted age (and its square) as two more inputs raise the AUC by 0.02 on six of seven worlds
(leave one world out, 1500 objects each) but the false alarms on the parametric histories from 0.18
to 0.27: the score then learns where the training prior makes errors, which is what a shift moves.

The wrong-redshift check (:func:`redshift_offset`) cross-correlates the spectrum with the
re-synthesised prediction (:func:`~sfh_ml.network.goodness.resynthesis_fit`) over velocity lags of
+-:data:`MAX_OFFSET_KMS`, both divided by their running means so that only the absorption and
emission features count. A spectrum brought to the rest frame with the wrong redshift matches its
model best at a lag away from zero; model error (another stellar library, a real galaxy) changes
the depth of the features, not where they are, so the check is relative: the chi-square gained at
the best lag over that at zero, as a fraction of the best lag's (``gain_fraction``), above
:data:`MIN_GAIN_FRACTION`, with an absolute gain above :data:`MIN_GAIN_CHI2` and a lag beyond
:data:`MIN_OFFSET_KMS`, sets :data:`~sfh_ml.network.quality.QUALITY_WRONG_REDSHIFT`.
"""

import numpy as np

from ..constants import C_KMS
from .metrics import mean_log_age

__all__ = [
    "TRUST_KEYS",
    "TRUST_FEATURES",
    "TRUST_PARAMS",
    "RIGHT_AGE_DEX",
    "WRONG_AGE_DEX",
    "FALSE_ALARM",
    "MAX_OFFSET_KMS",
    "MIN_OFFSET_KMS",
    "MIN_GAIN_FRACTION",
    "MIN_GAIN_CHI2",
    "trust_features",
    "trust_rates",
    "roc_auc",
    "fit_trust",
    "trust_score",
    "check_trust_params",
    "redshift_offset",
    "wrong_redshift",
]

# What predict(..., trust=True) adds, per object (redshift_offset_kms: with the goodness of fit only)
TRUST_KEYS = ("trust", "redshift_offset_kms")
RIGHT_AGE_DEX = 0.15  # a right answer: mass-weighted log age within this of the truth (bin level)
WRONG_AGE_DEX = 0.3  # a wrong one: off by more than this
FALSE_ALARM = 0.15  # the fraction of right answers the fitted threshold flags (calibration worlds)
TRUST_FEATURES = ("log_sfh_cum_sigma", "log_zh_sigma", "log_photometry_shift")
# Photometry shifts below this (dex) count as this: the log of the feature stays finite.
_MIN_SHIFT_DEX = 1e-3
# The v2 network's (the default of networks without their own), fitted on 1500 objects of each of
# the 14 test worlds at S/N 10-100 (``benchmarks/trust.py --fit``): standardisation, logistic
# weights (intercept first), threshold.
TRUST_PARAMS = {
    "mean": [-1.4053, -1.1016, -1.5532],
    "scale": [0.23904, 0.17430, 0.53767],
    "weights": [-2.3174, 1.6811, -0.01598, 0.03111],
    "threshold": 0.8437,
    "n_wrong": 3630,
    "n_right": 13249,
}

MAX_OFFSET_KMS = 16000.0  # lags of the wrong-redshift scan: dz up to ~0.053 either way
MIN_OFFSET_KMS = 300.0  # a best lag closer to zero than this is the right redshift
MIN_GAIN_FRACTION = 0.5  # the best lag explains at least half the features' chi-square ...
MIN_GAIN_CHI2 = 5.0  # ... and at least this much chi-square (10: 92 % of dz 0.005-0.01 caught, 5: 97 %)
_SMOOTH_PX = 101  # running mean the features are divided by (~5,500 km/s on the MUSE grid)
_EDGE_PX = 200  # pixels left out at each end (the running mean's edge, the shifted model's)


def trust_features(pred, pred_without_photometry, age_bins_yr):
    """The inputs of the trust score, one row per object.

    Parameters
    ----------
    pred : dict
        :func:`sfh_ml.network.predict` output with the HST fluxes: ``sfh``, ``sfh_cum_sigma``,
        ``zh_sigma``, shape (n, n_bins).
    pred_without_photometry : dict
        The same network's prediction from the spectra alone (``sfh``, (n, n_bins)).
    age_bins_yr : ndarray, shape (n_bins + 1,)

    Returns
    -------
    ndarray, shape (n, len(TRUST_FEATURES))
        log10 of the mean calibrated sigma of the cumulative SFH and of [M/H] (dex), and log10 of
        the shift of the mass-weighted log age without the fluxes (dex, floored at 1e-3); NaN rows
        for objects without a prediction.
    """
    age = mean_log_age(pred["sfh"], age_bins_yr)
    age_spec = mean_log_age(pred_without_photometry["sfh"], age_bins_yr)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack(
            [
                np.log10(np.mean(pred["sfh_cum_sigma"], axis=1)),
                np.log10(np.mean(pred["zh_sigma"], axis=1)),
                np.log10(np.maximum(np.abs(age - age_spec), _MIN_SHIFT_DEX)),
            ],
            axis=1,
        )


def roc_auc(score, positive, negative):
    """ROC AUC of ``score`` (higher: more likely positive) between two groups (ties count half).

    Parameters
    ----------
    score : ndarray, shape (n,)
    positive, negative : ndarray of bool, shape (n,)

    Returns
    -------
    float
        NaN if either group is empty.
    """
    from scipy.stats import rankdata

    s = np.concatenate([score[positive], score[negative]])
    n1, n0 = int(positive.sum()), int(negative.sum())
    if not n1 or not n0:
        return float("nan")
    r = rankdata(s)
    return float((r[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def trust_rates(trust, age_error_dex, threshold=None):
    """How well a trust score tells wrong answers from right ones.

    Parameters
    ----------
    trust : ndarray, shape (n,)
        :func:`trust_score` (NaN: not predicted, left out).
    age_error_dex : ndarray, shape (n,)
        Mass-weighted log-age errors, predicted minus true (bin level).
    threshold : float, optional
        Objects below it are flagged (default: that of :data:`TRUST_PARAMS`, as ``predict`` flags).

    Returns
    -------
    dict
        ``n`` (objects scored); ``wrong_fraction`` (error > :data:`WRONG_AGE_DEX`); ``hit_rate``
        (the wrong ones flagged); ``false_alarm`` (those within :data:`RIGHT_AGE_DEX` flagged);
        ``auc``: ROC AUC of ``-trust`` between the two (NaN where a group is empty).
    """
    threshold = TRUST_PARAMS["threshold"] if threshold is None else threshold
    ok = np.isfinite(trust) & np.isfinite(age_error_dex)
    trust, err = np.asarray(trust)[ok], np.abs(np.asarray(age_error_dex)[ok])
    flag = trust < threshold
    wrong, right = err > WRONG_AGE_DEX, err < RIGHT_AGE_DEX
    return {
        "n": int(ok.sum()),
        "wrong_fraction": float(wrong.mean()) if ok.any() else float("nan"),
        "hit_rate": float(flag[wrong].mean()) if wrong.any() else float("nan"),
        "false_alarm": float(flag[right].mean()) if right.any() else float("nan"),
        "auc": roc_auc(-trust, wrong, right),
    }


def _logistic(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def fit_trust(features, age_error_dex, false_alarm=FALSE_ALARM, l2=1e-3, iterations=50):
    """Fit the trust score: a logistic regression of wrong answers on the features, and its threshold.

    Parameters
    ----------
    features : ndarray, shape (n, k)
        :func:`trust_features` of held-out objects (several worlds together).
    age_error_dex : ndarray, shape (n,)
        Their mass-weighted log-age errors (predicted minus true, bin level).
    false_alarm : float
        Fraction of the right answers (error < :data:`RIGHT_AGE_DEX`) the threshold flags.
    l2 : float
        Ridge penalty of the weights (standardised features).
    iterations : int
        Newton steps (iteratively reweighted least squares).

    Returns
    -------
    dict
        ``mean``, ``scale`` (k,): the standardisation; ``weights`` (k + 1,): intercept first;
        ``threshold``: trust below it is flagged; ``n_wrong``, ``n_right``: the objects it was
        fitted on. Lists of float (JSON).

    Raises
    ------
    ValueError
        Fewer than 10 wrong or 10 right answers among the finite rows.
    """
    x = np.asarray(features, dtype=np.float64)
    err = np.abs(np.asarray(age_error_dex, dtype=np.float64))
    ok = np.all(np.isfinite(x), axis=1) & np.isfinite(err)
    wrong, right = ok & (err > WRONG_AGE_DEX), ok & (err < RIGHT_AGE_DEX)
    if wrong.sum() < 10 or right.sum() < 10:
        raise ValueError(
            f"fit_trust needs at least 10 wrong and 10 right answers, got {wrong.sum()} and {right.sum()}"
        )
    mean, scale = x[ok].mean(0), x[ok].std(0) + 1e-12
    z = np.c_[np.ones(ok.sum()), (x[ok] - mean) / scale]
    y = wrong[ok].astype(np.float64)
    w = np.zeros(z.shape[1])
    for _ in range(iterations):
        p = _logistic(z @ w)
        grad = z.T @ (p - y) + l2 * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + l2 * np.eye(w.size)
        w -= np.linalg.solve(hess, grad)
    params = {"mean": mean.tolist(), "scale": scale.tolist(), "weights": w.tolist(), "threshold": 0.0}
    trust = trust_score(x[right], params)
    params["threshold"] = float(np.quantile(trust, false_alarm))
    params.update(n_wrong=int(wrong.sum()), n_right=int(right.sum()))
    return params


def check_trust_params(params):
    """The trust parameters as plain JSON (lists of float), or None; ValueError if malformed.

    Parameters
    ----------
    params : dict or None
        :func:`fit_trust` output: ``mean``, ``scale`` (k,), ``weights`` (k + 1,) and ``threshold``,
        all finite, scales > 0, threshold in [0, 1]; ``n_wrong`` and ``n_right`` are kept if given.
    """
    if params is None:
        return None
    try:
        mean, scale, weights = (np.asarray(params[k], dtype=np.float64) for k in ("mean", "scale", "weights"))
        threshold = float(params["threshold"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"trust parameters need mean, scale, weights and threshold (fit_trust): {err}"
        ) from err
    k = len(TRUST_FEATURES)
    good = (
        mean.shape == scale.shape == (k,)
        and weights.shape == (k + 1,)
        and np.all(np.isfinite(np.r_[mean, scale, weights]))
        and np.all(scale > 0)
        and 0.0 <= threshold <= 1.0
    )
    if not good:
        raise ValueError(
            f"trust parameters must give {k} finite means and scales > 0, {k + 1} weights and a "
            f"threshold in [0, 1] (features {TRUST_FEATURES}), got {params}"
        )
    out = {
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "weights": weights.tolist(),
        "threshold": threshold,
    }
    out.update({key: int(params[key]) for key in ("n_wrong", "n_right") if key in params})
    return out


def trust_score(features, params=None):
    """The trust score of each object: 1 - the probability that its mass-weighted age is wrong.

    Parameters
    ----------
    features : ndarray, shape (n, k)
        :func:`trust_features`.
    params : dict, optional
        :func:`fit_trust` output (default :data:`TRUST_PARAMS`).

    Returns
    -------
    ndarray, shape (n,)
        In [0, 1]; NaN where a feature is NaN. Flag objects below ``params["threshold"]``.
    """
    params = TRUST_PARAMS if params is None else params
    if params is None:
        raise ValueError("no trust parameters: fit them with fit_trust (benchmarks/trust.py --fit)")
    x = np.asarray(features, dtype=np.float64)
    z = (x - np.asarray(params["mean"])) / np.asarray(params["scale"])
    w = np.asarray(params["weights"])
    if z.shape[1] + 1 != w.size:
        raise ValueError(f"{z.shape[1]} features but {w.size - 1} trust weights")
    return 1.0 - _logistic(w[0] + z @ w[1:])


def _log_lambda_resampling(wave_aa):
    """Indices and weights of linear interpolation from ``wave_aa`` onto a log-lambda grid of as many
    pixels, and that grid's step in ln(lambda)."""
    loglam = np.linspace(np.log(wave_aa[0]), np.log(wave_aa[-1]), wave_aa.size)
    x = np.exp(loglam)
    j = np.clip(np.searchsorted(wave_aa, x) - 1, 0, wave_aa.size - 2)
    t = (x - wave_aa[j]) / (wave_aa[j + 1] - wave_aa[j])
    return j, t, loglam[1] - loglam[0]


def _running_mean(a, width):
    c = np.cumsum(np.pad(a, ((0, 0), (width // 2 + 1, width - width // 2)), mode="edge"), axis=1)
    return (c[:, width:-1] - c[:, : -width - 1]) / width


def redshift_offset(spectra, noise, model_spectra, wave_aa, max_offset_kms=MAX_OFFSET_KMS, block=128):
    """The velocity lag at which each spectrum's features best match its model's.

    Parameters
    ----------
    spectra, noise : ndarray, shape (n, n_wave)
        Rest-frame flux densities and their 1-sigma noise (NaN, inf or noise <= 0: masked).
    model_spectra : ndarray, shape (n, n_wave)
        The re-synthesised predictions (``resynthesis_fit(..., return_models=True)``); NaN rows
        are not scanned.
    wave_aa : ndarray, shape (n_wave,)
        Rest-frame wavelengths, Angstrom, increasing.
    max_offset_kms : float
        Largest lag scanned, km/s.
    block : int
        Objects scanned at a time (small blocks keep the work arrays in the CPU caches: 3x faster).

    Returns
    -------
    dict of ndarray, shape (n,)
        ``offset_kms``: the best lag as a velocity, c (lambda_data / lambda_model - 1) (positive: the
        spectrum's features lie red-ward of the model's, i.e. the redshift used was too low by
        about (1 + z) offset / c); ``gain_chi2``: the chi-square
        gained at that lag over the lag 0 (features only, noise-weighted); ``gain_fraction``: that
        gain over the best lag's explained chi-square (0: lag 0 is best, 1: lag 0 explains nothing).
        NaN where not scanned.
    """
    wave_aa = np.asarray(wave_aa, dtype=np.float64)
    spectra, noise, model = (np.atleast_2d(np.asarray(a)) for a in (spectra, noise, model_spectra))
    if not spectra.shape == noise.shape == model.shape or spectra.shape[1] != wave_aa.size:
        raise ValueError(
            f"spectra {spectra.shape}, noise {noise.shape} and models {model.shape} "
            f"must be (n, {wave_aa.size})"
        )
    parts = [
        _scan(
            *(a[i : i + block].astype(np.float64) for a in (spectra, noise, model)), wave_aa, max_offset_kms
        )
        for i in range(0, len(spectra), block)
    ]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _scan(spectra, noise, model, wave_aa, max_offset_kms):
    n, n_wave = spectra.shape
    j, t, step = _log_lambda_resampling(wave_aa)
    resample = lambda a: a[:, j] * (1 - t) + a[:, j + 1] * t  # noqa: E731
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(spectra) & np.isfinite(noise) & (noise > 0)
        w = resample(np.where(ok, 1.0 / np.where(ok, noise, 1.0) ** 2, 0.0))
        w[resample(ok.astype(np.float64)) < 0.999] = 0.0  # a masked neighbour masks the pixel
        d = resample(np.where(ok, spectra, 0.0))
        m = resample(np.nan_to_num(model))
        w[:, :_EDGE_PX] = w[:, -_EDGE_PX:] = 0.0
        # features only: both divided by their running means (the data's noise-weighted)
        wsum = _running_mean(w, _SMOOTH_PX)
        d_mean = _running_mean(w * d, _SMOOTH_PX) / np.where(wsum > 0, wsum, 1.0)
        m_mean = _running_mean(m, _SMOOTH_PX)
        w = w * d_mean**2
        d = np.where(d_mean != 0, d / np.where(d_mean != 0, d_mean, 1.0) - 1.0, 0.0)
        m = np.where(m_mean > 0, m / np.where(m_mean > 0, m_mean, 1.0) - 1.0, 0.0)
    k = int(np.log1p(max_offset_kms / C_KMS) / step)
    size = 1 << int(np.ceil(np.log2(n_wave + k + 1)))  # zero-padded: no wrap-around within +-k
    lags = np.r_[np.arange(0, k + 1), np.arange(-k, 0)]
    cross = lambda a, b: np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)[:, lags]  # noqa: E731
    a = cross(w * d, m)  # (n, n_lags): sum_i (w d)_{i + lag} m_i
    b = cross(w, m**2)  # (n, n_lags): sum_i w_{i + lag} m_i^2
    gain = np.where(b > 0, np.clip(a, 0, None) ** 2 / np.where(b > 0, b, 1.0), 0.0)
    best = np.argmax(gain, axis=1)
    g_best = gain[np.arange(n), best]
    out = {
        "offset_kms": C_KMS * np.expm1(lags[best] * step),
        "gain_chi2": g_best - gain[:, 0],
        "gain_fraction": np.where(g_best > 0, (g_best - gain[:, 0]) / np.where(g_best > 0, g_best, 1.0), 0.0),
    }
    scanned = np.all(np.isfinite(model), axis=1) & (w > 0).any(axis=1)
    for value in out.values():
        value[~scanned] = np.nan
    return out


def wrong_redshift(offset):
    """Whether each spectrum was brought to the rest frame with a wrong redshift.

    Parameters
    ----------
    offset : dict
        :func:`redshift_offset` output.

    Returns
    -------
    ndarray of bool, shape (n,)
        The best lag is beyond :data:`MIN_OFFSET_KMS` and gains at least :data:`MIN_GAIN_FRACTION` of
        its chi-square and :data:`MIN_GAIN_CHI2` over lag 0 (False where not scanned).
    """
    with np.errstate(invalid="ignore"):
        return (
            (np.abs(offset["offset_kms"]) > MIN_OFFSET_KMS)
            & (offset["gain_fraction"] > MIN_GAIN_FRACTION)
            & (offset["gain_chi2"] > MIN_GAIN_CHI2)
        )
