import hashlib

import h5py
import numpy as np
import pytest

from sfh_ml.cli import main
from sfh_ml.synthesis import DatasetConfig, dataset, generate, generate_chunk, read_dataset, schema
from sfh_ml.synthesis.instrument import muse_wave

MUSE_WAVE = muse_wave()


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small_config():
    return DatasetConfig(n=300, seed=7, chunk_size=128, snr=(10.0, 100.0))


def test_same_seed_gives_the_same_file_byte_for_byte(tmp_path, small_config):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    generate(small_config, a, progress=False)
    generate(small_config, b, progress=False)
    assert digest(a) == digest(b)
    c = tmp_path / "c.h5"
    generate(DatasetConfig(**{**small_config.__dict__, "seed": 8}), c, progress=False)
    assert digest(a) != digest(c)


def test_schema_and_physical_constraints(tmp_path, small_config):
    path = generate(small_config, tmp_path / "s.h5", progress=False)
    d = read_dataset(path)
    n, n_bins = small_config.n, small_config.age_bins_yr.size - 1  # 3 young bins + 16 from 10 Myr
    assert d["spectra"].shape == (n, 3681) and d["photometry"].shape == (n, 5)
    assert (
        d["age_bins_yr"].shape == (n_bins + 1,)
        and d["sfh"].shape == (n, n_bins)
        and d["zh"].shape == (n, n_bins)
    )
    assert d["attrs"]["schema_version"] == schema.SCHEMA_VERSION and d["attrs"]["sfh_ml_version"] == "0.1.0"
    np.testing.assert_allclose(d["sfh"].sum(axis=1), 1.0, atol=1e-5)
    assert d["sfh"].min() >= 0
    assert d["zh"].min() >= d["attrs"]["zh_min"] - 1e-6 and d["zh"].max() <= d["attrs"]["zh_max"] + 1e-6
    np.testing.assert_allclose(d["sfh_ssp"].sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(d["spectra"])) and np.all(d["spectra_noiseless"] > 0)
    assert set(d["family"]) == {"skewnormal", "densebasis"}
    assert np.all((d["snr"] >= 10) & (d["snr"] <= 100))
    # the mass-weighted age of the binned truth agrees with the one on the SSP grid
    centres = np.sqrt(d["age_bins_yr"][1:] * d["age_bins_yr"][:-1])
    mw = d["sfh"] @ np.log10(centres)
    assert np.median(np.abs(mw - d["mw_log_age"])) < 0.1
    # dense-basis objects carry tx, skew-normal ones a peak age, the others NaN
    db = d["family"] == "densebasis"
    assert np.all(np.isfinite(d["sfh_params/tx1"][db])) and np.all(np.isnan(d["sfh_params/tx1"][~db]))
    assert np.all(np.isfinite(d["sfh_params/peak_age_yr"][~db]))
    assert not (tmp_path / "s.h5.partial").exists()


def test_interrupted_run_resumes_to_the_same_file(tmp_path, small_config, monkeypatch):
    ref = generate(small_config, tmp_path / "ref.h5", progress=False)
    target = tmp_path / "int.h5"
    real = dataset.generate_chunk

    def failing(config, index, synthesizer=None):
        if index == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real(config, index, synthesizer)

    monkeypatch.setattr(dataset, "generate_chunk", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(small_config, target, progress=False)
    assert not target.exists() and not (tmp_path / "int.h5.lock").exists()
    partial = tmp_path / "int.h5.partial"
    assert sorted(p.name for p in partial.glob("chunk_*.npz")) == ["chunk_000000.npz", "chunk_000001.npz"]
    computed = []

    def recording(config, index, synthesizer=None):
        computed.append(index)
        return real(config, index, synthesizer)

    monkeypatch.setattr(dataset, "generate_chunk", recording)
    generate(small_config, target, progress=False)
    assert computed == [2]  # only the missing chunk is synthesised again
    assert digest(target) == digest(ref)
    assert not partial.exists()


def test_parallel_workers_give_the_same_file(tmp_path):
    config = DatasetConfig(n=200, seed=3, chunk_size=64)
    one = generate(config, tmp_path / "one.h5", progress=False)
    two = generate(config, tmp_path / "two.h5", progress=False, workers=2)
    assert digest(one) == digest(two)


def test_chunks_are_independent_of_each_other(small_config):
    synth = small_config.synthesizer()
    a = generate_chunk(small_config, 1, synth)
    b = generate_chunk(small_config, 1, synth)
    np.testing.assert_array_equal(a["spectra"], b["spectra"])
    c = generate_chunk(small_config, 0, synth)
    assert not np.allclose(a["spectra"][:10], c["spectra"][:10])


def test_existing_file_with_another_config_is_not_overwritten(tmp_path, small_config):
    path = generate(small_config, tmp_path / "x.h5", progress=False)
    before = digest(path)
    other = DatasetConfig(**{**small_config.__dict__, "n": 100})
    with pytest.raises(FileExistsError, match=r"exists and was made with another config \(n: 300 there, 100"):
        generate(other, path, progress=False)
    assert digest(path) == before
    generate(other, path, progress=False, overwrite=True)
    assert read_dataset(path, keys=["snr"])["snr"].size == 100


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(n=0), "n must be a positive integer"),
        (dict(n=10, snr=(0.0, 10.0)), "S/N must be > 0"),
        (dict(n=10, family="exponential"), "unknown SFH family"),
        (dict(n=10, log_u=(-5.0, -1.0)), "outside the Cloudy grid"),
        (dict(n=10, tau_bc=(-1.0, 1.0)), "optical depths must be >= 0"),
        (dict(n=10, n_bins=0), "n_bins"),
        (dict(n=10, young_bins_yr=(3e6, 1e6)), "young_edges_yr must be increasing"),
        (dict(n=10, young_bins_yr=(1e6, 2e7)), "below min_age_yr"),
        (dict(n=10, snr=(50.0, 10.0)), "increasing"),
        (dict(n=10, snr_phot="hst"), 'snr_phot must be "phangs" or a'),
        (dict(n=10, filters=("HST_WFC3_F275W", "GALEX_NUV")), "no PHANGS S/N median for band"),
        (dict(n=10, snr_phot=(0.0, 5.0)), "S/N must be > 0"),
        (dict(n=10, sky_frac=(0.5, 1.5)), r"sky_frac must lie in \[0, 1\]"),
    ],
)
def test_bad_config_raises_with_its_message(kw, message):
    with pytest.raises(ValueError, match=message):
        DatasetConfig(**kw)


def test_config_young_bins_round_trip_through_json():
    for young in ((1e6, 3e6, 6e6), (2e6,), ()):
        config = DatasetConfig(n=10, young_bins_yr=young)
        back = DatasetConfig.from_json(config.to_json())
        assert back == config and back.young_bins_yr == tuple(young)
        np.testing.assert_array_equal(back.age_bins_yr, config.age_bins_yr)
        assert config.age_bins_yr.size == len(young) + 17


def test_unwritable_path_fails_at_once(tmp_path):
    with pytest.raises(OSError, match="does not exist"):
        generate(DatasetConfig(n=10), tmp_path / "missing" / "x.h5", progress=False)


def test_cli_generate_and_bad_input(tmp_path, capsys):
    out = tmp_path / "cli.h5"
    assert main(["generate", "--n", "50", "--seed", "1", "--snr", "20:80", "--out", str(out), "--quiet"]) == 0
    d = read_dataset(out, keys=["snr"])
    assert d["snr"].size == 50 and d["snr"].min() >= 20 and d["snr"].max() <= 80
    assert main(["generate", "--n", "-5", "--out", str(out)]) == 2
    assert "n must be a positive integer" in capsys.readouterr().err
    assert main(["info", str(out)]) == 0
    assert "50 objects" in capsys.readouterr().out


def test_records_the_schema_datasets_in_writer_order(small_config, tmp_path):
    """generate_chunk, the writer and the schema table agree: same names, shapes and types."""
    rec = generate_chunk(small_config, 2, small_config.synthesizer())
    per_object = [name for name, f in schema.expand(small_config.n_tx) if f.per_object]
    assert sorted(rec) == sorted(per_object)
    path = generate(DatasetConfig(n=40, seed=1, chunk_size=16), tmp_path / "w.h5", progress=False)
    with h5py.File(path, "r") as f:
        names = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        assert sorted(names) == sorted(name for name, _ in schema.expand(3))
        assert set(f.attrs) == {name for name, _ in schema.ATTRIBUTES}
        for name, spec in schema.expand(3):
            dims = dict(n=40, n_wave=3681, n_band=5, n_bins=19, n_ssp=f["ssp_age_yr"].size, n_chunks=3)
            dims["n_zh"] = f["zh_grid"].size
            assert f[name].shape == spec.resolve(dims), name
            assert f[name].dtype.kind == np.dtype(spec.dtype).kind, name


def test_docstring_lists_the_schema_table():
    for f in schema.DATASETS:
        assert f"    {f.name} " in dataset.__doc__ and f"    {f.name} " in schema.__doc__
    for name, _ in schema.ATTRIBUTES:
        assert f"    {name} " in dataset.__doc__


def test_read_subset_by_index_slices_only_per_object_datasets(tmp_path):
    path = generate(DatasetConfig(n=40, seed=1, chunk_size=16), tmp_path / "r.h5", progress=False)
    full = read_dataset(path, keys=["snr", "wave_aa", "family", "sfh_params/tx1"])
    part = read_dataset(path, keys=["snr", "wave_aa", "family", "sfh_params/tx1"], index=slice(5, 9))
    np.testing.assert_array_equal(part["snr"], full["snr"][5:9])
    np.testing.assert_array_equal(part["sfh_params/tx1"], full["sfh_params/tx1"][5:9])
    assert part["wave_aa"].shape == (3681,) and list(part["family"]) == list(full["family"][5:9])
    with pytest.raises(KeyError, match="r.h5 has no dataset 'nope'"):
        read_dataset(path, keys=["nope"])


def test_a_stop_during_a_chunk_write_lands_after_the_write():
    import os
    import signal
    import time

    from sfh_ml.synthesis.pool import signals_held, sigterm_as_interrupt

    written = []
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the "file" is being written
            time.sleep(0.05)  # an unheld signal would interrupt the write here
            written.append("the whole chunk")
        for _ in range(200):  # the held stop is delivered once the write is over
            time.sleep(0.01)
    assert written == ["the whole chunk"]


# ----------------------------------------------------------------------------------------- realism
@pytest.fixture(scope="module")
def default_chunk():
    """1024 objects of the default config (PHANGS photometric S/N, sky noise, 150-350 km/s)."""
    config = DatasetConfig(n=1024, seed=11, snr=(10.0, 100.0))
    return generate_chunk(config, 0, config.synthesizer())


def test_stored_noise_is_the_scatter_of_the_spectra_and_fluxes(default_chunk):
    d = default_chunk
    pull = (d["spectra"] - d["spectra_noiseless"]) / d["noise"]
    assert np.mean(pull.astype(np.float64) ** 2) == pytest.approx(1.0, abs=0.01)  # 3.8e6 pixels
    chi2_obj = np.mean(pull.astype(np.float64) ** 2, axis=1)
    assert np.percentile(chi2_obj, 1) > 0.9 and np.percentile(chi2_obj, 99) < 1.1  # each object too
    pull_phot = (d["photometry"] - d["photometry_noiseless"]) / d["photometry_err"]
    np.testing.assert_allclose(np.mean(pull_phot.astype(np.float64) ** 2, axis=0), 1.0, atol=0.15)
    np.testing.assert_allclose(d["photometry_noiseless"] / d["photometry_err"], d["snr_phot"], rtol=1e-4)
    # the noise follows the sky: sky-dominated objects are noisier at [O I] 5577 than at 5500 A
    w = np.asarray(MUSE_WAVE)
    line = np.argmin(np.abs(w[None, :] - (5577.34 / (1 + d["sky_z"]))[:, None]), axis=1)  # [O I] pixel
    rel = d["noise"][np.arange(1024), line] / d["noise"][:, np.argmin(np.abs(w - 5500.0))]
    sky = d["sky_frac"] > 0.5
    assert np.median(rel[sky]) > 3 * np.median(rel[d["sky_frac"] < 0.05])


def test_hst_snr_has_the_phangs_spread_with_f275w_the_noisiest(default_chunk):
    snr = default_chunk["snr_phot"]
    assert snr.shape == (1024, 5) and snr.min() >= 1.0
    median = np.median(snr, axis=0)
    assert np.argmin(median) == 0  # F275W
    np.testing.assert_allclose(median, [5, 10, 20, 30, 30], rtol=0.15)
    log_snr = np.log10(snr)
    assert np.corrcoef(log_snr[:, 0], log_snr[:, 3])[0, 1] > 0.6  # bright objects are bright in all bands
    assert 0.25 < np.std(log_snr[:, 3]) < 0.45  # a spread of about 0.34 dex


def test_uniform_photometric_snr_is_kept_as_an_option():
    config = DatasetConfig(n=64, seed=2, snr_phot=(20.0, 20.0), sigma_kms=(150.0, 150.0), sky_frac=(0.0, 0.0))
    rec = generate_chunk(config, 0, config.synthesizer())
    np.testing.assert_array_equal(rec["snr_phot"], 20.0)
    assert np.all(rec["sky_frac"] == 0.0) and DatasetConfig.from_json(config.to_json()) == config


def test_metallicity_prior_is_centred_on_star_forming_discs_and_covers_the_grid(default_chunk):
    mw_zh = default_chunk["mw_zh"]
    zh_final = default_chunk["sfh_params/zh_final"]
    assert -0.35 < np.median(mw_zh) < -0.05  # the old prior: -0.64
    assert np.mean((zh_final > -0.3) & (zh_final < 0.25)) > 0.75  # most gas near solar
    assert np.percentile(mw_zh, 5) < -0.8 and mw_zh.min() < -1.4  # the metal-poor grid stays covered
    assert mw_zh.max() > 0.1


def test_file_holds_the_light_table_and_the_dust_truths(tmp_path):
    from sfh_ml.synthesis.ssp import load_library
    from sfh_ml.synthesis.synthesizer import bin_light

    config = DatasetConfig(n=40, seed=1, chunk_size=16)
    d = read_dataset(generate(config, tmp_path / "t.h5", progress=False))
    lib = load_library()
    np.testing.assert_array_equal(d["zh_grid"], lib.zh)
    np.testing.assert_allclose(d["bin_light"], bin_light(lib, config.age_bins_yr), rtol=1e-12)
    assert d["bin_light"].shape == (config.age_bins_yr.size - 1, lib.zh.size)
    # birth clouds only ever dim the young: the light after dust is never younger
    assert np.all(d["lw_log_age_dust"] >= d["lw_log_age"] - 1e-9)
    assert np.all(np.isfinite(d["mw_log_age_exact"])) and np.all(d["mw_log_age_exact"] < 10.16)
    part = read_dataset(tmp_path / "t.h5", keys=["snr_phot", "bin_light"], index=slice(2, 5))
    assert part["snr_phot"].shape == (3, 5) and part["bin_light"].shape == d["bin_light"].shape


def test_a_set_made_before_a_config_field_existed_counts_as_made_with_its_default(tmp_path):
    """A stored config without a field added since (here ``library``) describes the set made with the
    field's default: generate() keeps it, and still refuses a config that really differs."""
    import json

    path = tmp_path / "old.h5"
    config = DatasetConfig(n=8, chunk_size=8, seed=3)
    generate(config, path, progress=False)
    with h5py.File(path, "r+") as f:
        stored = json.loads(f.attrs["config"])
        del stored["library"]
        f.attrs["config"] = json.dumps(stored, sort_keys=True)
    before = path.stat().st_mtime_ns
    assert generate(config, path, progress=False) == path
    assert path.stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="library: 'emiles' there, 'bc03' asked"):
        generate(DatasetConfig(n=8, chunk_size=8, seed=3, library="bc03"), path, progress=False)
