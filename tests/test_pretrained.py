"""The shipped network (sfh_ml.network.pretrained): manifest, digest checks, loading, CLI default.

A tiny two-member ensemble and a single tiny network are written into a temporary folder that
stands in for ``sfh_ml/pretrained/`` (``PRETRAINED_DIR`` monkeypatched); no test reads the real
shipped model.
"""

import hashlib
import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import build_tiny  # noqa: E402

from sfh_ml import network  # noqa: E402
from sfh_ml.cli import main  # noqa: E402
from sfh_ml.network import pretrained  # noqa: E402
from sfh_ml.network.pretrained import PretrainedError  # noqa: E402

N_WAVE, N_BINS = 200, 5
WAVE_AA = 4750.0 + 25.0 * np.arange(N_WAVE)
AGE_BINS_YR = np.logspace(6.0, np.log10(1.41e10), N_BINS + 1)
FILTERS = ["HST_WFC3_F275W", "HST_WFC3_F336W", "HST_WFC3_F438W", "HST_WFC3_F555W", "HST_WFC3_F814W"]
PIVOTS_AA = (2717.0, 3362.0, 4320.0, 5311.0, 8307.0)
MEMBERS = ["tiny_m0.keras", "tiny_m1.keras"]
CARD = "# Model card: tiny\n\nA tiny ensemble for the tests.\n\n## What the model is\n\nTiny.\n"


def objects(n, seed=0):
    """Positive sloped spectra (n, N_WAVE) and photometry (n, 5) on the same slope, float32."""
    rng = np.random.default_rng(seed)
    slope, scale = rng.uniform(-1.0, 1.0, (n, 1)), 10.0 ** rng.uniform(-2, 2, (n, 1))
    level = lambda w: scale * (1.0 + 0.3 * slope * (np.asarray(w) - 7000.0) / 2500.0)
    spectra = level(WAVE_AA) * (1.0 + 0.02 * rng.standard_normal((n, N_WAVE)))
    return spectra.astype(np.float32), level(PIVOTS_AA).astype(np.float32)


def tiny_network(seed):
    return build_tiny(
        "v2", N_WAVE, 5, N_BINS, seed=seed, adapt=objects(64, seed=seed + 10),
        wave_aa=WAVE_AA, age_bins_yr=AGE_BINS_YR, filters=FILTERS,
    )  # fmt: skip


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A release folder: a two-member ensemble 'tiny' (default), a single network 'solo', card, manifest."""
    folder = tmp_path_factory.mktemp("release")
    for seed, name in enumerate(MEMBERS):
        tiny_network(seed).save(folder / name)
    tiny_network(7).save(folder / "solo.keras")
    (folder / pretrained.CARD_NAME).write_text(CARD)
    (folder / pretrained.RESULTS_NAME).write_text(json.dumps({"name": "tiny"}))
    pretrained.write_manifest(folder, "tiny", MEMBERS)
    return folder


@pytest.fixture
def shipped(release, tmp_path, monkeypatch):
    """A copy of the release standing in for sfh_ml/pretrained/ (each test may damage its own)."""
    folder = tmp_path / "pretrained"
    shutil.copytree(release, folder)
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", folder)
    return folder


def predictions(model, n=6):
    spectra, photometry = objects(n, seed=99)
    return network.predict(model, spectra, photometry, wave_aa=WAVE_AA, filters=FILTERS)


def flip_byte(path):
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


def test_the_manifest_lists_every_file_with_its_digest_and_size_and_the_models(release):
    manifest = json.loads((release / pretrained.MANIFEST_NAME).read_text())
    assert manifest["default"] == "tiny"
    assert manifest["models"] == {"tiny": {"members": MEMBERS}, "solo": {"members": ["solo.keras"]}}
    files = ["MODEL_CARD.md", "results.json", "solo.keras", *MEMBERS]
    assert sorted(manifest["files"]) == sorted(files)
    for name in files:
        blob = (release / name).read_bytes()
        assert manifest["files"][name] == {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
    assert manifest["card"] == "MODEL_CARD.md" and manifest["results"] == "results.json"


def test_a_single_network_is_the_file_named_after_the_model(release, tmp_path):
    shutil.copy(release / "solo.keras", tmp_path / "solo.keras")
    manifest = pretrained.write_manifest(tmp_path, "solo")
    assert manifest["models"] == {"solo": {"members": ["solo.keras"]}}
    assert manifest["card"] is None and sorted(manifest["files"]) == ["solo.keras"]


def test_write_manifest_refuses_a_member_that_is_not_there(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.keras"):
        pretrained.write_manifest(tmp_path, "tiny", ["absent.keras"])
    assert not (tmp_path / pretrained.MANIFEST_NAME).exists()


def test_load_pretrained_gives_the_ensemble_members_as_saved(shipped):
    models = network.load_pretrained()
    assert isinstance(models, list) and len(models) == 2
    expected = predictions([network.load_model(shipped / m) for m in MEMBERS])
    got = predictions(models)
    for key in ("sfh", "sfh_cum_sigma", "zh", "zh_sigma"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)
    # the two members differ, so the ensemble is not one network repeated
    one, two = (predictions(m)["sfh"] for m in models)
    assert np.abs(one - two).max() > 1e-4


def test_fast_gives_the_first_member_and_a_name_gives_another_model(shipped):
    fast = network.load_pretrained(members="fast")
    assert isinstance(fast, keras.Model)
    np.testing.assert_allclose(
        predictions(fast)["sfh"], predictions(network.load_model(shipped / MEMBERS[0]))["sfh"], rtol=1e-5
    )
    solo = network.load_pretrained("solo")
    np.testing.assert_allclose(
        predictions(solo)["sfh"], predictions(network.load_model(shipped / "solo.keras"))["sfh"], rtol=1e-5
    )
    with pytest.raises(ValueError, match="'huge'.*solo.*tiny"):
        network.load_pretrained("huge")
    with pytest.raises(ValueError, match="members"):
        network.load_pretrained(members="some")


def test_a_flipped_byte_is_refused_naming_the_file_and_the_remedy(shipped):
    flip_byte(shipped / MEMBERS[1])
    with pytest.raises(
        PretrainedError, match=r"tiny_m1\.keras does not match its manifest.*reinstall sfh_ml"
    ):
        network.load_pretrained()
    # only the files that are loaded are checked: the first member alone still loads
    assert isinstance(network.load_pretrained(members="fast"), keras.Model)


def test_a_missing_member_is_refused_naming_the_file_and_the_remedy(shipped):
    (shipped / MEMBERS[0]).unlink()
    with pytest.raises(PretrainedError, match=r"tiny_m0\.keras is missing.*reinstall sfh_ml"):
        network.load_pretrained(members="fast")


def test_a_damaged_manifest_and_a_missing_one_are_refused(shipped, tmp_path, monkeypatch):
    (shipped / pretrained.MANIFEST_NAME).write_text('{"default": ')
    with pytest.raises(PretrainedError, match="manifest .* is damaged.*reinstall sfh_ml"):
        network.load_pretrained()
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path / "empty")
    with pytest.raises(PretrainedError, match="no pretrained model ships.*--model PATH"):
        network.load_pretrained()


def test_info_and_card_come_from_the_manifest_and_the_card_is_checked(shipped):
    info = network.pretrained_info()
    assert info["name"] == "tiny" and info["default"] and info["members"] == MEMBERS
    assert info["models"] == ["solo", "tiny"]
    assert info["card"] == shipped / "MODEL_CARD.md" and info["results"] == shipped / "results.json"
    assert info["files"][MEMBERS[0]]["path"] == shipped / MEMBERS[0]
    assert network.pretrained_card() == CARD
    (shipped / "MODEL_CARD.md").write_text(CARD.replace("tiny", "huge"))
    with pytest.raises(PretrainedError, match="MODEL_CARD.md does not match"):
        network.pretrained_card()


def test_a_later_release_keeps_the_comparisons_against_the_network_they_were_trained_beside(shipped):
    import importlib
    import sys

    sys.path.insert(0, str(Path(pretrained.__file__).parents[2] / "benchmarks"))
    release_model = importlib.import_module("release_model")
    rows = [{"label": "S/N 50", "snr": [50.0, 50.0], "bin": {"mw_log_age": {"nmad": 0.12}}}]
    old = {"name": "tiny", "training": {"n_train": 1000}, "metrics": rows, "ablation": None}
    # comparisons made for the shipped network itself: it is their reference
    assert network.comparisons_reference({"networks": {}}, old)["name"] == "tiny"
    assert network.comparisons_reference({"networks": {}}, old)["metrics"] == rows
    # installed comparisons naming their reference are carried into a new release, which then
    # lists them in its manifest; the reference stays the old network, not the new one
    reference = {"name": "tiny", "n_train": 1000, "metrics": rows, "ablation": None}
    (shipped / pretrained.COMPARISONS_NAME).write_text(json.dumps({"networks": {}, "reference": reference}))
    pretrained.write_manifest(shipped, "tiny", MEMBERS)
    new_release = shipped.parent / "new_release"
    new_release.mkdir()
    tiny_network(3).save(new_release / "later.keras")
    release_model.carry_comparisons(new_release)
    manifest = pretrained.write_manifest(new_release, "later", ["later.keras"])
    assert manifest["comparisons"] == pretrained.COMPARISONS_NAME
    carried = json.loads((new_release / pretrained.COMPARISONS_NAME).read_text())
    later = {**old, "name": "later", "metrics": [{**rows[0], "bin": {"mw_log_age": {"nmad": 0.08}}}]}
    assert network.comparisons_reference(carried, later)["name"] == "tiny"
    assert network.comparisons_reference(carried, later)["metrics"][0]["bin"]["mw_log_age"]["nmad"] == 0.12
    # comparisons without a reference would be read as the new network's own: not carried
    (new_release / pretrained.COMPARISONS_NAME).unlink()
    (shipped / pretrained.COMPARISONS_NAME).write_text(json.dumps({"networks": {}}))
    pretrained.write_manifest(shipped, "tiny", MEMBERS)
    release_model.carry_comparisons(new_release)
    assert not (new_release / pretrained.COMPARISONS_NAME).exists()


def write_input(path, n=5):
    import h5py

    spectra, photometry = objects(n, seed=5)
    with h5py.File(path, "w") as f:
        f["spectra"], f["photometry"], f["wave_aa"] = spectra, photometry, WAVE_AA
        f["filters"] = np.array(FILTERS, dtype="S")
    return spectra, photometry


def test_cli_predict_without_model_uses_the_pretrained_ensemble(shipped, tmp_path, capsys):
    import h5py

    spectra, photometry = write_input(tmp_path / "in.h5")
    assert main(["predict", "--data", str(tmp_path / "in.h5"), "--out", str(tmp_path / "p.h5")]) == 0
    assert "pretrained model 'tiny'" in capsys.readouterr().out
    expected = network.predict(network.load_pretrained(), spectra, photometry)
    with h5py.File(tmp_path / "p.h5") as f:
        np.testing.assert_allclose(f["sfh"][:], expected["sfh"], rtol=1e-4)
        np.testing.assert_allclose(f["zh_sigma"][:], expected["zh_sigma"], rtol=1e-4)
        assert f.attrs["model_path"] == "; ".join(str(shipped / m) for m in MEMBERS)


def test_cli_predict_help_names_the_default_model(shipped, capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "pretrained model 'tiny'" in " ".join(capsys.readouterr().out.split())


def test_cli_predict_without_model_and_without_a_shipped_one_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path / "empty")
    write_input(tmp_path / "in.h5")
    assert main(["predict", "--data", str(tmp_path / "in.h5"), "--out", str(tmp_path / "p.h5")]) == 2
    assert "--model PATH" in capsys.readouterr().err
    assert not (tmp_path / "p.h5").exists()


def test_cli_predict_with_a_damaged_member_exits_2_naming_it(shipped, tmp_path, capsys):
    flip_byte(shipped / MEMBERS[0])
    write_input(tmp_path / "in.h5")
    assert main(["predict", "--data", str(tmp_path / "in.h5"), "--out", str(tmp_path / "p.h5")]) == 2
    assert "tiny_m0.keras does not match" in capsys.readouterr().err


def test_cli_apply_without_model_gets_the_first_member(shipped, tmp_path, monkeypatch):
    from sfh_ml.observations import apply

    given = {}

    def fake_apply_cube(model, cube, out, **kwargs):
        given["model"] = model
        summary = {"photometry_source": "none", "bins_quality": {}}
        return types.SimpleNamespace(
            out_dir=out, n_bins=1, n_usable_bins=1, n_clusters=0, seconds=0.0, summary=summary
        )

    monkeypatch.setattr(apply, "apply_cube", fake_apply_cube)
    argv = ["apply", "--cube", "cube.fits", "--redshift", "0.001", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    assert given["model"] == str(shipped / MEMBERS[0])


def test_cli_info_pretrained_lists_the_files_checks_them_and_quotes_the_card(shipped, capsys):
    assert main(["info", "--pretrained"]) == 0
    out = capsys.readouterr().out
    assert "tiny (default): 2 member(s): tiny_m0.keras, tiny_m1.keras" in out
    assert "every file matches its digest" in out
    assert "A tiny ensemble for the tests." in out and "## What the model is" not in out
    flip_byte(shipped / "solo.keras")
    assert main(["info", "--pretrained"]) == 0
    assert "PROBLEM: the pretrained model file" in capsys.readouterr().out
