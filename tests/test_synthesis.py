import dataclasses

import numpy as np
import pytest
from conftest import make_params
from scipy.optimize import curve_fit

from sfh_ml.constants import C_KMS, HALPHA_LABEL
from sfh_ml.synthesis.dust import attenuation, charlot_fall
from sfh_ml.synthesis.instrument import broadening_matrix, muse_lsf_fwhm
from sfh_ml.synthesis.nebular import L_SUN_ERG_S, sfr_from_halpha
from sfh_ml.synthesis.photometry import PHANGS_FILTERS
from sfh_ml.synthesis.sfh import ConstantSFH, DenseBasis, SkewNormalBurst
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
    assert library.age_yr[0] == pytest.approx(6.3e6, rel=0.01)
    assert library.age_yr[-1] == pytest.approx(10**10.1, rel=0.01)  # E-MILES has no 14.1 Gyr model
    assert library.age_edges_yr[-1] == pytest.approx(14.1e9, rel=0.01)  # the oldest bin reaches 14.1 Gyr
    np.testing.assert_allclose(np.diff(library.log_age), 0.1, atol=1e-3)
    assert library.wave_aa[0] < 1998 and library.wave_aa[-1] > 11005  # F275W to F814W
    assert np.all(library.flux > 0) and np.all(np.isfinite(library.flux))
    assert np.all((library.mstar_frac > 0.3) & (library.mstar_frac <= 1.0))


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


def test_noise_has_the_requested_snr(synth):
    rng = np.random.default_rng(2)
    n = 200
    batch = DenseBasis().sample(n, rng)
    params = make_params(n, snr=25.0, snr_phot=10.0)
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
