"""sfh_ml: star formation and metallicity histories from MUSE spectra + HST fluxes with attention CNNs."""

from .data import DataError, cache_dir, fetch
from .dataset import DatasetConfig, generate, generate_chunk, read_dataset
from .dust import attenuation, charlot_fall, optical_depth
from .instrument import add_noise, broadening_matrix, muse_lsf_fwhm, muse_wave, noise_sigma, total_sigma_aa
from .nebular import KENNICUTT_HALPHA, L_SUN_ERG_S, add_lines, sfr_from_halpha
from .photometry import PHANGS_FILTERS, band_flux, band_weights, flam_to_mjy, mjy_to_flam, pivot_wavelengths
from .sfh import (
    MAX_AGE_YR,
    ZH_RANGE,
    ChemicalEvolution,
    ConstantSFH,
    DenseBasis,
    SFHBatch,
    SkewNormalBurst,
    concatenate,
    default_age_bins,
)
from .ssp import SSPLibrary, build_library, emiles_fwhm_aa, library_path, load_library
from .synthesis import SynthesisParams, Synthesizer

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "cache_dir",
    "fetch",
    "DatasetConfig",
    "generate",
    "generate_chunk",
    "read_dataset",
    "attenuation",
    "charlot_fall",
    "optical_depth",
    "add_noise",
    "broadening_matrix",
    "muse_lsf_fwhm",
    "muse_wave",
    "noise_sigma",
    "total_sigma_aa",
    "KENNICUTT_HALPHA",
    "L_SUN_ERG_S",
    "add_lines",
    "sfr_from_halpha",
    "PHANGS_FILTERS",
    "band_flux",
    "band_weights",
    "flam_to_mjy",
    "mjy_to_flam",
    "pivot_wavelengths",
    "MAX_AGE_YR",
    "ZH_RANGE",
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
    "SynthesisParams",
    "Synthesizer",
]
