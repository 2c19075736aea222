"""Charlot & Fall (2000) two-component dust attenuation: the one home of the CF00 power law and of
the other curves the diffuse ISM may follow in held-out sets.

The training sets use the CF00 power law for both screens (birth clouds and diffuse ISM). Held-out
"worlds" (:class:`sfh_ml.synthesis.config.DatasetConfig`, ``dust_law``) may give the ISM screen
another curve: the Calzetti et al. (2000) starburst law or the SMC-bar extinction curve of Gordon
et al. (2003), the birth clouds keeping the CF00 power law. Every curve is tau(lambda) / tau_V,
normalised to exactly 1 at 5500 A, so ``tau_ism`` keeps its meaning (the V-band optical depth) and
the light-weighted truths after dust (taken at 5500 A) are the same whatever the law.
"""

import numpy as np

from ..constants import BIRTH_CLOUD_AGE_YR, V_WAVE_AA
from ..utils import check_range, check_wave_aa

__all__ = [
    "CF00_SLOPE",
    "DUST_LAWS",
    "CALZETTI_RV",
    "attenuation_curve",
    "calzetti_curve",
    "smc_curve",
    "dust_curve",
    "transmission",
    "optical_depth",
    "attenuation",
    "charlot_fall",
]

CF00_SLOPE = -0.7  # tau(lambda) proportional to (lambda / 5500 A)**-0.7 (CF00, eq. 4)
DUST_LAWS = ("cf00", "calzetti", "smc")  # curves of the ISM screen (see dust_curve)
CALZETTI_RV = 4.05  # R'_V of the starburst attenuation law (Calzetti et al. 2000, eq. 5)
CALZETTI_RANGE_AA = (1200.0, 22000.0)  # where Calzetti et al. (2000, eq. 4) is defined
SMC_RANGE_AA = (1e4 / 10.0, 1e4 / 0.3)  # G03_SMCBar: 0.3-10 / micron (Gordon et al. 2003)


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


def _power_law_beyond(wave_aa, curve, range_aa):
    """Evaluate ``curve`` (a function of wavelength in A, valid inside ``range_aa``) everywhere: outside
    the range it is continued as the power law that matches its logarithmic slope over the last 2 %
    of the range (a smooth, positive continuation; the SSP grid, 1680-11010 A, lies inside both the
    Calzetti and the SMC ranges, so only other grids use it)."""
    lo, hi = range_aa
    out = np.empty_like(wave_aa)
    inside = (wave_aa >= lo) & (wave_aa <= hi)
    out[inside] = curve(wave_aa[inside])
    for edge, other, side in ((lo, lo * 1.02, wave_aa < lo), (hi, hi / 1.02, wave_aa > hi)):
        if side.any():
            k_edge, k_other = curve(np.array([edge, other]))
            slope = np.log(k_other / k_edge) / np.log(other / edge)
            out[side] = k_edge * (wave_aa[side] / edge) ** slope
    return out


def _calzetti_k(wave_aa):
    """Calzetti et al. (2000, eq. 4) k'(lambda) = A(lambda) / E(B-V), lambda in micron inside the range."""
    x = wave_aa / 1e4
    blue = 2.659 * (-2.156 + 1.509 / x - 0.198 / x**2 + 0.011 / x**3) + CALZETTI_RV
    red = 2.659 * (-1.857 + 1.040 / x) + CALZETTI_RV
    return np.where(x < 0.63, blue, red)


def calzetti_curve(wave_aa):
    """The Calzetti et al. (2000) starburst attenuation law, tau(lambda) / tau_V.

    k'(lambda) of their eq. (4) with R'_V = 4.05, divided by its value at 5500 A. The
    ``dust-extinction`` package (1.7) has extinction curves but not this attenuation law, so the
    published polynomial is written here. Outside 0.12-2.2 micron: power-law continuation (see
    :func:`_power_law_beyond`).

    Parameters
    ----------
    wave_aa : float or ndarray, shape (n_wave,)
        Wavelength in Angstrom.

    Returns
    -------
    ndarray, shape (n_wave,)
    """
    wave_aa = np.atleast_1d(check_wave_aa(wave_aa)).astype(float)
    return _power_law_beyond(wave_aa, _calzetti_k, CALZETTI_RANGE_AA) / _calzetti_k(np.array([V_WAVE_AA]))[0]


def _smc_bar(wave_aa):
    from dust_extinction.averages import G03_SMCBar  # astropy models: imported only when used

    return np.asarray(G03_SMCBar()(1e4 / wave_aa * _inverse_micron()), dtype=float)


def _inverse_micron():
    import astropy.units as u

    return 1 / u.micron


def smc_curve(wave_aa):
    """The SMC-bar extinction curve (Gordon et al. 2003), tau(lambda) / tau_V.

    ``dust_extinction.averages.G03_SMCBar`` (A(lambda) / A(V)), divided by its value at 5500 A:
    steep in the ultraviolet and without a 2175 A bump. Outside 0.3-10 / micron (1000-33333 A):
    power-law continuation (see :func:`_power_law_beyond`).

    Parameters
    ----------
    wave_aa : float or ndarray, shape (n_wave,)
        Wavelength in Angstrom.

    Returns
    -------
    ndarray, shape (n_wave,)
    """
    wave_aa = np.atleast_1d(check_wave_aa(wave_aa)).astype(float)
    return _power_law_beyond(wave_aa, _smc_bar, SMC_RANGE_AA) / _smc_bar(np.array([V_WAVE_AA]))[0]


def dust_curve(wave_aa, law="cf00", slope=CF00_SLOPE):
    """tau(lambda) / tau_V of one of :data:`DUST_LAWS`, exactly 1 at 5500 A.

    Parameters
    ----------
    wave_aa : float or ndarray, shape (n_wave,)
        Wavelength in Angstrom.
    law : {"cf00", "calzetti", "smc"}
        ``"cf00"``: the power law (lambda / 5500 A)**slope (:func:`attenuation_curve`);
        ``"calzetti"``: :func:`calzetti_curve`; ``"smc"``: :func:`smc_curve`.
    slope : float
        Power-law index of ``"cf00"`` (only that law takes one).

    Returns
    -------
    ndarray, shape (n_wave,)
    """
    if law not in DUST_LAWS:
        raise ValueError(f"unknown dust law {law!r}; choose one of {DUST_LAWS}")
    if law == "cf00":
        return attenuation_curve(wave_aa, slope)
    if slope != CF00_SLOPE:
        raise ValueError(f"slope applies to the cf00 power law only, not to {law!r}")
    return calzetti_curve(wave_aa) if law == "calzetti" else smc_curve(wave_aa)


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


def charlot_fall(
    wave_aa, age_yr, tau_bc, tau_ism, slope=CF00_SLOPE, law="cf00", birth_cloud_age_yr=BIRTH_CLOUD_AGE_YR
):
    """Attenuation factor exp(-tau) for each SSP age (Charlot & Fall 2000).

    Stars younger than ``birth_cloud_age_yr`` (10 Myr) see their birth cloud (tau_bc, the CF00 power
    law of index :data:`CF00_SLOPE`) and the diffuse ISM (tau_ism, :func:`dust_curve` of ``law`` and
    ``slope``); older stars see the ISM only. :class:`sfh_ml.synthesis.Synthesizer` applies the same model to
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
    young = (np.asarray(age_yr) < birth_cloud_age_yr).astype(float)
    k_ism = dust_curve(wave_aa, law, slope)
    tau = (tau_ism[:, None] * k_ism)[:, None, :] + young[None, :, None] * optical_depth(wave_aa, tau_bc)[
        :, None, :
    ]
    return np.exp(-tau)
