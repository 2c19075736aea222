"""Tests of training, evaluation, batch prediction and the CLI (sfh_ml.training), and of sfh_ml.metrics.

The toy HDF5 files follow the ``sfh-ml generate`` schema with short spectra (400 pixels) and 8 age
bins; the networks are tiny, so that each training run takes a few seconds on 2 cores.
"""

import json

import h5py
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import TINY_V2, build_tiny  # noqa: E402

from sfh_ml import network as models  # noqa: E402
from sfh_ml.cli import build_parser  # noqa: E402
from sfh_ml.network import inference, metrics, training  # noqa: E402
from sfh_ml.synthesis.dataset import SCHEMA_VERSION  # noqa: E402

N_WAVE, N_BANDS, N_BINS = 400, 5, 8
AGE_BINS_YR = np.logspace(np.log10(6.3e6), np.log10(1.41e10), N_BINS + 1)
FILTERS = [b"F275W", b"F336W", b"F438W", b"F555W", b"F814W"]
ZH_RANGE = (-1.71, 0.22)
# A light table (the set's bin_light, zh_grid): light per unit mass falling with age, rising with [M/H]
ZH_GRID = np.array([-1.71, -0.7, 0.22])
BIN_LIGHT = np.outer(np.logspace(1.5, -1.5, N_BINS), [0.8, 1.0, 1.1])
TINY = TINY_V2
RUN = {"version": "v2", "batch_size": 16, "val_fraction": 0.25, "patience": 100, "verbose": 0, **TINY}


def write_toy_file(path, n, seed=0):
    """A small training set with the generator's schema; spectra are sums of per-bin templates."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-1.0, 1.0, N_WAVE)
    log_age = np.linspace(0.0, 1.0, N_BINS)[:, None]
    centre = np.linspace(-0.85, 0.75, N_BINS)[:, None]
    lines = np.exp(-0.5 * ((x - centre) / 0.03) ** 2)  # (N_BINS, N_WAVE): one line per bin
    templates = np.exp(-0.3 * (1.0 - 2.0 * log_age) * x) * (1.0 - 0.9 * lines)
    sfh = rng.dirichlet(0.5 * np.ones(N_BINS), n)
    zh = np.clip(rng.uniform(-1.2, 0.0, (n, 1)) + 0.2 * log_age.T, *ZH_RANGE)
    noiseless = (sfh @ templates) * 10.0 ** rng.uniform(-6, 2, (n, 1))
    snr = rng.uniform(5.0, 80.0, n)
    spectra = noiseless * (1.0 + rng.standard_normal(noiseless.shape) / snr[:, None])
    phot = np.stack([noiseless[:, i * 80 : (i + 1) * 80].mean(1) for i in range(N_BANDS)], axis=1)
    with h5py.File(path, "w") as f:
        f["wave_aa"] = 4749.89 + 1.25 * np.arange(N_WAVE)
        f["spectra"], f["spectra_noiseless"] = spectra.astype(np.float32), noiseless.astype(np.float32)
        f["photometry"], f["photometry_noiseless"] = phot.astype(np.float32), phot.astype(np.float32)
        f["filters"] = np.array(FILTERS)
        f["age_bins_yr"] = AGE_BINS_YR
        f["bin_light"], f["zh_grid"] = BIN_LIGHT, ZH_GRID
        f["sfh"], f["zh"] = sfh.astype(np.float32), zh.astype(np.float32)
        f["snr"], f["snr_phot"] = snr, np.repeat(snr[:, None], N_BANDS, axis=1)  # (n,), (n, n_band)
        for key in ("mw_log_age", "lw_log_age", "mw_zh", "lw_zh", "tau_bc", "tau_ism", "log_u", "sigma_kms"):
            f[key] = rng.normal(size=n)
        f["family"] = np.array([b"dense_basis", b"skew_normal"])[rng.integers(0, 2, n)]
        f.attrs["zh_min"], f.attrs["zh_max"] = ZH_RANGE
        f.attrs["schema_version"] = SCHEMA_VERSION
    return path


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory):
    return write_toy_file(tmp_path_factory.mktemp("data") / "train.h5", 64)


def weights_of(model):
    return [np.asarray(w) for w in model.get_weights()]


# ----------------------------------------------------------------------------------------- data
def test_load_data_reads_the_schema_and_a_subset(toy_file):
    data = models.load_data(toy_file, n_max=20)
    assert data["spectra"].shape == (20, N_WAVE) and data["spectra"].dtype == np.float32
    assert data["photometry"].shape == (20, N_BANDS) and data["sfh"].shape == data["zh"].shape == (20, N_BINS)
    assert data["filters"] == [f.decode() for f in FILTERS] and data["zh_range"] == ZH_RANGE
    np.testing.assert_allclose(data["sfh"].sum(1), 1.0, atol=1e-5)
    with h5py.File(toy_file) as f:
        np.testing.assert_array_equal(data["spectra"], f["spectra"][:20])
    noiseless = models.load_data(toy_file, n_max=20, noiseless=True)
    assert not np.array_equal(noiseless["spectra"], data["spectra"])


def test_load_data_names_what_is_missing(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["spectra"] = np.ones((3, 10), np.float32)
    with pytest.raises(ValueError, match=r"bad\.h5 lacks a dataset.*required: \['wave_aa'"):
        models.load_data(path)
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        models.load_data(tmp_path / "nothing.h5")


def test_split_is_deterministic_disjoint_and_complete():
    train_a, val_a = training.split_indices(100, 0.2, seed=3)
    train_b, val_b = training.split_indices(100, 0.2, seed=3)
    np.testing.assert_array_equal(train_a, train_b)
    assert len(val_a) == 20 and not set(train_a) & set(val_a)
    assert sorted(set(train_a) | set(val_a)) == list(range(100))
    assert not np.array_equal(val_a, training.split_indices(100, 0.2, seed=4)[1])
    with pytest.raises(ValueError, match="val_fraction"):
        training.split_indices(100, 1.0, seed=0)


def test_augmentation_masks_spans_and_bands():
    rng = np.random.default_rng(0)
    spectra, phot = np.ones((2000, N_WAVE), np.float32), np.ones((2000, N_BANDS), np.float32)
    no_z = dict(p_edge=0.0, p_sky=0.0)  # spans and bands only
    training.augment_batch(spectra, phot, rng, p_span=1.0, max_spans=1, span_px=(10, 50), p_band=0.2, **no_z)
    n_masked = np.isnan(spectra).sum(1)
    # one span per object, 10-50 px long (shorter only where it runs off the red end)
    assert n_masked.min() >= 1 and n_masked.max() <= 50 and np.median(n_masked) == pytest.approx(30, abs=3)
    edges = np.diff(np.isnan(spectra).astype(int), axis=1)
    assert np.all((edges == 1).sum(1) <= 1)  # contiguous
    assert np.isnan(phot).mean() == pytest.approx(0.2, abs=0.01)
    spectra = np.ones((2000, N_WAVE), np.float32)
    training.augment_batch(spectra, phot, rng, p_span=0.3, **no_z)
    assert np.isnan(spectra).any(1).mean() == pytest.approx(0.3, abs=0.03)


def test_augmentation_cuts_the_ends_and_the_sky_windows_of_a_redshifted_observation():
    from sfh_ml.observations.prepare import sky_line_mask
    from sfh_ml.synthesis.instrument import muse_wave

    wave = muse_wave()
    rng = np.random.default_rng(1)
    n = 2000
    only = dict(p_span=0.0, p_band=0.0)
    phot = np.ones((n, N_BANDS), np.float32)
    # ends: each cut with probability p_edge, by a redshift up to 0.03
    spectra = np.ones((n, wave.size), np.float32)
    training.augment_batch(spectra, phot, rng, **only, p_edge=0.4, p_sky=0.0, wave_aa=wave)
    nan = np.isnan(spectra)
    blue, red = nan[:, 0], nan[:, -1]
    assert blue.mean() == pytest.approx(0.4, abs=0.04) and red.mean() == pytest.approx(0.4, abs=0.04)
    assert (blue & red).mean() == pytest.approx(0.16, abs=0.03)  # independent ends
    n_blue = np.argmin(nan, axis=1)[blue]  # contiguous from the first pixel
    n_red = np.argmin(nan[:, ::-1], axis=1)[red]
    assert nan.sum(1)[blue & ~red].tolist() == n_blue[~red[blue]].tolist()
    assert n_blue.max() * 1.25 == pytest.approx(wave[0] * 0.03, abs=3)  # up to 142 A at the blue end
    assert n_red.max() * 1.25 == pytest.approx(wave[-1] * 0.03 / 1.03, abs=3)  # 272 A at the red end
    assert np.mean(n_red) == pytest.approx(n_red.max() / 2, rel=0.1)  # z uniform in 0-0.03
    assert not np.isnan(phot).any()
    # sky windows at the observed wavelengths: at z = 0 exactly sky_line_mask
    spectra = np.ones((n, wave.size), np.float32)
    training.augment_batch(spectra, phot, rng, **only, p_edge=0.0, p_sky=1.0, max_z=0.0, wave_aa=wave)
    np.testing.assert_array_equal(np.isnan(spectra), np.broadcast_to(sky_line_mask(wave), spectra.shape))
    # with probability p_sky, moved to lambda / (1 + z) in the rest frame
    spectra = np.ones((n, wave.size), np.float32)
    training.augment_batch(spectra, phot, rng, **only, p_edge=0.0, p_sky=0.3)
    masked = np.isnan(spectra).any(1)
    assert masked.mean() == pytest.approx(0.3, abs=0.03)
    green = np.isnan(spectra[masked][:, (wave > 5400) & (wave < 5600)])  # the [O I] 5577 window
    assert green.sum(1).min() >= 8 and green.sum(1).max() <= 9  # 11 A wide: 8-9 pixels
    first = wave[(wave > 5400) & (wave < 5600)][np.argmax(green, axis=1)]
    assert first.min() >= 5572.0 / 1.03 - 1.25 and first.max() <= 5572.0 + 1.25
    assert np.std(first) > 30  # spread over the redshifts


def test_batches_depend_only_on_seed_epoch_and_index(toy_file):
    data = models.load_data(toy_file)
    idx = np.arange(50)
    a = training.HistoryDataset(data, idx, batch_size=16, seed=1, augment={})
    b = training.HistoryDataset(data, idx, batch_size=16, seed=1, augment={})
    assert len(a) == 4
    b[2], b.set_epoch(5), b.set_epoch(0)  # other calls in between change nothing
    x_a, y_a = a[1]
    x_b, y_b = b[1]
    np.testing.assert_array_equal(x_a["spectrum"], x_b["spectrum"])  # NaN in the same places too
    np.testing.assert_array_equal(y_a["zh"], y_b["zh"])
    assert y_a["zh"].shape == (16, N_BINS, 2)
    a.set_epoch(1)
    assert not np.array_equal(a[1][1]["sfh"], y_a["sfh"])  # a new order each epoch
    plain = training.HistoryDataset(data, idx, batch_size=16, shuffle=True, seed=1)
    seen = np.concatenate([plain[i][1]["sfh"] for i in range(len(plain))])
    np.testing.assert_array_equal(np.sort(seen, axis=0), np.sort(data["sfh"][idx], axis=0))  # each once


# ----------------------------------------------------------------------------------------- training
class _Interrupt(keras.callbacks.Callback):
    def __init__(self, after_epoch):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.after_epoch:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def runs(toy_file, tmp_path_factory):
    """Two uninterrupted 4-epoch runs with the same seed, and one interrupted after 2 epochs then resumed."""
    out = tmp_path_factory.mktemp("runs")
    a = training.train(toy_file, out_path=out / "a.keras", epochs=4, **RUN)
    b = training.train(toy_file, out_path=out / "b.keras", epochs=4, **RUN)
    with pytest.raises(KeyboardInterrupt):
        training.train(toy_file, out_path=out / "c.keras", epochs=4, callbacks=[_Interrupt(1)], **RUN)
    state_after_interrupt = json.loads((out / "c.keras.ckpt.json").read_text())
    c = training.train(toy_file, out_path=out / "c.keras", epochs=4, **RUN)
    return out, a, b, c, state_after_interrupt


def test_same_seed_gives_identical_weights(runs):
    _, a, b, _, _ = runs
    for wa, wb in zip(weights_of(a.model), weights_of(b.model)):
        np.testing.assert_array_equal(wa, wb)
    assert [row["loss"] for row in a.history] == [row["loss"] for row in b.history]


def test_training_writes_model_checkpoint_and_histories(runs):
    out, a, _, _, _ = runs
    assert a.initial_epoch == 0 and len(a.history) == 4 and a.stopped is None
    for name in ("a.keras", "a.keras.ckpt.keras", "a.keras.ckpt.json", "a_history.csv", "a_history.json"):
        assert (out / name).exists(), name
    assert not list(out.glob("*.tmp*"))  # atomic writes leave nothing behind
    rows = (out / "a_history.csv").read_text().strip().splitlines()
    assert len(rows) == 5 and rows[0].startswith("epoch,") and "val_loss" in rows[0]
    # the point errors under their own names, not Keras' output-prefixed ones (sfh_sfh_cum_mae)
    columns = rows[0].split(",")
    for name in ("sfh_cum_mae", "zh_mae", "val_sfh_cum_mae", "val_zh_mae", "val_point_error"):
        assert name in columns, name
    assert not [c for c in columns if "sfh_sfh" in c or "zh_zh" in c]
    # the cosine schedule decays the learning rate every epoch
    lrs = [row["learning_rate"] for row in a.history]
    assert lrs[0] == pytest.approx(1e-3) and all(np.diff(lrs) < 0)
    # the final model holds the best epoch's weights and its metadata
    loaded = keras.models.load_model(out / "a.keras")
    meta = models.get_metadata(loaded)
    assert meta["version"] == "v2" and meta["n_bins"] == N_BINS and meta["filters"][0] == "F275W"
    val_losses = [row["val_point_error"] for row in a.history]
    assert a.best_epoch == int(np.argmin(val_losses))


def test_a_trained_model_carries_the_light_table_of_its_training_set(runs):
    _, a, _, _, _ = runs
    meta = models.get_metadata(a.model)
    np.testing.assert_allclose(meta["bin_light"], BIN_LIGHT, rtol=1e-12)
    np.testing.assert_allclose(meta["zh_grid"], ZH_GRID, rtol=1e-12)
    assert meta["sigma_scale_sfh_cum"] is None and meta["sigma_scale_zh"] is None  # not calibrated


def test_a_set_without_a_light_table_trains_a_model_without_one_and_says_so(tmp_path):
    path = write_toy_file(tmp_path / "old.h5", 24)
    with h5py.File(path, "r+") as f:
        del f["bin_light"], f["zh_grid"]
    assert models.load_data(path)["bin_light"] is None
    with pytest.warns(UserWarning, match="no light table"):
        result = training.train(path, out_path=tmp_path / "old.keras", epochs=1, **RUN)
    assert models.get_metadata(result.model)["bin_light"] is None
    evaluated = models.evaluate(result.model, path)
    assert evaluated["light_table"] is None and "lw_log_age" not in evaluated["mean_quantities"]
    assert any("light-weighted quantities skipped" in note for note in evaluated["notes"])
    with h5py.File(path, "r+") as f:
        f["bin_light"] = np.where(np.arange(N_BINS)[:, None] == 3, 0.0, BIN_LIGHT)  # a bin without light
        f["zh_grid"] = ZH_GRID
    with pytest.raises(ValueError, match=r"old\.h5: datasets 'bin_light' / 'zh_grid'.*> 0"):
        models.load_data(path)


def test_training_adapts_the_input_standardisation(runs):
    _, a, _, _, _ = runs
    norm = a.model.get_layer("normalisation")
    assert np.all(np.asarray(norm.spec_std) != 1.0) and np.any(np.asarray(norm.spec_mean) != 0.0)


def test_an_interrupted_run_resumes_from_its_checkpoint(runs):
    out, a, _, c, state = runs
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert c.initial_epoch == 2 and [row["epoch"] for row in c.history] == [0, 1, 2, 3]
    assert len((out / "c_history.csv").read_text().strip().splitlines()) == 5
    # Data order and augmentation depend only on (seed, epoch), the optimizer state is in the
    # checkpoint: the resumed run ends where the uninterrupted one does.
    for wa, wc in zip(weights_of(a.model), weights_of(c.model)):
        np.testing.assert_array_equal(wc, wa)


def test_a_finished_run_is_not_trained_again(runs, toy_file):
    out, a, _, _, _ = runs
    again = training.train(toy_file, out_path=out / "a.keras", epochs=4, **RUN)
    assert again.initial_epoch == 4 and len(again.history) == 4
    for wa, wb in zip(weights_of(a.model), weights_of(again.model)):
        np.testing.assert_array_equal(wa, wb)


def test_training_on_other_grids_is_refused(runs, tmp_path):
    out, _, _, _, _ = runs
    other = tmp_path / "other.h5"
    write_toy_file(other, 16)
    with h5py.File(other, "r+") as f:
        f["wave_aa"][...] = f["wave_aa"][:] + 0.5
    with pytest.raises(ValueError, match="wavelength grid mismatch"):
        models.evaluate(out / "a.keras", other)
    expected = r"made by another run: data: .*train.h5 \(64 objects.*other.h5 \(16 .*--no-resume"
    with pytest.raises(ValueError, match=expected):
        training.train(other, out_path=out / "a.keras", epochs=4, **RUN)  # resuming a's checkpoint


def test_the_plateau_schedule_halves_the_rate_after_epochs_without_improvement():
    cb = training._Checkpointer(None, {"lr": 1e-3}, None, "val_point_error", 5, plateau_lr=1e-3)
    rates = []
    for improved in (True, False, False, True, False, False, False, False) + (False,) * 12:
        cb._plateau(improved)
        rates.append(cb.state["lr"])
    assert rates[:4] == [1e-3, 1e-3, 5e-4, 5e-4]  # two epochs without improvement: halved
    assert rates[5] == 2.5e-4 and rates[7] == 1.25e-4  # and again two epochs later
    assert min(rates) == pytest.approx(1e-5)  # never below 1 % of the initial rate


def test_a_plateau_run_records_its_rates_resumes_them_and_refuses_a_cosine_resume(toy_file, tmp_path):
    opts = {**RUN, "patience": 3, "learning_rate": 3e-2, "schedule": "plateau"}  # a rate that stalls
    a = training.train(toy_file, out_path=tmp_path / "a.keras", epochs=8, **opts)
    lrs = [row["learning_rate"] for row in a.history]
    assert lrs[0] == pytest.approx(3e-2) and all(np.diff(lrs) <= 0)  # constant, then halved
    assert a.stopped is None or "no improvement" in a.stopped
    with pytest.raises(KeyboardInterrupt):
        training.train(toy_file, out_path=tmp_path / "c.keras", epochs=8, callbacks=[_Interrupt(2)], **opts)
    c = training.train(toy_file, out_path=tmp_path / "c.keras", epochs=8, **opts)
    assert [row["learning_rate"] for row in c.history] == lrs and c.best_epoch == a.best_epoch
    with pytest.raises(ValueError, match="schedule"):
        training.train(toy_file, out_path=tmp_path / "c.keras", epochs=8, **{**opts, "schedule": "cosine"})
    with pytest.raises(ValueError, match="schedule"):
        training.train(toy_file, out_path=tmp_path / "d.keras", epochs=8, **{**opts, "schedule": "step"})


# ----------------------------------------------------------------------------------------- evaluation
def test_evaluate_gives_zero_error_for_a_perfect_predictor(runs, toy_file, monkeypatch):
    out, _, _, _, _ = runs
    data = models.load_data(toy_file)

    def perfect(model, spectra, photometry, batch_size=1024, **kwargs):
        assert np.array_equal(spectra, data["spectra"])  # rows in the file's order
        sfh, zh = data["sfh"].astype(np.float64), data["zh"].astype(np.float64)
        cum, sigma = np.cumsum(sfh, axis=1), np.full_like(sfh, 0.01)
        return {"sfh": sfh, "sfh_cum": cum, "sfh_cum_sigma": sigma, "zh": zh, "zh_sigma": sigma}

    monkeypatch.setattr(inference, "predict", perfect)
    result = models.evaluate(out / "a.keras", toy_file)
    json.dumps(result, allow_nan=False)  # plain JSON
    assert result["model"] == "v2" and result["n_objects"] == 64
    assert result["light_table"] == "model" and not result["sigma_calibrated"]
    for name in ("mw_log_age", "lw_log_age", "mw_zh", "lw_zh"):
        stats = result["mean_quantities"][name]
        assert stats["bias"] == pytest.approx(0, abs=1e-6) and stats["nmad"] == pytest.approx(0, abs=1e-6)
    # the exact level compares with the file's own per-object truths (random numbers in the toy file)
    with h5py.File(toy_file) as f:
        lw_true = f["lw_log_age"][:]
    lw_pred = metrics.mean_quantities(data["sfh"], data["zh"], AGE_BINS_YR, BIN_LIGHT, ZH_GRID)["lw_log_age"]
    assert result["exact"]["mean_quantities"]["lw_log_age"]["bias"] == pytest.approx(
        np.mean(lw_pred - lw_true)
    )
    assert result["exact"]["truth"]["mw_log_age"] == "mw_log_age"  # the toy file has no mw_log_age_exact
    assert any("no mw_log_age_exact" in note for note in result["notes"])
    assert np.allclose(result["sfh_bins"]["mae"], 0, atol=1e-7)
    assert len(result["sfh_bins"]["cum_mae"]) == N_BINS
    assert np.allclose(result["zh_bins"]["bias"], 0, atol=1e-7)
    assert result["coverage"]["sfh_cum"]["1sigma"]["all"] == 1.0
    assert sum(group["n"] for group in result["by_snr"]["mw_log_age"]) == 64
    assert sum(group["n"] for group in result["by_dominant_age"]["mw_zh"]) == 64


@pytest.fixture(scope="module")
def well_trained(toy_file, tmp_path_factory):
    """A tiny v2 trained long enough to learn the toy set (160 steps at a higher rate, ~5 s)."""
    out = tmp_path_factory.mktemp("well") / "w.keras"
    run = {**RUN, "batch_size": 8, "learning_rate": 5e-3, "augment": False}
    return training.train(toy_file, out_path=out, epochs=20, **run).model


def test_evaluate_a_trained_model_beats_an_untrained_one(well_trained, toy_file):
    trained = models.evaluate(well_trained, toy_file)
    # The same architecture, untrained, with its input standardisation fitted to the same data.
    data = models.load_data(toy_file)
    untrained = build_tiny(
        "v2", N_WAVE, N_BANDS, N_BINS, seed=1, adapt=(data["spectra"], data["photometry"]),
        zh_range=ZH_RANGE, wave_aa=data["wave_aa"], age_bins_yr=AGE_BINS_YR, filters=data["filters"],
    )  # fmt: skip
    fresh = models.evaluate(untrained, toy_file)
    assert trained["n_objects"] == fresh["n_objects"] == 64 and trained["n_unusable"] == 0
    # measured: cumulative-SFH MAE 0.059 trained, 0.13 untrained; mean-age MAE 0.06-0.09 dex against 0.34
    cum_mae = lambda r: np.mean(r["sfh_bins"]["cum_mae"])
    assert cum_mae(trained) < 0.6 * cum_mae(fresh)
    age_mae = lambda r: r["mean_quantities"]["mw_log_age"]["mae"]
    assert age_mae(trained) < 0.4 * age_mae(fresh) and age_mae(trained) < 0.15
    coverage = trained["coverage"]["zh"]
    assert 0 <= coverage["1sigma"]["all"] <= coverage["2sigma"]["all"] <= 1


def test_predict_file_writes_predictions_and_identifiers(runs, toy_file, tmp_path):
    out, a, _, _, _ = runs
    pred_path = tmp_path / "pred.h5"
    models.predict_file(out / "a.keras", toy_file, pred_path, chunk=24)  # several chunks
    data = models.load_data(toy_file)
    expected = models.predict(a.model, data["spectra"], data["photometry"])
    with h5py.File(pred_path) as f, h5py.File(toy_file) as src:
        for key in ("sfh", "sfh_cum", "sfh_cum_sigma", "zh", "zh_sigma"):
            np.testing.assert_allclose(f[key][:], expected[key], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(f["index"][:], np.arange(64))
        np.testing.assert_array_equal(f["quality"][:], 0)  # clean toy spectra: every object good
        np.testing.assert_array_equal(f["snr"][:], src["snr"][:])
        np.testing.assert_array_equal(f["family"][:], src["family"][:])
        np.testing.assert_allclose(f["age_bins_yr"][:], AGE_BINS_YR)
        mw_log_age = metrics.mean_log_age(expected["sfh"], AGE_BINS_YR)
        np.testing.assert_allclose(f["mw_log_age_pred"][:], mw_log_age, rtol=1e-6)
        assert f.attrs["model_version"] == "v2"
    assert not list(tmp_path.glob("*.tmp"))


def test_cli_train_evaluate_and_predict(toy_file, tmp_path, capsys):
    parser = build_parser()
    model_path, metrics_path, pred_path = tmp_path / "m.keras", tmp_path / "m.json", tmp_path / "p.h5"
    for argv in (
        [
            "train",
            "--data",
            str(toy_file),
            "--arch",
            "v1",
            "--out",
            str(model_path),
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--n-max",
            "48",
            "--no-augment",
        ],
        ["evaluate", "--model", str(model_path), "--data", str(toy_file), "--json", str(metrics_path)],
        ["predict", "--model", str(model_path), "--data", str(toy_file), "--out", str(pred_path)],
    ):
        args = parser.parse_args(argv)
        assert args.func(args) == 0
    assert models.get_metadata(keras.models.load_model(model_path))["version"] == "v1"
    assert json.loads(metrics_path.read_text())["n_objects"] == 64
    with h5py.File(pred_path) as f:
        assert f["sfh"].shape == (64, N_BINS)
    assert "mw_log_age" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------- metrics
def test_mean_age_of_a_single_bin_is_its_centre_and_shifts_by_one_bin():
    sfh = np.eye(N_BINS)[[2, 5]]
    centres = np.sqrt(AGE_BINS_YR[:-1] * AGE_BINS_YR[1:])
    np.testing.assert_allclose(metrics.mean_log_age(sfh, AGE_BINS_YR), np.log10(centres[[2, 5]]))
    # all the mass one bin too old: the mean age is too old by exactly the bin width in dex
    older = np.eye(N_BINS)[[3, 6]]
    pred, true = metrics.mean_log_age(older, AGE_BINS_YR), metrics.mean_log_age(sfh, AGE_BINS_YR)
    stats = metrics.scatter_stats(pred, true)
    assert stats["bias"] == pytest.approx(np.log10(AGE_BINS_YR[1] / AGE_BINS_YR[0]))
    assert stats["nmad"] == pytest.approx(0, abs=1e-12)
    # a first edge at 0 is taken as the library's youngest age, 1 Myr
    edges = AGE_BINS_YR.copy()
    edges[0] = 0.0
    assert metrics.bin_centres_yr(edges)[0] == pytest.approx(np.sqrt(1e6 * AGE_BINS_YR[1]))


def test_coverage_of_calibrated_gaussian_errors():
    rng = np.random.default_rng(2)
    sigma = rng.uniform(0.05, 0.5, (5000, N_BINS))
    true = rng.normal(0.0, 1.0, sigma.shape)
    pred = true + sigma * rng.standard_normal(sigma.shape)
    cov = metrics.coverage(pred, sigma, true)
    assert cov["1sigma"]["all"] == pytest.approx(0.6827, abs=0.01)
    assert cov["2sigma"]["all"] == pytest.approx(0.9545, abs=0.005)
    half = metrics.coverage(pred, 0.5 * sigma, true)  # overconfident by 2: 1 sigma covers 38 %
    assert half["1sigma"]["all"] == pytest.approx(0.3829, abs=0.01)


def test_scatter_statistics_of_gaussian_errors():
    rng = np.random.default_rng(3)
    true = rng.normal(size=20000)
    stats = metrics.scatter_stats(true + 0.1 + 0.2 * rng.standard_normal(20000), true)
    assert stats["bias"] == pytest.approx(0.1, abs=0.005)
    assert stats["nmad"] == pytest.approx(0.2, rel=0.03) and stats["std"] == pytest.approx(0.2, rel=0.02)
    assert metrics.scatter_stats([], [])["bias"] is None


def test_mass_weighted_zh_errors_ignore_bins_without_mass():
    zh_true = np.zeros((10, 3))
    zh_pred = np.array([[0.1, 5.0, 0.1]] * 10)  # a wild value where no stars formed
    mass = np.array([[0.5, 0.0, 0.5]] * 10)
    weighted = metrics.zh_bin_errors(zh_pred, zh_true, weights=mass)
    np.testing.assert_allclose(weighted["bias"][[0, 2]], 0.1)
    assert np.isnan(weighted["bias"][1])
    assert metrics.mean_zh(mass, zh_pred)[0] == pytest.approx(0.1)


def test_the_book_s_progress_bar_counts_every_batch_and_shows_the_validation_errors(
    toy_file, tmp_path, capsys
):
    # what the chapters show instead of Keras's per-epoch lines: one bar over the whole run
    result = training.train(toy_file, out_path=tmp_path / "m.keras", epochs=2, **{**RUN, "verbose": "tqdm"})
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    n = len(models.load_data(toy_file)["sfh"])
    train_idx, _ = training.split_indices(n, RUN["val_fraction"], 42)  # train()'s default seed
    steps = -(-len(train_idx) // RUN["batch_size"])  # batches per epoch, the last one partial
    assert f"{2 * steps}/{2 * steps}" in last, last
    assert "epoch=2" in last and "val cum-SFH MAE=" in last and "val [M/H] MAE=" in last
    assert len(result.history) == 2
