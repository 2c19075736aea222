"""Applying a network to cubes (sfh_ml.observations.apply) and HST images on the spaxel grid (.hst).

A 12 x 12 spaxel cube on the MUSE grid (a continuum falling with radius, seeded noise) and an
untrained tiny network (the TINY hyper-parameters of test_training) keep each run to a few seconds;
one test runs the whole path on a small mock galaxy (maps, HST images, cluster catalogue).
"""

import json
import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

keras = pytest.importorskip("keras")

from test_observations_readers import celestial_keywords  # noqa: E402

from sfh_ml import network  # noqa: E402
from sfh_ml.cli import main  # noqa: E402
from sfh_ml.constants import FWHM_TO_SIGMA  # noqa: E402
from sfh_ml.observations import apply as ap  # noqa: E402
from sfh_ml.observations import flags as qf  # noqa: E402
from sfh_ml.observations import formats  # noqa: E402
from sfh_ml.observations.apply import chunks, outputs  # noqa: E402
from sfh_ml.observations.hst import hst_spaxel_fluxes, match_psf, reproject_to_spaxels  # noqa: E402
from sfh_ml.observations.readers import read_hst_image, read_muse_cube  # noqa: E402
from sfh_ml.synthesis.instrument import muse_wave  # noqa: E402
from sfh_ml.synthesis.photometry import load_filters  # noqa: E402
from sfh_ml.synthesis.sfh import default_age_bins  # noqa: E402

NY = NX = 12
HST_PIXEL_ARCSEC = 0.04  # test images: 5 x 5 pixels per spaxel exactly (PHANGS mosaics: 0.03962")
REDSHIFT = 0.002
N_AGE_BINS = default_age_bins().size - 1  # the default bins: 1-3, 3-6, 6-10 Myr and 16 from 10 Myr
MAP_NAMES = ("MW_LOG_AGE", "LW_LOG_AGE", "MW_ZH", "F_YOUNG", "F_YOUNG_ERR", "SNR", "BIN_ID", "QUALITY")


# ----------------------------------------------------------------------------------------- fixtures
def write_test_cube(path, ny=NY, nx=NX, seed=0):
    """A MUSE cube: a continuum whose level falls with radius, seeded noise, one empty spaxel."""
    wave = muse_wave()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:ny, :nx]
    level = 200.0 * np.exp(-np.hypot(yy - ny / 2, xx - nx / 2) / 4.0)
    flux = level[None] * (wave / 6000.0)[:, None, None] ** -1.0 + 2.0 * rng.standard_normal(
        (wave.size, ny, nx)
    )
    flux[:, 0, 0] = np.nan
    header = fits.Header(celestial_keywords(ny, nx))
    header.update(CTYPE3="AWAV", CUNIT3="Angstrom", CRVAL3=wave[0], CRPIX3=1.0, CD3_3=1.25)
    header["BUNIT"] = formats.CUBE_BUNIT
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(flux.astype(np.float32), header, name="DATA"),
            fits.ImageHDU(np.full(flux.shape, 4.0, np.float32), header, name="STAT"),
        ]
    ).writeto(path)
    return path


@pytest.fixture(scope="module")
def model(tiny_v2):
    return tiny_v2  # conftest: untrained tiny v2 on the MUSE grid, PHANGS bands, default age bins


@pytest.fixture(scope="module")
def cube_path(tmp_path_factory):
    return write_test_cube(tmp_path_factory.mktemp("cube") / "cube.fits")


@pytest.fixture(scope="module")
def reference(model, cube_path, tmp_path_factory):
    """An uninterrupted serial run: grid:2 bins, 4 chunks."""
    out = tmp_path_factory.mktemp("ref") / "out"
    result = ap.apply_cube(
        model, cube_path, out, redshift=REDSHIFT, bins="grid:2", chunk_bins=10, progress=False
    )
    return result


def read_maps_file(path):
    with fits.open(path) as hdul:
        return {h.name: np.array(h.data) for h in hdul[1:]}, {h.name: h.header.copy() for h in hdul}


def assert_same_outputs(out_a, out_b):
    maps_a, _ = read_maps_file(out_a / "maps.fits")
    maps_b, _ = read_maps_file(out_b / "maps.fits")
    assert maps_a.keys() == maps_b.keys()
    for name in maps_a:
        np.testing.assert_array_equal(maps_a[name], maps_b[name], err_msg=name)
    ta, tb = Table.read(out_a / "bins.fits"), Table.read(out_b / "bins.fits")
    for name in ta.colnames:
        np.testing.assert_array_equal(np.asarray(ta[name]), np.asarray(tb[name]), err_msg=name)


# ----------------------------------------------------------------------------------------- HST images
def write_hst_image(path, data, ra, dec, band="F555W", photflam=2e-19, calibrated=True):
    header = fits.Header(
        celestial_keywords(*data.shape, ra=float(ra), dec=float(dec), pixel_arcsec=HST_PIXEL_ARCSEC)
    )
    header["FILTER"] = band
    if calibrated:
        header.update(BUNIT="ELECTRONS/S", PHOTFLAM=photflam, PHOTPLAM=5360.0)
    fits.PrimaryHDU(data.astype(np.float32), header).writeto(path)
    return path


def muse_grid(ny=NY, nx=NX):
    return WCS(fits.Header(celestial_keywords(ny, nx)))


def test_reprojection_conserves_the_flux_of_the_covered_area(tmp_path):
    rng = np.random.default_rng(1)
    wcs_m = muse_grid()
    centre = wcs_m.pixel_to_world_values((NX - 1) / 2, (NY - 1) / 2)
    data = rng.uniform(1.0, 3.0, (400, 400))  # 16" x 16" of HST pixels around a 2.4" x 2.4" cube
    image = read_hst_image(write_hst_image(tmp_path / "f555w.fits", data, *centre))
    spaxels = reproject_to_spaxels(image, wcs_m, (NY, NX)) / image.flam_per_unit  # e-/s per spaxel
    assert np.isfinite(spaxels).all()
    # the HST pixels inside the cube's footprint (its edges fall on HST pixel edges: 0.2 = 5 x 0.04")
    hx, hy = image.wcs.world_to_pixel_values(*wcs_m.pixel_to_world_values([-0.5, NX - 0.5], [-0.5, NY - 0.5]))
    x0, x1 = np.round(np.sort(hx) + 0.5).astype(int)
    y0, y1 = np.round(np.sort(hy) + 0.5).astype(int)
    assert (x1 - x0, y1 - y0) == (5 * NX, 5 * NY)
    inside = np.asarray(image.data[y0:y1, x0:x1]).sum() / image.flam_per_unit
    assert spaxels.sum() == pytest.approx(inside, rel=1e-6)
    # and each spaxel holds its own 5 x 5 HST pixels
    block = np.asarray(image.data[y0 : y0 + 5, x0 : x0 + 5]).sum() / image.flam_per_unit
    assert spaxels[0, 0] == pytest.approx(block, rel=1e-6)


def test_psf_matching_gives_a_point_source_the_muse_width(tmp_path):
    n = 41  # spaxels: the kernel's reach (4 sigma) stays far from the edges, which match_psf leaves NaN
    wcs_m = muse_grid(n, n)
    centre = wcs_m.pixel_to_world_values((n - 1) / 2, (n - 1) / 2)
    yy, xx = np.mgrid[:300, :300] - 149.5  # HST pixels; the source sits on a spaxel centre
    sigma_hst = 0.08 / HST_PIXEL_ARCSEC * FWHM_TO_SIGMA
    point = np.exp(-0.5 * (xx**2 + yy**2) / sigma_hst**2)
    image = read_hst_image(write_hst_image(tmp_path / "p.fits", point, *centre))
    spaxels = reproject_to_spaxels(image, wcs_m, (n, n)) / image.flam_per_unit
    matched = match_psf(spaxels, 0.08 / 0.2, 0.8 / 0.2)
    assert np.nansum(matched) == pytest.approx(np.asarray(image.data).sum() / image.flam_per_unit, rel=1e-4)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    w = np.nan_to_num(matched)
    var = np.sum(w * xx**2) / w.sum()
    # as the cube would see it: the MUSE PSF averaged over a spaxel, sigma_MUSE^2 + 1/12 spaxel^2
    assert var == pytest.approx((0.8 / 0.2 * FWHM_TO_SIGMA) ** 2 + 1 / 12, rel=0.015)


def test_missing_hst_data_stays_missing_after_psf_matching():
    flux = np.ones((20, 20))
    flux[:, 15:] = np.nan
    out = match_psf(flux, 0.4, 4.0)
    assert np.isnan(out[:, 15:]).all()
    assert np.isnan(out[:, 14]).all()  # its kernel reaches the missing strip
    # beyond the kernel's reach (1 % of its weight at 2.3 sigma = 4 spaxels) a flat map stays flat
    np.testing.assert_allclose(out[5:15, 5:10], 1.0, rtol=1e-12)


def test_hst_images_need_all_five_bands_and_a_psf(tmp_path, cube_path):
    cube = read_muse_cube(cube_path)
    centre = cube.wcs.pixel_to_world_values((NX - 1) / 2, (NY - 1) / 2)
    path = write_hst_image(tmp_path / "f555w.fits", np.ones((100, 100)), *centre)
    with pytest.raises(
        ValueError, match=r"no HST image for the bands \['F275W', 'F336W', 'F438W', 'F814W'\]"
    ):
        hst_spaxel_fluxes([path], cube, muse_fwhm_arcsec=0.8)
    paths = [
        write_hst_image(tmp_path / f"{b}.fits", np.ones((100, 100)), *centre, band=b)
        for b in ("F275W", "F336W", "F438W", "F814W")
    ]
    with pytest.raises(ValueError, match="FWHM of the cube's PSF is unknown"):
        hst_spaxel_fluxes([path, *paths], cube)
    fluxes = hst_spaxel_fluxes([path, *paths], cube, muse_fwhm_arcsec=0.8)
    assert fluxes.flux.shape == (5, NY, NX) and fluxes.bands == list(formats.CATALOGUE_BANDS)
    # a flat image of 1 e-/s per HST pixel: 25 pixels x PHOTFLAM per spaxel, in the cube's 1e-20 unit
    assert np.nanmedian(fluxes.flux[3]) == pytest.approx(25 * 2e-19 / 1e-20, rel=1e-6)


# ----------------------------------------------------------------------------------------- apply
def test_outputs_carry_the_cube_wcs_and_paint_back_the_bins(reference, cube_path):
    out = reference.out_dir
    assert sorted(p.name for p in out.iterdir()) == ["bins.ecsv", "bins.fits", "maps.fits", "summary.json"]
    maps, headers = read_maps_file(out / "maps.fits")
    assert set(MAP_NAMES) <= set(maps)
    cube_wcs = read_muse_cube(cube_path).wcs
    for name in MAP_NAMES:
        assert maps[name].shape == (NY, NX)
        w = WCS(headers[name])
        np.testing.assert_allclose(w.wcs.crval, cube_wcs.wcs.crval)
        np.testing.assert_allclose(w.pixel_scale_matrix, cube_wcs.pixel_scale_matrix)
    table = Table.read(out / "bins.ecsv")
    assert len(table) == reference.n_bins == 36  # 6 x 6 bins of 2 x 2 spaxels
    ids = maps["BIN_ID"]
    assert ids[0, 0] == -1 and np.isnan(maps["MW_LOG_AGE"][0, 0])  # the empty spaxel
    inside = ids >= 0
    np.testing.assert_allclose(maps["MW_LOG_AGE"][inside], table["mw_log_age"][ids[inside]], rtol=1e-6)
    np.testing.assert_array_equal(maps["QUALITY"][inside], table["quality"][ids[inside]])
    assert table["sfh"].shape == (36, N_AGE_BINS) and np.allclose(table["sfh"].sum(1), 1.0, atol=1e-5)
    assert np.all(table["n_spaxels"][1:] == 4) and table["n_spaxels"][0] == 3
    # no images: every bin lacks the bands, and the outputs say so
    assert np.all(table["quality"] & (network.QUALITY_FLAGS["missing_bands"] << ap.NETWORK_FLAG_SHIFT))
    assert headers["PRIMARY"]["PHOTSRC"].startswith("none")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_usable_bins"] == 36 and summary["photometry_source"].startswith("none")
    assert not (out / "work").exists()


def test_fractions_and_means_follow_from_the_histories():
    age = default_age_bins()
    sfh = np.zeros((2, N_AGE_BINS))
    sfh[0, 0] = 1.0  # all in the youngest bin
    sfh[1, -1] = 1.0
    pred = {"sfh": sfh, "sfh_cum": np.cumsum(sfh, 1), "sfh_cum_sigma": np.full((2, N_AGE_BINS), 0.05)}
    pred.update(zh=np.full((2, N_AGE_BINS), -0.3), zh_sigma=np.full((2, N_AGE_BINS), 0.1))
    s = ap.summarise_histories(pred, age)
    np.testing.assert_allclose(s["f_young"], [1.0, 0.0])
    np.testing.assert_allclose(s["f_old"], [0.0, 1.0])
    np.testing.assert_allclose(s["f_intermediate"], 0.0, atol=1e-12)
    np.testing.assert_allclose(s["f_intermediate_err"], 0.05 * np.sqrt(2))
    np.testing.assert_allclose(s["mw_log_age"], np.log10(np.sqrt(age[[0, -2]] * age[[1, -1]])))
    np.testing.assert_allclose(s["mw_zh"], -0.3)
    np.testing.assert_allclose(s["mw_zh_err"], 0.1)
    i_young, i_old = ap.age_fraction_edges(age)
    assert 0.7e8 < age[i_young] < 1.5e8 and 0.7e9 < age[i_old] < 1.5e9


def test_light_weighted_means_come_from_the_models_light_table_or_are_nan():
    age = default_age_bins()
    rng = np.random.default_rng(4)
    sfh = rng.dirichlet(np.ones(N_AGE_BINS), 5)
    pred = {"sfh": sfh, "sfh_cum": np.cumsum(sfh, 1), "sfh_cum_sigma": np.full_like(sfh, 0.05)}
    pred.update(zh=rng.uniform(-1.5, 0.2, sfh.shape), zh_sigma=np.full_like(sfh, 0.1))
    zh_grid = np.array([-1.71, -0.5, 0.22])
    bin_light = np.outer(np.geomspace(100.0, 0.1, N_AGE_BINS), [1.3, 1.0, 0.9])  # young bins shine most
    s = ap.summarise_histories(pred, age, bin_light, zh_grid)
    light = network.metrics.bin_light_weights(sfh, pred["zh"], bin_light, zh_grid)
    np.testing.assert_allclose(s["lw_log_age"], network.metrics.mean_log_age(light, age))
    np.testing.assert_allclose(s["lw_zh"], network.metrics.mean_zh(light, pred["zh"]))
    assert np.all(s["lw_log_age"] < s["mw_log_age"])
    without = ap.summarise_histories(pred, age)  # a model trained before the table existed
    assert np.isnan(without["lw_log_age"]).all() and np.isnan(without["lw_zh"]).all()
    np.testing.assert_array_equal(without["mw_log_age"], s["mw_log_age"])


def test_an_interrupted_run_resumes_without_recomputing(model, cube_path, reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    computed = []
    original = chunks._bins_chunk

    def failing(state, index):
        if index == 2:
            raise RuntimeError("killed")
        computed.append(index)
        return original(state, index)

    monkeypatch.setattr(chunks, "_bins_chunk", failing)
    with pytest.raises(RuntimeError, match="killed"):
        ap.apply_cube(model, cube_path, out, redshift=REDSHIFT, bins="grid:2", chunk_bins=10, progress=False)
    assert computed == [0, 1]
    assert sorted(p.name for p in (out / "work").iterdir()) == [
        "bins_00000.npz",
        "bins_00001.npz",
        "options.json",
        "setup.npz",
    ]
    assert not (out / "maps.fits").exists()
    # other options on the same folder: refused, naming the difference
    with pytest.raises(ValueError, match=r"other options \(bins: 'grid:2' there, 'grid:3' now\)"):
        ap.apply_cube(model, cube_path, out, redshift=REDSHIFT, bins="grid:3", chunk_bins=10, progress=False)
    computed.clear()
    monkeypatch.setattr(
        chunks, "_bins_chunk", lambda state, index: computed.append(index) or original(state, index)
    )
    result = ap.apply_cube(
        model, cube_path, out, redshift=REDSHIFT, bins="grid:2", chunk_bins=10, progress=False
    )
    assert computed == [2, 3] and result.n_chunks == 4 and result.n_chunks_computed == 2
    assert_same_outputs(out, reference.out_dir)


def test_dask_and_serial_runs_give_identical_maps(model, cube_path, reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cl:
        with distributed.Client(cl) as client:
            result = ap.apply_cube(
                model, cube_path, tmp_path / "out", redshift=REDSHIFT, bins="grid:2", chunk_bins=10,
                client=client, progress=False,
            )  # fmt: skip
    assert result.n_chunks == 4
    assert_same_outputs(tmp_path / "out", reference.out_dir)


def test_bad_inputs_are_refused_before_anything_is_written(model, cube_path, reference, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(
        ValueError, match=r"cube\.fits: its rest-frame wavelengths at z = 0\.5 \(3167-6233 A\) cover 32 % of"
    ):
        ap.apply_cube(model, cube_path, out, redshift=0.5, bins="none", progress=False)
    with pytest.raises(ValueError, match="no redshift"):
        ap.apply_cube(model, cube_path, out, bins="none", progress=False)
    with pytest.raises(ValueError, match="bins 'hexagons:3' not understood"):
        ap.apply_cube(model, cube_path, out, redshift=REDSHIFT, bins="hexagons:3", progress=False)
    # a catalogue of another galaxy
    cat = Table()
    cat["PHANGS_RA"], cat["PHANGS_DEC"] = [24.17, 24.18], [15.78, 15.79]
    for band in formats.CATALOGUE_BANDS:
        cat[formats.catalogue_flux_column(band)] = [1e-3, 2e-3]
        cat[formats.catalogue_flux_column(band, error=True)] = [1e-4, 1e-4]
    cat.write(tmp_path / "cat.fits")
    with pytest.raises(ValueError, match=r"cat\.fits: none of its 2 positions lies inside the cube"):
        ap.apply_cube(
            model, cube_path, out, redshift=REDSHIFT, catalogue_path=tmp_path / "cat.fits",
            muse_fwhm_arcsec=0.8, bins="none", progress=False,
        )  # fmt: skip
    # an HST image without flux calibration (the reader refuses it)
    centre = read_muse_cube(cube_path).wcs.pixel_to_world_values(5.5, 5.5)
    bad = write_hst_image(tmp_path / "raw.fits", np.ones((50, 50)), *centre, calibrated=False)
    with pytest.raises(ValueError, match=r"raw\.fits: no flux calibration"):
        ap.apply_cube(model, cube_path, out, redshift=REDSHIFT, hst_paths=[bad], bins="none", progress=False)
    assert not out.exists()  # nothing half-written
    # existing outputs are not replaced
    with pytest.raises(FileExistsError, match="maps.fits"):
        ap.apply_cube(model, cube_path, reference.out_dir, redshift=REDSHIFT, bins="grid:2", progress=False)


def test_a_cube_without_usable_spectra_writes_nothing(model, tmp_path):
    path = write_test_cube(tmp_path / "negative.fits")
    with fits.open(path, mode="update") as hdul:
        hdul["DATA"].data = -np.abs(hdul["DATA"].data) - 50.0
    with pytest.raises(network.NoUsableObjectError, match="not one of 36 bins is usable"):
        ap.apply_cube(model, path, tmp_path / "out", redshift=REDSHIFT, bins="grid:2", progress=False)
    assert not (tmp_path / "out").exists()


def test_command_line_apply(model, cube_path, tmp_path, capsys):
    model_path = tmp_path / "tiny.keras"
    model.save(model_path)
    argv = ["apply", "--model", str(model_path), "--cube", str(cube_path), "--redshift", str(REDSHIFT)]
    assert main([*argv, "--bins", "grid:3", "--quiet", "--out", str(tmp_path / "out")]) == 0
    assert "16 bins (16 usable)" in capsys.readouterr().out
    assert (tmp_path / "out" / "maps.fits").exists()
    assert main([*argv, "--bins", "grid:3", "--quiet", "--out", str(tmp_path / "out")]) == 2
    assert "outputs exist" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- mock galaxy
@pytest.fixture(scope="module")
def mock(mock_galaxy):
    return mock_galaxy  # conftest: 20 x 20 spaxels, 3 clusters, seed 0


def test_mock_galaxy_end_to_end(model, mock, tmp_path):
    p = mock.params
    result = ap.apply_cube(
        model,
        mock.cube,
        tmp_path / "out",
        maps_path=mock.maps,
        redshift=p["redshift"],
        ebv_mw=p["ebv_mw"],
        catalogue_path=mock.catalogue,
        hst_paths=list(mock.images.values()),
        bins="voronoi:15",
        muse_fwhm_arcsec=p["psf_fwhm_arcsec"],
        progress=False,
    )
    assert result.n_clusters == 3 and result.n_usable_bins > 0
    bins = Table.read(tmp_path / "out" / "bins.ecsv")
    assert np.isfinite(bins["v_kms"]).all() and np.isfinite(bins["sigma_kms"]).all()
    assert np.all(bins["sigma_kms"] > 30)
    # the mock's images end at the cube's edge: bins near it lack the PSF-matched bands; F275W also
    # has no coverage over a strip, so fewer bins have it than F555W
    has = np.isfinite(bins["photometry"])
    with fits.open(tmp_path / "out" / "maps.fits") as hdul:
        centre = hdul["BIN_ID"].data[10, 10]
    assert has[centre, 1:].all() and has[:, 0].sum() < has[:, 3].sum()
    clusters = Table.read(tmp_path / "out" / "clusters.ecsv")
    assert len(clusters) == 3 and clusters["inside_cube"].all()
    np.testing.assert_allclose(
        clusters["catalogue_age_myr"], Table.read(mock.truth, hdu="CLUSTERS")["age_yr"] / 1e6, rtol=1e-6
    )
    # clusters whose aperture and background annulus lie on data are predicted; the others say why
    measured = (
        clusters["reason"].filled("") == ""
        if hasattr(clusters["reason"], "filled")
        else clusters["reason"] == ""
    )
    assert measured.any()
    assert np.isfinite(clusters["mw_age_myr"][measured]).all() and np.all(clusters["snr"][measured] > 3)
    assert np.isnan(clusters["mw_age_myr"][~measured]).all()
    assert np.all(clusters["quality"][~measured] & qf.NO_DATA)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["photometry_source"].startswith("HST")


def test_image_photometry_matches_the_cube_spectra(mock):
    """Over a region much larger than the PSF, the HST flux equals the cube's spectrum through the band."""
    cube = read_muse_cube(mock.cube)
    fluxes = hst_spaxel_fluxes(
        list(mock.images.values()), cube, muse_fwhm_arcsec=mock.params["psf_fwhm_arcsec"]
    )
    inside = np.isfinite(fluxes.flux[4])  # all but the edge, where the kernel reaches beyond the image
    assert inside.sum() > 100
    cube_flux = np.asarray(cube.flux, dtype=float)[:, inside]  # (n_wave, n_spaxels)
    spectrum = np.nansum(cube_flux, axis=1)
    ((wave, thr),) = load_filters(["HST_WFC3_F814W"])  # 88 % of its photon weight inside the MUSE range
    weight = np.interp(cube.wave_aa, wave, thr, left=0.0, right=0.0) * cube.wave_aa
    band_mean = np.sum(spectrum * weight) / np.sum(weight)
    # the mock's cube has the disc unconvolved: some light leaks across the region's edge in the image
    assert fluxes.flux[4][inside].sum() == pytest.approx(band_mean, rel=0.05)


def test_tables_written_in_blocks_read_back_whole(model, cube_path, reference, tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "ECSV_BLOCK_ROWS", 7)  # 36 bins: 6 blocks, the last one short
    out = tmp_path / "out"
    ap.apply_cube(model, cube_path, out, redshift=REDSHIFT, bins="grid:2", chunk_bins=10, progress=False)
    blocks = Table.read(out / "bins.ecsv")
    whole = Table.read(reference.out_dir / "bins.ecsv")
    assert len(blocks) == 36 and blocks.colnames == whole.colnames and blocks.meta == whole.meta
    for name in whole.colnames:
        np.testing.assert_array_equal(np.asarray(blocks[name]), np.asarray(whole[name]), err_msg=name)


def test_keep_work_leaves_the_chunks(model, cube_path, tmp_path):
    ap.apply_cube(
        model, cube_path, tmp_path / "o", redshift=REDSHIFT, bins="grid:4", progress=False, keep_work=True
    )
    work = tmp_path / "o" / "work"
    assert (work / "options.json").exists() and (work / "bins_00000.npz").exists()
    shutil.rmtree(tmp_path / "o")


def test_quality_bits_are_distinct():
    bits = list(ap.quality_bits().values())
    assert len(set(bits)) == len(bits) and all(b & (b - 1) == 0 for b in bits)
    assert qf.OUTSIDE_CUBE < 1 << ap.NETWORK_FLAG_SHIFT


def test_apply_cube_takes_its_options_as_a_config_or_as_keywords_not_both(
    model, cube_path, reference, tmp_path
):
    config = ap.ApplyConfig(redshift=REDSHIFT, bins="grid:2", chunk_bins=10, progress=False)
    with pytest.raises(TypeError, match="not both"):
        ap.apply_cube(model, cube_path, tmp_path / "both", config=config, bins="grid:3")
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['redshfit'\\]"):
        ap.apply_cube(model, cube_path, tmp_path / "typo", redshfit=REDSHIFT)
    with pytest.raises(ValueError, match="chunk_bins must be >= 1"):
        ap.ApplyConfig(redshift=REDSHIFT, chunk_bins=0)
    ap.apply_cube(model, cube_path, tmp_path / "out", config=config)
    assert_same_outputs(tmp_path / "out", reference.out_dir)


def test_trust_gives_a_map_a_column_and_its_flags(model, mock, tmp_path):
    from sfh_ml.network.trust import TRUST_PARAMS

    p = mock.params
    ap.apply_cube(
        model,
        mock.cube,
        tmp_path / "out",
        maps_path=mock.maps,
        redshift=p["redshift"],
        ebv_mw=p["ebv_mw"],
        bins="grid:4",
        progress=False,
        goodness=True,
        trust=True,
    )
    bins = Table.read(tmp_path / "out" / "bins.ecsv")
    usable = np.isfinite(bins["mw_log_age"])
    assert usable.sum() >= 10
    trust = np.asarray(bins["trust"])
    assert np.all((trust[usable] >= 0) & (trust[usable] <= 1)) and np.isnan(trust[~usable]).all()
    bits = qf.quality_bits()
    untrusted = (np.asarray(bins["quality"]) & bits["NETWORK_UNTRUSTED"]) > 0
    np.testing.assert_array_equal(untrusted[usable], trust[usable] < TRUST_PARAMS["threshold"])
    assert str(bins["redshift_offset_kms"].unit) == "km / s"
    with fits.open(tmp_path / "out" / "maps.fits") as hdul:
        image = hdul["TRUST"].data
        painted = image[hdul["BIN_ID"].data == np.flatnonzero(usable)[0]]
    np.testing.assert_allclose(painted, trust[usable][0], rtol=1e-6)
