"""What to do with the outputs of :func:`~sfh_ml.observations.apply.apply_cube`: radii in the galaxy's
plane, radial profiles and gradients, comparisons with a truth or a catalogue.

* :func:`read_application` reads an output folder (maps with their WCS, the bin and cluster tables).
* :func:`deprojected_radius` and :func:`radius_map` put spaxels (or bin centres) in the plane of a
  thin inclined disc, from the cube's celestial WCS, the galaxy's centre, inclination and position
  angle.
* :func:`bin_average` takes a per-spaxel map (a truth, an H-alpha map) to the spatial bins,
  weighted as the binned quantity is (mass for mass-weighted ages).
* :func:`radial_profile` and :func:`fit_gradient` give a profile in annuli and a straight-line
  gradient with its uncertainty; :func:`compare_with_truth` the correlation, bias and scatter of
  recovered against true values; :func:`cluster_age_agreement` the agreement of two sets of ages.
* :func:`usable_objects`, :func:`flag_table` and :func:`pick_regions` select what to trust and what
  to look at.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import ARCSEC_PER_RAD, NMAD_FACTOR
from . import flags as qf
from .binning import SpatialBins

__all__ = [
    "ApplicationOutputs",
    "RadialProfile",
    "GradientFit",
    "read_application",
    "sky_offsets_arcsec",
    "deprojected_radius",
    "radius_map",
    "bin_average",
    "radial_profile",
    "fit_gradient",
    "compare_with_truth",
    "cluster_age_agreement",
    "usable_objects",
    "flag_table",
    "pick_regions",
]

MEDIAN_ERROR_FACTOR = 1.2533  # error of a median of n Gaussian values: sqrt(pi / 2) sigma / sqrt(n)
CLUSTER_TOLERANCE_DEX = 0.3  # age agreement within a factor of 2: the usual bar for SED-fit cluster ages


# ----------------------------------------------------------------------------------------- outputs
@dataclass
class ApplicationOutputs:
    """The outputs of one :func:`~sfh_ml.observations.apply.apply_cube` run, in memory.

    Attributes
    ----------
    maps : dict of str -> ndarray, shape (ny, nx)
        Every image of ``maps.fits`` by extension name (``MW_LOG_AGE``, ``MW_ZH``, ``F_YOUNG``, their
        ``_ERR``, ``SNR``, ``BIN_ID`` (int), ``QUALITY`` (int), ...).
    wcs : astropy.wcs.WCS
        The celestial WCS of the maps (the cube's).
    header : astropy.io.fits.Header
        Primary header of ``maps.fits``: the provenance keywords.
    bins : astropy.table.Table
        One row per spatial bin (``bins.ecsv``).
    clusters : astropy.table.Table or None
        One row per catalogue cluster (``clusters.ecsv``), when the run had a catalogue.
    summary : dict
        ``summary.json``.
    """

    maps: dict
    wcs: object
    header: object
    bins: object
    clusters: object
    summary: dict

    @property
    def age_bins_yr(self):
        """Edges of the model's age bins, yr, shape (n_bins + 1,)."""
        return np.asarray(self.bins.meta["age_bins_yr"], dtype=float)

    @property
    def spatial_bins(self):
        """The bins as a :class:`~sfh_ml.observations.binning.SpatialBins` (to paint or average)."""
        return SpatialBins(self.maps["BIN_ID"].astype(np.int64), np.asarray(self.bins["snr"], dtype=float))


def read_application(out_dir):
    """Read the outputs of :func:`~sfh_ml.observations.apply.apply_cube` from its folder.

    Parameters
    ----------
    out_dir : str or Path
        The folder that holds ``maps.fits``, ``bins.ecsv``, ``summary.json`` and, with a
        catalogue, ``clusters.ecsv``.

    Returns
    -------
    ApplicationOutputs
    """
    from astropy.io import fits
    from astropy.table import Table
    from astropy.wcs import WCS

    from .apply import OUTPUT_FILES

    out_dir = Path(out_dir)
    with fits.open(out_dir / OUTPUT_FILES["maps"]) as hdul:
        maps = {h.name: np.array(h.data) for h in hdul[1:] if h.is_image}
        header = hdul[0].header.copy()
        wcs = WCS(hdul[1].header).celestial
    clusters_path = out_dir / OUTPUT_FILES["clusters_ecsv"]
    return ApplicationOutputs(
        maps=maps,
        wcs=wcs,
        header=header,
        bins=Table.read(out_dir / OUTPUT_FILES["bins_ecsv"]),
        clusters=Table.read(clusters_path) if clusters_path.exists() else None,
        summary=json.loads((out_dir / OUTPUT_FILES["summary"]).read_text()),
    )


# ----------------------------------------------------------------------------------------- geometry
def sky_offsets_arcsec(wcs, x_pix, y_pix, centre_deg):
    """East and north offsets of pixels from a centre, in the tangent plane at the centre.

    The gnomonic projection about ``centre_deg``: exact for any celestial WCS (the pixels go through
    the WCS to RA, Dec first), and equal to the pixel offsets times the pixel scale for a TAN WCS
    centred there.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Celestial (2-D) WCS of the grid.
    x_pix, y_pix : array-like, shape (...)
        Pixel coordinates, from 0.
    centre_deg : (float, float)
        RA and Dec of the centre, degrees.

    Returns
    -------
    east, north : ndarray, shape (...)
        Offsets in arcsec (east positive, towards increasing RA).
    """
    ra, dec = wcs.pixel_to_world_values(np.asarray(x_pix, dtype=float), np.asarray(y_pix, dtype=float))
    a, d = np.radians(ra), np.radians(dec)
    a0, d0 = np.radians(centre_deg[0]), np.radians(centre_deg[1])
    cos_c = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    east = np.cos(d) * np.sin(a - a0) / cos_c
    north = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cos_c
    return east * ARCSEC_PER_RAD, north * ARCSEC_PER_RAD


def deprojected_radius(wcs, x_pix, y_pix, centre_deg, inclination_deg, pa_deg):
    """Galactocentric radius and azimuth in the plane of a thin inclined disc.

    With the position angle ``pa`` of the receding major axis (east of north) and the inclination
    ``i`` (0 = face on): x = east sin(pa) + north cos(pa) along the major axis, y = (-east cos(pa) +
    north sin(pa)) / cos(i) along the deprojected minor axis, R = hypot(x, y).

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS of the grid (``MuseCube.wcs`` or the maps' WCS).
    x_pix, y_pix : array-like, shape (...)
        Pixel coordinates from 0 (e.g. the bins' ``x_centre``, ``y_centre``).
    centre_deg : (float, float)
        RA, Dec of the galaxy's centre, degrees.
    inclination_deg, pa_deg : float
        Inclination and position angle, degrees.

    Returns
    -------
    radius_arcsec : ndarray, shape (...)
        Deprojected radius, arcsec (multiply by the distance in kpc per arcsec for kpc).
    azimuth_rad : ndarray, shape (...)
        Azimuth in the disc from the receding major axis, radians in (-pi, pi].
    """
    if not 0 <= inclination_deg < 90:
        raise ValueError(
            f"inclination {inclination_deg} deg: need 0 <= i < 90 (a disc seen edge-on has no radii)"
        )
    east, north = sky_offsets_arcsec(wcs, x_pix, y_pix, centre_deg)
    pa, inc = np.radians(pa_deg), np.radians(inclination_deg)
    x_maj = east * np.sin(pa) + north * np.cos(pa)
    y_disc = (-east * np.cos(pa) + north * np.sin(pa)) / np.cos(inc)
    return np.hypot(x_maj, y_disc), np.arctan2(y_disc, x_maj)


def radius_map(wcs, shape, centre_deg, inclination_deg, pa_deg):
    """Deprojected radius of every spaxel of a grid.

    Parameters are those of :func:`deprojected_radius`, with ``shape`` (ny, nx) for the pixels.

    Returns
    -------
    ndarray, shape (ny, nx)
        Radius in arcsec.
    """
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    return deprojected_radius(wcs, x, y, centre_deg, inclination_deg, pa_deg)[0]


# ----------------------------------------------------------------------------------------- bins
def bin_average(bin_id, image, weights=None):
    """Weighted mean of a per-spaxel map over each spatial bin, ignoring NaN.

    The value of a bin's summed population when ``weights`` is what the quantity is weighted by:
    a mass-weighted log age of a sum of spaxels is sum(m_i a_i) / sum(m_i) with m_i their masses.

    Parameters
    ----------
    bin_id : ndarray of int, shape (ny, nx)
        Bin of each spaxel, -1 for none (``BIN_ID`` of the maps).
    image : ndarray, shape (ny, nx)
    weights : ndarray, shape (ny, nx), optional
        Non-negative weights (default: equal).

    Returns
    -------
    ndarray, shape (n_bins,)
        NaN for a bin with no finite value or no weight.
    """
    bins = SpatialBins(np.asarray(bin_id).astype(np.int64))
    image = np.asarray(image, dtype=float)
    w = np.ones_like(image) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != image.shape:
        raise ValueError(f"weights {w.shape} and image {image.shape} differ")
    ok = np.isfinite(image) & np.isfinite(w)
    num = bins.aggregate(np.where(ok, image * w, np.nan))
    den = bins.aggregate(np.where(ok, w, np.nan))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


# ----------------------------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class RadialProfile:
    """A quantity in radial annuli.

    Attributes
    ----------
    edges : ndarray, shape (n_annuli + 1,)
        Annulus edges, in the unit of the radii given.
    radius : ndarray, shape (n_annuli,)
        Median radius of the objects in each annulus (NaN if empty).
    median : ndarray, shape (n_annuli,)
        Median of the values.
    error : ndarray, shape (n_annuli,)
        Error of the median, 1.2533 x NMAD / sqrt(n) (NaN for fewer than 2 objects).
    spread : ndarray, shape (n_annuli,)
        NMAD (1.4826 x median absolute deviation) of the values: their scatter, not an error.
    n : ndarray of int, shape (n_annuli,)
    """

    edges: np.ndarray
    radius: np.ndarray
    median: np.ndarray
    error: np.ndarray
    spread: np.ndarray
    n: np.ndarray


def radial_profile(radius, values, edges):
    """Median profile of ``values`` in annuli of ``radius`` (non-finite values left out).

    Parameters
    ----------
    radius, values : array-like, shape (n,)
        Radius (any unit) and value of each object (bin, spaxel).
    edges : array-like, shape (n_annuli + 1,) or int
        Annulus edges (increasing), or a number of annuli of equal width from 0 to the largest radius.

    Returns
    -------
    RadialProfile
    """
    radius, values = np.asarray(radius, dtype=float).ravel(), np.asarray(values, dtype=float).ravel()
    if radius.shape != values.shape:
        raise ValueError(f"radius {radius.shape} and values {values.shape} differ")
    ok = np.isfinite(radius) & np.isfinite(values)
    radius, values = radius[ok], values[ok]
    if np.ndim(edges) == 0:
        edges = np.linspace(0.0, radius.max() if radius.size else 1.0, int(edges) + 1)
        edges[-1] = np.nextafter(edges[-1], np.inf)
    edges = np.asarray(edges, dtype=float)
    k = np.digitize(radius, edges) - 1
    n_ann = edges.size - 1
    out = {key: np.full(n_ann, np.nan) for key in ("radius", "median", "error", "spread")}
    n = np.zeros(n_ann, dtype=np.int64)
    for i in range(n_ann):  # a few annuli: a loop over annuli, not objects
        sel = k == i
        n[i] = sel.sum()
        if n[i] == 0:
            continue
        v = values[sel]
        out["radius"][i] = np.median(radius[sel])
        out["median"][i] = np.median(v)
        out["spread"][i] = NMAD_FACTOR * np.median(np.abs(v - np.median(v)))
        if n[i] > 1:
            out["error"][i] = MEDIAN_ERROR_FACTOR * out["spread"][i] / np.sqrt(n[i])
    return RadialProfile(edges=edges, n=n, **out)


@dataclass(frozen=True)
class GradientFit:
    """A straight line value = intercept + slope x radius.

    Attributes
    ----------
    slope, slope_err : float
        Gradient and its 1-sigma uncertainty (value unit per radius unit).
    intercept, intercept_err : float
        Value at radius 0 and its uncertainty.
    covariance : ndarray, shape (2, 2)
        Covariance of (intercept, slope).
    n : int
        Objects fitted.
    scatter : float
        Root-mean-square residual about the line.
    reduced_chi2 : float
        With the errors given (NaN without); the covariance is scaled by it when it exceeds 1.
    """

    slope: float
    slope_err: float
    intercept: float
    intercept_err: float
    covariance: np.ndarray
    n: int
    scatter: float
    reduced_chi2: float

    def __call__(self, radius):
        """The line at ``radius``."""
        return self.intercept + self.slope * np.asarray(radius, dtype=float)


def fit_gradient(radius, values, sigma=None, r_range=None):
    """Least-squares straight line through values against radius, with the slope's uncertainty.

    Without ``sigma`` the points are weighted equally and the covariance comes from their scatter
    about the line (ordinary least squares). With ``sigma`` they are weighted by 1 / sigma^2 and the
    covariance, (A^T W A)^-1, is multiplied by the reduced chi^2 when that exceeds 1: the spread of
    the points then says more than the quoted errors (e.g. neighbouring bins that share a systematic).
    Neighbouring bins are not independent, so even this uncertainty is a lower limit.

    Parameters
    ----------
    radius, values : array-like, shape (n,)
    sigma : array-like, shape (n,), optional
        1-sigma errors of ``values`` (> 0); non-finite or non-positive ones leave the point out.
    r_range : (float, float), optional
        Fit only radii in this interval.

    Returns
    -------
    GradientFit

    Raises
    ------
    ValueError
        Fewer than 3 usable points, or all at one radius.
    """
    radius, values = np.asarray(radius, dtype=float).ravel(), np.asarray(values, dtype=float).ravel()
    ok = np.isfinite(radius) & np.isfinite(values)
    if sigma is not None:
        sigma = np.asarray(sigma, dtype=float).ravel()
        ok &= np.isfinite(sigma) & (sigma > 0)
    if r_range is not None:
        ok &= (radius >= r_range[0]) & (radius <= r_range[1])
    n = int(ok.sum())
    if n < 3 or np.ptp(radius[ok]) == 0:
        raise ValueError(f"a gradient needs at least 3 points at different radii, got {n}")
    r, v = radius[ok], values[ok]
    w = np.ones(n) if sigma is None else 1.0 / sigma[ok] ** 2
    a = np.column_stack([np.ones(n), r])
    ata = a.T @ (a * w[:, None])
    cov = np.linalg.inv(ata)
    coef = cov @ (a.T @ (w * v))
    resid = v - a @ coef
    dof = n - 2
    if sigma is None:
        cov = cov * (resid @ resid) / max(dof, 1)
        red = np.nan
    else:
        red = float((w * resid**2).sum() / max(dof, 1))
        cov = cov * max(red, 1.0)
    return GradientFit(
        slope=float(coef[1]),
        slope_err=float(np.sqrt(cov[1, 1])),
        intercept=float(coef[0]),
        intercept_err=float(np.sqrt(cov[0, 0])),
        covariance=cov,
        n=n,
        scatter=float(np.sqrt(np.mean(resid**2))),
        reduced_chi2=red,
    )


# ----------------------------------------------------------------------------------------- comparisons
def compare_with_truth(recovered, true):
    """Recovered against true values, object by object (non-finite pairs left out).

    Parameters
    ----------
    recovered, true : array-like, shape (n,)
        The same quantity, in the same unit (e.g. mass-weighted [M/H] in dex of each bin).

    Returns
    -------
    dict
        ``n``; ``pearson_r`` and ``spearman_r`` (correlation coefficients, NaN for fewer than 3 pairs
        or a constant input); ``bias`` (median of recovered - true); ``nmad`` (1.4826 x median
        absolute deviation of the difference); ``rms`` (root-mean-square difference).
    """
    from scipy import stats

    rec, tru = np.asarray(recovered, dtype=float).ravel(), np.asarray(true, dtype=float).ravel()
    if rec.shape != tru.shape:
        raise ValueError(f"recovered {rec.shape} and true {tru.shape} differ")
    ok = np.isfinite(rec) & np.isfinite(tru)
    rec, tru = rec[ok], tru[ok]
    d = rec - tru
    out = {"n": int(ok.sum()), "pearson_r": np.nan, "spearman_r": np.nan}
    if out["n"] >= 3 and np.ptp(rec) > 0 and np.ptp(tru) > 0:
        out["pearson_r"] = float(stats.pearsonr(rec, tru)[0])
        out["spearman_r"] = float(stats.spearmanr(rec, tru)[0])
    if out["n"]:
        out.update(
            bias=float(np.median(d)),
            nmad=float(NMAD_FACTOR * np.median(np.abs(d - np.median(d)))),
            rms=float(np.sqrt(np.mean(d**2))),
        )
    else:
        out.update(bias=np.nan, nmad=np.nan, rms=np.nan)
    return out


def cluster_age_agreement(age_myr, reference_age_myr, usable=None, tolerance_dex=CLUSTER_TOLERANCE_DEX):
    """Agreement of two sets of cluster ages (e.g. the network's and the catalogue's SED fits).

    Parameters
    ----------
    age_myr, reference_age_myr : array-like, shape (n,)
        Ages in Myr; non-finite or non-positive ones (e.g. -9999) are left out.
    usable : array-like of bool, shape (n,), optional
        Compare only these clusters.
    tolerance_dex : float
        Agreement threshold on |log10 age - log10 reference|.

    Returns
    -------
    dict
        ``n``; ``median_abs_dlog_age`` (median |Δ log10 age|, dex); ``median_dlog_age`` (median of
        log10 age - log10 reference: the bias, dex); ``frac_within`` (fraction with |Δ| <=
        ``tolerance_dex``); ``tolerance_dex``; ``spearman_r``; ``dlog_age`` (ndarray, shape (n,),
        NaN for the clusters left out).
    """
    from scipy import stats

    a, b = np.asarray(age_myr, dtype=float), np.asarray(reference_age_myr, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
        if usable is not None:
            ok &= np.asarray(usable, dtype=bool)
        d = np.where(ok, np.log10(np.where(ok, a, 1.0)) - np.log10(np.where(ok, b, 1.0)), np.nan)
    n = int(ok.sum())
    out = {"n": n, "tolerance_dex": float(tolerance_dex), "dlog_age": d, "spearman_r": np.nan}
    if n == 0:
        out.update(median_abs_dlog_age=np.nan, median_dlog_age=np.nan, frac_within=np.nan)
        return out
    out.update(
        median_abs_dlog_age=float(np.median(np.abs(d[ok]))),
        median_dlog_age=float(np.median(d[ok])),
        frac_within=float(np.mean(np.abs(d[ok]) <= tolerance_dex)),
    )
    if n >= 3 and np.ptp(a[ok]) > 0 and np.ptp(b[ok]) > 0:
        out["spearman_r"] = float(stats.spearmanr(a[ok], b[ok])[0])
    return out


# ----------------------------------------------------------------------------------------- flags
def _bits():
    from .flags import quality_bits

    return quality_bits()


def usable_objects(quality, exclude=("LOW_SNR",)):
    """Objects the network predicted for and that carry none of the ``exclude`` flags.

    Parameters
    ----------
    quality : array-like of int, shape (...)
        The ``QUALITY`` map or the tables' ``quality`` column.
    exclude : sequence of str
        Names of :func:`~sfh_ml.observations.flags.quality_bits` that also disqualify (default:
        low S/N). ``()`` keeps everything the network predicted for.

    Returns
    -------
    ndarray of bool, shape (...)
    """
    from .apply.outputs import usable_mask

    bits = _bits()
    unknown = sorted(set(exclude) - set(bits))
    if unknown:
        raise ValueError(f"unknown flag names {unknown}: use names of {sorted(bits)}")
    q = np.asarray(quality, dtype=np.int64)
    ok = usable_mask(q)
    ok &= (q & qf.NO_DATA) == 0
    for name in exclude:
        ok &= (q & bits[name]) == 0
    return ok


def flag_table(**qualities):
    """How many objects carry each quality bit: one row per bit, one column per set of objects.

    Parameters
    ----------
    **qualities : array-like of int
        Named quality arrays, e.g. ``bins=table["quality"], clusters=clusters["quality"]``.

    Returns
    -------
    astropy.table.Table
        ``bit``, ``name`` and one count column per keyword, for every bit the outputs can carry.
    """
    from astropy.table import Table

    bits = _bits()
    t = Table()
    t["bit"] = [int(np.log2(b)) for b in bits.values()]
    t["name"] = list(bits)
    for key, q in qualities.items():
        q = np.asarray(q, dtype=np.int64)
        t[key] = [int(np.count_nonzero(q & b)) for b in bits.values()]
    return t


def pick_regions(radius, usable, score=None, arm_quantiles=(0.3, 0.85), outer_quantile=0.9):
    """Three bins to look at: the centre, a star-forming region (an arm) and the outskirts.

    Parameters
    ----------
    radius : array-like, shape (n_bins,)
        Deprojected radius of each bin.
    usable : array-like of bool, shape (n_bins,)
    score : array-like, shape (n_bins,), optional
        What marks a star-forming region, e.g. the H-alpha surface brightness of each bin; the
        highest-scoring usable bin between the ``arm_quantiles`` of the usable radii is the arm.
        Without it there is no arm.
    outer_quantile : float
        The outskirts are the usable bin nearest to this quantile of the usable radii (the very
        last bins sit on the noisy edge).

    Returns
    -------
    dict of str -> int
        ``centre``, ``arm`` (with ``score``), ``outskirts``: bin indices.
    """
    radius = np.asarray(radius, dtype=float)
    usable = np.asarray(usable, dtype=bool) & np.isfinite(radius)
    if not usable.any():
        raise ValueError("no usable bin to pick regions from")
    idx = np.flatnonzero(usable)
    r = radius[idx]
    out = {"centre": int(idx[np.argmin(r)])}
    if score is not None:
        s = np.asarray(score, dtype=float)[idx]
        lo, hi = np.quantile(r, arm_quantiles)
        band = (r >= lo) & (r <= hi) & np.isfinite(s)
        if band.any():
            out["arm"] = int(idx[band][np.argmax(s[band])])
    out["outskirts"] = int(idx[np.argmin(np.abs(r - np.quantile(r, outer_quantile)))])
    return out
