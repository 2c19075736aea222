"""The two architectures, after the poster (Galceran et al.).

* ``"v1"`` (poster Fig. 1): four branches. A convolutional spectral encoder and a dense
  photometric encoder are joined into a latent vector, from which two separate decoders predict
  the SFH and the [M/H] history.
* ``"v2"`` (poster Fig. 2): the same convolutional stem reduces the spectrum to a few dozen tokens
  (wavelength regions), followed by multi-head self-attention over those spectral tokens (learned
  position embedding, pre-LayerNorm residual blocks); a dense photometric encoder into the same
  latent space; ONE decoder that predicts the SFH and [M/H] together.

Both take physical fluxes (any units, any aperture: the normalisation is a layer of the model,
:class:`sfh_ml.network.layers.InputNormalization`) and may receive NaN for masked pixels or
missing bands. Call :func:`adapt` on the training inputs before training
(:func:`sfh_ml.network.train` does): the standardisation statistics are weights of the model.

Output contract (a dict; ``n_bins`` age bins, ordered from young to old as ``age_bins_yr``):

``"sfh"`` : (batch, n_bins, 2)
    ``[..., 0]`` mass fraction formed in each bin (softmax: >= 0, sums to 1);
    ``[..., 1]`` natural log of the 1-sigma uncertainty of the *cumulative* mass fraction
    ``cumsum(sfh[..., 0])`` (the fraction of mass in stars younger than the bin's upper edge).
``"zh"`` : (batch, n_bins, 2)
    ``[..., 0]`` [M/H] (dex) of the stars formed in each bin, inside ``zh_range``;
    ``[..., 1]`` natural log of its 1-sigma uncertainty (dex).

:func:`build_model` returns a *compiled* model (Adam with gradient clipping, the losses
:class:`~sfh_ml.network.losses.SFHLoss` and :class:`~sfh_ml.network.losses.ZHLoss`, and the
point-error metrics), so that a saved model carries its optimizer state and training can resume
from it. Pass ``compile=False`` to get it uncompiled.
"""

import keras
import numpy as np
from keras import layers

from ..constants import ZH_RANGE
from .layers import HistoryHead, InputNormalization, PositionEmbedding
from .losses import SFHLoss, ZHLoss, point_metrics

__all__ = ["VERSIONS", "DEFAULT_HYPER", "build_model", "compile_model", "adapt", "resolve_hyper"]

VERSIONS = ("v1", "v2")
_COMMON = {
    "latent_dim": 128,
    "phot_units": 64,
    "decoder_units": 256,
    "dropout": 0.0,
    # silu: smoother than relu (fits a tiny set ~25 % better in the same steps), as cheap on CPU
    "activation": "silu",
    "proj_activation": None,
    # False: the photometry is ignored (masked) whatever is passed: the spectra-only ablation
    "use_photometry": True,
    # The same convolutional tokeniser in both: strided convolutions take 3681 px -> 461 -> 231 -> 116
    # -> 29 tokens. The stem's stride of 8 pixels (10 A, about the FWHM of a 150 km/s line at 6000 A),
    # with a kernel of 11 that overlaps its neighbours, makes inference 2.2 times as fast as the first
    # shipped network's stride of 4 (kernel 7, 58 tokens) at the same validation error (issue 19:
    # 50,000 spectra, 12 epochs, the two runs side by side; see the model card).
    "stem_filters": 16,
    "stem_kernel": 11,
    "stem_stride": 8,
    "conv_filters": (32, 48),
    "conv_kernel": 5,
    "conv_strides": (2, 2),
    "token_dim": 64,
    "token_stride": 4,
    "token_proj": 8,
}
DEFAULT_HYPER = {
    "v1": dict(_COMMON),
    "v2": {**_COMMON, "n_heads": 4, "n_blocks": 2, "ff_dim": 128},  # self-attention over the tokens
}


def _conv(x, filters, kernel, stride, act, name):
    return layers.Conv1D(filters, kernel, strides=stride, padding="same", activation=act, name=name)(x)


def _conv_tokens(spec, hp):
    """Strided convolutional encoder: (batch, n_wave, 2) -> (batch, n_tokens, token_dim)."""
    act = hp["activation"]
    x = _conv(spec, hp["stem_filters"], hp["stem_kernel"], hp["stem_stride"], act, "stem")  # (b, n/8, 16)
    for i, (filters, stride) in enumerate(zip(hp["conv_filters"], hp["conv_strides"])):
        x = _conv(x, filters, hp["conv_kernel"], stride, act, f"conv{i + 1}")  # (b, n/16, 32), (b, n/32, 48)
    return _conv(x, hp["token_dim"], hp["conv_kernel"], hp["token_stride"], act, "tokens")  # (b, n/128, 64)


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


def resolve_hyper(version, hyper):
    """The hyper-parameters of a network: :data:`DEFAULT_HYPER` ``[version]`` updated with ``hyper``.

    Raises ValueError for an unknown version or hyper-parameter, or an inconsistent combination.
    """
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
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
    zh_range=ZH_RANGE,
    wave_aa=None,
    age_bins_yr=None,
    filters=None,
    compile=True,
    learning_rate=1e-3,
    bin_light=None,
    zh_grid=None,
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
        and the metrics :func:`sfh_cum_mae`, :func:`zh_mae` (logged under these names).
    learning_rate : float
        Initial Adam learning rate.
    bin_light : array, shape (n_bins, n_zh), optional
        The training set's light table (5500 A light per solar mass formed in each age bin, for
        each [M/H] of ``zh_grid``), stored in the model for light-weighted means; see
        :class:`~sfh_ml.network.layers.HistoryHead`.
    zh_grid : array, shape (n_zh,), optional
        [M/H] (dex) of the columns of ``bin_light``; given if and only if it is.
    **hyper
        Overrides of :data:`DEFAULT_HYPER` ``[version]`` (e.g. ``token_dim=32``, ``dropout=0.1``).

    Returns
    -------
    keras.Model
        Inputs ``{"spectrum": (batch, n_wave), "photometry": (batch, n_bands)}`` (physical units,
        NaN = masked); outputs ``{"sfh": (batch, n_bins, 2), "zh": (batch, n_bins, 2)}``.
    """
    _check_build_args(version, n_wave, n_bands, n_bins, zh_range, wave_aa, age_bins_yr, filters)
    hp = resolve_hyper(version, hyper)
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
    head = HistoryHead(n_bins, zh_range, age_bins_yr, version, bin_light, zh_grid, name="history")
    sfh, zh = head(raw)
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
        metrics=point_metrics(),  # logged as sfh_cum_mae and zh_mae
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
