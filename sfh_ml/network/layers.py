"""Custom Keras layers of the networks: input normalisation, position embedding, output head.

All are backend-agnostic (``keras.ops`` only) and registered with Keras under the package name
``sfh_ml``, so a saved model loads without ``custom_objects`` once :mod:`sfh_ml.network` is
imported (:func:`sfh_ml.network.load_model` does it for you).
"""

import math

import keras
import numpy as np
from keras import layers, ops

from ..constants import ZH_RANGE
from ..utils import as_str, float_list
from .metrics import check_light_table
from .trust import check_trust_params

__all__ = [
    "LOG_SIGMA_RANGE",
    "PHOT_SOFTENING",
    "InputNormalization",
    "PositionEmbedding",
    "HistoryHead",
    "check_ood_thresholds",
    "register",
]

PACKAGE = "sfh_ml"
# log sigma is squashed into this range: sigma from 0.01 (cumulative fraction, or dex) to 2. A lower
# floor lets a few over-confident predictions dominate the NLL (seen at 165k spectra: the validation
# NLL blew up while the point errors kept falling).
LOG_SIGMA_RANGE = (math.log(1e-2), math.log(2.0))
LOG_SIGMA_INIT = math.log(0.1)  # sigma of an untrained network: of the order of its first errors
# Photometric features ~ log10(band flux / mean spectral flux), softened below this ratio (and
# finite for zero or negative noisy fluxes): asinh(x / 2s) / ln 10 = log10(x / s) for x >> s.
PHOT_SOFTENING = 1e-3
STD_FLOOR = 1e-6  # standard deviations below this (constant inputs) are not divided by


def register(obj):
    """Register a layer, loss or metric with Keras' serialisation under the package ``sfh_ml``."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(obj)


@register
class InputNormalization(layers.Layer):
    """Masks, normalises and standardises the physical inputs; carries the input metadata.

    Non-finite values are masked. Each object is divided by its own scale, the mean absolute value
    of its finite spectral pixels (1 where there is none), which makes the network independent of
    aperture, distance and flux units. The photometry, divided by the same scale, is compressed to
    ~log10 (softened by :data:`PHOT_SOFTENING`, finite for fluxes <= 0). Both are then standardised
    with per-pixel / per-band means and standard deviations of the training set (non-trainable
    weights set by :meth:`adapt`; 0 and 1 until then), so that the small spectral features that
    carry the information are not drowned by the common continuum. Masked values become 0 (the
    training-set mean) and a mask channel says which they are.

    Parameters
    ----------
    n_wave, n_bands : int
        Spectral pixels and photometric bands expected.
    wave_aa : sequence of float, shape (n_wave,), optional
        Wavelength grid (Angstrom) the model is trained on (metadata for :func:`check_compatible`).
    filters : sequence of str, shape (n_bands,), optional
        Names of the bands, in input order (metadata).
    use_photometry : bool
        If False every band is treated as missing, whatever is passed: a spectra-only network
        with the same interface (the photometry ablation).

    Call arguments
    --------------
    spectrum : tensor, shape (batch, n_wave)
    photometry : tensor, shape (batch, n_bands)

    Returns
    -------
    spec : tensor, shape (batch, n_wave, 2)
        Standardised normalised flux and mask (1 = valid).
    phot : tensor, shape (batch, 2 * n_bands)
        Standardised compressed band fluxes, then the band mask.
    """

    def __init__(self, n_wave, n_bands, wave_aa=None, filters=None, use_photometry=True, **kwargs):
        super().__init__(**kwargs)
        self.use_photometry = bool(use_photometry)
        self.n_wave = int(n_wave)
        self.n_bands = int(n_bands)
        self.wave_aa = float_list(wave_aa)
        self.filters = None if filters is None else as_str(filters)
        stat = lambda name, n, init: self.add_weight(shape=(n,), initializer=init, trainable=False, name=name)
        self.spec_mean = stat("spec_mean", self.n_wave, "zeros")
        self.spec_std = stat("spec_std", self.n_wave, "ones")
        self.phot_mean = stat("phot_mean", self.n_bands, "zeros")
        self.phot_std = stat("phot_std", self.n_bands, "ones")

    def normalise(self, spectrum, photometry):
        """Scaled flux and compressed photometry before standardisation, and their masks."""
        spec_mask = ops.cast(ops.isfinite(spectrum), spectrum.dtype)  # (batch, n_wave)
        spec = ops.where(spec_mask > 0, spectrum, ops.zeros_like(spectrum))
        n_valid = ops.sum(spec_mask, axis=-1, keepdims=True)  # (batch, 1)
        scale = ops.sum(ops.abs(spec), axis=-1, keepdims=True) / ops.maximum(n_valid, 1.0)
        scale = ops.where(scale > 0, scale, ops.ones_like(scale))  # (batch, 1)
        phot_mask = ops.cast(ops.isfinite(photometry), photometry.dtype)  # (batch, n_bands)
        if not self.use_photometry:
            phot_mask = ops.zeros_like(phot_mask)
        phot = ops.where(phot_mask > 0, photometry, ops.zeros_like(photometry)) / scale
        phot = ops.arcsinh(phot / (2.0 * PHOT_SOFTENING)) / math.log(10.0) + math.log10(PHOT_SOFTENING)
        return spec / scale, spec_mask, phot, phot_mask

    def call(self, spectrum, photometry):
        spec, spec_mask, phot, phot_mask = self.normalise(spectrum, photometry)
        spec = (spec - self.spec_mean) / self.spec_std * spec_mask  # (batch, n_wave)
        phot = (phot - self.phot_mean) / self.phot_std * phot_mask  # (batch, n_bands)
        return ops.stack([spec, spec_mask], axis=-1), ops.concatenate([phot, phot_mask], axis=-1)

    def adapt(self, spectra, photometry, batch_size=4096):
        """Set the standardisation from training inputs (masked values ignored).

        Parameters
        ----------
        spectra : array, shape (n, n_wave)
        photometry : array, shape (n, n_bands)
        """
        sums = np.zeros((3, self.n_wave + self.n_bands))  # count, sum, sum of squares
        for start in range(0, len(spectra), batch_size):
            chunk = (np.asarray(a[start : start + batch_size], np.float32) for a in (spectra, photometry))
            spec, spec_mask, phot, phot_mask = (ops.convert_to_numpy(v) for v in self.normalise(*chunk))
            values = np.concatenate([spec, phot], axis=1).astype(np.float64)
            mask = np.concatenate([spec_mask, phot_mask], axis=1)
            sums += [mask.sum(0), (values * mask).sum(0), (values**2 * mask).sum(0)]
        count = np.maximum(sums[0], 1.0)
        mean = sums[1] / count
        std = np.sqrt(np.maximum(sums[2] / count - mean**2, 0.0))
        std = np.where(std > STD_FLOOR, std, 1.0)  # constant or never-valid values: leave unscaled
        stats = np.stack([mean, std]).astype(np.float32)  # (2, n_wave + n_bands)
        self.spec_mean.assign(stats[0, : self.n_wave])
        self.spec_std.assign(stats[1, : self.n_wave])
        self.phot_mean.assign(stats[0, self.n_wave :])
        self.phot_std.assign(stats[1, self.n_wave :])

    def get_config(self):
        config = super().get_config()
        config.update(
            n_wave=self.n_wave,
            n_bands=self.n_bands,
            wave_aa=self.wave_aa,
            filters=self.filters,
            use_photometry=self.use_photometry,
        )
        return config


@register
class PositionEmbedding(layers.Layer):
    """Adds a learned embedding of the token position (the wavelength region) to each token.

    Call arguments: tokens, shape (batch, n_tokens, dim); returns the same shape.
    """

    def build(self, input_shape):
        self.embedding = self.add_weight(
            shape=(input_shape[-2], input_shape[-1]),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="embedding",
        )

    def call(self, tokens):
        return tokens + self.embedding  # (batch, n_tokens, dim)


@register
class HistoryHead(layers.Layer):
    """Turns raw decoder outputs into the output contract; carries the output metadata.

    Parameters
    ----------
    n_bins : int
        Number of age bins.
    zh_range : (float, float)
        Bounds of the predicted [M/H] (dex), the SSP grid range.
    age_bins_yr : sequence of float, shape (n_bins + 1,), optional
        Age-bin edges in years (metadata).
    version : str, optional
        Architecture name (metadata).
    bin_light : nested sequence of float, shape (n_bins, n_zh), optional
        The training set's light table: 5500 A luminosity before dust per solar mass formed at a
        constant rate over each age bin, for each [M/H] of ``zh_grid`` (metadata: the weights of
        light-weighted means, :func:`sfh_ml.network.metrics.bin_light_weights`, without the SSP
        library). None (models trained on older sets): no light-weighted means.
    zh_grid : sequence of float, shape (n_zh,), optional
        [M/H] (dex) of the columns of ``bin_light``; given if and only if ``bin_light`` is.
    sigma_scale_sfh_cum, sigma_scale_zh : sequence of float, shape (n_bins,), optional
        Calibration factors of the predicted sigmas of the cumulative SFH and of [M/H] in each bin,
        set by :func:`sfh_ml.network.calibrate` (metadata, applied by
        :func:`sfh_ml.network.predict`, not here: the layer's outputs, and the loss, stay those the
        network was trained with). None: 1 (not calibrated).
    tail_scale_sfh_cum, tail_scale_zh : sequence of float, shape (n_bins,), optional
        Factors of the 2-sigma half-widths, set by :func:`sfh_ml.network.calibrate`: the interval
        holding 95.45 % of the truths is +-2 x tail_scale x sigma (the errors of the cumulative SFH
        have heavier tails than a Gaussian's, most of all in the youngest bins). None: 1 (Gaussian).
    ood_thresholds : nested sequence of float, shape (k, 2), optional
        The out-of-distribution flag thresholds of this network: ``[snr_model, threshold]`` pairs,
        S/N increasing and > 0, thresholds > 0 (:func:`sfh_ml.network.goodness.ood_threshold`), set
        by :func:`sfh_ml.network.calibrate_ood` (metadata, used by ``predict(..., goodness=True)``).
        None: not calibrated (the module's :data:`~sfh_ml.network.goodness.OOD_THRESHOLDS`, those of
        the first shipped network, are used).
    trust_params : dict, optional
        The trust score's parameters for this network (:func:`sfh_ml.network.trust.fit_trust`), set
        by :func:`sfh_ml.network.calibrate_trust` and used by ``predict(..., trust=True)``. None: the
        module's :data:`~sfh_ml.network.trust.TRUST_PARAMS` (those of the first shipped network).

    Call arguments
    --------------
    raw : tensor, shape (batch, n_bins, 4)
        Unconstrained values: SFH logit, SFH log-sigma, [M/H] location, [M/H] log-sigma
        (pre-activations).

    Returns
    -------
    sfh, zh : tensor, shape (batch, n_bins, 2)
        See the module docstring.
    """

    def __init__(
        self,
        n_bins,
        zh_range=ZH_RANGE,
        age_bins_yr=None,
        version=None,
        bin_light=None,
        zh_grid=None,
        sigma_scale_sfh_cum=None,
        sigma_scale_zh=None,
        ood_thresholds=None,
        tail_scale_sfh_cum=None,
        tail_scale_zh=None,
        trust_params=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.n_bins = int(n_bins)
        self.zh_range = (float(zh_range[0]), float(zh_range[1]))
        self.age_bins_yr = float_list(age_bins_yr)
        self.version = version
        if (bin_light is None) != (zh_grid is None):
            raise ValueError("bin_light and zh_grid go together: give both or neither")
        self.bin_light = self.zh_grid = None
        if bin_light is not None:
            table, grid = check_light_table(bin_light, zh_grid, self.n_bins)
            self.bin_light, self.zh_grid = table.tolist(), grid.tolist()
        self.set_sigma_scale(sigma_scale_sfh_cum, sigma_scale_zh)
        self.set_tail_scale(tail_scale_sfh_cum, tail_scale_zh)
        self.set_ood_thresholds(ood_thresholds)
        self.set_trust_params(trust_params)

    def set_trust_params(self, params=None):
        """Set (or, with None, clear) the trust parameters (:func:`~sfh_ml.network.trust.fit_trust`)."""
        self.trust_params = check_trust_params(params)

    def set_sigma_scale(self, sfh_cum=None, zh=None):
        """Set (or, with None, clear) the calibration factors of the predicted sigmas.

        Parameters
        ----------
        sfh_cum, zh : sequence of float, shape (n_bins,), optional
            Factors (> 0) of the sigma of the cumulative SFH and of [M/H] in each bin.
        """
        self.sigma_scale_sfh_cum = self._scale(sfh_cum, "sigma_scale_sfh_cum")
        self.sigma_scale_zh = self._scale(zh, "sigma_scale_zh")

    def set_tail_scale(self, sfh_cum=None, zh=None):
        """Set (or, with None, clear) the factors of the 2-sigma half-widths (shape (n_bins,), > 0)."""
        self.tail_scale_sfh_cum = self._scale(sfh_cum, "tail_scale_sfh_cum")
        self.tail_scale_zh = self._scale(zh, "tail_scale_zh")

    def _scale(self, value, name):
        if value is None:
            return None
        scale = np.asarray(value, dtype=np.float64)
        if scale.shape != (self.n_bins,) or not np.all(np.isfinite(scale) & (scale > 0)):
            raise ValueError(f"{name} must be {self.n_bins} finite factors > 0, got {value}")
        return scale.tolist()

    def set_ood_thresholds(self, thresholds=None):
        """Set (or, with None, clear) the out-of-distribution flag thresholds.

        Parameters
        ----------
        thresholds : nested sequence of float, shape (k, 2), optional
            ``[snr_model, threshold]`` pairs (k >= 1): model S/N strictly increasing and > 0,
            thresholds on ``residual_fraction`` > 0, all finite.
        """
        self.ood_thresholds = check_ood_thresholds(thresholds)

    def call(self, raw):
        frac = ops.softmax(raw[..., 0], axis=-1)  # (batch, n_bins)
        sfh = ops.stack([frac, _soft_log_sigma(raw[..., 1])], axis=-1)  # (batch, n_bins, 2)
        lo, hi = self.zh_range
        zh = lo + (hi - lo) * ops.sigmoid(raw[..., 2])  # (batch, n_bins)
        zh = ops.stack([zh, _soft_log_sigma(raw[..., 3])], axis=-1)  # (batch, n_bins, 2)
        return sfh, zh

    def get_config(self):
        config = super().get_config()
        config.update(n_bins=self.n_bins, zh_range=list(self.zh_range))
        config.update(age_bins_yr=self.age_bins_yr, version=self.version)
        config.update(bin_light=self.bin_light, zh_grid=self.zh_grid)
        config.update(sigma_scale_sfh_cum=self.sigma_scale_sfh_cum, sigma_scale_zh=self.sigma_scale_zh)
        config.update(ood_thresholds=self.ood_thresholds)
        if self.tail_scale_sfh_cum is not None or self.tail_scale_zh is not None:  # older files: as they were
            config.update(tail_scale_sfh_cum=self.tail_scale_sfh_cum, tail_scale_zh=self.tail_scale_zh)
        if self.trust_params is not None:
            config.update(trust_params=self.trust_params)
        return config


def check_ood_thresholds(thresholds):
    """A table of out-of-distribution thresholds as a list of ``[snr_model, threshold]`` pairs.

    Parameters
    ----------
    thresholds : nested sequence of float, shape (k, 2), or None

    Returns
    -------
    list of [float, float] or None

    Raises
    ------
    ValueError
        Not (k, 2) with k >= 1, not finite, S/N not strictly increasing or <= 0, or a threshold <= 0.
    """
    if thresholds is None:
        return None
    try:
        table = np.asarray(thresholds, dtype=np.float64)
    except (TypeError, ValueError):
        table = None
    if (
        table is None
        or table.ndim != 2
        or table.shape[0] < 1
        or table.shape[1] != 2
        or not np.all(np.isfinite(table))
        or not np.all(table > 0)
        or not np.all(np.diff(table[:, 0]) > 0)
    ):
        raise ValueError(
            "ood_thresholds must be [snr_model, threshold] pairs, finite and > 0, with the S/N "
            f"strictly increasing; got {thresholds}"
        )
    return table.tolist()


def _soft_log_sigma(x):
    """Smoothly squash x into LOG_SIGMA_RANGE; x = 0 gives LOG_SIGMA_INIT."""
    lo, hi = LOG_SIGMA_RANGE
    offset = math.log((LOG_SIGMA_INIT - lo) / (hi - LOG_SIGMA_INIT))  # logit of the initial position
    return lo + (hi - lo) * ops.sigmoid(x + offset)
