"""Synthetic training sets: generation in independent seeded chunks, one HDF5 file.

Schema of a file written by :func:`generate` (``n`` objects, ``n_wave`` MUSE pixels, ``n_bins``
age bins; fluxes in L_sun / A per M_sun formed)::

    wave_aa               (n_wave,)        air wavelengths of the spectra, Angstrom
    spectra               (n, n_wave)      noisy MUSE spectra, float32
    spectra_noiseless     (n, n_wave)      the same without noise
    photometry            (n, n_band)      noisy HST band-mean flux densities (photon-weighted <f_lambda>)
    photometry_noiseless  (n, n_band)
    filters               (n_band,)        pyphot names of the bands
    age_bins_yr           (n_bins + 1,)    edges of the target age bins; the first bin also holds
                                           younger stars, the last ends at 14.1 Gyr
    sfh                   (n, n_bins)      fraction of the mass formed in each bin (rows sum to 1)
    zh                    (n, n_bins)      mass-weighted [M/H] of the stars formed in each bin
    ssp_age_yr            (n_ssp,)         ages of the SSP library
    sfh_ssp, zh_ssp       (n, n_ssp)       the same on the SSP grid (the truth a full-spectrum fit sees)
    mw_log_age, lw_log_age, mw_zh, lw_zh   (n,)  mass-weighted (mass formed) and light-weighted
                                           (5500 A, before dust) log10 age [yr] and [M/H]
    mstar_frac            (n,)             stellar mass left per unit mass formed
    tau_bc, tau_ism, log_u, sigma_kms, sigma_gas_kms, snr, snr_phot   (n,)  synthesis parameters
    family                (n,)             "skewnormal" or "densebasis"
    sfh_params/<name>     (n,)             generator parameters (NaN where they do not apply)
    halpha_lum            (n,)             H-alpha luminosity before dust, L_sun per M_sun formed

Root attributes hold the generation config (JSON), the grid range ``zh_min``/``zh_max`` and the
sfh_ml version. Chunk ``i`` draws everything from ``SeedSequence(seed, spawn_key=(i,))``, so
chunks are independent: they can be computed in parallel processes (``workers``) or on a Dask
cluster (map :func:`generate_chunk` over chunk indices), and the file is the same byte for byte for
the same config. The file is written as ``FILE.partial`` with a per-chunk completion flag; an
interrupted run resumes where it stopped, and the final name appears only when it is complete.
"""

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from .instrument import MUSE_DWAVE_AA, MUSE_N_WAVE, MUSE_WAVE_START_AA
from .photometry import PHANGS_FILTERS
from .sfh import (
    MAX_AGE_YR,
    ZH_RANGE,
    ChemicalEvolution,
    DenseBasis,
    SkewNormalBurst,
    concatenate,
    default_age_bins,
)
from .synthesizer import SynthesisParams, Synthesizer

__all__ = ["DatasetConfig", "generate", "generate_chunk", "read_dataset", "FAMILIES", "SCHEMA_VERSION"]

FAMILIES = ("skewnormal", "densebasis", "mix")
SCHEMA_VERSION = 1


def _pair(value, name):
    v = np.atleast_1d(np.asarray(value, dtype=float))
    if v.size == 1:
        v = np.repeat(v, 2)
    if v.size != 2 or not np.all(np.isfinite(v)) or v[1] < v[0]:
        raise ValueError(f"{name} must be a value or an increasing (min, max) range, got {value!r}")
    return (float(v[0]), float(v[1]))


@dataclass
class DatasetConfig:
    """Everything that defines a synthetic set; equal configs give identical files.

    Ranges are (min, max) pairs (equal values fix the parameter); S/N and the gas dispersion are
    drawn log-uniformly, the rest uniformly.

    Parameters
    ----------
    n : int
        Number of objects.
    seed : int
        Master seed.
    family : {"skewnormal", "densebasis", "mix"}
        SFH family; ``mix`` draws each object from either with probability ``mix_skewnormal``.
    snr : (float, float)
        S/N per MUSE pixel (5300-5700 A continuum).
    snr_phot : (float, float)
        S/N of each HST flux.
    sigma_kms : (float, float)
        Stellar velocity dispersion, km/s (the seed: 150).
    sigma_gas_kms : (float, float)
        Gas velocity dispersion, km/s.
    tau_bc, tau_ism : (float, float)
        V-band optical depths (birth cloud, ISM).
    log_u : (float, float)
        Ionisation parameter.
    n_bins : int
        Number of target age bins (log-spaced, 6.3 Myr to 14.1 Gyr).
    n_tx, alpha : int, float
        Dense-basis parameters.
    mix_skewnormal : float
        Fraction of skew-normal histories in ``mix``.
    chunk_size : int
        Objects per independently seeded chunk.
    filters : tuple of str
        pyphot band names.
    """

    n: int
    seed: int = 42
    family: str = "mix"
    snr: tuple = (50.0, 50.0)
    snr_phot: tuple = (20.0, 20.0)
    sigma_kms: tuple = (150.0, 150.0)
    sigma_gas_kms: tuple = (20.0, 80.0)
    tau_bc: tuple = (0.0, 2.0)
    tau_ism: tuple = (0.0, 1.0)
    log_u: tuple = (-4.0, -1.5)
    n_bins: int = 16
    n_tx: int = 3
    alpha: float = 1.0
    mix_skewnormal: float = 0.5
    chunk_size: int = 1024
    filters: tuple = field(default=PHANGS_FILTERS)

    def __post_init__(self):
        if int(self.n) != self.n or self.n <= 0:
            raise ValueError(f"n must be a positive integer, got {self.n}")
        self.n = int(self.n)
        if self.family not in FAMILIES:
            raise ValueError(f"unknown SFH family {self.family!r}; choose one of {FAMILIES}")
        for name in ("snr", "snr_phot", "sigma_kms", "sigma_gas_kms", "tau_bc", "tau_ism", "log_u"):
            setattr(self, name, _pair(getattr(self, name), name))
        if self.snr[0] <= 0 or self.snr_phot[0] <= 0:
            raise ValueError(f"S/N must be > 0, got snr={self.snr}, snr_phot={self.snr_phot}")
        if self.sigma_kms[0] < 0 or self.sigma_gas_kms[0] <= 0:
            raise ValueError("velocity dispersions must be >= 0 km/s (gas: > 0)")
        if self.tau_bc[0] < 0 or self.tau_ism[0] < 0:
            raise ValueError(f"optical depths must be >= 0, got tau_bc={self.tau_bc}, tau_ism={self.tau_ism}")
        if self.log_u[0] < -4.0 or self.log_u[1] > 0.0:
            raise ValueError(f"log_u {self.log_u} is outside the Cloudy grid [-4, 0]")
        if int(self.chunk_size) != self.chunk_size or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {self.chunk_size}")
        if not 0 <= self.mix_skewnormal <= 1:
            raise ValueError(f"mix_skewnormal must be in [0, 1], got {self.mix_skewnormal}")
        self.filters = tuple(self.filters)
        default_age_bins(self.n_bins)  # validates n_bins
        DenseBasis(self.n_tx, self.alpha)  # validates n_tx, alpha

    @property
    def n_chunks(self):
        return -(-self.n // self.chunk_size)

    @property
    def age_bins_yr(self):
        return default_age_bins(self.n_bins)

    def to_json(self):
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(text).items()})

    def families(self):
        """The SFH family objects (skew-normal, dense basis)."""
        chem = ChemicalEvolution()
        return SkewNormalBurst(chemistry=chem), DenseBasis(self.n_tx, self.alpha, chemistry=chem)

    def synthesizer(self, library=None):
        """A :class:`Synthesizer` for this config's grid, bands and dispersion range."""
        return Synthesizer(library=library, filters=self.filters, sigma_kms=self.sigma_kms)


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
    if config.family == "mix":
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
    params = SynthesisParams(
        tau_bc=_draw(rng, config.tau_bc, n),
        tau_ism=_draw(rng, config.tau_ism, n),
        log_u=_draw(rng, config.log_u, n),
        sigma_kms=_draw(rng, config.sigma_kms, n),
        sigma_gas_kms=_draw(rng, config.sigma_gas_kms, n, log=True),
        snr=_draw(rng, config.snr, n, log=True),
        snr_phot=_draw(rng, config.snr_phot, n, log=True),
    )
    out = synth(sfh, params, rng)
    edges = config.age_bins_yr
    ha = synth.library.line_index("H  1  6562.80A")
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
    )
    sfh_params = dict(sfh.params, zh_start=sfh.zh_start, zh_final=sfh.zh_final, zh_gamma=sfh.zh_gamma)
    for name in _sfh_param_names(config):
        rec[f"sfh_params/{name}"] = sfh_params.get(name, np.full(n, np.nan))
    return rec


def _sfh_param_names(config):
    return (
        "peak_age_yr",
        "width_yr",
        "skew",
        "burst_age_yr",
        "burst_duration_yr",
        "burst_frac",
        *(f"tx{i + 1}" for i in range(config.n_tx)),
        "zh_start",
        "zh_final",
        "zh_gamma",
    )


def _create(f, config, synth):
    n, n_wave, n_band = config.n, synth.wave_aa.size, len(config.filters)
    n_ssp = synth.library.age_yr.size
    cs = min(config.chunk_size, n)
    layout = {
        "spectra": ((n, n_wave), np.float32),
        "spectra_noiseless": ((n, n_wave), np.float32),
        "photometry": ((n, n_band), np.float32),
        "photometry_noiseless": ((n, n_band), np.float32),
        "sfh": ((n, config.n_bins), np.float32),
        "zh": ((n, config.n_bins), np.float32),
        "sfh_ssp": ((n, n_ssp), np.float32),
        "zh_ssp": ((n, n_ssp), np.float32),
        "family": ((n,), "S10"),
    }
    for name in (
        "mw_log_age",
        "lw_log_age",
        "mw_zh",
        "lw_zh",
        "mstar_frac",
        "halpha_lum",
        "tau_bc",
        "tau_ism",
        "log_u",
        "sigma_kms",
        "sigma_gas_kms",
        "snr",
        "snr_phot",
    ):
        layout[name] = ((n,), np.float64)
    for name in _sfh_param_names(config):
        layout[f"sfh_params/{name}"] = ((n,), np.float64)
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    h5py.h5g.create(f.id, b"sfh_params", gcpl=gcpl)
    for name, (shape, dtype) in layout.items():
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # fixed layout: same bytes whatever the write order
        chunks = (min(cs, 256),) + shape[1:]
        f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, dcpl=dcpl, track_times=False)
    f.create_dataset("wave_aa", data=synth.wave_aa, track_times=False)
    f.create_dataset("filters", data=np.array(config.filters, dtype="S32"), track_times=False)
    f.create_dataset("age_bins_yr", data=config.age_bins_yr, track_times=False)
    f.create_dataset("ssp_age_yr", data=synth.library.age_yr, track_times=False)
    f.create_dataset("chunk_done", data=np.zeros(config.n_chunks, dtype=bool), track_times=False)
    f.attrs["config"] = config.to_json()
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["zh_min"], f.attrs["zh_max"] = ZH_RANGE
    f.attrs["max_age_yr"] = MAX_AGE_YR
    f.attrs["flux_unit"] = "L_sun / Angstrom per M_sun formed"
    f.attrs["wave_grid"] = f"MUSE: {MUSE_WAVE_START_AA} + {MUSE_DWAVE_AA} * arange({MUSE_N_WAVE}) A (air)"
    f.attrs["complete"] = False


_WORKER = {}


def _worker_init(config_json):
    config = DatasetConfig.from_json(config_json)
    _WORKER["config"] = config
    _WORKER["synth"] = config.synthesizer()


def _worker_chunk(index):
    return index, generate_chunk(_WORKER["config"], index, _WORKER["synth"])


def generate(config, path, workers=1, progress=True, overwrite=False):
    """Generate a synthetic set into an HDF5 file (atomic, resumable, reproducible).

    Parameters
    ----------
    config : DatasetConfig
    path : str or Path
        Output file (``.h5``). Work goes to ``path + ".partial"`` until complete.
    workers : int
        Processes synthesising chunks in parallel (each holds its own Synthesizer, ~200 MB).
    progress : bool
        Show a tqdm progress bar.
    overwrite : bool
        Replace an existing complete file made with another config.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        Bad config, or an existing file made with another config (without ``overwrite``).
    OSError
        The output directory does not exist or is not writable.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    if not path.parent.is_dir():
        raise OSError(f"output directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise OSError(f"output directory {path.parent} is not writable")
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers}")
    if path.exists():
        with h5py.File(path, "r") as f:
            same = f.attrs.get("config") == config.to_json() and bool(f.attrs.get("complete"))
        if same:
            if progress:
                print(f"{path} is already complete with this config")
            return path
        if not overwrite:
            raise ValueError(
                f"{path} exists and was made with another config; pass overwrite=True (--overwrite)"
            )
    mode = "w"
    if partial.exists():
        try:
            with h5py.File(partial, "r") as f:
                if f.attrs.get("config") == config.to_json():
                    mode = "r+"
        except OSError:
            mode = "w"  # a partial file that cannot be read is started again
    synth = config.synthesizer() if workers == 1 else None
    with _open(partial, mode) as f:
        if mode == "w":
            _create(f, config, synth if synth is not None else config.synthesizer())
        done = f["chunk_done"][()]
        todo = [int(i) for i in np.flatnonzero(~done)]
        bar = tqdm(
            total=config.n,
            initial=int(done.sum()) * config.chunk_size if todo else config.n,
            disable=not progress,
            unit="spec",
            desc=path.name,
        )
        if todo and workers == 1:
            results = (_local(config, i, synth) for i in todo)
        elif todo:
            pool = ProcessPoolExecutor(workers, initializer=_worker_init, initargs=(config.to_json(),))
            results = pool.map(_worker_chunk, todo)
        else:
            results = iter(())
        try:
            for index, rec in results:
                lo = index * config.chunk_size
                hi = lo + len(rec["sfh"])
                for name, value in rec.items():
                    f[name][lo:hi] = value
                f["chunk_done"][index] = True
                f.flush()
                bar.update(hi - lo)
        finally:
            bar.close()
            if todo and workers > 1:
                pool.shutdown(cancel_futures=True)
        f.attrs["complete"] = True
    os.replace(partial, path)
    return path


def _open(path, mode):
    """Open for resuming, or create with no time stamps anywhere (same config, same bytes)."""
    if mode == "r+":
        return h5py.File(path, "r+")
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
    return h5py.File(h5py.h5f.create(os.fsencode(path), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl))


def _local(config, index, synth):
    return index, generate_chunk(config, index, synth)


def read_dataset(path, keys=None, index=None):
    """Read a synthetic set (or part of it) into memory.

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
        Per the schema in the module docstring; byte strings are decoded; root attributes are
        under ``"attrs"``.
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
    out = {}
    with h5py.File(path, "r") as f:
        n = f["sfh"].shape[0]
        names = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        wanted = names if keys is None else list(keys)
        for name in wanted:
            if name not in f:
                raise KeyError(f"{path} has no dataset {name!r}")
            d = f[name]
            value = (
                d[index]
                if (index is not None and d.ndim and d.shape[0] == n and name != "chunk_done")
                else d[()]
            )
            if value.dtype.kind == "S":
                value = value.astype(str)
            out[name] = value
        out["attrs"] = dict(f.attrs)
    return out
