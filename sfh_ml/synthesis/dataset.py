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

"""

import contextlib
import errno
import json
import os
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from ..constants import BIRTH_CLOUD_AGE_YR, HALPHA_LABEL, MAX_AGE_YR, TRAINING_SIGMA_KMS, ZH_RANGE
from ..files import output_lock, tmp_path
from ..utils import check_positive_int
from . import schema
from .dust import CF00_SLOPE, DUST_LAWS
from .instrument import MUSE_DWAVE_AA, MUSE_N_WAVE, MUSE_WAVE_START_AA, SKY_Z_RANGE
from .parametric import PARAMETRIC_FAMILIES, parametric_families
from .perturbations import draw_lsf_scale, flux_calibration_error, shift_spectra, sky_residuals
from .photometry import PHANGS_FILTERS, phangs_snr
from .schema import SCHEMA_VERSION
from .sfh import (
    YOUNG_BIN_EDGES_YR,
    ChemicalEvolution,
    DenseBasis,
    SkewNormalBurst,
    concatenate,
    default_age_bins,
)
from .ssp import LIBRARY_VARIANTS, load_library
from .synthesizer import LibraryMix, SynthesisParams, Synthesizer, bin_light

__all__ = [
    "DatasetConfig",
    "generate",
    "generate_chunk",
    "read_dataset",
    "FAMILIES",
    "LIBRARIES",
    "SCHEMA_VERSION",
]
__doc__ += schema.describe()

TRAINING_FAMILIES = ("skewnormal", "densebasis", "mix")
FAMILIES = (*TRAINING_FAMILIES, *PARAMETRIC_FAMILIES, "parametric")
LIBRARIES = (*LIBRARY_VARIANTS, "mix")
# Options of held-out worlds and their defaults (the training set's): left out of the stored config
# at these values, so files made before they existed keep their bytes.
WORLD_DEFAULTS = dict(
    dust_law="cf00",
    dust_slope=CF00_SLOPE,
    birth_cloud_age_yr=BIRTH_CLOUD_AGE_YR,
    flux_calibration=0.0,
    lsf_error=0.0,
    wave_shift_kms=0.0,
    sky_residual=0.0,
    library_mix=(0.0, 1.0),
    parametric_frac=0.0,
)
# spawn_key (chunk, k) of each option's random stream
_STREAMS = dict(family=1, library_mix=2, flux_calibration=3, lsf_error=4, wave_shift_kms=5, sky_residual=6)


# The largest set generate accepts: 10^8 objects are ~3 TB of chunks plus the file (about 30 kB per
# object), a week of synthesis on 16 cores; more is a typing error (a count of 2**63 would spin for
# minutes building its list of chunks before any other check).
MAX_N = 10**8


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
    drawn log-uniformly, the rest uniformly (the ``"phangs"`` photometric S/N: log-normally).

    Parameters
    ----------
    n : int
        Number of objects.
    seed : int
        Master seed.
    family : str
        SFH family. Training families: ``"skewnormal"``, ``"densebasis"``, ``"mix"`` (each object from
        either, skew-normal with probability ``mix_skewnormal``). Held-out families
        (:mod:`sfh_ml.synthesis.parametric`): ``"delayedtau"`` (delayed tau + burst), ``"exptau"``
        (exponential), ``"truncated"`` (constant, then quenched), ``"lognormal"``, ``"doublepl"``
        (double power law), or ``"parametric"`` (each object from one of these five, equal odds);
        everything else is drawn as for ``"mix"``, from the same random numbers. See also
        ``parametric_frac``.
    snr : (float, float)
        S/N per MUSE pixel (5300-5700 A continuum).
    snr_phot : "phangs" or (float, float)
        S/N of the HST fluxes: ``"phangs"`` draws a S/N per object and band with the spread of the
        PHANGS-HST cluster catalogues (F275W the noisiest; approximate, see
        :func:`sfh_ml.synthesis.photometry.phangs_snr`); a range draws one S/N per object for all
        bands (log-uniform, the seed's behaviour with (20, 20)).
    sky_frac : (float, float)
        Fraction of the spectrum's 5300-5700 A variance from the night sky and the detector
        (uniform): near 1 for faint, sky-dominated disc regions, near 0 for bright cluster
        apertures (see :func:`sfh_ml.synthesis.instrument.noise_sigma`).
    sky_z : (float, float)
        Redshift at which the sky lines and the throughput fall on the rest-frame spectrum (uniform;
        default :data:`sfh_ml.synthesis.instrument.SKY_Z_RANGE`).
    sigma_kms : (float, float)
        Stellar velocity dispersion, km/s: by default 150-350 (PHANGS bulges and massive-cluster
        apertures; colder disc spectra are broadened to 150 km/s before prediction).
    sigma_gas_kms : (float, float)
        Gas velocity dispersion, km/s.
    tau_bc, tau_ism : (float, float)
        V-band optical depths (birth cloud, ISM).
    log_u : (float, float)
        Ionisation parameter.
    n_bins : int
        Number of log-spaced target age bins from 10 Myr to 14.1 Gyr (the seed's 16); the young bins
        come on top of them (``len(young_bins_yr) + n_bins`` bins in all, 19 by default).
    young_bins_yr : tuple of float
        Edges of the target bins below 10 Myr, in years, increasing (default 1, 3 and 6 Myr: bins
        1-3, 3-6 and 6-10 Myr, the first one also holding the stars younger than 1 Myr); ``()`` gives
        only the log-spaced bins, the first from 0 to the next log edge. See
        :func:`sfh_ml.synthesis.sfh.default_age_bins`.
    n_tx, alpha : int, float
        Dense-basis parameters.
    mix_skewnormal : float
        Fraction of skew-normal histories in ``mix``.
    chunk_size : int
        Objects per independently seeded chunk.
    filters : tuple of str
        pyphot band names.
    library : {"emiles", "bc03", "mix"}
        SSP library of the stars (see :mod:`sfh_ml.synthesis.ssp`): ``"bc03"`` makes held-out sets
        whose stellar spectra the network (trained on ``"emiles"``) has never seen; everything else
        is drawn and computed the same way, from the same random numbers. ``"mix"``: each object's
        stars are w E-MILES + (1 - w) BC03, w uniform in ``library_mix`` (domain randomisation; see
        :class:`sfh_ml.synthesis.synthesizer.LibraryMix`; the file's ``bin_light`` is E-MILES').
    dust_law : {"cf00", "calzetti", "smc"}
        Curve of the diffuse-ISM screen (:func:`sfh_ml.synthesis.dust.dust_curve`, normalised at
        5500 A); the birth clouds keep the CF00 power law.
    dust_slope : float
        Index of the ISM power law for ``"cf00"`` (default -0.7, CF00).
    birth_cloud_age_yr : float
        Age at which stars leave their birth clouds, years (default 1e7; any value in (0, 1e9]).
    flux_calibration : float
        Rms of a smooth multiplicative flux-calibration error of the spectra (Legendre orders 1-3,
        :func:`sfh_ml.synthesis.perturbations.flux_calibration_error`), e.g. 0.03; 0: none.
    lsf_error : float
        Largest fractional error of the MUSE LSF width: each object is observed with an LSF
        (1 + e) times the nominal one, e uniform in [-lsf_error, lsf_error]; 0: none.
    wave_shift_kms : float
        Rms (normal) of a residual wavelength-calibration / redshift error, km/s; 0: none.
    sky_residual : float
        Amplitude of sky-subtraction residuals at the night-sky lines, in units of the local noise
        (:func:`sfh_ml.synthesis.perturbations.sky_residuals`); 0: none.
    library_mix : (float, float)
        Range of the E-MILES share w for ``library="mix"`` (uniform).
    parametric_frac : float
        With a training family: the fraction of objects (each with this probability) whose history
        is drawn instead from one of the five parametric families, equal odds (domain randomisation
        of the histories; everything else is drawn as without it). 0: none.
    """

    n: int
    seed: int = 42
    family: str = "mix"
    snr: tuple = (50.0, 50.0)
    snr_phot: tuple | str = "phangs"
    sigma_kms: tuple = TRAINING_SIGMA_KMS
    sigma_gas_kms: tuple = (20.0, 80.0)
    tau_bc: tuple = (0.0, 2.0)
    tau_ism: tuple = (0.0, 1.0)
    log_u: tuple = (-4.0, -1.5)
    n_bins: int = 16
    young_bins_yr: tuple = YOUNG_BIN_EDGES_YR
    n_tx: int = 3
    alpha: float = 1.0
    mix_skewnormal: float = 0.5
    chunk_size: int = 1024
    filters: tuple = field(default=PHANGS_FILTERS)
    sky_frac: tuple = (0.0, 0.9)
    sky_z: tuple = SKY_Z_RANGE
    library: str = "emiles"
    dust_law: str = WORLD_DEFAULTS["dust_law"]
    dust_slope: float = WORLD_DEFAULTS["dust_slope"]
    birth_cloud_age_yr: float = WORLD_DEFAULTS["birth_cloud_age_yr"]
    flux_calibration: float = WORLD_DEFAULTS["flux_calibration"]
    lsf_error: float = WORLD_DEFAULTS["lsf_error"]
    wave_shift_kms: float = WORLD_DEFAULTS["wave_shift_kms"]
    sky_residual: float = WORLD_DEFAULTS["sky_residual"]
    library_mix: tuple = WORLD_DEFAULTS["library_mix"]
    parametric_frac: float = WORLD_DEFAULTS["parametric_frac"]

    def __post_init__(self):
        self.n = check_positive_int(self.n, "n", high=MAX_N)  # before anything: 2**63 would spin
        if self.library not in LIBRARIES:
            raise ValueError(f"unknown SSP library {self.library!r}; choose one of {LIBRARIES}")
        self._check_world()
        if self.family not in FAMILIES:
            raise ValueError(f"unknown SFH family {self.family!r}; choose one of {FAMILIES}")
        ranges = ["snr", "sigma_kms", "sigma_gas_kms", "tau_bc", "tau_ism", "log_u", "sky_frac", "sky_z"]
        if isinstance(self.snr_phot, str):
            if self.snr_phot != "phangs":
                raise ValueError(f'snr_phot must be "phangs" or a (min, max) range, got {self.snr_phot!r}')
        else:
            ranges.append("snr_phot")
        for name in ranges:
            setattr(self, name, _pair(getattr(self, name), name))
        if self.snr[0] <= 0 or (self.snr_phot != "phangs" and self.snr_phot[0] <= 0):
            raise ValueError(f"S/N must be > 0, got snr={self.snr}, snr_phot={self.snr_phot}")
        if self.sky_frac[0] < 0 or self.sky_frac[1] > 1:
            raise ValueError(f"sky_frac must lie in [0, 1], got {self.sky_frac}")
        if self.sky_z[0] < 0 or self.sky_z[1] > 0.1:
            raise ValueError(f"sky_z must lie in [0, 0.1], got {self.sky_z}")
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
        if self.snr_phot == "phangs":
            phangs_snr(self.filters, 1, np.random.default_rng(0))  # every band has a PHANGS median
        self.young_bins_yr = tuple(
            float(a) for a in np.atleast_1d(np.asarray(self.young_bins_yr, dtype=float))
        )
        default_age_bins(self.n_bins, self.young_bins_yr)  # validates n_bins and young_bins_yr
        DenseBasis(self.n_tx, self.alpha)  # validates n_tx, alpha

    def _check_world(self):
        if self.dust_law not in DUST_LAWS:
            raise ValueError(f"unknown dust law {self.dust_law!r}; choose one of {DUST_LAWS}")
        self.dust_slope = float(self.dust_slope)
        if not np.isfinite(self.dust_slope) or (self.dust_law != "cf00" and self.dust_slope != CF00_SLOPE):
            raise ValueError(
                f"dust_slope must be finite, and applies to dust_law='cf00' only (got {self.dust_slope})"
            )
        self.birth_cloud_age_yr = float(self.birth_cloud_age_yr)
        if not 0 < self.birth_cloud_age_yr <= 1e9:
            raise ValueError(f"birth_cloud_age_yr must be in (0, 1e9] yr, got {self.birth_cloud_age_yr}")
        limits = dict(flux_calibration=0.5, lsf_error=0.5, wave_shift_kms=1000.0, sky_residual=100.0)
        for name, hi in limits.items():
            value = float(getattr(self, name))
            if not 0 <= value <= hi:
                raise ValueError(f"{name} must be in [0, {hi}], got {value}")
            setattr(self, name, value)
        self.library_mix = _pair(self.library_mix, "library_mix")
        if self.library_mix[0] < 0 or self.library_mix[1] > 1:
            raise ValueError(f"library_mix must lie in [0, 1], got {self.library_mix}")
        self.parametric_frac = float(self.parametric_frac)
        if not 0 <= self.parametric_frac <= 1:
            raise ValueError(f"parametric_frac must be in [0, 1], got {self.parametric_frac}")
        if self.parametric_frac > 0 and self.family not in TRAINING_FAMILIES:
            raise ValueError(
                f"parametric_frac applies to a training family ({TRAINING_FAMILIES}), not {self.family!r}"
            )

    @property
    def parametric(self):
        """Whether the set draws parametric families (and stores their parameters)."""
        return self.family not in TRAINING_FAMILIES or self.parametric_frac > 0

    @property
    def world_params(self):
        """Names of the ``world/<name>`` datasets this set stores (see :data:`schema.WORLD_PARAMS`)."""
        used = dict(
            library_weight=self.library == "mix",
            lsf_scale=self.lsf_error > 0,
            wave_shift_kms=self.wave_shift_kms > 0,
        )
        return tuple(name for name in schema.WORLD_PARAMS if used[name])

    def world_rng(self, index, option):
        """The random stream of a world option (a key of ``_STREAMS``) for chunk ``index``."""
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(index, _STREAMS[option])))

    @property
    def n_chunks(self):
        return -(-self.n // self.chunk_size)

    @property
    def age_bins_yr(self):
        """Edges of the target age bins, years, shape (len(young_bins_yr) + n_bins + 1,)."""
        return default_age_bins(self.n_bins, self.young_bins_yr)

    def to_json(self):
        """The config as JSON; world options at their defaults are left out (see :data:`WORLD_DEFAULTS`)."""
        d = asdict(self)
        for name, default in WORLD_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(text).items()})

    def families(self):
        """The SFH family objects (skew-normal, dense basis)."""
        chem = ChemicalEvolution()
        return SkewNormalBurst(chemistry=chem), DenseBasis(self.n_tx, self.alpha, chemistry=chem)

    def synthesizer(self, library=None):
        """A :class:`Synthesizer` for this config's SSP library, bands, dispersion range and dust
        (``library``: an :class:`~sfh_ml.synthesis.ssp.SSPLibrary` to use instead of loading it);
        for ``library="mix"`` a :class:`LibraryMix` of E-MILES and BC03 (``library`` not accepted)."""
        if self.library == "mix":
            if library is not None:
                raise ValueError("a library mix loads its two libraries itself: pass library=None")
            return LibraryMix(*(self._synthesizer(load_library(variant=v)) for v in ("emiles", "bc03")))
        if library is None:
            library = load_library(variant=self.library)
        elif library.variant != self.library:
            raise ValueError(
                f"this config synthesises with the {self.library!r} library, not {library.variant!r}"
            )
        return self._synthesizer(library)

    def _synthesizer(self, library):
        sigma = self.sigma_kms
        if self.lsf_error > 0:  # the stars' effective dispersions reach beyond the drawn range
            sigma = tuple(
                SynthesisParams.effective_sigma_kms(
                    np.array(sigma), np.array([1 - self.lsf_error, 1 + self.lsf_error])
                )
            )
        return Synthesizer(
            library=library,
            filters=self.filters,
            sigma_kms=sigma,
            dust_law=self.dust_law,
            dust_slope=self.dust_slope,
            birth_cloud_age_yr=self.birth_cloud_age_yr,
        )


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
    out, world = _observe(config, index, synth, sfh, params, rng)
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


# ----------------------------------------------------------------------------------------- the file
def _package_version():
    from .. import __version__  # at call time the package is fully imported: no import cycle

    return __version__


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
    f.attrs["sfh_ml_version"] = _package_version()


def _create_file(path):
    """A new HDF5 file with no time stamps anywhere (same config, same bytes)."""
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
    return h5py.File(h5py.h5f.create(os.fsencode(path), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl))


# ----------------------------------------------------------------------------------------- chunks on disk
class _ChunkStore:
    """The finished chunks of a run, one ``.npz`` file each, in ``FILE.partial/`` (with the config)."""

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
        with _signals_held():  # a stop (Ctrl-C, SIGTERM) lands after the chunk is written, not inside it
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


# ----------------------------------------------------------------------------------------- workers
_WORKER = {}


def _die_with_parent(parent_pid):
    """End this worker process when its parent is gone (``kill -9`` included)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _worker_init(config_json, path, parent_pid):
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    config = DatasetConfig.from_json(config_json)
    _WORKER.update(config=config, synth=config.synthesizer(), store=_ChunkStore(path, config))


def _worker_chunk(index):
    rec = generate_chunk(_WORKER["config"], index, _WORKER["synth"])
    _WORKER["store"].save(index, rec)
    return index, len(rec["sfh"])


class _Pool:
    """Worker processes that save chunks themselves; they are started fresh (spawn: no inherited file
    handles or locks) and end with the parent, or at once when the run stops early."""

    def __init__(self, config, path, workers):
        ctx = get_context("spawn")
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=ctx,
            initializer=_worker_init,
            initargs=(config.to_json(), str(path), os.getpid()),
        )

    def map(self, todo):
        return self.pool.map(_worker_chunk, todo)

    def close(self, finished):
        if not finished:
            # stop the running chunks now rather than after them (no public API for this before 3.14)
            for proc in list(getattr(self.pool, "_processes", {}).values()):
                proc.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _signals_held():
    """Defer SIGINT and SIGTERM to the end of the block: a stop lands between two writes, never in one.

    Raised inside ``np.savez``, the interrupt would turn into zipfile's "open writing handle" error.
    Python runs signal handlers in the main thread, so swapping the handlers works whatever thread
    of the process the signal was delivered to (masking the main thread alone does not).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in _STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if pending:
        raise KeyboardInterrupt(f"stopped by signal {pending[0]}")


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a batch system's "stop") ends the run like Ctrl-C: clean-up runs, chunks are kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
    _check_folder(path.parent)
    # SIGTERM anywhere in the run ends it like Ctrl-C, so the lock's clean-up runs (never left behind)
    with _sigterm_as_interrupt(), output_lock(path, "sfh-ml generate"):
        if _is_done(path, config, overwrite, progress):
            return path
        store = _ChunkStore(path, config)
        other = store.other_config()
        if other is not None and not overwrite:
            raise FileExistsError(
                f"{store.folder} holds an unfinished run with another config "
                f"({_differences(other, config)}): run that command again to finish it, "
                f"or pass overwrite=True (--overwrite) to discard it"
            )
        _check_disk_space(path, config, store)
        store.open()
        done = set(store.done())
        todo = [i for i in range(config.n_chunks) if i not in done]
        if progress and len(todo) < config.n_chunks:
            print(f"{path.name}: resuming, {config.n_chunks - len(todo)} of {config.n_chunks} chunks done")
        synth = _compute_chunks(config, path, store, todo, workers, progress)
        _assemble(config, path, store, synth, overwrite)
        store.remove()
    return path


def _check_folder(folder):
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


def _differences(config_json, config):
    theirs, ours = json.loads(_normalised(config_json)), json.loads(config.to_json())
    keys = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    return "; ".join(f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} asked" for k in keys)


def _is_done(path, config, overwrite, progress):
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
        else f"was made with another config ({_differences(made_with, config)})"
    )
    raise FileExistsError(f"{path} exists and {why}; pass overwrite=True (--overwrite) to replace it")


def _check_disk_space(path, config, store):
    """Refuse up front if the chunks and the assembled file will not fit on the disk."""
    try:
        with h5py.File(_library_file(), "r") as f:
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


def _library_file():
    from .ssp import library_path

    return library_path()


def _compute_chunks(config, path, store, todo, workers, progress):
    """Synthesise and save the chunks ``todo``; returns the local Synthesizer (None with workers)."""
    bar = tqdm(total=config.n, disable=not progress, unit="spec", desc=path.name)
    bar.update(config.n - sum(min(config.chunk_size, config.n - i * config.chunk_size) for i in todo))
    synth, pool, finished = None, None, False
    try:
        if workers == 1 or len(todo) <= 1:
            synth = config.synthesizer()
            for index in todo:
                rec = generate_chunk(config, index, synth)
                _save(store, index, rec, path)
                bar.update(len(rec["sfh"]))
        else:
            pool = _Pool(config, path, min(workers, len(todo)))
            for _, n_done in pool.map(todo):
                bar.update(n_done)
        finished = True
    finally:
        bar.close()
        if pool is not None:
            pool.close(finished)
    return synth


def _save(store, index, rec, path):
    try:
        store.save(index, rec)
    except OSError as err:
        raise _disk_error(err, path.parent) from err


def _assemble(config, path, store, synth, overwrite):
    """Write the HDF5 file from the saved chunks, under a temporary name, then rename it."""
    if synth is not None:
        wave_aa, library = synth.wave_aa, synth.library
    else:
        from .instrument import muse_wave

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
            f"({_package_version()}) reads version {SCHEMA_VERSION}: generate the set again with "
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
