"""The pipeline that :func:`apply_cube` runs: inputs checked, set-up, chunks, outputs.

1. **Inputs**: every refusal happens before anything is written (the options, the outputs, the
   model's grids, the cube's wavelength coverage and redshift, the MAPS, catalogue and HST files).
2. **Set-up** (:mod:`~sfh_ml.observations.apply.set_up`), once, kept in ``OUT/work/setup.npz``.
3. **Chunks** (:mod:`~sfh_ml.observations.apply.chunks`), in this process or on Dask; resumable.
4. **Outputs** (:mod:`~sfh_ml.observations.apply.outputs`), all or nothing. Then ``OUT/work`` is
   removed.
"""

import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...files import atomic_write_text, output_lock
from .. import flags as qf
from ..prepare import MIN_COVERAGE
from ..readers import read_cluster_catalogue, read_hst_image, read_maps, read_muse_cube
from ..redshift import check_redshift as check_cube_redshift
from .chunks import chunk_path, forget_state, load_chunks, register_model, run_dask, run_serial
from .options import NOT_COMPARED, ApplyConfig, check_run_options, run_options
from .outputs import (
    OUTPUT_FILES,
    combine_quality,
    count_bits,
    model_fingerprint,
    save_npz,
    usable_mask,
    write_outputs,
)
from .set_up import make_setup
from .summary import LW_NOTE_NO_TABLE, LW_NOTE_TABLE

__all__ = ["WORK", "ApplyResult", "apply_cube"]

WORK = "work"  # the run's work folder in the output folder: options, set-up, chunks


@dataclass
class ApplyResult:
    """What :func:`apply_cube` wrote.

    Attributes
    ----------
    out_dir : Path
    files : dict of str to Path
        The outputs (keys of :data:`OUTPUT_FILES` that were written).
    n_bins, n_usable_bins : int
    n_clusters, n_usable_clusters : int
    n_chunks, n_chunks_computed : int
        Chunks in all, and computed by this call (the others were done by an earlier, interrupted run).
    seconds : float
        Wall time of the call.
    summary : dict
        The content of ``summary.json``.
    """

    out_dir: Path
    files: dict
    n_bins: int
    n_usable_bins: int
    n_clusters: int
    n_usable_clusters: int
    n_chunks: int
    n_chunks_computed: int
    seconds: float
    summary: dict = field(repr=False, default_factory=dict)


def _output_files(out_dir, has_catalogue, overwrite):
    """The outputs this run writes; refuse existing ones (unless ``overwrite``) or a bad folder."""
    files = {k: out_dir / v for k, v in OUTPUT_FILES.items() if has_catalogue or not k.startswith("clusters")}
    # every output of an earlier run counts, also those this run would not write (overwrite removes them)
    existing = [str(out_dir / name) for name in OUTPUT_FILES.values() if (out_dir / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"outputs exist: {existing}; pass overwrite=True (--overwrite) to replace them")
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"the output folder {out_dir} is a file: --out names a folder for apply")
    if not out_dir.parent.is_dir():
        raise OSError(f"the parent of the output folder {out_dir} does not exist: create it first")
    return files


def _open_model(model):
    """(the network, its file or None, its metadata), refusing a network without grids."""
    from ...network import get_metadata, load_model

    if isinstance(model, str | os.PathLike):
        model_obj, model_file = load_model(model), str(Path(model).resolve())
    else:  # a network already in memory
        model_obj, model_file = model, None
    meta = get_metadata(model_obj)
    if meta["wave_aa"] is None or meta["age_bins_yr"] is None:
        raise ValueError(
            "the model records no wavelength grid or age bins: rebuild it with wave_aa= and age_bins_yr="
        )
    return model_obj, model_file, meta


def _check_coverage(cube, wave_model_aa, redshift, min_fraction=MIN_COVERAGE):
    """Refuse a cube whose rest-frame wavelengths cover less than ``min_fraction`` of the model grid."""
    rest = cube.wave_aa / (1.0 + redshift)
    covered = float(np.mean((wave_model_aa >= rest[0]) & (wave_model_aa <= rest[-1])))
    if covered < min_fraction:
        raise ValueError(
            f"{cube.path}: its rest-frame wavelengths at z = {redshift:g} ({rest[0]:.0f}-{rest[-1]:.0f} A) "
            f"cover {100 * covered:.0f} % of the model's grid "
            f"({wave_model_aa[0]:.0f}-{wave_model_aa[-1]:.0f} A); at least {100 * min_fraction:.0f} % is "
            "needed. Check the redshift, or use a model trained on this cube's wavelength range"
        )
    return covered


def apply_cube(model, cube_path, out_dir, config=None, **options):
    """Apply a trained network to a MUSE cube: maps, per-bin and per-cluster tables.

    See :mod:`sfh_ml.observations.apply` for what is written, and :class:`ApplyConfig` for every
    option.

    Parameters
    ----------
    model : str, Path or keras.Model
        A trained network (:func:`sfh_ml.network.load_model`); its wavelength grid must be set.
    cube_path : str or Path
        MUSE cube (``DATA``, ``STAT``, optional ``DQ``), read lazily.
    out_dir : str or Path
        Output folder (created if missing; its parent must exist).
    config : ApplyConfig, optional
        The options of the run.
    **options
        Or the options as keywords (``redshift=``, ``maps_path=``, ``bins=``, ...: the fields of
        :class:`ApplyConfig`), which make the config; not both.

    Returns
    -------
    ApplyResult

    Raises
    ------
    TypeError
        Both ``config`` and keywords, a ``config`` that is not an :class:`ApplyConfig`, or an unknown
        keyword.
    FileExistsError
        An output exists and ``overwrite`` is False (checked before any work); with ``overwrite``, the
        outputs of an earlier run that this one does not write (e.g. ``clusters.*`` of a run with a
        catalogue) are removed.
    ValueError
        No redshift, or a redshift, ``ebv_mw``, ``sigma_obs_kms`` or ``muse_fwhm_arcsec`` out of range;
        a redshift that the cube's spectrum contradicts; a cube whose rest-frame wavelengths cover too
        little of the model's grid; a MAPS file of another grid; a catalogue none of whose positions
        is inside the cube; HST images that cannot be used; an unfinished run in ``out_dir`` with
        other options.
    sfh_ml.network.NoUsableObjectError
        Not one bin or cluster is usable (nothing is written).
    """
    if config is None:
        unknown = sorted(set(options) - set(ApplyConfig.names()))
        if unknown:
            raise TypeError(
                f"apply_cube() got unexpected keyword arguments {unknown}: its options are the fields of "
                f"ApplyConfig ({', '.join(ApplyConfig.names())})"
            )
        config = ApplyConfig(**options)
    elif options:
        raise TypeError(
            f"apply_cube takes its options as config= or as keywords, not both (config= and "
            f"{', '.join(sorted(options))}=): put them into the ApplyConfig (dataclasses.replace)"
        )
    elif not isinstance(config, ApplyConfig):
        raise TypeError(f"config must be an ApplyConfig, not {type(config).__name__}")
    return _run(model, cube_path, out_dir, config)


def _run(model, cube_path, out_dir, config):
    """:func:`apply_cube` with its options checked: the steps of the module's docstring."""
    from ...network import NoUsableObjectError

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    has_catalogue = config.catalogue_path is not None
    files = _output_files(out_dir, has_catalogue, config.overwrite)

    # Inputs: every refusal happens here, before anything is written.
    model_obj, model_file, meta = _open_model(model)
    if meta["bin_light"] is None:
        warnings.warn(LW_NOTE_NO_TABLE, stacklevel=3)  # at the caller of apply_cube
    sigma_model = float(meta.get("sigma_kms") or config.sigma_model_kms)
    cube = read_muse_cube(cube_path)
    _check_coverage(cube, meta["wave_aa"], float(config.redshift))
    if config.check_redshift:
        check_cube_redshift(cube, float(config.redshift))
    maps = read_maps(config.maps_path, cube=cube) if config.maps_path is not None else None
    catalogue = read_cluster_catalogue(config.catalogue_path) if has_catalogue else None
    images = [read_hst_image(p) for p in config.hst_paths] if config.hst_paths else None
    fingerprint = model_fingerprint(model_obj, meta)
    work = out_dir / WORK
    options = run_options(config, cube_path, fingerprint, model_file, sigma_model, work)
    register_model(fingerprint, model_obj)
    created = not out_dir.exists()
    out_dir.mkdir(exist_ok=True)
    try:
        with output_lock(work, command="sfh-ml apply"):
            check_run_options(work, options, config.overwrite)
            if not (work / "setup.npz").exists():
                setup = make_setup(options, cube, maps, catalogue, images, meta, config.progress)
                cube.close()  # unmap: the chunks open the cube themselves
                work.mkdir(exist_ok=True)
                save_npz(work / "setup.npz", setup)
                atomic_write_text(work / "options.json", json.dumps(options, indent=1))
            if model_file is None and config.client is not None and not (work / "model.keras").exists():
                model_obj.save(work / "model.keras")  # for workers in other processes
                options["model_file"] = str((work / "model.keras").resolve())
            elif model_file is None and (work / "model.keras").exists():
                options["model_file"] = str((work / "model.keras").resolve())
            with np.load(work / "setup.npz", allow_pickle=False) as f:
                setup = {k: f[k] for k in f.files}

            # Chunks: those done by an earlier, interrupted run are skipped.
            n_bin_chunks = len(setup["chunk_starts"]) - 1
            n_cl_chunks = len(setup["cl_chunk_starts"]) - 1 if has_catalogue else 0
            tasks = [("bins", i) for i in range(n_bin_chunks)] + [("clusters", i) for i in range(n_cl_chunks)]
            todo = [t for t in tasks if not chunk_path(work, *t).exists()]
            if config.client is None:
                run_serial(options, todo, config.progress, len(tasks))
            else:
                run_dask(options, todo, config.progress, len(tasks), config.client)

            # Outputs: the quality of every object, then all files or none.
            n_bins = int(setup["bin_id"].max()) + 1
            bins_res = load_chunks(work, "bins", n_bin_chunks, n_bins)
            bins_res["quality"] = combine_quality(bins_res, setup["bin_snr"], config.min_snr)
            n_usable_bins = int(usable_mask(bins_res["quality"]).sum())
            cl_res, n_cl, n_usable_cl = None, 0, 0
            if has_catalogue:
                n_cl = len(setup["cl_ra"])
                cl_res = load_chunks(work, "clusters", n_cl_chunks, n_cl)
                cl_res["quality"] = combine_quality(cl_res, cl_res["snr"], config.min_snr)
                cl_res["quality"][~setup["cl_inside"]] |= qf.OUTSIDE_CUBE
                n_usable_cl = int(usable_mask(cl_res["quality"]).sum())
            if n_usable_bins == 0 and n_usable_cl == 0:
                shutil.rmtree(work)
                what = f"{n_bins} bins" + (f" or {n_cl} clusters" if has_catalogue else "")
                raise NoUsableObjectError(
                    f"{cube.path}: not one of {what} is "
                    f"usable (flags: {count_bits(bins_res['quality'])}): check the units, the redshift and "
                    "the model; nothing was written"
                )
            seconds = time.perf_counter() - t_start
            summary = {
                "cube": options["cube"][0],
                "n_spaxels_binned": int((setup["bin_id"] >= 0).sum()),
                "n_bins": n_bins,
                "n_usable_bins": n_usable_bins,
                "n_clusters": n_cl,
                "n_usable_clusters": n_usable_cl,
                "bins_quality": count_bits(bins_res["quality"]),
                "clusters_quality": count_bits(cl_res["quality"]) if cl_res is not None else {},
                "photometry_source": str(setup["photometry_source"]),
                "sigma_source": str(setup["sigma_source"]),
                "light_weighted": LW_NOTE_NO_TABLE if meta["bin_light"] is None else LW_NOTE_TABLE,
                "n_chunks": len(tasks),
                "n_chunks_computed": len(todo),
                "seconds_before_writing": round(seconds, 2),
                "options": {k: v for k, v in options.items() if k not in NOT_COMPARED},
                "files": {k: str(p) for k, p in files.items() if k != "summary"},
            }
            write_outputs(options, setup, meta, bins_res, cl_res, cube, catalogue, files, summary)
            seconds = time.perf_counter() - t_start
            if not config.keep_work:
                shutil.rmtree(work)
                forget_state()
    except BaseException:
        if created and out_dir.exists() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    finally:
        cube.close()
    return ApplyResult(
        out_dir=out_dir,
        files={k: p for k, p in files.items()},
        n_bins=n_bins,
        n_usable_bins=n_usable_bins,
        n_clusters=n_cl,
        n_usable_clusters=n_usable_cl,
        n_chunks=len(tasks),
        n_chunks_computed=len(todo),
        seconds=seconds,
        summary=summary,
    )
