"""Observational errors the training sets do not have, for held-out "worlds".

Each function perturbs a batch of spectra on a linear wavelength grid (the MUSE grid), vectorised
over objects; :func:`sfh_ml.synthesis.dataset.generate_chunk` applies them when a
:class:`~sfh_ml.synthesis.config.DatasetConfig` asks for them:

* an LSF-width error is part of the synthesis (:class:`~sfh_ml.synthesis.synthesizer.SynthesisParams`,
  ``lsf_scale``, drawn by :func:`draw_lsf_scale`);
* :func:`shift_spectra` (a residual wavelength-calibration or redshift error) acts on the noise-free
  spectrum, before the noise;
* :func:`sky_residuals` (sky-subtraction residuals at the night-sky lines) are added to the noisy
  spectrum, in units of its noise; the noise estimate stays the pipeline's, which does not know them;
* :func:`flux_calibration_error` is a smooth multiplicative error of the flux calibration: it
  multiplies the observed spectrum, and the pipeline's noise estimate with it (the variance is
  calibrated with the same sensitivity curve); the S/N is unchanged.
"""

import numpy as np
from numpy.polynomial import legendre

from ..constants import C_KMS, FWHM_TO_SIGMA
from .instrument import SKY_EMISSION_LINES_AA, muse_lsf_fwhm

__all__ = [
    "FLUX_CALIBRATION_ORDER",
    "flux_calibration_error",
    "draw_lsf_scale",
    "shift_spectra",
    "sky_residuals",
]

FLUX_CALIBRATION_ORDER = 3  # Legendre orders 1-3 over the MUSE range: smooth, no grey term


def flux_calibration_error(wave_aa, rms, rng, n, order=FLUX_CALIBRATION_ORDER):
    """Smooth multiplicative flux-calibration errors, one random Legendre series per object.

    1 + sum_{k=1..order} c_k P_k(x), x the wavelength mapped onto [-1, 1] over ``wave_aa``, with
    c_k drawn from a normal distribution and each object's series scaled so that its rms over the
    grid is exactly ``rms``. The grey (order-0) term is left out: an overall scale is the flux
    normalisation, not its shape.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Wavelengths, Angstrom.
    rms : float
        Rms of the fractional error over the grid (e.g. 0.03 for 3 %); 0 gives ones.
    rng : numpy.random.Generator
    n : int
        Number of objects.
    order : int
        Highest Legendre order (>= 1).

    Returns
    -------
    ndarray, shape (n, n_wave)
        Factors to multiply the spectra (and their noise) by.
    """
    if rms < 0 or order < 1:
        raise ValueError(f"rms must be >= 0 and order >= 1, got rms={rms}, order={order}")
    wave_aa = np.asarray(wave_aa, dtype=float)
    x = 2 * (wave_aa - wave_aa[0]) / (wave_aa[-1] - wave_aa[0]) - 1
    coef = np.concatenate([np.zeros((n, 1)), rng.standard_normal((n, order))], axis=1)
    err = legendre.legval(x, coef.T)  # (n, n_wave)
    err -= err.mean(axis=1, keepdims=True)
    err *= rms / np.sqrt(np.mean(err**2, axis=1, keepdims=True))
    return 1.0 + err


def draw_lsf_scale(error, rng, n):
    """LSF widths in units of the nominal MUSE LSF, uniform in [1 - error, 1 + error].

    Parameters
    ----------
    error : float
        Largest fractional error of the LSF width, in [0, 1) (e.g. 0.1 for +-10 %).
    rng : numpy.random.Generator
    n : int

    Returns
    -------
    ndarray, shape (n,)
    """
    if not 0 <= error < 1:
        raise ValueError(f"the LSF error must be in [0, 1), got {error}")
    return 1.0 + error * rng.uniform(-1.0, 1.0, n)


def shift_spectra(flux, wave_aa, velocity_kms):
    """Spectra as observed with a wavelength (or redshift) error of ``velocity_kms``.

    The observed spectrum at lambda is the model at lambda / (1 + v / c), interpolated linearly on
    the grid (the MUSE grid samples the LSF with about 2 pixels per FWHM, so the smoothing by the
    interpolation is a small fraction of the LSF); pixels whose source falls off the grid take the
    nearest edge value.

    Parameters
    ----------
    flux : ndarray, shape (n_obj, n_wave)
    wave_aa : ndarray, shape (n_wave,)
        Linear wavelength grid, Angstrom.
    velocity_kms : ndarray, shape (n_obj,)
        Shift, km/s (positive: features move to the red).

    Returns
    -------
    ndarray, shape (n_obj, n_wave)
        In the type of ``flux``.
    """
    flux = np.asarray(flux)
    wave_aa = np.asarray(wave_aa, dtype=float)
    dw = (wave_aa[-1] - wave_aa[0]) / (wave_aa.size - 1)
    src = wave_aa[None, :] / (1.0 + np.asarray(velocity_kms, dtype=float)[:, None] / C_KMS)
    pos = np.clip((src - wave_aa[0]) / dw, 0.0, wave_aa.size - 1.0)
    j = np.minimum(pos.astype(np.intp), wave_aa.size - 2)
    t = (pos - j).astype(flux.dtype)
    lo = np.take_along_axis(flux, j, axis=1)
    hi = np.take_along_axis(flux, j + 1, axis=1)
    return lo + t * (hi - lo)


def sky_residuals(noise, wave_aa, sky_z, amplitude, rng):
    """Sky-subtraction residuals at the night-sky lines, in units of the local noise.

    At each line of :data:`sfh_ml.synthesis.instrument.SKY_EMISSION_LINES_AA` (observed frame, so
    at lambda / (1 + ``sky_z``) on the rest-frame grid) the residual is
    ``amplitude * noise(lambda_l) * (a G + b G')``: G a Gaussian of the MUSE LSF with peak 1 (a
    scaling error of the sky model), G' its derivative scaled to peak 1 (a small wavelength
    mismatch between sky model and data: the P-Cygni-like residuals of real cubes), a and b drawn
    from a standard normal per object and line.

    Parameters
    ----------
    noise : ndarray, shape (n_obj, n_wave)
        1-sigma noise per pixel.
    wave_aa : ndarray, shape (n_wave,)
        Rest-frame wavelengths, Angstrom.
    sky_z : ndarray, shape (n_obj,)
        Redshift of the observation.
    amplitude : float
        Residual amplitude in units of the noise at the line centre (>= 0).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (n_obj, n_wave)
        To add to the noisy spectra (in the type of ``noise``).
    """
    if amplitude < 0:
        raise ValueError(f"the sky-residual amplitude must be >= 0, got {amplitude}")
    noise = np.asarray(noise)
    wave_aa = np.asarray(wave_aa, dtype=float)
    n = noise.shape[0]
    lam_obs = SKY_EMISSION_LINES_AA[:, 0]
    ab = rng.standard_normal((2, n, lam_obs.size))
    out = np.zeros(noise.shape, dtype=noise.dtype)
    z = np.asarray(sky_z, dtype=float).reshape(n)
    rows = np.arange(n)
    for k, (lam, sig) in enumerate(zip(lam_obs, muse_lsf_fwhm(lam_obs) * FWHM_TO_SIGMA)):  # ~30 lines
        centre = lam / (1.0 + z)  # (n,) rest frame
        s = sig / (1.0 + z)
        lo, hi = np.searchsorted(wave_aa, [centre.min() - 6 * s.max(), centre.max() + 6 * s.max()])
        if hi <= lo:
            continue
        x = (wave_aa[None, lo:hi] - centre[:, None]) / s[:, None]
        g = np.exp(-0.5 * x**2)
        shape = ab[0, :, k, None] * g - ab[1, :, k, None] * np.sqrt(np.e) * x * g  # G' peak 1 at x = -1
        i = np.clip(np.searchsorted(wave_aa, centre), 0, wave_aa.size - 1)
        out[:, lo:hi] += (amplitude * noise[rows, i][:, None] * shape).astype(noise.dtype)
    return out
