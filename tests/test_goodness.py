"""The re-synthesis goodness of fit: a true history fits to the noise, a wrong one does not and is
flagged, the dust grid finds the dust, missing data give NaN rather than a confident number, and
``predict`` without ``goodness`` is unchanged."""

import h5py
import numpy as np
import pytest

from sfh_ml import DatasetConfig, generate, load_pretrained
from sfh_ml.constants import MAX_AGE_YR
from sfh_ml.network import GOODNESS_KEYS, QUALITY_OUT_OF_DISTRIBUTION, predict, predict_file
from sfh_ml.network.goodness import TAU_ISM_GRID, BinnedHistory, resynthesis_fit
from sfh_ml.utils import as_str

N = 48
SNR = 20.0


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("goodness") / "snr20.h5"
    generate(DatasetConfig(n=N, seed=11, snr=(SNR, SNR)), path, progress=False)
    keys = ("spectra", "noise", "photometry", "photometry_err", "sfh", "zh", "mw_log_age")
    with h5py.File(path, "r") as f:
        data = {k: f[k][:] for k in keys}
        data.update(wave_aa=f["wave_aa"][:], filters=as_str(f["filters"][:]), age_bins_yr=f["age_bins_yr"][:])
    data["path"] = path
    return data


def fit(data, prediction, **kw):
    args = {k: kw.pop(k, data[k]) for k in ("spectra", "noise", "photometry", "photometry_err")}
    return resynthesis_fit(
        prediction,
        args["spectra"],
        args["noise"],
        args["photometry"],
        args["photometry_err"],
        data["wave_aa"],
        data["filters"],
        data["age_bins_yr"],
        **kw,
    )


def test_binned_history_reproduces_its_bins_and_mean_age():
    rng = np.random.default_rng(0)
    edges = np.array([0.0, 1e7, 1e8, 1e9, MAX_AGE_YR])
    sfh = rng.dirichlet(np.ones(4), size=5)
    hist = BinnedHistory(sfh, rng.uniform(-1, 0.2, (5, 4)), edges)
    np.testing.assert_allclose(hist.mass_fractions(edges), sfh, atol=1e-12)
    np.testing.assert_allclose(hist.cumulative_at(edges[1:]), np.cumsum(sfh, axis=1), atol=1e-12)
    # constant SFR over [0, 1e7]: mean log10 t = log10(1e7) - 1 / ln 10
    single = BinnedHistory([[1.0, 0, 0, 0]], [[0.0] * 4], edges)
    assert single.mean_log_age()[0] == pytest.approx(7.0 - 1.0 / np.log(10.0), abs=1e-9)


def test_true_bins_fit_to_the_noise(synthetic):
    out = fit(synthetic, {"sfh": synthetic["sfh"], "zh": synthetic["zh"]})
    assert 0.8 < np.median(out["chi2_pixel"]) < 1.5
    assert np.median(out["phot_rms"]) < 2.5
    assert np.mean(out["ood_score"] > 1) <= 0.25  # the threshold allows ~10 % of good fits


def test_a_wrong_history_is_far_off_and_flagged(synthetic):
    young = synthetic["mw_log_age"] < 9.3
    assert young.sum() >= 5
    wrong = np.zeros_like(synthetic["sfh"][young])
    wrong[:, -1] = 1.0  # everything formed in the oldest bin
    sub = {k: synthetic[k][young] for k in ("spectra", "noise", "photometry", "photometry_err")}
    out = fit(synthetic, {"sfh": wrong, "zh": synthetic["zh"][young]}, **sub)
    assert np.median(out["chi2_pixel"]) > 3.0
    assert np.all(out["ood_score"] > 1)


def test_dust_grid_finds_tau_ism_within_a_step(synthetic):
    from sfh_ml.network.goodness import _params, _synthesizer

    synth = _synthesizer(synthetic["wave_aa"].tobytes(), tuple(synthetic["filters"]), "emiles")
    hist = BinnedHistory(synthetic["sfh"][:8], synthetic["zh"][:8], synthetic["age_bins_yr"])
    tau_ism = 0.6
    out = synth(hist, _params(8, 225.0, tau_ism, 0.5), noise=False)
    spec, phot = out["spectra_noiseless"].astype(float), out["photometry_noiseless"].astype(float)
    rng = np.random.default_rng(5)
    noise, phot_err = spec / 50.0, phot / 30.0
    data = {**synthetic, "spectra": spec + noise * rng.standard_normal(spec.shape)}
    data.update(
        noise=noise, photometry=phot + phot_err * rng.standard_normal(phot.shape), photometry_err=phot_err
    )
    res = fit(data, {"sfh": hist.sfh, "zh": hist.zh})
    step = TAU_ISM_GRID[1] - TAU_ISM_GRID[0]
    assert np.all(np.abs(res["tau_ism"] - tau_ism) <= step + 1e-9)
    assert np.median(res["chi2_pixel"]) < 1.1


def test_missing_noise_and_bands_give_nan_not_numbers(synthetic):
    sl = slice(0, 3)
    noise = synthetic["noise"][sl].copy()
    noise[0] = np.nan  # no usable noise: nothing to compare with
    phot = synthetic["photometry"][sl].copy()
    phot[1, :2] = np.nan  # two bands missing
    err = synthetic["photometry_err"][sl].copy()
    err[2] = np.nan  # no band error at all
    sub = dict(spectra=synthetic["spectra"][sl], noise=noise, photometry=phot, photometry_err=err)
    out = fit(synthetic, {"sfh": synthetic["sfh"][sl], "zh": synthetic["zh"][sl]}, **sub)
    for key in ("chi2_pixel", "ood_score", "phot_rms", "tau_ism"):
        assert np.isnan(out[key][0]), key
    assert np.all(np.isnan(out["phot_residual"][1, :2])) and np.all(np.isfinite(out["phot_residual"][1, 2:]))
    assert np.isfinite(out["chi2_pixel"][1]) and np.isfinite(out["phot_rms"][1])
    assert np.isnan(out["phot_rms"][2]) and np.isfinite(out["chi2_pixel"][2])
    nan_pred = {"sfh": np.full((1, synthetic["sfh"].shape[1]), np.nan), "zh": synthetic["zh"][:1]}
    one = {k: synthetic[k][:1] for k in ("spectra", "noise", "photometry", "photometry_err")}
    assert np.isnan(fit(synthetic, nan_pred, **one)["ood_score"][0])


@pytest.fixture(scope="module")
def model():
    return load_pretrained()


def test_predict_without_goodness_is_unchanged_and_with_it_adds_the_scores(model, synthetic):
    sl = slice(0, 16)
    spectra, photometry = synthetic["spectra"][sl], synthetic["photometry"][sl]
    plain = predict(model, spectra, photometry)
    assert not set(GOODNESS_KEYS) & set(plain)
    scored = predict(
        model,
        spectra,
        photometry,
        goodness=True,
        noise=synthetic["noise"][sl],
        photometry_err=synthetic["photometry_err"][sl],
    )
    for key in plain:
        if key != "quality":
            np.testing.assert_array_equal(plain[key], scored[key])
    np.testing.assert_array_equal(plain["quality"], scored["quality"] & ~QUALITY_OUT_OF_DISTRIBUTION)
    assert all(scored[k].shape == (16,) for k in GOODNESS_KEYS)
    flagged = (scored["quality"] & QUALITY_OUT_OF_DISTRIBUTION) > 0
    np.testing.assert_array_equal(flagged, scored["ood_score"] > 1)
    with pytest.raises(ValueError, match="noise"):
        predict(model, spectra, photometry, goodness=True)


def test_predict_file_writes_the_scores(model, synthetic, tmp_path):
    out = tmp_path / "pred.h5"
    predict_file(model, synthetic["path"], out, goodness=True)
    with h5py.File(out, "r") as f:
        assert all(f[k].shape == (N,) for k in GOODNESS_KEYS)
        assert np.all(np.isfinite(f["chi2_pixel"][:]))
        ood = (f["quality"][:] & QUALITY_OUT_OF_DISTRIBUTION) > 0
        np.testing.assert_array_equal(ood, f["ood_score"][:] > 1)
