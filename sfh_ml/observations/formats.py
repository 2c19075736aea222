"""The file formats of the PHANGS data products: one home for their extension and column names.

The readers (:mod:`sfh_ml.observations.readers`) and the mock-galaxy writer
(:mod:`sfh_ml.observations.mock`) both use these tables, so a mock file is exactly what a reader of
the real release expects. Names follow the public releases (see the book's application chapter):

* PHANGS-MUSE DR1 cubes (Emsellem et al. 2022): extensions ``DATA`` (flux, ``BUNIT``
  ``10**(-20)*erg/s/cm**2/Angstrom``) and ``STAT`` (variance, the square of that unit); other MUSE
  cubes may carry ``DQ`` (0 = good). Spectral axis ``CRVAL3 + (arange(NAXIS3) + 1 - CRPIX3) * CD3_3``
  (``CDELT3`` when ``CD3_3`` is absent), ``CTYPE3 = 'AWAV'`` (air) or ``'WAVE'`` (vacuum).
* PHANGS-MUSE DAP ``MAPS`` files: one 2-D image per extension, with a celestial WCS.
* PHANGS-HST cluster and compact-association catalogues (Maschmann et al. 2024; Thilker et al.
  2025): FITS tables, fluxes in mJy corrected for Milky Way reddening and aperture, -9999 where a
  band has no coverage.
* PHANGS-HST drizzled images (Lee et al. 2022): one image per band, flux calibration keywords
  ``PHOTFLAM`` (erg/s/cm2/A per electron/s) and ``PHOTPLAM`` (pivot wavelength, A) or ``BUNIT``.
"""

__all__ = [
    "MISSING_VALUE",
    "CUBE_DATA_EXT",
    "CUBE_STAT_EXT",
    "CUBE_DQ_EXT",
    "CUBE_BUNIT",
    "AIR_CTYPE",
    "VACUUM_CTYPE",
    "MUSE_SPAXEL_ARCSEC",
    "MAPS_EXTENSIONS",
    "MAPS_LINES",
    "MAPS_ERROR_NAMES",
    "CATALOGUE_BANDS",
    "CATALOGUE_ALT_BANDS",
    "CATALOGUE_FLUX_COLUMNS",
    "CATALOGUE_COLUMNS",
    "CLUSTER_CLASSES",
    "HST_PIXEL_ARCSEC",
    "HST_SCI_EXT",
    "HST_PHOTFLAM",
    "HST_PHOTPLAM",
    "HST_FILTER_KEYS",
    "HST_COUNT_RATE_UNITS",
    "BAND_TO_FILTER",
    "catalogue_flux_column",
]

MISSING_VALUE = -9999.0  # PHANGS catalogues: no coverage in this band

# ----------------------------------------------------------------------------------------- MUSE cubes
CUBE_DATA_EXT = "DATA"
CUBE_STAT_EXT = "STAT"  # variance
CUBE_DQ_EXT = "DQ"  # optional data-quality flags, 0 = good
CUBE_BUNIT = "10**(-20)*erg/s/cm**2/Angstrom"
AIR_CTYPE = "AWAV"
VACUUM_CTYPE = "WAVE"
MUSE_SPAXEL_ARCSEC = 0.2

# ----------------------------------------------------------------------------------------- DAP maps
# Quantity -> (unit, description). Each may come with ``{NAME}_ERR`` (``FORM_ERR_V_STARS`` for V_STARS).
MAPS_EXTENSIONS = {
    "FLUX": ("1e-20 erg/s/cm2/A", "mean flux of the spaxel"),
    "SNR": ("", "continuum signal-to-noise ratio per pixel"),
    "V_STARS": ("km/s", "stellar line-of-sight velocity (relative to the systemic redshift of the DAP)"),
    "FORM_ERR_V_STARS": ("km/s", "formal error of V_STARS"),
    "SIGMA_STARS": ("km/s", "stellar velocity dispersion, instrumental resolution removed"),
    "EBV_STARS": ("mag", "E(B-V) of the stellar continuum"),
    "AGE_LW": ("log10(age/yr)", "light-weighted age"),
    "AGE_MW": ("log10(age/yr)", "mass-weighted age"),
    "Z_LW": ("[M/H]", "light-weighted metallicity"),
    "Z_MW": ("[M/H]", "mass-weighted metallicity"),
    "STELLAR_MASS_DENSITY": ("M_sun/pc2", "stellar mass surface density"),
}
# Emission lines of the DAP, each with {LINE}_FLUX, _FLUX_ERR, _FLUX_CORR, _VEL, _VEL_ERR, _SIGMA, ...
MAPS_LINES = ("HB4861", "OIII5006", "NII6583", "HA6562", "SII6716", "SII6730")
# The error map of NAME, first found wins (V_STARS has only FORM_ERR_V_STARS).
MAPS_ERROR_NAMES = ("{name}_ERR", "FORM_ERR_{name}")

# ----------------------------------------------------------------------------------------- HST catalogues
# Catalogue band names in the order of sfh_ml.synthesis.photometry.PHANGS_FILTERS; the B band is F438W
# (WFC3/UVIS) or, for NGC0628, NGC1300 and NGC1672, F435W (ACS): CATALOGUE_ALT_BANDS.
CATALOGUE_BANDS = ("F275W", "F336W", "F438W", "F555W", "F814W")
CATALOGUE_ALT_BANDS = {"F438W": "F435W"}
# Flux columns, newest release first: PHANGS_{BAND}_mJy(_ERR); earlier releases and third-party copies
# _mJy_TOT(_ERR) or lowercase {band}_mJy_tot. Matched case-insensitively.
CATALOGUE_FLUX_COLUMNS = (
    ("PHANGS_{band}_mJy", "PHANGS_{band}_mJy_ERR"),
    ("PHANGS_{band}_mJy_TOT", "PHANGS_{band}_mJy_TOT_ERR"),
    ("{band}_mJy_tot", "{band}_mJy_tot_err"),
)
CATALOGUE_COLUMNS = {
    "id": "ID_PHANGS_CLUSTER",
    "ra": "PHANGS_RA",  # deg, ICRS
    "dec": "PHANGS_DEC",
    "x": "PHANGS_X",  # HST pixels from 0
    "y": "PHANGS_Y",
    "class_human": "PHANGS_CLUSTER_CLASS_HUMAN",
    "class_ml": "PHANGS_CLUSTER_CLASS_ML_VGG",
    "age_myr": "PHANGS_AGE_MINCHISQ",  # published SED fit, Myr
    "age_myr_err": "PHANGS_AGE_MINCHISQ_ERR",
    "mass_msun": "PHANGS_MASS_MINCHISQ",
    "mass_msun_err": "PHANGS_MASS_MINCHISQ_ERR",
    "ebv_mag": "PHANGS_EBV_MINCHISQ",
    "ebv_mag_err": "PHANGS_EBV_MINCHISQ_ERR",
    "reduced_chisq": "PHANGS_REDUCEDCHISQ_MINCHISQ",
    "no_coverage": "PHANGS_NO_COVERAGE_FLAG",
    "non_detection": "PHANGS_NON_DETECTION_FLAG",
}
# 1, 2: clusters (symmetric, asymmetric); 3: compact associations; above 3: artefacts.
CLUSTER_CLASSES = {1: "cluster, symmetric", 2: "cluster, asymmetric", 3: "compact association"}
HST_PIXEL_ARCSEC = 0.03962

# ----------------------------------------------------------------------------------------- HST images
HST_SCI_EXT = "SCI"  # drizzled science image; else the first 2-D image HDU
HST_PHOTFLAM = "PHOTFLAM"  # inverse sensitivity, erg/s/cm2/A per electron/s
HST_PHOTPLAM = "PHOTPLAM"  # pivot wavelength, Angstrom
HST_FILTER_KEYS = ("FILTER", "FILTER1", "FILTER2")  # WFC3: FILTER; ACS: FILTER1/FILTER2, one of them CLEAR
HST_COUNT_RATE_UNITS = ("ELECTRONS/S", "ELECTRON/S", "E/S", "E-/S", "COUNTS/S", "CPS")  # BUNIT of count rates

# pyphot filter of each catalogue band name.
BAND_TO_FILTER = {
    "F275W": "HST_WFC3_F275W",
    "F336W": "HST_WFC3_F336W",
    "F438W": "HST_WFC3_F438W",
    "F435W": "HST_ACS_WFC_F435W",
    "F555W": "HST_WFC3_F555W",
    "F814W": "HST_WFC3_F814W",
}


def catalogue_flux_column(band, release=0, error=False):
    """The catalogue column of a band's flux (or its error) in one of the known releases.

    Parameters
    ----------
    band : str
        Band name as in :data:`CATALOGUE_BANDS` (``"F275W"``).
    release : int
        Index into :data:`CATALOGUE_FLUX_COLUMNS` (0 = the final release).
    error : bool
        The error column instead of the flux.

    Returns
    -------
    str
    """
    template = CATALOGUE_FLUX_COLUMNS[release][1 if error else 0]
    return template.format(band=band.lower() if template.startswith("{band}") else band.upper())
