"""sfh_ml: star formation and metallicity histories from MUSE spectra + HST fluxes with attention CNNs.

The package has three wings, one per part of the book:

* :mod:`sfh_ml.synthesis`: synthetic observations (SSP library, SFHs, dust, nebular emission,
  MUSE and HST) and the synthetic-set files;
* :mod:`sfh_ml.network`: the networks (v1, v2), training, inference and validation metrics;
* :mod:`sfh_ml.observations`: real PHANGS data, and spectra of any instrument (``read_spectra``,
  ``predict_spectra``);

plus :mod:`sfh_ml.data` (model data), :mod:`sfh_ml.plotting`, :mod:`sfh_ml.constants` and the
command line, :mod:`sfh_ml.cli`. The synthesis names are imported here directly; the network names
(``predict``, ``load_model``, ``train``, ``calibrate``, ...) on first use, so that ``import sfh_ml``
and the data commands do not start Keras; so are the names of spectra of any instrument
(``read_spectra``, ``predict_spectra``, ...), which live in :mod:`sfh_ml.observations`.
"""

import importlib

from . import constants
from .constants import BIRTH_CLOUD_AGE_YR, MAX_AGE_YR, ZH_RANGE
from .data import DataError, cache_dir, fetch
from .synthesis import *  # noqa: F403
from .synthesis import __all__ as _synthesis_all
from .utils import book_data_dir

__version__ = "0.1.0"

_NETWORK = (
    "build_model",
    "train",
    "load_model",
    "predict",
    "evaluate",
    "predict_file",
    "calibrate",
    "load_pretrained",
    "pretrained_info",
    "pretrained_card",
    "check_compatible",
    "get_metadata",
    "metrics",
)

_OBSERVATIONS = (
    "Spectra",
    "read_spectra",
    "predict_spectra",
    "ppxf_spectra",
    "write_spectra_table",
)

__all__ = [
    "__version__",
    "constants",
    "BIRTH_CLOUD_AGE_YR",
    "MAX_AGE_YR",
    "ZH_RANGE",
    "DataError",
    "cache_dir",
    "fetch",
    "book_data_dir",
    *_synthesis_all,
    *_NETWORK,
    *_OBSERVATIONS,
]


def __getattr__(name):
    if name in _NETWORK:
        return getattr(importlib.import_module(".network", __name__), name)
    if name in _OBSERVATIONS:
        return getattr(importlib.import_module(".observations", __name__), name)
    if name in ("network", "observations", "plotting", "cli"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'sfh_ml' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
