"""Real MaNGA spectra: read right, fitted by pPXF and the network alike, bad ones flagged, not numbered."""

import numpy as np
import pytest
from astropy.io import fits
from conftest import make_params

from sfh_ml.fitting import build_templates, emission_line_mask, fit_spectrum
from sfh_ml.observations import read_manga_spectra
from sfh_ml.observations.real_spectra import manga_test_spectra_path, real_spectra_check
from sfh_ml.synthesis.sfh import SkewNormalBurst


@pytest.fixture(scope="module")
def manga():
    return read_manga_spectra(manga_test_spectra_path(progress=False))


def test_manga_spectra_are_read_in_air_with_their_masks(manga):
    assert len(manga) == 8 and manga.flux.shape == manga.var.shape == manga.resolution.shape
    with fits.open(manga.path) as hdul:
        vac = hdul["WAVE"].data
    # vacuum -> air: lambda / n with n - 1 = 2.78e-4 at 5500 A (Morton 2000)
    i = np.searchsorted(vac, 5500.0)
    assert vac[i] - manga.wave_aa[i] == pytest.approx(5500.0 * 2.78e-4, rel=0.02)
    assert np.isnan(manga.flux[5]).mean() > 0.7  # the test file's empty spectrum stays empty
    assert np.all(np.isfinite(manga.var[0, 500:4000]))
    assert np.nanmedian(manga.resolution[0]) == pytest.approx(2000, rel=0.25)  # MaNGA: R ~ 2000


def test_a_file_without_an_extension_is_refused_by_name(manga, tmp_path):
    with fits.open(manga.path) as hdul:
        kept = fits.HDUList([hdu for hdu in hdul if hdu.name != "SRES"])
        kept.writeto(tmp_path / "no_sres.fits")
    with pytest.raises(ValueError, match=r"no_sres\.fits.*SRES"):
        read_manga_spectra(tmp_path / "no_sres.fits")


def test_pixels_without_data_are_left_out_of_the_fit(synth, library):
    one = np.ones(1)
    sfh = SkewNormalBurst().batch(3e9 * one, 1e9 * one, 0 * one, 3e8 * one, 1e7 * one, 0.2 * one,
                                  -0.3 * one, -0.3 * one, one)  # fmt: skip
    out = synth(sfh, make_params(1, tau_ism=0.3, snr=1e3), rng=np.random.default_rng(2))
    templates = build_templates(synth.wave_aa, library)
    mask = emission_line_mask(library, templates.lam)
    flux, noise = out["spectra_noiseless"][0], out["noise"][0]
    full = fit_spectrum(templates, flux, noise, mask, regul=0.0)
    good = np.ones(flux.size, dtype=bool)
    good[1000:1600] = False  # a missing span (e.g. the laser-guide-star gap)
    holed = fit_spectrum(
        templates, np.where(good, flux, np.nan), np.where(good, noise, np.nan), mask, regul=0.0, good=good
    )
    np.testing.assert_allclose(holed["mass"].sum(), full["mass"].sum(), rtol=0.02)
    assert holed["tau_ism"] == pytest.approx(full["tau_ism"], abs=0.03)
    good[:] = False
    good[:1000] = True  # a quarter of the spectrum: refused, not fitted
    with pytest.raises(ValueError, match="have data"):
        fit_spectrum(templates, np.where(good, flux, np.nan), noise, mask, good=good)


def test_network_and_ppxf_agree_on_real_galaxies_and_flag_the_bad_spectra():
    res = real_spectra_check(progress=False)
    # spectrum 5 has no data, spectrum 6 a continuum S/N ~ 2: no numbers, flags instead
    assert not res["usable"][5] and not res["usable"][6]
    for key in ("network_mw_log_age", "ppxf_mw_log_age", "network_mw_zh", "ppxf_mw_zh"):
        assert np.isnan(res[key][[5, 6]]).all(), key
        assert np.isfinite(res[key][res["usable"]]).all(), key
    assert res["prepare_flags"][5] != 0 and res["usable"].sum() == 6
    bright = res["usable"] & (res["snr"] > 50)
    assert bright.sum() == 5
    # The five bright ones are old, metal-rich galaxy centres: both methods say so, within 0.25 dex.
    assert np.all(res["ppxf_mw_log_age"][bright] > 9.5) and np.all(res["network_mw_log_age"][bright] > 9.5)
    diff_age = res["network_mw_log_age"][bright] - res["ppxf_mw_log_age"][bright]
    diff_zh = res["network_mw_zh"][bright] - res["ppxf_mw_zh"][bright]
    assert np.max(np.abs(diff_age)) < 0.25 and np.max(np.abs(diff_zh)) < 0.2
    assert np.all((res["ppxf_sigma_kms"][bright] > 50) & (res["ppxf_sigma_kms"][bright] < 350))
    # The trust score: every usable spectrum has one; none of the real galaxies is off in redshift
    # (the DRP's redshifts are right), and the same spectra moved by dz = 0.01 are caught.
    assert np.all((res["trust"][res["usable"]] >= 0) & (res["trust"][res["usable"]] <= 1))
    assert not res["wrong_redshift"][res["usable"]].any()
    assert np.all(np.abs(res["redshift_offset_kms"][bright]) < 300)


def test_real_spectra_at_a_wrong_redshift_are_flagged():
    res = real_spectra_check(progress=False, redshift_error=0.01)  # a user's mistake
    bright = res["snr"] > 50
    assert bright.sum() >= 4 and res["wrong_redshift"][bright].mean() >= 0.75
