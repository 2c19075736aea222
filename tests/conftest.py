import numpy as np
import pytest

from sfh_ml.synthesis.ssp import load_library
from sfh_ml.synthesis.synthesizer import SynthesisParams, Synthesizer


@pytest.fixture(scope="session")
def library():
    return load_library()


@pytest.fixture(scope="session")
def synth(library):
    return Synthesizer(library)


def make_params(n, **kw):
    """Synthesis parameters with no dust and high S/N unless given."""
    base = dict(
        tau_bc=0.0, tau_ism=0.0, log_u=-2.5, sigma_kms=150.0, sigma_gas_kms=50.0, snr=1e3, snr_phot=1e3
    )
    base.update(kw)
    return SynthesisParams(**{k: np.broadcast_to(np.asarray(v, float), (n,)).copy() for k, v in base.items()})


# Hyper-parameters of tiny networks (a few seconds of training on 2 cores), shared by the network tests.
TINY_V1 = {
    "stem_filters": 8,
    "conv_filters": (16,),
    "conv_strides": (2,),
    "token_dim": 16,
    "token_proj": 4,
    "latent_dim": 32,
    "phot_units": 16,
    "decoder_units": 64,
}
TINY_V2 = {**TINY_V1, "n_heads": 2, "n_blocks": 1, "ff_dim": 32}


def build_tiny(version="v2", n_wave=None, n_bands=5, n_bins=None, seed=None, adapt=None, **kw):
    """A tiny network (:data:`TINY_V2` or :data:`TINY_V1`), the one construction of the tests.

    Defaults: the MUSE grid (3681 pixels), the five PHANGS bands and the default age bins. ``seed``
    seeds the weights (Keras's global seed); ``adapt``, ``(spectra, photometry)``, fits the input
    standardisation. Other keywords go to :func:`sfh_ml.network.build_model` (grids, ``zh_range``,
    hyper-parameters, which override the tiny ones).
    """
    import keras

    from sfh_ml import network

    if n_wave is None and "wave_aa" not in kw:
        from sfh_ml.synthesis.instrument import muse_wave

        kw["wave_aa"] = muse_wave()
    if n_bins is None and "age_bins_yr" not in kw:
        from sfh_ml.synthesis.sfh import default_age_bins

        kw["age_bins_yr"] = default_age_bins()
    if "filters" not in kw and n_bands == 5:
        from sfh_ml.synthesis.photometry import PHANGS_FILTERS

        kw["filters"] = list(PHANGS_FILTERS)
    n_wave = len(kw["wave_aa"]) if n_wave is None else n_wave
    n_bins = len(kw["age_bins_yr"]) - 1 if n_bins is None else n_bins
    if seed is not None:
        keras.utils.set_random_seed(seed)
    hyper = TINY_V2 if version == "v2" else TINY_V1
    model = network.build_model(version, n_wave, n_bands, n_bins, **{**hyper, **kw})
    if adapt is not None:
        network.adapt(model, *adapt)
    return model


@pytest.fixture(scope="session")
def tiny_v2():
    """An untrained tiny v2 on the MUSE grid, the PHANGS bands and the default age bins (seed 0)."""
    pytest.importorskip("keras")
    return build_tiny("v2", seed=0)


@pytest.fixture(scope="session")
def mock_galaxy_factory(tmp_path_factory):
    """``make(**kw)``: :func:`sfh_ml.observations.write_mock_galaxy` with ``kw`` (no progress bar)
    into a session folder, written once per set of keywords (the same call returns the same mock)."""
    from sfh_ml.observations.mock import write_mock_galaxy

    made = {}

    def make(**kw):
        key = repr(sorted(kw.items()))
        if key not in made:
            made[key] = write_mock_galaxy(tmp_path_factory.mktemp("mock"), progress=False, **kw)
        return made[key]

    return make


@pytest.fixture(scope="session")
def mock_galaxy(mock_galaxy_factory):
    """The small mock galaxy of the application tests: 20 x 20 spaxels, 3 clusters, seed 0."""
    return mock_galaxy_factory(shape=(20, 20), n_clusters=3)
