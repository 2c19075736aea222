"""HST images on the MUSE spaxel grid: reprojected with flux conservation and matched to the MUSE PSF.

Each spatial bin of a cube gets its five band fluxes from the same aperture as its spectrum: the
images are put on the cube's spaxel grid (:func:`reproject_to_spaxels`), convolved from the HST to
the MUSE resolution (:func:`match_psf`), and summed over the bin's spaxels by the caller.

Reprojection: ``reproject.reproject_exact``. Going from 0.04" HST pixels to 0.2" spaxels is a
down-sampling by 5 per axis; ``reproject_exact`` computes the exact overlap area of every input pixel
with every output pixel on the sphere, so each spaxel gets the area-weighted mean surface brightness
of the HST pixels under it, and the total flux is conserved to rounding (tested). The adaptive
algorithm (``reproject_adaptive(conserve_flux=True)``) was twice as fast in our test (1.0 against
1.9 s for 10^6 input pixels on this 2-core machine) but uses an anti-aliasing kernel that spreads
flux over neighbouring spaxels (an extra blur on top of the PSF matching) and conserves the total
only approximately, and it spread a strip of missing pixels over three times as many spaxels. At
~0.5 million input pixels per second, the five bands of a 1000 x 1000 spaxel cube (5000 x 5000
HST pixels each) take about four minutes, once per run (the set-up is kept for a resumed run).
``reproject_exact`` averages surface brightness, so the per-pixel fluxes of
:class:`~sfh_ml.observations.readers.HstImage` are divided by the HST pixel solid angle before and
multiplied by the spaxel solid angle after.

PSF matching: a Gaussian kernel of FWHM sqrt(FWHM_MUSE^2 - FWHM_HST^2) (``astropy.convolution``),
applied on the spaxel grid after the reprojection (convolution commutes with the reprojection's area
average, and the grid is 25 times smaller). Missing HST data (NaN: no coverage, a chip gap) are not
interpolated: a spaxel whose reprojected value touches a missing pixel, or whose PSF kernel puts more
than :data:`MAX_MISSING_WEIGHT` of its weight on missing spaxels, is NaN (the network then masks that
band). The spaxel grid is padded by 4 sigma of the MUSE PSF for the convolution, so spaxels at the
cube's edge are kept where the image reaches beyond the cube (PHANGS-HST mosaics usually do).
"""

import re
import warnings
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.convolution import convolve
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs.utils import proj_plane_pixel_area, proj_plane_pixel_scales
from scipy.special import ndtr

from ..constants import FWHM_TO_SIGMA
from . import formats
from .readers import FLAM_UNIT, read_hst_image

__all__ = [
    "HST_PSF_FWHM_ARCSEC",
    "MAX_MISSING_WEIGHT",
    "MUSE_PSF_KEYWORDS",
    "HstSpaxelFluxes",
    "muse_psf_fwhm",
    "reproject_to_spaxels",
    "match_psf",
    "hst_spaxel_fluxes",
]

# FWHM of the WFC3/UVIS and ACS/WFC PSFs in the drizzled PHANGS-HST mosaics: 0.07-0.10" from F275W to
# F814W (WFC3 Instrument Handbook, UVIS PSF tables). A round value: the matching kernel is dominated by
# the MUSE PSF (0.6-1.2"): a 25 % error here changes the kernel's FWHM by < 0.5 % for a 0.6" MUSE PSF.
HST_PSF_FWHM_ARCSEC = 0.08
MAX_MISSING_WEIGHT = 0.01  # kernel weight on missing spaxels above which a convolved spaxel is NaN
# Header keywords that may hold the FWHM of a cube's PSF (arcsec), first found wins. PHANGS-MUSE
# convolved cubes carry it in their name instead ({GAL}-{copt}asec.fits): see muse_psf_fwhm.
MUSE_PSF_KEYWORDS = ("PSF_FWHM", "FWHM", "SKY_RES", "HIERARCH ESO DRS MUSE SKY_RES")
CROP_MARGIN_ARCSEC = 1.0  # HST pixels read around the cube's footprint
KERNEL_REACH_SIGMA = 4.0  # the spaxel grid is padded by this many sigma of the MUSE PSF for the convolution


@dataclass
class HstSpaxelFluxes:
    """The five HST bands on the spaxel grid of a cube, at the cube's PSF.

    Attributes
    ----------
    flux : ndarray, shape (n_band, ny, nx)
        Band flux density (f_lambda) falling on each spaxel, in ``unit`` per spaxel (the cube's flux
        unit, e.g. 1e-20 erg/s/cm2/A): summing it over a bin gives the bin's fluxes in the aperture
        of its summed spectrum. NaN where a band has no usable data. Observed frame, not corrected
        for Milky Way extinction (as the images).
    unit : astropy.units.Unit
    bands : list of str
        Catalogue band names (``"F275W"``, ...), in the order of ``flux``.
    filters : list of str
        Their pyphot names.
    pivot_aa : ndarray, shape (n_band,)
        Pivot wavelengths, Angstrom.
    muse_fwhm_arcsec : float
        The PSF the images were matched to.
    hst_fwhm_arcsec : ndarray, shape (n_band,)
    kernel_fwhm_arcsec : ndarray, shape (n_band,)
    paths : list of str
        The image files.
    """

    flux: np.ndarray
    unit: u.UnitBase
    bands: list
    filters: list
    pivot_aa: np.ndarray
    muse_fwhm_arcsec: float
    hst_fwhm_arcsec: np.ndarray
    kernel_fwhm_arcsec: np.ndarray
    paths: list = field(default_factory=list)

    def bin_fluxes(self, bin_id, n_bins):
        """Sum of each band over each bin's spaxels, NaN when any member spaxel lacks the band.

        Parameters
        ----------
        bin_id : ndarray of int, shape (ny, nx)
            Bin of each spaxel, -1 for none (:attr:`SpatialBins.bin_id`).
        n_bins : int

        Returns
        -------
        ndarray, shape (n_bins, n_band)
            In :attr:`unit`.
        """
        ids = np.asarray(bin_id).ravel()
        inside = ids >= 0
        out = np.empty((n_bins, len(self.bands)))
        for b in range(len(self.bands)):
            values = self.flux[b].ravel()[inside]
            bad = np.bincount(ids[inside], weights=~np.isfinite(values), minlength=n_bins) > 0
            out[:, b] = np.bincount(ids[inside], weights=np.nan_to_num(values, nan=0.0), minlength=n_bins)
            out[bad, b] = np.nan
        return out


def muse_psf_fwhm(cube, fwhm_arcsec=None):
    """FWHM of a cube's PSF, arcsec: the value given, else a header keyword, else the file name.

    Parameters
    ----------
    cube : MuseCube
    fwhm_arcsec : float, optional
        Given by the caller (e.g. from the PHANGS-MUSE release notes).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Not given, not in :data:`MUSE_PSF_KEYWORDS`, and the file is not named ``...-{copt}asec.fits``.
    """
    if fwhm_arcsec is not None:
        value = float(fwhm_arcsec)
    else:
        value = None
        for key in MUSE_PSF_KEYWORDS:
            if key in cube.header:
                value = float(cube.header[key])
                break
        if value is None:
            match = re.search(r"-(\d+(?:\.\d+)?)asec", cube.path.name)
            if match:
                value = float(match.group(1))
    if value is None:
        raise ValueError(
            f"{cube.path}: the FWHM of the cube's PSF is unknown (no {', '.join(MUSE_PSF_KEYWORDS[:3])} "
            "keyword, not named {GAL}-{copt}asec.fits), so the HST images cannot be matched to it: pass "
            "muse_fwhm_arcsec= (--muse-fwhm ARCSEC), e.g. the copt of the PHANGS-MUSE release"
        )
    if not 0 < value < 10:
        raise ValueError(f"{cube.path}: a PSF FWHM of {value} arcsec is not plausible for MUSE")
    return value


def _crop(image, wcs_out, shape_out, margin_arcsec=CROP_MARGIN_ARCSEC):
    """The part of an image around a target grid: (data, its WCS), or None if they do not overlap."""
    ny, nx = shape_out
    x = np.array([-0.5, nx - 0.5, -0.5, nx - 0.5])
    y = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    hx, hy = image.wcs.world_to_pixel_values(*wcs_out.pixel_to_world_values(x, y))
    margin = margin_arcsec / (3600.0 * proj_plane_pixel_scales(image.wcs).mean())
    hny, hnx = image.data.shape
    x0, x1 = int(np.floor(np.min(hx) - margin)), int(np.ceil(np.max(hx) + margin)) + 1
    y0, y1 = int(np.floor(np.min(hy) - margin)), int(np.ceil(np.max(hy) + margin)) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, hnx), min(y1, hny)
    if x1 <= x0 or y1 <= y0:
        return None
    return np.asarray(image.data[y0:y1, x0:x1], dtype=np.float64), image.wcs.slice(
        (slice(y0, y1), slice(x0, x1))
    )


def reproject_to_spaxels(image, wcs_out, shape_out):
    """Flux per spaxel of an HST image on a cube's grid (flux-conserving, see the module docstring).

    Parameters
    ----------
    image : HstImage
        f_lambda per HST pixel, erg/s/cm2/A (:func:`read_hst_image`).
    wcs_out : astropy.wcs.WCS
        Celestial WCS of the spaxel grid.
    shape_out : (int, int)
        (ny, nx).

    Returns
    -------
    ndarray, shape (ny, nx)
        f_lambda per spaxel, erg/s/cm2/A; NaN where a spaxel is not wholly covered by valid pixels.
    """
    from reproject import reproject_exact

    cropped = _crop(image, wcs_out, shape_out)
    if cropped is None:
        return np.full(shape_out, np.nan)
    data, wcs_in = cropped
    area_in = proj_plane_pixel_area(wcs_in)  # deg2 per HST pixel
    area_out = proj_plane_pixel_area(wcs_out)  # deg2 per spaxel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        sb, footprint = reproject_exact((data / area_in, wcs_in), wcs_out, shape_out=tuple(shape_out))
    sb[~(footprint > 1.0 - 1e-6)] = np.nan  # partly outside the image: part of the flux missing
    return sb * area_out


def _integrated_gaussian(sigma_pix, reach_sigma=KERNEL_REACH_SIGMA):
    """A unit-sum 2-D Gaussian integrated over each pixel (exactly, with the normal CDF), shape (n, n).

    Integrated rather than sampled: the reprojected map is taken as constant within a spaxel, which is
    exact for a point source (a cluster) centred in one. For smooth light it adds 1/12 spaxel^2 to
    the PSF's variance (< 1.5 % in width for a 0.8" PSF on 0.2" spaxels); a kernel sampled at the
    centres instead makes point sources 2 % too narrow (tested). (``Gaussian2DKernel(mode="integrate")``
    gives the same numbers with a numerical double integral per pixel, seconds per kernel.)
    """
    half = max(1, int(np.ceil(reach_sigma * sigma_pix)))
    edges = (np.arange(-half, half + 2) - 0.5) / sigma_pix
    profile = np.diff(ndtr(edges))  # (2 half + 1,)
    kernel = np.outer(profile, profile)
    return kernel / kernel.sum()


def match_psf(flux, fwhm_from_pix, fwhm_to_pix, max_missing_weight=MAX_MISSING_WEIGHT):
    """Convolve a spaxel map from one Gaussian PSF to a broader one, leaving missing data missing.

    Parameters
    ----------
    flux : ndarray, shape (ny, nx)
        Flux per spaxel (NaN: missing).
    fwhm_from_pix, fwhm_to_pix : float
        FWHM of the map's PSF and of the target PSF, in spaxels.
    max_missing_weight : float
        A spaxel whose kernel puts more than this weight on missing spaxels (or beyond the edge) is NaN.

    Returns
    -------
    ndarray, shape (ny, nx)
        The convolved map (flux per spaxel, total conserved away from missing data).
    """
    if fwhm_to_pix < fwhm_from_pix:
        raise ValueError(
            f"the target PSF ({fwhm_to_pix:.2f} spaxels FWHM) is narrower than the image's "
            f"({fwhm_from_pix:.2f}): cannot match by convolution"
        )
    kernel_fwhm = np.sqrt(fwhm_to_pix**2 - fwhm_from_pix**2)
    flux = np.asarray(flux, dtype=np.float64)
    valid = np.isfinite(flux)
    if kernel_fwhm < 1e-3:
        return np.where(valid, flux, np.nan)
    kernel = _integrated_gaussian(kernel_fwhm * FWHM_TO_SIGMA)
    opts = dict(boundary="fill", fill_value=0.0, normalize_kernel=False, nan_treatment="fill")
    weight = convolve(valid.astype(np.float64), kernel, **opts)
    out = convolve(np.where(valid, flux, 0.0), kernel, **opts)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = out / weight  # the small missing weight allowed is made up from the valid spaxels
    out[~(weight >= 1.0 - max_missing_weight)] = np.nan
    return out


def hst_spaxel_fluxes(
    images,
    cube,
    muse_fwhm_arcsec=None,
    hst_fwhm_arcsec=HST_PSF_FWHM_ARCSEC,
    bands=formats.CATALOGUE_BANDS,
    progress=False,
):
    """The five HST bands as fluxes per spaxel on a cube's grid, at the cube's PSF.

    Parameters
    ----------
    images : sequence of str, Path or HstImage
        One image per band (any order; the band comes from each file's ``FILTER`` keywords). F435W
        takes the F438W slot (see :func:`sfh_ml.observations.prepare.photometry_to_flux_density`).
    cube : MuseCube
        The target grid (``wcs``, ``shape``) and unit (``flux_unit``).
    muse_fwhm_arcsec : float, optional
        FWHM of the cube's PSF (see :func:`muse_psf_fwhm`).
    hst_fwhm_arcsec : float or dict of str to float
        FWHM of the HST PSF, one value or one per band name.
    bands : sequence of str
        The band slots, in the model's order.
    progress : bool
        A progress bar over the images.

    Returns
    -------
    HstSpaxelFluxes

    Raises
    ------
    ValueError
        An image without band, two images of one band, a band missing, an image that does not overlap
        the cube, or no PSF for the cube. The readers refuse images without WCS or flux calibration.
    """
    from tqdm import tqdm

    opened = [im if hasattr(im, "wcs") and hasattr(im, "data") else read_hst_image(im) for im in images]
    slots = {}
    for im in opened:
        if im.band is None:
            raise ValueError(f"{im.path}: the band is unknown (no FILTER keyword): read it with band=")
        slot = next((b for b, alt in formats.CATALOGUE_ALT_BANDS.items() if alt == im.band), im.band)
        if slot not in bands:
            raise ValueError(f"{im.path}: band {im.band} is not one of the model's bands {list(bands)}")
        if slot in slots:
            raise ValueError(f"two images for the band {slot}: {slots[slot].path} and {im.path}")
        slots[slot] = im
    missing = [b for b in bands if b not in slots]
    if missing:
        raise ValueError(
            f"no HST image for the bands {missing} (given: {[str(im.path) for im in opened]}): pass all "
            f"five ({', '.join(bands)}), or none to predict from the spectra alone"
        )
    fwhm_muse = muse_psf_fwhm(cube, muse_fwhm_arcsec)
    spaxel_arcsec = 3600.0 * float(np.sqrt(proj_plane_pixel_area(cube.wcs)))
    to_unit = FLAM_UNIT.to(cube.flux_unit)
    ordered = [slots[b] for b in bands]
    fwhm_hst = np.array(
        [
            hst_fwhm_arcsec.get(b, HST_PSF_FWHM_ARCSEC)
            if isinstance(hst_fwhm_arcsec, dict)
            else hst_fwhm_arcsec
            for b in bands
        ],
        dtype=float,
    )
    # The grid is padded by the kernel's reach, so spaxels at the cube's edge get the HST light from
    # beyond it (where the image has some) instead of a missing value.
    pad = int(np.ceil(KERNEL_REACH_SIGMA * fwhm_muse * FWHM_TO_SIGMA / spaxel_arcsec))
    wcs_pad = cube.wcs.deepcopy()
    wcs_pad.wcs.crpix = np.asarray(wcs_pad.wcs.crpix) + pad
    shape_pad = (cube.shape[0] + 2 * pad, cube.shape[1] + 2 * pad)
    inner = (slice(pad, pad + cube.shape[0]), slice(pad, pad + cube.shape[1]))
    flux = np.empty((len(bands), *cube.shape))
    for b, im in enumerate(tqdm(ordered, desc="HST images", disable=not progress)):
        spax = reproject_to_spaxels(im, wcs_pad, shape_pad)
        if not np.isfinite(spax[inner]).any():
            raise ValueError(
                f"{im.path}: the image does not cover the cube {cube.path} (no valid pixel on its grid): "
                "another galaxy or field?"
            )
        flux[b] = match_psf(spax * to_unit, fwhm_hst[b] / spaxel_arcsec, fwhm_muse / spaxel_arcsec)[inner]
    return HstSpaxelFluxes(
        flux=flux,
        unit=cube.flux_unit,
        bands=[im.band for im in ordered],
        filters=[im.filter for im in ordered],
        pivot_aa=np.array([im.pivot_aa for im in ordered], dtype=float),
        muse_fwhm_arcsec=fwhm_muse,
        hst_fwhm_arcsec=fwhm_hst,
        kernel_fwhm_arcsec=np.sqrt(np.clip(fwhm_muse**2 - fwhm_hst**2, 0.0, None)),
        paths=[str(im.path) for im in ordered],
    )
