"""sfh_ml: star formation and metallicity histories from MUSE spectra + HST fluxes with attention CNNs.

The package has three wings, one per part of the book:

* :mod:`sfh_ml.synthesis`: synthetic observations (SSP library, SFHs, dust, nebular emission,
  MUSE and HST) and the synthetic-set files;
* :mod:`sfh_ml.network`: the networks (v1, v2), training, inference and validation metrics;
* :mod:`sfh_ml.observations`: real data: PHANGS cubes and catalogues, and spectra of any instrument;

plus :mod:`sfh_ml.fitting` (pPXF, the reference method), :mod:`sfh_ml.data` (model data),
:mod:`sfh_ml.plotting`, :mod:`sfh_ml.constants` and the command line, :mod:`sfh_ml.cli`.

The package itself exports the few verbs and nouns a user needs, from a spectrum file to an answer::

    import sfh_ml

    spectra = sfh_ml.read_spectra("spec-1234-56789-0123.fits")  # SDSS, MaNGA, MUSE 1-D, tables
    table = sfh_ml.predict_spectra(spectra)  # the shipped network: SFH, [M/H], ages, flags
    table.write("answers.ecsv")

Every name loads on first use (:data:`PUBLIC` says from where), so ``import sfh_ml`` is quick and
Keras starts only when a network name is used. Everything else lives in the wings.
"""

from ._lazy import lazy_exports
from .version import __version__

# Public name -> the module that defines it: the one list of what ``sfh_ml`` exports.
PUBLIC = {
    # synthetic sets (chapter 1)
    "DatasetConfig": ".synthesis",
    "generate": ".synthesis",
    "read_dataset": ".synthesis",
    # the network (chapters 2 and 3)
    "train": ".network",
    "load_model": ".network",
    "load_pretrained": ".network",
    "predict": ".network",
    "evaluate": ".network",
    "calibrate": ".network",
    # real data (chapter 4)
    "Spectra": ".observations",
    "read_spectra": ".observations",
    "predict_spectra": ".observations",
    "apply_cube": ".observations",
    "read_application": ".observations",
    "write_mock_galaxy": ".observations",
    "decode_quality": ".observations",
    # model data, and the folder where the chapters keep theirs
    "book_data_dir": ".utils",
    "fetch": ".data",
    "DataError": ".data",
}
_MODULES = ("synthesis", "network", "observations", "fitting", "plotting", "constants", "data", "cli")

__all__ = ["__version__", *PUBLIC]

__getattr__, __dir__ = lazy_exports(__name__, {**PUBLIC, **{m: f".{m}" for m in _MODULES}})
