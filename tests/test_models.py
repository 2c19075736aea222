"""Tests of the networks (sfh_ml.network): output contract, serialisation, masking, grids, losses.

Tiny networks on short spectra (400 pixels, 8 age bins) keep the file fast on 2 cores; the toy
spectra are sums of per-bin templates, so the SFH and [M/H] can be learnt from them.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import TINY_V1, build_tiny  # noqa: E402

from sfh_ml import network as models  # noqa: E402
from sfh_ml.network import inference  # noqa: E402
from sfh_ml.network.layers import LOG_SIGMA_RANGE  # noqa: E402

N_WAVE, N_BANDS, N_BINS = 400, 5, 8
WAVE_AA = 4749.89 + 1.25 * np.arange(N_WAVE)
AGE_BINS_YR = np.logspace(np.log10(6.3e6), np.log10(1.41e10), N_BINS + 1)
FILTERS = ["F275W", "F336W", "F438W", "F555W", "F814W"]
ZH_RANGE = (-1.71, 0.22)
TINY = TINY_V1


def tiny_model(version, seed=0, **kw):
    return build_tiny(
        version, N_WAVE, N_BANDS, N_BINS, seed=seed,
        **{"zh_range": ZH_RANGE, "wave_aa": WAVE_AA, "age_bins_yr": AGE_BINS_YR, "filters": FILTERS, **kw},
    )  # fmt: skip


def toy_data(n, seed=0):
    """Spectra whose shape is set by the SFH and [M/H], with random flux scales (1e-6 to 1e2).

    Each age bin has its own template: a continuum that is bluer for young bins, an absorption line
    of its own (depth set by the bin's mass) and a second line whose depth grows with the bin's [M/H].
    Returns spectra (n, N_WAVE), photometry (n, N_BANDS), sfh (n, N_BINS), zh (n, N_BINS), float32.
    """
    rng = np.random.default_rng(seed)
    x = np.linspace(-1.0, 1.0, N_WAVE)
    log_age = np.linspace(0.0, 1.0, N_BINS)[:, None]  # (N_BINS, 1), young -> old
    centre = np.linspace(-0.85, 0.75, N_BINS)[:, None]
    line = lambda dx: np.exp(-0.5 * ((x - centre - dx) / 0.03) ** 2)  # (N_BINS, N_WAVE)
    sfh = rng.dirichlet(0.5 * np.ones(N_BINS), n)  # (n, N_BINS)
    zh = rng.uniform(-1.2, 0.0, (n, 1)) + 0.2 * log_age.T + 0.1 * rng.standard_normal((n, N_BINS))
    zh = np.clip(zh, *ZH_RANGE)
    metal_depth = 0.6 * (zh - ZH_RANGE[0]) / (ZH_RANGE[1] - ZH_RANGE[0])  # (n, N_BINS)
    templates = np.exp(-0.3 * (1.0 - 2.0 * log_age) * x) * (1.0 - 0.9 * line(0.0))  # (N_BINS, N_WAVE)
    templates = templates * (1.0 - metal_depth[..., None] * line(0.08))  # (n, N_BINS, N_WAVE)
    spectra = np.einsum("nk,nkw->nw", sfh, templates) * 10.0 ** rng.uniform(-6, 2, (n, 1))
    photometry = np.stack([spectra[:, i * 80 : (i + 1) * 80].mean(1) for i in range(N_BANDS)], axis=1)
    photometry[:, 0] *= np.exp(-3.0 * (sfh @ log_age[:, 0]))  # a "UV" band that tracks young stars
    return tuple(a.astype(np.float32) for a in (spectra, photometry, sfh, zh))


@pytest.fixture(scope="module")
def data():
    return toy_data(64)


@pytest.fixture(scope="module")
def trained(data):
    """A tiny v2 network fitted to 64 toy objects (200 steps), with its losses before and after."""
    spectra, photometry, sfh, zh = data
    model = tiny_model("v2", learning_rate=3e-3)
    models.adapt(model, spectra, photometry)
    x = {"spectrum": spectra, "photometry": photometry}
    y = models.make_targets(sfh, zh)
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    model.fit(x, y, batch_size=16, epochs=50, verbose=0, shuffle=True)
    after = model.evaluate(x, y, verbose=0, return_dict=True)
    return model, before, after


@pytest.mark.parametrize("version", models.VERSIONS)
def test_outputs_obey_the_contract(version, data):
    spectra, photometry, _, _ = data
    out = tiny_model(version)({"spectrum": spectra, "photometry": photometry})
    sfh, zh = (keras.ops.convert_to_numpy(out[k]) for k in ("sfh", "zh"))
    assert sfh.shape == zh.shape == (64, N_BINS, 2)
    assert np.all(sfh[..., 0] >= 0)
    np.testing.assert_allclose(sfh[..., 0].sum(-1), 1.0, atol=1e-5)
    assert np.all((zh[..., 0] >= ZH_RANGE[0]) & (zh[..., 0] <= ZH_RANGE[1]))
    for log_sigma in (sfh[..., 1], zh[..., 1]):
        assert np.all(np.isfinite(log_sigma))
        assert np.all((log_sigma >= LOG_SIGMA_RANGE[0]) & (log_sigma <= LOG_SIGMA_RANGE[1]))


@pytest.mark.parametrize("version", models.VERSIONS)
def test_predictions_do_not_depend_on_the_flux_scale(version, data):
    # The normalisation is inside the model: an aperture 1e5 times brighter gives the same answer.
    spectra, photometry, _, _ = data
    model = tiny_model(version)
    ref = models.predict(model, spectra, photometry)
    bright = models.predict(model, spectra * 1e5, photometry * 1e5)
    for key in ref:
        np.testing.assert_allclose(bright[key], ref[key], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("version", models.VERSIONS)
def test_save_and_load_give_identical_predictions_and_metadata(version, data, tmp_path):
    spectra, photometry, _, _ = data
    model = tiny_model(version)
    models.adapt(model, spectra, photometry)  # the standardisation statistics must travel too
    path = tmp_path / f"{version}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: everything is registered
    ref, new = models.predict(model, spectra, photometry), models.predict(loaded, spectra, photometry)
    for key in ref:
        np.testing.assert_array_equal(new[key], ref[key])
    meta = models.get_metadata(loaded)
    assert meta["version"] == version
    assert meta["filters"] == FILTERS and meta["zh_range"] == ZH_RANGE
    np.testing.assert_array_equal(meta["wave_aa"], WAVE_AA)
    np.testing.assert_array_equal(meta["age_bins_yr"], AGE_BINS_YR)
    assert loaded.optimizer is not None and isinstance(loaded.loss["sfh"], models.SFHLoss)


def test_predict_returns_consistent_arrays(data):
    spectra, photometry, _, _ = data
    pred = models.predict(tiny_model("v2"), spectra, photometry, batch_size=16)
    assert set(pred) == {
        "sfh",
        "sfh_cum",
        "sfh_cum_sigma",
        "zh",
        "zh_sigma",
        "quality",
        *models.INTERVAL_KEYS,
    }
    assert all(pred[k].shape == (64, N_BINS) for k in models.PREDICTION_KEYS + models.INTERVAL_KEYS)
    # a model without tail factors: the 2-sigma half-widths are 2 sigma
    np.testing.assert_allclose(pred["sfh_cum_2sigma"], 2 * pred["sfh_cum_sigma"], rtol=1e-12)
    np.testing.assert_allclose(pred["zh_2sigma"], 2 * pred["zh_sigma"], rtol=1e-12)
    assert pred["quality"].shape == (64,) and not pred["quality"].any()  # clean toy spectra: all good
    np.testing.assert_allclose(pred["sfh_cum"], np.cumsum(pred["sfh"], axis=1), atol=1e-12)
    assert np.all(pred["sfh_cum_sigma"] > 0) and np.all(pred["zh_sigma"] > 0)


def test_nan_pixels_and_bands_are_masked_not_propagated(data):
    spectra, photometry, _, _ = data
    spectra, photometry = spectra[:8].copy(), photometry[:8].copy()
    spectra[0, 100:180] = np.nan  # a masked span
    spectra[1, ::3] = np.inf  # scattered bad pixels
    spectra[2] = np.nan  # nothing left of the spectrum: unusable
    photometry[3, 0] = np.nan  # a missing band
    photometry[4] = np.nan  # no photometry at all
    usable = np.arange(8) != 2
    for version in models.VERSIONS:
        pred = models.predict(tiny_model(version), spectra, photometry)
        for key in models.PREDICTION_KEYS:
            assert np.all(np.isfinite(pred[key][usable])), (version, key)
            assert np.all(np.isnan(pred[key][2])), (version, key)  # no plausible numbers for no data
        np.testing.assert_allclose(pred["sfh"][usable].sum(1), 1.0, atol=1e-5)
        assert list(pred["quality"]) == [0, 0, inference.QUALITY_NO_SPECTRUM, 16, 16, 0, 0, 0]


def test_the_network_overfits_a_tiny_set(trained):
    _, before, after = trained
    # Memorising 64 objects: the cumulative-SFH error must fall well below that of the untrained net.
    assert after["sfh_cum_mae"] < before["sfh_cum_mae"] / 3
    assert after["zh_mae"] < before["zh_mae"] / 2
    assert after["loss"] < before["loss"] - 1.0  # NLL: sigma shrinks as the errors do


def test_masking_a_span_changes_predictions_only_moderately(trained, data):
    model = trained[0]
    spectra, photometry, _, _ = data
    masked = spectra.copy()
    masked[:, 200:220] = np.nan  # 5 per cent of the pixels
    ref = models.predict(model, spectra, photometry)
    new = models.predict(model, masked, photometry)
    change = np.abs(new["sfh_cum"] - ref["sfh_cum"]).mean()
    spread = np.abs(ref["sfh_cum"][:, None] - ref["sfh_cum"][None]).mean()  # between different objects
    assert change > 0  # the mask reaches the network
    assert change < 0.25 * spread


def test_check_compatible_rejects_other_grids():
    model = tiny_model("v1")
    models.check_compatible(model, WAVE_AA + 5e-4, AGE_BINS_YR * (1 + 1e-7), FILTERS)  # within tolerance
    with pytest.raises(ValueError, match="wavelength grid mismatch.*400 pixels, got 399"):
        models.check_compatible(model, WAVE_AA[:-1], AGE_BINS_YR)
    with pytest.raises(ValueError, match="wavelength grid mismatch"):
        models.check_compatible(model, WAVE_AA + 0.01, AGE_BINS_YR)
    with pytest.raises(ValueError, match="age bins mismatch"):
        models.check_compatible(model, WAVE_AA, AGE_BINS_YR * (1 + 1e-5))
    with pytest.raises(ValueError, match="age bins mismatch.*8 bins"):
        models.check_compatible(model, WAVE_AA, AGE_BINS_YR[:-1])
    with pytest.raises(ValueError, match="filters mismatch"):
        models.check_compatible(model, WAVE_AA, AGE_BINS_YR, ["F275W", "F336W", "F435W", "F555W", "F814W"])


def test_predict_rejects_inputs_of_the_wrong_shape(data):
    spectra, photometry, _, _ = data
    model = tiny_model("v1")
    with pytest.raises(ValueError, match=r"expects spectra of shape \(n, 400\), got \(64, 399\)"):
        models.predict(model, spectra[:, :-1], photometry)
    with pytest.raises(ValueError, match=r"photometry of shape \(n, 5\)"):
        models.predict(model, spectra, photometry[:, :4])
    with pytest.raises(ValueError, match="64 spectra but 63 photometry rows"):
        models.predict(model, spectra, photometry[:-1])


def test_build_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="version must be one of"):
        models.build_model("v3", N_WAVE, N_BANDS, N_BINS)
    with pytest.raises(ValueError, match="wave_aa has 399 values but n_wave = 400"):
        models.build_model("v1", N_WAVE, N_BANDS, N_BINS, wave_aa=WAVE_AA[:-1])
    with pytest.raises(ValueError, match="age_bins_yr needs n_bins"):
        models.build_model("v1", N_WAVE, N_BANDS, N_BINS, age_bins_yr=AGE_BINS_YR[:-1])
    with pytest.raises(ValueError, match="unknown hyper-parameters for v1: \\['n_heads'\\]"):
        models.build_model("v1", N_WAVE, N_BANDS, N_BINS, n_heads=4)
    with pytest.raises(ValueError, match="zh_range"):
        models.build_model("v1", N_WAVE, N_BANDS, N_BINS, zh_range=(0.2, -1.0))


def _sfh_output(fractions, log_sigma):
    return np.stack([fractions, np.full_like(fractions, log_sigma)], axis=-1).astype(np.float32)


def test_sfh_loss_is_the_gaussian_nll_of_the_cumulative_curve():
    true = np.array([[0.5, 0.5, 0.0, 0.0]], np.float32)
    pred = np.array([[0.3, 0.5, 0.2, 0.0]], np.float32)  # cumulative error 0.2, 0.2, 0, 0
    loss = models.SFHLoss(point_weight=0.0, reduction=None)
    # NLL per bin: 0.5 (err / sigma)^2 + log sigma; for one sigma it is smallest where
    # sigma^2 = mean(err^2) = 0.02, i.e. log sigma = 0.5 log 0.02.
    log_sigmas = np.linspace(-4.0, 0.0, 81)
    values = [float(loss(true, _sfh_output(pred, s))[0]) for s in log_sigmas]
    assert log_sigmas[np.argmin(values)] == pytest.approx(0.5 * np.log(0.02), abs=0.05)
    expected = np.mean(0.5 * np.array([0.2, 0.2, 0.0, 0.0]) ** 2 / np.exp(-2.0) ** 2 - 2.0)
    assert float(loss(true, _sfh_output(pred, -2.0))[0]) == pytest.approx(expected, rel=1e-5)
    with_point = models.SFHLoss(point_weight=1.0, reduction=None)
    assert float(with_point(true, _sfh_output(pred, -2.0))[0]) == pytest.approx(expected + 0.1, rel=1e-5)


def test_zh_loss_down_weights_bins_without_mass():
    zh_true = np.zeros((1, 4), np.float32)
    mass = np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)
    y_true = np.stack([zh_true, mass], axis=-1)
    loss = models.ZHLoss(mass_floor=0.25, point_weight=0.0, reduction=None)
    err_in_massive_bin = np.stack([[[0.5, 0.0, 0.0, 0.0]], np.zeros((1, 4))], axis=-1).astype(np.float32)
    err_in_empty_bin = np.stack([[[0.0, 0.5, 0.0, 0.0]], np.zeros((1, 4))], axis=-1).astype(np.float32)
    base = float(loss(y_true, np.stack([np.zeros((1, 4)), np.zeros((1, 4))], -1).astype(np.float32))[0])
    massive = float(loss(y_true, err_in_massive_bin)[0]) - base
    empty = float(loss(y_true, err_in_empty_bin)[0]) - base
    # weights: 0.25 + 0.75 * 4 * mass -> 3.25 for the massive bin, 0.25 for an empty one
    assert massive / empty == pytest.approx(3.25 / 0.25, rel=1e-4)


def test_an_ensemble_adds_the_spread_of_its_members(data):
    spectra, photometry, _, _ = data
    a, b = tiny_model("v2", seed=1), tiny_model("v2", seed=2)
    single = models.predict(a, spectra, photometry)
    same = models.predict([a, a], spectra, photometry)
    for key in single:
        np.testing.assert_allclose(same[key], single[key], rtol=1e-6)
    pa, pb = single, models.predict(b, spectra, photometry)
    both = models.predict([a, b], spectra, photometry)
    np.testing.assert_allclose(both["sfh"], 0.5 * (pa["sfh"] + pb["sfh"]), rtol=1e-6)
    expected = np.sqrt(0.5 * (pa["zh_sigma"] ** 2 + pb["zh_sigma"] ** 2) + 0.25 * (pa["zh"] - pb["zh"]) ** 2)
    np.testing.assert_allclose(both["zh_sigma"], expected, rtol=1e-6)


def test_predict_checks_the_wavelength_grid_and_the_band_order(data):
    spectra, photometry, _, _ = data
    model = tiny_model("v1")
    ref = models.predict(model, spectra[:4], photometry[:4])
    same = models.predict(model, spectra[:4], photometry[:4], wave_aa=WAVE_AA, filters=FILTERS)
    np.testing.assert_array_equal(same["sfh"], ref["sfh"])
    with pytest.raises(ValueError, match="wavelength grid mismatch: pixel 0 is 4759.8900 A"):
        models.predict(model, spectra[:4], photometry[:4], wave_aa=WAVE_AA + 10.0)  # same pixel count
    with pytest.raises(ValueError, match="filters mismatch"):
        models.predict(model, spectra[:4], photometry[:4], filters=FILTERS[::-1])


def test_a_keras_file_that_is_not_an_sfh_ml_network_is_refused(tmp_path):
    # damaged files (truncated, random bytes) are rows of tests/test_bad_inputs.py
    path = tmp_path / "m.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]).save(path)
    with pytest.raises(models.ModelFileError, match=r"m\.keras holds no sfh_ml network"):
        models.load_model(path)
    with pytest.raises(FileNotFoundError, match="no such model file: .*other.keras"):
        models.load_model(tmp_path / "other.keras")


def test_load_model_works_in_a_fresh_process_without_registering_anything(tmp_path):
    # import sfh_ml alone (lazy network names): the custom layers must come with load_model
    path = tmp_path / "m.keras"
    tiny_model("v2").save(path)
    code = (
        f"import sfh_ml; m = sfh_ml.load_model({str(path)!r}); "
        "print(sfh_ml.network.get_metadata(m)['version'])"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "v2"
