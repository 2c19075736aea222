"""The set-up of an application run (once, kept in ``OUT/work/setup.npz``): everything the chunks
need besides the cube.

The spaxels are binned on the cube's own S/N (:func:`~sfh_ml.observations.binning.make_bins`), the
MAPS kinematics averaged over each bin (flux-weighted), the HST images put on the spaxel grid at the
MUSE PSF and summed over each bin (:mod:`~sfh_ml.observations.hst`), the catalogue's clusters placed
on the grid; the bins are cut into chunks of nearby bins, the clusters into chunks of
:data:`CLUSTER_CHUNK`.
"""

import numpy as np

from ..binning import continuum_snr, make_bins
from ..prepare import mw_transmission, photometry_to_flux_density

__all__ = ["MAX_CHUNK_SPAXELS", "CLUSTER_CHUNK", "make_setup"]

MAX_CHUNK_SPAXELS = 16384  # spaxels per chunk (a chunk of large Voronoi bins is cut earlier)
CLUSTER_CHUNK = 256  # clusters per chunk


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


def make_setup(options, cube, maps, catalogue, images, meta, progress):
    """Everything the chunks need besides the cube: bins, kinematics, photometry, clusters.

    Parameters
    ----------
    options : dict
        The run's options (:func:`~sfh_ml.observations.apply.options.run_options`).
    cube : MuseCube
    maps : DapMaps or None
        ``V_STARS`` and ``SIGMA_STARS``, km/s, on the cube's grid.
    catalogue : astropy.table.Table or None
        :func:`~sfh_ml.observations.readers.read_cluster_catalogue`.
    images : list of HstImage or None
    meta : dict
        The model's metadata (``n_bands``).
    progress : bool

    Returns
    -------
    dict of ndarray
        The content of ``setup.npz``: ``bin_id`` (ny, nx), per bin (n_bins,) ``bin_snr``, ``v_kms``,
        ``sigma_kms``, ``photometry`` (n_bins, n_bands), the chunks (``order``, ``chunk_starts``),
        the sources of the kinematics and photometry, and with a catalogue the clusters' ``cl_*``.

    Raises
    ------
    ValueError
        An empty cube; a catalogue none of whose positions lies inside the cube.
    """
    from ..hst import hst_spaxel_fluxes, muse_psf_fwhm

    signal, noise = continuum_snr(cube.flux, cube.var, cube.wave_aa, redshift=options["redshift"])
    bins = make_bins(signal, noise, options["bins"], source=cube.path)
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
        setup.update(_cluster_setup(options, cube, catalogue, v_map, s_map))
    return setup


def _cluster_setup(options, cube, catalogue, v_map, s_map):
    """The clusters' positions on the grid, fluxes (in the cube's unit) and kinematics, and chunks."""
    ny, nx = cube.shape
    x, y = (np.asarray(a, float) for a in cube.wcs.world_to_pixel_values(catalogue["ra"], catalogue["dec"]))
    with np.errstate(invalid="ignore"):
        inside = np.isfinite(x) & np.isfinite(y) & (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
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
    return dict(
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
