"""The trust score and the wrong-redshift check: the logistic fit separates wrong answers and flags the
asked fraction of right ones; the velocity scan finds a wrong redshift, with its sign, and leaves the
right one alone; ``predict(..., trust=True)`` scores, flags and leaves unusable objects NaN, and an
answer spoiled by fluxes of another object is trusted less than the right one."""

import h5py
import numpy as np
import pytest

from sfh_ml import DatasetConfig, generate, load_pretrained
from sfh_ml.constants import C_KMS
from sfh_ml.network import (
    QUALITY_UNTRUSTED,
    QUALITY_WRONG_REDSHIFT,
    fit_trust,
    get_metadata,
    predict,
    redshift_offset,
    resynthesis_fit,
    trust_score,
    wrong_redshift,
)
from sfh_ml.network import trust as trust_lib
from sfh_ml.synthesis.perturbations import shift_spectra
from sfh_ml.utils import as_str

N = 40
SNR = 30.0


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("trust") / "snr30.h5"
    generate(DatasetConfig(n=N, seed=12, snr=(SNR, SNR)), path, progress=False)
    keys = ("spectra", "spectra_noiseless", "noise", "photometry", "photometry_err", "sfh", "zh")
    with h5py.File(path, "r") as f:
        data = {k: f[k][:] for k in keys}
        data.update(wave_aa=f["wave_aa"][:], filters=as_str(f["filters"][:]), age_bins_yr=f["age_bins_yr"][:])
    return data


def test_fit_trust_separates_wrong_answers_and_flags_the_asked_share_of_right_ones():
    rng = np.random.default_rng(3)
    n = 4000
    sigma = rng.uniform(-2.0, -0.5, n)  # log10 sigma: errors scale with it
    error = 10**sigma * rng.standard_normal(n) * 3.0
    noise_feature = rng.standard_normal(n)  # carries nothing
    features = np.c_[sigma, noise_feature]
    params = fit_trust(features, error, false_alarm=0.2)
    value = trust_score(features, params)
    assert np.all((value >= 0) & (value <= 1))
    wrong, right = np.abs(error) > 0.3, np.abs(error) < 0.15
    flagged = value < params["threshold"]
    assert flagged[right].mean() == pytest.approx(0.2, abs=0.02)
    assert flagged[wrong].mean() > 0.8
    assert params["weights"][1] > 5 * abs(params["weights"][2])  # the informative feature dominates
    with pytest.raises(ValueError, match="at least 10 wrong"):
        fit_trust(features[right], error[right])


@pytest.fixture(scope="module")
def models_of_truth(synthetic):
    """The true histories re-synthesised and fitted to the data (the best possible model)."""
    fit = resynthesis_fit(
        {"sfh": synthetic["sfh"], "zh": synthetic["zh"]},
        synthetic["spectra"],
        synthetic["noise"],
        synthetic["photometry"],
        synthetic["photometry_err"],
        synthetic["wave_aa"],
        synthetic["filters"],
        synthetic["age_bins_yr"],
        return_models=True,
    )
    return fit["model_spectra"]


@pytest.mark.parametrize("dz", [0.006, -0.01, 0.04])
def test_redshift_scan_finds_a_wrong_redshift_with_its_sign(synthetic, models_of_truth, dz):
    rng = np.random.default_rng(4)
    wave = synthetic["wave_aa"]
    shifted = shift_spectra(synthetic["spectra_noiseless"], wave, np.full(N, C_KMS * dz))
    spectra = shifted + synthetic["noise"] * rng.standard_normal(shifted.shape)
    offset = redshift_offset(spectra, synthetic["noise"], models_of_truth, wave)
    assert np.median(np.abs(offset["offset_kms"] - C_KMS * dz)) < 150.0
    assert wrong_redshift(offset).mean() >= 0.9


def test_redshift_scan_leaves_the_right_redshift_alone(synthetic, models_of_truth):
    offset = redshift_offset(synthetic["spectra"], synthetic["noise"], models_of_truth, synthetic["wave_aa"])
    assert np.median(np.abs(offset["offset_kms"])) < 100.0
    assert wrong_redshift(offset).mean() <= 0.1
    masked = models_of_truth.copy()
    masked[0] = np.nan  # no model: not scanned, not flagged
    out = redshift_offset(synthetic["spectra"], synthetic["noise"], masked, synthetic["wave_aa"])
    assert np.isnan(out["offset_kms"][0]) and not wrong_redshift(out)[0]


@pytest.fixture(scope="module")
def model():
    return load_pretrained()


def test_predict_with_trust_scores_flags_and_leaves_unusable_objects_nan(model, synthetic):
    spectra = synthetic["spectra"].copy()
    spectra[0] = np.nan  # unusable
    plain = predict(model, spectra, synthetic["photometry"])
    out = predict(model, spectra, synthetic["photometry"], trust=True)
    np.testing.assert_array_equal(out["sfh"], plain["sfh"])  # the answer itself is unchanged
    assert np.isnan(out["trust"][0]) and np.all((out["trust"][1:] >= 0) & (out["trust"][1:] <= 1))
    flagged = (out["quality"] & QUALITY_UNTRUSTED) > 0
    params = get_metadata(model).get("trust_params") or trust_lib.TRUST_PARAMS  # its own, if fitted
    np.testing.assert_array_equal(flagged[1:], out["trust"][1:] < params["threshold"])
    assert not flagged[0]
    # with the goodness of fit, the wrong-redshift check runs too: a shifted spectrum is caught
    rng = np.random.default_rng(5)
    shifted = shift_spectra(synthetic["spectra_noiseless"], synthetic["wave_aa"], np.full(N, C_KMS * 0.008))
    shifted += synthetic["noise"] * rng.standard_normal(shifted.shape)
    kw = dict(goodness=True, trust=True, photometry_err=synthetic["photometry_err"], noise=synthetic["noise"])
    right = predict(model, synthetic["spectra"], synthetic["photometry"], **kw)
    wrong = predict(model, shifted, synthetic["photometry"], **kw)
    assert np.mean((right["quality"] & QUALITY_WRONG_REDSHIFT) > 0) <= 0.1
    assert np.mean((wrong["quality"] & QUALITY_WRONG_REDSHIFT) > 0) >= 0.9
    assert np.median(wrong["redshift_offset_kms"]) == pytest.approx(C_KMS * 0.008, abs=150.0)


def test_a_mis_trained_network_is_not_trusted_and_the_shipped_one_is(model, synthetic):
    """A planted wrong answer: a tiny network trained on one batch of 8 objects for one epoch answers
    wrongly; the trust score flags most of its answers, and few of the shipped network's right ones."""
    from conftest import build_tiny

    from sfh_ml.network import compile_model
    from sfh_ml.network.losses import make_targets
    from sfh_ml.network.metrics import mean_log_age

    spectra, phot = synthetic["spectra"], synthetic["photometry"]
    bad = build_tiny("v2", seed=1, adapt=(spectra[:8], phot[:8]))
    compile_model(bad)
    bad.fit(
        {"spectrum": spectra[:8], "photometry": phot[:8]},
        make_targets(synthetic["sfh"][:8], synthetic["zh"][:8]),
        epochs=1,
        verbose=0,
    )
    edges = synthetic["age_bins_yr"]
    true_age = mean_log_age(synthetic["sfh"], edges)
    flagged = lambda p: (p["quality"] & QUALITY_UNTRUSTED) > 0  # noqa: E731
    wrong = predict(bad, spectra, phot, trust=True)
    error = np.abs(mean_log_age(wrong["sfh"], edges) - true_age)
    assert np.mean(error > 0.3) >= 0.5  # it is wrong ...
    assert flagged(wrong)[error > 0.3].mean() >= 0.8  # ... and flagged
    good = predict(model, spectra, phot, trust=True)
    right = np.abs(mean_log_age(good["sfh"], edges) - true_age) < 0.15
    assert right.sum() >= 20 and flagged(good)[right].mean() <= 0.25


def test_predict_with_trust_needs_parameters(synthetic, monkeypatch):
    model = load_pretrained()  # its own copy: the fixture's keeps its parameters
    model.get_layer("history").set_trust_params(None)  # a network without its own ...
    monkeypatch.setattr(trust_lib, "TRUST_PARAMS", None)  # ... and no default
    with pytest.raises(ValueError, match="no trust parameters"):
        predict(model, synthetic["spectra"][:2], synthetic["photometry"][:2], trust=True)


def test_trust_rates_count_hits_false_alarms_and_the_auc():
    error = np.array([0.5, -0.4, 0.35, 0.05, -0.1, 0.0, 0.2, np.nan])
    trust = np.array([0.1, 0.2, 0.9, 0.95, 0.3, 0.99, 0.5, 0.5])
    r = trust_lib.trust_rates(trust, error, threshold=0.4)
    assert r["n"] == 7 and r["wrong_fraction"] == pytest.approx(3 / 7)
    assert r["hit_rate"] == pytest.approx(2 / 3) and r["false_alarm"] == pytest.approx(1 / 3)
    # wrong trusts (0.1, 0.2, 0.9) against right ones (0.95, 0.3, 0.99): 8 of 9 pairs ordered
    assert r["auc"] == pytest.approx(8 / 9)
    assert np.isnan(trust_lib.roc_auc(trust, np.zeros(8, bool), np.ones(8, bool)))


def test_calibrate_trust_stores_the_fitted_parameters_in_the_model_and_predict_uses_them(
    model, synthetic, tmp_path
):
    from pathlib import Path

    from sfh_ml.network import calibrate_trust, load_model
    from sfh_ml.network.pretrained import pretrained_paths

    shipped = pretrained_paths()[0]

    noisy = tmp_path / "snr4.h5"  # many wrong answers beside the S/N 30 set's right ones
    generate(DatasetConfig(n=80, seed=13, snr=(4.0, 4.0)), noisy, progress=False)
    own = tmp_path / "snr30.h5"
    generate(DatasetConfig(n=N, seed=12, snr=(SNR, SNR)), own, progress=False)
    out = tmp_path / "with_trust.keras"
    result = calibrate_trust(shipped, [own, noisy], out, false_alarm=0.2)
    params = result["trust_params"]
    assert params["threshold"] != trust_lib.TRUST_PARAMS["threshold"]
    assert params["n_wrong"] >= 10 and params["n_right"] >= 10
    by_set = {Path(s["data"]).name: s for s in result["sets"]}
    assert by_set["snr4.h5"]["wrong_fraction"] > by_set["snr30.h5"]["wrong_fraction"]
    reloaded = load_model(out)
    assert get_metadata(reloaded)["trust_params"] == params  # stored in the file
    assert get_metadata(model)["trust_params"] != params  # the shipped file keeps its own
    spectra, phot = synthetic["spectra"], synthetic["photometry"]
    mine = predict(reloaded, spectra, phot, trust=True)
    explicit = predict(model, spectra, phot, trust=True, trust_params=params)
    np.testing.assert_allclose(mine["trust"], explicit["trust"], rtol=1e-6)
    np.testing.assert_array_equal(
        (mine["quality"] & QUALITY_UNTRUSTED) > 0, mine["trust"] < params["threshold"]
    )
    with pytest.raises(FileExistsError):
        calibrate_trust(shipped, [own, noisy], out)
    with pytest.raises(ValueError, match="trust parameters must"):
        reloaded.get_layer("history").set_trust_params({**params, "weights": params["weights"][:2]})
