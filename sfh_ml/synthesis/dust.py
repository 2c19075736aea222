"""Charlot & Fall (2000) two-component dust attenuation."""

import numpy as np

__all__ = ["BIRTH_CLOUD_AGE_YR", "CF00_SLOPE", "V_WAVE_AA", "optical_depth", "attenuation", "charlot_fall"]

BIRTH_CLOUD_AGE_YR = 1e7  # stars younger than this sit inside their birth cloud (CF00, sect. 2)
CF00_SLOPE = -0.7  # tau(lambda) proportional to (lambda / 5500 A)**-0.7 (CF00, eq. 4)
V_WAVE_AA = 5500.0


def optical_depth(wave_aa, tau_v, slope=CF00_SLOPE):
    """Optical depth tau(lambda) = tau_V (lambda / 5500 A)**slope.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Wavelength in Angstrom.
    tau_v : float or ndarray, shape (n_obj,)
        V-band (5500 A) optical depth.

    Returns
    -------
    ndarray, shape (n_obj, n_wave) (or (n_wave,) for scalar ``tau_v``)
    """
    k = (np.asarray(wave_aa, dtype=float) / V_WAVE_AA) ** slope
    tau_v = np.asarray(tau_v, dtype=float)
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
    older stars see the ISM only.

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
    tau_bc = np.atleast_1d(np.asarray(tau_bc, dtype=float))
    tau_ism = np.atleast_1d(np.asarray(tau_ism, dtype=float))
    if np.any(tau_bc < 0) or np.any(tau_ism < 0):
        raise ValueError("optical depths must be >= 0")
    young = (np.asarray(age_yr) < BIRTH_CLOUD_AGE_YR).astype(float)
    tau = (
        optical_depth(wave_aa, tau_ism)[:, None, :]
        + young[None, :, None] * optical_depth(wave_aa, tau_bc)[:, None, :]
    )
    return np.exp(-tau)
