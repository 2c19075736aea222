"""Charlot & Fall (2000) two-component dust attenuation: the one home of the CF00 power law."""

import numpy as np

from ..constants import BIRTH_CLOUD_AGE_YR, V_WAVE_AA
from ..utils import check_range, check_wave_aa

__all__ = ["CF00_SLOPE", "attenuation_curve", "transmission", "optical_depth", "attenuation", "charlot_fall"]

CF00_SLOPE = -0.7  # tau(lambda) proportional to (lambda / 5500 A)**-0.7 (CF00, eq. 4)


def attenuation_curve(wave_aa, slope=CF00_SLOPE):
    """Optical depth per unit V-band optical depth, tau(lambda) / tau_V = (lambda / 5500 A)**slope.

    Parameters
    ----------
    wave_aa : float or ndarray, shape (n_wave,)
        Wavelength in Angstrom.
    slope : float
        Power-law index (CF00: -0.7).

    Returns
    -------
    ndarray, shape (n_wave,)
    """
    wave_aa = check_wave_aa(wave_aa)
    return (wave_aa / V_WAVE_AA) ** slope


def transmission(tau_v, curve):
    """Transmitted fraction exp(-tau_V k(lambda)) of screens of V-band optical depths ``tau_v``.

    The arithmetic runs in the type of ``curve`` (the synthesizer passes float32 curves).

    Parameters
    ----------
    tau_v : ndarray, shape (n_obj,)
        V-band optical depths (>= 0).
    curve : ndarray, shape (n_wave,)
        :func:`attenuation_curve` on the wavelengths of interest.

    Returns
    -------
    ndarray, shape (n_obj, n_wave)
    """
    curve = np.asarray(curve)
    tau_v = np.asarray(tau_v)
    return np.exp(-tau_v.astype(curve.dtype)[:, None] * curve)


def optical_depth(wave_aa, tau_v, slope=CF00_SLOPE):
    """Optical depth tau(lambda) = tau_V (lambda / 5500 A)**slope.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Wavelength in Angstrom.
    tau_v : float or ndarray, shape (n_obj,)
        V-band (5500 A) optical depth, >= 0.

    Returns
    -------
    ndarray, shape (n_obj, n_wave) (or (n_wave,) for scalar ``tau_v``)
    """
    k = attenuation_curve(wave_aa, slope)
    tau_v = check_range(tau_v, "tau_v (V-band optical depth)", low=0.0)
    return tau_v[..., None] * k if tau_v.ndim else tau_v * k


def attenuation(wave_aa, tau_v, slope=CF00_SLOPE, dtype=np.float64):
    """Transmitted fraction exp(-tau(lambda)) of a screen (see :func:`optical_depth`).

    Returns
    -------
    ndarray, shape (n_obj, n_wave)
    """
    return np.exp(-optical_depth(wave_aa, tau_v, slope).astype(dtype))


def charlot_fall(wave_aa, age_yr, tau_bc, tau_ism, slope=CF00_SLOPE):
    """Attenuation factor exp(-tau) for each SSP age (Charlot & Fall 2000).

    Stars younger than 10 Myr see their birth cloud (tau_bc) and the diffuse ISM (tau_ism);
    older stars see the ISM only. :class:`sfh_ml.synthesis.Synthesizer` applies the same model to
    the summed young and old spectra (:func:`attenuation_curve`, :func:`transmission`) instead of
    forming this (n_obj, n_age, n_wave) array.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Rest-frame wavelength in Angstrom.
    age_yr : ndarray, shape (n_age,)
        SSP ages in years.
    tau_bc, tau_ism : float or ndarray, shape (n_obj,)
        V-band optical depths of the birth cloud and of the diffuse ISM.

    Returns
    -------
    ndarray, shape (n_obj, n_age, n_wave)
    """
    tau_bc = np.atleast_1d(check_range(tau_bc, "tau_bc (V-band optical depth)", low=0.0))
    tau_ism = np.atleast_1d(check_range(tau_ism, "tau_ism (V-band optical depth)", low=0.0))
    young = (np.asarray(age_yr) < BIRTH_CLOUD_AGE_YR).astype(float)
    tau = (
        optical_depth(wave_aa, tau_ism)[:, None, :]
        + young[None, :, None] * optical_depth(wave_aa, tau_bc)[:, None, :]
    )
    return np.exp(-tau)
