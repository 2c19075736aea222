"""MUSE: wavelength grid, line-spread function, broadening and noise."""

import numpy as np
from scipy import sparse
from scipy.special import ndtr

from ..constants import C_KMS, FWHM_TO_SIGMA
from ..utils import check_range, check_wave_aa, pixel_edges

__all__ = [
    "MUSE_WAVE_START_AA",
    "MUSE_DWAVE_AA",
    "MUSE_N_WAVE",
    "muse_wave",
    "muse_lsf_fwhm",
    "total_sigma_aa",
    "broadening_matrix",
    "add_noise",
    "noise_sigma",
]

MUSE_WAVE_START_AA = 4749.89  # CRVAL3 of the PHANGS-MUSE cubes (air wavelengths)
MUSE_DWAVE_AA = 1.25  # CD3_3
MUSE_N_WAVE = 3681  # NAXIS3, to 9349.9 A
# Where the Bacon et al. (2017) LSF formula may be used: the MUSE range (4650-9350 A) with room for
# lines just off the grid. Anything else is not MUSE, or not Angstrom.
MUSE_LSF_LIMITS_AA = (4000.0, 10500.0)


def muse_wave(start_aa=MUSE_WAVE_START_AA, dwave_aa=MUSE_DWAVE_AA, n_wave=MUSE_N_WAVE):
    """The MUSE wavelength grid of a PHANGS-MUSE cube.

    Returns
    -------
    ndarray, shape (n_wave,)
        Air wavelengths of the channels in Angstrom (``CRVAL3 + i * CD3_3``).
    """
    return start_aa + dwave_aa * np.arange(n_wave)


def muse_lsf_fwhm(wave_aa):
    """FWHM of the MUSE line-spread function in Angstrom.

    Bacon et al. (2017, A&A 608, A1, eq. 8): FWHM = 5.866e-8 lambda^2 - 9.187e-4 lambda + 6.040
    (3.00 A at 4750 A, 2.44 A minimum near 7830 A, 2.58 A at 9350 A).

    Parameters
    ----------
    wave_aa : float or ndarray, shape (n_wave,)
        Wavelength in Angstrom, within 4000-10500 A.

    Returns
    -------
    float or ndarray, shape (n_wave,)
        FWHM in Angstrom.

    Raises
    ------
    ValueError
        Wavelengths outside 4000-10500 A (not MUSE, or not Angstrom).
    """
    wave_aa = check_wave_aa(wave_aa, limits=MUSE_LSF_LIMITS_AA, what="the MUSE range, with margins")
    return 5.866e-8 * wave_aa**2 - 9.187e-4 * wave_aa + 6.040


def total_sigma_aa(wave_aa, sigma_kms, template_fwhm_aa=0.0):
    """Gaussian sigma (A) that takes a template to the MUSE LSF plus a velocity dispersion.

    sigma^2 = sigma_LSF^2 + (sigma_kms lambda / c)^2 - sigma_template^2, in quadrature.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Wavelength in Angstrom.
    sigma_kms : float
        Line-of-sight velocity dispersion in km/s (>= 0).
    template_fwhm_aa : float or ndarray, shape (n_wave,)
        Resolution (FWHM, A) the template already has (>= 0).

    Returns
    -------
    ndarray, shape (n_wave,)
        The sigma still to apply, in Angstrom (zero where the template is already broader).
    """
    wave_aa = np.asarray(wave_aa, dtype=float)
    sigma_kms = check_range(sigma_kms, "sigma_kms (velocity dispersion)", "km/s", low=0.0)
    template_fwhm_aa = check_range(template_fwhm_aa, "template_fwhm_aa", "Angstrom", low=0.0)
    var = (muse_lsf_fwhm(wave_aa) * FWHM_TO_SIGMA) ** 2 + (sigma_kms * wave_aa / C_KMS) ** 2
    var = var - (template_fwhm_aa * FWHM_TO_SIGMA) ** 2
    return np.sqrt(np.clip(var, 0.0, None))


def broadening_matrix(wave_in, wave_out, sigma_aa, n_sigma=5.0):
    """Sparse operator that convolves with a Gaussian of varying width and resamples.

    Each output pixel is the average of the input spectrum, taken as constant within each input
    pixel, under a Gaussian of width ``sigma_aa`` centred on the output wavelength: the Gaussian is
    integrated exactly over every input pixel (differences of the normal CDF), so the operator
    conserves flux density and tends to nearest-pixel sampling as sigma goes to zero.

    Parameters
    ----------
    wave_in : ndarray, shape (n_in,)
        Increasing input wavelengths (pixel centres), Angstrom.
    wave_out : ndarray, shape (n_out,)
        Output wavelengths, Angstrom, inside the input range.
    sigma_aa : float or ndarray, shape (n_out,)
        Gaussian sigma at each output wavelength, Angstrom (>= 0).
    n_sigma : float
        Kernel half-width in sigmas.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_out, n_in)
        ``flux_out = op @ flux_in``.
    """
    wave_in = check_wave_aa(wave_in, "wave_in", increasing=True)
    wave_out = check_wave_aa(wave_out, "wave_out")
    sigma = np.broadcast_to(
        check_range(sigma_aa, "sigma_aa (Gaussian sigma)", "Angstrom", low=0.0), wave_out.shape
    )
    edges = pixel_edges(wave_in)
    half = n_sigma * sigma
    lo = np.clip(np.searchsorted(edges, wave_out - half) - 1, 0, wave_in.size - 1)
    hi = np.clip(np.searchsorted(edges, wave_out + half), 1, wave_in.size)
    width = int((hi - lo).max())
    idx = lo[:, None] + np.arange(width)[None, :]
    valid = idx < hi[:, None]
    idx = np.minimum(idx, wave_in.size - 1)
    s = np.maximum(sigma, 1e-6)[:, None]
    w = ndtr((edges[idx + 1] - wave_out[:, None]) / s) - ndtr((edges[idx] - wave_out[:, None]) / s)
    w = np.where(valid, w, 0.0)
    w /= w.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(wave_out.size), width)
    op = sparse.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(wave_out.size, wave_in.size))
    op.eliminate_zeros()
    return op


SNR_WINDOW_AA = (5300.0, 5700.0)  # continuum window in which ``snr`` is defined (V band, few lines)


def noise_sigma(flux, snr, wave_aa=None):
    """Per-pixel noise for a signal-to-noise ratio ``snr`` in the continuum, shaped like photon noise.

    sigma_i = f_ref / snr * sqrt(f_i / f_ref), with f_ref the mean flux in 5300-5700 A (the whole
    spectrum if the grid does not cover that window): a pixel at the reference level has
    S/N = ``snr``, and brighter pixels (emission lines) have more noise, as for photon-limited data.

    Parameters
    ----------
    flux : ndarray, shape (n_obj, n_wave)
        Noise-free spectra (positive mean in the reference window).
    snr : ndarray, shape (n_obj,)
        S/N per pixel at the reference flux (> 0).
    wave_aa : ndarray, shape (n_wave,), optional
        Wavelengths, to locate the reference window; default the MUSE grid if ``n_wave`` matches it.

    Returns
    -------
    ndarray, shape (n_obj, n_wave)
    """
    flux = np.asarray(flux)
    check_range(snr, "snr (signal-to-noise ratio)", low=0.0, low_open=True)
    if wave_aa is None and flux.shape[-1] == MUSE_N_WAVE:
        wave_aa = muse_wave()
    window = slice(None)
    if wave_aa is not None:
        wave_aa = check_wave_aa(wave_aa, increasing=True)
        if wave_aa.size != flux.shape[-1]:
            raise ValueError(f"wave_aa has {wave_aa.size} pixels, the spectra {flux.shape[-1]}")
        lo, hi = np.searchsorted(wave_aa, SNR_WINDOW_AA)
        if hi - lo > 10:
            window = slice(lo, hi)
    ref = flux[..., window].mean(axis=-1, keepdims=True)
    if not np.all(ref > 0):
        raise ValueError(
            "flux must be noise-free spectra with a positive mean in the S/N window "
            f"({SNR_WINDOW_AA[0]:.0f}-{SNR_WINDOW_AA[1]:.0f} A); got a mean <= 0 or NaN"
        )
    snr = np.asarray(snr, dtype=flux.dtype).reshape(ref.shape)
    return np.sqrt(ref * np.maximum(flux, 1e-3 * ref)) / snr


def add_noise(flux, snr, rng, wave_aa=None):
    """Gaussian noise at S/N ``snr`` (see :func:`noise_sigma`).

    Parameters
    ----------
    flux : ndarray, shape (n_obj, n_wave)
    snr : ndarray, shape (n_obj,)
    rng : numpy.random.Generator
    wave_aa : ndarray, shape (n_wave,), optional

    Returns
    -------
    noisy : ndarray, shape (n_obj, n_wave)
    ivar : ndarray, shape (n_obj, n_wave)
        Inverse variance, 1 / sigma^2.
    """
    sigma = noise_sigma(flux, snr, wave_aa)
    noisy = rng.standard_normal(flux.shape, dtype=flux.dtype)
    noisy *= sigma
    noisy += flux
    sigma *= sigma
    return noisy, np.reciprocal(sigma, out=sigma)
