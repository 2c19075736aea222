"""The networks: spectrum + photometry -> binned SFH and [M/H] history, with uncertainties.

Two architectures, after the poster (Galceran et al.):

* ``"v1"`` (poster Fig. 1): four branches. A convolutional spectral encoder and a dense
  photometric encoder are joined into a latent vector, from which two separate decoders predict
  the SFH and the [M/H] history.
* ``"v2"`` (poster Fig. 2): a convolutional spectral encoder with a strided stem that reduces the
  spectrum to a few dozen tokens, followed by multi-head self-attention over them (learned position
  embedding, pre-LayerNorm residual blocks); a dense photometric encoder into the same latent
  space; ONE decoder that predicts the SFH and [M/H] together.

Both take physical fluxes (any units, any aperture: the normalisation is a layer of the model) and
may receive NaN for masked pixels or missing bands. The first layer, :class:`InputNormalization`,
divides each object by its mean flux, then standardises each pixel and band with training-set
statistics: call :func:`adapt` on the training inputs before training (:func:`sfh_ml.training.train`
does). The statistics are weights of the model and are saved with it.

Output contract (a dict; ``n_bins`` age bins, ordered from young to old as ``age_bins_yr``):

``"sfh"`` : (batch, n_bins, 2)
    ``[..., 0]`` mass fraction formed in each bin (softmax: >= 0, sums to 1);
    ``[..., 1]`` natural log of the 1-sigma uncertainty of the *cumulative* mass fraction
    ``cumsum(sfh[..., 0])`` (the fraction of mass in stars younger than the bin's upper edge).
``"zh"`` : (batch, n_bins, 2)
    ``[..., 0]`` [M/H] (dex) of the stars formed in each bin, inside ``zh_range``;
    ``[..., 1]`` natural log of its 1-sigma uncertainty (dex).

The uncertainties are heteroscedastic Gaussian ones trained with a negative log-likelihood (Nix &
Weigend 1994; Kendall & Gal 2017). Several independently seeded models can be averaged as a deep
ensemble (Lakshminarayanan et al. 2017) by passing a list of models to :func:`predict`, which adds
the spread of the members' means to the predicted variance.

Saved models (``model.save("v2.keras")``) load with ``keras.models.load_model("v2.keras")`` and
no ``custom_objects``, once this module is imported (``import sfh_ml.models``): importing it
registers the layers and losses with Keras.

:func:`build_model` returns a *compiled* model (Adam with gradient clipping, the losses
:class:`SFHLoss` and :class:`ZHLoss`, and the point-error metrics), so that a saved model carries
its optimizer state and training can resume from it. Pass ``compile=False`` to get it uncompiled.
"""

import math

import keras
import numpy as np
from keras import layers, ops

__all__ = [
    "VERSIONS",
    "DEFAULT_HYPER",
    "LOG_SIGMA_RANGE",
    "InputNormalization",
    "PositionEmbedding",
    "HistoryHead",
    "SFHLoss",
    "ZHLoss",
    "cumulative_sfh_mae",
    "zh_mae",
    "make_targets",
    "build_model",
    "compile_model",
    "adapt",
    "get_metadata",
    "check_compatible",
    "predict",
]

PACKAGE = "sfh_ml"
VERSIONS = ("v1", "v2")
# log sigma is squashed into this range: sigma from 0.01 (cumulative fraction, or dex) to 2. A lower
# floor lets a few over-confident predictions dominate the NLL (seen at 165k spectra: the validation
# NLL blew up while the point errors kept falling).
LOG_SIGMA_RANGE = (math.log(1e-2), math.log(2.0))
LOG_SIGMA_INIT = math.log(0.1)  # sigma of an untrained network: of the order of its first errors
# Photometric features ~ log10(band flux / mean spectral flux), softened below this ratio (and
# finite for zero or negative noisy fluxes): asinh(x / 2s) / ln 10 = log10(x / s) for x >> s.
PHOT_SOFTENING = 1e-3
STD_FLOOR = 1e-6  # standard deviations below this (constant inputs) are not divided by
WAVE_ATOL_AA = 1e-3
AGE_BINS_RTOL = 1e-6

_COMMON = {
    "latent_dim": 128, "phot_units": 64, "decoder_units": 256, "dropout": 0.0,
    # silu: smoother than relu (fits a tiny set ~25 % better in the same steps), as cheap on CPU
    "activation": "silu", "proj_activation": None,
    # False: the photometry is ignored (masked) whatever is passed: the spectra-only ablation
    "use_photometry": True,
}
DEFAULT_HYPER = {
    # Strided convolutions: 3681 px -> 921 -> 461 -> 231 -> 58 tokens; the stem is cheap (few channels).
    "v1": {
        **_COMMON,
        "stem_filters": 16, "stem_kernel": 7, "stem_stride": 4,
        "conv_filters": (32, 48), "conv_kernel": 5, "conv_strides": (2, 2),
        "token_dim": 64, "token_stride": 4, "token_proj": 8,
    },
    "v2": {
        **_COMMON,
        "stem_filters": 16, "stem_kernel": 7, "stem_stride": 4,
        "conv_filters": (32, 48), "conv_kernel": 5, "conv_strides": (2, 2),
        "token_dim": 64, "token_stride": 4, "token_proj": 8,
        "n_heads": 4, "n_blocks": 2, "ff_dim": 128,
    },
}


def _register(obj):
    return keras.saving.register_keras_serializable(package=PACKAGE)(obj)


# ----------------------------------------------------------------------------------------- layers
@_register
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
        self.wave_aa = _float_list(wave_aa)
        self.filters = None if filters is None else [_as_str(f) for f in filters]
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
        config.update(n_wave=self.n_wave, n_bands=self.n_bands, wave_aa=self.wave_aa, filters=self.filters,
                      use_photometry=self.use_photometry)
        return config


@_register
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


@_register
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

    def __init__(self, n_bins, zh_range=(-1.71, 0.22), age_bins_yr=None, version=None, **kwargs):
        super().__init__(**kwargs)
        self.n_bins = int(n_bins)
        self.zh_range = (float(zh_range[0]), float(zh_range[1]))
        self.age_bins_yr = _float_list(age_bins_yr)
        self.version = version

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
        return config


def _soft_log_sigma(x):
    """Smoothly squash x into LOG_SIGMA_RANGE; x = 0 gives LOG_SIGMA_INIT."""
    lo, hi = LOG_SIGMA_RANGE
    offset = math.log((LOG_SIGMA_INIT - lo) / (hi - LOG_SIGMA_INIT))  # logit of the initial position
    return lo + (hi - lo) * ops.sigmoid(x + offset)


# ----------------------------------------------------------------------------------------- losses
def _gaussian_nll(y_true, mu, log_sigma):
    """Gaussian negative log-likelihood without the constant, elementwise."""
    log_sigma = ops.clip(log_sigma, *LOG_SIGMA_RANGE)
    return 0.5 * ops.square((y_true - mu) * ops.exp(-log_sigma)) + log_sigma


def _first_channel(y_true):
    """(batch, n_bins) from targets given as (batch, n_bins) or (batch, n_bins, k)."""
    return y_true[..., 0] if len(y_true.shape) == 3 else y_true


@_register
class SFHLoss(keras.losses.Loss):
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


@_register
class ZHLoss(keras.losses.Loss):
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


@_register
def cumulative_sfh_mae(y_true, y_pred):
    """Mean absolute error of the cumulative mass fraction, per object: (batch,)."""
    diff = ops.cumsum(y_pred[..., 0], axis=-1) - ops.cumsum(_first_channel(y_true), axis=-1)
    return ops.mean(ops.abs(diff), axis=-1)


@_register
def zh_mae(y_true, y_pred):
    """Mean absolute error of [M/H] over the bins (dex, unweighted), per object: (batch,)."""
    return ops.mean(ops.abs(y_pred[..., 0] - _first_channel(y_true)), axis=-1)


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


# ----------------------------------------------------------------------------------------- network
def _conv(x, filters, kernel, stride, act, name):
    return layers.Conv1D(filters, kernel, strides=stride, padding="same", activation=act, name=name)(x)


def _conv_tokens(spec, hp):
    """Strided convolutional encoder: (batch, n_wave, 2) -> (batch, n_tokens, token_dim)."""
    act = hp["activation"]
    x = _conv(spec, hp["stem_filters"], hp["stem_kernel"], hp["stem_stride"], act, "stem")  # (b, n/4, 16)
    for i, (filters, stride) in enumerate(zip(hp["conv_filters"], hp["conv_strides"])):
        x = _conv(x, filters, hp["conv_kernel"], stride, act, f"conv{i + 1}")  # (b, n/8, 32), (b, n/16, 48)
    return _conv(x, hp["token_dim"], hp["conv_kernel"], hp["token_stride"], act, "tokens")  # (b, n/64, 64)


def _attention_block(x, hp, i):
    """Pre-LayerNorm transformer block on (batch, n_tokens, dim)."""
    dim = x.shape[-1]
    h = layers.LayerNormalization(name=f"attn{i}_norm1")(x)
    h = layers.MultiHeadAttention(
        hp["n_heads"], dim // hp["n_heads"], dropout=hp["dropout"], name=f"attn{i}_mha"
    )(h, h)  # (batch, n_tokens, dim)
    x = layers.Add(name=f"attn{i}_add1")([x, h])
    h = layers.LayerNormalization(name=f"attn{i}_norm2")(x)
    h = layers.Dense(hp["ff_dim"], activation=hp["activation"], name=f"attn{i}_ff1")(h)  # (b, n_tokens, ff)
    h = layers.Dense(dim, name=f"attn{i}_ff2")(h)  # (batch, n_tokens, dim)
    return layers.Add(name=f"attn{i}_add2")([x, h])


def _flatten_tokens(x, hp, name):
    """Keep which wavelength region said what: narrow per-token projection, then flatten."""
    x = layers.Dense(hp["token_proj"], activation=hp["proj_activation"], name=f"{name}_proj")(x)
    # (batch, n_tokens, token_proj)
    return layers.Flatten(name=f"{name}_flat")(x)  # (batch, n_tokens * token_proj)


def _spectral_encoder(spec, hp, version):
    tokens = _conv_tokens(spec, hp)  # (batch, n_tokens, token_dim)
    if version == "v2":
        tokens = PositionEmbedding(name="position")(tokens)
        for i in range(hp["n_blocks"]):
            tokens = _attention_block(tokens, hp, i + 1)
        tokens = layers.LayerNormalization(name="attn_norm")(tokens)
    x = _flatten_tokens(tokens, hp, "spec")
    return layers.Dense(hp["latent_dim"], activation=hp["activation"], name="spec_latent")(x)  # (b, latent)


def _photometric_encoder(phot, hp):
    x = layers.Dense(hp["phot_units"], activation=hp["activation"], name="phot_dense1")(phot)  # (batch, 64)
    return layers.Dense(hp["phot_units"], activation=hp["activation"], name="phot_dense2")(x)  # (batch, 64)


def _decoder(latent, hp, n_bins, n_out, name):
    act = hp["activation"]
    x = layers.Dense(hp["decoder_units"], activation=act, name=f"{name}_dense")(latent)  # (batch, 256)
    if hp["dropout"] > 0:
        x = layers.Dropout(hp["dropout"], name=f"{name}_dropout")(x)
    x = layers.Dense(n_bins * n_out, name=f"{name}_out")(x)  # (batch, n_bins * n_out)
    return layers.Reshape((n_bins, n_out), name=f"{name}_reshape")(x)  # (batch, n_bins, n_out)


def _hyper(version, hyper):
    unknown = sorted(set(hyper) - set(DEFAULT_HYPER[version]))
    if unknown:
        allowed = sorted(DEFAULT_HYPER[version])
        raise ValueError(f"unknown hyper-parameters for {version}: {unknown}; allowed: {allowed}")
    hp = {**DEFAULT_HYPER[version], **hyper}
    if len(hp["conv_filters"]) != len(hp["conv_strides"]):
        raise ValueError("conv_filters and conv_strides must have the same length")
    if version == "v2" and hp["token_dim"] % hp["n_heads"]:
        raise ValueError(f"token_dim ({hp['token_dim']}) must be a multiple of n_heads ({hp['n_heads']})")
    return hp


def _check_build_args(version, n_wave, n_bands, n_bins, zh_range, wave_aa, age_bins_yr, filters):
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
    if min(n_wave, n_bands, n_bins) < 1:
        raise ValueError(f"n_wave, n_bands, n_bins must be >= 1, got {n_wave}, {n_bands}, {n_bins}")
    if not zh_range[0] < zh_range[1]:
        raise ValueError(f"zh_range must be (low, high) with low < high, got {zh_range}")
    if wave_aa is not None and np.size(wave_aa) != n_wave:
        raise ValueError(f"wave_aa has {np.size(wave_aa)} values but n_wave = {n_wave}")
    if age_bins_yr is not None:
        if np.size(age_bins_yr) != n_bins + 1:
            raise ValueError(f"age_bins_yr needs n_bins + 1 = {n_bins + 1} edges, got {np.size(age_bins_yr)}")
        if np.any(np.diff(age_bins_yr) <= 0):
            raise ValueError("age_bins_yr must be strictly increasing")
    if filters is not None and len(filters) != n_bands:
        raise ValueError(f"{len(filters)} filters given but n_bands = {n_bands}")


def build_model(
    version,
    n_wave,
    n_bands,
    n_bins,
    zh_range=(-1.71, 0.22),
    wave_aa=None,
    age_bins_yr=None,
    filters=None,
    compile=True,
    learning_rate=1e-3,
    **hyper,
):
    """Build the v1 or v2 network.

    Parameters
    ----------
    version : {"v1", "v2"}
        Architecture (see the module docstring).
    n_wave, n_bands, n_bins : int
        Spectral pixels, photometric bands and age bins.
    zh_range : (float, float)
        Bounds of the predicted [M/H] (dex).
    wave_aa : array, shape (n_wave,), optional
        Wavelength grid in Angstrom, stored in the model (checked by :func:`check_compatible`).
    age_bins_yr : array, shape (n_bins + 1,), optional
        Age-bin edges in years, stored in the model.
    filters : sequence of str, shape (n_bands,), optional
        Band names, stored in the model.
    compile : bool
        Compile with Adam (global gradient norm clipped to 1), :class:`SFHLoss`, :class:`ZHLoss`
        and the metrics :func:`cumulative_sfh_mae`, :func:`zh_mae`.
    learning_rate : float
        Initial Adam learning rate.
    **hyper
        Overrides of :data:`DEFAULT_HYPER` ``[version]`` (e.g. ``token_dim=32``, ``dropout=0.1``).

    Returns
    -------
    keras.Model
        Inputs ``{"spectrum": (batch, n_wave), "photometry": (batch, n_bands)}`` (physical units,
        NaN = masked); outputs ``{"sfh": (batch, n_bins, 2), "zh": (batch, n_bins, 2)}``.
    """
    _check_build_args(version, n_wave, n_bands, n_bins, zh_range, wave_aa, age_bins_yr, filters)
    hp = _hyper(version, hyper)
    spectrum = keras.Input((n_wave,), name="spectrum")  # (batch, n_wave)
    photometry = keras.Input((n_bands,), name="photometry")  # (batch, n_bands)
    norm = InputNormalization(n_wave, n_bands, wave_aa, filters, hp["use_photometry"], name="normalisation")
    spec, phot = norm(spectrum, photometry)  # (batch, n_wave, 2), (batch, 2 * n_bands)

    spec_latent = _spectral_encoder(spec, hp, version)  # (batch, latent_dim)
    phot_latent = _photometric_encoder(phot, hp)  # (batch, phot_units)
    latent = layers.Concatenate(name="join")([spec_latent, phot_latent])
    latent = layers.Dense(hp["latent_dim"], activation=hp["activation"], name="latent")(latent)  # (b, latent)

    if version == "v1":  # two decoders
        sfh_raw = _decoder(latent, hp, n_bins, 2, "sfh_decoder")  # (batch, n_bins, 2)
        zh_raw = _decoder(latent, hp, n_bins, 2, "zh_decoder")  # (batch, n_bins, 2)
        raw = layers.Concatenate(name="decoders")([sfh_raw, zh_raw])  # (batch, n_bins, 4)
    else:  # one decoder for both: SFH and [M/H] are strongly coupled
        raw = _decoder(latent, hp, n_bins, 4, "decoder")  # (batch, n_bins, 4)
    sfh, zh = HistoryHead(n_bins, zh_range, age_bins_yr, version, name="history")(raw)
    outputs = {"sfh": layers.Identity(name="sfh")(sfh), "zh": layers.Identity(name="zh")(zh)}
    model = keras.Model({"spectrum": spectrum, "photometry": photometry}, outputs, name=f"sfh_ml_{version}")
    if compile:
        compile_model(model, learning_rate)
    return model


def compile_model(model, learning_rate=1e-3):
    """Compile with the standard optimizer, losses and metrics (see :func:`build_model`)."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, global_clipnorm=1.0),
        loss={"sfh": SFHLoss(), "zh": ZHLoss()},
        metrics={"sfh": [cumulative_sfh_mae], "zh": [zh_mae]},
    )
    model.optimizer.build(model.trainable_variables)  # so that a model saved before training reloads whole


def adapt(model, spectra, photometry, index=None, max_objects=50_000, seed=0):
    """Fit the model's input standardisation to training inputs (call it before training).

    Parameters
    ----------
    model : keras.Model
        From :func:`build_model`.
    spectra : array, shape (n, n_wave)
    photometry : array, shape (n, n_bands)
        Inputs in physical units, NaN = masked.
    index : array of int, optional
        The training objects among them (default: all); no copy of the others is made.
    max_objects : int
        At most this many of them (a seeded random subset) are used.
    seed : int
    """
    idx = np.arange(len(spectra)) if index is None else np.asarray(index)
    if len(idx) > max_objects:
        idx = np.random.default_rng(seed).choice(idx, max_objects, replace=False)
    idx = np.sort(idx)
    model.get_layer("normalisation").adapt(spectra[idx], photometry[idx])


# ----------------------------------------------------------------------------------------- metadata
def _float_list(x):
    """JSON-friendly copy of an optional array (layer configs)."""
    return None if x is None else [float(v) for v in np.asarray(x, dtype=np.float64).ravel()]


def _as_str(x):
    return x.decode() if isinstance(x, bytes | np.bytes_) else str(x)


def get_metadata(model):
    """What a model was built for.

    Returns
    -------
    dict
        ``version``, ``n_wave``, ``n_bands``, ``n_bins``, ``zh_range`` (tuple), ``wave_aa``,
        ``age_bins_yr`` (ndarray or None), ``filters`` (list of str or None).
    """
    try:
        norm, head = model.get_layer("normalisation"), model.get_layer("history")
    except ValueError as err:
        raise ValueError(f"{model.name} is not an sfh_ml model (no normalisation/history layer)") from err
    as_array = lambda v: None if v is None else np.asarray(v, dtype=np.float64)
    return {
        "version": head.version,
        "n_wave": norm.n_wave,
        "n_bands": norm.n_bands,
        "n_bins": head.n_bins,
        "zh_range": head.zh_range,
        "wave_aa": as_array(norm.wave_aa),
        "age_bins_yr": as_array(head.age_bins_yr),
        "filters": norm.filters,
    }


def check_compatible(model, wave_aa, age_bins_yr, filters=None):
    """Raise ValueError if a data set's grids differ from those the model was trained on.

    Parameters
    ----------
    model : keras.Model
        A model from :func:`build_model` (or loaded from disk).
    wave_aa : array, shape (n_wave,)
        The data's wavelength grid in Angstrom (compared within 1e-3 Angstrom).
    age_bins_yr : array, shape (n_bins + 1,) or None
        The data's age-bin edges in years (compared with rtol 1e-6); None skips the check.
    filters : sequence of str, optional
        The data's band names, in order; None skips the check.
    """
    meta = get_metadata(model)
    wave_aa = np.asarray(wave_aa, dtype=np.float64)
    if wave_aa.size != meta["n_wave"]:
        raise ValueError(
            f"wavelength grid mismatch: the model expects {meta['n_wave']} pixels, got {wave_aa.size}"
        )
    if meta["wave_aa"] is not None and not np.allclose(wave_aa, meta["wave_aa"], rtol=0, atol=WAVE_ATOL_AA):
        worst = int(np.argmax(np.abs(wave_aa - meta["wave_aa"])))
        raise ValueError(
            f"wavelength grid mismatch: pixel {worst} is {wave_aa[worst]:.4f} A, the model expects "
            f"{meta['wave_aa'][worst]:.4f} A "
            f"(model grid {meta['wave_aa'][0]:.3f}..{meta['wave_aa'][-1]:.3f} A)"
        )
    if age_bins_yr is not None:
        age_bins_yr = np.asarray(age_bins_yr, dtype=np.float64)
        if age_bins_yr.size != meta["n_bins"] + 1:
            raise ValueError(
                f"age bins mismatch: model has {meta['n_bins']} bins, the data {age_bins_yr.size - 1}"
            )
        if meta["age_bins_yr"] is not None and not np.allclose(
            age_bins_yr, meta["age_bins_yr"], rtol=AGE_BINS_RTOL, atol=0
        ):
            raise ValueError(
                f"age bins mismatch: model edges {meta['age_bins_yr']} yr, data edges {age_bins_yr} yr"
            )
    if filters is not None and meta["filters"] is not None:
        filters = [_as_str(f) for f in filters]
        if filters != meta["filters"]:
            raise ValueError(f"filters mismatch: model expects {meta['filters']}, got {filters}")


# ----------------------------------------------------------------------------------------- inference
def _check_inputs(meta, spectra, photometry):
    spectra = np.atleast_2d(np.asarray(spectra, dtype=np.float32))
    photometry = np.atleast_2d(np.asarray(photometry, dtype=np.float32))
    if spectra.ndim != 2 or spectra.shape[1] != meta["n_wave"]:
        raise ValueError(
            f"wavelength grid mismatch: the model expects spectra of shape (n, {meta['n_wave']}), "
            f"got {spectra.shape}"
        )
    if photometry.ndim != 2 or photometry.shape[1] != meta["n_bands"]:
        raise ValueError(
            f"the model expects photometry of shape (n, {meta['n_bands']}) (bands {meta['filters']}), "
            f"got {photometry.shape}"
        )
    if spectra.shape[0] != photometry.shape[0]:
        raise ValueError(f"{spectra.shape[0]} spectra but {photometry.shape[0]} photometry rows")
    return spectra, photometry


def _predict_one(model, spectra, photometry, batch_size, verbose):
    inputs = {"spectrum": spectra, "photometry": photometry}
    out = model.predict(inputs, batch_size=batch_size, verbose=verbose)
    sfh, zh = (np.asarray(out[k], dtype=np.float64) for k in ("sfh", "zh"))
    return sfh[..., 0], np.exp(sfh[..., 1]), zh[..., 0], np.exp(zh[..., 1])


def predict(model, spectra, photometry, batch_size=1024, verbose=0):
    """Predict SFHs and [M/H] histories with uncertainties.

    Parameters
    ----------
    model : keras.Model or list of keras.Model
        One network, or several trained alike (a deep ensemble: means averaged, and the spread of
        the members' means added in quadrature to their mean variance).
    spectra : array, shape (n, n_wave)
        Flux densities per Angstrom in any units; NaN for masked pixels.
    photometry : array, shape (n, n_bands)
        Band-mean flux densities per Angstrom in the spectra's units; NaN for missing bands.
    batch_size : int
    verbose : int
        Keras progress bar (0 = silent).

    Returns
    -------
    dict of ndarray, each shape (n, n_bins), float64
        ``sfh`` (mass fraction per bin), ``sfh_cum`` (cumulative from the youngest bin),
        ``sfh_cum_sigma``, ``zh`` (dex), ``zh_sigma`` (dex).
    """
    models = list(model) if isinstance(model, list | tuple) else [model]
    meta = get_metadata(models[0])
    for other in models[1:]:
        other_meta = get_metadata(other)
        if any(other_meta[k] != meta[k] for k in ("n_wave", "n_bands", "n_bins", "zh_range")):
            raise ValueError("ensemble members must share n_wave, n_bands, n_bins and zh_range")
    spectra, photometry = _check_inputs(meta, spectra, photometry)
    members = [_predict_one(m, spectra, photometry, batch_size, verbose) for m in models]
    sfh, cum_sigma, zh, zh_sigma = (np.stack(v) for v in zip(*members))  # (n_models, n, n_bins)
    cum = np.cumsum(sfh, axis=-1)
    return {
        "sfh": sfh.mean(0),
        "sfh_cum": cum.mean(0),
        "sfh_cum_sigma": np.sqrt(np.mean(cum_sigma**2, 0) + cum.var(0)),
        "zh": zh.mean(0),
        "zh_sigma": np.sqrt(np.mean(zh_sigma**2, 0) + zh.var(0)),
    }
