"""The mock PHANGS galaxy, spatial binning and aperture spectra (sfh_ml.observations)."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from scipy.special import ndtr

from sfh_ml.constants import C_KMS, HALPHA_LABEL
from sfh_ml.observations import formats as fmt
from sfh_ml.observations.apertures import aperture_spectra, aperture_weights
from sfh_ml.observations.binning import (
    SpatialBins,
    continuum_snr,
    grid_bins,
    no_bins,
    voronoi_bins,
    weighted_sums,
)
from sfh_ml.observations.mock import load_mock_truth, write_mock_galaxy
from sfh_ml.synthesis import (
    PHANGS_FILTERS,
    SkewNormalBurst,
    SynthesisParams,
    flam_to_mjy,
    muse_wave,
    pivot_wavelengths,
)
from sfh_ml.synthesis.nebular import L_SUN_ERG_S

SHAPE = (24, 24)
N_CLUSTERS = 4


@pytest.fixture(scope="module")
def mock(tmp_path_factory, library):
    folder = tmp_path_factory.mktemp("mock")
    return write_mock_galaxy(
        folder, seed=3, shape=SHAPE, n_clusters=N_CLUSTERS, progress=False, synthesizer_library=library
    )


@pytest.fixture(scope="module")
def cube(mock):
    with fits.open(mock.cube) as hdul:
        header = hdul["DATA"].header
        yield dict(
            data=hdul["DATA"].data.copy(),
            stat=hdul["STAT"].data.copy(),
            dq=hdul["DQ"].data.copy(),
            header=header.copy(),
            wave=header["CRVAL3"] + (np.arange(header["NAXIS3"]) + 1 - header["CRPIX3"]) * header["CD3_3"],
            wcs=WCS(header).celestial,
        )


def sky_wcs(shape, pixel_arcsec=0.2, centre=(150.0, 2.0)):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = centre
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    w.wcs.cdelt = [-pixel_arcsec / 3600, pixel_arcsec / 3600]
    return w


# ----------------------------------------------------------------------------------------- the mock files


def test_mock_cube_has_the_release_extensions_and_wcs(mock, cube):
    with fits.open(mock.cube) as hdul:
        names = [h.name for h in hdul]
        assert names == ["PRIMARY", fmt.CUBE_DATA_EXT, fmt.CUBE_STAT_EXT, fmt.CUBE_DQ_EXT]
        h = hdul["DATA"].header
        assert h["BUNIT"] == fmt.CUBE_BUNIT
        assert (h["CTYPE3"], h["CUNIT3"], h["CD3_3"]) == (fmt.AIR_CTYPE, "Angstrom", 1.25)
        assert hdul["DATA"].data.shape == (3681, *SHAPE) and hdul["DATA"].header["BITPIX"] == -32
    np.testing.assert_allclose(cube["wave"], muse_wave(), atol=1e-6)
    scale = np.abs(cube["wcs"].proj_plane_pixel_scales()[0].to_value("arcsec"))
    assert scale == pytest.approx(fmt.MUSE_SPAXEL_ARCSEC)
    assert cube["wcs"].wcs.ctype[0] == "RA---TAN"


def test_mock_maps_catalogue_and_images_use_the_release_names(mock, cube):
    with fits.open(mock.maps) as hdul:
        names = {h.name for h in hdul[1:]}
        assert set(fmt.MAPS_EXTENSIONS) <= names
        assert {"HA6562_FLUX", "HA6562_FLUX_ERR"} <= names
        for h in hdul[1:]:
            assert h.data.shape == SHAPE
            assert np.allclose(WCS(h.header).wcs.crval, cube["wcs"].wcs.crval)
    cat = Table.read(mock.catalogue)
    assert set(fmt.CATALOGUE_COLUMNS.values()) <= set(cat.colnames)
    for band in fmt.CATALOGUE_BANDS:
        assert fmt.catalogue_flux_column(band) in cat.colnames
        assert fmt.catalogue_flux_column(band, error=True) in cat.colnames
    f275 = cat[fmt.catalogue_flux_column("F275W")]
    assert 1 <= np.sum(f275 == fmt.MISSING_VALUE) <= 2
    assert np.all(cat[fmt.catalogue_flux_column("F814W")] > 0)
    assert set(cat[fmt.CATALOGUE_COLUMNS["class_human"]]) <= {1, 2, 3}
    for band, path in mock.images.items():
        with fits.open(path) as hdul:
            h = hdul[0].header
            assert h["FILTER"] == band and h[fmt.HST_PHOTFLAM] > 0 and h[fmt.HST_PHOTPLAM] > 2000
            scale = WCS(h).proj_plane_pixel_scales()[0].to_value("arcsec")
            assert scale == pytest.approx(fmt.HST_PIXEL_ARCSEC)
            assert np.isnan(hdul[0].data).any() == (band == "F275W")


def test_mock_refuses_to_overwrite_and_leaves_files_alone(mock):
    before = {p: p.stat().st_mtime_ns for p in mock.paths}
    with pytest.raises(FileExistsError, match="exists"):
        write_mock_galaxy(mock.cube.parent, shape=SHAPE, progress=False)
    assert {p: p.stat().st_mtime_ns for p in mock.paths} == before
    assert not list(mock.cube.parent.glob("*.tmp*"))


def test_mock_cube_has_noise_edges_and_flags(mock, cube):
    data, stat, dq = cube["data"], cube["stat"], cube["dq"]
    edge = np.isnan(data).all(axis=0)
    assert edge[0, 0] and edge[-1, -1] and not edge[SHAPE[0] // 2, SHAPE[1] // 2]
    assert 0 < edge.sum() < 0.2 * edge.size
    good = ~edge
    assert np.all(stat[:, good] > 0)
    assert np.sum(dq[:, good] != 0) > 0
    maps, _, params = load_mock_truth(mock.truth)
    signal, noise = continuum_snr(data, stat, cube["wave"], redshift=params["redshift"])
    snr = signal / noise
    inner, outer = good & (maps["RADIUS_RD"] < 1.0), good & (maps["RADIUS_RD"] > 2.0)
    assert np.median(snr[inner]) > 1.5 * np.median(snr[outer])
    assert np.corrcoef(signal[good], noise[good] ** 2)[0, 1] > 0.95  # photon noise dominates
    # STAT is the variance of the noise: differences of neighbouring channels in a smooth stretch.
    window = (cube["wave"] > 6000) & (cube["wave"] < 6250)
    d = np.diff(data[window][:, good], axis=0)
    s = stat[window][:, good]
    flagged = (dq[window][:, good][1:] != 0) | (dq[window][:, good][:-1] != 0)
    ratio = (d**2 / (s[1:] + s[:-1]))[~flagged]
    assert np.mean(ratio) == pytest.approx(1.0, abs=0.1)


def test_mock_halpha_sits_at_the_rotating_disc_redshift(mock, cube, library):
    with fits.open(mock.maps) as hdul:
        ha_map = hdul["HA6562_FLUX"].data
        v_map = hdul["V_STARS"].data
    _, _, params = load_mock_truth(mock.truth)
    iy, ix = np.unravel_index(np.nanargmax(ha_map), ha_map.shape)
    ha = library.line_wave_aa[library.line_index(HALPHA_LABEL)]
    expected = ha * (1 + params["redshift"]) * (1 + v_map[iy, ix] / C_KMS)
    near = np.abs(cube["wave"] - expected) < 10
    spec = cube["data"][near, iy, ix]
    peak = np.sum(cube["wave"][near] * spec**4) / np.sum(spec**4)  # centroid of the line's core
    assert peak == pytest.approx(expected, abs=0.3)
    assert np.nanmax(np.abs(v_map)) > 50  # it rotates


def test_mock_truth_has_its_stated_gradients(mock):
    maps, clusters, params = load_mock_truth(mock.truth)
    disc = (maps["CLUSTER_LIGHT_FRAC"] < 0.05) & (maps["RADIUS_RD"] < 2.5)
    r = maps["RADIUS_RD"][disc]
    slope_zh = np.polyfit(r, maps["MW_ZH"][disc], 1)[0]
    slope_age = np.polyfit(r, maps["MW_LOG_AGE"][disc], 1)[0]
    assert slope_zh == pytest.approx(params["zh_gradient_dex_per_rd"], abs=0.05)
    assert slope_age < -0.1
    assert np.max(maps["YOUNG_FRAC"][maps["ARM"] > 0.5]) > 5 * np.median(maps["YOUNG_FRAC"])
    assert len(clusters) == N_CLUSTERS
    assert clusters["age_yr"].min() == pytest.approx(2e6) and clusters["age_yr"].max() == pytest.approx(1e9)


def test_mock_catalogue_fluxes_are_the_synthesizer_photometry_in_mjy(mock, synth):
    _, cl, params = load_mock_truth(mock.truth)
    cat = Table.read(mock.catalogue)
    n = len(cl)
    one = np.ones(n)
    sfh = SkewNormalBurst().batch(
        np.asarray(cl["age_yr"]),
        0.1 * np.asarray(cl["age_yr"]),
        0 * one,
        np.asarray(cl["burst_age_yr"]),
        np.asarray(cl["burst_duration_yr"]),
        one,
        np.asarray(cl["zh"]),
        np.asarray(cl["zh"]),
        one,
    )
    p = SynthesisParams(
        tau_bc=np.asarray(cl["tau_bc"]),
        tau_ism=np.asarray(cl["tau_ism"]),
        log_u=np.asarray(cl["log_u"]),
        sigma_kms=150 * one,
        sigma_gas_kms=30 * one,
        snr=100 * one,
        snr_phot=100 * one,
    )
    phot = synth(sfh, p, noise=False)["photometry_noiseless"]  # L_sun / A per M_sun
    d_cm = params["distance_mpc"] * 3.0856775814913673e24
    flam = phot * np.asarray(cl["mass_formed"])[:, None] * L_SUN_ERG_S / (4 * np.pi * d_cm**2)
    expected = flam_to_mjy(flam, pivot_wavelengths(PHANGS_FILTERS))
    got = np.column_stack([cat[fmt.catalogue_flux_column(b)] for b in fmt.CATALOGUE_BANDS])
    covered = got != fmt.MISSING_VALUE
    assert np.array_equal(covered[:, 0], np.asarray(cl["f275w_covered"]))
    assert covered[:, 1:].all()
    np.testing.assert_allclose(got[covered], expected[covered], rtol=1e-3)


# ----------------------------------------------------------------------------------------- binning


def test_voronoi_bins_of_the_mock_reach_the_target_snr(mock, cube):
    target = 30.0
    z = mock.params["redshift"]
    signal, noise = continuum_snr(cube["data"], cube["stat"], cube["wave"], redshift=z)
    bins = voronoi_bins(signal, noise, target, min_snr=2.0)
    assert bins.kind == "voronoi" and bins.n_bins > 5
    assert np.all(bins.bin_id[np.isnan(signal)] == -1)
    flux, var = bins.sum_spectra(cube["data"], cube["stat"])
    s, n = continuum_snr(flux.T, var.T, cube["wave"], redshift=z)
    snr = s / n
    multi = bins.n_spaxels > 1
    assert np.all(snr[multi] >= 0.8 * target)
    assert np.median(snr[multi]) == pytest.approx(target, rel=0.15)
    np.testing.assert_allclose(snr, bins.snr, rtol=0.02)  # the expected S/N is what the sums reach


def test_grid_bins_partition_the_spaxels():
    bins = grid_bins((7, 10), 3)
    assert bins.n_bins == 3 * 4
    counts = np.bincount(bins.bin_id.ravel())
    assert counts.sum() == 70 and counts.max() == 9 and counts.min() == 1  # the corner bin
    members = np.sort(np.concatenate(bins.members))
    np.testing.assert_array_equal(members, np.arange(70))
    mask = np.ones((7, 10), bool)
    mask[:3, :3] = False
    masked = grid_bins((7, 10), 3, mask=mask)
    assert masked.n_bins == 11 and np.all(masked.bin_id[:3, :3] == -1)
    single = no_bins(mask)
    assert single.n_bins == mask.sum() and np.all(single.n_spaxels == 1)


def test_paint_and_streamed_sums_round_trip():
    rng = np.random.default_rng(5)
    n_wave, shape = 40, (9, 11)
    flux = rng.normal(10, 1, (n_wave, *shape))
    var = rng.uniform(0.5, 2, (n_wave, *shape))
    bin_id = rng.integers(-1, 6, shape)
    bins = SpatialBins(bin_id)
    np.testing.assert_array_equal(bins.paint(np.arange(bins.n_bins), fill=-1), bin_id)
    painted = bins.paint(np.arange(12.0).reshape(6, 2))
    assert painted.shape == (2, *shape) and np.isnan(painted[:, bin_id == -1]).all()
    fs, vs = bins.sum_spectra(flux, var, max_voxels=n_wave * shape[1] * 2)  # 2 rows at a time
    for b in range(bins.n_bins):
        np.testing.assert_allclose(fs[b], flux[:, bin_id == b].sum(axis=1))
        np.testing.assert_allclose(vs[b], var[:, bin_id == b].sum(axis=1))
    np.testing.assert_allclose(bins.aggregate(flux[0]), fs[:, 0])


def test_sums_rescale_a_channel_missing_in_one_member():
    flux = np.full((3, 4), 2.0)
    var = np.ones((3, 4))
    flux[1, 0] = np.nan
    fs, vs = weighted_sums(flux, var, np.ones((1, 4)))
    np.testing.assert_allclose(fs[0], [8.0, 8.0, 8.0])
    np.testing.assert_allclose(vs[0], [4.0, 3.0 * (4 / 3) ** 2, 4.0])
    flux[1, :3] = np.nan
    assert np.isnan(weighted_sums(flux, var, np.ones((1, 4)))[0][0, 1])


def test_continuum_window_outside_the_cube_is_refused():
    with pytest.raises(ValueError, match="not covered"):
        continuum_snr(np.ones((50, 2, 2)), np.ones((50, 2, 2)), np.linspace(7000, 8000, 50))


# ----------------------------------------------------------------------------------------- apertures


def test_aperture_picks_the_spaxels_around_the_position():
    shape, n_wave = (30, 30), 20
    w = sky_wcs(shape)
    flux = np.zeros((n_wave, *shape))
    flux[:, 10:13, 15:18] = 100.0  # a 3 x 3 block centred on spaxel (x=16, y=11)
    var = np.ones_like(flux)
    ra, dec = w.pixel_to_world_values(16.0, 11.0)
    res = aperture_spectra(flux, var, w, [ra], [dec], radius_arcsec=0.6)  # 3 spaxels: the block inside
    assert res.x_pix[0] == pytest.approx(16.0) and res.y_pix[0] == pytest.approx(11.0)
    np.testing.assert_allclose(res.flux[0], 900.0)
    assert res.area_spaxels[0] == pytest.approx(np.pi * 3**2, rel=0.01)
    np.testing.assert_allclose(res.var[0], np.sum(aperture_weights(shape, 16, 11, 3.0) ** 2))
    off = aperture_spectra(flux, var, w, *w.pixel_to_world_values([5.0], [25.0]), radius_arcsec=0.6)
    np.testing.assert_allclose(off.flux[0], 0.0)


def test_annulus_subtraction_removes_a_constant_background():
    shape, n_wave = (30, 30), 5
    w = sky_wcs(shape)
    flux = np.full((n_wave, *shape), 7.0)
    flux[:, 14:17, 14:17] += 50.0
    var = np.full_like(flux, 2.0)
    ra, dec = w.pixel_to_world_values(15.3, 14.8)  # off the spaxel centre
    res = aperture_spectra(flux, var, w, [ra], [dec], 0.8, annulus_arcsec=(1.2, 2.0))
    np.testing.assert_allclose(res.flux[0], 9 * 50.0, rtol=1e-9)
    np.testing.assert_allclose(res.background[0], 7.0)
    assert np.all(res.var[0] > 2.0 * np.sum(aperture_weights(shape, 15.3, 14.8, 4.0) ** 2))


def test_aperture_psf_correction_recovers_a_point_source_total():
    shape, n_wave = (30, 30), 3
    w = sky_wcs(shape)
    sig = 4.0 / 2.3548  # FWHM 0.8" = 4 spaxels
    edges = np.arange(31) - 0.5
    ex, ey = np.diff(ndtr((edges - 14.6) / sig)), np.diff(ndtr((edges - 15.2) / sig))
    psf = ey[:, None] * ex[None, :]
    flux = 3.0 + 1000.0 * psf[None] * np.ones((n_wave, 1, 1))
    ra, dec = w.pixel_to_world_values(14.6, 15.2)
    res = aperture_spectra(flux, np.ones_like(flux), w, [ra], [dec], 0.8, (1.2, 2.0), psf_fwhm_arcsec=0.8)
    assert 0.85 < res.psf_fraction[0] < 0.94
    np.testing.assert_allclose(res.flux[0], 1000.0, rtol=2e-3)


def test_positions_outside_the_cube_are_refused_by_name():
    shape = (20, 20)
    w = sky_wcs(shape)
    flux = np.ones((4, *shape))
    flux[:, :, 15:] = np.nan  # no coverage on one side
    ra, dec = w.pixel_to_world_values(np.array([10.0, 40.0, 18.0]), np.array([10.0, 10.0, 10.0]))
    with pytest.raises(ValueError, match=r"2 of 3 positions.*#1 \(RA .*outside the cube.*#2 .*with data"):
        aperture_spectra(flux, np.ones_like(flux), w, ra, dec, 0.4)
    res = aperture_spectra(flux, np.ones_like(flux), w, ra, dec, 0.4, on_bad="flag")
    np.testing.assert_array_equal(res.valid, [True, False, False])
    assert np.isnan(res.flux[1:]).all() and np.isfinite(res.flux[0]).all()
