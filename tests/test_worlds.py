"""Held-out worlds: parametric histories, other dust, observational errors, library mixes."""

import json
from pathlib import Path

import numpy as np
import pytest

from sfh_ml.constants import C_KMS, FWHM_TO_SIGMA, MAX_AGE_YR, ZH_RANGE
from sfh_ml.synthesis import (
    PHANGS_FILTERS,
    DatasetConfig,
    DoublePowerLaw,
    ExponentialTau,
    LibraryMix,
    LogNormal,
    SynthesisParams,
    Synthesizer,
    TruncatedConstant,
    calzetti_curve,
    charlot_fall,
    dust_curve,
    flux_calibration_error,
    generate,
    generate_chunk,
    load_library,
    muse_lsf_fwhm,
    muse_wave,
    parametric_families,
    pivot_wavelengths,
    read_dataset,
    shift_spectra,
    sky_residuals,
    smc_curve,
)
from sfh_ml.synthesis.dust import CF00_SLOPE, attenuation_curve, transmission
from sfh_ml.synthesis.parametric import DelayedTauBurst
from sfh_ml.synthesis.sfh import default_age_bins

WAVE = muse_wave()
EDGES = default_age_bins()
# fingerprint (see ``fingerprint``) of generate_chunk(DatasetConfig(**SMALL), 0), written with the code
# before the held-out worlds existed (commit 1f255ef; re-checked identical at that commit and now).
DEFAULT_CHUNK = Path(__file__).parent / "data" / "default_chunk_fingerprint.json"
SMALL = dict(n=6, seed=11, chunk_size=6, sigma_kms=(150.0, 150.0))


def fingerprint(rec):
    """Per array of a chunk: its shape and its number of NaN, with the float64 sum, sum of squares and
    index-weighted sum of the rest (or its values, for strings). Bit-exact digests differ between CPUs
    (vectorised exp and BLAS paths); these sums agree to ~1e-7 relative there and move by far more when
    a single draw or formula changes."""
    out = {}
    for k in sorted(rec):
        a = np.asarray(rec[k])
        if a.dtype.kind in "SUO":
            out[k] = {"shape": list(a.shape), "values": [str(v) for v in a.ravel()]}
            continue
        x = a.astype(np.float64).ravel()
        w = np.arange(1, x.size + 1) / x.size
        sums = [np.isnan(x).sum(), np.nansum(x), np.nansum(x * x), np.nansum(w * x)]
        out[k] = {"shape": list(a.shape), "sums": [float(v) for v in sums]}
    return out


def zh_tracks(n):
    return np.full(n, -0.2), np.full(n, 0.1), np.ones(n)


# ----------------------------------------------------------------------------------------- families
@pytest.mark.parametrize("name", ["delayedtau", "exptau", "truncated", "lognormal", "doublepl"])
def test_parametric_histories_are_normalised_and_start_at_their_formation_age(name):
    batch = parametric_families()[name].sample(300, np.random.default_rng(3))
    m = batch.mass_fractions(EDGES)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    assert m.min() >= 0 and np.all(batch.family == name)
    t_form = batch.params["formation_age_yr"]
    assert np.all(t_form < MAX_AGE_YR * (1 + 1e-9))
    # nothing forms before the formation age (look-back ages older than it; to the grid's 2.4 % cells)
    formed_before = 1 - np.diag(batch.cumulative_at(np.minimum(t_form * 1.05, MAX_AGE_YR)))
    assert formed_before.max() < 1e-9
    zh = batch.zh_in_bins(EDGES)
    assert zh.min() >= ZH_RANGE[0] - 1e-9 and zh.max() <= ZH_RANGE[1] + 1e-9


def test_truncated_constant_forms_nothing_after_quenching_and_at_a_constant_rate_before():
    t_form, quench = np.array([5e9, 2e8]), np.array([1e9, 3e7])
    batch = TruncatedConstant().batch(t_form, quench, *zh_tracks(2))
    assert np.all(np.diag(batch.cumulative_at(quench * 0.999)) == 0)
    # equal mass in equal time intervals between quenching and formation
    for frac in (0.1, 0.6):
        ages = quench + frac * (t_form - quench)
        np.testing.assert_allclose(np.diag(batch.cumulative_at(ages)), frac, rtol=1e-9)


def test_exponential_with_a_short_tau_is_old_and_a_long_tau_is_younger():
    t_form = np.full(2, 10e9)
    batch = ExponentialTau().batch(t_form, np.array([1e8, 1e11]), *zh_tracks(2))
    age = batch.mean_log_age()
    assert age[0] == pytest.approx(np.log10(t_form[0] - 1e8), abs=0.01)  # mean age formation - tau
    assert age[1] < age[0] - 0.3  # nearly constant: spread over the 10 Gyr


def test_delayed_tau_peaks_tau_after_formation():
    t_form, tau = np.array([12e9]), np.array([3e9])
    batch = DelayedTauBurst().batch(t_form, tau, np.zeros(1), np.ones(1), np.zeros(1), *zh_tracks(1))
    ages = np.linspace(0.5e9, 11.5e9, 2000)
    peak = ages[np.argmax(batch.sfr(ages)[0])]
    assert peak == pytest.approx(t_form[0] - tau[0], rel=0.03)


def test_log_normal_peaks_at_its_peak_age():
    t_form, peak_age, width = np.array([13e9, 8e9]), np.array([9e9, 2e9]), np.array([0.5, 0.3])
    batch = LogNormal().batch(t_form, peak_age, width, *zh_tracks(2))
    ages = np.linspace(0.2e9, 12.8e9, 4000)
    found = ages[np.argmax(batch.sfr(ages), axis=1)]
    np.testing.assert_allclose(found, peak_age, rtol=0.03)


def test_double_power_law_rises_as_t_to_the_beta_and_falls_as_t_to_the_minus_alpha():
    t_form, tau = np.array([MAX_AGE_YR]), np.array([3e9])
    alpha, beta = np.array([4.0]), np.array([2.0])
    batch = DoublePowerLaw().batch(t_form, tau, alpha, beta, *zh_tracks(1))
    since = np.array([0.2e9, 0.4e9, 9.0e9, 9.2e9, 12.0e9, 12.2e9])  # well before and after the turnover
    after = batch.cumulative_at(t_form[0] - since)[0]  # mass formed since then
    # before the turnover the mass formed grows as T^(beta + 1); after it the SFR falls as T^-alpha
    rise = np.log((1 - after[1]) / (1 - after[0])) / np.log(since[1] / since[0])
    fall = np.log((after[4] - after[5]) / (after[2] - after[3])) / np.log(12.1 / 9.1)
    assert rise == pytest.approx(beta[0] + 1, abs=0.1) and fall == pytest.approx(-alpha[0], abs=0.2)


# ----------------------------------------------------------------------------------------- dust
def test_dust_curves_are_one_at_5500_and_the_smc_is_steeper_than_calzetti_in_the_uv():
    wave = np.array([1500.0, 2175.0, 3000.0, 5500.0, 8000.0, 10000.0])
    calz, smc, cf00 = calzetti_curve(wave), smc_curve(wave), dust_curve(wave, "cf00")
    for k in (calz, smc, cf00):
        assert k[3] == pytest.approx(1.0, abs=1e-12)
        assert np.all(np.diff(k) < 0)  # monotonically greyer to the red
    assert calz[0] == pytest.approx(2.55, abs=0.03)  # A_1500 / A_V of Calzetti et al. (2000), R_V 4.05
    assert smc[0] > 1.5 * calz[0] and smc[1] > calz[1]  # SMC bar: steep, no 2175 A bump
    assert cf00[0] == pytest.approx((1500 / 5500) ** CF00_SLOPE)


def test_dust_curves_continue_smoothly_beyond_their_range():
    for curve, (lo, hi) in ((calzetti_curve, (1200.0, 22000.0)), (smc_curve, (1000.0, 1e4 / 0.3))):
        k = curve(np.array([lo * 0.999, lo * 1.001, hi * 0.999, hi * 1.001]))
        np.testing.assert_allclose(k[0], k[1], rtol=0.01)
        np.testing.assert_allclose(k[2], k[3], rtol=0.01)
        assert np.all(np.isfinite(k)) and np.all(k > 0)


def test_a_later_birth_cloud_dispersal_covers_older_stars():
    age = np.array([5e6, 2e7, 1e8])
    t = charlot_fall(np.array([5500.0]), age, 1.0, 0.0, birth_cloud_age_yr=3e7)[0, :, 0]
    np.testing.assert_allclose(t, np.exp(-np.array([1.0, 1.0, 0.0])))
    t = charlot_fall(np.array([5500.0]), age, 1.0, 0.0)[0, :, 0]
    np.testing.assert_allclose(t, np.exp(-np.array([1.0, 0.0, 0.0])))


# ----------------------------------------------------------------------------------------- perturbations
def test_flux_calibration_error_has_the_requested_rms_and_is_smooth():
    f = flux_calibration_error(WAVE, 0.03, np.random.default_rng(0), 50)
    np.testing.assert_allclose(np.sqrt(np.mean((f - 1) ** 2, axis=1)), 0.03, rtol=1e-9)
    np.testing.assert_allclose(f.mean(axis=1), 1.0, atol=1e-12)
    # a cubic over 3681 pixels: the pixel-to-pixel change is tiny against the rms
    assert np.abs(np.diff(f, axis=1)).max() < 0.03 * 0.01
    assert np.abs(np.diff(f, 2, axis=1)).max() < 1e-6


def test_a_wave_shift_moves_a_line_by_the_requested_velocity():
    centre, sig = 6563.0, 1.2
    line = 1 + np.exp(-0.5 * ((WAVE - centre) / sig) ** 2)[None, :].repeat(3, axis=0)
    v = np.array([-50.0, 20.0, 100.0])
    shifted = shift_spectra(line, WAVE, v)
    near = np.abs(WAVE - centre) < 15
    w = shifted[:, near] - 1
    measured = (w @ WAVE[near]) / w.sum(axis=1)
    np.testing.assert_allclose((measured / centre - 1) * C_KMS, v, atol=1.0)  # 1 km/s = 0.02 A
    np.testing.assert_allclose(shift_spectra(line, WAVE, np.zeros(3)), line, rtol=1e-12)


def test_sky_residuals_sit_on_the_sky_lines_at_the_requested_amplitude():
    n = 4000
    noise = np.full((n, WAVE.size), 2.0, dtype=np.float32)
    r = sky_residuals(noise, WAVE, np.zeros(n), 3.0, np.random.default_rng(1))
    at_5577 = np.argmin(np.abs(WAVE - 5577.34))
    rms_line = r[:, at_5577].std()
    assert rms_line == pytest.approx(3.0 * 2.0, rel=0.05)  # a ~ N(0, 1), G = 1, G' = 0 at the centre
    assert np.all(r[:, np.abs(WAVE - 5200) < 100] == 0)  # no sky line there


# ----------------------------------------------------------------------------------------- synthesis
@pytest.fixture(scope="module")
def emiles_synth():
    return DatasetConfig(**SMALL).synthesizer()


@pytest.fixture(scope="module")
def bc03_synth():
    return DatasetConfig(**SMALL, library="bc03").synthesizer()


@pytest.fixture(scope="module")
def default_chunk(emiles_synth):
    return generate_chunk(DatasetConfig(**SMALL), 0, emiles_synth)


def test_the_training_set_is_unchanged_by_the_world_options(default_chunk):
    want, got = json.loads(DEFAULT_CHUNK.read_text()), fingerprint(default_chunk)
    assert sorted(got) == sorted(want)
    for k, ref in want.items():
        assert got[k]["shape"] == ref["shape"], k
        if "values" in ref:
            assert got[k]["values"] == ref["values"], k
        else:  # float32 arrays: their sums agree to ~1e-7 relative across machines
            np.testing.assert_allclose(got[k]["sums"], ref["sums"], rtol=1e-5, atol=1e-30, err_msg=k)
    assert "dust_law" not in DatasetConfig(**SMALL).to_json()  # nor its stored config


def test_library_mix_of_weight_one_is_emiles_and_of_weight_zero_is_bc03(
    emiles_synth, bc03_synth, default_chunk
):
    mix = LibraryMix(emiles_synth, bc03_synth)
    bc03 = generate_chunk(DatasetConfig(**SMALL, library="bc03"), 0, bc03_synth)
    for w, ref in ((1.0, default_chunk), (0.0, bc03)):
        rec = generate_chunk(DatasetConfig(**SMALL, library="mix", library_mix=(w, w)), 0, mix)
        np.testing.assert_array_equal(rec.pop("world/library_weight"), w)
        assert sorted(rec) == sorted(ref)
        for k in rec:
            if k.startswith("lw_"):  # light-weighted means: (w L a + 0) / (w L), to rounding
                np.testing.assert_allclose(rec[k], ref[k], rtol=1e-12)
            else:
                np.testing.assert_array_equal(rec[k], ref[k], err_msg=k)
    half = generate_chunk(DatasetConfig(**SMALL, library="mix", library_mix=(0.5, 0.5)), 0, mix)
    np.testing.assert_allclose(
        half["photometry_noiseless"],
        0.5 * default_chunk["photometry_noiseless"] + 0.5 * bc03["photometry_noiseless"],
        rtol=1e-5,
    )


def test_a_parametric_world_changes_only_the_histories(emiles_synth, default_chunk):
    rec = generate_chunk(DatasetConfig(**SMALL, family="parametric"), 0, emiles_synth)
    for k in ("tau_bc", "tau_ism", "log_u", "sigma_kms", "sigma_gas_kms", "snr", "snr_phot", "sky_z"):
        np.testing.assert_array_equal(rec[k], default_chunk[k])
    assert set(rec["family"].astype(str)) <= {"delayedtau", "exptau", "truncated", "lognormal", "doublepl"}
    np.testing.assert_allclose(rec["sfh"].sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(rec["sfh_params/formation_age_yr"])) and np.all(np.isnan(rec["sfh_params/tx1"]))


def test_a_parametric_fraction_replaces_only_that_share_of_the_training_histories(
    emiles_synth, default_chunk
):
    cfg = DatasetConfig(**{**SMALL, "n": 400, "chunk_size": 400}, parametric_frac=0.3)
    rec = generate_chunk(cfg, 0, emiles_synth)
    ref = generate_chunk(DatasetConfig(**{**SMALL, "n": 400, "chunk_size": 400}), 0, emiles_synth)
    family = rec["family"].astype(str)
    swapped = ~np.isin(family, ["skewnormal", "densebasis"])
    assert 0.22 < swapped.mean() < 0.38  # binomial(400, 0.3): 5 sigma
    assert set(family[swapped]) == {"delayedtau", "exptau", "truncated", "lognormal", "doublepl"}
    np.testing.assert_array_equal(rec["sfh"][~swapped], ref["sfh"][~swapped])
    assert not np.allclose(rec["sfh"][swapped], ref["sfh"][swapped])
    np.testing.assert_array_equal(rec["tau_ism"], ref["tau_ism"])  # every other draw unchanged
    assert np.all(np.isnan(rec["sfh_params/formation_age_yr"][~swapped]))
    assert np.all(np.isfinite(rec["sfh_params/formation_age_yr"][swapped]))
    assert "parametric_frac" not in DatasetConfig(**SMALL).to_json()  # old files keep their config


def test_metallicity_tracks_can_be_constant_or_falling_and_leave_the_histories(emiles_synth, default_chunk):
    big = {**SMALL, "n": 60, "chunk_size": 60}
    ref = generate_chunk(DatasetConfig(**big), 0, emiles_synth)
    edges = default_age_bins()
    centre = np.sqrt(np.maximum(edges[:-1], 1e5) * edges[1:])
    formed = ref["sfh"] > 1e-3  # bins where stars formed: their [M/H] means something
    for track in ("constant", "falling"):
        rec = generate_chunk(DatasetConfig(**big, zh_track=track), 0, emiles_synth)
        np.testing.assert_array_equal(rec["sfh"], ref["sfh"])  # the same histories ...
        np.testing.assert_array_equal(rec["tau_ism"], ref["tau_ism"])  # ... and every other draw
        start, final = rec["sfh_params/zh_start"], rec["sfh_params/zh_final"]
        if track == "constant":
            np.testing.assert_allclose(
                rec["zh"][formed], np.broadcast_to(final[:, None], rec["zh"].shape)[formed], atol=1e-6
            )
            np.testing.assert_array_equal(final, ref["sfh_params/zh_final"])
        else:
            np.testing.assert_array_equal(start, ref["sfh_params/zh_final"])
            np.testing.assert_array_equal(final, ref["sfh_params/zh_start"])
            # rising: the youngest stars the most metal-rich; falling: the oldest
            for r, sign in ((ref, 1), (rec, -1)):
                slope = [
                    np.polyfit(np.log10(centre[f]), z[f], 1)[0]
                    for z, f in zip(r["zh"], formed)
                    if f.sum() > 2
                ]
                assert np.mean(sign * np.asarray(slope) < 1e-9) > 0.9
    mixed = generate_chunk(
        DatasetConfig(**{**big, "n": 400, "chunk_size": 400}, zh_track_frac=0.5), 0, emiles_synth
    )
    flat = np.isclose(mixed["sfh_params/zh_start"], mixed["sfh_params/zh_final"])
    assert 0.15 < flat.mean() < 0.35  # half of the half are constant
    assert "zh_track" not in DatasetConfig(**SMALL).to_json()


def test_bursts_at_any_age_add_a_burst_to_every_history(emiles_synth, default_chunk):
    big = {**SMALL, "n": 200, "chunk_size": 200}
    rec = generate_chunk(DatasetConfig(**big, burst_any_age=1.0), 0, emiles_synth)
    ref = generate_chunk(DatasetConfig(**big), 0, emiles_synth)
    age, frac = rec["sfh_params/burst_age_yr"], rec["sfh_params/burst_frac"]
    assert np.all(np.isfinite(age)) and np.all((frac >= 0.05) & (frac <= 0.5))
    assert age.min() < 1e7 and age.max() > 3e9  # at every age, beyond the training bursts' 2 Gyr
    np.testing.assert_allclose(rec["sfh"].sum(axis=1), 1.0, atol=1e-5)
    edges = default_age_bins()
    k = np.clip(np.searchsorted(edges, age * (1 + 0.05), side="right") - 1, 0, len(edges) - 2)
    in_bin = rec["sfh"][np.arange(len(age)), k]
    assert np.median(in_bin / frac) > 0.5  # the burst's mass sits in its bin
    dense = rec["family"].astype(str) == "densebasis"
    assert dense.any() and not np.allclose(rec["sfh"][dense], ref["sfh"][dense])
    np.testing.assert_array_equal(rec["sigma_kms"], ref["sigma_kms"])


def test_observational_errors_leave_the_photometry_and_change_the_spectra(emiles_synth, default_chunk):
    cfg = DatasetConfig(**SMALL, flux_calibration=0.03, wave_shift_kms=20.0, sky_residual=3.0)
    rec = generate_chunk(cfg, 0, emiles_synth)
    np.testing.assert_array_equal(rec["photometry"], default_chunk["photometry"])
    np.testing.assert_array_equal(rec["sfh"], default_chunk["sfh"])
    assert rec["world/wave_shift_kms"].shape == (6,) and np.all(np.isfinite(rec["spectra"]))
    assert not np.array_equal(rec["spectra"], default_chunk["spectra"])


@pytest.fixture(scope="module")
def world_synth():
    # two dispersion nodes: room for the stars' effective dispersion of a 10 % LSF error at 150 km/s
    return Synthesizer(load_library(), sigma_kms=(148.0, 152.0), dust_law="calzetti", birth_cloud_age_yr=3e7)


def _params(n, **kw):
    base = dict(
        tau_bc=0.0, tau_ism=0.0, log_u=-3.0, sigma_kms=150.0, sigma_gas_kms=30.0, snr=50.0, snr_phot=20.0
    )
    return SynthesisParams(**{**base, **kw, "tau_bc": np.full(n, kw.get("tau_bc", 0.0))})


def test_the_ism_follows_the_calzetti_law_in_spectra_and_fluxes(world_synth):
    sfh = ExponentialTau().sample(2, np.random.default_rng(5))
    clear = world_synth(sfh, _params(2), noise=False)
    dusty = world_synth(sfh, _params(2, tau_ism=0.8), noise=False)
    ratio = dusty["spectra_noiseless"] / clear["spectra_noiseless"]
    np.testing.assert_allclose(ratio, np.exp(-0.8 * calzetti_curve(WAVE))[None].repeat(2, 0), rtol=1e-5)
    pivot = pivot_wavelengths(PHANGS_FILTERS)
    expected = np.exp(-0.8 * calzetti_curve(pivot))
    np.testing.assert_allclose(
        dusty["photometry_noiseless"] / clear["photometry_noiseless"], expected[None].repeat(2, 0), rtol=0.05
    )
    np.testing.assert_allclose(
        dusty["lw_log_age_dust"], clear["lw_log_age"], atol=1e-12
    )  # one screen: grey at V


def test_stars_stay_in_their_birth_cloud_until_the_dispersal_age(world_synth, emiles_synth):
    sfh = TruncatedConstant().batch(np.full(1, 25e6), np.full(1, 12e6), *zh_tracks(1))  # 12-25 Myr old
    clear = world_synth(sfh, _params(1), noise=False)["spectra_noiseless"]
    cloud = world_synth(sfh, _params(1, tau_bc=1.0), noise=False)["spectra_noiseless"]
    np.testing.assert_allclose(cloud / clear, transmission(np.ones(1), attenuation_curve(WAVE)), rtol=1e-5)
    default = emiles_synth(sfh, _params(1, tau_bc=1.0), noise=False)["spectra_noiseless"]
    ref = emiles_synth(sfh, _params(1), noise=False)["spectra_noiseless"]
    np.testing.assert_array_equal(default, ref)  # out of their clouds at 10 Myr


def test_an_lsf_error_widens_the_emission_lines(world_synth):
    sfh = TruncatedConstant().batch(np.full(2, 5e6), np.full(2, 1e6), *zh_tracks(2))  # H II region
    p = _params(2, lsf_scale=np.array([1.0, 1.1]), sigma_gas_kms=np.array([20.0, 20.0]))
    lines = world_synth(sfh, p, noise=False, components=True)["emission_lines"]
    near = np.abs(WAVE - 6563.0) < 6
    x = WAVE[near]
    w = lines[:, near] / lines[:, near].sum(axis=1, keepdims=True)
    mean = w @ x
    sigma = np.sqrt(np.sum(w * (x[None] - mean[:, None]) ** 2, axis=1))
    lsf = muse_lsf_fwhm(6563.0) * FWHM_TO_SIGMA
    pixel = 1.25**2 / 12  # the lines are integrated over 1.25 A pixels
    expected = np.sqrt((np.array([1.0, 1.1]) * lsf) ** 2 + (20.0 / C_KMS * 6563.0) ** 2 + pixel)
    np.testing.assert_allclose(sigma, expected, rtol=0.03)


def test_a_per_object_ism_slope_replaces_the_synthesizers_law_for_that_object(world_synth):
    sfh = ExponentialTau().sample(2, np.random.default_rng(5))
    slope = np.array([-1.3, np.nan])  # object 0: a steep power law; object 1: the synthesizer's Calzetti
    clear = world_synth(sfh, _params(2, ism_slope=slope), noise=False)
    dusty = world_synth(sfh, _params(2, tau_ism=0.8, ism_slope=slope), noise=False)
    ratio = dusty["spectra_noiseless"] / clear["spectra_noiseless"]
    np.testing.assert_allclose(ratio[0], np.exp(-0.8 * (WAVE / 5500.0) ** -1.3), rtol=1e-5)
    np.testing.assert_allclose(ratio[1], np.exp(-0.8 * calzetti_curve(WAVE)), rtol=1e-5)
    phot = dusty["photometry_noiseless"] / clear["photometry_noiseless"]
    pivot = pivot_wavelengths(PHANGS_FILTERS)
    np.testing.assert_allclose(phot[0], np.exp(-0.8 * (pivot / 5500.0) ** -1.3), rtol=0.05)
    assert phot[0, 0] < phot[1, 0]  # F275W: the steep law dims the UV more than Calzetti


def test_a_per_object_birth_cloud_age_keeps_only_that_objects_stars_in_their_clouds(world_synth):
    sfh = TruncatedConstant().batch(np.full(2, 25e6), np.full(2, 12e6), *zh_tracks(2))  # 12-25 Myr old
    bc = np.array([3e7, 1e7])  # object 0: in clouds until 30 Myr; object 1: out at 10 Myr
    clear = world_synth(sfh, _params(2, birth_cloud_age_yr=bc), noise=False)["spectra_noiseless"]
    cloud = world_synth(sfh, _params(2, tau_bc=1.0, birth_cloud_age_yr=bc), noise=False)["spectra_noiseless"]
    expected = transmission(np.ones(1), attenuation_curve(WAVE))[0]
    np.testing.assert_allclose(cloud[0] / clear[0], expected, rtol=1e-5)
    np.testing.assert_allclose(cloud[1], clear[1], rtol=1e-6)
    with pytest.raises(ValueError, match="birth_cloud_age_yr"):  # beyond what the synthesizer was built for
        world_synth(sfh, _params(2, birth_cloud_age_yr=np.array([1e8, 1e7])), noise=False)


def test_an_imf_like_perturbation_changes_the_light_per_unit_mass_and_not_the_mass(world_synth):
    young = TruncatedConstant().batch(np.full(1, 25e6), np.full(1, 12e6), *zh_tracks(1))
    ref = world_synth(young, _params(1), noise=False)
    top = world_synth(young, _params(1, ml_slope=-0.1), noise=False)
    ratio = top["spectra_noiseless"] / ref["spectra_noiseless"]
    lo, hi = 10 ** (-0.1 * (np.log10([25e6, 12e6]) - 9.0))  # the factor at the population's ages
    assert lo * 0.97 < np.median(ratio) < hi * 1.03 and np.ptp(ratio) < 0.05
    mixed = ExponentialTau().batch(np.full(1, 12e9), np.full(1, 1e11), *zh_tracks(1))  # ~constant SFR
    a = world_synth(mixed, _params(1), noise=False)
    b = world_synth(mixed, _params(1, ml_slope=-0.1), noise=False)
    np.testing.assert_allclose(b["mw_log_age"], a["mw_log_age"])  # the truth is the mass
    np.testing.assert_allclose(b["mstar_frac"], a["mstar_frac"])
    assert b["lw_log_age"][0] < a["lw_log_age"][0] - 0.05  # young stars brighter: younger in light


def test_line_ratios_scatter_per_ion_and_keep_the_recombination_lines(world_synth):
    from sfh_ml.synthesis.lines import ion_of, ion_scales

    names = world_synth.library.line_names
    f = ion_scales(names, 0.3, np.random.default_rng(3), 4000)
    ions = ion_of(names)
    assert f.shape == (4000, len(names))
    np.testing.assert_array_equal(f[:, np.isin(ions, ["H  1", "He 1", "He 2"])], 1.0)
    n2 = np.flatnonzero(ions == "N  2")
    np.testing.assert_array_equal(f[:, n2[0]], f[:, n2[1]])  # [N II] 6583/6548 stays the atomic ratio
    assert abs(np.std(np.log10(f[:, n2[0]])) - 0.3) < 0.02
    o3 = np.flatnonzero(ions == "O  3")[0]
    assert abs(np.corrcoef(np.log10(f[:, n2[0]]), np.log10(f[:, o3]))[0, 1]) < 0.1  # ions independent
    hii = TruncatedConstant().batch(np.full(2, 5e6), np.full(2, 1e6), *zh_tracks(2))
    scale = np.ones((2, len(names)))
    scale[1, n2] = 2.0
    out = world_synth(hii, _params(2, line_scale=scale), noise=False, components=True)
    line_lum = out["line_lum"]
    lib = world_synth.library
    ha, nii = lib.line_index("H  1  6562.80A"), lib.line_index("N  2  6583.45A")
    np.testing.assert_allclose(line_lum[1, ha], line_lum[0, ha])
    np.testing.assert_allclose(line_lum[1, nii], 2 * line_lum[0, nii], rtol=1e-6)


def test_the_per_object_world_options_draw_from_their_own_streams_and_are_stored(emiles_synth):
    big = {**SMALL, "n": 300, "chunk_size": 300, "birth_cloud_age_yr": (3e6, 1e7)}
    synth = DatasetConfig(**big).synthesizer()
    ref = generate_chunk(DatasetConfig(**{**SMALL, "n": 300, "chunk_size": 300}), 0, emiles_synth)
    opts = dict(dust_slope=(-1.3, -0.4), ml_slope=(-0.05, 0.05), line_scatter=0.2)
    rec = generate_chunk(DatasetConfig(**big, **opts), 0, synth)
    for k in ("sfh", "tau_ism", "tau_bc", "sigma_kms", "snr", "halpha_lum"):  # every other draw unchanged
        np.testing.assert_array_equal(rec[k], ref[k], err_msg=k)
    slope, bc, ml = rec["world/ism_slope"], rec["world/birth_cloud_age_yr"], rec["world/ml_slope"]
    assert slope.min() >= -1.3 and slope.max() <= -0.4 and np.ptp(slope) > 0.7
    assert bc.min() >= 3e6 and bc.max() <= 1e7 and 0.4 < np.mean(bc < np.sqrt(3e6 * 1e7)) < 0.6  # log-uniform
    assert np.abs(ml).max() <= 0.05 and not np.array_equal(rec["spectra"], ref["spectra"])
    cfg = DatasetConfig(**big, **opts)
    assert DatasetConfig.from_json(cfg.to_json()) == cfg
    plain = DatasetConfig(**SMALL, dust_slope=(-0.7, -0.7), birth_cloud_age_yr=(1e7, 1e7), ml_slope=(0, 0))
    assert plain.to_json() == DatasetConfig(**SMALL).to_json()  # equal ends: the defaults, left out


def test_a_world_file_stores_its_parameters_and_reads_back(tmp_path, emiles_synth, monkeypatch):
    monkeypatch.setattr(DatasetConfig, "synthesizer", lambda self, library=None: emiles_synth)
    cfg = DatasetConfig(**SMALL, family="lognormal", wave_shift_kms=10.0)
    d = read_dataset(generate(cfg, tmp_path / "w.h5", progress=False))
    assert np.all(np.isfinite(d["sfh_params/peak_age_yr"])) and np.all(np.isfinite(d["sfh_params/log_width"]))
    assert np.all(np.isnan(d["sfh_params/tau_yr"])) and d["world/wave_shift_kms"].shape == (6,)
    assert DatasetConfig.from_json(d["attrs"]["config"]) == cfg


@pytest.mark.parametrize(
    "bad",
    [
        dict(dust_law="mw"),
        dict(dust_law="smc", dust_slope=-1.3),
        dict(birth_cloud_age_yr=0.0),
        dict(flux_calibration=-0.01),
        dict(lsf_error=0.7),
        dict(library="mix", library_mix=(0.5, 1.2)),
        dict(family="burst"),
        dict(parametric_frac=1.5),
        dict(family="parametric", parametric_frac=0.3),
        dict(zh_track="up"),
        dict(zh_track_frac=1.5),
        dict(zh_track="constant", zh_track_frac=0.3),
        dict(burst_any_age=-0.1),
        dict(dust_slope=(-4.0, -1.0)),
        dict(dust_law="calzetti", dust_slope=(-1.3, -0.4)),
        dict(birth_cloud_age_yr=(1e7, 3e6)),
        dict(ml_slope=(0.5, 2.0)),
        dict(line_scatter=-0.1),
    ],
)
def test_world_options_out_of_range_are_refused(bad):
    with pytest.raises(ValueError):
        DatasetConfig(**{**SMALL, **bad})


def test_the_command_line_makes_a_test_world_and_refuses_a_bad_option(tmp_path, capsys):
    import json

    import h5py

    from sfh_ml.cli import main
    from sfh_ml.synthesis import TEST_WORLDS, world_config

    out = tmp_path / "world.h5"
    args = ["generate", "--n", "4", "--chunk-size", "4", "--family", "parametric", "--dust-law", "smc",
            "--flux-calibration", "0.03", "--wave-shift", "10", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    with h5py.File(out) as f:
        stored = json.loads(f.attrs["config"])
    assert stored["family"] == "parametric" and stored["dust_law"] == "smc"
    assert stored["flux_calibration"] == 0.03 and stored["wave_shift_kms"] == 10.0
    d = read_dataset(out, keys=["family"])
    assert set(d["family"]) & {"delayedtau", "exptau", "truncated", "lognormal", "doublepl"}
    assert not set(d["family"]) & {"skewnormal", "densebasis"}
    assert main(["generate", "--n", "4", "--dust-law", "mie", "--out", str(tmp_path / "x.h5")]) == 2
    assert "mie" in capsys.readouterr().err
    randomised = tmp_path / "randomised.h5"  # the domain-randomised training world of the shipped model
    args = ["generate", "--n", "4", "--chunk-size", "4", "--library", "mix", "--parametric-frac", "0.5",
            "--out", str(randomised), "--quiet"]  # fmt: skip
    assert main(args) == 0
    with h5py.File(randomised) as f:
        assert json.loads(f.attrs["config"])["parametric_frac"] == 0.5
    per_object = tmp_path / "per_object.h5"
    args = ["generate", "--n", "4", "--chunk-size", "4", "--dust-slope", "-1.3", "-0.4", "--birth-cloud-age",
            "3e6", "3e7", "--ml-slope", "-0.05", "0.05", "--line-scatter", "0.1", "--out", str(per_object),
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    d = read_dataset(per_object, keys=["world/ism_slope", "world/birth_cloud_age_yr", "world/ml_slope"])
    assert np.all((d["world/ism_slope"] >= -1.3) & (d["world/ism_slope"] <= -0.4))
    assert np.all((d["world/birth_cloud_age_yr"] >= 3e6) & (d["world/birth_cloud_age_yr"] <= 3e7))
    assert json.loads(read_dataset(per_object, keys=[])["attrs"]["config"])["line_scatter"] == 0.1
    assert main(["generate", "--n", "4", "--parametric-frac", "2", "--out", str(tmp_path / "y.h5")]) == 2
    assert "parametric_frac" in capsys.readouterr().err
    # every named world is a valid configuration
    for world in TEST_WORLDS:
        assert world_config(world, 10, 1).n == 10
    with pytest.raises(ValueError, match="unknown test world"):
        world_config("moon", 10, 1)
