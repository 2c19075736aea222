"""Applying a trained network to a MUSE cube: spatial bins, chunks, maps and tables.

:func:`apply_cube` runs the whole path from the files of a galaxy to its maps:

1. **Set-up** (once, kept in ``OUT/work/setup.npz``): open the cube lazily, check that its rest-frame
   wavelengths cover the model's grid, bin the spaxels on the cube's own S/N
   (:mod:`~sfh_ml.observations.binning`), average the MAPS kinematics over each bin (flux-weighted),
   put the HST images on the spaxel grid at the MUSE PSF and sum them over each bin
   (:mod:`~sfh_ml.observations.hst`), place the catalogue's clusters on the grid.
2. **Chunks**: the bins are cut into chunks of nearby bins (at most ``chunk_bins`` bins and
   :data:`MAX_CHUNK_SPAXELS` spaxels), the clusters into chunks of :data:`CLUSTER_CHUNK`. Each chunk
   is one call of :func:`run_chunk`, a pure function of (options, kind, index): it sums the member
   spectra of its bins from the lazy cube (bounded memory), prepares them
   (:func:`~sfh_ml.observations.prepare.prepare_spectra`), adds the photometry, predicts
   (:func:`sfh_ml.network.predict`) and writes ``OUT/work/{kind}_XXXXX.npz`` atomically. A chunk whose
   file exists is skipped, so a killed run (even ``kill -9``) resumes where it stopped. Chunks run
   one after the other in this process (the network uses every core) or as tasks on a Dask cluster
   (``client``); both give identical results, because each chunk is computed by the same function
   from the same inputs.
3. **Outputs** (written atomically, all or nothing, never over existing files unless ``overwrite``):
   ``maps.fits``, ``bins.fits`` + ``bins.ecsv`` and, with a catalogue, ``clusters.fits`` +
   ``clusters.ecsv``, and ``summary.json``. Then ``OUT/work`` is removed.

The options of a run are stored in ``OUT/work/options.json``: a run with other options on the same
folder is refused, naming the difference (``overwrite=True`` starts it again).

Quality flag of every output object (``QUALITY``): the bits of :mod:`sfh_ml.observations.flags`
(bits 0-7: no data, low coverage, too broad, no kinematics, negative flux, low S/N, outside the cube)
OR the network's quality flags (:data:`sfh_ml.network.QUALITY_FLAGS`) shifted left by
:data:`NETWORK_FLAG_SHIFT` (bits 8-15). Predictions are NaN where the network found the object
unusable; the other bits inform. With ``goodness`` each prepared spectrum's prediction
is re-synthesised and scored against it (:mod:`sfh_ml.network.goodness`, with the prepared
variance): the maps get ``OOD_SCORE`` and ``CHI2_PIXEL``, the tables ``chi2_pixel``, ``phot_rms`` and
``ood_score``, and ``NETWORK_OUT_OF_DISTRIBUTION`` marks the objects whose score exceeds 1.
"""

import hashlib
import io
import json
import os
import shutil
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..constants import TRAINING_SIGMA_KMS
from ..files import atomic_write_text, output_lock, tmp_path
from ..network.goodness import GOODNESS_KEYS
from ..utils import check_range
from . import flags as qf
from .binning import SpatialBins, continuum_snr, grid_bins, no_bins, voronoi_bins
from .prepare import (
    MIN_COVERAGE,
    SIGMA_TOLERANCE_KMS,
    mw_transmission,
    photometry_to_flux_density,
    prepare_spectra,
)
from .readers import read_cluster_catalogue, read_hst_image, read_maps, read_muse_cube
from .redshift import MIN_REDSHIFT
from .redshift import check_redshift as check_cube_redshift

__all__ = [
    "SIGMA_MODEL_KMS",
    "SIGMA_MODEL_MAX_KMS",
    "DEFAULT_BINS",
    "DEFAULT_CHUNK_BINS",
    "MAX_CHUNK_SPAXELS",
    "CLUSTER_CHUNK",
    "MIN_SNR",
    "YOUNG_EDGE_YR",
    "OLD_EDGE_YR",
    "NETWORK_FLAG_SHIFT",
    "OUTPUT_FILES",
    "ApplyResult",
    "parse_bins",
    "quality_bits",
    "age_fraction_edges",
    "summarise_histories",
    "apply_cube",
    "run_chunk",
]

# Stellar dispersions of the training spectra (km/s): narrower spectra are broadened to the lower end,
# broader ones than the upper end are flagged TOO_BROAD.
SIGMA_MODEL_KMS, SIGMA_MODEL_MAX_KMS = TRAINING_SIGMA_KMS
DEFAULT_BINS = "voronoi:50"
DEFAULT_CHUNK_BINS = 1024  # bins per chunk: 1024 x 3681 channels x 8 bytes = 30 MB per summed array
MAX_CHUNK_SPAXELS = 16384  # spaxels per chunk (a chunk of large Voronoi bins is cut earlier)
CLUSTER_CHUNK = 256  # clusters per chunk
PREDICT_BATCH = 512  # spectra prepared at a time (prepare_spectra holds ~10 arrays of this x n_wave)
ECSV_BLOCK_ROWS = 20_000  # rows formatted at a time when writing ECSV tables
READ_VOXELS = 2**23  # cube values read at a time when summing a chunk's spectra (64 MB as float64)
MIN_SNR = 3.0  # below this continuum S/N per pixel an object is flagged LOW_SNR (still predicted)
# Mass fractions: young, intermediate and old populations, split at the model's age-bin edges nearest
# (in log age) to these ages; the edges used are written into every output.
YOUNG_EDGE_YR, OLD_EDGE_YR = 1e8, 1e9
APERTURE_RADIUS_FWHM = 1.0  # cluster aperture radius, in units of the MUSE PSF FWHM (94 % of a point source)
ANNULUS_FWHM = (1.5, 2.5)  # background annulus radii, same units
NETWORK_FLAG_SHIFT = 8  # the network's quality bits are stored from this bit on
OPTIONS_VERSION = 1
NOT_COMPARED = ("model_file", "work")  # options that may differ between a run and its resumption
WORK = "work"
OUTPUT_FILES = {
    "maps": "maps.fits",
    "bins_fits": "bins.fits",
    "bins_ecsv": "bins.ecsv",
    "clusters_fits": "clusters.fits",
    "clusters_ecsv": "clusters.ecsv",
    "summary": "summary.json",
}
PREDICTION_KEYS = ("sfh", "sfh_cum", "sfh_cum_sigma", "zh", "zh_sigma")
# What summary.json says of the light-weighted means (LW_LOG_AGE, LW_ZH), with a light table or without.
LW_NOTE_TABLE = "weighted by the 5500 A light of each bin from the model's light table (bin_light)"
LW_NOTE_NO_TABLE = (
    "the model carries no light table (bin_light, zh_grid: trained on a set made before they existed): "
    "the light-weighted means LW_LOG_AGE and LW_ZH are NaN; retrain on a current set to get them"
)

_PREDICT_LOCK = threading.Lock()  # one Keras predict at a time per process (threaded Dask workers)
_MODEL_LOCK = threading.Lock()
_STATE = {}  # per thread: the opened cube and bins of a work folder
_MODELS = {}  # per process: models by fingerprint (given to apply_cube, or loaded from their file)


# ----------------------------------------------------------------------------------------- small helpers
def parse_bins(text):
    """``"voronoi:50"`` -> ("voronoi", 50.0); ``"grid:4"`` -> ("grid", 4); ``"none"`` -> ("none", None).

    Raises
    ------
    ValueError
        Anything else.
    """
    text = str(text).strip().lower()
    kind, _, value = text.partition(":")
    try:
        if kind == "voronoi" and float(value) > 0:
            return kind, float(value)
        if kind == "grid" and int(value) >= 1 and float(value) == int(value):
            return kind, int(value)
    except ValueError:
        pass
    if kind == "none" and not value:
        return kind, None
    raise ValueError(
        f"bins {text!r} not understood: use 'voronoi:S/N' (e.g. voronoi:50), 'grid:N' (N x N spaxels, "
        "e.g. grid:4) or 'none' (one bin per spaxel)"
    )


def quality_bits():
    """Name of each bit of the output ``QUALITY`` flag: {name: bit value}."""
    from ..network import QUALITY_FLAGS

    bits = dict(qf.FLAG_BITS)
    bits.update({f"NETWORK_{k.upper()}": v << NETWORK_FLAG_SHIFT for k, v in QUALITY_FLAGS.items()})
    return bits


def age_fraction_edges(age_bins_yr, young_yr=YOUNG_EDGE_YR, old_yr=OLD_EDGE_YR):
    """Indices of the model's age-bin edges nearest (in log age) to the young and old limits.

    Returns
    -------
    i_young, i_old : int
        Edges ``age_bins_yr[i_young]`` and ``age_bins_yr[i_old]``, with 0 < i_young < i_old < n_bins.
    """
    edges = np.log10(np.asarray(age_bins_yr, dtype=float))
    inner = np.arange(1, edges.size - 1)
    if inner.size < 2:
        raise ValueError("the model needs at least three age bins for young, intermediate and old fractions")
    i_young = int(inner[np.argmin(np.abs(edges[inner] - np.log10(young_yr)))])
    i_old = int(inner[np.argmin(np.abs(edges[inner] - np.log10(old_yr)))])
    if i_old <= i_young:
        i_old = min(i_young + 1, edges.size - 2)
    return i_young, i_old


def summarise_histories(pred, age_bins_yr, bin_light=None, zh_grid=None):
    """Mean ages, [M/H] and mass fractions of predicted histories, with their uncertainties.

    Uncertainties, from the network's per-bin sigmas taken as independent (the network gives no
    covariance, so these are first estimates): the mass-weighted log age is
    a_N - sum_k c_k (a_(k+1) - a_k) with c_k the cumulative fractions and a_k the log bin centres, so
    sigma^2 = sum_k (a_(k+1) - a_k)^2 sigma_c,k^2; the mass-weighted [M/H] sum_k s_k zh_k has
    sigma^2 = sum_k s_k^2 sigma_zh,k^2 (the SFH's own error left out). Fractions: young = c at the young
    edge (sigma: its cumulative sigma), old = 1 - c at the old edge (likewise), intermediate = their
    difference (sigmas in quadrature). Light-weighted means are weighted by
    :func:`sfh_ml.network.metrics.bin_light_weights` (the model's light table); they get no
    uncertainty, and are NaN for a model without a table.

    Parameters
    ----------
    pred : dict
        ``sfh``, ``sfh_cum``, ``sfh_cum_sigma``, ``zh``, ``zh_sigma``, each shape (n, n_bins).
    age_bins_yr : ndarray, shape (n_bins + 1,)
    bin_light, zh_grid : ndarray, shape (n_bins, n_zh) and (n_zh,), optional
        The model's light table (``get_metadata(model)["bin_light"]``, ``["zh_grid"]``).

    Returns
    -------
    dict of ndarray, shape (n,)
        ``mw_log_age``, ``mw_log_age_err``, ``lw_log_age`` (log10 yr), ``mw_zh``, ``mw_zh_err``,
        ``lw_zh`` (dex), ``f_young``, ``f_young_err``, ``f_intermediate``, ``f_intermediate_err``,
        ``f_old``, ``f_old_err`` (mass fractions).
    """
    from ..network import metrics

    sfh, cum, cum_sig = pred["sfh"], pred["sfh_cum"], pred["sfh_cum_sigma"]
    zh, zh_sig = pred["zh"], pred["zh_sigma"]
    log_centre = np.log10(metrics.bin_centres_yr(age_bins_yr))
    i_young, i_old = age_fraction_edges(age_bins_yr)
    with np.errstate(invalid="ignore"):
        means = metrics.mean_quantities(sfh, zh, age_bins_yr, bin_light, zh_grid)
        no_light = np.full(len(sfh), np.nan)  # no light table: never an approximation
        out = {
            "mw_log_age": means["mw_log_age"],
            "mw_log_age_err": np.sqrt((cum_sig[:, :-1] ** 2) @ (np.diff(log_centre) ** 2)),
            "lw_log_age": means.get("lw_log_age", no_light),
            "mw_zh": means["mw_zh"],
            "mw_zh_err": np.sqrt(np.sum((sfh * zh_sig) ** 2, axis=1)),
            "lw_zh": means.get("lw_zh", no_light),
            "f_young": cum[:, i_young - 1],
            "f_young_err": cum_sig[:, i_young - 1],
            "f_intermediate": cum[:, i_old - 1] - cum[:, i_young - 1],
            "f_intermediate_err": np.hypot(cum_sig[:, i_old - 1], cum_sig[:, i_young - 1]),
            "f_old": 1.0 - cum[:, i_old - 1],
            "f_old_err": cum_sig[:, i_old - 1],
        }
    return out


def _file_id(path):
    """Identity of an input file for the options: absolute path, size, modification time."""
    if path is None:
        return None
    path = Path(path).resolve()
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def _model_fingerprint(model, meta):
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    for key in ("version", "n_wave", "n_bands", "n_bins", "zh_range", "filters"):
        digest.update(repr(meta[key]).encode())
    for key in ("wave_aa", "age_bins_yr"):
        digest.update(b"none" if meta[key] is None else np.asarray(meta[key], np.float64).tobytes())
    for key in ("bin_light", "zh_grid", "sigma_scale_sfh_cum", "sigma_scale_zh"):  # absent: as before them
        if meta[key] is not None:
            digest.update(key.encode() + np.asarray(meta[key], np.float64).tobytes())
    return digest.hexdigest()[:32]


def _save_npz(path, arrays):
    """Write arrays to ``path`` atomically (a complete file or none)."""
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _chunk_path(work, kind, index):
    return Path(work) / f"{kind}_{index:05d}.npz"


# ----------------------------------------------------------------------------------------- results
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


# ----------------------------------------------------------------------------------------- checks
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


def _check_options(work, options, overwrite):
    """Compare with the options of an earlier run in ``work``: refuse a difference unless ``overwrite``."""
    stored_path = work / "options.json"
    if not stored_path.exists():
        if work.exists():  # chunks without options: from an unknown run
            shutil.rmtree(work)
        return
    stored = json.loads(stored_path.read_text())
    keys = sorted((set(stored) | set(options)) - set(NOT_COMPARED))
    diff = [k for k in keys if stored.get(k) != options.get(k)]
    if not diff:
        return
    if overwrite:
        shutil.rmtree(work)
        return
    detail = "; ".join(f"{k}: {stored.get(k)!r} there, {options.get(k)!r} now" for k in diff)
    raise ValueError(
        f"{work.parent} holds an unfinished run with other options ({detail}): resume it with the same "
        "options, choose another output folder, or pass overwrite=True (--overwrite) to start again"
    )


# ----------------------------------------------------------------------------------------- set-up
def _make_bins(cube, kind, value, redshift, progress):
    signal, noise = continuum_snr(cube.flux, cube.var, cube.wave_aa, redshift=redshift)
    usable = np.isfinite(signal) & np.isfinite(noise) & (noise > 0)
    if not usable.any():
        raise ValueError(
            f"{cube.path}: no spaxel has finite flux and positive variance in the continuum window: an "
            "empty cube?"
        )
    if kind == "voronoi":
        bins = voronoi_bins(signal, noise, value)
    elif kind == "grid":
        bins = grid_bins(cube.shape, value, mask=usable, signal=signal, noise=noise)
    else:
        bins = no_bins(usable, signal=signal, noise=noise)
    return bins, signal


def _bin_kinematics(bins, weight, v_map, sigma_map):
    """Flux-weighted mean velocity and effective dispersion of each bin.

    A bin's summed spectrum is broadened by the spread of its spaxels' velocities as well as their
    dispersions: sigma_eff^2 = <sigma^2 + v^2> - <v>^2 (flux-weighted). Returns (v, sigma), each
    (n_bins,) or None; NaN where no member has the value.
    """
    ids = bins.bin_id.ravel()
    w = np.where(np.isfinite(weight) & (weight > 0), weight, 0.0).ravel()

    def mean(values, ok):
        num = np.bincount(ids[ok], weights=(w * values)[ok], minlength=bins.n_bins)
        den = np.bincount(ids[ok], weights=w[ok], minlength=bins.n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    v = sigma = None
    if v_map is not None:
        v_flat = v_map.ravel()
        v = mean(v_flat, (ids >= 0) & np.isfinite(v_flat))
    if sigma_map is not None:
        s_flat = sigma_map.ravel()
        v_flat = np.zeros_like(s_flat) if v_map is None else v_map.ravel()
        ok = (ids >= 0) & np.isfinite(s_flat) & np.isfinite(v_flat)
        m1 = mean(v_flat, ok)
        m2 = mean(s_flat**2 + v_flat**2, ok)
        sigma = np.sqrt(np.clip(m2 - m1**2, 0.0, None))
    return v, sigma


def _chunk_starts(sizes, max_bins, max_spaxels):
    """Start index of each chunk in a sequence of bins of the given sizes, plus the end."""
    starts, n_bins, n_sp = [0], 0, 0
    for i, size in enumerate(sizes):
        if n_bins and (n_bins + 1 > max_bins or n_sp + size > max_spaxels):
            starts.append(i)
            n_bins, n_sp = 0, 0
        n_bins += 1
        n_sp += int(size)
    starts.append(len(sizes))
    return np.asarray(starts, dtype=np.int64)


def _make_setup(options, cube, maps, catalogue, images, meta, progress):
    """Everything the chunks need besides the cube: bins, kinematics, photometry, clusters."""
    from .hst import hst_spaxel_fluxes, muse_psf_fwhm

    kind, value = parse_bins(options["bins"])
    redshift = options["redshift"]
    bins, signal = _make_bins(cube, kind, value, redshift, progress)
    v_map = maps["V_STARS"] if maps is not None and "V_STARS" in maps else None
    s_map = maps["SIGMA_STARS"] if maps is not None and "SIGMA_STARS" in maps else None
    v_bin, s_bin = _bin_kinematics(bins, signal, v_map, s_map)
    n_bins, n_bands = bins.n_bins, meta["n_bands"]
    if options["sigma_obs_kms"] is not None:
        s_bin, sigma_source = np.full(n_bins, float(options["sigma_obs_kms"])), "sigma_obs_kms"
    else:
        sigma_source = "MAPS SIGMA_STARS (+ velocity spread in the bin)" if s_bin is not None else "none"
    setup = {
        "bin_id": bins.bin_id,
        "bin_snr": bins.snr,
        "bin_kind": np.array(bins.kind),
        "target_snr": np.array(bins.target_snr),
        "v_kms": np.full(n_bins, np.nan) if v_bin is None else v_bin,
        "has_v": np.array(v_bin is not None),
        "sigma_kms": np.full(n_bins, np.nan) if s_bin is None else s_bin,
        "has_sigma": np.array(s_bin is not None),
        "sigma_source": np.array(sigma_source),
    }
    # Chunks of bins close on the sky (sorted by centre row, then column): each reads a compact box.
    order = np.lexsort((bins.x_centre, np.round(bins.y_centre)))
    setup["order"] = order
    setup["chunk_starts"] = _chunk_starts(bins.n_spaxels[order], options["chunk_bins"], MAX_CHUNK_SPAXELS)

    need_psf = images is not None or catalogue is not None
    psf = muse_psf_fwhm(cube, options["muse_fwhm_arcsec"]) if need_psf else np.nan
    setup["psf_fwhm_arcsec"] = np.array(psf)
    if images is not None:
        hst = hst_spaxel_fluxes(images, cube, muse_fwhm_arcsec=psf, progress=progress)
        phot = hst.bin_fluxes(bins.bin_id, n_bins)
        if options["ebv_mw"]:
            phot = phot / mw_transmission(hst.pivot_aa, options["ebv_mw"])[None, :]
        setup["photometry"] = phot
        setup["photometry_source"] = np.array(
            "HST images " + ", ".join(hst.bands) + f" reprojected (reproject_exact) and matched to the MUSE "
            f"PSF ({psf:.2f} arcsec); Milky Way extinction removed"
        )
        setup["photometry_filters"] = np.array(hst.filters)
    else:
        setup["photometry"] = np.full((n_bins, n_bands), np.nan)
        setup["photometry_source"] = np.array(
            "none: no HST images, the network predicted from the spectra alone (bands masked)"
        )
        setup["photometry_filters"] = np.array([""] * n_bands)

    if catalogue is not None:
        ny, nx = cube.shape
        x, y = (
            np.asarray(a, float) for a in cube.wcs.world_to_pixel_values(catalogue["ra"], catalogue["dec"])
        )
        with np.errstate(invalid="ignore"):
            inside = (
                np.isfinite(x) & np.isfinite(y) & (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
            )
        if not inside.any():
            ra, dec = cube.wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2)
            raise ValueError(
                f"{options['catalogue'][0]}: none of its {len(catalogue)} positions lies inside the cube "
                f"{cube.path} (centre RA {float(ra):.5f}, Dec {float(dec):.5f}; first cluster RA "
                f"{catalogue['ra'][0]:.5f}, Dec {catalogue['dec'][0]:.5f}): a catalogue of another galaxy?"
            )
        phot, phot_err = photometry_to_flux_density(
            catalogue["flux_mjy"], catalogue["flux_err_mjy"], catalogue.meta["filters"], cube.flux_unit
        )
        iy = np.clip(np.round(np.nan_to_num(y)), 0, ny - 1).astype(int)
        ix = np.clip(np.round(np.nan_to_num(x)), 0, nx - 1).astype(int)
        cl_v = v_map[iy, ix] if v_map is not None else np.full(len(x), np.nan)
        if options["sigma_obs_kms"] is not None:
            cl_s = np.full(len(x), float(options["sigma_obs_kms"]))
        else:
            cl_s = s_map[iy, ix] if s_map is not None else np.full(len(x), np.nan)
        setup.update(
            cl_ra=np.asarray(catalogue["ra"], float),
            cl_dec=np.asarray(catalogue["dec"], float),
            cl_x=x,
            cl_y=y,
            cl_inside=inside,
            cl_photometry=phot,
            cl_photometry_err=phot_err,
            cl_v_kms=cl_v,
            cl_sigma_kms=cl_s,
            cl_chunk_starts=np.append(np.arange(0, len(x), CLUSTER_CHUNK), len(x)),
        )
    return setup


# ----------------------------------------------------------------------------------------- chunks
class _State:
    """What the chunks of one work folder share within a process: the lazy cube, bins and model."""

    def __init__(self, options):
        import dask.array as da

        from ..network import get_metadata

        self.options = options
        work = Path(options["work"])
        with np.load(work / "setup.npz", allow_pickle=False) as f:
            self.setup = {k: f[k] for k in f.files}
        self.cube = read_muse_cube(options["cube"][0])
        if self.cube.dq is not None:
            self.flux = da.where(self.cube.dq == 0, self.cube.flux, np.nan)
        else:
            self.flux = self.cube.flux
        self.var = self.cube.var
        self.bins = SpatialBins(self.setup["bin_id"])
        self.model = _model_for(options)
        self.meta = get_metadata(self.model)

    def prepare_and_predict(self, flux, var, v_kms, sigma_kms, photometry, photometry_err=None):
        """Prepared spectra and predictions of summed spectra (m, n_wave): a dict of arrays."""
        from ..network import predict

        opt, setup = self.options, self.setup
        wave_model = self.meta["wave_aa"]
        parts = []
        for start in range(0, len(flux), PREDICT_BATCH):
            sl = slice(start, start + PREDICT_BATCH)
            prep = prepare_spectra(
                self.cube.wave_aa,
                flux[sl],
                var[sl],
                wave_model,
                sigma_model_kms=opt["sigma_model_kms"],
                # the network was trained up to sigma_max_kms: broader spectra are used as they are
                tolerance_kms=max(opt["sigma_max_kms"] - opt["sigma_model_kms"], SIGMA_TOLERANCE_KMS),
                z_sys=opt["redshift"],
                v_kms=v_kms[sl] if v_kms is not None else None,
                ebv_mw=opt["ebv_mw"],
                sigma_obs_kms=sigma_kms[sl] if sigma_kms is not None else None,
            )
            goodness = opt.get("goodness", False)
            with _PREDICT_LOCK:
                pred = predict(
                    self.model,
                    prep.flux,
                    photometry[sl],
                    batch_size=opt["batch_size"],
                    wave_aa=wave_model,
                    goodness=goodness,
                    noise=np.sqrt(prep.var) if goodness else None,
                    photometry_err=None if photometry_err is None else photometry_err[sl],
                )
            keys = PREDICTION_KEYS + (GOODNESS_KEYS if goodness else ())
            part = {k: np.asarray(pred[k], dtype=np.float64) for k in keys}
            part["network_quality"] = np.asarray(pred["quality"], dtype=np.int64)
            part["flags"] = prep.flags.astype(np.int64)
            part["coverage"] = prep.coverage
            parts.append(part)
        del setup
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _model_for(options):
    """The run's model in this process: the object given to apply_cube, else loaded once from its file."""
    from ..network import load_model

    with _MODEL_LOCK:
        if options["model"] not in _MODELS:
            if not options.get("model_file"):
                raise RuntimeError(
                    "the model was given as an object and is not in this process: save it and pass its path"
                )
            _MODELS[options["model"]] = load_model(options["model_file"])
        return _MODELS[options["model"]]


def _state(options):
    """The state of a work folder for this thread (each thread its own memory maps)."""
    setup_file = Path(options["work"]) / "setup.npz"
    key = (json.dumps(options, sort_keys=True), setup_file.stat().st_mtime_ns)
    thread = threading.get_ident()
    if _STATE.get(thread, (None,))[0] != key:
        _STATE[thread] = (key, _State(options))
    return _STATE[thread][1]


def _bins_chunk(state, index):
    """Sum, prepare and predict the bins of one chunk."""
    import dask

    setup = state.setup
    starts = setup["chunk_starts"]
    ids = setup["order"][starts[index] : starts[index + 1]]
    members = [state.bins.members[i] for i in ids]
    flat = np.concatenate(members)
    labels = np.repeat(np.arange(ids.size), [m.size for m in members])
    y, x = np.divmod(flat, state.bins.shape[1])
    y0, y1, x0, x1 = y.min(), y.max() + 1, x.min(), x.max() + 1
    local = np.full((y1 - y0, x1 - x0), -1, dtype=np.int64)
    local[y - y0, x - x0] = labels
    with dask.config.set(scheduler="synchronous"):  # read in this task, whatever runs it
        flux, var = SpatialBins(local).sum_spectra(
            state.flux[:, y0:y1, x0:x1], state.var[:, y0:y1, x0:x1], max_voxels=READ_VOXELS
        )
    out = state.prepare_and_predict(
        flux,
        var,
        setup["v_kms"][ids] if setup["has_v"] else None,
        setup["sigma_kms"][ids] if setup["has_sigma"] else None,
        setup["photometry"][ids],
    )
    out["index"] = ids
    return out


def _clusters_chunk(state, index):
    """Aperture spectra (background subtracted), prepare and predict the clusters of one chunk."""
    import dask

    from .apertures import aperture_spectra

    setup, opt = state.setup, state.options
    starts = setup["cl_chunk_starts"]
    sl = slice(int(starts[index]), int(starts[index + 1]))
    fwhm = float(setup["psf_fwhm_arcsec"])
    with dask.config.set(scheduler="synchronous"):
        ap = aperture_spectra(
            state.flux,
            state.var,
            state.cube.wcs,
            setup["cl_ra"][sl],
            setup["cl_dec"][sl],
            APERTURE_RADIUS_FWHM * fwhm,
            annulus_arcsec=tuple(f * fwhm for f in ANNULUS_FWHM),
            psf_fwhm_arcsec=fwhm,
            on_bad="flag",
        )
    out = state.prepare_and_predict(
        ap.flux,
        ap.var,
        setup["cl_v_kms"][sl] if setup["has_v"] else None,
        setup["cl_sigma_kms"][sl] if setup["has_sigma"] else None,
        setup["cl_photometry"][sl],
        setup["cl_photometry_err"][sl],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        signal, noise = continuum_snr(ap.flux.T, ap.var.T, state.cube.wave_aa, redshift=opt["redshift"])
        out["snr"] = signal / noise
    out["index"] = np.arange(sl.start, sl.stop)
    out["area_spaxels"] = ap.area_spaxels
    out["psf_fraction"] = ap.psf_fraction
    out["reason"] = np.array(ap.reason, dtype=str)
    return out


def run_chunk(options, kind, index):
    """Compute one chunk and write ``OUT/work/{kind}_{index:05d}.npz`` atomically (skipped if present).

    A pure function of its arguments (and of the files they name), so a Dask worker and this process
    compute the same chunk identically; the cube, bins and model are opened once per process.

    Parameters
    ----------
    options : dict
        The run's options (the content of ``OUT/work/options.json``).
    kind : {"bins", "clusters"}
    index : int
        Chunk number.

    Returns
    -------
    str
        The chunk file.
    """
    path = _chunk_path(options["work"], kind, index)
    if path.exists():
        return str(path)
    state = _state(options)
    try:
        arrays = _bins_chunk(state, index) if kind == "bins" else _clusters_chunk(state, index)
    finally:
        state.cube.close()  # unmap the file: its pages do not pile up in memory (reopened on next use)
    _save_npz(path, arrays)
    return str(path)


def _run_serial(options, todo, progress, n_total):
    from tqdm import tqdm

    with tqdm(
        total=n_total, initial=n_total - len(todo), desc="apply", unit="chunk", disable=not progress
    ) as bar:
        for kind, index in todo:
            run_chunk(options, kind, index)
            bar.update()


def _run_dask(options, todo, progress, n_total, client):
    from dask.distributed import as_completed
    from tqdm import tqdm

    from ..utils import dask_client

    with dask_client(client) as client:
        token = (
            options["model"][:8]
            + hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
        )
        futures = [
            client.submit(
                run_chunk, options, kind, index, key=f"sfh-ml-apply-{token}-{kind}-{index}", pure=False
            )
            for kind, index in todo
        ]
        try:
            with tqdm(
                total=n_total, initial=n_total - len(todo), desc="apply", unit="chunk", disable=not progress
            ) as bar:
                for future in as_completed(futures):
                    future.result()  # re-raises a chunk's error here
                    bar.update()
        except BaseException:
            client.cancel(futures)  # the chunks already written stay: a re-run resumes from them
            raise


# ----------------------------------------------------------------------------------------- outputs
def _load_chunks(work, kind, n_chunks, n):
    out = None
    for index in range(n_chunks):
        with np.load(_chunk_path(work, kind, index), allow_pickle=False) as f:
            part = {k: f[k] for k in f.files}
        if out is None:
            out = {}
            for k, v in part.items():
                if k == "index":
                    continue
                fill = "" if v.dtype.kind == "U" else (0 if v.dtype.kind in "iu" else np.nan)
                dtype = object if v.dtype.kind == "U" else v.dtype
                out[k] = np.full((n, *v.shape[1:]), fill, dtype=dtype)
        for k, v in part.items():
            if k != "index":
                out[k][part["index"]] = v
    return out


def _quality(res, snr, min_snr):
    q = res["flags"] | (res["network_quality"] << NETWORK_FLAG_SHIFT)
    with np.errstate(invalid="ignore"):
        q[~(snr >= min_snr)] |= qf.LOW_SNR
    return q.astype(np.int64)


def _usable(quality):
    from ..network import QUALITY_UNUSABLE

    return ((quality >> NETWORK_FLAG_SHIFT) & QUALITY_UNUSABLE) == 0


def _header_cards(options, setup, meta, i_young, i_old):
    """Provenance keywords shared by every FITS output: (key, value, comment)."""
    age = meta["age_bins_yr"]
    cards = [
        ("SFHMODEL", options["model"][:16], "sha256 of the model's weights (first 16 hex)"),
        ("CUBE", _fits_text(Path(options["cube"][0]).name), "MUSE cube"),
        ("BINNING", options["bins"], "spatial bins"),
        ("REDSHIFT", options["redshift"], "systemic redshift"),
        ("EBV_MW", options["ebv_mw"], "Milky Way E(B-V) removed, mag"),
        ("SIGMODEL", options["sigma_model_kms"], "model's stellar dispersion, km/s"),
        ("SIGMAX", options["sigma_max_kms"], "broader than this: TOO_BROAD, km/s"),
        ("SIGSRC", str(setup["sigma_source"]), "observed dispersion from"),
        ("VELSRC", "MAPS V_STARS" if bool(setup["has_v"]) else "redshift only", "rest frame from"),
        ("PHOTSRC", str(setup["photometry_source"]), "HST photometry"),
        ("YOUNGAGE", float(age[i_young]), "F_YOUNG: mass formed less than this ago, yr"),
        ("OLDAGE", float(age[i_old]), "F_OLD: mass formed more than this ago, yr"),
        ("QSHIFT", NETWORK_FLAG_SHIFT, "network quality bits start here"),
    ]
    for name, bit in quality_bits().items():
        cards.append((f"Q{int(np.log2(bit)):d}"[:8], name[:60], "QUALITY bit"))
    return cards


def _fits_text(text):
    """``text`` as FITS headers hold it (printable ASCII): other characters as backslash escapes."""
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in str(text))


def _table(res, summary, extra, setup, meta, options, i_young, i_old, photometry, unit):
    from astropy.table import Table

    t = Table()
    for k, v in extra.items():
        t[k] = v
    for k in PREDICTION_KEYS:  # float32: the network's own precision, half the size of the tables
        t[k] = res[k].astype(np.float32)
    for k in GOODNESS_KEYS:  # the goodness of fit, if computed
        if k in res:
            t[k] = res[k].astype(np.float32)
    for k, v in summary.items():
        t[k] = v
    t["photometry"] = photometry
    t["photometry"].unit = unit
    t["coverage"] = res["coverage"]
    t["quality"] = res["quality"]
    for k in ("mw_log_age_err", "mw_zh", "mw_zh_err", "lw_zh", "zh", "zh_sigma"):  # dex: no FITS unit
        t[k].description = "dex"
    for k in ("mw_log_age", "lw_log_age"):
        t[k].description = "log10(age / yr)"
    t.meta.update(
        age_bins_yr=[float(a) for a in meta["age_bins_yr"]],
        young_edge_yr=float(meta["age_bins_yr"][i_young]),
        old_edge_yr=float(meta["age_bins_yr"][i_old]),
        quality_bits=quality_bits(),
        photometry_source=str(setup["photometry_source"]),
        sigma_source=str(setup["sigma_source"]),
        options={k: v for k, v in options.items() if k not in NOT_COMPARED},
    )
    return t


def _write_ecsv(table, path, block=None):
    """Write a table as ECSV block by block: astropy formats every row in memory at once (about 10 kB
    per row of this table: 10 GB for a 10^6-spaxel cube), so the blocks after the first are written
    without their header (the same for every block: same columns, types and metadata)."""
    block = ECSV_BLOCK_ROWS if block is None else int(block)
    with open(path, "w", encoding="utf-8") as fh:  # paths in the metadata may be any text
        for start in range(0, max(len(table), 1), block):
            buffer = io.StringIO()
            table[start : start + block].write(buffer, format="ascii.ecsv")
            lines = buffer.getvalue().splitlines(keepends=True)
            if start > 0:
                first = next(i for i, line in enumerate(lines) if not line.startswith("#"))
                lines = lines[first + 1 :]  # the header comments and the line of column names
            fh.writelines(lines)


def _write_table(table, fits_path, ecsv_path, cards):
    """The table as ECSV (full metadata) and FITS (the provenance keywords; FITS headers hold no nesting)."""
    _write_ecsv(table, ecsv_path)
    flat = table.copy(copy_data=False)
    flat.meta = {key: value for key, value, _ in cards}
    flat.write(fits_path, format="fits")


def _write_outputs(options, setup, meta, bins_res, cl_res, cube, catalogue, files, summary):
    """Write every output under a temporary name, then rename them all (all or nothing)."""
    from astropy.io import fits

    i_young, i_old = age_fraction_edges(meta["age_bins_yr"])
    bins = SpatialBins(setup["bin_id"], setup["bin_snr"])
    summ = summarise_histories(bins_res, meta["age_bins_yr"], meta["bin_light"], meta["zh_grid"])
    cards = _header_cards(options, setup, meta, i_young, i_old)
    wcs_header = cube.wcs.to_header()
    tmps = {}

    def tmp(key):
        tmps[key] = tmp_path(files[key])
        tmps[key].unlink(missing_ok=True)  # left by a run killed while writing (kill -9): never ours
        return tmps[key]

    try:
        # --- maps.fits
        primary = fits.PrimaryHDU()
        for key, value, comment in cards:  # long strings (CONTINUE cards) go without their comment
            primary.header[key] = value if len(str(value)) > 40 else (value, comment)
        hdus = [primary]
        units = {
            "MW_LOG_AGE": "log10(yr)",
            "MW_LOG_AGE_ERR": "dex",
            "LW_LOG_AGE": "log10(yr)",
            "MW_ZH": "dex",
            "MW_ZH_ERR": "dex",
            "LW_ZH": "dex",
        }
        for key, values in summ.items():
            name = key.upper()
            hdu = fits.ImageHDU(bins.paint(values).astype(np.float32), header=wcs_header, name=name)
            hdu.header["BUNIT"] = units.get(name, "")
            hdus.append(hdu)
        hdus.append(
            fits.ImageHDU(bins.paint(setup["bin_snr"]).astype(np.float32), header=wcs_header, name="SNR")
        )
        hdus.append(fits.ImageHDU(bins.bin_id.astype(np.int32), header=wcs_header, name="BIN_ID"))
        quality_map = bins.paint(bins_res["quality"], fill=qf.NO_DATA).astype(np.int32)
        hdus.append(fits.ImageHDU(quality_map, header=wcs_header, name="QUALITY"))
        for key in ("ood_score", "chi2_pixel"):  # the goodness of fit, if computed
            if key in bins_res:
                image = bins.paint(bins_res[key]).astype(np.float32)
                hdus.append(fits.ImageHDU(image, header=wcs_header, name=key.upper()))
        fits.HDUList(hdus).writeto(tmp("maps"))

        # --- per-bin table
        ra, dec = cube.wcs.pixel_to_world_values(bins.x_centre, bins.y_centre)
        extra = {
            "bin_id": np.arange(bins.n_bins),
            "x_centre": bins.x_centre,
            "y_centre": bins.y_centre,
            "ra": np.asarray(ra),
            "dec": np.asarray(dec),
            "n_spaxels": bins.n_spaxels,
            "snr": setup["bin_snr"],
            "v_kms": setup["v_kms"],
            "sigma_kms": setup["sigma_kms"],
        }
        table = _table(
            bins_res,
            summ,
            extra,
            setup,
            meta,
            options,
            i_young,
            i_old,
            setup["photometry"],
            str(cube.flux_unit),
        )
        table["ra"].unit = table["dec"].unit = "deg"
        _write_table(table, tmp("bins_fits"), tmp("bins_ecsv"), cards)

        # --- per-cluster table
        if cl_res is not None:
            cs = summarise_histories(cl_res, meta["age_bins_yr"], meta["bin_light"], meta["zh_grid"])
            extra = {"id": np.asarray(catalogue["id"]), "ra": setup["cl_ra"], "dec": setup["cl_dec"]}
            extra.update(x_pix=setup["cl_x"], y_pix=setup["cl_y"], inside_cube=setup["cl_inside"])
            for key in ("class_human", "class_ml", "age_myr", "age_myr_err", "mass_msun", "ebv_mag"):
                if key in catalogue.colnames:
                    extra[f"catalogue_{key}"] = np.asarray(catalogue[key])
            extra.update(snr=cl_res["snr"], area_spaxels=cl_res["area_spaxels"])
            extra.update(psf_fraction=cl_res["psf_fraction"], reason=cl_res["reason"].astype(str))
            with np.errstate(invalid="ignore"):
                cs["mw_age_myr"] = 10 ** cs["mw_log_age"] / 1e6
                cs["lw_age_myr"] = 10 ** cs["lw_log_age"] / 1e6
            ct = _table(
                cl_res,
                cs,
                extra,
                setup,
                meta,
                options,
                i_young,
                i_old,
                setup["cl_photometry"],
                str(cube.flux_unit),
            )
            ct["photometry_err"] = setup["cl_photometry_err"]
            ct["ra"].unit = ct["dec"].unit = "deg"
            ct.meta["catalogue"] = options["catalogue"][0]
            _write_table(ct, tmp("clusters_fits"), tmp("clusters_ecsv"), cards)
        tmp("summary").write_text(json.dumps(summary, indent=1))
        for key in tmps:
            os.replace(tmps[key], files[key])
        for name in OUTPUT_FILES.values():  # outputs of an earlier run that this one does not write
            if not any(path.name == name for path in files.values()):
                (files["summary"].parent / name).unlink(missing_ok=True)
    finally:
        for path in tmps.values():
            if path.exists():
                path.unlink()


def _count_bits(quality):
    return {
        name: int(np.count_nonzero(quality & bit))
        for name, bit in quality_bits().items()
        if np.any(quality & bit)
    }


# ----------------------------------------------------------------------------------------- main
def apply_cube(
    model,
    cube_path,
    out_dir,
    maps_path=None,
    redshift=None,
    ebv_mw=0.0,
    catalogue_path=None,
    hst_paths=None,
    bins=DEFAULT_BINS,
    sigma_obs_kms=None,
    overwrite=False,
    client=None,
    chunk_bins=DEFAULT_CHUNK_BINS,
    progress=True,
    *,
    sigma_model_kms=SIGMA_MODEL_KMS,
    sigma_max_kms=SIGMA_MODEL_MAX_KMS,
    muse_fwhm_arcsec=None,
    min_snr=MIN_SNR,
    batch_size=1024,
    keep_work=False,
    goodness=False,
    check_redshift=True,
):
    """Apply a trained network to a MUSE cube: maps, per-bin and per-cluster tables (see the module).

    Parameters
    ----------
    model : str, Path or keras.Model
        A trained network (:func:`sfh_ml.network.load_model`); its wavelength grid must be set.
    cube_path : str or Path
        MUSE cube (``DATA``, ``STAT``, optional ``DQ``), read lazily.
    out_dir : str or Path
        Output folder (created if missing; its parent must exist).
    maps_path : str or Path, optional
        DAP ``MAPS`` file on the cube's grid: ``V_STARS`` (rest frame per bin) and ``SIGMA_STARS``
        (broadening to the model's dispersion), flux-weighted over each bin.
    redshift : float
        Systemic redshift (required; ``V_STARS`` is relative to it), >= :data:`MIN_REDSHIFT`. It is
        checked against the cube's mean spectrum (see ``check_redshift``).
    ebv_mw : float
        Milky Way foreground E(B-V), mag (>= 0), removed from the spectra and the HST images (not from
        the catalogue's fluxes, which are corrected in the release).
    catalogue_path : str or Path, optional
        PHANGS-HST cluster catalogue: a spectrum in an aperture of radius one PSF FWHM around each
        cluster, minus a local background annulus (1.5-2.5 FWHM), corrected to the total flux of a
        point source, paired with the catalogue's five fluxes.
    hst_paths : sequence of str or Path, optional
        The five HST images (see :func:`sfh_ml.observations.hst.hst_spaxel_fluxes`). Without them,
        bins get no photometry (NaN: the network masks the bands) and the outputs say so.
    bins : str
        ``"voronoi:S/N"``, ``"grid:N"`` or ``"none"``.
    sigma_obs_kms : float, optional
        Stellar dispersion of every spectrum, km/s, >= 0 (overrides ``SIGMA_STARS``). Without it and without
        ``SIGMA_STARS`` the spectra are not broadened (the outputs say so).
    overwrite : bool
        Replace existing outputs, and restart an unfinished run that had other options.
    client : None, "local", str or dask.distributed.Client
        None: the chunks run in this process. "local": a ``LocalCluster`` with one single-threaded
        worker per core. A scheduler address, or a ``Client``: that cluster (the workers must see the
        same files, the output folder included).
    chunk_bins : int
        Bins per chunk.
    progress : bool
        Progress bars (tqdm).
    sigma_model_kms : float
        The lowest stellar dispersion of the training spectra, km/s, used unless the model records one:
        narrower spectra are broadened to it.
    sigma_max_kms : float
        The highest stellar dispersion of the training spectra, km/s: broader spectra get the
        ``TOO_BROAD`` flag (spectra in between are used as they are).
    muse_fwhm_arcsec : float, optional
        FWHM of the cube's PSF, arcsec, > 0 (see :func:`sfh_ml.observations.hst.muse_psf_fwhm`); needed
        with HST images or a catalogue.
    min_snr : float
        Objects below this continuum S/N per pixel get the ``LOW_SNR`` flag.
    batch_size : int
        Keras batch size.
    keep_work : bool
        Keep ``OUT/work`` (chunks, set-up) after the outputs are written.
    goodness : bool
        Re-synthesise each prediction and score it against the prepared spectrum
        (:func:`sfh_ml.network.predict` with ``goodness``): ``OOD_SCORE`` and ``CHI2_PIXEL`` maps,
        ``chi2_pixel``, ``phot_rms`` and ``ood_score`` columns, ``NETWORK_OUT_OF_DISTRIBUTION`` flags.
    check_redshift : bool
        Measure the redshift of the cube's mean spectrum (emission lines or stellar absorption,
        :func:`sfh_ml.observations.redshift.check_redshift`) and refuse a ``redshift`` more than
        :data:`~sfh_ml.observations.redshift.MAX_OFFSET_KMS` from it (False: ``--no-redshift-check``).

    Returns
    -------
    ApplyResult

    Raises
    ------
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
    from ..network import NoUsableObjectError, get_metadata, load_model

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    kind, value = parse_bins(bins)
    if redshift is None:
        raise ValueError(
            "no redshift: pass the galaxy's systemic redshift (redshift=, --redshift); V_STARS in MAPS files "
            "is relative to it"
        )
    check_range(redshift, "redshift (--redshift)", low=MIN_REDSHIFT)  # NaN, -1 or a sign error
    check_range(ebv_mw, "ebv_mw (--ebv-mw, Milky Way E(B-V))", "mag", low=0.0)
    if sigma_obs_kms is not None:
        check_range(sigma_obs_kms, "sigma_obs_kms (--sigma-obs, stellar dispersion)", "km/s", low=0.0)
    if muse_fwhm_arcsec is not None:
        check_range(muse_fwhm_arcsec, "muse_fwhm_arcsec (--muse-fwhm)", "arcsec", low=0.0, low_open=True)
    if int(chunk_bins) < 1:
        raise ValueError(f"chunk_bins must be >= 1, got {chunk_bins}")
    has_catalogue = catalogue_path is not None
    files = {k: out_dir / v for k, v in OUTPUT_FILES.items() if has_catalogue or not k.startswith("clusters")}
    # every output of an earlier run counts, also those this run would not write (overwrite removes them)
    existing = [str(out_dir / name) for name in OUTPUT_FILES.values() if (out_dir / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"outputs exist: {existing}; pass overwrite=True (--overwrite) to replace them")
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"the output folder {out_dir} is a file: --out names a folder for apply")
    if not out_dir.parent.is_dir():
        raise OSError(f"the parent of the output folder {out_dir} does not exist: create it first")

    # Inputs: every refusal happens here, before anything is written.
    if isinstance(model, str | os.PathLike):
        model_obj, model_file = load_model(model), str(Path(model).resolve())
    else:  # a network already in memory
        model_obj, model_file = model, None
    meta = get_metadata(model_obj)
    if meta["wave_aa"] is None or meta["age_bins_yr"] is None:
        raise ValueError(
            "the model records no wavelength grid or age bins: rebuild it with wave_aa= and age_bins_yr="
        )
    if meta["bin_light"] is None:
        warnings.warn(LW_NOTE_NO_TABLE, stacklevel=2)
    sigma_model = float(meta.get("sigma_kms") or sigma_model_kms)
    cube = read_muse_cube(cube_path)
    _check_coverage(cube, meta["wave_aa"], float(redshift))
    if check_redshift:
        check_cube_redshift(cube, float(redshift))
    maps = read_maps(maps_path, cube=cube) if maps_path is not None else None
    catalogue = read_cluster_catalogue(catalogue_path) if has_catalogue else None
    images = [read_hst_image(p) for p in hst_paths] if hst_paths else None
    fingerprint = _model_fingerprint(model_obj, meta)
    work = out_dir / WORK
    options = {
        "version": OPTIONS_VERSION,
        "cube": _file_id(cube_path),
        "maps": _file_id(maps_path),
        "catalogue": _file_id(catalogue_path),
        "hst": sorted(_file_id(p) for p in hst_paths) if hst_paths else None,
        "model": fingerprint,
        "model_file": model_file,
        "redshift": float(redshift),
        "ebv_mw": float(ebv_mw),
        "bins": f"{kind}:{value}" if value is not None else kind,
        "sigma_obs_kms": None if sigma_obs_kms is None else float(sigma_obs_kms),
        "sigma_model_kms": sigma_model,
        "sigma_max_kms": max(float(sigma_max_kms), sigma_model),
        "muse_fwhm_arcsec": None if muse_fwhm_arcsec is None else float(muse_fwhm_arcsec),
        "min_snr": float(min_snr),
        "chunk_bins": int(chunk_bins),
        "batch_size": int(batch_size),
        "work": str(work.resolve()),
    }
    if goodness:  # only then: runs without it keep the options (and resume) as before
        options["goodness"] = True
    _MODELS[fingerprint] = model_obj
    created = not out_dir.exists()
    out_dir.mkdir(exist_ok=True)
    try:
        with output_lock(work, command="sfh-ml apply"):
            _check_options(work, options, overwrite)
            if not (work / "setup.npz").exists():
                setup = _make_setup(options, cube, maps, catalogue, images, meta, progress)
                cube.close()  # unmap: the chunks open the cube themselves
                work.mkdir(exist_ok=True)
                _save_npz(work / "setup.npz", setup)
                atomic_write_text(work / "options.json", json.dumps(options, indent=1))
            if model_file is None and client is not None and not (work / "model.keras").exists():
                model_obj.save(work / "model.keras")  # for workers in other processes
                options["model_file"] = str((work / "model.keras").resolve())
            elif model_file is None and (work / "model.keras").exists():
                options["model_file"] = str((work / "model.keras").resolve())
            with np.load(work / "setup.npz", allow_pickle=False) as f:
                setup = {k: f[k] for k in f.files}
            n_bin_chunks = len(setup["chunk_starts"]) - 1
            n_cl_chunks = len(setup["cl_chunk_starts"]) - 1 if has_catalogue else 0
            tasks = [("bins", i) for i in range(n_bin_chunks)] + [("clusters", i) for i in range(n_cl_chunks)]
            todo = [t for t in tasks if not _chunk_path(work, *t).exists()]
            if client is None:
                _run_serial(options, todo, progress, len(tasks))
            else:
                _run_dask(options, todo, progress, len(tasks), client)

            n_bins = int(setup["bin_id"].max()) + 1
            bins_res = _load_chunks(work, "bins", n_bin_chunks, n_bins)
            bins_res["quality"] = _quality(bins_res, setup["bin_snr"], min_snr)
            n_usable_bins = int(_usable(bins_res["quality"]).sum())
            cl_res, n_cl, n_usable_cl = None, 0, 0
            if has_catalogue:
                n_cl = len(setup["cl_ra"])
                cl_res = _load_chunks(work, "clusters", n_cl_chunks, n_cl)
                cl_res["quality"] = _quality(cl_res, cl_res["snr"], min_snr)
                cl_res["quality"][~setup["cl_inside"]] |= qf.OUTSIDE_CUBE
                n_usable_cl = int(_usable(cl_res["quality"]).sum())
            if n_usable_bins == 0 and n_usable_cl == 0:
                shutil.rmtree(work)
                what = f"{n_bins} bins" + (f" or {n_cl} clusters" if has_catalogue else "")
                raise NoUsableObjectError(
                    f"{cube.path}: not one of {what} is "
                    f"usable (flags: {_count_bits(bins_res['quality'])}): check the units, the redshift and "
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
                "bins_quality": _count_bits(bins_res["quality"]),
                "clusters_quality": _count_bits(cl_res["quality"]) if cl_res is not None else {},
                "photometry_source": str(setup["photometry_source"]),
                "sigma_source": str(setup["sigma_source"]),
                "light_weighted": LW_NOTE_NO_TABLE if meta["bin_light"] is None else LW_NOTE_TABLE,
                "n_chunks": len(tasks),
                "n_chunks_computed": len(todo),
                "seconds_before_writing": round(seconds, 2),
                "options": {k: v for k, v in options.items() if k not in NOT_COMPARED},
                "files": {k: str(p) for k, p in files.items() if k != "summary"},
            }
            _write_outputs(options, setup, meta, bins_res, cl_res, cube, catalogue, files, summary)
            seconds = time.perf_counter() - t_start
            if not keep_work:
                shutil.rmtree(work)
                _STATE.clear()
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
