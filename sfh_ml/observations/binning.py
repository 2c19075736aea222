"""Spatial bins of a cube: adaptive bins to a target S/N, a regular grid, or one bin per spaxel.

A :class:`SpatialBins` keeps the bin of every spaxel (``-1``: left out), so any per-bin result can
be painted back onto the sky (:meth:`SpatialBins.paint`), and it sums the spectra of its bins from
a cube of any size with bounded memory (:meth:`SpatialBins.iter_spectra`): the cube is read a few
rows at a time, and a bin's sum is handed out as soon as its last row has been read.

The S/N that the bins are built on is the cube's own: the mean flux and the mean ``STAT`` variance
over a continuum window (:func:`continuum_snr`), the same window (5300-5700 A in the rest frame) in
which the synthetic training spectra define their S/N.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from ..synthesis.instrument import SNR_WINDOW_AA

__all__ = [
    "SpatialBins",
    "continuum_snr",
    "voronoi_bins",
    "grid_bins",
    "no_bins",
    "weighted_sums",
    "parse_bins",
    "make_bins",
]

MAX_VOXELS = 2**25  # cube values read at a time (x 4 bytes each for float32: 128 MB per array)
MIN_PRESENT_FRACTION = 0.5  # a summed channel with less than this fraction of its weight present is NaN


# ----------------------------------------------------------------------------------------- S/N


def _row_step(n_wave, nx, max_voxels):
    return max(1, int(max_voxels) // max(1, n_wave * nx))


def continuum_snr(flux, var, wave_aa, window=SNR_WINDOW_AA, redshift=0.0, max_voxels=MAX_VOXELS):
    """Mean signal and noise per pixel of each spaxel in a continuum window.

    signal = mean of the flux and noise = sqrt(mean of the variance) over the good pixels of the
    window (finite flux and variance, variance > 0). Both add up over spaxels as a summed spectrum
    does (signals linearly, noise in quadrature), so ``signal.sum() / sqrt((noise**2).sum())`` over
    a bin is the S/N per pixel of the bin's summed spectrum.

    Parameters
    ----------
    flux, var : array-like, shape (n_wave, ...)
        Flux and its variance (the cube's ``DATA`` and ``STAT``, any unit); numpy arrays, memory
        maps or Dask arrays: only the window's channels are read, a few rows at a time.
    wave_aa : ndarray, shape (n_wave,)
        Observed wavelength of each channel, Angstrom (increasing).
    window : (float, float)
        Rest-frame window, Angstrom; default that of the synthetic spectra's S/N.
    redshift : float
        The window is shifted to ``window * (1 + redshift)`` in the observed frame.
    max_voxels : int
        Values read at a time.

    Returns
    -------
    signal, noise : ndarray, shape (...)
        Float64; NaN where a spaxel has no good pixel in the window.

    Raises
    ------
    ValueError
        The window is not covered by ``wave_aa`` (fewer than 10 channels inside it).
    """
    wave_aa = np.asarray(wave_aa, dtype=float)
    if np.shape(flux) != np.shape(var) or np.shape(flux)[0] != wave_aa.size:
        raise ValueError(
            f"flux {np.shape(flux)}, var {np.shape(var)} and wave_aa ({wave_aa.size},) do not match: "
            "flux and var must be (n_wave, ...) arrays on the same wavelengths"
        )
    lo_aa, hi_aa = (np.asarray(window, dtype=float) * (1.0 + redshift)).tolist()
    lo, hi = np.searchsorted(wave_aa, [lo_aa, hi_aa])
    if hi - lo < 10:
        raise ValueError(
            f"the continuum window {window[0]:.0f}-{window[1]:.0f} A at z = {redshift:.4f} "
            f"({lo_aa:.0f}-{hi_aa:.0f} A observed) is not covered by the wavelengths "
            f"{wave_aa[0]:.0f}-{wave_aa[-1]:.0f} A: pass another window"
        )
    shape = np.shape(flux)[1:]
    n_sp = int(np.prod(shape))
    signal = np.full(n_sp, np.nan)
    noise = np.full(n_sp, np.nan)
    # Read whole rows of the first spatial axis; a 1-D (n_wave, n) input is one "row".
    if len(shape) >= 2:
        row_size = int(np.prod(shape[1:]))
        step = _row_step(hi - lo, row_size, max_voxels)
        blocks = [(y0, min(y0 + step, shape[0])) for y0 in range(0, shape[0], step)]
    else:
        row_size, blocks = n_sp, [None]
    for block in blocks:
        index = (slice(lo, hi),) if block is None else (slice(lo, hi), slice(*block))
        f = np.asarray(flux[index], dtype=np.float64).reshape(hi - lo, -1)
        v = np.asarray(var[index], dtype=np.float64).reshape(hi - lo, -1)
        good = np.isfinite(f) & np.isfinite(v) & (v > 0)
        n = good.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where(good, f, 0.0).sum(axis=0) / n
            e = np.sqrt(np.where(good, v, 0.0).sum(axis=0) / n)
        out = slice(None) if block is None else slice(block[0] * row_size, block[1] * row_size)
        signal[out] = np.where(n > 0, s, np.nan)
        noise[out] = np.where(n > 0, e, np.nan)
    return signal.reshape(shape), noise.reshape(shape)


# ----------------------------------------------------------------------------------------- sums


def _partial_sums(flux, var, weights):
    """Weighted sums over the good pixels and the weight present, before any rescaling.

    flux, var: (n_wave, n_pix); weights: (n_out, n_pix) dense or sparse. Returns (n_out, n_wave) x 3.
    """
    good = np.isfinite(flux) & np.isfinite(var)
    f0 = np.where(good, flux, 0.0).astype(np.float64)
    v0 = np.where(good, var, 0.0).astype(np.float64)
    w = sparse.csr_matrix(weights, dtype=np.float64)
    fs = np.asarray(w @ f0.T)
    vs = np.asarray(w.multiply(w) @ v0.T)
    present = np.asarray(w @ good.T.astype(np.float64))
    return fs, vs, present


def _finish_sums(fs, vs, present, total, min_fraction=MIN_PRESENT_FRACTION):
    """Rescale sums for missing pixels: x total / present; NaN below ``min_fraction`` of the weight."""
    total = np.asarray(total, dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(present >= min_fraction * total, total / present, np.nan)
    return fs * scale, vs * scale**2


def weighted_sums(flux, var, weights, min_fraction=MIN_PRESENT_FRACTION):
    """Weighted sums of spectra with their variance, rescaled where pixels are missing.

    flux_sum_i = s_i sum_j w_ij f_j and var_sum_i = s_i^2 sum_j w_ij^2 var_j over the pixels j whose
    flux and variance are finite at that wavelength, with s_i = sum_j w_ij / sum_(good j) w_ij: a
    channel missing in a few pixels (a flagged voxel, an edge) is estimated from the others instead
    of dipping; with less than ``min_fraction`` of the weight present it is NaN.

    Parameters
    ----------
    flux, var : ndarray, shape (n_wave, n_pix)
        Spectra and variances of the pixels (columns).
    weights : ndarray or scipy.sparse matrix, shape (n_out, n_pix)
        Weight of each pixel in each sum (1 for a plain sum, the overlap fraction for an aperture).
    min_fraction : float
        See above.

    Returns
    -------
    flux_sum, var_sum : ndarray, shape (n_out, n_wave)
        Float64.
    """
    flux = np.asarray(flux)
    var = np.asarray(var)
    w = sparse.csr_matrix(weights, dtype=np.float64)
    if flux.shape != var.shape or flux.ndim != 2 or w.shape[1] != flux.shape[1]:
        raise ValueError(
            f"flux {flux.shape} and var {var.shape} must be (n_wave, n_pix) and weights (n_out, n_pix)"
        )
    fs, vs, present = _partial_sums(flux, var, w)
    return _finish_sums(fs, vs, present, np.asarray(w.sum(axis=1)).ravel(), min_fraction)


# ----------------------------------------------------------------------------------------- bins


def _bin_snr(bin_id, signal, noise, n_bins):
    """S/N of each bin's summed spectrum from per-spaxel signal and noise (NaN without them)."""
    if signal is None or noise is None:
        return np.full(n_bins, np.nan)
    ids = bin_id.ravel()
    inside = ids >= 0
    s = np.bincount(ids[inside], weights=np.nan_to_num(np.ravel(signal)[inside]), minlength=n_bins)
    n2 = np.bincount(ids[inside], weights=np.nan_to_num(np.ravel(noise)[inside] ** 2), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return s / np.sqrt(n2)


@dataclass
class SpatialBins:
    """Spatial bins of a cube, each a set of spaxels whose spectra are summed.

    Attributes
    ----------
    bin_id : ndarray of int, shape (ny, nx)
        Bin of each spaxel, 0 to ``n_bins - 1``; -1 for spaxels left out (no data, S/N below the
        minimum). Every bin has at least one spaxel.
    snr : ndarray, shape (n_bins,)
        Expected S/N per pixel of each bin's summed spectrum in the continuum window (NaN if the
        bins were made without signal and noise).
    kind : str
        How the bins were made (``"voronoi"``, ``"grid"``, ``"none"``), for the outputs.
    target_snr : float
        The target S/N of Voronoi bins (NaN otherwise).
    x_centre, y_centre : ndarray, shape (n_bins,)
        Mean pixel coordinates (from 0) of each bin's spaxels (computed).
    members : list of ndarray of int
        Flat (row-major, ``y * nx + x``) indices of each bin's spaxels (computed).
    """

    bin_id: np.ndarray
    snr: np.ndarray = None
    kind: str = "custom"
    target_snr: float = np.nan
    x_centre: np.ndarray = field(init=False, repr=False)
    y_centre: np.ndarray = field(init=False, repr=False)
    members: list = field(init=False, repr=False)

    def __post_init__(self):
        self.bin_id = np.asarray(self.bin_id)
        if self.bin_id.ndim != 2 or not np.issubdtype(self.bin_id.dtype, np.integer):
            raise ValueError(f"bin_id must be a 2-D integer map, got {self.bin_id.dtype} {self.bin_id.shape}")
        self.bin_id = self.bin_id.astype(np.int64)
        ids = self.bin_id.ravel()
        n_bins = int(ids.max()) + 1 if ids.size else 0
        counts = np.bincount(ids[ids >= 0], minlength=n_bins)
        if np.any(ids < -1) or np.any(counts == 0):
            raise ValueError(
                "bin ids must run from 0 to n_bins - 1 with no empty bin, -1 for unbinned spaxels"
            )
        self.snr = np.full(n_bins, np.nan) if self.snr is None else np.asarray(self.snr, dtype=float)
        if self.snr.shape != (n_bins,):
            raise ValueError(f"snr has shape {self.snr.shape}, expected ({n_bins},)")
        order = np.argsort(ids, kind="stable")
        first = np.searchsorted(ids[order], np.arange(n_bins + 1))
        self.members = [order[first[b] : first[b + 1]] for b in range(n_bins)]
        inside = ids >= 0
        y, x = np.divmod(np.arange(ids.size), self.shape[1])
        self.x_centre = np.bincount(ids[inside], weights=x[inside], minlength=n_bins) / np.maximum(counts, 1)
        self.y_centre = np.bincount(ids[inside], weights=y[inside], minlength=n_bins) / np.maximum(counts, 1)

    @property
    def shape(self):
        """(ny, nx) of the spaxel grid."""
        return self.bin_id.shape

    @property
    def n_bins(self):
        """Number of bins."""
        return len(self.members)

    @property
    def n_spaxels(self):
        """Number of spaxels in each bin, shape (n_bins,)."""
        return np.array([m.size for m in self.members], dtype=np.int64)

    def paint(self, values, fill=np.nan):
        """Paint per-bin values back onto the spaxel grid.

        Parameters
        ----------
        values : array-like, shape (n_bins,) or (n_bins, ...)
            One value (or one vector) per bin.
        fill : scalar
            Value of the unbinned spaxels.

        Returns
        -------
        ndarray, shape (ny, nx) or (..., ny, nx)
            Extra dimensions of ``values`` come first, as in a FITS cube.
        """
        values = np.asarray(values)
        if values.shape[:1] != (self.n_bins,):
            raise ValueError(
                f"values has {values.shape[0] if values.ndim else 0} rows, expected {self.n_bins}"
            )
        out = np.full((*values.shape[1:], *self.shape), fill, dtype=np.result_type(values, fill))
        inside = self.bin_id >= 0
        out[..., inside] = np.moveaxis(values[self.bin_id[inside]], 0, -1)
        return out

    def aggregate(self, image, how="sum"):
        """Sum (or mean) of a spaxel map over each bin, ignoring NaN.

        Parameters
        ----------
        image : ndarray, shape (ny, nx)
        how : {"sum", "mean"}

        Returns
        -------
        ndarray, shape (n_bins,)
        """
        image = np.asarray(image, dtype=float)
        if image.shape != self.shape:
            raise ValueError(f"image has shape {image.shape}, expected {self.shape}")
        ids = self.bin_id.ravel()
        ok = (ids >= 0) & np.isfinite(image.ravel())
        total = np.bincount(ids[ok], weights=image.ravel()[ok], minlength=self.n_bins)
        if how == "sum":
            return total
        if how == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                return total / np.bincount(ids[ok], minlength=self.n_bins)
        raise ValueError(f"how must be 'sum' or 'mean', got {how!r}")

    def iter_spectra(self, flux, var, max_voxels=MAX_VOXELS, min_fraction=MIN_PRESENT_FRACTION):
        """Summed spectra of the bins, streamed with bounded memory.

        The cube is read in blocks of whole rows (at most ``max_voxels`` values per array); a bin
        is handed out as soon as its last row has been read, so memory holds one block plus the
        bins still open across it. Fluxes add up, variances too; channels missing in some member
        spaxels are rescaled as in :func:`weighted_sums`.

        Parameters
        ----------
        flux, var : array-like, shape (n_wave, ny, nx)
            The cube's flux and variance: numpy arrays, memory maps or Dask arrays.
        max_voxels : int
            Values read at a time.
        min_fraction : float
            See :func:`weighted_sums`.

        Yields
        ------
        bins : ndarray of int, shape (n,)
            Bin indices, increasing within a batch.
        flux_sum, var_sum : ndarray, shape (n, n_wave)
            Float64.
        """
        n_wave = np.shape(flux)[0]
        if np.shape(flux) != np.shape(var) or tuple(np.shape(flux)[1:]) != self.shape:
            raise ValueError(
                f"flux {np.shape(flux)} and var {np.shape(var)} must both be (n_wave, {self.shape[0]}, "
                f"{self.shape[1]}), the shape of the bins"
            )
        ny, nx = self.shape
        ys = np.array([m[-1] // nx for m in self.members], dtype=np.int64)  # last row of each bin
        n_members = self.n_spaxels.astype(np.float64)
        open_ids = np.empty(0, dtype=np.int64)
        acc = [np.empty((0, n_wave)) for _ in range(3)]
        step = _row_step(n_wave, nx, max_voxels)
        for y0 in range(0, ny, step):
            y1 = min(ny, y0 + step)
            ids = self.bin_id[y0:y1].ravel()
            cols = np.flatnonzero(ids >= 0)
            if cols.size:
                f = np.asarray(flux[:, y0:y1, :]).reshape(n_wave, -1)[:, cols]
                v = np.asarray(var[:, y0:y1, :]).reshape(n_wave, -1)[:, cols]
                uniq, inv = np.unique(ids[cols], return_inverse=True)
                w = sparse.csr_matrix(
                    (np.ones(cols.size), (inv, np.arange(cols.size))), (uniq.size, cols.size)
                )
                parts = _partial_sums(f, v, w)
                new = np.setdiff1d(uniq, open_ids, assume_unique=True)
                open_ids = np.concatenate([open_ids, new])
                order = np.argsort(open_ids)
                open_ids = open_ids[order]
                acc = [np.concatenate([a, np.zeros((new.size, n_wave))])[order] for a in acc]
                where = np.searchsorted(open_ids, uniq)
                for a, p in zip(acc, parts):
                    a[where] += p
            done = ys[open_ids] < y1
            if done.any():
                fs, vs = _finish_sums(*(a[done] for a in acc), n_members[open_ids[done]], min_fraction)
                yield open_ids[done], fs, vs
                open_ids = open_ids[~done]
                acc = [a[~done] for a in acc]

    def sum_spectra(self, flux, var, max_voxels=MAX_VOXELS, min_fraction=MIN_PRESENT_FRACTION):
        """Summed spectrum and variance of every bin (all in memory: see :meth:`iter_spectra`).

        Returns
        -------
        flux_sum, var_sum : ndarray, shape (n_bins, n_wave)
            Float64, in bin order.
        """
        n_wave = np.shape(flux)[0]
        fs = np.full((self.n_bins, n_wave), np.nan)
        vs = np.full((self.n_bins, n_wave), np.nan)
        for bins, f, v in self.iter_spectra(flux, var, max_voxels, min_fraction):
            fs[bins], vs[bins] = f, v
        return fs, vs


def _usable(signal, noise, min_snr, mask):
    signal = np.asarray(signal, dtype=float)
    noise = np.asarray(noise, dtype=float)
    if signal.shape != noise.shape or signal.ndim != 2:
        raise ValueError(f"signal {signal.shape} and noise {noise.shape} must be maps of the same shape")
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = signal / noise
    ok = np.isfinite(snr) & (noise > 0) & (snr >= min_snr)
    if mask is not None:
        ok &= np.asarray(mask, dtype=bool)
    return signal, noise, snr, ok


def _merge_short_bins(bin_id, signal, noise, min_bin_snr):
    """Merge each bin whose S/N is below ``min_bin_snr`` into its adjacent bin of nearest centre.

    Bins are taken in order of increasing S/N; a bin with no neighbour (an island) stays as it is.
    Returns the relabelled map.
    """
    ny, nx = bin_id.shape
    ids = bin_id.copy()
    n_bins = int(ids.max()) + 1
    flat = ids.ravel()
    inside = flat >= 0
    sig = np.bincount(flat[inside], weights=np.ravel(signal)[inside], minlength=n_bins)
    n2 = np.bincount(flat[inside], weights=np.ravel(noise)[inside] ** 2, minlength=n_bins)
    counts = np.bincount(flat[inside], minlength=n_bins).astype(float)
    yy, xx = np.divmod(np.arange(flat.size), nx)
    cy = np.bincount(flat[inside], weights=yy[inside], minlength=n_bins)
    cx = np.bincount(flat[inside], weights=xx[inside], minlength=n_bins)
    order = np.argsort(flat, kind="stable")
    first = np.searchsorted(flat[order], np.arange(n_bins + 1))
    members = {b: order[first[b] : first[b + 1]] for b in range(n_bins)}
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = sig / np.sqrt(n2)
    for b in np.argsort(snr):
        if not snr[b] < min_bin_snr or b not in members:
            continue
        my, mx = np.divmod(members[b], nx)
        nbr = []
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            y, x = my + dy, mx + dx
            ok = (y >= 0) & (y < ny) & (x >= 0) & (x < nx)
            nbr.append(flat[y[ok] * nx + x[ok]])
        nbr = np.setdiff1d(np.concatenate(nbr), [-1, b])
        if nbr.size == 0:
            continue
        d2 = (cy[nbr] / counts[nbr] - cy[b] / counts[b]) ** 2 + (
            cx[nbr] / counts[nbr] - cx[b] / counts[b]
        ) ** 2
        t = nbr[np.argmin(d2)]
        flat[members[b]] = t
        members[t] = np.concatenate([members[t], members.pop(b)])
        for arr in (sig, n2, counts, cy, cx):
            arr[t] += arr[b]
        snr[t] = sig[t] / np.sqrt(n2[t])
    _, labels = np.unique(flat[inside], return_inverse=True)
    flat[inside] = labels
    return flat.reshape(ny, nx)


def voronoi_bins(signal, noise, target_snr, min_snr=1.0, mask=None, regularise=True, min_bin_fraction=0.8):
    """Adaptive bins reaching a target S/N: centroidal power diagrams (PowerBin, Cappellari 2025).

    The capacity of a spaxel is (S/N)^2, taken as additive: exactly so for photon-limited spaxels
    (signal proportional to variance), where the plain sum of the spectra has
    (S/N)^2 = sum (S/N_i)^2; where the background dominates, a bin's S/N falls a little short of
    the target. Spaxels below ``min_snr`` (or without data) are left out (-1): they would add
    noise and no signal. Bright spaxels already above the target stay single.

    PowerBin rather than ``vorbin``: it is vorbin's successor by the same author, scales as
    O(N log N) (a PHANGS mosaic has ~10^6 spaxels, where vorbin's accretion is slow), and its
    bins are convex and connected by construction, with the same additive (S/N)^2 capacity.

    Parameters
    ----------
    signal, noise : ndarray, shape (ny, nx)
        Per-spaxel signal and noise per pixel (:func:`continuum_snr`).
    target_snr : float
        Target S/N per pixel of each bin's summed spectrum.
    min_snr : float
        Spaxels below this S/N are left unbinned.
    mask : ndarray of bool, shape (ny, nx), optional
        False for spaxels to leave out.
    regularise : bool
        Run PowerBin's regularisation (rounder bins of more equal S/N); False: accretion only.
    min_bin_fraction : float
        PowerBin can leave a few bins short of the target (between bright single spaxels, at the
        edge of the usable area); those whose summed S/N is below this fraction of the target are
        merged into their adjacent bin of nearest centre (islands with no neighbour stay short).

    Returns
    -------
    SpatialBins
    """
    from powerbin import PowerBin

    if not target_snr > 0:
        raise ValueError(f"target_snr must be > 0, got {target_snr}")
    signal, noise, snr, ok = _usable(signal, noise, min_snr, mask)
    if not ok.any():
        raise ValueError(f"no spaxel has S/N >= min_snr = {min_snr}: lower min_snr or check the cube")
    y, x = np.nonzero(ok)
    capacity = snr[ok] ** 2
    bin_id = np.full(signal.shape, -1, dtype=np.int64)
    if capacity.sum() <= target_snr**2 or y.size == 1:
        bin_id[ok] = 0  # everything together does not reach the target: one bin
    else:
        xy = np.column_stack([x, y]).astype(float)
        pb = PowerBin(xy, capacity, target_snr**2, pixelsize=1.0, verbose=0, regul=regularise)
        _, labels = np.unique(pb.bin_num, return_inverse=True)
        bin_id[y, x] = labels
        bin_id = _merge_short_bins(bin_id, signal, noise, min_bin_fraction * target_snr)
    n_bins = int(bin_id.max()) + 1
    return SpatialBins(bin_id, _bin_snr(bin_id, signal, noise, n_bins), "voronoi", float(target_snr))


def grid_bins(shape, size, mask=None, signal=None, noise=None):
    """Square bins of ``size`` x ``size`` spaxels (smaller at the right and top edges).

    Parameters
    ----------
    shape : (int, int)
        (ny, nx) of the spaxel grid.
    size : int
        Side of a bin in spaxels.
    mask : ndarray of bool, shape (ny, nx), optional
        False for spaxels to leave out; bins with no spaxel left disappear.
    signal, noise : ndarray, shape (ny, nx), optional
        For the bins' S/N.

    Returns
    -------
    SpatialBins
    """
    ny, nx = (int(s) for s in shape)
    size = int(size)
    if size < 1:
        raise ValueError(f"grid bin size must be >= 1 spaxel, got {size}")
    y, x = np.mgrid[0:ny, 0:nx]
    cell = (y // size) * -(-nx // size) + x // size
    keep = np.ones((ny, nx), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if not keep.any():
        raise ValueError("the mask leaves no spaxel to bin")
    _, labels = np.unique(cell[keep], return_inverse=True)
    bin_id = np.full((ny, nx), -1, dtype=np.int64)
    bin_id[keep] = labels
    n_bins = int(bin_id.max()) + 1
    return SpatialBins(bin_id, _bin_snr(bin_id, signal, noise, n_bins), "grid")


def no_bins(mask, signal=None, noise=None):
    """One bin per usable spaxel.

    Parameters
    ----------
    mask : ndarray of bool, shape (ny, nx)
        True for the spaxels to keep (e.g. ``np.isfinite(signal)``).
    signal, noise : ndarray, shape (ny, nx), optional
        For the bins' S/N.

    Returns
    -------
    SpatialBins
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        raise ValueError("mask must be a 2-D boolean map with at least one True spaxel")
    bin_id = np.full(mask.shape, -1, dtype=np.int64)
    bin_id[mask] = np.arange(int(mask.sum()))
    return SpatialBins(bin_id, _bin_snr(bin_id, signal, noise, int(mask.sum())), "none")


# ----------------------------------------------------------------------------------------- choice
def parse_bins(text):
    """Read a binning choice: ``"voronoi:50"`` -> ("voronoi", 50.0); ``"grid:4"`` -> ("grid", 4);
    ``"none"`` -> ("none", None).

    Parameters
    ----------
    text : str
        ``"voronoi:S/N"`` (adaptive bins to a target S/N per pixel), ``"grid:N"`` (N x N spaxels)
        or ``"none"`` (one bin per spaxel); case and surrounding blanks do not matter.

    Returns
    -------
    kind : {"voronoi", "grid", "none"}
    value : float, int or None
        The target S/N, the grid's side in spaxels, or None.

    Raises
    ------
    ValueError
        Anything else, naming the three forms.
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


def make_bins(signal, noise, bins="voronoi:30", source="the cube"):
    """Spatial bins of a cube from its continuum signal and noise, by a choice as text.

    The one place where a binning choice becomes bins: :func:`~sfh_ml.observations.apply_cube` and
    the book use it. Spaxels with NaN signal or noise, or noise <= 0, are left out (bin -1).

    Parameters
    ----------
    signal, noise : ndarray, shape (ny, nx)
        Mean flux and noise per pixel of each spaxel in the continuum window, from
        :func:`continuum_snr` (any flux unit, the same for both).
    bins : str
        ``"voronoi:S/N"``, ``"grid:N"`` or ``"none"`` (:func:`parse_bins`).
    source : str
        What the maps come from, for the error message (e.g. the cube's path).

    Returns
    -------
    SpatialBins

    Raises
    ------
    ValueError
        An unknown choice, maps of different shapes, or no usable spaxel at all.
    """
    kind, value = parse_bins(bins)
    signal, noise = np.asarray(signal, dtype=float), np.asarray(noise, dtype=float)
    if signal.shape != noise.shape or signal.ndim != 2:
        raise ValueError(
            f"signal {signal.shape} and noise {noise.shape} must be maps of the same shape (ny, nx)"
        )
    usable = np.isfinite(signal) & np.isfinite(noise) & (noise > 0)
    if not usable.any():
        raise ValueError(
            f"{source}: no spaxel has finite flux and positive variance in the continuum window: an "
            "empty cube?"
        )
    if kind == "voronoi":
        return voronoi_bins(signal, noise, value)
    if kind == "grid":
        return grid_bins(signal.shape, value, mask=usable, signal=signal, noise=noise)
    return no_bins(usable, signal=signal, noise=noise)
