"""Readers of PHANGS files and the preparation of observed spectra (sfh_ml.observations).

Small files in the release formats are written with astropy into ``tmp_path``. The writers and the
bad-input scenarios at the top are also used by ``tests/test_bad_inputs.py`` (``OBSERVATION_CASES``).
"""

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from dust_extinction.parameter_averages import F99, G23
from scipy.optimize import curve_fit
from spectres import spectres

from sfh_ml.constants import C_AA_S, C_KMS, FWHM_TO_SIGMA
from sfh_ml.observations import flags as qf
from sfh_ml.observations import formats
from sfh_ml.observations.prepare import (
    SKY_LINE_WINDOWS_AA,
    broaden_to_model,
    deredden_mw,
    photometry_to_flux_density,
    prepare_spectra,
    resample_spectra,
    total_redshift,
)
from sfh_ml.observations.readers import (
    FLAM_UNIT,
    read_cluster_catalogue,
    read_hst_image,
    read_maps,
    read_muse_cube,
    vacuum_to_air,
)
from sfh_ml.synthesis.instrument import MUSE_WAVE_START_AA, muse_lsf_fwhm, muse_wave
from sfh_ml.synthesis.photometry import band_flux

NGC3627_RA_DEG, NGC3627_DEC_DEG = 170.0625, 12.9915
NGC0628_RA_DEG, NGC0628_DEC_DEG = 24.1739, 15.7836


# ----------------------------------------------------------------------------------------- writers
def celestial_keywords(
    ny, nx, ra=NGC3627_RA_DEG, dec=NGC3627_DEC_DEG, pixel_arcsec=formats.MUSE_SPAXEL_ARCSEC
):
    """TAN-projection keywords of a north-up grid centred on (ra, dec)."""
    return {
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CUNIT1": "deg",
        "CUNIT2": "deg",
        "CRVAL1": ra,
        "CRVAL2": dec,
        "CRPIX1": (nx + 1) / 2,
        "CRPIX2": (ny + 1) / 2,
        "CD1_1": -pixel_arcsec / 3600,
        "CD1_2": 0.0,
        "CD2_1": 0.0,
        "CD2_2": pixel_arcsec / 3600,
    }


def write_cube(
    path,
    ny=6,
    nx=5,
    n_wave=200,
    crval_aa=MUSE_WAVE_START_AA,
    step_aa=1.25,
    ctype=formats.AIR_CTYPE,
    cunit="Angstrom",
    step_key="CD3_3",
    bunit=formats.CUBE_BUNIT,
    stat=True,
    dq=False,
    ra=NGC3627_RA_DEG,
    seed=0,
):
    """A MUSE cube as the pipeline writes it; returns (flux, var) of shape (n_wave, ny, nx)."""
    rng = np.random.default_rng(seed)
    flux = (100.0 + 10.0 * rng.standard_normal((n_wave, ny, nx))).astype(np.float32)
    var = (5.0 + rng.random((n_wave, ny, nx))).astype(np.float32)
    flux[:5, 0, 0] = np.nan  # no data at the blue end of one spaxel
    header = fits.Header(celestial_keywords(ny, nx, ra=ra))
    scale = {"Angstrom": 1.0, "m": 1e-10, "nm": 0.1}.get(cunit, 1.0)
    header["CRVAL3"] = crval_aa * scale
    header["CRPIX3"] = 1.0
    header[step_key] = step_aa * scale
    if cunit:
        header["CUNIT3"] = cunit
    if ctype:
        header["CTYPE3"] = ctype
    if bunit:
        header["BUNIT"] = bunit
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(flux, header=header, name=formats.CUBE_DATA_EXT)]
    if stat:
        hdus.append(fits.ImageHDU(var, header=header, name=formats.CUBE_STAT_EXT))
    if dq:
        flags = np.zeros(flux.shape, dtype=np.int32)
        flags[10:20, 1, 2] = 1
        hdus.append(fits.ImageHDU(flags, header=header, name=formats.CUBE_DQ_EXT))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return flux, var


def write_maps(path, ny=6, nx=5, ra=NGC3627_RA_DEG, dec=NGC3627_DEC_DEG):
    """A DAP MAPS file: V_STARS (+FORM_ERR), SIGMA_STARS (+_ERR), AGE_LW and HA6562_FLUX (+_ERR)."""
    header = fits.Header(celestial_keywords(ny, nx, ra=ra, dec=dec))
    yy, xx = np.mgrid[:ny, :nx]
    maps = {
        "V_STARS": 10.0 * (xx - nx / 2),
        "FORM_ERR_V_STARS": np.full((ny, nx), 5.0),
        "SIGMA_STARS": np.full((ny, nx), 60.0),
        "SIGMA_STARS_ERR": np.full((ny, nx), 4.0),
        "AGE_LW": 9.0 + 0.1 * yy,
        "HA6562_FLUX": np.full((ny, nx), 1e3),
        "HA6562_FLUX_ERR": np.full((ny, nx), 30.0),
    }
    hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(v, header=header, name=k) for k, v in maps.items()]
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return maps


def write_catalogue(path, n=4, release=0, b_band="F438W", bands=formats.CATALOGUE_BANDS):
    """A PHANGS-HST cluster catalogue; band 0 of row 1 has no coverage (-9999)."""
    bands = [b_band if b == "F438W" else b for b in bands]
    rng = np.random.default_rng(1)
    cols = {
        formats.CATALOGUE_COLUMNS["id"]: np.arange(1, n + 1),
        formats.CATALOGUE_COLUMNS["ra"]: NGC3627_RA_DEG + 1e-4 * rng.standard_normal(n),
        formats.CATALOGUE_COLUMNS["dec"]: NGC3627_DEC_DEG + 1e-4 * rng.standard_normal(n),
        formats.CATALOGUE_COLUMNS["class_human"]: np.array([1, 2, 3, 1])[:n],
        formats.CATALOGUE_COLUMNS["age_myr"]: np.array([1.0, 10.0, -9999.0, 300.0])[:n],
    }
    flux = {}
    for band in bands:
        flux[band] = 0.01 + 0.001 * np.arange(n)
        if band == bands[0]:
            flux[band][1] = formats.MISSING_VALUE
        cols[formats.catalogue_flux_column(band, release)] = flux[band]
        cols[formats.catalogue_flux_column(band, release, error=True)] = np.where(
            flux[band] == formats.MISSING_VALUE, formats.MISSING_VALUE, 0.1 * flux[band]
        )
    Table(cols).write(path, overwrite=True)
    return flux


def write_hst_image(path, ny=30, nx=40, band="F555W", wcs=True, calibration="photflam"):
    """A drizzled HST image (SCI extension) with PHOTFLAM/PHOTPLAM, a BUNIT of MJy/sr, or nothing."""
    data = np.linspace(0.0, 2.0, ny * nx, dtype=np.float32).reshape(ny, nx)
    header = fits.Header(celestial_keywords(ny, nx, pixel_arcsec=formats.HST_PIXEL_ARCSEC) if wcs else {})
    primary = fits.Header({"FILTER": band})
    if calibration == "photflam":
        header["BUNIT"] = "ELECTRONS/S"
        header[formats.HST_PHOTFLAM] = 1.9e-19
        header[formats.HST_PHOTPLAM] = 5360.9
    elif calibration == "mjy_sr":
        header["BUNIT"] = "MJy/sr"
    fits.HDUList(
        [fits.PrimaryHDU(header=primary), fits.ImageHDU(data, header=header, name=formats.HST_SCI_EXT)]
    ).writeto(path, overwrite=True)
    return data


# ----------------------------------------------------------------------------------------- bad inputs
# Scenarios for tests/test_bad_inputs.py: each writes a bad file and reads it. (id, scenario, regex)
def _cube_without_stat(tmp_path):
    write_cube(tmp_path / "no_stat.fits", stat=False)
    return read_muse_cube(tmp_path / "no_stat.fits")


def _cube_unknown_bunit(tmp_path):
    write_cube(tmp_path / "bad_bunit.fits", bunit="counts")
    return read_muse_cube(tmp_path / "bad_bunit.fits")


def _cube_without_ctype3(tmp_path):
    write_cube(tmp_path / "no_ctype3.fits", ctype=None)
    return read_muse_cube(tmp_path / "no_ctype3.fits")


def _image_not_a_cube(tmp_path):
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((4, 4)), name="DATA")]).writeto(
        tmp_path / "flat.fits"
    )
    return read_muse_cube(tmp_path / "flat.fits")


def _catalogue_without_bands(tmp_path):
    write_catalogue(tmp_path / "four_bands.fits", bands=formats.CATALOGUE_BANDS[:4])
    return read_cluster_catalogue(tmp_path / "four_bands.fits")


def _catalogue_other_release(tmp_path):
    table = Table(
        {"PHANGS_RA": [1.0], "PHANGS_DEC": [2.0], **{f"{b}_FLUX": [1.0] for b in formats.CATALOGUE_BANDS}}
    )
    table.write(tmp_path / "other_release.fits")
    return read_cluster_catalogue(tmp_path / "other_release.fits")


def _hst_without_wcs(tmp_path):
    write_hst_image(tmp_path / "no_wcs.fits", wcs=False)
    return read_hst_image(tmp_path / "no_wcs.fits")


def _hst_without_calibration(tmp_path):
    write_hst_image(tmp_path / "no_calib.fits", calibration=None)
    return read_hst_image(tmp_path / "no_calib.fits")


def _maps_of_another_galaxy(tmp_path):
    write_cube(tmp_path / "ngc3627.fits")
    write_maps(tmp_path / "ngc0628_MAPS.fits", ra=NGC0628_RA_DEG, dec=NGC0628_DEC_DEG)
    return read_maps(tmp_path / "ngc0628_MAPS.fits", cube=read_muse_cube(tmp_path / "ngc3627.fits"))


BAD_OBSERVATION_FILES = [
    ("cube-without-STAT", _cube_without_stat, r"no_stat\.fits.*no 'STAT'.*append the variance"),
    ("cube-unknown-BUNIT", _cube_unknown_bunit, r"bad_bunit\.fits.*BUNIT = 'counts'.*setval"),
    ("cube-air-or-vacuum-unsaid", _cube_without_ctype3, r"no_ctype3\.fits.*CTYPE3.*wave_frame="),
    ("cube-not-3d", _image_not_a_cube, r"flat\.fits.*not a data cube"),
    ("catalogue-four-bands", _catalogue_without_bands, r"four_bands\.fits.*missing PHANGS_F814W_mJy"),
    ("catalogue-other-release", _catalogue_other_release, r"other_release\.fits.*not a PHANGS-HST catalogue"),
    ("hst-image-without-wcs", _hst_without_wcs, r"no_wcs\.fits.*no celestial WCS"),
    ("hst-image-uncalibrated", _hst_without_calibration, r"no_calib\.fits.*no flux calibration.*PHOTFLAM"),
    (
        "maps-of-another-galaxy",
        _maps_of_another_galaxy,
        r"ngc0628_MAPS\.fits.*not on the spaxel grid.*ngc3627\.fits",
    ),
]


# ----------------------------------------------------------------------------------------- cube
def test_cube_written_then_read_gives_same_flux_variance_wavelengths(tmp_path):
    flux, var = write_cube(tmp_path / "cube.fits", ny=24, nx=20, n_wave=3681)
    cube = read_muse_cube(tmp_path / "cube.fits", max_spaxels_per_chunk=100)
    assert cube.shape == (24, 20) and cube.n_wave == 3681
    np.testing.assert_allclose(cube.wave_aa, muse_wave(), rtol=0, atol=1e-9)
    assert cube.flux_unit == 1e-20 * FLAM_UNIT
    assert cube.flux.chunks[0] == (3681,)  # spectral axis whole
    assert max(cy * cx for cy in cube.flux.chunks[1] for cx in cube.flux.chunks[2]) <= 100
    iy, ix = np.array([0, 23, 5, 5]), np.array([0, 19, 7, 3])
    f, v = cube.spectra(iy, ix)
    assert f.shape == (4, 3681)
    np.testing.assert_array_equal(f, flux[:, iy, ix].T)
    np.testing.assert_array_equal(v, var[:, iy, ix].T)
    np.testing.assert_array_equal(cube.var[:, 3:9, 2:4].compute(), var[:, 3:9, 2:4])
    assert cube.dq is None and cube.dq_spectra(iy, ix) is None
    world = cube.wcs.pixel_to_world_values(9.5, 11.5)  # the centre of the grid
    np.testing.assert_allclose(world, (NGC3627_RA_DEG, NGC3627_DEC_DEG), atol=1e-9)
    cube.close()


def test_cube_with_cdelt3_in_metres_and_dq(tmp_path):
    write_cube(tmp_path / "m.fits", step_key="CDELT3", cunit="m", dq=True)
    cube = read_muse_cube(tmp_path / "m.fits")
    np.testing.assert_allclose(cube.wave_aa, muse_wave(n_wave=200), atol=1e-6)
    dq = cube.dq_spectra([1, 1], [2, 3])
    assert dq[0, 10:20].all() and not dq[0, :10].any() and not dq[1].any()


def test_vacuum_cube_is_converted_to_air(tmp_path):
    # SDSS line list, vacuum / air: H-alpha 6564.61 / 6562.80, [O III] 5008.24 / 5006.84,
    # [S II] 6718.29 / 6716.44.
    np.testing.assert_allclose(
        vacuum_to_air([6564.61, 5008.24, 6718.29]), [6562.80, 5006.84, 6716.44], atol=0.01
    )
    write_cube(tmp_path / "vac.fits", ctype=formats.VACUUM_CTYPE, crval_aa=6564.61)
    cube = read_muse_cube(tmp_path / "vac.fits")
    assert cube.wave_frame_in_file == "vacuum"
    assert cube.wave_aa[0] == pytest.approx(6562.80, abs=0.01)
    write_cube(tmp_path / "unsaid.fits", ctype=None)
    assert read_muse_cube(tmp_path / "unsaid.fits", wave_frame="air").wave_aa[0] == pytest.approx(4749.89)
    with pytest.raises(ValueError, match="contradicts"):
        read_muse_cube(tmp_path / "vac.fits", wave_frame="air")


# ----------------------------------------------------------------------------------------- maps
def test_maps_on_the_cube_grid_are_read_with_their_errors(tmp_path):
    write_cube(tmp_path / "cube.fits")
    written = write_maps(tmp_path / "MAPS.fits")
    maps = read_maps(tmp_path / "MAPS.fits", cube=read_muse_cube(tmp_path / "cube.fits"))
    np.testing.assert_array_equal(maps["V_STARS"], written["V_STARS"])
    np.testing.assert_array_equal(maps.error("V_STARS"), written["FORM_ERR_V_STARS"])
    np.testing.assert_array_equal(maps.error("SIGMA_STARS"), written["SIGMA_STARS_ERR"])
    np.testing.assert_array_equal(maps.error("HA6562_FLUX"), written["HA6562_FLUX_ERR"])
    assert maps.error("AGE_LW") is None
    assert maps.quantities == ["V_STARS", "SIGMA_STARS", "AGE_LW", "HA6562_FLUX"]


# ----------------------------------------------------------------------------------------- catalogues
@pytest.mark.parametrize("release", range(len(formats.CATALOGUE_FLUX_COLUMNS)))
def test_catalogue_columns_of_every_release_are_normalised(tmp_path, release):
    written = write_catalogue(tmp_path / "cat.fits", release=release)
    cat = read_cluster_catalogue(tmp_path / "cat.fits")
    assert cat["flux_mjy"].shape == (4, 5)
    assert np.isnan(cat["flux_mjy"][1, 0]) and np.isnan(cat["flux_err_mjy"][1, 0])
    np.testing.assert_allclose(cat["flux_mjy"][:, 4], written["F814W"])
    assert cat.meta["filters"] == list(formats.BAND_TO_FILTER[b] for b in formats.CATALOGUE_BANDS)
    assert list(cat["id"]) == [1, 2, 3, 4] and list(cat["class_human"]) == [1, 2, 3, 1]
    assert np.isnan(cat["age_myr"][2]) and cat["age_myr"][3] == 300.0


def test_catalogue_with_f435w_puts_it_in_the_b_slot(tmp_path):
    written = write_catalogue(tmp_path / "ngc0628.fits", b_band="F435W")
    cat = read_cluster_catalogue(tmp_path / "ngc0628.fits")
    assert cat.meta["bands"][2] == "F435W" and cat.meta["filters"][2] == "HST_ACS_WFC_F435W"
    np.testing.assert_allclose(cat["flux_mjy"][:, 2], written["F435W"])


# ----------------------------------------------------------------------------------------- HST images
def test_hst_image_calibrated_with_photflam(tmp_path):
    data = write_hst_image(tmp_path / "f555w.fits")
    image = read_hst_image(tmp_path / "f555w.fits")
    assert image.band == "F555W" and image.filter == "HST_WFC3_F555W" and image.pivot_aa == 5360.9
    np.testing.assert_allclose(image.data.compute(), data * 1.9e-19, rtol=1e-6)


def test_hst_image_in_mjy_per_sr_is_converted_per_pixel(tmp_path):
    data = write_hst_image(tmp_path / "f555w_mjysr.fits", calibration="mjy_sr")
    image = read_hst_image(tmp_path / "f555w_mjysr.fits")
    pixel_sr = (formats.HST_PIXEL_ARCSEC / 206264.806) ** 2
    # 1 MJy/sr = 1e6 Jy/sr = 1e-17 erg/s/cm2/Hz/sr; f_lambda = f_nu c / lambda_p^2
    expected = data * 1e-17 * pixel_sr * C_AA_S / image.pivot_aa**2
    np.testing.assert_allclose(image.data.compute(), expected, rtol=1e-6)


# ----------------------------------------------------------------------------------------- rest frame
def _galaxy_like_spectrum(wave_aa):
    """A continuum with absorption and emission lines (relative units)."""
    lines = [(4861.3, -0.3, 4.0), (5175.0, -0.2, 8.0), (6562.8, 2.0, 2.5), (8542.1, -0.3, 3.0)]
    out = 1.0 + 0.2 * np.sin(wave_aa / 700.0)
    for center, depth, sigma in lines:
        out += depth * np.exp(-0.5 * ((wave_aa - center) / sigma) ** 2)
    return out


def test_rest_frame_resampling_conserves_flux_and_equals_spectres():
    wave = muse_wave()
    z = total_redshift(0.002425, np.array([-150.0, 0.0, 220.0]))  # NGC 3627 (727 km/s) +- rotation
    obs = np.stack([_galaxy_like_spectrum(wave / (1 + zi)) for zi in z])
    var = 1e-4 * obs
    rest, rest_var = resample_spectra(wave, obs, var, wave, z)
    dw = 1.25
    for band in [(4800.0, 5300.0), (6500.0, 6620.0), (8400.0, 8700.0)]:
        in_rest = (wave >= band[0]) & (wave < band[1])
        for i, zi in enumerate(z):
            in_obs = (wave >= band[0] * (1 + zi)) & (wave < band[1] * (1 + zi))
            ratio = rest[i, in_rest].sum() * dw / (obs[i, in_obs].sum() * dw)
            assert ratio == pytest.approx(1.0, abs=0.005)
    for i, zi in enumerate(z):
        ref, ref_err = spectres(
            wave, wave / (1 + zi), obs[i] * (1 + zi), np.sqrt(var[i]) * (1 + zi), fill=np.nan, verbose=False
        )
        np.testing.assert_allclose(rest[i], ref, rtol=1e-10)
        np.testing.assert_allclose(rest_var[i], ref_err**2, rtol=1e-8)


def test_milky_way_dereddening_undoes_dust_extinction_reddening():
    wave = muse_wave()
    flux = _galaxy_like_spectrum(wave)
    for law, model in (("G23", G23), ("F99", F99)):
        reddened = flux * model(Rv=3.1).extinguish(wave * u.AA, Ebv=0.15)
        out, out_var = deredden_mw(wave, reddened[None], (0.01 * reddened)[None] ** 2, 0.15, law=law)
        np.testing.assert_allclose(out[0], flux, rtol=1e-10)
        np.testing.assert_allclose(out_var[0], (0.01 * flux) ** 2, rtol=1e-10)


# ----------------------------------------------------------------------------------------- resolution
def _gauss(x, amp, mu, sigma, cont):
    return cont + amp * np.exp(-0.5 * ((x - mu) / sigma) ** 2)


@pytest.mark.parametrize("center_aa", [5200.0, 6563.0, 8500.0])
def test_broadening_reaches_the_model_dispersion(center_aa):
    wave = muse_wave()
    sigma_obs, sigma_model = 60.0, 150.0

    def total_sigma_aa(s_kms):  # MUSE LSF and stellar dispersion in quadrature
        return np.hypot(muse_lsf_fwhm(center_aa) * FWHM_TO_SIGMA, center_aa * s_kms / C_KMS)

    line = _gauss(wave, 1.0, center_aa, total_sigma_aa(sigma_obs), 1.0)
    out, out_var, too_broad = broaden_to_model(
        wave, line[None], np.full((1, wave.size), 1e-4), sigma_obs, sigma_model
    )
    assert not too_broad[0]
    near = np.abs(wave - center_aa) < 40
    (_, _, sigma_fit, _), _ = curve_fit(_gauss, wave[near], out[0, near], p0=(0.5, center_aa, 3.0, 1.0))
    assert sigma_fit == pytest.approx(total_sigma_aa(sigma_model), rel=0.02)
    assert np.sum(out[0] - 1.0) == pytest.approx(np.sum(line - 1.0), rel=1e-3)  # line flux kept


def test_broadening_propagates_variance_of_white_noise():
    wave = muse_wave(n_wave=800)
    rng = np.random.default_rng(3)
    noise = rng.standard_normal((400, wave.size))
    out, out_var, _ = broaden_to_model(wave, noise, np.ones_like(noise), 40.0, 150.0)
    measured = out[:, 50:-50].var(axis=0).mean()
    predicted = out_var[0, 50:-50].mean()
    assert measured == pytest.approx(predicted, rel=0.05)  # the node mixture is an upper bound, tight


def test_resampling_returns_the_covariance_of_neighbouring_pixels():
    wave = muse_wave(n_wave=400)
    rng = np.random.default_rng(5)
    n = 4000
    noise = rng.standard_normal((n, wave.size))
    z = 0.0035 + 3e-5  # a fractional shift that changes slowly along the grid
    out, out_var, cov = resample_spectra(wave, noise, np.ones_like(noise), wave, z, covariance=True)
    assert cov.shape[1:] == out.shape and cov.shape[0] >= 1
    inner = slice(20, -20)
    measured = np.mean(out[:, :-1] * out[:, 1:], axis=0)[inner]
    np.testing.assert_allclose(measured, cov[0, 0, :-1][inner], atol=4 / np.sqrt(n))
    np.testing.assert_allclose(out[:, inner].var(axis=0), out_var[0, inner], rtol=0.15)


def test_prepared_variance_matches_the_scatter_of_pure_noise():
    # Resampling to the rest frame correlates neighbouring pixels and the broadening kernel sums
    # over that covariance: the variance it propagates must include it (it came out ~1.5x too small).
    wave = muse_wave(n_wave=1200)
    rng = np.random.default_rng(11)
    n = 300
    var = np.full((n, wave.size), 4.0)
    flux = 100.0 + np.sqrt(var) * rng.standard_normal(var.shape)
    v_kms = rng.uniform(-150.0, 150.0, n)
    for sigma_obs in (None, 60.0, 120.0):
        prep = prepare_spectra(
            wave,
            flux,
            var,
            wave,
            sigma_model_kms=150.0,
            z_sys=0.0035,
            v_kms=v_kms,
            sigma_obs_kms=sigma_obs,
            mask_sky=False,
        )
        expected = 100.0 * (1.0 + total_redshift(0.0035, v_kms))[:, None]  # rest-frame flux density
        pull = ((prep.flux - expected) / np.sqrt(prep.var))[:, 60:-60]
        assert np.isfinite(pull).mean() > 0.9
        assert np.nanstd(pull) == pytest.approx(1.0, abs=0.03), sigma_obs


def test_spectra_broader_than_the_model_are_flagged_not_broadened():
    wave = muse_wave(n_wave=300)
    flux = _galaxy_like_spectrum(wave)[None].repeat(3, axis=0)
    out, _, too_broad = broaden_to_model(wave, flux, np.ones_like(flux), [155.0, 200.0, np.nan], 150.0)
    assert list(too_broad) == [False, True, False]
    np.testing.assert_array_equal(out, flux)


# ----------------------------------------------------------------------------------------- HST fluxes
@pytest.mark.parametrize("b_filter", ["HST_WFC3_F438W", "HST_ACS_WFC_F435W"])
def test_mjy_to_flam_agrees_with_synthetic_photometry_of_a_flat_fnu_source(b_filter):
    filters = ["HST_WFC3_F275W", "HST_WFC3_F336W", b_filter, "HST_WFC3_F555W", "HST_WFC3_F814W"]
    wave = np.arange(1500.0, 12000.0, 0.5)
    flam = 1e-26 * C_AA_S / wave**2  # 1 mJy at every wavelength, in erg/s/cm2/A
    expected = band_flux(wave, flam, filters) / 1e-20
    got, got_err = photometry_to_flux_density(
        np.ones((1, 5)), np.full((1, 5), 0.1), filters, 1e-20 * FLAM_UNIT
    )
    np.testing.assert_allclose(got[0], expected, rtol=0.01)
    np.testing.assert_allclose(got_err, 0.1 * got, rtol=1e-12)


# ----------------------------------------------------------------------------------------- all steps
def test_prepare_spectra_sets_one_flag_per_problem():
    wave = muse_wave()
    rest = _galaxy_like_spectrum(wave)
    flux = np.stack([rest] * 6)
    flux[2] = np.nan  # no data
    flux[4] = -rest  # negative
    var = np.full_like(flux, 1e-4)
    z = np.array([0.002, 0.3, 0.002, 0.002, 0.002, 0.002])
    v_kms = C_KMS * z
    v_kms[5] = np.nan
    prepared = prepare_spectra(
        wave,
        flux,
        var,
        wave,
        sigma_model_kms=150.0,
        z_sys=0.0,
        v_kms=v_kms,
        ebv_mw=0.05,
        sigma_obs_kms=np.array([60.0, 60.0, 60.0, 250.0, 60.0, 60.0]),
    )
    expected = [
        0,
        qf.LOW_COVERAGE,
        qf.NO_DATA | qf.LOW_COVERAGE,
        qf.TOO_BROAD,
        qf.NEGATIVE_FLUX,
        qf.NO_KINEMATICS | qf.NO_DATA | qf.LOW_COVERAGE,
    ]
    assert [qf.flag_names(f) for f in prepared.flags] == [qf.flag_names(f) for f in expected]
    assert 0.85 < prepared.coverage[0] < 0.95  # sky windows and the red end are missing
    # the [O I] 5577 sky window, seen in the rest frame of object 0
    lo, hi = SKY_LINE_WINDOWS_AA[0] / 1.002
    inside = (wave > lo + 1.5) & (wave < hi - 1.5)
    assert np.isnan(prepared.flux[0, inside]).all() and (prepared.ivar[0, inside] == 0).all()
    assert np.all(prepared.ivar[0][np.isfinite(prepared.flux[0])] > 0)


def test_lazy_cube_survives_pickling_for_dask_workers(tmp_path):
    import pickle

    flux, _ = write_cube(tmp_path / "cube.fits", ny=8, nx=6, n_wave=50)
    cube = read_muse_cube(tmp_path / "cube.fits", max_spaxels_per_chunk=12)
    remote = pickle.loads(pickle.dumps(cube.flux))  # what a dask.distributed worker receives
    cube.close()
    np.testing.assert_array_equal(remote.compute(), flux)
