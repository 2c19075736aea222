"""Losses and metrics: Gaussian negative log-likelihoods of the cumulative SFH and of [M/H].

The uncertainties are heteroscedastic Gaussian ones trained with a negative log-likelihood (Nix &
Weigend 1994; Kendall & Gal 2017), plus a point term (MAE) that keeps the means sharp early on.
"""

import keras
import numpy as np
from keras import losses, ops

from .layers import LOG_SIGMA_RANGE, register

__all__ = ["SFHLoss", "ZHLoss", "sfh_cum_mae", "zh_mae", "point_metrics", "make_targets"]


def _gaussian_nll(y_true, mu, log_sigma):
    """Gaussian negative log-likelihood without the constant, elementwise."""
    log_sigma = ops.clip(log_sigma, *LOG_SIGMA_RANGE)
    return 0.5 * ops.square((y_true - mu) * ops.exp(-log_sigma)) + log_sigma


def _first_channel(y_true):
    """(batch, n_bins) from targets given as (batch, n_bins) or (batch, n_bins, k)."""
    return y_true[..., 0] if len(y_true.shape) == 3 else y_true


@register
class SFHLoss(losses.Loss):
    """Gaussian NLL of the cumulative mass fraction, plus a point term (MAE of the cumulative).

    y_true : (batch, n_bins) mass fractions. y_pred : (batch, n_bins, 2), the ``"sfh"`` output.
    Returns, per object, the mean over bins of ``NLL + point_weight * |cum_pred - cum_true|``.
    The point term keeps the mean sharp while the uncertainties are still large early in training.
    """

    def __init__(self, point_weight=1.0, name="sfh_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.point_weight = float(point_weight)

    def call(self, y_true, y_pred):
        cum_true = ops.cumsum(_first_channel(y_true), axis=-1)  # (batch, n_bins)
        cum_pred = ops.cumsum(y_pred[..., 0], axis=-1)  # (batch, n_bins)
        nll = _gaussian_nll(cum_true, cum_pred, y_pred[..., 1])
        return ops.mean(nll + self.point_weight * ops.abs(cum_pred - cum_true), axis=-1)  # (batch,)

    def get_config(self):
        return {**super().get_config(), "point_weight": self.point_weight}


@register
class ZHLoss(losses.Loss):
    """Gaussian NLL of [M/H] per bin, plus a point term (MAE), weighted by the mass formed.

    y_true : (batch, n_bins, 2) with ``[..., 0]`` the true [M/H] and ``[..., 1]`` the true mass
    fraction (see :func:`make_targets`), or (batch, n_bins) (unweighted). Bin k weighs
    ``mass_floor + (1 - mass_floor) * n_bins * sfh_k`` (mean 1 per object): bins in which no stars
    formed, whose [M/H] leaves no trace in the spectrum, count ``mass_floor`` times.
    y_pred : (batch, n_bins, 2), the ``"zh"`` output.
    """

    def __init__(self, mass_floor=0.25, point_weight=1.0, name="zh_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.mass_floor = float(mass_floor)
        self.point_weight = float(point_weight)

    def call(self, y_true, y_pred):
        zh_true = _first_channel(y_true)  # (batch, n_bins)
        nll = _gaussian_nll(zh_true, y_pred[..., 0], y_pred[..., 1])
        loss = nll + self.point_weight * ops.abs(y_pred[..., 0] - zh_true)  # (batch, n_bins)
        if len(y_true.shape) == 3:
            n_bins = y_true.shape[-2]
            loss = loss * (self.mass_floor + (1.0 - self.mass_floor) * n_bins * y_true[..., 1])
        return ops.mean(loss, axis=-1)  # (batch,)

    def get_config(self):
        return {**super().get_config(), "mass_floor": self.mass_floor, "point_weight": self.point_weight}


@register
def sfh_cum_mae(y_true, y_pred):
    """Mean absolute error of the cumulative mass fraction, per object: (batch,)."""
    diff = ops.cumsum(y_pred[..., 0], axis=-1) - ops.cumsum(_first_channel(y_true), axis=-1)
    return ops.mean(ops.abs(diff), axis=-1)


@register
def zh_mae(y_true, y_pred):
    """Mean absolute error of [M/H] over the bins (dex, unweighted), per object: (batch,)."""
    return ops.mean(ops.abs(y_pred[..., 0] - _first_channel(y_true)), axis=-1)


def point_metrics():
    """The point-error metrics of each output, named so that the training logs read ``sfh_cum_mae``
    and ``zh_mae`` (``val_...`` on the validation set).

    Keras prefixes a metric's name with its output's (``"sfh"`` + ``"_"`` + name); the wrappers are
    named ``cum_mae`` and ``mae`` so that the logs do not repeat it (``sfh_sfh_cum_mae``).

    Returns
    -------
    dict
        ``{"sfh": [metric], "zh": [metric]}``, the ``metrics`` argument of ``model.compile``.
    """
    return {
        "sfh": [keras.metrics.MeanMetricWrapper(sfh_cum_mae, name="cum_mae")],
        "zh": [keras.metrics.MeanMetricWrapper(zh_mae, name="mae")],
    }


def make_targets(sfh, zh):
    """Training targets in the layout the losses expect.

    Parameters
    ----------
    sfh, zh : ndarray, shape (n, n_bins)
        True mass fractions and [M/H] (dex).

    Returns
    -------
    dict
        ``"sfh"``: (n, n_bins) float32; ``"zh"``: (n, n_bins, 2) float32, [M/H] and mass fraction.
    """
    sfh = np.asarray(sfh, dtype=np.float32)
    zh = np.asarray(zh, dtype=np.float32)
    return {"sfh": sfh, "zh": np.stack([zh, sfh], axis=-1)}
