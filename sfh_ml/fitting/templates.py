"""pPXF templates from the project's own SSP library, built as the synthesizer builds its spectra.

Every template is one SSP (age, [M/H]) of :func:`sfh_ml.synthesis.ssp.load_library` per solar mass
formed, so pPXF's weights are masses formed. They are

1. broadened from the library's resolution to the MUSE line-spread function (Bacon et al. 2017) on
   the library's 0.9 A grid (:func:`sfh_ml.synthesis.instrument.total_sigma_aa` with the library's
   FWHM removed in quadrature); pPXF adds the stellar dispersion (``moments=2``);
2. for the ages younger than the birth clouds (< 10 Myr, :data:`sfh_ml.constants.BIRTH_CLOUD_AGE_YR`),
   given the nebular continuum of the Cloudy grids per unit mass formed at one ionisation parameter
   (:data:`DEFAULT_LOG_U`), time-averaged over the SSP's age bin as the synthesizer scales it by the
   mass formed in each nebular age bin; the emission lines are masked in the spectrum
   (:mod:`sfh_ml.fitting.lines`) but enter the HST fluxes of the young templates, as in the generator;
3. log-rebinned (:func:`ppxf.ppxf_util.log_rebin`) at the velocity scale of the log-rebinned MUSE
   spectrum (:func:`log_rebin_spectra`).

For the optional joint fit of the HST fluxes the same templates (full library range, before
broadening) are integrated over the filter curves (:func:`sfh_ml.synthesis.photometry.band_weights`)
and each template gets its own effective wavelength per band (Bessell & Murphy 2012, eq. A21), at
which pPXF applies the dust to the fluxes.
"""

from dataclasses import dataclass

import numpy as np
from ppxf.ppxf_util import log_rebin

from ..constants import BIRTH_CLOUD_AGE_YR, C_KMS
from ..synthesis.instrument import broadening_matrix, total_sigma_aa
from ..synthesis.nebular import add_lines
from ..synthesis.photometry import PHANGS_FILTERS, band_weights
from ..synthesis.ssp import load_library
from ..utils import check_wave_aa, interp_weights

__all__ = ["DEFAULT_LOG_U", "VELOCITY_MARGIN_KMS", "PPXFTemplates", "build_templates", "log_rebin_spectra"]

# Ionisation parameter of the nebular continuum added to the young templates: the middle of the
# generator's default range (DatasetConfig.log_u = -4 ... -1.5). The continuum changes little with
# log U (it follows the ionising photons; the electron temperature moves with log U by ~10 %).
DEFAULT_LOG_U = -2.75
# The templates reach this far (km/s) beyond the galaxy's range at both ends: pPXF demands cover for
# its velocity window (start +- 2000 km/s) plus 900 km/s for the LOSVD kernel (ppxf 9.5, set_lam_input).
VELOCITY_MARGIN_KMS = 3000.0
LINE_SIGMA_PHOT_AA = (
    2.0  # width of the lines drawn for the band integrals (any narrow width: a band sees their flux)
)


@dataclass
class PPXFTemplates:
    """Log-rebinned SSP templates for pPXF, and what maps its weights back onto the library.

    Attributes
    ----------
    templates : ndarray, shape (n_pix_temp, n_age, n_zh)
        Templates per solar mass formed divided by ``scale``, on ``lam_temp``.
    lam_temp : ndarray, shape (n_pix_temp,)
        Wavelengths of the template pixels, Angstrom (log-spaced).
    lam : ndarray, shape (n_pix,)
        Wavelengths of the log-rebinned galaxy pixels, Angstrom.
    wave_aa : ndarray, shape (n_wave,)
        The linear galaxy grid the templates were made for (MUSE), Angstrom.
    velscale : float
        km/s per log-rebinned pixel.
    scale : float
        The one number all templates (spectral and photometric) were divided by: weights times
        ``galaxy scale / scale`` are masses formed.
    age_yr, zh : ndarray, shape (n_age,), (n_zh,)
        The library's ages (yr) and [M/H] (dex).
    young : ndarray of bool, shape (n_age, n_zh)
        Templates younger than the birth clouds: they carry the nebular continuum and see the
        birth-cloud dust.
    log_u : float
        Ionisation parameter of their nebular continuum.
    filters : tuple of str
        The pyphot bands of ``phot_templates``.
    phot_templates : ndarray, shape (n_band, n_age, n_zh)
        Band-mean flux densities of the templates (with nebular continuum and lines for the young
        ones), divided by ``scale``.
    phot_lam : ndarray, shape (n_band, n_age, n_zh)
        Effective wavelength of each band for each template, Angstrom.
    """

    templates: np.ndarray
    lam_temp: np.ndarray
    lam: np.ndarray
    wave_aa: np.ndarray
    velscale: float
    scale: float
    age_yr: np.ndarray
    zh: np.ndarray
    young: np.ndarray
    log_u: float
    filters: tuple
    phot_templates: np.ndarray
    phot_lam: np.ndarray

    @property
    def shape(self):
        """(n_age, n_zh), the shape of pPXF's weights (``reg_dim``)."""
        return self.templates.shape[1:]


def log_rebin_spectra(wave_aa, spectra, velscale=None):
    """Log-rebin spectra on a linear grid, conserving flux density (:func:`ppxf.ppxf_util.log_rebin`).

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Increasing pixel centres, Angstrom.
    spectra : ndarray, shape (n_obj, n_wave) or (n_wave,)
        Flux densities (or 1-sigma noise: rebinned alike, which neglects the correlation the
        rebinning brings between neighbouring pixels).
    velscale : float, optional
        km/s per output pixel (default: as many pixels out as in).

    Returns
    -------
    out : ndarray, shape (n_obj, n_pix) or (n_pix,)
    lam : ndarray, shape (n_pix,)
        Output pixel centres, Angstrom.
    velscale : float
    """
    wave_aa = check_wave_aa(wave_aa, increasing=True)
    spectra = np.asarray(spectra, dtype=np.float64)
    if spectra.shape[-1] != wave_aa.size:
        raise ValueError(f"spectra have {spectra.shape[-1]} pixels, wave_aa has {wave_aa.size}")
    out, ln_lam, velscale = log_rebin(wave_aa, spectra.T, velscale=velscale)
    return out.T, np.exp(ln_lam), float(np.atleast_1d(velscale)[0])


def _young_nebular_weights(library, log_u):
    """Nebular-grid weights of each young SSP: (n_young, n_neb_age, n_log_u).

    The SSP of age bin [e_i, e_i+1) stands for stars formed uniformly in time over that bin (its
    part younger than 10 Myr); the synthesizer gives stars of nebular age bin j the Cloudy output of
    grid age j per unit mass, so the SSP's nebular emission per unit mass is the time-share of each
    nebular bin in its own bin.
    """
    edges = library.age_edges_yr
    young_age = library.age_yr < BIRTH_CLOUD_AGE_YR
    lo = edges[:-1][young_age]
    hi = np.minimum(edges[1:][young_age], BIRTH_CLOUD_AGE_YR)
    neb = library.neb_age_edges_yr
    overlap = np.clip(
        np.minimum(hi[:, None], neb[None, 1:]) - np.maximum(lo[:, None], neb[None, :-1]), 0.0, None
    )
    share = overlap / (hi - lo)[:, None]  # (n_young, n_neb_age)
    wu = interp_weights(np.atleast_1d(float(log_u)), library.log_u)[0]  # (n_log_u,)
    return share[:, :, None] * wu[None, None, :], young_age


def _full_range_templates(library, log_u, filters):
    """Library-grid templates with the young ones' nebular continuum, and their band fluxes.

    Returns (flux (n_age, n_zh, n_lw), phot (n_band, n_age, n_zh), phot_lam (n_band, n_age, n_zh)).
    """
    lib = library
    flux = lib.flux.astype(np.float64).copy()
    w_neb, young_age = _young_nebular_weights(lib, log_u)
    cont = np.einsum("yau,azuw->yzw", w_neb, lib.neb_cont.astype(np.float64))  # (n_young, n_zh, n_lw)
    flux[young_age] += cont
    line_lum = np.einsum("yau,azul->yzl", w_neb, lib.line_lum.astype(np.float64))  # (n_young, n_zh, n_lines)
    with_lines = flux.copy()
    lam = lib.line_wave_aa
    inside = (lam > lib.wave_aa[0]) & (lam < lib.wave_aa[-1])
    young_flat = with_lines[young_age].reshape(-1, lib.wave_aa.size)
    lum = line_lum.reshape(young_flat.shape[0], -1)[:, inside]
    add_lines(young_flat, lib.wave_aa, lam[inside], lum, np.full_like(lum, LINE_SIGMA_PHOT_AA))
    with_lines[young_age] = young_flat.reshape(with_lines[young_age].shape)
    bw = band_weights(lib.wave_aa, filters)  # (n_band, n_lw): <f> = bw @ f
    phot = np.einsum("bw,azw->baz", bw, with_lines)
    phot_lam = np.einsum("bw,azw->baz", bw * lib.wave_aa, with_lines) / phot
    return flux, phot, phot_lam


def build_templates(wave_aa, library=None, log_u=DEFAULT_LOG_U, filters=PHANGS_FILTERS, velscale=None):
    """pPXF templates for spectra on the linear grid ``wave_aa`` (MUSE), per unit mass formed.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        The galaxy's linear wavelength grid, Angstrom, rest frame (the file's ``wave_aa``).
    library : SSPLibrary, optional
        Default :func:`sfh_ml.synthesis.ssp.load_library`.
    log_u : float
        Ionisation parameter of the nebular continuum of the young templates.
    filters : sequence of str
        pyphot bands for the joint fit of the HST fluxes.
    velscale : float, optional
        km/s per pixel of the log-rebinned galaxy (default: as many pixels as ``wave_aa``).

    Returns
    -------
    PPXFTemplates
    """
    lib = load_library() if library is None else library
    wave_aa = check_wave_aa(wave_aa, increasing=True)
    _, lam, velscale = log_rebin_spectra(wave_aa, np.zeros(wave_aa.size), velscale)
    margin = np.exp(VELOCITY_MARGIN_KMS / C_KMS)
    lw = lib.wave_aa
    sel = (lw > wave_aa[0] / margin) & (lw < wave_aa[-1] * margin)
    if lw[0] > wave_aa[0] / margin or lw[-1] < wave_aa[-1] * margin:
        raise ValueError(
            f"wave_aa {wave_aa[0]:.0f}-{wave_aa[-1]:.0f} A (with {VELOCITY_MARGIN_KMS:.0f} km/s margins) "
            f"is outside the SSP library ({lw[0]:.0f}-{lw[-1]:.0f} A)"
        )
    flux, phot, phot_lam = _full_range_templates(lib, log_u, filters)
    n_age, n_zh = flux.shape[:2]
    op = broadening_matrix(lw, lw[sel], total_sigma_aa(lw[sel], 0.0, lib.fwhm_aa[sel]))
    broad = op @ flux.reshape(n_age * n_zh, -1).T  # (n_sel, n_t)
    tpl, lam_temp, _ = log_rebin_spectra(lw[sel], broad.T, velscale)  # (n_t, n_pix_temp)
    scale = float(np.median(tpl))
    return PPXFTemplates(
        templates=(tpl.T / scale).reshape(-1, n_age, n_zh),
        lam_temp=lam_temp,
        lam=lam,
        wave_aa=wave_aa,
        velscale=velscale,
        scale=scale,
        age_yr=lib.age_yr.copy(),
        zh=lib.zh.copy(),
        young=np.broadcast_to((lib.age_yr < BIRTH_CLOUD_AGE_YR)[:, None], (n_age, n_zh)).copy(),
        log_u=float(log_u),
        filters=tuple(filters),
        phot_templates=phot / scale,
        phot_lam=phot_lam,
    )
