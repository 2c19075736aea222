"""Synthetic training sets: generation in independent seeded chunks, one HDF5 file.

The file format (datasets, shapes, units, attributes) is the table of :mod:`sfh_ml.synthesis.schema`;
its listing is appended to this docstring. Chunk ``i`` draws everything from
``SeedSequence(seed, spawn_key=(i,))``, so chunks are independent: they can be computed in parallel
processes (``workers``) or on a Dask cluster (map :func:`generate_chunk` over chunk indices), and the
file is the same byte for byte for the same config.

A run is safe to interrupt and to repeat:

* each finished chunk is saved at once, atomically, as ``FILE.partial/chunk_NNNNNN.npz``; after a
  crash, ``kill -9``, SIGTERM or Ctrl-C the same command resumes from the chunks already there;
* the HDF5 file is assembled from the chunks at the end, under a temporary name, and appears under
  its final name only when complete; a finished file is never replaced without ``overwrite``;
* ``FILE.lock`` (host and pid) keeps a second run off the same output, before any expensive
  set-up, and without relying on HDF5 file locking; worker processes end with their parent;
* the free disk space is checked up front (the chunks and the file, about twice the set's size).

Held-out "worlds": the config's options beyond the training set's (other SFH families, another dust
law or birth-cloud age, a mix of SSP libraries, flux-calibration, LSF, wavelength and
sky-subtraction errors) draw their random numbers from their own streams,
``SeedSequence(seed, spawn_key=(i, k))`` with one ``k`` per option, after the training set's draws:
a world differs from the training set of the same seed only in what it changes (same dust, gas,
dispersion, S/N and noise draws), and options combine without changing each other's draws. At their
defaults the options leave the file exactly as before they existed (they are left out of the stored
config).

Here: one chunk (:func:`generate_chunk`) and the run (:func:`generate`). Their parts:
:mod:`~sfh_ml.synthesis.config` (:class:`DatasetConfig`), :mod:`~sfh_ml.synthesis.pool` (worker
processes, stops by signal, progress), :mod:`~sfh_ml.synthesis.store` (the chunks on disk, the HDF5
file, :func:`read_dataset`).

"""

from pathlib import Path

import numpy as np

from ..constants import HALPHA_LABEL
from ..files import output_lock
from . import schema
from .config import FAMILIES, LIBRARIES, TRAINING_FAMILIES, DatasetConfig
from .history_worlds import with_bursts, with_zh_tracks
from .lines import ion_scales
from .parametric import PARAMETRIC_FAMILIES, parametric_families
from .perturbations import draw_lsf_scale, flux_calibration_error, shift_spectra, sky_residuals
from .photometry import phangs_snr
from .pool import compute_chunks, sigterm_as_interrupt
from .schema import SCHEMA_VERSION
from .sfh import concatenate
from .store import ChunkStore, assemble, check_disk_space, check_folder, differences, is_done, read_dataset
from .synthesizer import SynthesisParams

__all__ = [
    "generate",
    "generate_chunk",
    # re-exported from their homes (config, store, schema) for the importers of this module
    "DatasetConfig",
    "read_dataset",
    "FAMILIES",
    "LIBRARIES",
    "SCHEMA_VERSION",
]
__doc__ += schema.describe()


def _draw(rng, bounds, n, log=False):
    lo, hi = bounds
    if lo == hi:
        return np.full(n, lo)
    if log:
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    return rng.uniform(lo, hi, n)


def generate_chunk(config, index, synthesizer=None):
    """Synthesise chunk ``index`` of a set: a pure function of (config, index).

    Parameters
    ----------
    config : DatasetConfig
    index : int
        Chunk number, 0 <= index < config.n_chunks.
    synthesizer : Synthesizer, optional
        Reused between chunks (built from the config if omitted).

    Returns
    -------
    dict of ndarray
        The per-object datasets of the schema for this chunk's objects.
    """
    if not 0 <= index < config.n_chunks:
        raise ValueError(f"chunk index {index} outside 0..{config.n_chunks - 1}")
    synth = synthesizer if synthesizer is not None else config.synthesizer()
    n = min(config.chunk_size, config.n - index * config.chunk_size)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(index,)))
    skew, dense = config.families()
    if config.family in ("mix", *PARAMETRIC_FAMILIES, "parametric"):  # a world: the training draws first
        is_skew = rng.random(n) < config.mix_skewnormal
    else:
        is_skew = np.full(n, config.family == "skewnormal")
    order = np.argsort(~is_skew, kind="stable")  # skew-normal objects first, then dense basis
    parts = []
    if is_skew.any():
        parts.append(skew.sample(int(is_skew.sum()), rng))
    if (~is_skew).any():
        parts.append(dense.sample(int((~is_skew).sum()), rng))
    sfh = concatenate(parts).take(np.argsort(order, kind="stable"))
    if config.family not in TRAINING_FAMILIES:
        sfh = _parametric_histories(config, index, n)
    elif config.parametric_frac > 0:
        sfh = _with_parametric(config, index, sfh)
    sfh = _other_histories(config, index, sfh)
    n_band = len(config.filters)
    params = SynthesisParams(
        tau_bc=_draw(rng, config.tau_bc, n),
        tau_ism=_draw(rng, config.tau_ism, n),
        log_u=_draw(rng, config.log_u, n),
        sigma_kms=_draw(rng, config.sigma_kms, n),
        sigma_gas_kms=_draw(rng, config.sigma_gas_kms, n, log=True),
        snr=_draw(rng, config.snr, n, log=True),
        snr_phot=(
            phangs_snr(config.filters, n, rng)
            if config.snr_phot == "phangs"
            else np.repeat(_draw(rng, config.snr_phot, n, log=True)[:, None], n_band, axis=1)
        ),
        sky_frac=_draw(rng, config.sky_frac, n),
        sky_z=_draw(rng, config.sky_z, n),
    )
    world = _per_object_physics(config, index, synth, params)
    out, observed = _observe(config, index, synth, sfh, params, rng)
    world.update(observed)
    edges = config.age_bins_yr
    ha = synth.library.line_index(HALPHA_LABEL)
    rec = dict(
        spectra=out["spectra"],
        spectra_noiseless=out["spectra_noiseless"],
        photometry=out["photometry"],
        photometry_noiseless=out["photometry_noiseless"],
        sfh=sfh.mass_fractions(edges).astype(np.float32),
        zh=sfh.zh_in_bins(edges).astype(np.float32),
        sfh_ssp=out["mass_ssp"].astype(np.float32),
        zh_ssp=out["zh_ssp"].astype(np.float32),
        mw_log_age=out["mw_log_age"],
        lw_log_age=out["lw_log_age"],
        mw_zh=out["mw_zh"],
        lw_zh=out["lw_zh"],
        mstar_frac=out["mstar_frac"],
        halpha_lum=out["line_lum"][:, ha],
        family=sfh.family.astype("S10"),
        **{
            k: getattr(params, k)
            for k in ("tau_bc", "tau_ism", "log_u", "sigma_kms", "sigma_gas_kms", "snr", "snr_phot")
        },
        noise=out["noise"],
        photometry_err=out["photometry_err"],
        mw_log_age_exact=out["mw_log_age_exact"],
        lw_log_age_dust=out["lw_log_age_dust"],
        lw_zh_dust=out["lw_zh_dust"],
        sky_frac=params.sky_frac,
        sky_z=params.sky_z,
    )
    sfh_params = dict(sfh.params, zh_start=sfh.zh_start, zh_final=sfh.zh_final, zh_gamma=sfh.zh_gamma)
    for name in schema.sfh_param_names(config.n_tx, config.parametric):
        rec[f"sfh_params/{name}"] = sfh_params.get(name, np.full(n, np.nan))
    for name in config.world_params:
        rec[f"world/{name}"] = world[name]
    return rec


def _parametric_histories(config, index, n, rng=None):
    """The histories of a parametric world, from the family stream (or ``rng``): one family, or each
    object from one of the five with equal odds."""
    rng = config.world_rng(index, "family") if rng is None else rng
    families = parametric_families()
    names = (config.family,) if config.family in PARAMETRIC_FAMILIES else PARAMETRIC_FAMILIES
    which = rng.integers(len(names), size=n) if len(names) > 1 else np.zeros(n, dtype=int)
    order = np.argsort(which, kind="stable")
    parts = [
        families[name].sample(int(np.sum(which == k)), rng)
        for k, name in enumerate(names)
        if np.any(which == k)
    ]
    return concatenate(parts).take(np.argsort(order, kind="stable"))


def _with_parametric(config, index, sfh):
    """``sfh`` (training histories) with a fraction ``config.parametric_frac`` of them replaced by
    parametric ones, drawn from the family stream."""
    rng = config.world_rng(index, "family")
    swap = rng.random(len(sfh)) < config.parametric_frac
    if not swap.any():
        return sfh
    param = _parametric_histories(config, index, int(swap.sum()), rng=rng)
    order = np.concatenate([np.flatnonzero(~swap), np.flatnonzero(swap)])
    return concatenate([sfh.take(np.flatnonzero(~swap)), param]).take(np.argsort(order, kind="stable"))


def _other_histories(config, index, sfh):
    """``sfh`` with the world's metallicity tracks and bursts at any age (as given: at the defaults)."""
    n = len(sfh)
    if config.zh_track != "rising" or config.zh_track_frac > 0:
        rng = config.world_rng(index, "zh_track")
        tracks = np.full(n, config.zh_track, dtype=object)
        if config.zh_track_frac > 0:
            swap = rng.random(n) < config.zh_track_frac
            tracks[swap] = rng.choice(["constant", "falling"], int(swap.sum()))
        sfh = with_zh_tracks(sfh, tracks.astype(str))
    if config.burst_any_age > 0:
        rng = config.world_rng(index, "burst_any_age")
        sfh = with_bursts(sfh, rng, chosen=rng.random(n) < config.burst_any_age)
    return sfh


def _per_object_physics(config, index, synth, params):
    """Draw the world's per-object dust law, birth-cloud age, mass-to-light perturbation and line
    ratios into ``params`` (each from its own stream; nothing at the defaults); returns the draws
    to store (a dict keyed by :data:`schema.WORLD_PARAMS` names)."""
    n, world = len(params), {}
    if isinstance(config.dust_slope, tuple):
        rng = config.world_rng(index, "dust_slope")
        params.ism_slope = world["ism_slope"] = _draw(rng, config.dust_slope, n)
    if isinstance(config.birth_cloud_age_yr, tuple):
        params.birth_cloud_age_yr = world["birth_cloud_age_yr"] = _draw(
            config.world_rng(index, "birth_cloud_age_yr"), config.birth_cloud_age_yr, n, log=True
        )
    if config.ml_slope != (0.0, 0.0):
        params.ml_slope = world["ml_slope"] = _draw(config.world_rng(index, "ml_slope"), config.ml_slope, n)
    if config.line_scatter > 0:
        params.line_scale = ion_scales(
            synth.library.line_names, config.line_scatter, config.world_rng(index, "line_scatter"), n
        )
    return world


def _observe(config, index, synth, sfh, params, rng):
    """Synthesis, the world's observational errors and the noise (see
    :mod:`sfh_ml.synthesis.perturbations`); returns the synthesizer's output and the per-object draws
    of the world (a dict keyed by :data:`schema.WORLD_PARAMS` names)."""
    world = {}
    if config.lsf_error > 0:
        params.lsf_scale = world["lsf_scale"] = draw_lsf_scale(
            config.lsf_error, config.world_rng(index, "lsf_error"), len(params)
        )
    if config.library == "mix":
        world["library_weight"] = _draw(
            config.world_rng(index, "library_mix"), config.library_mix, len(params)
        )
    perturbed = config.flux_calibration > 0 or config.wave_shift_kms > 0 or config.sky_residual > 0
    if not perturbed and config.library != "mix":
        return synth(sfh, params, rng), world  # the training path
    if config.library == "mix":
        out = synth(sfh, params, world["library_weight"], noise=False)
        noisy = synth.first.noisy
    else:
        out = synth(sfh, params, noise=False)
        noisy = synth.noisy
    wave = synth.wave_aa
    if config.wave_shift_kms > 0:
        world["wave_shift_kms"] = config.world_rng(index, "wave_shift_kms").normal(
            0.0, config.wave_shift_kms, len(params)
        )
        out["spectra_noiseless"] = shift_spectra(out["spectra_noiseless"], wave, world["wave_shift_kms"])
    out.update(noisy(out["spectra_noiseless"], out["photometry_noiseless"], params, rng))
    if config.sky_residual > 0:
        r = sky_residuals(
            out["noise"], wave, params.sky_z, config.sky_residual, config.world_rng(index, "sky_residual")
        )
        out["spectra"] += r
    if config.flux_calibration > 0:
        f = flux_calibration_error(
            wave, config.flux_calibration, config.world_rng(index, "flux_calibration"), len(params)
        )
        f = f.astype(out["spectra"].dtype)
        for key in ("spectra", "spectra_noiseless", "noise"):
            out[key] = out[key] * f
    return out, world


# ----------------------------------------------------------------------------------------- generate
def generate(config, path, workers=1, progress=True, overwrite=False):
    """Generate a synthetic set into an HDF5 file (atomic, resumable, reproducible).

    Parameters
    ----------
    config : DatasetConfig
    path : str or Path
        Output file (``.h5``). Finished chunks go to ``path + ".partial/"`` until all are there.
    workers : int
        Processes synthesising chunks in parallel (each holds its own Synthesizer, ~200 MB).
    progress : bool
        Show a tqdm progress bar.
    overwrite : bool
        Replace an existing file made with another config (or not a synthetic set), and discard an
        unfinished run of another config.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        Bad config or ``workers``.
    FileExistsError
        ``path`` exists and was made with another config, or an unfinished run of another config
        is in ``path.partial/`` (without ``overwrite``); or another process is writing ``path``
        (:class:`sfh_ml.files.OutputLockedError`).
    OSError
        The output folder does not exist, is not writable, or lacks the disk space.
    KeyboardInterrupt
        Ctrl-C or SIGTERM; the finished chunks are kept and the same call resumes from them.
    """
    path = Path(path)
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers}")
    check_folder(path.parent)
    # SIGTERM anywhere in the run ends it like Ctrl-C, so the lock's clean-up runs (never left behind)
    with sigterm_as_interrupt(), output_lock(path, "sfh-ml generate"):
        if is_done(path, config, overwrite, progress):
            return path
        store = ChunkStore(path, config)
        other = store.other_config()
        if other is not None and not overwrite:
            raise FileExistsError(
                f"{store.folder} holds an unfinished run with another config "
                f"({differences(other, config)}): run that command again to finish it, "
                f"or pass overwrite=True (--overwrite) to discard it"
            )
        check_disk_space(path, config, store)
        store.open()
        done = set(store.done())
        todo = [i for i in range(config.n_chunks) if i not in done]
        if progress and len(todo) < config.n_chunks:
            print(f"{path.name}: resuming, {config.n_chunks - len(todo)} of {config.n_chunks} chunks done")
        synth = compute_chunks(config, store, todo, generate_chunk, workers, progress, desc=path.name)
        assemble(config, path, store, synth, overwrite)
        store.remove()
    return path
