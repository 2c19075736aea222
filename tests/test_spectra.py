"""Real spectra of any instrument (sfh_ml.observations.spectra): the readers on real files that ship in
packages (ppxf's SDSS DR18 spectra, the MaNGA DAP's test spectra) and on faithful small copies written
here, the preparation (vacuum to air, rest frame, the LSF brought to the model's), the kinematics, the
command line, and every bad input. A tiny untrained network keeps the predictions fast; one test uses
the shipped network.
"""

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import make_params
from scipy.optimize import curve_fit

import sfh_ml
from sfh_ml.constants import C_KMS, FWHM_TO_SIGMA
from sfh_ml.observations import flags as qf
from sfh_ml.observations import manga_test_spectra_path, ppxf_sdss_spectrum_path
from sfh_ml.observations.spectra import SDSS_DLOGLAM, measure_kinematics, prepare_observed, read_spectra
from sfh_ml.synthesis.instrument import muse_lsf_fwhm, muse_wave

keras = pytest.importorskip("keras")
ppxf = pytest.importorskip("ppxf")

from sfh_ml.cli import main  # noqa: E402

SDSS_FILES = [ppxf_sdss_spectrum_path(g) for g in ("NGC3522", "NGC3073")]
HALPHA_VAC_AA, HALPHA_AIR_AA = 6564.61, 6562.80  # H-alpha in vacuum and in standard air (Morton 2000)
SIGMA_MODEL_KMS = 150.0


def gaussian(x, a, mu, sig, c):
    return c + a * np.exp(-0.5 * ((x - mu) / sig) ** 2)


def fitted_fwhm(wave, flux, centre, half_width=25.0):
    """FWHM (A) and centre of a Gaussian fitted to the line near ``centre``."""
    sel = np.isfinite(flux) & (np.abs(wave - centre) < half_width)
    p, _ = curve_fit(gaussian, wave[sel], flux[sel], p0=[1.0, centre, 3.0, 1.0])
    return abs(p[2]) / FWHM_TO_SIGMA, p[1]


# ----------------------------------------------------------------------------------------- writers
def write_sdss_like(path, wave_vac_aa, flux, ivar, wdisp, z=0.01):
    """An SDSS-III/IV spec file: COADD (flux, loglam, ivar, and_mask, ..., wdisp) and SPECOBJ (Z)."""
    header = fits.Header(
        {"TELESCOP": "SDSS 2.5-M", "VERS2D": "v5_13_2", "FIBERID": 12, "PLATEID": 1000, "MJD": 52000}
    )
    header["BUNIT"] = "1E-17 erg/cm^2/s/Ang"
    n = wave_vac_aa.size
    zeros = np.zeros(n, dtype=np.int32)
    coadd = fits.BinTableHDU.from_columns(
        [
            fits.Column("flux", "E", array=flux),
            fits.Column("loglam", "E", array=np.log10(wave_vac_aa)),
            fits.Column("ivar", "E", array=ivar),
            fits.Column("and_mask", "J", array=zeros),
            fits.Column("or_mask", "J", array=zeros),
            fits.Column("wdisp", "E", array=np.broadcast_to(wdisp, (n,))),
            fits.Column("sky", "E", array=np.zeros(n)),
            fits.Column("model", "E", array=flux),
        ],
        name="COADD",
    )
    specobj = fits.BinTableHDU.from_columns([fits.Column("Z", "E", array=[z])], name="SPECOBJ")
    fits.HDUList([fits.PrimaryHDU(header=header), coadd, specobj]).writeto(path)
    return path


def sdss_grid(lo=3800.0, hi=9200.0):
    return 10 ** np.arange(np.log10(lo), np.log10(hi), SDSS_DLOGLAM)


def write_muse_1d(path, wave_air, flux, var, z=None):
    header = fits.Header({"CTYPE1": "AWAV", "CUNIT1": "Angstrom", "CRVAL1": wave_air[0], "CRPIX1": 1.0})
    header["CD1_1"] = wave_air[1] - wave_air[0]
    header["BUNIT"] = "10**(-20)*erg/s/cm**2/Angstrom"
    if z is not None:
        header["Z"] = z
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(flux.astype(np.float32), header, name="DATA"),
            fits.ImageHDU(var.astype(np.float32), header, name="STAT"),
        ]
    ).writeto(path)
    return path


def line_spectrum(wave, centre, fwhm, depth=-0.5, seed=0, snr=1e4):
    """A flat continuum (1) with one Gaussian line of the given FWHM at each pixel, tiny seeded noise."""
    rng = np.random.default_rng(seed)
    flux = 1.0 + depth * np.exp(-0.5 * ((wave - centre) / (fwhm * FWHM_TO_SIGMA)) ** 2)
    return flux + rng.normal(0.0, 1.0 / snr, wave.size), np.full(wave.size, 1.0 / snr**2)


@pytest.fixture(scope="module")
def model(tiny_v2):
    return tiny_v2  # conftest: untrained tiny v2 on the MUSE grid, PHANGS bands, default age bins


def table_spectra(n=3, medium="air"):
    """Spectra as an ECSV-like table: one row per pixel, flux (n_wave, n) columns."""
    wave = np.linspace(4500.0, 9500.0, 3000)
    flux = np.stack([line_spectrum(wave, 6000.0, 3.0, seed=k)[0] for k in range(n)], axis=1)
    t = Table({"wave": wave, "flux": flux, "err": np.full(flux.shape, 1e-2), "fwhm": np.full(wave.size, 3.0)})
    t["wave"].unit = u.AA
    if medium:
        t.meta["medium"] = medium
    t.meta["redshift"] = 0.0
    return t


# ----------------------------------------------------------------------------------------- readers
def test_sdss_reader_on_the_dr18_files_of_ppxf():
    spectra = read_spectra(SDSS_FILES)
    assert len(spectra) == 2 and spectra.medium == "vacuum" and spectra.resolution_source == "wdisp"
    for i, path in enumerate(SDSS_FILES):
        with fits.open(path) as hdul:
            coadd, z = hdul[1].data, hdul["SPECOBJ"].data["Z"][0]
        n = len(coadd)
        np.testing.assert_allclose(spectra.wave_aa[i, :n], 10 ** coadd["loglam"].astype(float), rtol=1e-6)
        assert spectra.redshift[i] == pytest.approx(z)
        # wdisp is the LSF's sigma in pixels of 1e-4 dex: FWHM = 2.355 wdisp 1e-4 ln(10) lambda
        k = n // 2
        expected = 2.3548 * coadd["wdisp"][k] * 1e-4 * np.log(10) * spectra.wave_aa[i, k]
        assert spectra.fwhm_aa[i, k] == pytest.approx(expected, rel=1e-4)
        r = spectra.wave_aa[i, :n] / spectra.fwhm_aa[i, :n]
        assert 1500 < np.median(r) < 3000  # the SDSS spectrographs: R ~ 1800-2200
        np.testing.assert_allclose(
            spectra.ivar[i, :n][~spectra.mask[i, :n]], coadd["ivar"][~spectra.mask[i, :n]]
        )
    assert spectra.names[1] == "0945-52652-0470"
    assert np.all(spectra.mask[0, len(fits.getdata(SDSS_FILES[0], 1)) :])  # the padding is masked


def test_manga_reader_on_the_dap_test_spectra():
    path = manga_test_spectra_path(progress=False)
    spectra = read_spectra(path)
    with fits.open(path) as hdul:
        z, sres, wave_vac = hdul["Z"].data, hdul["SRES"].data, hdul["WAVE"].data
    assert len(spectra) == 8 and spectra.medium == "air"  # the DRP's vacuum converted on reading
    np.testing.assert_allclose(spectra.redshift, z)
    k = 2000
    # R = lambda / FWHM: the same ratio in air and vacuum
    np.testing.assert_allclose(spectra.fwhm_aa[:4, k], spectra.wave_aa[0, k] / sres[:4, k], rtol=1e-9)
    assert spectra.wave_aa[0, k] == pytest.approx(wave_vac[k] / 1.000277, abs=0.05)


def test_manga_rss_like_file_read_with_specutils(tmp_path):
    wave = 10 ** (np.log10(3621.6) + 1e-4 * np.arange(4000))
    flux = np.stack([line_spectrum(wave, 6000.0, 3.0, seed=k)[0] for k in range(2)])
    h = fits.Header({"TELESCOP": "SDSS 2.5-M"})
    fh = fits.Header({"INSTRUME": "MaNGA", "CTYPE1": "WAVE-LOG", "CUNIT1": "Angstrom", "CRPIX1": 1.0})
    fh.update(CRVAL1=wave[0], CDELT1=wave[0] * 1e-4 * np.log(10))
    disp = np.full(flux.shape, 1.2)  # sigma of the LSF, Angstrom
    fits.HDUList(
        [
            fits.PrimaryHDU(header=h),
            fits.ImageHDU(flux, fh, name="FLUX"),
            fits.ImageHDU(np.full(flux.shape, 1e4), name="IVAR"),
            fits.ImageHDU(np.zeros(flux.shape, np.int32), name="MASK"),
            fits.ImageHDU(wave, name="WAVE"),
            fits.ImageHDU(disp, name="DISP"),
            fits.ImageHDU(wave / 2000.0, name="SPECRES"),
        ]
    ).writeto(tmp_path / "manga-1-1-LOGRSS.fits")
    spectra = read_spectra(tmp_path / "manga-1-1-LOGRSS.fits", redshift=0.01)
    assert len(spectra) == 2 and spectra.medium == "vacuum" and spectra.resolution_source == "DISP"
    np.testing.assert_allclose(spectra.wave_aa[0], wave, rtol=1e-6)
    np.testing.assert_allclose(spectra.fwhm_aa, 1.2 / FWHM_TO_SIGMA)  # DISP before SPECRES
    np.testing.assert_allclose(spectra.var, 1e-4)


def test_muse_1d_reader_uses_the_muse_lsf(tmp_path):
    wave = muse_wave()
    flux, var = line_spectrum(wave, 6000.0, 3.0)
    spectra = read_spectra(write_muse_1d(tmp_path / "s.fits", wave, flux, var, z=0.005))
    assert spectra.medium == "air" and spectra.redshift[0] == 0.005
    np.testing.assert_allclose(spectra.fwhm_aa[0], muse_lsf_fwhm(wave))
    np.testing.assert_allclose(spectra.flux[0], flux.astype(np.float32))


@pytest.mark.parametrize("suffix", [".ecsv", ".csv", ".fits"])
def test_tables_give_the_same_spectra_in_every_format(tmp_path, suffix):
    t = table_spectra(n=1)
    t["flux"] = t["flux"][:, 0]
    t["err"] = t["err"][:, 0]
    t["wave"] = (np.asarray(t["wave"]) * u.AA).to(u.nm)  # a unit the format carries is converted
    t["fwhm"].unit = u.AA  # a FWHM without a unit would be taken in the wavelengths' unit
    path = tmp_path / f"s{suffix}"
    t.write(path)
    kw = {"medium": "air"} if suffix == ".csv" else {}  # CSV keeps neither the medium nor units
    if suffix == ".csv":
        with pytest.raises(ValueError, match="nm"):  # nm without a unit: refused with the fix
            read_spectra(path, **kw)
        return
    spectra = read_spectra(path, **kw)
    np.testing.assert_allclose(spectra.wave_aa[0], np.linspace(4500.0, 9500.0, 3000), rtol=1e-9)
    np.testing.assert_allclose(spectra.var[0], 1e-4)
    assert spectra.fwhm_aa[0, 0] == pytest.approx(3.0) and spectra.medium == "air"


def test_specutils_spectrum_in_fnu_is_converted_to_flambda():
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    wave = np.linspace(4700.0, 9400.0, 2000) * u.AA
    spec = Spectrum(
        flux=np.full(wave.size, 2.0) * u.mJy,
        spectral_axis=wave,
        uncertainty=StdDevUncertainty(np.full(wave.size, 0.1)),
    )
    spectra = read_spectra(spec, medium="air", resolution=3000.0)
    expected = (2.0 * u.mJy).to_value(u.erg / u.s / u.cm**2 / u.AA, equivalencies=u.spectral_density(wave))
    np.testing.assert_allclose(spectra.flux[0], expected, rtol=1e-10)
    np.testing.assert_allclose(np.sqrt(spectra.var[0]), expected / 20.0, rtol=1e-10)  # errors scaled alike
    np.testing.assert_allclose(spectra.fwhm_aa[0], wave.value / 3000.0)


# ----------------------------------------------------------------------------------------- preparation
def test_vacuum_to_air_and_rest_frame_put_halpha_at_its_air_wavelength(tmp_path):
    z = 0.02
    wave = sdss_grid()
    flux, var = line_spectrum(wave, HALPHA_VAC_AA * (1 + z), 3.0, depth=1.0)
    path = write_sdss_like(tmp_path / "spec-1000-52000-0012.fits", wave, flux, 1 / var, 0.9, z=z)
    spectra = read_spectra(path)
    prep = prepare_observed(spectra, muse_wave(), broaden=False)
    _, centre = fitted_fwhm(muse_wave(), prep.flux[0] / (1 + z), HALPHA_AIR_AA)
    # the vacuum-air difference is 1.81 A: an unconverted spectrum would miss by that much
    assert centre == pytest.approx(HALPHA_AIR_AA, abs=0.05)


@pytest.mark.parametrize("resolution, grid", [(2000.0, "sdss"), (10000.0, "fine")])
def test_broadening_reaches_the_model_resolution(resolution, grid):
    """An unresolved line (sigma_stars = 0) from an SDSS-like and a sharper instrument comes out at the
    model's resolution, the MUSE LSF plus 150 km/s, FWHM = hypot(FWHM_MUSE, 2.355 * 150 / c * lambda)."""
    from specutils import Spectrum

    centre, z = 6000.0, 0.01
    wave = sdss_grid(4000.0, 9600.0) if grid == "sdss" else np.arange(4600.0, 9600.0, 0.1)
    flux, var = line_spectrum(wave, centre * (1 + z), centre * (1 + z) / resolution)
    from astropy.nddata import VarianceUncertainty

    spec = Spectrum(flux=flux * u.Jy / u.Jy, spectral_axis=wave * u.AA, uncertainty=VarianceUncertainty(var))
    spectra = read_spectra(spec, medium="air", resolution=resolution, redshift=z)
    prep = prepare_observed(spectra, muse_wave(), sigma_model_kms=SIGMA_MODEL_KMS, sigma_kms=0.0, v_kms=0.0)
    fwhm, _ = fitted_fwhm(muse_wave(), prep.flux[0] / (1 + z), centre)
    expected = np.hypot(muse_lsf_fwhm(centre), SIGMA_MODEL_KMS / FWHM_TO_SIGMA / C_KMS * centre)
    assert fwhm == pytest.approx(expected, rel=0.03)
    assert prep.flags[0] == 0


def test_measured_dispersion_of_a_synthetic_spectrum(library):
    """A Synthesizer spectrum at sigma = 250 km/s (MUSE LSF) shifted by 120 km/s: pPXF finds both."""
    from test_synthesis import old_population

    from sfh_ml.synthesis.synthesizer import Synthesizer

    sigma, v, z = 250.0, 120.0, 0.01
    synth = Synthesizer(library, sigma_kms=sigma)
    out = synth(old_population(), make_params(1, sigma_kms=sigma, snr=80.0), rng=np.random.default_rng(3))
    zt = (1 + z) * (1 + v / C_KMS) - 1
    wave_obs = synth.wave_aa * (1 + zt)
    spectra = muse_like(wave_obs, out["spectra"][0] / (1 + zt), (out["noise"][0] / (1 + zt)) ** 2, z)
    kin = measure_kinematics(spectra, muse_wave())
    assert kin["sigma_kms"][0] == pytest.approx(sigma, rel=0.10)
    assert kin["v_kms"][0] == pytest.approx(v, abs=15.0)


def muse_like(wave_obs, flux, var, z):
    """A MUSE-like spectrum (air, MUSE LSF in the observed frame) as a table in memory, read."""
    t = Table({"wave": wave_obs, "flux": flux, "var": var, "fwhm": muse_lsf_fwhm(wave_obs)})
    t["wave"].unit = u.AA
    t.meta.update(medium="air", redshift=z)
    return read_spectra(t)


# ----------------------------------------------------------------------------------------- predictions
def test_cli_and_python_give_the_same_numbers(model, tmp_path):
    model_path = tmp_path / "tiny.keras"
    model.save(model_path)
    out = tmp_path / "pred.ecsv"
    args = ["predict", "--spectrum", str(SDSS_FILES[0]), "--model", str(model_path), "--out", str(out)]
    assert main(args + ["--sigma", "120", "--velocity", "10"]) == 0
    table = sfh_ml.predict_spectra(read_spectra(SDSS_FILES[0]), model, sigma_kms=120.0, v_kms=10.0)
    cli = Table.read(out)
    keys = ("sfh", "sfh_cum_sigma", "sfh_cum_2sigma", "zh", "zh_2sigma", "mw_log_age", "mw_zh", "coverage")
    for key in (*keys, "quality", "snr"):
        np.testing.assert_allclose(np.asarray(cli[key]), np.asarray(table[key]), rtol=1e-6, err_msg=key)
    # the 95.45 % half-widths: 2 sigma for a network without tail factors
    np.testing.assert_allclose(table["sfh_cum_2sigma"], 2 * table["sfh_cum_sigma"], rtol=1e-6)
    assert cli.meta["age_bins_yr"] == table.meta["age_bins_yr"]
    # never over an existing file without --overwrite; FITS too
    assert main(args + ["--sigma", "120", "--velocity", "10"]) == 2
    assert main(args[:-1] + [str(tmp_path / "pred.fits"), "--sigma", "120", "--velocity", "10"]) == 0
    np.testing.assert_allclose(Table.read(tmp_path / "pred.fits")["mw_zh"], table["mw_zh"], rtol=1e-6)
    assert main(args[:-1] + [str(tmp_path / "pred.txt"), "--sigma", "120"]) == 2  # .ecsv or .fits only


@pytest.mark.slow
def test_shipped_network_on_an_sdss_early_type_galaxy():
    """NGC 3522 (SDSS DR18, shipped with ppxf): an old, early-type galaxy; SDSS VDISP 97 +- 2 km/s."""
    table = sfh_ml.predict_spectra(read_spectra(SDSS_FILES[0]))
    row = table[0]
    assert row["usable"] and row["coverage"] > 0.8
    assert 9.5 < row["mw_log_age"] < 10.2  # older than 3 Gyr
    assert 80.0 < row["sigma_kms"] < 130.0  # pPXF against the SDSS pipeline's 97 km/s
    assert abs(row["v_kms"]) < 100.0


# ----------------------------------------------------------------------------------------- bad input
def test_wavelengths_in_nm_or_log10_are_refused_with_the_fix(tmp_path):
    t = table_spectra(n=1)
    t["wave"] = np.asarray(t["wave"]) / 10.0  # nm, no unit
    t["wave"].unit = None
    t.write(tmp_path / "nm.ecsv")
    with pytest.raises(ValueError, match="nm"):
        read_spectra(tmp_path / "nm.ecsv")
    t["wave"] = np.log10(np.linspace(4500.0, 9500.0, 3000))
    t.write(tmp_path / "log.ecsv")
    with pytest.raises(ValueError, match="log10"):
        read_spectra(tmp_path / "log.ecsv")
    t.rename_column("wave", "loglam")  # the format says so: converted
    t.write(tmp_path / "loglam.ecsv")
    assert read_spectra(tmp_path / "loglam.ecsv").wave_aa[0, 0] == pytest.approx(4500.0)


def test_medium_errors_redshift_and_resolution_must_be_known(tmp_path, model):
    t = table_spectra(n=1, medium=None)
    t.write(tmp_path / "nomedium.ecsv")
    with pytest.raises(ValueError, match="--medium"):
        read_spectra(tmp_path / "nomedium.ecsv")
    with pytest.raises(ValueError, match="contradicts"):
        read_spectra(SDSS_FILES[0], medium="air")  # SDSS is vacuum
    t = table_spectra(n=1)
    del t["err"]
    t.write(tmp_path / "noerr.ecsv")
    with pytest.raises(ValueError, match="--snr"):
        read_spectra(tmp_path / "noerr.ecsv")
    s = read_spectra(tmp_path / "noerr.ecsv", snr=20.0)
    np.testing.assert_allclose(np.sqrt(s.var[0]), np.median(s.flux[0]) / 20.0, rtol=1e-3)
    t = table_spectra(n=1)
    del t.meta["redshift"], t["fwhm"]
    t.write(tmp_path / "noz.ecsv")
    with pytest.raises(ValueError, match="--redshift"):
        sfh_ml.predict_spectra(read_spectra(tmp_path / "noz.ecsv"), model)
    with pytest.raises(ValueError, match="--fwhm"):
        sfh_ml.predict_spectra(read_spectra(tmp_path / "noz.ecsv", redshift=0.0), model)


def test_too_little_rest_frame_coverage_is_refused():
    wave = np.linspace(3000.0, 5000.0, 2000)
    flux, var = line_spectrum(wave, 4000.0, 2.0)
    t = Table({"wave": wave, "flux": flux, "var": var})
    t.meta.update(medium="air")
    spectra = read_spectra(t, redshift=0.0, fwhm_aa=2.0)
    with pytest.raises(ValueError, match="cover 5 % of the model's grid"):
        prepare_observed(spectra, muse_wave(), sigma_kms=0.0)


def test_bad_rows_and_pixels_are_flagged_and_the_good_rows_kept(tmp_path, model):
    t = table_spectra(n=4)
    flux = np.array(t["flux"])
    flux[:, 1] = np.nan  # no data
    flux[::2, 2] = -1.0  # half the pixels negative: masked, too little left
    flux[1000:1010, 3] = 0.0  # a few zero pixels near 6170 A: masked, the spectrum kept
    t["flux"] = flux
    t.write(tmp_path / "four.ecsv")
    spectra = read_spectra(tmp_path / "four.ecsv")
    table = sfh_ml.predict_spectra(spectra, model, sigma_kms=[100.0, 100.0, 100.0, 500.0], v_kms=0.0)
    q = np.asarray(table["quality"])
    assert q[1] & qf.NO_DATA and q[2] & qf.LOW_COVERAGE
    assert q[3] & qf.TOO_BROAD and np.all(np.isnan(table["sfh"][3]))  # 500 km/s: beyond 350, not used
    assert not q[0] & 0xFF and np.all(np.isfinite(table["sfh"][0])) and table["usable"][0]
    assert "TOO_BROAD" in table["quality_names"][3]
    prep = prepare_observed(spectra, muse_wave(), broaden=False)
    assert np.isnan(prep.flux[3, 1100:1170]).sum() >= 8 and prep.coverage[3] > 0.8


def test_an_instrument_broader_than_the_training_range_is_flagged():
    wave = np.linspace(4500.0, 9500.0, 3000)
    flux, var = line_spectrum(wave, 6000.0, 30.0)
    t = Table({"wave": wave, "flux": flux, "var": var, "resolution": np.full(wave.size, 250.0)})
    t.meta.update(medium="air", redshift=0.0)
    prep = prepare_observed(read_spectra(t), muse_wave(), sigma_kms=50.0, tolerance_kms=200.0)
    assert prep.flags[0] & qf.TOO_BROAD  # R = 250: 510 km/s of instrumental sigma, beyond 150 + 200
