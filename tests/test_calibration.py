"""Tests of sfh_ml.network.calibration: per-bin sigma factors fitted on a held-out set, stored in the
model and applied by predict.

The model is a tiny v2 whose sigmas are deliberately mis-scaled (factors 0.25 for the cumulative SFH,
over-confident, and 20 for [M/H], too cautious); calibrated on one toy set, it must give the Gaussian
1-sigma coverage on another drawn alike. The toy sets are those of test_training (8 age bins,
400 pixels).
"""

import json

import h5py
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import build_tiny  # noqa: E402
from test_training import (  # noqa: E402
    AGE_BINS_YR,
    BIN_LIGHT,
    N_BANDS,
    N_BINS,
    N_WAVE,
    ZH_GRID,
    write_toy_file,
)

from sfh_ml import network  # noqa: E402
from sfh_ml.cli import build_parser  # noqa: E402
from sfh_ml.network import calibration, metrics  # noqa: E402
from sfh_ml.network.layers import HistoryHead  # noqa: E402

MIS_SCALE = {"sfh_cum": 0.25, "zh": 20.0}
TOLERANCE = 0.03  # |coverage - 0.683| on an independent set (binomial scatter ~0.01 at these sizes)


def _coverage_1sigma(pred, truth):
    """1-sigma coverage of the cumulative SFH and of the mass-weighted [M/H], as evaluate reports them."""
    targets = metrics.coverage_targets(pred, truth)
    return {
        name: metrics.coverage(*targets[name][:3], n_sigma=(1.0,), weights=targets[name][3])["1sigma"]
        for name in ("sfh_cum", "zh_mass_weighted")
    }


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration")
    return {
        "calib": write_toy_file(folder / "calib.h5", 3000, seed=11),
        "test": write_toy_file(folder / "test.h5", 3000, seed=12),
        "folder": folder,
    }


@pytest.fixture(scope="module")
def mis_scaled(sets):
    """An untrained tiny v2 (standardisation adapted) with deliberately wrong sigma factors, saved."""
    with h5py.File(sets["calib"]) as f:
        wave_aa, filters = f["wave_aa"][:], [b.decode() for b in f["filters"][:]]
        spectra, photometry = f["spectra"][:], f["photometry"][:]
    model = build_tiny(
        "v2", N_WAVE, N_BANDS, N_BINS, seed=3, adapt=(spectra, photometry), zh_range=(-1.71, 0.22),
        wave_aa=wave_aa, age_bins_yr=AGE_BINS_YR, filters=filters,
    )  # fmt: skip
    ones = np.ones(N_BINS)
    model.get_layer("history").set_sigma_scale(MIS_SCALE["sfh_cum"] * ones, MIS_SCALE["zh"] * ones)
    path = sets["folder"] / "mis_scaled.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def calibrated(sets, mis_scaled):
    out = sets["folder"] / "calibrated.keras"
    return out, network.calibrate(mis_scaled, sets["calib"], out)


def test_calibration_brings_the_coverage_of_an_independent_set_to_one_sigma(sets, mis_scaled, calibrated):
    out, result = calibrated
    data = network.load_data(sets["test"])
    truth = {"sfh": data["sfh"], "zh": data["zh"]}
    before = _coverage_1sigma(
        network.predict(network.load_model(mis_scaled), data["spectra"], data["photometry"]), truth
    )
    after = _coverage_1sigma(
        network.predict(network.load_model(out), data["spectra"], data["photometry"]), truth
    )
    target = metrics.gaussian_coverage(1.0)
    # mis-scaled: far from 0.683 either way
    assert before["sfh_cum"]["all"] < target - 0.2 and before["zh_mass_weighted"]["all"] > target + 0.15
    for name in ("sfh_cum", "zh_mass_weighted"):
        assert after[name]["all"] == pytest.approx(target, abs=TOLERANCE), name
        per_bin = after[name]["per_bin"][:-1] if name == "sfh_cum" else after[name]["per_bin"]
        assert np.all(np.abs(per_bin - target) < 0.08), (name, per_bin)  # each bin, not just on average
    # on the calibration set itself the coverage is the target (up to one object per bin)
    for name in ("sfh_cum", "zh_mass_weighted"):
        assert result["coverage_after"][name]["1sigma"]["all"] == pytest.approx(target, abs=0.005)
        assert result["coverage_before"][name]["1sigma"]["all"] == pytest.approx(
            before[name]["all"], abs=0.06
        )
    # and the 2-sigma interval holds 95.45 % there (tail factors fitted on the calibrated sigmas)
    for name in ("sfh_cum", "zh_mass_weighted"):
        assert result["coverage_after"][name]["2sigma"]["all"] == pytest.approx(0.9545, abs=0.005)
    json.dumps(result, allow_nan=False)
    assert result["n_objects"] == 3000 and result["pooled_bins"]["sigma_scale_sfh_cum"] == [N_BINS - 1]


def test_a_calibrated_model_keeps_its_factors_when_saved_and_reloaded(mis_scaled, calibrated, tmp_path):
    out, result = calibrated
    meta = network.get_metadata(network.load_model(out))
    np.testing.assert_allclose(meta["sigma_scale_sfh_cum"], result["sigma_scale_sfh_cum"], rtol=1e-12)
    np.testing.assert_allclose(meta["sigma_scale_zh"], result["sigma_scale_zh"], rtol=1e-12)
    # the factors multiply those the model had: the deliberate 0.25 and 20 are undone
    assert np.all(np.asarray(result["sigma_scale_sfh_cum"]) > MIS_SCALE["sfh_cum"] * 1.5)
    assert np.all(np.asarray(result["sigma_scale_zh"]) < MIS_SCALE["zh"] / 1.5)
    # the rest of the model is untouched: same weights, same means, same light table (none here)
    original, again = network.load_model(mis_scaled), network.load_model(out)
    for a, b in zip(original.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert meta["bin_light"] is None
    # saved once more (as predict_file or apply would reload it): still the same factors
    again.save(tmp_path / "copy.keras")
    copy = network.get_metadata(network.load_model(tmp_path / "copy.keras"))
    np.testing.assert_array_equal(copy["sigma_scale_zh"], meta["sigma_scale_zh"])


def test_calibration_refuses_another_grid_too_few_objects_and_its_own_inputs(sets, mis_scaled, tmp_path):
    other = write_toy_file(tmp_path / "other_grid.h5", 300, seed=5)
    with h5py.File(other, "r+") as f:
        f["wave_aa"][...] = f["wave_aa"][:] + 0.5
    with pytest.raises(ValueError, match=r"other_grid\.h5 cannot calibrate .*wavelength grid mismatch"):
        network.calibrate(mis_scaled, other, tmp_path / "out.keras")
    few = write_toy_file(tmp_path / "few.h5", 50, seed=6)
    with pytest.raises(ValueError, match=r"few\.h5 has 50 usable objects .*at least 200"):
        network.calibrate(mis_scaled, few, tmp_path / "out.keras")
    with pytest.raises(ValueError, match="also an input"):
        network.calibrate(mis_scaled, sets["calib"], mis_scaled, overwrite=True)
    (tmp_path / "exists.keras").write_text("")
    with pytest.raises(FileExistsError, match="exists.keras exists"):
        network.calibrate(mis_scaled, sets["calib"], tmp_path / "exists.keras")
    assert not (tmp_path / "out.keras").exists() and not list(tmp_path.glob("*.tmp*"))


def test_cli_calibrate(sets, mis_scaled, tmp_path, capsys):
    out = tmp_path / "cli.keras"
    args = build_parser().parse_args(
        [
            "calibrate",
            "--model",
            str(mis_scaled),
            "--data",
            str(sets["calib"]),
            "--out",
            str(out),
            "--n-max",
            "400",
        ]
    )
    assert args.func(args) == 0
    text = capsys.readouterr().out
    after = [float(line.split()[-2]) for line in text.splitlines() if "within 1 sigma" in line]
    assert len(after) == 2 and np.allclose(after, 0.683, atol=0.01)  # on the 400 objects it was fitted to
    assert f"wrote {out} (calibrated on 400 objects" in text
    assert network.get_metadata(network.load_model(out))["sigma_scale_zh"] is not None


# ----------------------------------------------------------------------------------------- pure numpy
def _gaussian(n, error_scale, seed, sfh=None):
    """Predictions whose errors are Gaussian with ``error_scale[k]`` times the predicted sigma in bin k."""
    rng = np.random.default_rng(seed)
    sfh = rng.dirichlet(np.ones(N_BINS), n) if sfh is None else sfh
    cum_sigma, zh_sigma = rng.uniform(0.02, 0.1, (n, N_BINS)), rng.uniform(0.05, 0.3, (n, N_BINS))
    zh = rng.uniform(-1.5, 0.2, (n, N_BINS))
    pred = {
        "sfh_cum": np.cumsum(sfh, axis=1) + error_scale * cum_sigma * rng.standard_normal((n, N_BINS)),
        "sfh_cum_sigma": cum_sigma,
        "zh": zh + error_scale * zh_sigma * rng.standard_normal((n, N_BINS)),
        "zh_sigma": zh_sigma,
    }
    return pred, {"sfh": sfh, "zh": zh}


def test_the_factors_are_the_ratio_of_true_to_predicted_errors_in_each_bin():
    error_scale = np.geomspace(0.5, 3.0, N_BINS)
    fit = calibration.sigma_scale_factors(*_gaussian(20000, error_scale, seed=1))
    np.testing.assert_allclose(fit["sigma_scale_sfh_cum"][:-1], error_scale[:-1], rtol=0.05)
    np.testing.assert_allclose(fit["sigma_scale_zh"], error_scale, rtol=0.05)
    # the last cumulative bin (1 by construction, weight 0) takes the factor pooled over the bins
    assert fit["pooled_bins"] == {"sigma_scale_sfh_cum": [N_BINS - 1], "sigma_scale_zh": []}
    assert error_scale[0] < fit["sigma_scale_sfh_cum"][-1] < error_scale[-2]


def test_heavy_tails_get_tail_factors_that_make_the_2_sigma_interval_hold_95_percent():
    """Student-t errors (3 degrees of freedom): 1 sigma calibrated to 68.3 %, the 2-sigma interval
    must be wider than 2 sigma, by the t distribution's quantile ratio, to hold 95.45 %."""
    from scipy import stats

    rng = np.random.default_rng(7)
    n = 40000
    pred, truth = _gaussian(n, 1.0, seed=8)
    t = rng.standard_t(3, (n, N_BINS))
    pred["zh"] = truth["zh"] + pred["zh_sigma"] * t
    scale = calibration.sigma_scale_factors(pred, truth)["sigma_scale_zh"]
    pred["zh_sigma"] = pred["zh_sigma"] * scale
    tail = (
        calibration.sigma_scale_factors(pred, truth, target=calibration.TWO_SIGMA_COVERAGE)["sigma_scale_zh"]
        / 2
    )
    q = lambda p: stats.t.ppf(0.5 + p / 2, 3)  # noqa: E731  |t| quantile
    expected = q(calibration.TWO_SIGMA_COVERAGE) / q(calibration.TARGET_COVERAGE) / 2
    assert expected > 1.3  # heavy: 2 sigma would hold far less than 95 %
    np.testing.assert_allclose(tail, expected, rtol=0.1)
    pred["zh_2sigma"] = 2 * pred["zh_sigma"] * tail
    cov = metrics.target_coverage(pred, truth)["zh"]
    assert cov["1sigma"]["all"] == pytest.approx(0.683, abs=0.01)
    assert cov["2sigma"]["all"] == pytest.approx(0.9545, abs=0.01)
    plain = metrics.coverage(pred["zh"], pred["zh_sigma"], truth["zh"])["2sigma"]["all"]
    assert plain < 0.93  # without the tail factors


def test_bins_where_no_mass_formed_take_the_pooled_zh_factor():
    rng = np.random.default_rng(2)
    sfh = rng.dirichlet(np.ones(N_BINS), 3000)
    sfh[:, 2] = 0.0  # nobody formed stars in bin 2: its [M/H] errors say nothing
    sfh /= sfh.sum(axis=1, keepdims=True)
    pred, truth = _gaussian(3000, 2.0, seed=3, sfh=sfh)
    pred["zh"][:, 2] += 10.0  # wild, and weightless
    fit = calibration.sigma_scale_factors(pred, truth)
    assert 2 in fit["pooled_bins"]["sigma_scale_zh"]
    np.testing.assert_allclose(fit["sigma_scale_zh"], 2.0, rtol=0.1)


def test_an_old_model_config_loads_uncalibrated_and_without_a_light_table():
    head = HistoryHead(N_BINS, age_bins_yr=AGE_BINS_YR, bin_light=BIN_LIGHT, zh_grid=ZH_GRID)
    head.set_sigma_scale(np.ones(N_BINS), 2 * np.ones(N_BINS))
    config = head.get_config()
    restored = HistoryHead.from_config(config)
    np.testing.assert_allclose(restored.bin_light, BIN_LIGHT)
    assert restored.sigma_scale_zh == [2.0] * N_BINS
    assert "tail_scale_zh" not in config  # none set: the config is as before they existed
    for key in ("bin_light", "zh_grid", "sigma_scale_sfh_cum", "sigma_scale_zh"):
        del config[key]  # as written before these existed
    old = HistoryHead.from_config(config)
    assert old.bin_light is old.zh_grid is old.sigma_scale_sfh_cum is old.sigma_scale_zh is None
    assert old.tail_scale_sfh_cum is old.tail_scale_zh is None
    head.set_tail_scale(np.ones(N_BINS), 1.5 * np.ones(N_BINS))
    assert HistoryHead.from_config(head.get_config()).tail_scale_zh == [1.5] * N_BINS
    with pytest.raises(ValueError, match="sigma_scale_zh must be 8 finite factors > 0"):
        head.set_sigma_scale(None, np.zeros(N_BINS))
    with pytest.raises(ValueError, match="bin_light and zh_grid go together"):
        HistoryHead(N_BINS, bin_light=BIN_LIGHT)
