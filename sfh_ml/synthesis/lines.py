"""The emission lines the synthesizer draws, and the mask that leaves them out of a fit.

The lines are the library's Cloudy lines (:attr:`sfh_ml.synthesis.ssp.SSPLibrary.line_wave_aa`, air
wavelengths) that reach :data:`LINE_MIN_HBETA_RATIO` of H-beta somewhere in the grid, the
synthesizer's own selection. :func:`emission_line_mask` leaves out every one of them within reach of
the pixels over +- :data:`MASK_N_SIGMA` sigma of the broadest line the generator makes (the MUSE LSF
and the largest gas dispersion in quadrature): ~13 % of the MUSE pixels, mostly H-alpha, [N II],
[S II] and the Paschen and [S III] lines in the red. The pPXF fits (:mod:`sfh_ml.fitting`) and the
re-synthesis of predictions (:mod:`sfh_ml.network.goodness`) fit the other pixels.
"""

import numpy as np

from ..constants import C_KMS, FWHM_TO_SIGMA, HBETA_LABEL
from .instrument import muse_lsf_fwhm

__all__ = [
    "MASK_N_SIGMA",
    "MASK_SIGMA_GAS_KMS",
    "LINE_MIN_HBETA_RATIO",
    "masked_lines_aa",
    "emission_line_mask",
    "ion_of",
    "ion_scales",
]

# Cloudy's line labels start with the ion ("N  2", "O  3", "He 1") or "Blnd" for blends
_KEPT_IONS = ("H  1", "He 1", "He 2", "Blnd")  # recombination lines and blends: left as the grid has them

# Half-width of each masked window in sigmas of the broadest line: at 1-4 Myr EW(H-alpha) reaches ~1000 A,
# a peak ~300 times the continuum; at 5 sigma its wing is down to ~1e-3 of the continuum.
MASK_N_SIGMA = 5.0
MASK_SIGMA_GAS_KMS = 80.0  # the generator's largest gas dispersion (DatasetConfig.sigma_gas_kms)
LINE_MIN_HBETA_RATIO = 1e-4  # the lines the synthesizer draws: >= 1e-4 of H-beta somewhere in the grid


def masked_lines_aa(library, lam_aa):
    """Air wavelengths (A) of the Cloudy lines that fall within ``lam_aa``'s range and are masked.

    Parameters
    ----------
    library : SSPLibrary
    lam_aa : ndarray, shape (n_pix,)
        Galaxy pixel wavelengths, Angstrom.

    Returns
    -------
    ndarray, shape (n_lines,)
    """
    hb = library.line_index(HBETA_LABEL)
    ratio = library.line_lum / library.line_lum[..., hb : hb + 1].clip(1e-30)
    strong = np.max(ratio, axis=(0, 1, 2)) >= LINE_MIN_HBETA_RATIO
    lam = library.line_wave_aa
    lo, hi = np.min(lam_aa) - 30.0, np.max(lam_aa) + 30.0
    return np.sort(lam[strong & (lam > lo) & (lam < hi)])


def emission_line_mask(library, lam_aa, sigma_gas_kms=MASK_SIGMA_GAS_KMS, n_sigma=MASK_N_SIGMA):
    """Pixels to fit (True) and to leave out (False, near an emission line).

    Parameters
    ----------
    library : SSPLibrary
    lam_aa : ndarray, shape (n_pix,)
        Rest-frame wavelengths of the galaxy pixels, Angstrom (4000-10500 A: MUSE).
    sigma_gas_kms : float
        Gas dispersion the windows must cover, km/s.
    n_sigma : float
        Half-width of each window in line sigmas.

    Returns
    -------
    ndarray of bool, shape (n_pix,)
    """
    lam_aa = np.asarray(lam_aa, dtype=float)
    good = np.ones(lam_aa.size, dtype=bool)
    for lam in masked_lines_aa(library, lam_aa):
        sigma = np.hypot(muse_lsf_fwhm(lam) * FWHM_TO_SIGMA, sigma_gas_kms * lam / C_KMS)
        good &= np.abs(lam_aa - lam) > n_sigma * sigma
    return good


def ion_of(line_names):
    """The ion of each Cloudy line label (its first four characters, e.g. ``"N  2"``), ndarray of str."""
    return np.array([str(name)[:4] for name in line_names])


def ion_scales(line_names, scatter_dex, rng, n_obj):
    """Per-object factors on the emission lines: one log-normal factor per object and metal ion.

    The lines of one ion share their factor, so atomic ratios ([N II] 6583/6548, [O III] 5007/4959)
    stay exact while the ratios to the Balmer lines and between ions move, as the abundance
    pattern (N/O), shocks or diffuse ionised gas make them; the H and He recombination lines and
    Cloudy's blends keep the grid's luminosities.

    Parameters
    ----------
    line_names : sequence of str, shape (n_lines,)
        :attr:`sfh_ml.synthesis.ssp.SSPLibrary.line_names`.
    scatter_dex : float
        Rms of log10 of the factors, dex.
    rng : numpy.random.Generator
    n_obj : int

    Returns
    -------
    ndarray, shape (n_obj, n_lines)
        Factors (1 for the kept lines), for :attr:`SynthesisParams.line_scale
        <sfh_ml.synthesis.synthesizer.SynthesisParams>`.
    """
    ions = ion_of(line_names)
    names, which = np.unique(ions, return_inverse=True)
    log_f = scatter_dex * rng.standard_normal((n_obj, names.size))
    log_f[:, np.isin(names, _KEPT_IONS)] = 0.0
    return 10.0 ** log_f[:, which]
