"""Bad inputs and fault scenarios, one table: each case must end in a clear refusal or a flag.

Every row is ``(id, scenario, expectation)``: ``scenario(tmp_path)`` does what a user (or an
adversary) would do; ``expectation`` is either an exception type plus a regular expression its
message must match (the message names the file or the parameter and says what to do), or a check
function run on what the scenario returned (a per-object quality flag, an exit status, a file left
untouched). Add a case by adding a row to the table of its wing; nothing else changes.

Sections: synthesis and model data (``SYNTHESIS_CASES``), network and inference
(``NETWORK_CASES``), pPXF fits (``FITTING_CASES``), applying a network to a cube (``APPLY_CASES``),
files and processes (``FILE_CASES``), real observation files (``OBSERVATION_CASES``).
"""

import re

import pytest
from conftest import TINY_V2

# ----------------------------------------------------------------------------------------- helpers


def raises(exc, pattern):
    """Expectation: ``scenario`` raises ``exc`` whose message matches ``pattern`` (re.search)."""
    return ("raises", exc, pattern)


def check(fn):
    """Expectation: ``fn(result, tmp_path)`` passes (it asserts) on what ``scenario`` returned."""
    return ("check", fn)


# ----------------------------------------------------------------------------------------- synthesis
# Helpers of the synthesis and synthetic-set rows (SYNTHESIS_CASES, and the generate/read rows of
# FILE_CASES). Sub-process runs use a real `python -m sfh_ml.cli generate` killed by real signals.
_SYN_GEN = ["--seed", "5", "--chunk-size", "16", "--quiet"]


def _synthesis():
    """The synthesis wing (imported when a case runs, not when the cases are collected)."""
    import sfh_ml.synthesis

    return sfh_ml.synthesis


def _syn_wave_nm():
    import numpy as np

    return np.arange(475.0, 935.0, 0.125)  # the MUSE grid in nm


def _syn_flux(n=2):
    import numpy as np

    from sfh_ml.synthesis.instrument import muse_wave

    w = muse_wave()
    return w, np.ones((n, w.size)) * (w / 5500.0) ** -1


def _syn_library_with_nan(tmp_path):
    import shutil

    import h5py

    from sfh_ml.synthesis.ssp import library_path, load_library

    path = tmp_path / "ssp_library_v1.h5"
    shutil.copy(library_path(), path)
    with h5py.File(path, "r+") as f:
        f["flux"][3, 2, 100] = float("nan")
    return load_library(path, build=False)


def _syn_truncated_cache(tmp_path):
    """A cache (in tmp_path) with E-MILES extracted from the real, verified download; one file truncated."""
    import os

    from sfh_ml import data

    real = data.cache_dir()
    os.environ["SFH_ML_CACHE"] = str(tmp_path)
    (tmp_path / "downloads").mkdir()
    art = data.ARTEFACTS["emiles"]
    (tmp_path / "downloads" / art.filename).symlink_to(real / "downloads" / art.filename)
    out = data.fetch("emiles", progress=False)
    victim = sorted(out.glob("*.fits"))[7]
    victim.write_bytes(victim.read_bytes()[:5000])
    return victim


def _syn_in_tmp_cache(fn):
    """Run ``fn(tmp_path)`` with SFH_ML_CACHE pointing at tmp_path (restored afterwards)."""
    import os

    def scenario(tmp_path):
        before = os.environ.get("SFH_ML_CACHE")
        try:
            return fn(tmp_path)
        finally:
            if before is None:
                os.environ.pop("SFH_ML_CACHE", None)
            else:
                os.environ["SFH_ML_CACHE"] = before

    return scenario


def _syn_truncated_fetch(tmp_path):
    from sfh_ml.data import fetch

    _syn_truncated_cache(tmp_path)
    fetch("emiles", progress=False)


def _syn_truncated_cli(tmp_path):
    import contextlib
    import io

    from sfh_ml.cli import main

    victim = _syn_truncated_cache(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(["data"])
    return status, err.getvalue(), victim


def _syn_check_truncated_cli(result, tmp_path):
    status, err, victim = result
    assert status == 2 and "Traceback" not in err
    assert err.startswith("sfh-ml data: error: the model-data file") and victim.name in err
    assert "sfh-ml data --force" in err


def _syn_force_repairs(tmp_path):
    from sfh_ml.data import fetch

    victim = _syn_truncated_cache(tmp_path)
    fetch("emiles", progress=False, force=True)
    return victim, fetch("emiles", progress=False)  # checks every file's size again


def _syn_check_repaired(result, tmp_path):
    from astropy.io import fits

    victim, folder = result
    assert victim.stat().st_size > 40_000 and folder == victim.parent
    with fits.open(victim) as hdul:
        assert hdul[0].data.size > 10_000


def _syn_generate_cmd(out, n, *extra):
    import sys

    return [
        sys.executable,
        "-m",
        "sfh_ml.cli",
        "generate",
        "--n",
        str(n),
        "--out",
        str(out),
        *_SYN_GEN,
        *extra,
    ]


def _syn_start(out, n, *extra, env=None):
    import os
    import subprocess

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen(
        _syn_generate_cmd(out, n, *extra), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _syn_wait_chunks(proc, out, k, timeout=180.0):
    """Wait until ``k`` chunks of ``out`` are saved; returns their file names."""
    import time

    partial = out.with_name(out.name + ".partial")
    t0 = time.time()
    while len(done := sorted(p.name for p in partial.glob("chunk_*.npz"))) < k:
        if proc.poll() is not None:
            raise AssertionError(f"generate ended before {k} chunks: {proc.communicate()}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"no {k} chunks after {timeout} s")
        time.sleep(0.02)
    return done


def _syn_resume_after(sig):
    """Start a generate run, stop it with signal ``sig`` after 3 chunks, run the same call again."""

    def scenario(tmp_path):
        from unittest import mock

        from sfh_ml.synthesis import dataset

        out = tmp_path / "set.h5"
        proc = _syn_start(out, 512)
        _syn_wait_chunks(proc, out, 3)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        kept = {int(p.stem.split("_")[1]) for p in (tmp_path / "set.h5.partial").glob("chunk_*.npz")}
        computed = []
        real = dataset.generate_chunk

        def recording(config, index, synthesizer=None):
            computed.append(index)
            return real(config, index, synthesizer)

        config = dataset.DatasetConfig(n=512, seed=5, chunk_size=16)
        with mock.patch.object(dataset, "generate_chunk", recording):
            dataset.generate(config, out, progress=False)
        return proc.returncode, err, kept, computed, out

    return scenario


def _syn_check_resumed(result, tmp_path):
    import hashlib

    from sfh_ml.synthesis import DatasetConfig, generate

    status, err, kept, computed, out = result
    assert len(kept) >= 3 and kept.isdisjoint(computed)  # the saved chunks are not synthesised again
    assert sorted(kept | set(computed)) == list(range(32))
    assert not (tmp_path / "set.h5.lock").exists() and not (tmp_path / "set.h5.partial").exists()
    ref = generate(DatasetConfig(n=512, seed=5, chunk_size=16), tmp_path / "ref.h5", progress=False)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(ref.read_bytes()).digest()
    return status, err


def _syn_check_resumed_after_sigterm(result, tmp_path):
    status, err = _syn_check_resumed(result, tmp_path)
    assert status == 130 and "run the same command to resume" in err


def _syn_children(pid):
    """Pids of the processes whose parent is ``pid`` (Linux /proc)."""
    from pathlib import Path

    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _syn_kill_parent_of_workers(tmp_path):
    import os
    import signal
    import time

    out = tmp_path / "w.h5"
    proc = _syn_start(out, 4096, "--workers", "2")
    _syn_wait_chunks(proc, out, 2)
    children = _syn_children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t0 = time.time()
    alive = children
    while alive and time.time() - t0 < 15:
        time.sleep(0.2)
        alive = [c for c in children if os.path.exists(f"/proc/{c}") and "Z" not in _syn_state(c)]
    return children, alive


def _syn_assert(condition):
    assert condition


def _syn_state(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _syn_check_workers_gone(result, tmp_path):
    children, alive = result
    assert len(children) >= 2, children  # two workers (and multiprocessing's resource tracker)
    assert alive == [], f"worker processes {alive} outlived their parent"


def _syn_second_run_while_first_runs(tmp_path):
    import time

    out = tmp_path / "busy.h5"
    first = _syn_start(out, 4096)
    try:
        _syn_wait_chunks(first, out, 1)
        t0 = time.time()
        second = _syn_start(out, 4096, env={"HDF5_USE_FILE_LOCKING": "FALSE"})
        _, err = second.communicate(timeout=120)
        return second.returncode, err, time.time() - t0, first.poll()
    finally:
        first.kill()
        first.wait()


def _syn_check_second_refused(result, tmp_path):
    status, err, elapsed, first_status = result
    assert status == 2 and "being written by another sfh-ml generate (pid" in err and "busy.h5.lock" in err
    assert first_status is None  # the first run was still going, untouched
    assert elapsed < 30  # refused before any synthesis set-up (a few seconds of Python start-up)


def _syn_stale_lock(tmp_path):
    import socket

    from sfh_ml.synthesis import DatasetConfig, generate, read_dataset

    out = tmp_path / "s.h5"
    (tmp_path / "s.h5.lock").write_text(f"{socket.gethostname()} 999999999\n")  # no such process
    generate(DatasetConfig(n=20, seed=1, chunk_size=16), out, progress=False)
    return read_dataset(out, keys=["snr"])["snr"].size


def _syn_finished_file(tmp_path, n=40):
    from sfh_ml.synthesis import DatasetConfig, generate

    return generate(DatasetConfig(n=n, seed=5, chunk_size=16), tmp_path / "done.h5", progress=False)


def _syn_replace_finished_without_overwrite(tmp_path):
    import hashlib

    path = _syn_finished_file(tmp_path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    run = _syn_start(path, 50, env={"HDF5_USE_FILE_LOCKING": "FALSE"})
    _, err = run.communicate(timeout=120)
    return run.returncode, err, before == hashlib.sha256(path.read_bytes()).hexdigest()


def _syn_check_kept(result, tmp_path):
    status, err, unchanged = result
    assert status == 2 and unchanged
    assert (
        "done.h5 exists and was made with another config (n: 40 there, 50 asked)" in err
        and "--overwrite" in err
    )


def _syn_not_a_set(tmp_path):
    from sfh_ml.synthesis import DatasetConfig, generate

    path = tmp_path / "notes.h5"
    path.write_text("my notes")
    try:
        generate(DatasetConfig(n=20, seed=1), path, progress=False)
    finally:
        assert path.read_text() == "my notes"


def _syn_disk_too_small(tmp_path):
    from collections import namedtuple
    from unittest import mock

    from sfh_ml.synthesis import DatasetConfig, generate, store

    usage = namedtuple("usage", "total used free")(10**12, 10**12 - 10**8, 10**8)  # 100 MB free
    with mock.patch.object(store.shutil, "disk_usage", return_value=usage):
        generate(DatasetConfig(n=20_000), tmp_path / "big.h5", progress=False)


def _syn_disk_fills_up(tmp_path):
    import errno
    from unittest import mock

    from sfh_ml.synthesis import DatasetConfig, generate, store

    def full(self, index, rec):
        raise OSError(errno.ENOSPC, "No space left on device")

    with mock.patch.object(store.ChunkStore, "save", full):
        generate(DatasetConfig(n=40, seed=1, chunk_size=16), tmp_path / "full.h5", progress=False)


def _syn_other_config_partial(tmp_path):
    from sfh_ml.synthesis import DatasetConfig, generate

    partial = tmp_path / "p.h5.partial"
    partial.mkdir()
    (partial / "config.json").write_text(DatasetConfig(n=99, seed=1).to_json())
    (partial / "chunk_000000.npz").write_bytes(b"work of another run")
    try:
        generate(DatasetConfig(n=20, seed=1), tmp_path / "p.h5", progress=False)
    finally:
        assert (partial / "chunk_000000.npz").exists()


def _syn_edited_file(tmp_path, edit):
    import h5py

    path = _syn_finished_file(tmp_path, n=20)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _syn_read(edit, keys=None):
    def scenario(tmp_path):
        from sfh_ml.synthesis import read_dataset

        read_dataset(_syn_edited_file(tmp_path, edit), keys=keys)

    return scenario


def _syn_set_attr(name, value):
    def edit(f):
        f.attrs[name] = value

    return edit


def _syn_short_wave(f):
    del f["wave_aa"]
    f["wave_aa"] = f["spectra"][0, :-1].astype("f8")


def _syn_cli_generate_huge(tmp_path):
    """sfh-ml generate --n 2**63: refused at once, no lock left behind."""
    import contextlib
    import io
    import time

    from sfh_ml.cli import main

    err = io.StringIO()
    t0 = time.time()
    with contextlib.redirect_stderr(err):
        status = main(["generate", "--n", str(2**63), "--out", str(tmp_path / "huge.h5"), "--quiet"])
    return status, err.getvalue(), time.time() - t0, sorted(p.name for p in tmp_path.iterdir())


def _syn_check_huge_refused(result, tmp_path):
    status, err, elapsed, left = result
    assert status == 2 and "n must be at most 100,000,000, got 9,223,372,036,854,775,808" in err, err
    assert elapsed < 5 and left == []  # before any work: no lock, no chunk folder


SYNTHESIS_CASES = [
    # (id, scenario(tmp_path), expectation)
    (
        "muse-lsf-wave-in-nm",
        lambda tmp_path: _synthesis().muse_lsf_fwhm(_syn_wave_nm()),
        raises(ValueError, r"wave_aa spans 475-934.9, outside 4000-1.05e\+04 Angstrom.*must be in Angstrom"),
    ),
    (
        "attenuation-wave-in-metres",
        lambda tmp_path: _synthesis().attenuation([5.5e-7, 6.5e-7], 0.5),
        raises(
            ValueError,
            r"wave_aa spans 5.5e-07-6.5e-07, outside 100-1e\+08 Angstrom.*not nm, micron or metres",
        ),
    ),
    (
        "attenuation-grid-in-nm",
        lambda tmp_path: _synthesis().attenuation(__import__("numpy").arange(500.0, 900.0, 0.5), 0.5),
        raises(ValueError, r"wave_aa spans 500-899.5, all below 1000 Angstrom: is it in nm\?"),
    ),
    (
        "optical-depth-negative",
        lambda tmp_path: _synthesis().optical_depth([5500.0, 6563.0], [0.3, -0.2]),
        raises(ValueError, r"tau_v \(V-band optical depth\) must be >= 0, got min -0.2"),
    ),
    (
        "charlot-fall-negative-tau-ism",
        lambda tmp_path: _synthesis().charlot_fall([5500.0], [1e6, 1e9], 0.5, -1.0),
        raises(ValueError, r"tau_ism \(V-band optical depth\) must be >= 0"),
    ),
    (
        "total-sigma-negative-dispersion",
        lambda tmp_path: _synthesis().total_sigma_aa(_syn_flux()[0], -50.0),
        raises(ValueError, r"sigma_kms \(velocity dispersion\) must be >= 0 km/s"),
    ),
    (
        "total-sigma-wave-in-nm",
        lambda tmp_path: _synthesis().total_sigma_aa(_syn_wave_nm(), 100.0),
        raises(ValueError, r"outside 4000-1.05e\+04 Angstrom"),
    ),
    (
        "broadening-negative-sigma",
        lambda tmp_path: _synthesis().broadening_matrix(_syn_flux()[0], _syn_flux()[0], -1.0),
        raises(ValueError, r"sigma_aa \(Gaussian sigma\) must be >= 0 Angstrom"),
    ),
    (
        "broadening-wave-in-nm",
        lambda tmp_path: _synthesis().broadening_matrix(_syn_wave_nm(), _syn_wave_nm(), 0.1),
        raises(ValueError, r"wave_in spans 475-934.9, all below 1000 Angstrom: is it in nm\?"),
    ),
    (
        "noise-sigma-snr-zero",
        lambda tmp_path: _synthesis().noise_sigma(_syn_flux()[1], [30.0, 0.0]),
        raises(ValueError, r"snr \(signal-to-noise ratio\) must be > 0, got min 0"),
    ),
    (
        "add-noise-snr-negative",
        lambda tmp_path: _synthesis().add_noise(
            _syn_flux()[1], -5.0, __import__("numpy").random.default_rng(0)
        ),
        raises(ValueError, r"snr \(signal-to-noise ratio\) must be > 0"),
    ),
    (
        "noise-of-negative-spectrum",
        lambda tmp_path: _synthesis().noise_sigma(-_syn_flux()[1], 30.0),
        raises(
            ValueError,
            r"flux must be noise-free spectra with a positive mean in the S/N window \(5300-5700 A\)",
        ),
    ),
    (
        "band-weights-wave-in-nm",
        lambda tmp_path: _synthesis().band_weights(__import__("numpy").arange(168.0, 1101.0, 0.09)),
        raises(ValueError, r"does not cover HST_WFC3_F275W.*wave_aa must be in Angstrom"),
    ),
    (
        "synthesizer-wave-in-nm",
        lambda tmp_path: _synthesis().Synthesizer(wave_aa=_syn_wave_nm()),
        raises(ValueError, r"wave_aa spans 475-934.9, all below 1000 Angstrom"),
    ),
    (
        "ssp-library-with-nan",
        _syn_library_with_nan,
        raises(
            __import__("sfh_ml").DataError,
            r"ssp_library_v1.h5 holds NaN or infinite values \(in flux\).*sfh-ml data --force",
        ),
    ),
    (
        "extracted-fits-truncated",
        _syn_in_tmp_cache(_syn_truncated_fetch),
        raises(
            __import__("sfh_ml").DataError,
            r"model-data file .*raw/emiles/Eun1.30\S+\.fits is damaged \(5000 bytes, expected \d+\): "
            r"run `sfh-ml data --force`",
        ),
    ),
    (
        "cli-data-damaged-cache-no-traceback",
        _syn_in_tmp_cache(_syn_truncated_cli),
        check(_syn_check_truncated_cli),
    ),
    ("data-force-repairs-truncated-file", _syn_in_tmp_cache(_syn_force_repairs), check(_syn_check_repaired)),
    (
        "emiles-resolution-wave-in-nm",
        lambda tmp_path: _synthesis().emiles_fwhm_aa(_syn_wave_nm()),
        raises(ValueError, r"wave_aa spans 475-934.9, all below 1000 Angstrom: is it in nm\?"),
    ),
]

# ----------------------------------------------------------------------------------------- network
# Tiny networks (400 pixels on 4750-9737 A, 6 age bins, the five PHANGS bands) on smooth toy spectra
# whose photometry agrees with them; a few seconds per training on 2 cores.
_NET_FILTERS = ["HST_WFC3_F275W", "HST_WFC3_F336W", "HST_WFC3_F438W", "HST_WFC3_F555W", "HST_WFC3_F814W"]
_NET_PIVOTS_AA = (2717.0, 3362.0, 4320.0, 5311.0, 8307.0)
_NET_N_WAVE, _NET_N_BINS = 400, 6
_NET_TINY = TINY_V2
_NET_RUN = {"version": "v2", "epochs": 1, "batch_size": 16, "val_fraction": 0.25, "verbose": 0, **_NET_TINY}


def _net_grids():
    import numpy as np

    wave_aa = 4750.0 + 12.5 * np.arange(_NET_N_WAVE)
    return wave_aa, np.logspace(np.log10(6.3e6), np.log10(1.41e10), _NET_N_BINS + 1)


def _net_objects(n=8, seed=0):
    """Positive sloped spectra (n, 400), flux scales 1e-3..1e3, and photometry (n, 5) on the same slope."""
    import numpy as np

    rng = np.random.default_rng(seed)
    wave_aa, _ = _net_grids()
    slope, scale = rng.uniform(-1.0, 1.0, (n, 1)), 10.0 ** rng.uniform(-3, 3, (n, 1))
    level = lambda w: scale * (1.0 + 0.3 * slope * (np.asarray(w) - 7000.0) / 2500.0)
    spectra = level(wave_aa) * (1.0 + 0.02 * rng.standard_normal((n, _NET_N_WAVE)))
    return spectra.astype(np.float32), level(_NET_PIVOTS_AA).astype(np.float32)


_NET_CACHE = {}  # the tiny model and its file, built once per session


def _net_model():
    if "model" in _NET_CACHE:
        return _NET_CACHE["model"]
    from conftest import build_tiny

    wave_aa, age_bins_yr = _net_grids()
    model = build_tiny(
        "v2",
        _NET_N_WAVE,
        5,
        _NET_N_BINS,
        seed=0,
        adapt=_net_objects(64, seed=1),
        wave_aa=wave_aa,
        age_bins_yr=age_bins_yr,
        filters=_NET_FILTERS,
    )
    _NET_CACHE["model"] = model
    return model


def _net_model_path():
    if "path" not in _NET_CACHE:
        import tempfile
        from pathlib import Path

        path = Path(tempfile.mkdtemp(prefix="sfh_ml_net_")) / "tiny.keras"
        _net_model().save(path)
        _NET_CACHE["path"] = path
    return _NET_CACHE["path"]


def _net_predict(edit, n=4):
    """Predictions for toy objects after ``edit(spectra, photometry)`` changed them in place."""
    from sfh_ml import network

    spectra, photometry = _net_objects(n)
    edit(spectra, photometry)
    return network.predict(_net_model(), spectra, photometry)


def _net_write(path, n=32, filters=True, edit=None):
    """A labelled file with the training-set schema; ``edit(datasets)`` may change it before writing."""
    import h5py
    import numpy as np

    from sfh_ml.synthesis import SCHEMA_VERSION

    rng = np.random.default_rng(2)
    wave_aa, age_bins_yr = _net_grids()
    spectra, photometry = _net_objects(n, seed=3)
    d = {
        "wave_aa": wave_aa,
        "age_bins_yr": age_bins_yr,
        "spectra": spectra,
        "spectra_noiseless": spectra,
        "photometry": photometry,
        "photometry_noiseless": photometry,
        "sfh": rng.dirichlet(np.ones(_NET_N_BINS), n).astype(np.float32),
        "zh": rng.uniform(-1.5, 0.1, (n, _NET_N_BINS)).astype(np.float32),
        "snr": rng.uniform(5.0, 80.0, n),
    }
    if filters:
        d["filters"] = np.array(_NET_FILTERS, dtype="S")
    if edit is not None:
        edit(d)
    with h5py.File(path, "w") as f:
        for key, value in d.items():
            f[key] = value
        f.attrs["zh_min"], f.attrs["zh_max"] = -1.71, 0.22
        f.attrs["schema_version"] = SCHEMA_VERSION
    return path


def _net_set(key, rows, value):
    """An ``edit`` for :func:`_net_write` that sets ``d[key][rows] = value``."""

    def edit(d):
        d[key][rows] = value

    return edit


def _net_train(tmp_path, data=None, out="m.keras", **options):
    from sfh_ml import network

    data = _net_write(tmp_path / "train.h5") if data is None else data
    return network.train(data, out_path=tmp_path / out, **{**_NET_RUN, **options})


def _net_cli(*argv):
    from sfh_ml.cli import main

    return main([str(a) for a in argv])


def _net_digest(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _net_leftovers(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name)


def _net_expect_same_rows(rows, quality):
    """Check: ``rows`` (copies of one object, edited) predict the same finite values, flags ``quality``."""

    def fn(pred, tmp_path):
        import numpy as np

        for key in ("sfh", "sfh_cum", "sfh_cum_sigma", "zh", "zh_sigma"):
            assert np.all(np.isfinite(pred[key][rows])), key
            for row in rows[1:]:
                np.testing.assert_allclose(pred[key][row], pred[key][rows[0]], rtol=1e-6, err_msg=key)
        assert pred["quality"][rows].tolist() == [quality] * len(rows)

    return check(fn)


def _net_expect_equal(expected):
    """Check: the scenario returned ``expected``."""

    def fn(result, tmp_path):
        assert result == expected

    return check(fn)


def _net_expect_unusable(rows, bit):
    """Check: ``rows`` carry flag ``bit`` and NaN predictions; the other rows are finite."""

    def fn(pred, tmp_path):
        import numpy as np

        bad = np.zeros(len(pred["quality"]), bool)
        bad[rows] = True
        assert np.all(pred["quality"][bad] & bit), pred["quality"]
        assert not np.any(pred["quality"][~bad] & bit), pred["quality"]
        for key in ("sfh", "sfh_cum", "sfh_cum_sigma", "zh", "zh_sigma"):
            assert np.all(np.isnan(pred[key][bad])) and np.all(np.isfinite(pred[key][~bad])), key

    return check(fn)


def _net_duplicate_then(edit):
    """Rows 1.. become copies of row 0, then ``edit`` changes them."""

    def fn(spectra, photometry):
        spectra[1:], photometry[1:] = spectra[0], photometry[0]
        edit(spectra, photometry)

    return fn


def _net_set_rows(spectra=(), photometry=()):
    """An ``edit`` for :func:`_net_predict`: ``(index, value)`` pairs per array (value may be ``f(old)``)."""

    def fn(s, p):
        for array, changes in ((s, spectra), (p, photometry)):
            for index, value in changes:
                array[index] = value(array[index]) if callable(value) else value

    return fn


def _net_grid_mismatch(tmp_path):
    from sfh_ml import network

    spectra, photometry = _net_objects(2)
    wave_aa, _ = _net_grids()
    return network.predict(_net_model(), spectra, photometry, wave_aa=wave_aa + 2.0)


def _net_bands_reordered(tmp_path):
    from sfh_ml import network

    spectra, photometry = _net_objects(2)
    return network.predict(_net_model(), spectra, photometry[:, ::-1], filters=_NET_FILTERS[::-1])


def _net_predict_file(tmp_path, data=None, out="pred.h5", **kw):
    from sfh_ml import network

    data = _net_write(tmp_path / "in.h5") if data is None else data
    return network.predict_file(_net_model_path(), data, tmp_path / out, **kw)


def _net_refused_output(tmp_path, same_as_input):
    """predict_file onto the input itself, or onto an existing output: (error, digest before, after)."""
    data = _net_write(tmp_path / "in.h5")
    out = data if same_as_input else tmp_path / "old.h5"
    if not same_as_input:
        out.write_bytes(b"results of last week")
    before = _net_digest(out)
    try:
        _net_predict_file(tmp_path, data, out=out.name, overwrite=same_as_input)
    except (ValueError, FileExistsError) as err:
        return err, before, _net_digest(out)
    return None, before, _net_digest(out)


def _net_expect_refused_intact(pattern):
    def fn(result, tmp_path):
        err, before, after = result
        assert err is not None and re.search(pattern, str(err)), err
        assert before == after and _net_leftovers(tmp_path) == []

    return check(fn)


def _net_no_usable_file(tmp_path):
    from sfh_ml import network

    data = _net_write(tmp_path / "in.h5", edit=_net_set("spectra", slice(None), float("nan")))
    try:
        _net_predict_file(tmp_path, data)
    except network.NoUsableObjectError as err:
        return str(err)
    return None


def _net_expect_no_usable(result, tmp_path):
    assert result is not None and re.search(
        r"no usable object in .*in\.h5 \(32 objects; flags: no_spectrum 32", result
    )
    assert not (tmp_path / "pred.h5").exists() and _net_leftovers(tmp_path) == []


def _net_fail_midway(tmp_path):
    """predict_file whose second chunk raises: nothing may be left behind."""
    from sfh_ml.network import inference

    calls, real = [], inference.predict

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    inference.predict = failing
    try:
        _net_predict_file(tmp_path, chunk=8)
    except RuntimeError as err:
        return str(err), len(calls)
    finally:
        inference.predict = real
    return None, len(calls)


def _net_expect_nothing_left(result, tmp_path):
    assert result == ("disk on fire", 2)
    assert not (tmp_path / "pred.h5").exists() and _net_leftovers(tmp_path) == []


def _net_damaged_model(tmp_path, how):
    import numpy as np

    from sfh_ml import network

    path = tmp_path / "model.keras"
    blob = _net_model_path().read_bytes()
    path.write_bytes(
        blob[: len(blob) // 3] if how == "truncated" else np.random.default_rng(0).bytes(len(blob))
    )
    return network.load_model(path)


def _net_flagged_file(tmp_path):
    """CLI predict on a file where 3 of 32 objects are unusable: exit 0, flags and NaN in the output."""
    import h5py

    data = _net_write(tmp_path / "in.h5", edit=_net_set("spectra", [0, 5, 9], 0.0))
    status = _net_cli("predict", "--model", _net_model_path(), "--data", data, "--out", tmp_path / "p.h5")
    with h5py.File(tmp_path / "p.h5") as f:
        return status, f["quality"][:], f["sfh"][:]


def _net_expect_flagged_file(result, tmp_path):
    import numpy as np

    from sfh_ml.network import inference

    status, quality, sfh = result
    assert status == 0
    assert list(np.flatnonzero(quality)) == [0, 5, 9] and np.all(
        quality[[0, 5, 9]] == inference.QUALITY_NO_SPECTRUM
    )
    assert np.all(np.isnan(sfh[[0, 5, 9]])) and np.isfinite(np.delete(sfh, [0, 5, 9], axis=0)).all()


def _net_cli_no_usable(tmp_path):
    data = _net_write(tmp_path / "in.h5", edit=_net_set("spectra", slice(None), -9999.0))
    return _net_cli("predict", "--model", _net_model_path(), "--data", data, "--out", tmp_path / "p.h5")


def _net_poisoned_training(tmp_path):
    """Weights turned to NaN in the second epoch: TrainingError, no model, the first epoch's checkpoint."""
    import json

    import keras
    import numpy as np

    from sfh_ml import network

    class Poison(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == 1:
                w = self.model.get_layer("latent").kernel
                w.assign(np.full(w.shape, np.nan, np.float32))

    try:
        _net_train(tmp_path, epochs=3, callbacks=[Poison()])
    except network.TrainingError as err:
        return str(err), json.loads((tmp_path / "m.keras.ckpt.json").read_text())["epoch"]
    return None, None


def _net_expect_no_model(result, tmp_path):
    message, checkpoint_epoch = result
    assert message is not None and re.search(
        r"m\.keras failed: the loss became non-finite .* epoch 1", message
    )
    assert "--lr" in message and not (tmp_path / "m.keras").exists()
    assert checkpoint_epoch == 1 and _net_leftovers(tmp_path) == []


def _net_cli_train(tmp_path, *options):
    """``sfh-ml train`` (the default v2: the CLI sets no hyper-parameters) on 32 toy objects."""
    data = _net_write(tmp_path / "train.h5")
    return _net_cli("train", "--data", data, "--out", tmp_path / "m.keras", "--batch-size", "16", *options)


def _net_cli_damaged_model(tmp_path):
    (tmp_path / "m.keras").write_bytes(b"PK\x03\x04 half a zip")
    data = _net_write(tmp_path / "in.h5")
    return _net_cli("predict", "--model", tmp_path / "m.keras", "--data", data, "--out", tmp_path / "p.h5")


def _net_unwritable_folder(tmp_path):
    """The output's folder cannot be created (a file of that name is in the way; chmod does not stop root)."""
    (tmp_path / "a_file").write_text("x")
    return _net_train(tmp_path, data=tmp_path / "no_data_needed.h5", out="a_file/m.keras")


def _net_cli_diverging(tmp_path):
    status = _net_cli_train(tmp_path, "--epochs", "2", "--lr", "1e30", "--no-augment")
    return status, (tmp_path / "m.keras").exists()


def _net_resume_other_data(tmp_path):
    """A checkpoint of train.h5, then the same command on other.h5; then --no-resume starts again."""
    _net_train(tmp_path)
    other = _net_write(tmp_path / "other.h5", n=40)
    try:
        _net_train(tmp_path, data=other, epochs=2)
    except ValueError as err:
        return str(err), _net_train(tmp_path, data=other, resume=False).initial_epoch
    return None, None


def _net_expect_resume_refused(result, tmp_path):
    message, initial_epoch = result
    assert message is not None
    assert re.search(r"made by another run: data: .*train\.h5 \(32 objects.*other\.h5 \(40 objects", message)
    assert "epochs: 1 in the checkpoint, 2 now" in message and "--no-resume" in message
    assert initial_epoch == 0  # the remedy works


def _net_resume_other_options(tmp_path):
    _net_train(tmp_path)
    return _net_train(tmp_path, learning_rate=2e-3)


def _net_existing_model(tmp_path):
    (tmp_path / "m.keras").write_bytes(_net_model_path().read_bytes())
    return _net_train(tmp_path)


def _net_evaluate(tmp_path, edit=None, filters=True, **kw):
    from sfh_ml import network

    data = _net_write(tmp_path / "test.h5", filters=filters, edit=edit)
    return network.evaluate(_net_model_path(), data, **kw)


def _net_expect_evaluated_without(n_left_out):
    def fn(result, tmp_path):
        assert result["n_unusable"] == n_left_out and result["n_objects"] == 32 - n_left_out
        assert result["quality"]["no_spectrum"] == n_left_out

    return check(fn)


def _net_train_while_locked(tmp_path):
    """A second train on an --out whose lock a concurrent run holds (this process holds it here)."""
    from sfh_ml.files import output_lock

    data = _net_write(tmp_path / "train.h5")
    with output_lock(tmp_path / "m.keras", command="sfh-ml train"):
        return _net_train(tmp_path, data=data)


def _net_cli_train_while_locked(tmp_path):
    import contextlib
    import io

    from sfh_ml.files import output_lock

    data = _net_write(tmp_path / "train.h5")
    err = io.StringIO()
    with output_lock(tmp_path / "m.keras", command="sfh-ml train"), contextlib.redirect_stderr(err):
        status = _net_cli("train", "--data", data, "--out", tmp_path / "m.keras", "--epochs", "1")
    return status, err.getvalue()


def _net_expect_cli_train_refused(result, tmp_path):
    status, err = result
    assert status == 2 and "Traceback" not in err, err
    assert re.search(
        r"m\.keras is being written by another sfh-ml train \(pid \d+, lock file \S+m\.keras\.lock", err
    )
    assert not (tmp_path / "m.keras").exists() and not (tmp_path / "m.keras.ckpt.json").exists()
    assert not (tmp_path / "m.keras.lock").exists()  # the holder let it go; the refused run took none


def _net_masked_like_nan(tmp_path):
    """Row 0: 60 pixels and band 2 NaN; row 1 (a copy of it): the same masked, garbage underneath."""
    import numpy as np

    from sfh_ml import network

    spectra, photometry = _net_objects(3)
    spectra[1:], photometry[1:] = spectra[0], photometry[0]
    spectra[0, 100:160], photometry[0, 2] = np.nan, np.nan
    spectra[1, 100:160], photometry[1, 2] = 5e3, 1e6  # what a masked array may hold under its mask
    mask_s = np.zeros(spectra.shape, bool)
    mask_p = np.zeros(photometry.shape, bool)
    mask_s[1, 100:160], mask_p[1, 2] = True, True
    spectra = np.ma.MaskedArray(spectra, mask_s)
    photometry = np.ma.MaskedArray(photometry, mask_p)
    return network.predict(_net_model(), spectra, photometry)


def _net_predict_file_empty(tmp_path):
    return _net_predict_file(tmp_path, _net_write(tmp_path / "in.h5", n=0))


def _net_cli_predict_batch_size(tmp_path, size):
    import contextlib
    import io

    data = _net_write(tmp_path / "in.h5")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = _net_cli(
            "predict", "--model", _net_model_path(), "--data", data, "--out", tmp_path / "p.h5",
            "--batch-size", size,
        )  # fmt: skip
    return status, err.getvalue(), (tmp_path / "p.h5").exists()


def _net_goodness_without_noise(tmp_path):
    """Goodness of fit with row 1's noise all NaN and row 2's all zero (row 0: a real noise)."""
    import numpy as np

    from sfh_ml import network

    spectra, photometry = _net_objects(3)
    noise = 0.02 * np.abs(spectra)
    noise[1], noise[2] = np.nan, 0.0
    return network.predict(_net_model(), spectra, photometry, goodness=True, noise=noise)


def _net_expect_no_noise_flagged(pred, tmp_path):
    import numpy as np

    from sfh_ml.network import QUALITY_FLAGS

    bit = QUALITY_FLAGS["no_noise"]
    assert [bool(q & bit) for q in pred["quality"]] == [False, True, True], pred["quality"]
    assert np.isfinite(pred["chi2_pixel"][0]) and np.isnan(pred["chi2_pixel"][1:]).all()
    assert np.isfinite(pred["sfh"]).all()  # the predictions stand; only the score is missing


def _net_cli_calibrate(tmp_path, *options):
    """``sfh-ml calibrate`` with a data set that does not exist: a refusal about the options must come
    first (before the set is read)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = _net_cli(
            "calibrate", "--model", _net_model_path(), "--data", tmp_path / "not_read.h5", *options
        )
    return status, err.getvalue()


def _net_expect_cli_error(pattern):
    def fn(result, tmp_path):
        status, err = result[:2]
        assert status == 2 and "Traceback" not in err, err
        assert re.search(pattern, err), err
        assert "not_read.h5" not in err  # refused before any input was read

    return check(fn)


NETWORK_CASES = [
    # (id, scenario(tmp_path), expectation)
    # -- predict: missing values are masked, unusable objects flagged (NaN, never plausible numbers)
    (
        "predict-photometry-9999-is-missing-not-a-flux",
        lambda t: _net_predict(
            _net_duplicate_then(_net_set_rows(photometry=[((0, 0), -9999.0), ((1, 0), float("nan"))]))
        ),
        _net_expect_same_rows([0, 1], 16),
    ),
    (
        "predict-photometry-zero-or-negative-is-missing",
        lambda t: _net_predict(
            _net_duplicate_then(
                _net_set_rows(photometry=[((0, 1), 0.0), ((1, 1), -3.0), ((2, 1), float("nan"))])
            )
        ),
        _net_expect_same_rows([0, 1, 2], 16),
    ),
    (
        "predict-spectrum-9999-pixels-are-masked",
        lambda t: _net_predict(
            _net_duplicate_then(
                _net_set_rows(spectra=[((0, slice(100, 160)), -9999.0), ((1, slice(100, 160)), float("nan"))])
            )
        ),
        _net_expect_same_rows([0, 1], 0),
    ),
    (
        "predict-spectrum-all-nan",
        lambda t: _net_predict(_net_set_rows(spectra=[(1, float("nan"))])),
        _net_expect_unusable([1], 1),
    ),
    (
        "predict-spectrum-all-zero",
        lambda t: _net_predict(_net_set_rows(spectra=[(2, 0.0)])),
        _net_expect_unusable([2], 1),
    ),
    (
        "predict-spectrum-negative",
        lambda t: _net_predict(_net_set_rows(spectra=[(0, lambda s: -s)])),
        _net_expect_unusable([0], 4),
    ),
    (
        "predict-spectrum-mostly-masked",
        lambda t: _net_predict(_net_set_rows(spectra=[((3, slice(0, 300)), float("nan"))])),
        _net_expect_unusable([3], 2),
    ),
    (
        "predict-photometry-in-other-units-1e4",
        lambda t: _net_predict(_net_set_rows(photometry=[(1, lambda p: p * 1e4)])),
        _net_expect_unusable([1], 8),
    ),
    (
        "predict-photometry-in-other-units-1e-4",
        lambda t: _net_predict(_net_set_rows(photometry=[(2, lambda p: p * 1e-4)])),
        _net_expect_unusable([2], 8),
    ),
    (
        "predict-photometry-3x-off-is-not-flagged",
        lambda t: _net_predict(_net_set_rows(photometry=[(1, lambda p: p * 3.0)])),
        check(lambda pred, t: _net_expect_equal([0, 0, 0, 0])[1](pred["quality"].tolist(), t)),
    ),
    (
        "predict-wavelength-grid-shifted",
        _net_grid_mismatch,
        raises(ValueError, r"wavelength grid mismatch: pixel"),
    ),
    ("predict-bands-in-another-order", _net_bands_reordered, raises(ValueError, r"filters mismatch")),
    # -- predict files: the band order, the output, failures
    (
        "predict-file-without-filters",
        lambda t: _net_predict_file(t, _net_write(t / "in.h5", filters=False)),
        raises(ValueError, r"in\.h5 has no 'filters' dataset.*--filters"),
    ),
    (
        "predict-file-without-filters-band-order-given",
        lambda t: _net_predict_file(t, _net_write(t / "in.h5", filters=False), filters=_NET_FILTERS),
        _net_expect_equal({"n_objects": 32, "n_usable": 32, "quality": {"good": 32}}),
    ),
    (
        "predict-file-filters-contradict-the-file",
        lambda t: _net_predict_file(t, filters=_NET_FILTERS[::-1]),
        raises(ValueError, r"in\.h5 lists its bands as .*but the filters given are"),
    ),
    (
        "predict-file-output-is-the-input",
        lambda t: _net_refused_output(t, same_as_input=True),
        _net_expect_refused_intact(r"output .*in\.h5 is also an input"),
    ),
    (
        "predict-file-output-exists",
        lambda t: _net_refused_output(t, same_as_input=False),
        _net_expect_refused_intact(r"old\.h5 exists: pass --overwrite"),
    ),
    (
        "predict-file-output-is-the-model",
        lambda t: _net_predict_file(t, out=str(_net_model_path()), overwrite=True),
        raises(ValueError, r"tiny\.keras is also an input"),
    ),
    ("predict-file-no-usable-object", _net_no_usable_file, check(_net_expect_no_usable)),
    ("predict-file-failure-midway", _net_fail_midway, check(_net_expect_nothing_left)),
    ("cli-predict-some-objects-flagged", _net_flagged_file, check(_net_expect_flagged_file)),
    ("cli-predict-no-usable-object-exits-2", _net_cli_no_usable, _net_expect_equal(2)),
    # -- model files
    (
        "load-model-truncated",
        lambda t: _net_damaged_model(t, "truncated"),
        raises(OSError, r"model file .*model\.keras is damaged"),
    ),
    (
        "load-model-random-bytes",
        lambda t: _net_damaged_model(t, "random"),
        raises(OSError, r"model file .*model\.keras is damaged"),
    ),
    ("cli-predict-damaged-model-exits-2", _net_cli_damaged_model, _net_expect_equal(2)),
    # -- evaluate
    (
        "evaluate-file-without-filters",
        lambda t: _net_evaluate(t, filters=False),
        raises(ValueError, r"test\.h5 has no 'filters' dataset.*--filters"),
    ),
    (
        "evaluate-unusable-objects-are-left-out",
        lambda t: _net_evaluate(t, edit=_net_set("spectra", [3, 4], float("nan"))),
        _net_expect_evaluated_without(2),
    ),
    # -- train: data
    (
        "train-nan-sfh-target",
        lambda t: _net_train(t, data=_net_write(t / "bad.h5", edit=_net_set("sfh", (3, 2), float("nan")))),
        raises(ValueError, r"bad\.h5: dataset 'sfh' holds 1 non-finite values"),
    ),
    (
        "train-nan-zh-target",
        lambda t: _net_train(t, data=_net_write(t / "bad.h5", edit=_net_set("zh", 7, float("nan")))),
        raises(ValueError, r"bad\.h5: dataset 'zh' holds 6 non-finite values"),
    ),
    (
        "train-negative-sfh-target",
        lambda t: _net_train(t, data=_net_write(t / "bad.h5", edit=_net_set("sfh", (5, 0), -0.2))),
        raises(ValueError, r"bad\.h5: dataset 'sfh' holds 1 negative mass fractions"),
    ),
    # -- train: options
    (
        "train-epochs-zero",
        lambda t: _net_train(t, epochs=0),
        raises(ValueError, r"epochs \(--epochs\) must be"),
    ),
    (
        "train-batch-size-negative",
        lambda t: _net_train(t, batch_size=-8),
        raises(ValueError, r"batch_size \(--batch-size\) must be a positive integer, got -8"),
    ),
    (
        "train-lr-zero",
        lambda t: _net_train(t, learning_rate=0.0),
        raises(ValueError, r"learning_rate \(--lr\)"),
    ),
    ("cli-train-epochs-zero-exits-2", lambda t: _net_cli_train(t, "--epochs", "0"), _net_expect_equal(2)),
    # -- train: failures and outputs
    ("train-non-finite-loss", _net_poisoned_training, check(_net_expect_no_model)),
    (
        "cli-train-diverging-lr-exits-1-without-model",
        _net_cli_diverging,
        _net_expect_equal((1, False)),
    ),
    ("train-resume-on-other-data", _net_resume_other_data, check(_net_expect_resume_refused)),
    (
        "train-resume-with-other-options",
        _net_resume_other_options,
        raises(ValueError, r"learning_rate: 0\.001 in the checkpoint, 0\.002 now.*--no-resume"),
    ),
    (
        "train-output-folder-unwritable",
        _net_unwritable_folder,
        raises(OSError, r"cannot write the model .*a_file/m\.keras"),
    ),
    (
        "train-output-is-the-data",
        lambda t: _net_train(t, data=_net_write(t / "train.h5"), out="train.h5"),
        raises(ValueError, r"train\.h5 is also an input"),
    ),
    (
        "train-output-exists-without-checkpoint",
        _net_existing_model,
        raises(ValueError, r"m\.keras exists and has no checkpoint.*--no-resume"),
    ),
    # -- issue 17, part 4: a second run on the same output, data that cannot teach, inputs of no size
    (
        "train-second-run-on-the-same-out-refused",
        _net_train_while_locked,
        raises(
            __import__("sfh_ml").files.OutputLockedError,
            r"m\.keras is being written by another sfh-ml train \(pid \d+, lock file \S+m\.keras\.lock\)",
        ),
    ),
    ("cli-train-second-run-exits-2", _net_cli_train_while_locked, check(_net_expect_cli_train_refused)),
    (
        "train-all-spectra-nan",
        lambda t: _net_train(
            t, data=_net_write(t / "bad.h5", edit=_net_set("spectra", slice(None), float("nan")))
        ),
        raises(
            ValueError,
            r"bad\.h5: dataset 'spectra' is missing .* in 100 % of its pixels \(32 of 32 spectra have no "
            r"pixel at all; at most 50 % may be\).*regenerate the set",
        ),
    ),
    (
        "train-most-spectra-nan-or-9999",
        lambda t: _net_train(
            t,
            data=_net_write(
                t / "bad.h5",
                edit=lambda d: (
                    _net_set("spectra", slice(0, 10), float("nan"))(d),
                    _net_set("spectra", slice(10, 20), -9999.0)(d),
                ),
            ),
        ),
        raises(ValueError, r"bad\.h5: dataset 'spectra' is missing .* in 62 % of its pixels \(20 of 32"),
    ),
    (
        "predict-masked-array-masks-like-nan",
        _net_masked_like_nan,
        _net_expect_same_rows([0, 1], 16),  # 16: the band is missing in both
    ),
    (
        "predict-batch-size-zero",
        lambda t: __import__("sfh_ml").network.predict(_net_model(), *_net_objects(2), batch_size=0),
        raises(ValueError, r"batch_size \(--batch-size\) must be a positive integer, got 0"),
    ),
    (
        "cli-predict-batch-size-negative-exits-2",
        lambda t: _net_cli_predict_batch_size(t, "-5"),
        check(
            lambda r, t: _syn_assert(
                r[0] == 2
                and "batch_size (--batch-size) must be a positive integer, got -5" in r[1]
                and not r[2]
            )
        ),
    ),
    (
        "predict-zero-spectra",
        lambda t: __import__("sfh_ml").network.predict(_net_model(), *_net_objects(0)),
        raises(ValueError, r"no spectra to predict \(spectra has shape \(0, 400\)\)"),
    ),
    (
        "predict-file-zero-spectra",
        _net_predict_file_empty,
        raises(ValueError, r"in\.h5 holds no spectra \(dataset 'spectra' has 0 rows\)"),
    ),
    (
        "predict-file-out-is-a-folder-with-overwrite",
        lambda t: (t / "results").mkdir() or _net_predict_file(t, out="results", overwrite=True),
        raises(IsADirectoryError, r"the output \S+results is a folder: --out must name a file"),
    ),
    (
        "predict-goodness-nan-or-zero-noise-flagged",
        _net_goodness_without_noise,
        check(_net_expect_no_noise_flagged),
    ),
    (
        "cli-calibrate-ood-nodes-zero-refused-first",
        lambda t: _net_cli_calibrate(t, "--out", t / "c.keras", "--ood", "--ood-nodes", "0"),
        _net_expect_cli_error(r"n_nodes \(--ood-nodes\) must be a positive integer, got 0"),
    ),
    (
        "cli-calibrate-out-is-a-folder-refused-first",
        lambda t: _net_cli_calibrate(t, "--out", t, "--overwrite"),
        _net_expect_cli_error(r"is a folder: --out must name a file"),
    ),
]

# ----------------------------------------------------------------------------------------- fitting
_FIT_CACHE = {}  # the synthesizer and the pPXF templates, built once per session


def _fit_object():
    """pPXF templates and one noiseless synthetic object (300 Myr + 5 Gyr), its noise and HST fluxes."""
    if "object" not in _FIT_CACHE:
        import numpy as np
        from conftest import make_params

        from sfh_ml.fitting import build_templates
        from sfh_ml.synthesis.sfh import SkewNormalBurst
        from sfh_ml.synthesis.ssp import load_library
        from sfh_ml.synthesis.synthesizer import Synthesizer

        library = load_library()
        synth = Synthesizer(library)
        one = np.ones(1)
        sfh = SkewNormalBurst().batch(
            5e9 * one, 1e7 * one, 0 * one, 3e8 * one, 1e7 * one, 0.3 * one, -0.4 * one, -0.4 * one, one
        )
        out = synth(sfh, make_params(1, tau_ism=0.3, snr=50.0), rng=np.random.default_rng(1))
        _FIT_CACHE["object"] = (
            build_templates(synth.wave_aa, library),
            {k: out[k][0] for k in ("spectra_noiseless", "noise", "photometry_noiseless", "photometry_err")},
        )
    return _FIT_CACHE["object"]


def _fit_with(spectrum_edit=None, band=None):
    """fit_spectrum of the object, its spectrum edited (``spectrum_edit(spectrum)``) or ``band`` -9999."""
    from sfh_ml.fitting import fit_spectrum

    templates, obj = _fit_object()
    spectrum, photometry = obj["spectra_noiseless"].copy(), obj["photometry_noiseless"].copy()
    if spectrum_edit is not None:
        spectrum_edit(spectrum)
    if band is not None:
        photometry[band] = -9999.0
    return fit_spectrum(templates, spectrum, obj["noise"], None, photometry, obj["photometry_err"], regul=0.0)


def _fit_expect_band_left_out(fit, tmp_path):
    assert fit["n_bands"] == 4  # F336W left out, the other four fitted
    assert fit["chi2"] < 2.0  # a noiseless object fits to the noise (with -9999 as a flux: chi2 ~ 300)


FITTING_CASES = [
    # (id, scenario(tmp_path), expectation)
    ("fit-band-9999-is-missing-not-a-flux", lambda t: _fit_with(band=1), check(_fit_expect_band_left_out)),
    (
        "fit-spectrum-9999-pixels-refused",
        lambda t: _fit_with(spectrum_edit=lambda s: s.__setitem__(slice(500, 510), -9999.0)),
        raises(
            ValueError, r"spectrum holds missing-value flags \(-9999, .*\) in 10 pixels: mark them missing"
        ),
    ),
]


# ----------------------------------------------------------------------------------------- apply
# sfh-ml apply on the 12 x 12 test cube of test_observations_apply (a continuum, no lines: its redshift
# cannot be checked, and is not) and on the project's mock galaxy (z = 0.0035, stars and gas from the
# synthesizer), with the tiny network of the network rows (400 pixels to 9737 A: the cube covers 92 %).
_APP_CACHE = {}
_APP_Z = 0.002  # the test cube's redshift (test_observations_apply.REDSHIFT)


def _app_cube(tmp_path, name="cube.fits"):
    from test_observations_apply import write_test_cube

    path = tmp_path / name
    return path if path.exists() else write_test_cube(path)


@pytest.fixture(autouse=True)
def _app_request(request):
    """The running test's request, so that the scenarios reach the session fixtures on demand."""
    _APP_CACHE["request"] = request


def _app_mock():
    """The session's small mock galaxy (conftest's ``mock_galaxy``), written on first use."""
    return _APP_CACHE["request"].getfixturevalue("mock_galaxy")


def _app_apply(tmp_path, cube=None, out="out", **kw):
    from sfh_ml.observations import apply_cube

    cube = _app_cube(tmp_path) if cube is None else cube
    options = {"redshift": _APP_Z, "bins": "grid:4", "progress": False, **kw}
    return apply_cube(_net_model(), cube, tmp_path / out, **options)


def _app_mock_redshift(offset=None, redshift=None):
    """apply on the mock at its redshift + ``offset`` (or at ``redshift``): refused before any work."""

    def scenario(tmp_path):
        from sfh_ml.observations import apply_cube

        mock = _app_mock()
        z = redshift if redshift is not None else mock.params["redshift"] + offset
        try:
            return apply_cube(_net_model(), mock.cube, tmp_path / "out", redshift=z, progress=False)
        finally:
            assert not (tmp_path / "out").exists()  # nothing written

    return scenario


def _app_mock_unchecked(tmp_path):
    """The refusal's remedy: --no-redshift-check (check_redshift=False) runs at the redshift given."""
    from sfh_ml.observations import apply_cube

    result = apply_cube(
        _net_model(), _app_mock().cube, tmp_path / "out", redshift=0.0, bins="grid:5", progress=False,
        check_redshift=False,
    )  # fmt: skip
    return result.n_bins


def _app_mock_true_redshift(tmp_path):
    from sfh_ml.observations import check_redshift, read_muse_cube

    mock = _app_mock()
    return check_redshift(read_muse_cube(mock.cube), mock.params["redshift"])


def _app_expect_measured(found, tmp_path):
    assert found is not None and abs(found["offset_kms"]) < 100.0, found  # the mock's disc is symmetric


def _app_stale_outputs(tmp_path, overwrite):
    """A folder with the outputs of an earlier run with a catalogue; apply again without one."""
    _app_apply(tmp_path)
    for name in ("clusters.fits", "clusters.ecsv"):
        (tmp_path / "out" / name).write_text("the clusters of last week's run")
    return _app_apply(tmp_path, overwrite=overwrite)


def _app_expect_stale_removed(result, tmp_path):
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["bins.ecsv", "bins.fits", "maps.fits", "summary.json"], names


def _app_after_kill_9_while_writing(tmp_path):
    """What kill -9 while the outputs were written leaves: their temporary files; then the re-run."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("maps.fits.tmp", "bins.fits.tmp", "bins.ecsv.tmp", "summary.json.tmp"):
        (out / name).write_bytes(b"SIMPLE  =  half a file")
    return _app_apply(tmp_path)


def _app_expect_written_clean(result, tmp_path):
    from astropy.io import fits

    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["bins.ecsv", "bins.fits", "maps.fits", "summary.json"], names
    with fits.open(tmp_path / "out" / "maps.fits") as hdul:
        assert hdul["QUALITY"].data.shape == (12, 12)
        return hdul[0].header["CUBE"]


def _app_non_ascii_name(tmp_path):
    result = _app_apply(tmp_path, cube=_app_cube(tmp_path, "galaxie_\u00e9t\u00e9.fits"))
    return result, _app_expect_written_clean(result, tmp_path)


def _app_expect_non_ascii_written(result, tmp_path):
    from astropy.table import Table

    result, card = result
    assert result.n_usable_bins > 0 and card == "galaxie_\\xe9t\\xe9.fits"  # FITS headers hold ASCII
    assert (
        Table.read(tmp_path / "out" / "bins.ecsv")
        .meta["options"]["cube"][0]
        .endswith("galaxie_\u00e9t\u00e9.fits")
    )


def _app_truncated_cube(tmp_path):
    cube = _app_cube(tmp_path)
    cube.write_bytes(cube.read_bytes()[: cube.stat().st_size // 2])  # an interrupted download
    return _app_apply(tmp_path, cube=cube)


def _app_cli_interrupted(tmp_path):
    """sfh-ml apply stopped by a real SIGINT in its second chunk; then the same command."""
    import contextlib
    import io
    import os
    import signal
    from unittest import mock

    from sfh_ml.observations.apply import chunks

    model = tmp_path / "tiny.keras"
    model.write_bytes(_net_model_path().read_bytes())
    cube = _app_cube(tmp_path)
    argv = ["apply", "--model", model, "--cube", cube, "--redshift", _APP_Z, "--bins", "grid:2"]
    argv += ["--chunk-bins", "10", "--quiet", "--out", tmp_path / "out"]
    real = chunks._bins_chunk

    def interrupted(state, index):
        if index == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: Python raises KeyboardInterrupt here
        return real(state, index)

    err = io.StringIO()
    with mock.patch.object(chunks, "_bins_chunk", interrupted), contextlib.redirect_stderr(err):
        status = _net_cli(*argv)
    kept = sorted(p.name for p in (tmp_path / "out" / "work").glob("bins_*.npz"))
    return status, err.getvalue(), kept, _net_cli(*argv)


def _app_expect_interrupted(result, tmp_path):
    status, err, kept, second = result
    assert status == 130 and "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if line.startswith("sfh-ml")]  # one line (warnings aside)
    assert line.startswith("sfh-ml apply: interrupted;") and line.endswith("run the same command to resume")
    assert kept == ["bins_00000.npz"] and second == 0  # the re-run resumed and finished
    assert (tmp_path / "out" / "maps.fits").exists()


APPLY_CASES = [
    # (id, scenario(tmp_path), expectation)
    (
        "apply-negative-ebv-mw",
        lambda t: _app_apply(t, ebv_mw=-0.5),
        raises(ValueError, r"ebv_mw \(--ebv-mw, Milky Way E\(B-V\)\) must be >= 0 mag, got min -0.5"),
    ),
    (
        "apply-negative-sigma-obs",
        lambda t: _app_apply(t, sigma_obs_kms=-100.0),
        raises(
            ValueError, r"sigma_obs_kms \(--sigma-obs, stellar dispersion\) must be >= 0 km/s, got min -100"
        ),
    ),
    (
        "apply-negative-muse-fwhm",
        lambda t: _app_apply(t, muse_fwhm_arcsec=-1.0),
        raises(ValueError, r"muse_fwhm_arcsec \(--muse-fwhm\) must be > 0 arcsec, got min -1"),
    ),
    (
        "apply-redshift-nan",
        lambda t: _app_apply(t, redshift=float("nan")),
        raises(ValueError, r"redshift \(--redshift\) contains NaN or infinite values"),
    ),
    (
        "apply-redshift-minus-one",
        lambda t: _app_apply(t, redshift=-1.0),
        raises(ValueError, r"redshift \(--redshift\) must be >= -0.005, got min -1"),
    ),
    ("apply-mock-at-its-redshift-passes-the-check", _app_mock_true_redshift, check(_app_expect_measured)),
    (
        "apply-mock-at-redshift-zero-refused",
        _app_mock_redshift(redshift=0.0),
        raises(
            ValueError,
            r"MOCKGAL\.fits: the redshift 0 \(--redshift\) does not match the cube's spectrum: its .* put "
            r"the galaxy at z = 0\.003[2-7] \(\+10\d\d km/s .*--no-redshift-check \(check_redshift=False\)",
        ),
    ),
    (
        "apply-mock-at-redshift-plus-0.01-refused",
        _app_mock_redshift(offset=0.01),
        raises(
            ValueError,
            r"MOCKGAL\.fits: the redshift 0\.0135 \(--redshift\) does not match .* "
            r"z = 0\.003[2-7] \(-29\d\d km/s",
        ),
    ),
    (
        "apply-mock-redshift-check-can-be-skipped",
        _app_mock_unchecked,
        check(lambda n, t: _syn_assert(n == 16)),
    ),
    (
        "apply-stale-cluster-outputs-refused-without-overwrite",
        lambda t: _app_stale_outputs(t, overwrite=False),
        raises(FileExistsError, r"outputs exist: .*clusters\.fits.*--overwrite"),
    ),
    (
        "apply-overwrite-removes-the-earlier-runs-cluster-outputs",
        lambda t: _app_stale_outputs(t, overwrite=True),
        check(_app_expect_stale_removed),
    ),
    (
        "apply-rerun-after-kill-9-while-writing",
        _app_after_kill_9_while_writing,
        check(_app_expect_written_clean),
    ),
    ("apply-non-ascii-cube-name", _app_non_ascii_name, check(_app_expect_non_ascii_written)),
    (
        "apply-truncated-cube",
        _app_truncated_cube,
        raises(ValueError, r"cube\.fits is a damaged or truncated FITS file \(.*\): download it again"),
    ),
    ("cli-apply-sigint-exits-130-and-resumes", _app_cli_interrupted, check(_app_expect_interrupted)),
]


# ----------------------------------------------------------------------------------------- files
FILE_CASES = [
    # (id, scenario(tmp_path), expectation)
    ("generate-kill-9-resumes-from-saved-chunks", _syn_resume_after(9), check(_syn_check_resumed)),
    (
        "generate-sigterm-resumes-from-saved-chunks",
        _syn_resume_after(15),
        check(_syn_check_resumed_after_sigterm),
    ),
    ("generate-workers-die-with-their-parent", _syn_kill_parent_of_workers, check(_syn_check_workers_gone)),
    (
        "generate-second-run-refused-hdf5-locking-off",
        _syn_second_run_while_first_runs,
        check(_syn_check_second_refused),
    ),
    ("generate-stale-lock-taken-over", _syn_stale_lock, check(lambda n, tmp_path: _syn_assert(n == 20))),
    (
        "generate-finished-file-kept-hdf5-locking-off",
        _syn_replace_finished_without_overwrite,
        check(_syn_check_kept),
    ),
    (
        "generate-over-a-non-set-file",
        _syn_not_a_set,
        raises(
            FileExistsError,
            r"notes.h5 exists and is not a synthetic set: choose another name or pass --overwrite",
        ),
    ),
    (
        "generate-disk-too-small-up-front",
        _syn_disk_too_small,
        raises(
            OSError,
            r"not enough disk space for \S+big.h5: 20000 objects need about 1.7\d GiB .*0.09 GiB free",
        ),
    ),
    (
        "generate-disk-fills-up",
        _syn_disk_fills_up,
        raises(
            OSError,
            r"the disk holding \S+ is full .*No space left.*the finished chunks are kept and the run resumes",
        ),
    ),
    (
        "generate-unfinished-run-of-another-config-kept",
        _syn_other_config_partial,
        raises(
            FileExistsError,
            r"p.h5.partial holds an unfinished run with another config \(n: 99 there, 20 asked\)"
            r".*--overwrite",
        ),
    ),
    (
        "read-set-of-another-schema-version",
        _syn_read(_syn_set_attr("schema_version", 1)),
        raises(
            ValueError,
            r"done.h5 has schema version 1 \(written by sfh_ml 0.1.0\); this sfh_ml .* reads version 2: "
            r"generate the set again",
        ),
    ),
    (
        "read-unfinished-set",
        _syn_read(_syn_set_attr("complete", False)),
        raises(ValueError, r"done.h5 is unfinished: run the generate command that made it again"),
    ),
    (
        "read-set-with-wrong-wave-length",
        _syn_read(_syn_short_wave, keys=["spectra"]),
        raises(
            ValueError,
            r"done.h5: dataset spectra has shape \(20, 3681\), "
            r"the schema says \('n', 'n_wave'\) = \(20, 3680\)",
        ),
    ),
    ("cli-generate-n-2-63-refused-at-once", _syn_cli_generate_huge, check(_syn_check_huge_refused)),
]


# ----------------------------------------------------------------------------------------- observations
def _observation_cases():
    """Real-file readers: the scenarios write small bad files in the release formats (the writers are
    in test_observations_readers.py); every message names the file."""
    from test_observations_readers import BAD_OBSERVATION_FILES

    return [(name, scenario, raises(ValueError, regex)) for name, scenario, regex in BAD_OBSERVATION_FILES]


OBSERVATION_CASES = _observation_cases()

CASES = SYNTHESIS_CASES + NETWORK_CASES + FITTING_CASES + APPLY_CASES + FILE_CASES + OBSERVATION_CASES


@pytest.mark.parametrize("scenario, expectation", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(scenario, expectation, tmp_path):
    if expectation[0] == "raises":
        _, exc, pattern = expectation
        with pytest.raises(exc) as info:
            scenario(tmp_path)
        assert re.search(pattern, str(info.value)), f"message {str(info.value)!r} does not match {pattern!r}"
    else:
        expectation[1](scenario(tmp_path), tmp_path)
