"""MUSE spectra in circular apertures around catalogue positions, with a local background removed.

A cluster catalogue's fluxes are of the cluster alone (aperture photometry with a local sky), so
the spectrum paired with them must be too: the sum over an aperture of the size of the MUSE PSF
minus the aperture's area times the mean spectrum per spaxel in an annulus around it.

Spaxels are weighted by the fraction of their area inside the aperture (or annulus), computed
on a grid of ``subsample`` x ``subsample`` points per spaxel (error < 1 % of a spaxel's area per
edge spaxel for the default 10), so the aperture's area is pi r^2 whatever the position's
sub-spaxel offset. No ``photutils`` needed: the geometry of a circle on a grid is all there is.
"""

from dataclasses import dataclass

import numpy as np

from ..constants import FWHM_TO_SIGMA
from .binning import weighted_sums

__all__ = ["ApertureSpectra", "aperture_spectra", "aperture_weights"]

MIN_APERTURE_COVERAGE = 0.9  # fraction of the aperture's area that must hold data
MIN_ANNULUS_COVERAGE = 0.5  # fraction of the annulus's area that must hold data
SUBSAMPLE = 10


@dataclass
class ApertureSpectra:
    """Spectra in apertures.

    Attributes
    ----------
    flux, var : ndarray, shape (n_obj, n_wave)
        Aperture sum (background subtracted, PSF-corrected if asked) and its variance, in the
        cube's units; NaN rows for invalid objects.
    background : ndarray, shape (n_obj, n_wave) or None
        Mean background per spaxel from the annulus (None without an annulus).
    area_spaxels : ndarray, shape (n_obj,)
        Area of the aperture in spaxels (sum of the overlap weights).
    psf_fraction : ndarray, shape (n_obj,)
        Fraction of a point source's flux the (background-subtracted) aperture holds; the spectra
        were divided by it. 1 when no PSF was given.
    x_pix, y_pix : ndarray, shape (n_obj,)
        Positions on the cube's spaxel grid (from 0).
    valid : ndarray of bool, shape (n_obj,)
    reason : list of str
        Why an object is invalid ('' if valid).
    """

    flux: np.ndarray
    var: np.ndarray
    background: np.ndarray
    area_spaxels: np.ndarray
    psf_fraction: np.ndarray
    x_pix: np.ndarray
    y_pix: np.ndarray
    valid: np.ndarray
    reason: list


def aperture_weights(shape, x_pix, y_pix, r_out_pix, r_in_pix=0.0, subsample=SUBSAMPLE):
    """Fraction of each pixel's area inside a circle (or an annulus) centred at (x_pix, y_pix).

    Parameters
    ----------
    shape : (int, int)
        (ny, nx) of the grid; pixel (i, j) covers [j - 0.5, j + 0.5] x [i - 0.5, i + 0.5].
    x_pix, y_pix : float
        Centre, pixel coordinates (from 0).
    r_out_pix, r_in_pix : float
        Outer and inner radii in pixels (``r_in_pix = 0``: a full circle).
    subsample : int
        Points per pixel side.

    Returns
    -------
    ndarray, shape (ny, nx)
        Weights in [0, 1].
    """
    ny, nx = shape
    s = int(subsample)
    offs = (np.arange(s) + 0.5) / s - 0.5
    yy = (np.arange(ny)[:, None] + offs[None, :]).ravel() - y_pix
    xx = (np.arange(nx)[:, None] + offs[None, :]).ravel() - x_pix
    d2 = yy[:, None] ** 2 + xx[None, :] ** 2
    inside = (d2 <= r_out_pix**2) & (d2 >= r_in_pix**2) if r_in_pix > 0 else d2 <= r_out_pix**2
    return inside.reshape(ny, s, nx, s).mean(axis=(1, 3))


def _psf_pixels(shape, x_pix, y_pix, fwhm_pix, subsample=SUBSAMPLE):
    """A Gaussian PSF of unit flux, integrated over each pixel (by subsampling), shape (ny, nx)."""
    ny, nx = shape
    s = int(subsample)
    offs = (np.arange(s) + 0.5) / s - 0.5
    sig = fwhm_pix * FWHM_TO_SIGMA
    gy = np.exp(-0.5 * (((np.arange(ny)[:, None] + offs[None, :]).ravel() - y_pix) / sig) ** 2)
    gx = np.exp(-0.5 * (((np.arange(nx)[:, None] + offs[None, :]).ravel() - x_pix) / sig) ** 2)
    g = (gy[:, None] * gx[None, :]).reshape(ny, s, nx, s).sum(axis=(1, 3))
    return g / (2 * np.pi * sig**2 * s * s)


def aperture_spectra(
    flux,
    var,
    wcs,
    ra_deg,
    dec_deg,
    radius_arcsec,
    annulus_arcsec=None,
    psf_fwhm_arcsec=None,
    on_bad="raise",
    min_coverage=MIN_APERTURE_COVERAGE,
    subsample=SUBSAMPLE,
):
    """The spectrum in a circular aperture around each position, minus a local background.

    flux = sum_j w_j f_j - A * b with w_j the fraction of spaxel j inside the aperture,
    A = sum_j w_j its area in spaxels, and b = sum_k a_k f_k / sum_k a_k the mean spectrum per
    spaxel in the annulus (weights a_k likewise); var = sum_j w_j^2 v_j + A^2 sum_k a_k^2 v_k /
    (sum_k a_k)^2 (aperture and annulus taken as independent). Channels missing in a few spaxels
    are rescaled from the others (:func:`sfh_ml.observations.binning.weighted_sums`).

    Parameters
    ----------
    flux, var : array-like, shape (n_wave, ny, nx)
        The cube's flux and variance (numpy, memory map or Dask: only a cutout around each
        position is read).
    wcs : astropy.wcs.WCS
        The cube's WCS (3-D or celestial).
    ra_deg, dec_deg : array-like, shape (n_obj,)
        Positions, degrees (the catalogue's frame, ICRS).
    radius_arcsec : float or array-like, shape (n_obj,)
        Aperture radius, arcsec (e.g. the MUSE PSF's FWHM, ~0.8").
    annulus_arcsec : (float, float), optional
        Inner and outer radii of the background annulus, arcsec (e.g. (1.5, 2.5) x the FWHM);
        no background subtraction without it.
    psf_fwhm_arcsec : float, optional
        FWHM of the cube's PSF (Gaussian). If given, each spectrum is divided by the fraction of a
        point source's flux the background-subtracted aperture holds (``psf_fraction``), so it
        can be paired with a catalogue's total fluxes.
    on_bad : {"raise", "flag"}
        Positions outside the cube, or whose aperture has less than ``min_coverage`` of its area
        on spaxels with data (or whose annulus has less than half): raise a ValueError naming
        them all, or return NaN spectra with ``valid`` False and the ``reason``.
    min_coverage : float
        See ``on_bad``.
    subsample : int
        Points per spaxel side for the overlap weights.

    Returns
    -------
    ApertureSpectra
    """
    if on_bad not in ("raise", "flag"):
        raise ValueError(f"on_bad must be 'raise' or 'flag', got {on_bad!r}")
    from astropy.wcs.utils import proj_plane_pixel_scales

    cel = wcs.celestial if wcs.naxis > 2 else wcs
    n_wave, ny, nx = np.shape(flux)
    if np.shape(var) != np.shape(flux):
        raise ValueError(f"flux {np.shape(flux)} and var {np.shape(var)} must have the same shape")
    ra = np.atleast_1d(np.asarray(ra_deg, dtype=float))
    dec = np.atleast_1d(np.asarray(dec_deg, dtype=float))
    n = ra.size
    radius = np.broadcast_to(np.asarray(radius_arcsec, dtype=float), (n,))
    scales = proj_plane_pixel_scales(cel) * 3600.0
    if not np.isclose(scales[0], scales[1], rtol=1e-3):
        raise ValueError(f"the cube's spaxels are not square ({scales[0]:.4f} x {scales[1]:.4f} arcsec)")
    pix = float(scales[0])
    x, y = (np.asarray(a, dtype=float) for a in cel.world_to_pixel_values(ra, dec))
    r_ap = radius / pix
    r_in, r_out = (
        (None, None) if annulus_arcsec is None else (np.asarray(annulus_arcsec, float) / pix).tolist()
    )
    if r_in is not None and not (r_ap.max() <= r_in < r_out):
        raise ValueError(
            f"annulus {annulus_arcsec} arcsec must lie outside the aperture "
            f"(radius {radius.max():.2f} arcsec)"
        )
    reach = np.maximum(r_ap, r_out or 0.0) + 1.0

    out_f = np.full((n, n_wave), np.nan)
    out_v = np.full((n, n_wave), np.nan)
    out_b = None if r_in is None else np.full((n, n_wave), np.nan)
    area = np.full(n, np.nan)
    frac = np.ones(n)
    reasons = [""] * n
    for i in range(n):
        if not (
            np.isfinite(x[i]) and np.isfinite(y[i]) and -0.5 <= x[i] < nx - 0.5 and -0.5 <= y[i] < ny - 0.5
        ):
            reasons[i] = f"centre outside the cube (x = {x[i]:.1f}, y = {y[i]:.1f} spaxels; cube {nx} x {ny})"
            continue
        # A box around the position, padded with "no data" where it leaves the cube.
        bx0, by0 = int(np.floor(x[i] - reach[i])), int(np.floor(y[i] - reach[i]))
        bx1, by1 = int(np.ceil(x[i] + reach[i])) + 1, int(np.ceil(y[i] + reach[i])) + 1
        x0, x1, y0, y1 = max(0, bx0), min(nx, bx1), max(0, by0), min(ny, by1)
        cut = (by1 - by0, bx1 - bx0)
        f = np.full((n_wave, *cut), np.nan)
        v = np.full((n_wave, *cut), np.nan)
        inner = (slice(None), slice(y0 - by0, y1 - by0), slice(x0 - bx0, x1 - bx0))
        f[inner] = np.asarray(flux[:, y0:y1, x0:x1], dtype=np.float64)
        v[inner] = np.asarray(var[:, y0:y1, x0:x1], dtype=np.float64)
        f, v = f.reshape(n_wave, -1), v.reshape(n_wave, -1)
        has_data = (np.isfinite(f) & np.isfinite(v)).mean(axis=0) >= 0.5
        xc, yc = x[i] - bx0, y[i] - by0
        w_ap = aperture_weights(cut, xc, yc, r_ap[i], subsample=subsample).ravel()
        a_ap = w_ap.sum()  # the aperture's area, spaxels (pi r^2 to the subsampling's precision)
        cover = (w_ap * has_data).sum() / a_ap
        if cover < min_coverage:
            reasons[i] = (
                f"only {100 * cover:.0f} % of the aperture on spaxels with data (edge or no coverage)"
            )
            continue
        # Sum over the spaxels with data, scaled up to the whole aperture (missing spaxels take
        # the mean of the others; at most 1 - min_coverage of the area).
        fs, vs = weighted_sums(f, v, (w_ap * has_data)[None])
        fs, vs = fs * (a_ap / (w_ap * has_data).sum()), vs * (a_ap / (w_ap * has_data).sum()) ** 2
        psf = None if psf_fwhm_arcsec is None else _psf_pixels(cut, xc, yc, psf_fwhm_arcsec / pix)
        if psf is not None:
            frac[i] = float((w_ap * psf.ravel()).sum())
        if r_in is not None:
            w_an_full = aperture_weights(cut, xc, yc, r_out, r_in, subsample).ravel()
            w_an = w_an_full * has_data
            if w_an.sum() < MIN_ANNULUS_COVERAGE * w_an_full.sum():
                reasons[i] = (
                    f"only {100 * w_an.sum() / w_an_full.sum():.0f} % of the background annulus has data"
                )
                continue
            bs, bv = weighted_sums(f, v, w_an[None])
            bkg, bkg_var = bs[0] / w_an.sum(), bv[0] / w_an.sum() ** 2
            out_b[i] = bkg
            fs, vs = fs - a_ap * bkg, vs + a_ap**2 * bkg_var
            if psf is not None:
                frac[i] -= a_ap * float((w_an * psf.ravel()).sum()) / w_an.sum()
        out_f[i], out_v[i] = fs[0] / frac[i], vs[0] / frac[i] ** 2
        area[i] = a_ap
    valid = np.array([r == "" for r in reasons])
    if on_bad == "raise" and not valid.all():
        bad = [f"#{i} (RA {ra[i]:.6f}, Dec {dec[i]:.6f}): {reasons[i]}" for i in np.flatnonzero(~valid)]
        raise ValueError(
            f"{len(bad)} of {n} positions cannot be measured in the cube: "
            + "; ".join(bad)
            + ". Remove them, or pass on_bad='flag' to get NaN spectra flagged invalid."
        )
    return ApertureSpectra(out_f, out_v, out_b, area, frac, x, y, valid, reasons)
