"""Part 1 of the book: synthetic observations.

From star formation histories to MUSE spectra and HST fluxes, and the synthetic-set files:

* :mod:`~sfh_ml.synthesis.ssp`: the SSP library (E-MILES + BC03-MILES young ages + Cloudy grids);
* :mod:`~sfh_ml.synthesis.sfh`: SFH families (skew-normal + burst, dense basis) with Z(t);
* :mod:`~sfh_ml.synthesis.parametric`: classic parametric families for held-out sets (delayed tau,
  exponential, truncated constant, log-normal, double power law);
* :mod:`~sfh_ml.synthesis.dust`: Charlot & Fall (2000) attenuation, and the Calzetti and SMC curves;
* :mod:`~sfh_ml.synthesis.nebular`: nebular continuum and lines;
* :mod:`~sfh_ml.synthesis.instrument`: the MUSE grid, line-spread function, broadening and noise;
* :mod:`~sfh_ml.synthesis.photometry`: the five PHANGS-HST bands;
* :mod:`~sfh_ml.synthesis.synthesizer`: all of it together, vectorised over objects;
* :mod:`~sfh_ml.synthesis.perturbations`: observational errors of held-out sets (flux calibration,
  wavelength shift, sky residuals; the LSF error is part of the synthesis);
* :mod:`~sfh_ml.synthesis.lines`: the emission lines the synthesizer draws, and the mask that
  leaves them out of fits;
* :mod:`~sfh_ml.synthesis.config`: what defines a synthetic set (:class:`DatasetConfig`);
* :mod:`~sfh_ml.synthesis.dataset`: seeded, resumable generation of synthetic sets into HDF5;
* :mod:`~sfh_ml.synthesis.pool`: the worker processes of a run, its stops by signal, its progress;
* :mod:`~sfh_ml.synthesis.store`: the chunks of a run on disk, the HDF5 file and its reader;
* :mod:`~sfh_ml.synthesis.worlds`: test worlds, held-out sets made unlike the training sets;
* :mod:`~sfh_ml.synthesis.schema`: their file format, one table (datasets, shapes, units, attributes).

Nothing here imports Keras.
"""

from .config import FAMILIES, LIBRARIES, DatasetConfig
from .dataset import generate, generate_chunk
from .dust import (
    DUST_LAWS,
    attenuation,
    attenuation_curve,
    calzetti_curve,
    charlot_fall,
    dust_curve,
    optical_depth,
    smc_curve,
)
from .instrument import add_noise, broadening_matrix, muse_lsf_fwhm, muse_wave, noise_sigma, total_sigma_aa
from .nebular import KENNICUTT_HALPHA, L_SUN_ERG_S, add_lines, birth_cloud_line_ew, sfr_from_halpha
from .parametric import (
    PARAMETRIC_FAMILIES,
    DelayedTauBurst,
    DoublePowerLaw,
    ExponentialTau,
    LogNormal,
    TruncatedConstant,
    parametric_families,
)
from .perturbations import draw_lsf_scale, flux_calibration_error, shift_spectra, sky_residuals
from .photometry import PHANGS_FILTERS, band_flux, band_weights, flam_to_mjy, mjy_to_flam, pivot_wavelengths
from .schema import SCHEMA_VERSION
from .sfh import (
    ChemicalEvolution,
    ConstantSFH,
    DenseBasis,
    SFHBatch,
    SkewNormalBurst,
    concatenate,
    default_age_bins,
)
from .ssp import SSPLibrary, build_library, emiles_fwhm_aa, library_path, load_library
from .store import read_dataset
from .synthesizer import LibraryMix, SynthesisParams, Synthesizer
from .worlds import AXES, TEST_WORLDS, TRAINING_WORLD, WORLD_DESCRIPTIONS, leave_out_world, world_config

__all__ = [
    "FAMILIES",
    "LIBRARIES",
    "SCHEMA_VERSION",
    "DatasetConfig",
    "generate",
    "generate_chunk",
    "read_dataset",
    "attenuation",
    "attenuation_curve",
    "calzetti_curve",
    "charlot_fall",
    "dust_curve",
    "DUST_LAWS",
    "optical_depth",
    "smc_curve",
    "PARAMETRIC_FAMILIES",
    "DelayedTauBurst",
    "DoublePowerLaw",
    "ExponentialTau",
    "LogNormal",
    "TruncatedConstant",
    "parametric_families",
    "draw_lsf_scale",
    "flux_calibration_error",
    "shift_spectra",
    "sky_residuals",
    "add_noise",
    "broadening_matrix",
    "muse_lsf_fwhm",
    "muse_wave",
    "noise_sigma",
    "total_sigma_aa",
    "KENNICUTT_HALPHA",
    "L_SUN_ERG_S",
    "add_lines",
    "birth_cloud_line_ew",
    "sfr_from_halpha",
    "PHANGS_FILTERS",
    "band_flux",
    "band_weights",
    "flam_to_mjy",
    "mjy_to_flam",
    "pivot_wavelengths",
    "ChemicalEvolution",
    "ConstantSFH",
    "DenseBasis",
    "SFHBatch",
    "SkewNormalBurst",
    "concatenate",
    "default_age_bins",
    "SSPLibrary",
    "build_library",
    "emiles_fwhm_aa",
    "library_path",
    "load_library",
    "LibraryMix",
    "SynthesisParams",
    "Synthesizer",
    "AXES",
    "TEST_WORLDS",
    "TRAINING_WORLD",
    "leave_out_world",
    "WORLD_DESCRIPTIONS",
    "world_config",
]
