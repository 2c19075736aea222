"""The five PHANGS-HST bands: filter curves (pyphot), band-averaged fluxes and unit conversions."""

import numpy as np

from ..constants import C_AA_S
from ..utils import check_wave_aa

__all__ = [
    "PHANGS_FILTERS",
    "load_filters",
    "band_weights",
    "band_flux",
    "pivot_wavelengths",
    "flam_to_mjy",
    "mjy_to_flam",
    "PHANGS_SNR_MEDIAN",
    "phangs_snr",
]

# WFC3/UVIS F275W, F336W, F438W, F555W, F814W (Lee et al. 2022). NGC0628, NGC1300 and NGC1672 use ACS
# F435W instead of F438W: pass ``HST_ACS_WFC_F435W`` in its place for those.
PHANGS_FILTERS = ("HST_WFC3_F275W", "HST_WFC3_F336W", "HST_WFC3_F438W", "HST_WFC3_F555W", "HST_WFC3_F814W")

# Median S/N of each band's flux, by band name (the ACS F435W stands in for F438W): ROUGH values meant
# to resemble the clusters and associations of the PHANGS-HST catalogues (Lee et al. 2022, ApJS 258,
# 10; Thilker et al. 2022, MNRAS 509, 4094; Maschmann et al. 2024, ApJS 273, 14), not fits to them.
# F275W is the noisiest (low UVIS throughput at 275 nm), the optical bands the best.
PHANGS_SNR_MEDIAN = {"F275W": 5.0, "F336W": 10.0, "F435W": 20.0, "F438W": 20.0, "F555W": 30.0, "F814W": 30.0}
# Log-normal spread of those S/N: one shared term per object (a bright object is bright in every
# band) and an independent one per band, in dex; S/N is kept >= PHANGS_SNR_MIN.
PHANGS_SNR_SCATTER_DEX = (0.3, 0.15)
PHANGS_SNR_MIN = 1.0


def phangs_snr(names, n, rng):
    """Draw per-object, per-band S/N of HST fluxes with the spread of the PHANGS-HST catalogues.

    log10 S/N_b = log10 median_b + g + e_b with g ~ N(0, 0.3 dex) shared by the bands of an object
    and e_b ~ N(0, 0.15 dex) independent (:data:`PHANGS_SNR_MEDIAN`, :data:`PHANGS_SNR_SCATTER_DEX`;
    approximate), clipped below at 1.

    Parameters
    ----------
    names : sequence of str
        pyphot band names (their last ``_``-separated part, e.g. ``F275W``, selects the median).
    n : int
        Number of objects.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (n, n_band)
    """
    keys = [str(name).rsplit("_", 1)[-1].upper() for name in names]
    unknown = [name for name, k in zip(names, keys) if k not in PHANGS_SNR_MEDIAN]
    if unknown:
        raise ValueError(
            f"no PHANGS S/N median for band(s) {unknown} (known: {sorted(PHANGS_SNR_MEDIAN)}); "
            f"give the S/N as a (min, max) range instead"
        )
    median = np.log10([PHANGS_SNR_MEDIAN[k] for k in keys])
    shared, own = PHANGS_SNR_SCATTER_DEX
    log_snr = median + shared * rng.standard_normal((n, 1)) + own * rng.standard_normal((n, len(keys)))
    return np.maximum(10.0**log_snr, PHANGS_SNR_MIN)


def load_filters(names=PHANGS_FILTERS):
    """Filter curves from pyphot's default library.

    Parameters
    ----------
    names : sequence of str
        pyphot filter names.

    Returns
    -------
    list of (wave_aa, transmission) tuples of ndarray
        Each curve's wavelengths in Angstrom and its (photon-counting) throughput.
    """
    import pyphot

    lib = pyphot.get_library()
    known = set(lib.get_library_content())
    missing = [n for n in names if n not in known]
    if missing:
        raise KeyError(f"unknown filter(s) {missing}; pyphot names look like 'HST_WFC3_F275W'")
    out = []
    for name in names:
        filt = lib[name]
        wave = np.asarray(getattr(filt.wavelength, "value", filt.wavelength), dtype=float)
        out.append((wave, np.asarray(filt.transmit, dtype=float)))
    return out


def band_weights(wave_aa, names=PHANGS_FILTERS, min_throughput=0.0):
    """Weights that turn a spectrum into photon-weighted mean flux densities.

    <f_lambda> = int f T lambda dlambda / int T lambda dlambda (trapezoid rule on ``wave_aa``), the
    definition pyphot uses for photon-counting detectors.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Wavelength grid of the spectra, Angstrom; must cover every filter curve.
    names : sequence of str
    min_throughput : float
        Throughput below this fraction of a curve's peak counts as zero (0: the whole curve). The
        WFC3 curves leak at 1e-4 of their peak out to 11000 A: 1e-3 lets a spectrum that covers a
        band's main passband give its flux (the leak's share of the flux is below 0.1 %).

    Returns
    -------
    ndarray, shape (n_band, n_wave)
        ``flux_band = spectra @ weights.T``.
    """
    wave_aa = check_wave_aa(wave_aa, increasing=True)
    trap = np.zeros_like(wave_aa)
    dw = np.diff(wave_aa)
    trap[:-1] += 0.5 * dw
    trap[1:] += 0.5 * dw
    weights = []
    for name, (fw, ft) in zip(names, load_filters(names)):
        ft = np.where(ft >= min_throughput * ft.max(), ft, 0.0)
        inside = fw[ft > 0]
        if inside.min() < wave_aa[0] or inside.max() > wave_aa[-1]:
            raise ValueError(
                f"the wavelength grid {wave_aa[0]:.0f}-{wave_aa[-1]:.0f} A does not cover {name} "
                f"({inside.min():.0f}-{inside.max():.0f} A); wave_aa must be in Angstrom"
            )
        t = np.interp(wave_aa, fw, ft, left=0.0, right=0.0)
        w = t * wave_aa * trap
        weights.append(w / w.sum())
    return np.array(weights)


def band_flux(wave_aa, flux, names=PHANGS_FILTERS):
    """Photon-weighted mean flux density in each band.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
    flux : ndarray, shape (..., n_wave)
        Flux density per unit wavelength (any unit; the result has the same).

    Returns
    -------
    ndarray, shape (..., n_band)
    """
    return np.asarray(flux) @ band_weights(wave_aa, names).T


def pivot_wavelengths(names=PHANGS_FILTERS):
    """Pivot wavelengths, sqrt(int T lambda dl / int T / lambda dl), in Angstrom, shape (n_band,)."""
    out = []
    for fw, ft in load_filters(names):
        out.append(np.sqrt(np.trapezoid(ft * fw, fw) / np.trapezoid(ft / fw, fw)))
    return np.array(out)


def flam_to_mjy(flam, pivot_aa):
    """erg/s/cm^2/A at the pivot wavelength (Angstrom) to mJy (f_nu = f_lambda lambda_p^2 / c)."""
    pivot_aa = check_wave_aa(pivot_aa, "pivot_aa")
    return np.asarray(flam) * pivot_aa**2 / C_AA_S / 1e-26


def mjy_to_flam(mjy, pivot_aa):
    """mJy to erg/s/cm^2/A at the pivot wavelength (Angstrom; the inverse of :func:`flam_to_mjy`)."""
    pivot_aa = check_wave_aa(pivot_aa, "pivot_aa")
    return np.asarray(mjy) * 1e-26 * C_AA_S / pivot_aa**2
