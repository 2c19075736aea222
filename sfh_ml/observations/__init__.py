"""Part 4 of the book: real observations (PHANGS-MUSE cubes, PHANGS-HST catalogues and images, and
spectra of any instrument: :mod:`~sfh_ml.observations.spectra`).

Readers of the real file formats, spatial binning and the application of a trained network to a
cube (:mod:`~sfh_ml.observations.apply`) live here; see the application chapter. So does the
network-against-pPXF check on real spectra (:mod:`~sfh_ml.observations.real_spectra`, chapter 5).
"""

from .analysis import (
    ApplicationOutputs,
    GradientFit,
    RadialProfile,
    bin_average,
    cluster_age_agreement,
    compare_with_truth,
    deprojected_radius,
    fit_gradient,
    flag_table,
    pick_regions,
    radial_profile,
    radius_map,
    read_application,
    sky_offsets_arcsec,
    usable_objects,
)
from .apertures import ApertureSpectra, aperture_spectra, aperture_weights
from .apply import ApplyConfig, ApplyResult, apply_cube, run_chunk, summarise_histories
from .binning import (
    SpatialBins,
    continuum_snr,
    grid_bins,
    make_bins,
    no_bins,
    parse_bins,
    voronoi_bins,
    weighted_sums,
)
from .flags import FLAG_BITS, decode_quality, flag_names, quality_bits
from .hst import HstSpaxelFluxes, hst_spaxel_fluxes, match_psf, muse_psf_fwhm, reproject_to_spaxels
from .mock import MockGalaxy, load_mock_truth, mock_paths, write_mock_galaxy
from .prepare import (
    SKY_LINE_WINDOWS_AA,
    PreparedSpectra,
    broaden_to_model,
    clean_pixels,
    deredden_mw,
    lsf_excess_kms2,
    mw_transmission,
    photometry_to_flux_density,
    prepare_spectra,
    resample_spectra,
    rest_frame_fwhm,
    sky_line_mask,
    to_rest_frame,
    total_redshift,
)
from .readers import (
    MANGA_FLUX_UNIT,
    DapMaps,
    HstImage,
    MangaSpectra,
    MuseCube,
    read_cluster_catalogue,
    read_hst_image,
    read_manga_spectra,
    read_maps,
    read_muse_cube,
    vacuum_to_air,
)
from .real_spectra import (
    MANGA_TEST_SPECTRA,
    PPXF_SDSS_GALAXIES,
    manga_test_spectra_path,
    ppxf_sdss_spectrum_path,
    real_spectra_check,
    spectrum_bands,
)
from .redshift import check_redshift, mean_spectrum, measure_redshift
from .spectra import (
    Spectra,
    measure_kinematics,
    ppxf_spectra,
    predict_spectra,
    prepare_observed,
    read_spectra,
    write_spectra_table,
)

__all__ = [
    # analysis
    "ApplicationOutputs",
    "GradientFit",
    "RadialProfile",
    "bin_average",
    "cluster_age_agreement",
    "compare_with_truth",
    "deprojected_radius",
    "fit_gradient",
    "flag_table",
    "pick_regions",
    "radial_profile",
    "radius_map",
    "read_application",
    "sky_offsets_arcsec",
    "usable_objects",
    # apertures
    "ApertureSpectra",
    "aperture_spectra",
    "aperture_weights",
    # binning
    "SpatialBins",
    "continuum_snr",
    "grid_bins",
    "make_bins",
    "no_bins",
    "parse_bins",
    "voronoi_bins",
    "weighted_sums",
    # mock
    "MockGalaxy",
    "load_mock_truth",
    "mock_paths",
    "write_mock_galaxy",
    # apply
    "ApplyConfig",
    "ApplyResult",
    "apply_cube",
    "run_chunk",
    "summarise_histories",
    # hst
    "HstSpaxelFluxes",
    "hst_spaxel_fluxes",
    "match_psf",
    "muse_psf_fwhm",
    "reproject_to_spaxels",
    # flags
    "FLAG_BITS",
    "decode_quality",
    "flag_names",
    "quality_bits",
    # prepare
    "SKY_LINE_WINDOWS_AA",
    "PreparedSpectra",
    "broaden_to_model",
    "clean_pixels",
    "deredden_mw",
    "mw_transmission",
    "photometry_to_flux_density",
    "lsf_excess_kms2",
    "prepare_spectra",
    "resample_spectra",
    "rest_frame_fwhm",
    "sky_line_mask",
    "to_rest_frame",
    "total_redshift",
    # the network and pPXF on real spectra
    "MANGA_TEST_SPECTRA",
    "PPXF_SDSS_GALAXIES",
    "manga_test_spectra_path",
    "ppxf_sdss_spectrum_path",
    "real_spectra_check",
    "spectrum_bands",
    # redshift
    "check_redshift",
    "mean_spectrum",
    "measure_redshift",
    # readers
    "DapMaps",
    "HstImage",
    "MuseCube",
    "read_cluster_catalogue",
    "read_hst_image",
    "read_maps",
    "read_muse_cube",
    "vacuum_to_air",
    "MANGA_FLUX_UNIT",
    "MangaSpectra",
    "read_manga_spectra",
    # spectra of any instrument (the subpackage's constants and table_kind stay there)
    "Spectra",
    "measure_kinematics",
    "ppxf_spectra",
    "predict_spectra",
    "prepare_observed",
    "read_spectra",
    "write_spectra_table",
]
