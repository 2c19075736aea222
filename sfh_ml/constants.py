"""Physical constants and the project's fixed numbers, each written once and imported everywhere else.

Units are in the names: ``_KMS`` km/s, ``_YR`` years, ``_AA`` Angstrom.
"""

import math

__all__ = [
    "C_KMS",
    "C_AA_S",
    "FWHM_TO_SIGMA",
    "MAX_AGE_YR",
    "BIRTH_CLOUD_AGE_YR",
    "ZH_RANGE",
    "HALPHA_LABEL",
    "HBETA_LABEL",
    "V_WAVE_AA",
    "TRAINING_SIGMA_KMS",
    "ARCSEC_PER_RAD",
    "NMAD_FACTOR",
]

C_KMS = 299792.458  # speed of light, km/s
C_AA_S = 2.99792458e18  # speed of light, Angstrom / s
FWHM_TO_SIGMA = 1.0 / math.sqrt(8.0 * math.log(2.0))  # sigma = FWHM / 2.3548 for a Gaussian
ARCSEC_PER_RAD = 180.0 * 3600.0 / math.pi  # 206264.806 arcsec per radian
NMAD_FACTOR = 1.4826  # normalised median absolute deviation: NMAD = sigma for a Gaussian

# Every history starts 14.1 Gyr ago (the seed's look-back time). The oldest SSP of the library is
# 12.6 Gyr (E-MILES has no 14.1 Gyr model): it stands for all stars formed 11.2-14.1 Gyr ago.
MAX_AGE_YR = 14.1254e9
# Stars younger than this sit inside their birth cloud: they see its dust (Charlot & Fall 2000,
# sect. 2) and ionise it (Bagpipes' t_bc).
BIRTH_CLOUD_AGE_YR = 1e7
# [M/H] range of the E-MILES grid (ppxf 8.1.0): histories, targets and predictions stay inside it.
ZH_RANGE = (-1.71, 0.22)
# Cloudy labels of the Balmer lines used for diagnostics (air wavelengths, Angstrom).
HALPHA_LABEL = "H  1  6562.80A"
HBETA_LABEL = "H  1  4861.32A"
V_WAVE_AA = 5500.0  # reference wavelength of V-band optical depths and light weights
# Stellar velocity dispersions of the training spectra (km/s): PHANGS disc regions are colder and are
# broadened to the lower end before prediction; bulges and massive-cluster apertures reach the upper.
TRAINING_SIGMA_KMS = (150.0, 350.0)
