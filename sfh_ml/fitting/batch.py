"""pPXF fits of every object of a synthetic set, one BLAS thread per fit, in parallel on Dask.

The fits are independent and each is a small dense problem, so one thread per fit and one fit per
core is fastest (with one BLAS pool per fit on every core, oversubscription makes each fit tens of
times slower). The fits run as ``dask.distributed`` tasks of a few objects each, each task limited to
one BLAS thread with :mod:`threadpoolctl`: on a local cluster of single-threaded worker processes
(one per core) or on any cluster the caller passes (many cubes or sets: the same code on more
machines). The templates are sent once to every worker.
"""

import warnings

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from ..synthesis import read_dataset
from ..synthesis.photometry import PHANGS_FILTERS
from ..synthesis.ssp import load_library
from ..synthesis.synthesizer import v_band_flux
from ..utils import dask_client
from .fit import DEFAULT_REGUL, fit_spectrum
from .lines import emission_line_mask
from .templates import DEFAULT_LOG_U, build_templates
from .weights import binned_histories, ssp_histories, ssp_means

__all__ = ["SCALAR_KEYS", "fit_file", "fit_arrays", "to_predictions"]

SCALAR_KEYS = ("velocity_kms", "sigma_kms", "tau_ism", "tau_bc", "chi2", "seconds")
TASKS_PER_CHUNK = 4  # objects per Dask task (amortises the scheduling and the traffic)


def _fit_one(fixed, spectrum, noise, phot, phot_err, good):
    """Fit one object: the dict of :func:`fit_spectrum`, or ``{"error": message}``."""
    templates, mask, regul = fixed
    try:
        return fit_spectrum(templates, spectrum, noise, mask, phot, phot_err, regul, good=good)
    except (AssertionError, np.linalg.LinAlgError, RuntimeError, ValueError) as err:  # pPXF asserts
        return {"error": f"{type(err).__name__}: {err}"}


def _fit_chunk(fixed, spectra, noise, phot, phot_err, good):
    """Fit a few objects on one BLAS thread (a Dask task, or the serial loop's step)."""
    with threadpool_limits(limits=1):
        return [
            _fit_one(
                fixed,
                spectra[i],
                noise[i],
                *((None, None) if phot is None else (phot[i], phot_err[i])),
                None if good is None else good[i],
            )
            for i in range(len(spectra))
        ]


def fit_arrays(
    wave_aa,
    spectra,
    noise,
    age_bins_yr,
    photometry=None,
    photometry_err=None,
    regul=DEFAULT_REGUL,
    workers=1,
    log_u=DEFAULT_LOG_U,
    library=None,
    progress=True,
    filters=PHANGS_FILTERS,
    client=None,
    good=None,
):
    """pPXF fits of many spectra on one linear grid; see :func:`fit_file`.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Rest-frame wavelengths, Angstrom.
    spectra, noise : ndarray, shape (n, n_wave)
        Flux densities and 1-sigma errors.
    age_bins_yr : ndarray, shape (n_bins + 1,)
        Target age bins, yr.
    photometry, photometry_err : ndarray, shape (n, n_band), optional
        HST fluxes and errors, fitted jointly if given.
    regul, workers, log_u, library, progress, client
        As in :func:`fit_file`.
    filters : sequence of str
        pyphot names of the photometry's bands, in order.
    good : ndarray of bool, shape (n, n_wave), optional
        Pixels with data (real spectra; see :func:`fit_spectrum`). Default: every pixel, and NaN or
        non-positive noise is refused.

    Returns
    -------
    dict of ndarray
        See :func:`fit_file`.
    """
    lib = load_library() if library is None else library
    spectra = np.asarray(spectra)
    noise = np.asarray(noise)
    n = spectra.shape[0]
    if noise.shape != spectra.shape:
        raise ValueError(f"noise has shape {noise.shape}, spectra {spectra.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(noise) & (noise > 0), axis=1))
    if good is not None:
        good = np.asarray(good, dtype=bool)
        if good.shape != spectra.shape:
            raise ValueError(f"good has shape {good.shape}, spectra {spectra.shape}")
    elif bad.size:
        raise ValueError(f"noise is NaN, infinite or <= 0 in {bad.size} objects (first: row {bad[0]})")
    templates = build_templates(wave_aa, lib, log_u=log_u, filters=filters)
    mask = emission_line_mask(lib, templates.lam)
    fixed = (templates, mask, regul)
    chunks = [slice(i, min(i + TASKS_PER_CHUNK, n)) for i in range(0, n, TASKS_PER_CHUNK)]

    def args(sl):
        mine = None if good is None else good[sl]
        if photometry is None:
            return spectra[sl], noise[sl], None, None, mine
        return spectra[sl], noise[sl], photometry[sl], photometry_err[sl], mine

    results = [None] * len(chunks)
    label = progress if isinstance(progress, str) else "pPXF fits"
    bar = tqdm(total=n, desc=label, unit="fit", disable=not progress)
    if client is None and workers <= 1:
        for k, sl in enumerate(chunks):
            results[k] = _fit_chunk(fixed, *args(sl))
            bar.update(sl.stop - sl.start)
    else:
        from dask.distributed import as_completed

        with dask_client("local" if client is None else client, n_workers=workers) as dc:
            fixed_future = dc.scatter(fixed, broadcast=True)
            futures = {
                dc.submit(_fit_chunk, fixed_future, *args(sl), pure=False): k for k, sl in enumerate(chunks)
            }
            try:
                for future in as_completed(futures):
                    k = futures[future]
                    results[k] = future.result()
                    bar.update(chunks[k].stop - chunks[k].start)
            except BaseException:
                dc.cancel(list(futures))
                raise
    results = [r for part in results for r in part]
    bar.close()
    return _assemble(results, templates, lib, age_bins_yr)


def _assemble(results, templates, lib, age_bins_yr):
    """Per-object arrays from the fits' dicts (NaN rows for failed fits)."""
    n = len(results)
    failed = np.array(["error" in r for r in results])
    if failed.any():
        first = next(r["error"] for r in results if "error" in r)
        warnings.warn(f"{failed.sum()} of {n} pPXF fits failed (NaN rows); first: {first}", stacklevel=3)
    mass = np.full((n,) + templates.shape, np.nan)
    out = {k: np.full(n, np.nan) for k in SCALAR_KEYS}
    for i, r in enumerate(results):
        if "error" in r:
            continue
        mass[i] = r["mass"]
        for k in SCALAR_KEYS:
            out[k][i] = r[k]
    ok = ~failed
    n_age = templates.shape[0]
    sfh_ssp = np.full((n, n_age), np.nan)
    zh_ssp = np.full((n, n_age), np.nan)
    n_bins = len(age_bins_yr) - 1
    sfh = np.full((n, n_bins), np.nan)
    zh = np.full((n, n_bins), np.nan)
    means = {k: np.full(n, np.nan) for k in ("mw_log_age", "mw_zh", "lw_log_age", "lw_zh")}
    if ok.any():
        sfh_ssp[ok], zh_ssp[ok] = ssp_histories(mass[ok], templates.zh)
        sfh[ok], zh[ok] = binned_histories(sfh_ssp[ok], zh_ssp[ok], lib.age_edges_yr, age_bins_yr)
        for k, v in ssp_means(mass[ok], lib.log_age, templates.zh, v_band_flux(lib)).items():
            means[k][ok] = v
    return dict(
        mass=mass,
        mass_formed=np.nansum(mass, axis=(1, 2)) * np.where(ok, 1.0, np.nan),
        sfh_ssp=sfh_ssp,
        zh_ssp=zh_ssp,
        sfh=sfh,
        zh=zh,
        **means,
        **out,
        failed=failed,
    )


def fit_file(
    path,
    index=None,
    photometry=False,
    regul=DEFAULT_REGUL,
    workers=1,
    noiseless=False,
    log_u=DEFAULT_LOG_U,
    library=None,
    progress=True,
    client=None,
):
    """pPXF fits of the objects of a synthetic set (:func:`sfh_ml.synthesis.generate`).

    Parameters
    ----------
    path : str or Path
        The set's HDF5 file.
    index : slice or ndarray of int, optional
        Objects to fit (sorted); default all.
    photometry : bool
        Fit the five HST fluxes jointly, with ``photometry_err``.
    regul : float
        Second-order regularisation (0: none; default :data:`sfh_ml.fitting.fit.DEFAULT_REGUL`).
    workers : int
        Single-threaded worker processes of a local Dask cluster (1: the fits run in this process).
    client : "local", str or dask.distributed.Client, optional
        Run the fits on this Dask cluster instead (a scheduler address or a client; ``workers`` is
        then only the size of a ``"local"`` cluster); see :func:`sfh_ml.utils.dask_client`.
    noiseless : bool
        Fit ``spectra_noiseless`` (and ``photometry_noiseless``) with the file's ``noise``: a check
        of the method, not of its noise.
    log_u : float
        Ionisation parameter of the young templates' nebular continuum.
    library : SSPLibrary, optional
        Default :func:`sfh_ml.synthesis.ssp.load_library` (it must be the set's library).
    progress : bool or str
        tqdm progress bar (a str: the bar's label).

    Returns
    -------
    dict of ndarray
        ``mass`` (n, n_age, n_zh): mass formed in each SSP, M_sun per M_sun formed in total;
        ``mass_formed`` (n,), its sum; ``sfh_ssp``, ``zh_ssp`` (n, n_age): mass fraction and [M/H] per
        SSP age (as the file's); ``sfh``, ``zh`` (n, n_bins): per target bin (as the file's);
        ``mw_log_age``, ``lw_log_age`` (log10 yr), ``mw_zh``, ``lw_zh`` (dex): on the SSP grid, as
        the file's truths; ``velocity_kms``, ``sigma_kms``, ``tau_ism``, ``tau_bc``, ``chi2`` (per
        good pixel), ``seconds`` (wall time of each fit, one thread), ``failed`` (bool) (n,).
    """
    suffix = "_noiseless" if noiseless else ""
    keys = [f"spectra{suffix}", "noise", "wave_aa", "age_bins_yr"]
    if photometry:
        keys += [f"photometry{suffix}", "photometry_err", "filters"]
    d = read_dataset(path, keys, index)
    return fit_arrays(
        d["wave_aa"],
        d[f"spectra{suffix}"],
        d["noise"],
        d["age_bins_yr"],
        d.get(f"photometry{suffix}"),
        d.get("photometry_err"),
        regul=regul,
        workers=workers,
        log_u=log_u,
        library=library,
        progress=progress,
        filters=tuple(d["filters"]) if photometry else PHANGS_FILTERS,
        client=client,
    )


def to_predictions(result):
    """pPXF results in the layout of :func:`sfh_ml.network.predict`, for ``evaluate_predictions``.

    Parameters
    ----------
    result : dict
        From :func:`fit_file` or :func:`fit_arrays`.

    Returns
    -------
    dict
        ``sfh``, ``sfh_cum``, ``zh`` (n, n_bins), float64 (NaN for failed fits), and ``quality`` (n,)
        int32 (0 good, 1 failed fit). pPXF gives no calibrated uncertainty, so there are no
        ``*_sigma`` keys and ``evaluate_predictions`` skips the coverage.
    """
    sfh = np.asarray(result["sfh"], dtype=np.float64)
    return {
        "sfh": sfh,
        "sfh_cum": np.cumsum(sfh, axis=-1),
        "zh": np.asarray(result["zh"], dtype=np.float64),
        "quality": np.asarray(result["failed"], dtype=np.int32),
    }
