"""The re-synthesis goodness of fit: a true history fits to the noise, a wrong one does not and is
flagged, the dust grid finds the dust, missing data give NaN rather than a confident number, and
``predict`` without ``goodness`` is unchanged. The out-of-distribution thresholds: fitted as 90th
percentiles, stored in the model (saved and loaded with it), used by ``predict`` instead of the
module's table, and fitted and stored end to end by ``calibrate_ood``."""

import h5py
import numpy as np
import pytest

from sfh_ml import DatasetConfig, generate, load_pretrained, network
from sfh_ml.constants import BIRTH_CLOUD_AGE_YR, MAX_AGE_YR
from sfh_ml.network import GOODNESS_KEYS, QUALITY_OUT_OF_DISTRIBUTION, predict, predict_file
from sfh_ml.network.goodness import (
    OOD_THRESHOLDS,
    TAU_ISM_GRID,
    BinnedHistory,
    age_is_right,
    fit_ood_thresholds,
    ood_threshold,
    resynthesis_fit,
)
from sfh_ml.network.pretrained import pretrained_paths
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
    # a population with no star older than the birth clouds sees tau_ism + tau_bc only (CF00)
    edges = synthetic["age_bins_yr"]
    all_young = hist.sfh[:, edges[1:] <= BIRTH_CLOUD_AGE_YR].sum(axis=1) > 0.999
    found = np.where(all_young, res["tau_ism"] + res["tau_bc"], res["tau_ism"])
    assert np.all(np.abs(found - np.where(all_young, tau_ism + 0.5, tau_ism)) <= step + 1e-9)
    assert (~all_young).sum() >= 6  # the test mostly checks tau_ism itself
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


# ------------------------------------------------------------------------ out-of-distribution thresholds
SMALL = [[1.0, 1e-6], [1e3, 1e-6]]  # every imperfect fit is out of distribution
HUGE = [[1.0, 1e6], [1e3, 1e6]]  # nothing is


def test_fit_ood_thresholds_takes_the_90th_percentile_of_the_right_objects_per_node():
    rng = np.random.default_rng(1)
    rows = []
    for snr, scale in ((50.0, 1e-3), (10.0, 1e-2)):  # labels deliberately not in S/N order
        rf = scale * rng.permutation(np.arange(1, 101))  # the right objects: 1..100 times the scale
        wrong = np.full(30, 100 * scale)  # wrong ages: far off, must not count
        snr_model = np.concatenate([snr * rng.uniform(0.9, 1.1, 100), snr * rng.uniform(0.9, 1.1, 30)])
        rows.append((np.concatenate([rf, wrong]), snr_model, np.r_[np.ones(100, bool), np.zeros(30, bool)]))
    rf, snr_model, ok = (np.concatenate(v) for v in zip(*rows))
    groups = np.repeat(["snr50", "snr10"], 130)
    table = fit_ood_thresholds(rf, snr_model, ok, groups, min_objects=50)
    assert table.shape == (2, 2)
    # S/N increasing; the median S/N of each group (all its objects), the 90th percentile of its right
    # objects: 1 + 0.9 * 99 = 90.1 times the scale (linear interpolation)
    np.testing.assert_allclose(table[:, 0], [np.median(snr_model[130:]), np.median(snr_model[:130])])
    np.testing.assert_allclose(table[:, 1], [90.1e-2, 90.1e-3], rtol=1e-12)
    # a percentile other than 90, and NaN (not fitted) objects left out
    rf_nan = rf.copy()
    rf_nan[:5] = np.nan
    other = fit_ood_thresholds(rf_nan, snr_model, ok, groups, percentile=50.0, min_objects=50)
    np.testing.assert_allclose(other[1, 1], np.percentile(rf[5:100], 50.0))
    # one group split into two S/N nodes of equal counts
    one = fit_ood_thresholds(rf[130:], snr_model[130:], ok[130:], n_nodes=2, min_objects=20)
    order = np.argsort(snr_model[130:])
    low, high = order[:65], order[65:]
    for node, members in zip(one, (low, high)):
        assert node[0] == pytest.approx(np.median(snr_model[130:][members]))
        assert node[1] == pytest.approx(np.percentile(rf[130:][members][ok[130:][members]], 90.0))
    # the table is what the head and ood_threshold take: below its first node the noise-dominated
    # 1 / S/N, above its last node constant
    low_snr, high_snr = 0.5 * table[0, 0], 2.0 * table[-1, 0]
    got = ood_threshold(np.array([low_snr, table[0, 0], high_snr]), table)
    np.testing.assert_allclose(got, [2.0 * table[0, 1], table[0, 1], table[-1, 1]], rtol=1e-12)


def test_fit_ood_thresholds_refuses_what_cannot_be_calibrated():
    rf, snr = np.linspace(0.01, 0.1, 50), np.full(50, 20.0)
    ok = np.ones(50, bool)
    with pytest.raises(ValueError, match=r"group a: 50 fitted objects .*at least 100"):
        fit_ood_thresholds(rf, snr, ok, np.repeat(["a"], 50))
    with pytest.raises(ValueError, match="same S/N"):
        fit_ood_thresholds(
            np.r_[rf, rf], np.r_[snr, snr], np.r_[ok, ok], np.repeat([1, 2], 50), min_objects=10
        )
    with pytest.raises(ValueError, match="percentile of residual_fraction is 0"):
        fit_ood_thresholds(np.zeros(50), snr, ok, min_objects=10)
    with pytest.raises(ValueError, match="one value per object"):
        fit_ood_thresholds(rf, snr[:-1], ok)


def test_age_is_right_within_0_3_dex():
    edges = np.array([0.0, 1e8, 1e9, 1e10, MAX_AGE_YR])
    true = np.array([[0.0, 0.0, 1.0, 0.0]] * 3)
    pred = np.array([[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [np.nan] * 4])
    np.testing.assert_array_equal(age_is_right(pred, true, edges), [True, False, False])


@pytest.fixture(scope="module")
def tiny(synthetic, tmp_path_factory):
    """An untrained tiny v2 on the synthetic set's grids (seeded), saved with no thresholds, with
    absurdly small ones and with huge ones (same weights)."""
    pytest.importorskip("keras")
    from conftest import build_tiny

    model = build_tiny(
        "v2",
        synthetic["wave_aa"].size,
        len(synthetic["filters"]),
        synthetic["sfh"].shape[1],
        seed=5,
        adapt=(synthetic["spectra"], synthetic["photometry"]),
        wave_aa=synthetic["wave_aa"],
        age_bins_yr=synthetic["age_bins_yr"],
        filters=synthetic["filters"],
    )
    folder = tmp_path_factory.mktemp("tiny")
    paths = {}
    for name, table in (("none", None), ("small", SMALL), ("huge", HUGE)):
        model.get_layer("history").set_ood_thresholds(table)
        paths[name] = folder / f"{name}.keras"
        model.save(paths[name])
    return paths


def test_ood_thresholds_are_saved_and_loaded_with_the_model_and_validated(tiny, model):
    shipped = network.get_metadata(model)["ood_thresholds"]  # the shipped network carries its own
    assert (
        shipped.ndim == 2 and shipped.shape[1] == 2 and np.all(np.diff(shipped[:, 1]) < 0)
    )  # falls with S/N
    for name, table in (("none", None), ("small", SMALL), ("huge", HUGE)):
        meta = network.get_metadata(network.load_model(tiny[name]))
        if table is None:
            assert meta["ood_thresholds"] is None
        else:
            np.testing.assert_array_equal(meta["ood_thresholds"], table)
            assert meta["ood_thresholds"].shape == (2, 2)
    head = network.load_model(tiny["small"]).get_layer("history")
    assert head.get_config()["ood_thresholds"] == SMALL
    for bad in (
        [[20.0, 0.01], [10.0, 0.02]],
        [[10.0, 0.0]],
        [[10.0, np.nan]],
        [0.01, 0.02],
        [],
        [[10.0, 1, 2]],
    ):
        with pytest.raises(ValueError, match="ood_thresholds"):
            head.set_ood_thresholds(bad)
    head.set_ood_thresholds(None)
    assert head.get_config()["ood_thresholds"] is None


def test_predict_scores_against_the_models_own_thresholds(tiny, synthetic):
    sl = slice(0, 12)
    args = (synthetic["spectra"][sl], synthetic["photometry"][sl])
    kw = dict(goodness=True, noise=synthetic["noise"][sl], photometry_err=synthetic["photometry_err"][sl])
    flagged = lambda out: (out["quality"] & QUALITY_OUT_OF_DISTRIBUTION) > 0
    small, huge, none = (network.load_model(tiny[k]) for k in ("small", "huge", "none"))
    out_small, out_huge, out_none = (predict(m, *args, **kw) for m in (small, huge, none))
    assert np.all(np.isfinite(out_small["ood_score"]))
    assert flagged(out_small).all() and not flagged(out_huge).any()
    # the same residuals over thresholds 1e-6 and 1e6
    # (rtol: the float32 grid search may differ in the last bits between runs)
    np.testing.assert_allclose(out_small["ood_score"], out_huge["ood_score"] * 1e12, rtol=1e-4)
    # no table of its own: the module's
    fit_default = resynthesis_fit(
        {"sfh": out_none["sfh"], "zh": out_none["zh"]},
        *(synthetic[k][sl] for k in ("spectra", "noise", "photometry", "photometry_err")),
        synthetic["wave_aa"],
        synthetic["filters"],
        synthetic["age_bins_yr"],
    )
    np.testing.assert_allclose(out_none["ood_score"], fit_default["ood_score"], rtol=1e-4)
    expected = fit_default["residual_fraction"] / ood_threshold(fit_default["snr_model"], OOD_THRESHOLDS)
    np.testing.assert_allclose(out_none["ood_score"], expected, rtol=1e-4)
    # an ensemble: its first member's table
    assert flagged(predict([small, huge], *args, **kw)).all()
    assert not flagged(predict([huge, small], *args, **kw)).any()


def test_calibrate_ood_stores_thresholds_that_flag_10_percent_of_the_right_objects(synthetic, tmp_path):
    shipped = pretrained_paths()[0]
    shipped_table = network.get_metadata(network.load_model(shipped))["ood_thresholds"]
    out = tmp_path / "with_ood.keras"
    result = network.calibrate_ood(shipped, synthetic["path"], out, min_objects=20)
    table = np.asarray(result["ood_thresholds"])
    assert table.shape == (1, 2) and np.all(table > 0)
    assert 0.5 * SNR < table[0, 0] < 2 * SNR  # the set's model S/N
    (row,) = result["sets"]
    assert row["n_objects"] == N and 20 <= row["n_age_right"] <= row["n_fitted"] <= N
    n_right = row["n_age_right"]
    # at one node's S/N: above the 90th percentile (linear interpolation) of n distinct values are
    # n - 1 - floor(0.9 (n - 1)); objects below the node's S/N get the higher 1 / S/N threshold
    at_node = (n_right - 1 - np.floor(0.9 * (n_right - 1))) / n_right
    assert 0.5 * at_node <= row["false_alarm"] <= at_node
    # the calibrated copy carries the table, the shipped file none, and predict uses it
    calibrated = network.load_model(out)
    np.testing.assert_allclose(network.get_metadata(calibrated)["ood_thresholds"], table, rtol=1e-12)
    # the new table replaces the model's own in the copy; the input file is left as it was
    np.testing.assert_array_equal(
        network.get_metadata(network.load_model(shipped))["ood_thresholds"], shipped_table
    )
    pred = predict(
        calibrated,
        synthetic["spectra"],
        synthetic["photometry"],
        goodness=True,
        noise=synthetic["noise"],
        photometry_err=synthetic["photometry_err"],
    )
    right = age_is_right(pred["sfh"], synthetic["sfh"], synthetic["age_bins_yr"])
    assert right.sum() == n_right
    flag = (pred["quality"] & QUALITY_OUT_OF_DISTRIBUTION) > 0
    assert np.mean(flag[right]) == pytest.approx(row["false_alarm"])
    # refusals: an existing output, the output among the inputs, too few right objects (named file)
    with pytest.raises(FileExistsError, match="with_ood.keras exists"):
        network.calibrate_ood(shipped, synthetic["path"], out)
    with pytest.raises(ValueError, match="also an input"):
        network.calibrate_ood(out, synthetic["path"], out, overwrite=True)
    with pytest.raises(ValueError, match=r"snr20\.h5: .*at least 1000"):
        network.calibrate_ood(shipped, [synthetic["path"]], tmp_path / "never.keras", min_objects=1000)
    assert not (tmp_path / "never.keras").exists()


def test_cli_calibrate_ood_stores_the_thresholds_and_leaves_no_temporary_file(tmp_path, capsys):
    from sfh_ml.cli import main

    data = tmp_path / "calib.h5"
    generate(DatasetConfig(n=240, seed=4321, snr=50.0, chunk_size=120), data, progress=False)
    out = tmp_path / "v2_ood.keras"
    args = ["calibrate", "--model", str(pretrained_paths()[0]), "--data", str(data), "--out", str(out)]
    assert main([*args, "--ood", "--ood-nodes", "1"]) == 0
    text = capsys.readouterr().out
    assert "out-of-distribution thresholds:" in text and f"wrote {out}" in text
    table = network.get_metadata(network.load_model(out))["ood_thresholds"]
    assert table.shape == (1, 2) and 25.0 < table[0, 0] < 100.0  # the set's model S/N, near 50
    false_alarms = float(text.split("false alarms ")[1].split(")")[0])
    assert 0.02 <= false_alarms <= 0.11  # ~10 % of the right-age objects, fewer below the node's S/N
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.h5", "v2_ood.keras"]
    assert main([*args, "--ood"]) == 2  # an existing output is refused before any work
    assert "--overwrite" in capsys.readouterr().err
