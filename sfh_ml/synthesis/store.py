"""The file store of a synthetic set: its chunks on disk while a run goes on, the HDF5 file, its reader.

* :class:`ChunkStore`: each finished chunk saved at once, atomically, as
  ``FILE.partial/chunk_NNNNNN.npz`` (with the run's config), so a stopped run resumes from them;
* :func:`assemble`: the HDF5 file written from the chunks under a temporary name, appearing under its
  final name only when complete (no time stamps: the same config gives the same bytes);
* the checks before a run: the output folder (:func:`check_folder`), a finished file of this or
  another config (:func:`is_done`), the free disk space (:func:`check_disk_space`);
* :func:`read_dataset`: the one reader of these files.

The file format (datasets, shapes, units, attributes) is the table of :mod:`sfh_ml.synthesis.schema`.
"""

import errno
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from ..constants import MAX_AGE_YR, ZH_RANGE
from ..files import tmp_path
from ..version import __version__
from . import schema
from .config import DatasetConfig
from .instrument import MUSE_DWAVE_AA, MUSE_N_WAVE, MUSE_WAVE_START_AA, muse_wave
from .pool import signals_held
from .schema import SCHEMA_VERSION
from .ssp import library_path, load_library
from .synthesizer import bin_light

__all__ = [
    "ChunkStore",
    "assemble",
    "check_disk_space",
    "check_folder",
    "differences",
    "is_done",
    "read_dataset",
]


# ----------------------------------------------------------------------------------------- the file
def _dims(config, n_ssp, n_wave=MUSE_N_WAVE, n_zh=None):
    """Dimension sizes of a file of ``config`` (see :class:`sfh_ml.synthesis.schema.Field`)."""
    return dict(
        n=config.n,
        n_wave=n_wave,
        n_band=len(config.filters),
        n_bins=config.age_bins_yr.size - 1,
        n_ssp=n_ssp,
        n_chunks=config.n_chunks,
        n_zh=n_zh,
    )


def _create(f, config, wave_aa, library):
    """Create every dataset and attribute of the schema in an empty file (values: zeros, then chunks)."""
    dims = _dims(config, library.age_yr.size, wave_aa.size, library.zh.size)
    values = dict(
        wave_aa=wave_aa,
        filters=np.array(config.filters, dtype="S32"),
        age_bins_yr=config.age_bins_yr,
        ssp_age_yr=library.age_yr,
        chunk_done=np.ones(config.n_chunks, dtype=bool),
        bin_light=bin_light(library, config.age_bins_yr),
        zh_grid=library.zh,
    )
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    h5py.h5g.create(f.id, b"sfh_params", gcpl=gcpl)
    if config.world_params:
        h5py.h5g.create(f.id, b"world", gcpl=gcpl)
    rows = min(config.chunk_size, config.n, 256)
    for name, spec in schema.expand(config.n_tx, config.parametric, config.world_params):
        shape = spec.resolve(dims)
        if spec.per_object:
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            # fixed layout: the same bytes whatever the write order
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            chunks = (rows,) + shape[1:]
            f.create_dataset(name, shape=shape, dtype=spec.dtype, chunks=chunks, dcpl=dcpl, track_times=False)
        else:
            f.create_dataset(name, data=np.asarray(values.pop(name), dtype=spec.dtype), track_times=False)
    assert not values, f"schema and writer disagree on {sorted(values)}"
    f.attrs["config"] = config.to_json()
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["zh_min"], f.attrs["zh_max"] = ZH_RANGE
    f.attrs["max_age_yr"] = MAX_AGE_YR
    f.attrs["flux_unit"] = schema.FLUX_UNIT
    f.attrs["wave_grid"] = f"MUSE: {MUSE_WAVE_START_AA} + {MUSE_DWAVE_AA} * arange({MUSE_N_WAVE}) A (air)"
    f.attrs["complete"] = False
    f.attrs["sfh_ml_version"] = __version__


def _create_file(path):
    """A new HDF5 file with no time stamps anywhere (same config, same bytes)."""
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
    return h5py.File(h5py.h5f.create(os.fsencode(path), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl))


# ----------------------------------------------------------------------------------------- chunks on disk
class ChunkStore:
    """The finished chunks of a run, one ``.npz`` file each, in ``FILE.partial/`` (with the config).

    Parameters
    ----------
    path : str or Path
        The set's HDF5 file; the chunks go to ``path + ".partial/"``.
    config : DatasetConfig
    """

    def __init__(self, path, config):
        self.folder = Path(path).with_name(Path(path).name + ".partial")
        self.config = config

    def chunk_path(self, index):
        return self.folder / f"chunk_{index:06d}.npz"

    def other_config(self):
        """The config JSON of an unfinished run of another config in the folder, else None."""
        cfg = self.folder / "config.json"
        if self.folder.is_dir() and cfg.exists():
            text = cfg.read_text()
            return None if text == self.config.to_json() else text
        return None

    def open(self):
        """Create the folder for this config (removing a stale one: old format, or another config)."""
        if self.folder.exists() and (not self.folder.is_dir() or self.other_config() is not None):
            self.remove()
        self.folder.mkdir(exist_ok=True)
        cfg = self.folder / "config.json"
        if not cfg.exists():
            _write_atomic(cfg, lambda fh: fh.write(self.config.to_json().encode()))

    def done(self):
        """Indices of the chunks already saved, sorted."""
        return [i for i in range(self.config.n_chunks) if self.chunk_path(i).exists()]

    def save(self, index, rec):
        """Save chunk ``index`` (``rec``: its per-object datasets) atomically."""
        with signals_held():  # a stop (Ctrl-C, SIGTERM) lands after the chunk is written, not inside it
            _write_atomic(self.chunk_path(index), lambda fh: np.savez(fh, **rec))

    def load(self, index):
        path = self.chunk_path(index)
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as err:  # cannot happen for a file written by save(); say so anyway
            path.unlink(missing_ok=True)
            raise OSError(
                f"{path} was damaged and is removed ({err}): run the same command to redo it"
            ) from err

    def remove(self):
        if self.folder.is_dir():
            shutil.rmtree(self.folder)
        elif self.folder.exists():
            self.folder.unlink()

    def disk_error(self, err):
        """``err`` (an OSError of :meth:`save`) as a clear message if the disk is (nearly) full."""
        return _disk_error(err, self.folder.parent)


def _write_atomic(path, write):
    """Write ``path`` with ``write(filehandle)`` under a temporary name, then rename."""
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _disk_error(err, folder):
    """``err`` re-raised as a clear message if the disk holding ``folder`` is (nearly) full."""
    free = shutil.disk_usage(folder).free
    if getattr(err, "errno", None) == errno.ENOSPC or free < 64 * 2**20:
        return OSError(
            errno.ENOSPC,
            f"the disk holding {folder} is full ({free / 2**20:.0f} MiB free; {err}): free some space "
            f"and run the same command again; the finished chunks are kept and the run resumes from them",
        )
    return err


# ----------------------------------------------------------------------------------------- before a run
def check_folder(folder):
    """Refuse an output folder (Path) that does not exist or is not writable (OSError)."""
    if not folder.is_dir():
        raise OSError(f"output directory {folder} does not exist: create it first")
    if not os.access(folder, os.W_OK):
        raise OSError(f"output directory {folder} is not writable")


def _normalised(config_json):
    """A stored config as this version writes it: fields it lacks (added since) take their defaults."""
    try:
        return DatasetConfig.from_json(config_json).to_json()
    except (TypeError, ValueError):  # fields this version does not know, or values it refuses
        return config_json


def differences(config_json, config):
    """The fields in which a stored config (JSON) differs from ``config``, as one line of text."""
    theirs, ours = json.loads(_normalised(config_json)), json.loads(config.to_json())
    keys = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    return "; ".join(f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} asked" for k in keys)


def is_done(path, config, overwrite, progress):
    """True if ``path`` is already this set; raises if it is another file and ``overwrite`` is False."""
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            made_with = f.attrs.get("config")
            complete = bool(f.attrs.get("complete"))
    except OSError:
        made_with, complete = None, False
    if made_with is not None and _normalised(made_with) == config.to_json() and complete:
        if progress:
            print(f"{path} is already complete with this config")
        return True
    if overwrite:
        return False
    if made_with is None:
        raise FileExistsError(
            f"{path} exists and is not a synthetic set: choose another name or pass --overwrite"
        )
    why = (
        "is unfinished"
        if not complete
        else f"was made with another config ({differences(made_with, config)})"
    )
    raise FileExistsError(f"{path} exists and {why}; pass overwrite=True (--overwrite) to replace it")


def check_disk_space(path, config, store):
    """Refuse up front if the chunks and the assembled file will not fit on the disk."""
    try:
        with h5py.File(library_path(), "r") as f:
            n_ssp = f["age_yr"].shape[0]
    except (OSError, KeyError):
        n_ssp = 64  # no library yet: an upper bound
    per_object = schema.bytes_per_object(
        _dims(config, n_ssp), config.n_tx, config.parametric, config.world_params
    )
    n_left = config.n - sum(min(config.chunk_size, config.n - i * config.chunk_size) for i in store.done())
    need = per_object * (config.n + n_left) * 1.02 + 2**20  # the file + the chunks still to save, +2 %
    free = shutil.disk_usage(path.parent).free
    if need > free:
        raise OSError(
            errno.ENOSPC,
            f"not enough disk space for {path}: {config.n} objects need about {need / 2**30:.2f} GiB "
            f"(chunks, then the file), {free / 2**30:.2f} GiB free in {path.parent}: free some space, "
            f"or write elsewhere",
        )


# ----------------------------------------------------------------------------------------- assembling
def assemble(config, path, store, synth, overwrite):
    """Write the HDF5 file from the saved chunks, under a temporary name, then rename it."""
    if synth is not None:
        wave_aa, library = synth.wave_aa, synth.library
    else:
        variant = "emiles" if config.library == "mix" else config.library
        wave_aa, library = muse_wave(), load_library(variant=variant)
    tmp = tmp_path(path)
    try:
        with _create_file(tmp) as f:
            _create(f, config, wave_aa, library)
            for index in range(config.n_chunks):
                rec = store.load(index)
                lo = index * config.chunk_size
                for name, value in rec.items():
                    f[name][lo : lo + len(rec["sfh"])] = value
            f.attrs["complete"] = True
        if path.exists() and not overwrite:  # appeared while we worked: never replace it silently
            raise FileExistsError(
                f"{path} appeared during the run; the new set is kept in {tmp}: rename it by hand"
            )
        os.replace(tmp, path)
    except OSError as err:
        if not isinstance(err, FileExistsError):
            tmp.unlink(missing_ok=True)
            raise _disk_error(err, path.parent) from err
        raise


# ----------------------------------------------------------------------------------------- reading
def read_dataset(path, keys=None, index=None):
    """Read a synthetic set (or part of it) into memory: the one reader of these files.

    Parameters
    ----------
    path : str or Path
    keys : sequence of str, optional
        Datasets to read (default: all). Per-object datasets are sliced with ``index``.
    index : slice or ndarray of int, optional
        Objects to read (sorted integer indices or a slice).

    Returns
    -------
    dict of ndarray
        Per :mod:`sfh_ml.synthesis.schema`; byte strings are decoded; the root attributes are under
        ``"attrs"``.

    Raises
    ------
    FileNotFoundError
        No such file (the message says if an unfinished run can be resumed).
    OSError
        Not an HDF5 file.
    ValueError
        A file of another schema version, an unfinished file, or a dataset whose shape or type is
        not the schema's.
    KeyError
        A requested dataset is missing (the message names the file and what it holds).
    """
    path = Path(path)
    if not path.exists():
        partial = path.with_name(path.name + ".partial")
        hint = (
            f" (an unfinished {partial.name} exists: run the same generate command to resume)"
            if partial.exists()
            else ""
        )
        raise FileNotFoundError(f"no dataset {path}{hint}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise OSError(f"{path} is not a readable HDF5 file ({err})") from err
    with f:
        _check_header(f, path)
        names = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        wanted = names if keys is None else list(keys)
        missing = [k for k in wanted if k not in names]
        if missing:
            raise KeyError(f"{path} has no dataset {', '.join(map(repr, missing))}; it holds {sorted(names)}")
        dims = _file_dims(f)
        out = {}
        for name in wanted:
            d = f[name]
            spec = schema.field(name)
            _check_dataset(d, spec, dims, path)
            per_object = spec.per_object if spec is not None else (d.ndim and d.shape[0] == dims["n"])
            value = d[index] if (index is not None and per_object) else d[()]
            if value.dtype.kind == "S":
                value = value.astype(str)
            out[name] = value
        out["attrs"] = dict(f.attrs)
    return out


def _check_header(f, path):
    """Refuse a file of another schema version, or one whose generation did not finish."""
    version = f.attrs.get("schema_version")
    if version is not None and int(version) != SCHEMA_VERSION:
        written = f.attrs.get("sfh_ml_version", "an older sfh_ml")
        raise ValueError(
            f"{path} has schema version {int(version)} (written by sfh_ml {written}); this sfh_ml "
            f"({__version__}) reads version {SCHEMA_VERSION}: generate the set again with "
            f"`sfh-ml generate` (same options), or read it with the sfh_ml version that wrote it"
        )
    if "complete" in f.attrs and not bool(f.attrs["complete"]):
        raise ValueError(f"{path} is unfinished: run the generate command that made it again to complete it")


def _file_dims(f):
    """Dimension sizes found in an open file (None where the file does not tell)."""
    n = next((f[x.name].shape[0] for x in schema.DATASETS if x.per_object and x.name in f), None)

    def size(name, minus=0):
        return f[name].shape[0] - minus if name in f else None

    return dict(
        n=n,
        n_wave=size("wave_aa"),
        n_band=size("filters"),
        n_bins=size("age_bins_yr", 1),
        n_ssp=size("ssp_age_yr"),
        n_chunks=size("chunk_done"),
        n_zh=size("zh_grid"),
    )


def _check_dataset(d, spec, dims, path):
    if spec is None:
        return
    shape = spec.resolve(dims)
    if shape is not None and d.shape != shape:
        raise ValueError(
            f"{path}: dataset {d.name.lstrip('/')} has shape {d.shape}, "
            f"the schema says {spec.shape} = {shape}"
        )
    if np.dtype(spec.dtype).kind != d.dtype.kind and not (spec.dtype == "float32" and d.dtype.kind == "f"):
        raise ValueError(
            f"{path}: dataset {d.name.lstrip('/')} has type {d.dtype}, the schema says {spec.dtype}"
        )
