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
