"""Checking a cube's systemic redshift against its own spectrum (emission lines or stellar absorption).

A wrong ``--redshift`` shifts every rest-frame wavelength: the network then sees its spectral features
in the wrong place and returns confident, wrong ages. :func:`check_redshift` catches that before any
work: it measures the redshift of the cube's mean spectrum (:func:`mean_spectrum`, every spaxel with
data, or every k-th row of a large cube) with :func:`measure_redshift` and refuses a given redshift
that lies more than :data:`MAX_OFFSET_KMS` from it.

:func:`measure_redshift` works on a logarithmic wavelength grid (a redshift is a shift there) with the
continuum divided out by a running median, and tries two templates over :data:`SEARCH_Z`:

* the strong emission lines of ionised gas (:data:`EMISSION_LINES_AA`, air wavelengths), a comb of
  Gaussians matched to the residuals above the continuum;
* the stellar absorption of an intermediate-age SSP of the project's library (cross-correlation,
  Tonry & Davis 1979).

The emission comb's peak counts if it stands :data:`MIN_SIGNIFICANCE` robust sigmas above the median
of the comb's score over the search range; the absorption peak if the spectrum and the shifted template
correlate there with a coefficient of at least :data:`MIN_CORRELATION`. The stellar redshift is used
where it counts (it is what the network's rest frame needs), else the gas's. Where neither counts (a
featureless spectrum) nothing is measured and the check is skipped with a warning.
"""

import functools
import warnings

import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter

from ..constants import C_KMS, NMAD_FACTOR
from ..synthesis.instrument import SKY_LINE_WINDOWS_AA

__all__ = [
    "EMISSION_LINES_AA",
    "MAX_OFFSET_KMS",
    "MIN_REDSHIFT",
    "SEARCH_Z",
    "MIN_SIGNIFICANCE",
    "MIN_CORRELATION",
    "mean_spectrum",
    "measure_redshift",
    "check_redshift",
]

# Strong optical emission lines (air wavelengths, Angstrom; Osterbrock & Ferland 2006) and their weights
# in the matched comb: typical ratios of star-forming regions (Halpha = 1), so that the comb's peak is at
# the redshift where the brightest lines fall, not where one line meets another.
EMISSION_LINES_AA = {
    4861.33: 0.35,  # H-beta
    4958.91: 0.1,  # [O III]
    5006.84: 0.3,  # [O III]
    6548.05: 0.17,  # [N II]
    6562.80: 1.0,  # H-alpha
    6583.45: 0.5,  # [N II]
    6716.44: 0.25,  # [S II]
    6730.82: 0.2,  # [S II]
}
# The summed spectrum of a cube sits at the systemic velocity within the rotation seen in the field:
# PHANGS-MUSE V_STARS maps span about +-250 km/s, and a pointing off the centre of a disc sees one side
# of it. An offset beyond this is not kinematics: the redshift is wrong.
MAX_OFFSET_KMS = 500.0
# The bluest systemic redshift accepted: Local Group galaxies approach at up to -300 km/s (M31:
# z = -0.001); -0.005 (-1500 km/s) leaves room, anything bluer is a typing error.
MIN_REDSHIFT = -0.005
SEARCH_Z = (MIN_REDSHIFT, 0.5)  # redshifts tried (the MUSE range keeps H-beta and [O III] to z ~ 0.85)
STEP_KMS = 20.0  # step of the logarithmic grid (a MUSE channel is 1.25 A: 55 km/s at 6800 A)
# Widths of the running medians taken as continuum: wide for the emission lines (the H-alpha + [N II]
# complex spans 1600 km/s), narrow for the absorption (the broad bands of the spectra and the template
# differ; lines like Mg b, Na D and the Ca triplet stay).
CONTINUUM_KMS = 6000.0  # 130 A at 6563 A
ABSORPTION_CONTINUUM_KMS = 1500.0  # 33 A at 6563 A: found best of 1500, 3000, 6000 on single SSPs
LINE_SIGMA_KMS = 100.0  # width of the matched filter: the instrument and the rotation in the sum
TEMPLATE_AGE_YR, TEMPLATE_ZH = 5e9, 0.0  # the SSP of the absorption template
TEMPLATE_SIGMA_KMS = 150.0  # its broadening (a galaxy's stellar dispersion, blurred by rotation)
# A comb peak lower than this (robust sigmas over the search) is not a measurement: noise alone peaks at
# 3-4 (white noise on a power law, 5 seeds), a galaxy with lines at hundreds (the mock galaxy: 2400).
MIN_SIGNIFICANCE = 10.0
# The absorption peak counts with a correlation coefficient of at least this: white noise on a power law
# reaches 0.07 at its best lag (5 seeds), single SSPs of 50 Myr to 10 Gyr at S/N 10-100 per pixel reach
# 0.34-0.96 at their redshift (the mock galaxy's mean spectrum: 0.52).
MIN_CORRELATION = 0.25
MIN_COVERED_FRACTION = 0.5  # channels with data in fewer than this fraction of the spaxels are masked
READ_VOXELS = 2**26  # cube values read for the mean spectrum (256 MB as float32)


def mean_spectrum(cube, max_voxels=READ_VOXELS):
    """Mean spectrum of a cube's spaxels with data (``DQ`` = 0 where the cube has ``DQ``).

    Parameters
    ----------
    cube : sfh_ml.observations.MuseCube
    max_voxels : int
        A larger cube is read one row in k (rows of spaxels), k the smallest that stays below this.

    Returns
    -------
    ndarray, shape (n_wave,)
        Mean flux density per channel over the spaxels with data there; NaN for channels with data in
        fewer than :data:`MIN_COVERED_FRACTION` of the spaxels that have data anywhere.
    """
    import dask
    import dask.array as da

    n_wave, (ny, nx) = cube.n_wave, cube.shape
    step = max(1, int(np.ceil(n_wave * ny * nx / max_voxels)))
    flux = cube.flux[:, ::step, :]
    if cube.dq is not None:
        flux = da.where(cube.dq[:, ::step, :] == 0, flux, np.nan)
    finite = da.isfinite(flux)
    with dask.config.set(scheduler="synchronous"):  # bounded memory: one chunk of rows at a time
        total, count = dask.compute(da.where(finite, flux, 0.0).sum(axis=(1, 2)), finite.sum(axis=(1, 2)))
    count = np.asarray(count, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.asarray(total, dtype=float) / count
    mean[~(count >= MIN_COVERED_FRACTION * max(count.max(), 1.0))] = np.nan
    return mean


def _log_grid(lo_aa, hi_aa, step_kms=STEP_KMS):
    d = step_kms / C_KMS
    return np.exp(np.arange(np.log(lo_aa), np.log(hi_aa), d)), d


def _relative(flux, width_px):
    """(flux, continuum) on a grid with NaN where masked: masked channels interpolated for the median."""
    good = np.isfinite(flux)
    idx = np.arange(flux.size)
    filled = np.interp(idx, idx[good], flux[good])
    return filled, median_filter(filled, size=max(3, int(width_px) | 1), mode="nearest")


def _robust_significance(score):
    """(index of the peak, its height above the median in robust sigmas) of a correlation."""
    finite = np.isfinite(score)
    if finite.sum() < 10:
        return None, 0.0
    med = np.median(score[finite])
    mad = NMAD_FACTOR * np.median(np.abs(score[finite] - med))
    k = int(np.nanargmax(score))
    return k, float((score[k] - med) / mad) if mad > 0 else 0.0


def _emission_score(x_obs, resid, z):
    """Matched-filter score of the emission-line comb at each redshift ``z`` (NaN: no line inside)."""
    score = np.zeros(z.size)
    weight = np.zeros(z.size)
    for wave_aa, w in EMISSION_LINES_AA.items():
        x = np.log(wave_aa * (1.0 + z))
        inside = (x > x_obs[0]) & (x < x_obs[-1])
        score += np.where(inside, w * np.interp(x, x_obs, resid), 0.0)
        weight += np.where(inside, w**2, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, score / np.sqrt(weight), np.nan)


@functools.lru_cache(maxsize=4)
def _template(lo_aa, hi_aa, step_kms):
    """The absorption template, continuum divided out, on a log grid (``lo_aa``..``hi_aa``); None
    without the SSP library."""
    from ..data import DataError
    from ..synthesis.ssp import load_library

    try:
        lib = load_library()
    except (DataError, OSError):
        return None
    i_age = int(np.argmin(np.abs(np.log10(lib.age_yr / TEMPLATE_AGE_YR))))
    i_zh = int(np.argmin(np.abs(lib.zh - TEMPLATE_ZH)))
    wave, d = _log_grid(max(lo_aa, lib.wave_aa[0]), min(hi_aa, lib.wave_aa[-1]), step_kms)
    flux = np.interp(wave, lib.wave_aa, np.asarray(lib.flux[i_age, i_zh], dtype=float))
    flux = gaussian_filter1d(flux, TEMPLATE_SIGMA_KMS / step_kms)
    filled, cont = _relative(flux, ABSORPTION_CONTINUUM_KMS / step_kms)
    return np.log(wave[0]), filled / cont - 1.0


def measure_redshift(wave_aa, flux, z_range=SEARCH_Z, step_kms=STEP_KMS):
    """Redshift of a galaxy spectrum from its emission lines or its stellar absorption.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Observed air wavelengths, Angstrom (increasing).
    flux : ndarray, shape (n_wave,)
        A spectrum of high S/N (e.g. :func:`mean_spectrum`); NaN where masked. The sky-line windows
        (:data:`sfh_ml.synthesis.instrument.SKY_LINE_WINDOWS_AA`) are left out.
    z_range : (float, float)
        Redshifts tried.
    step_kms : float
        Step of the logarithmic grid, km/s.

    Returns
    -------
    dict or None
        ``z``, ``method`` (``"stellar absorption"`` or ``"emission lines"``) and ``strength`` (text:
        the correlation coefficient, or the comb's peak in robust sigmas); None when neither peak
        counts (:data:`MIN_CORRELATION`, :data:`MIN_SIGNIFICANCE`).
    """
    wave_aa = np.asarray(wave_aa, dtype=float)
    flux = np.asarray(flux, dtype=float)
    good = np.isfinite(flux)
    for lo, hi in SKY_LINE_WINDOWS_AA:
        good &= (wave_aa < lo) | (wave_aa > hi)
    if good.sum() < 100:
        return None
    wave, d = _log_grid(wave_aa[good][0], wave_aa[good][-1], step_kms)
    x = np.log(wave)
    on = np.interp(wave, wave_aa, good.astype(float)) > 0.999  # grid points between two good channels
    obs = np.where(on, np.interp(wave, wave_aa, np.where(good, flux, 0.0)), np.nan)
    if on.sum() < 100:
        return None
    filled, cont = _relative(obs, CONTINUUM_KMS / step_kms)
    z_grid = np.exp(np.arange(np.log1p(z_range[0]), np.log1p(z_range[1]), d)) - 1.0
    found = []

    # emission: residuals above the continuum in robust sigmas, smoothed to a line's width
    resid = np.where(on, filled - cont, 0.0)
    scatter = NMAD_FACTOR * np.median(np.abs(resid[on] - np.median(resid[on])))
    if scatter > 0:
        resid = gaussian_filter1d(resid / scatter, LINE_SIGMA_KMS / step_kms)
        k, sig = _robust_significance(_emission_score(x, resid, z_grid))
        if k is not None and sig >= MIN_SIGNIFICANCE:
            found.append({"z": float(z_grid[k]), "method": "emission lines", "strength": f"{sig:.0f} sigma"})

    # absorption: cross-correlation of the relative spectra (emission clipped: it fills the lines)
    template = _template(float(wave[0] / (1 + z_range[1])), float(wave[-1] / (1 + z_range[0])), step_kms)
    if template is not None:
        x0_t, t = template
        filled, cont = _relative(obs, ABSORPTION_CONTINUUM_KMS / step_kms)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(on & (cont > 0), filled / cont - 1.0, 0.0)
        rel = np.where(on, np.clip(rel - np.median(rel[on]), -1.0, 0.05), 0.0)
        # template pixel j + m meets observed pixel j at ln(1 + z) = x[0] - x0_t - m d
        m = np.round((x[0] - x0_t - np.log1p(z_grid)) / d).astype(int)
        valid = (m >= 0) & (m + rel.size <= t.size)
        if valid.any():
            cc = np.full(z_grid.size, np.nan)
            full = np.correlate(t, rel, mode="valid")  # full[m] = sum_j t[j + m] rel[j]
            cc[valid] = full[m[valid]]
            k = int(np.nanargmax(cc))
            seg = t[m[k] : m[k] + rel.size]
            corr = float(cc[k] / np.sqrt(np.sum(rel**2) * np.sum(seg[on] ** 2)))
            if corr >= MIN_CORRELATION:  # the stars first: their rest frame is the network's
                found.insert(
                    0,
                    {
                        "z": float(z_grid[k]),
                        "method": "stellar absorption",
                        "strength": f"correlation {corr:.2f}",
                    },
                )
    return found[0] if found else None


def check_redshift(cube, redshift, max_offset_kms=MAX_OFFSET_KMS):
    """Refuse a systemic redshift that the cube's own spectrum contradicts.

    Parameters
    ----------
    cube : sfh_ml.observations.MuseCube
    redshift : float
        The redshift given (``--redshift``).
    max_offset_kms : float
        Largest velocity offset accepted between it and the measured one.

    Returns
    -------
    dict or None
        What :func:`measure_redshift` found, plus ``offset_kms``; None (with a warning) when the
        spectrum shows no feature to measure.

    Raises
    ------
    ValueError
        The measured redshift lies more than ``max_offset_kms`` from ``redshift``; the message gives
        it and the option that skips the check.
    """
    found = measure_redshift(cube.wave_aa, mean_spectrum(cube))
    if found is None:
        warnings.warn(
            f"{cube.path}: the redshift {redshift:g} could not be checked: no emission line or stellar "
            "absorption feature stands out in the cube's mean spectrum",
            stacklevel=2,
        )
        return None
    offset = C_KMS * float(np.log((1.0 + found["z"]) / (1.0 + redshift)))
    if abs(offset) > max_offset_kms:
        raise ValueError(
            f"{cube.path}: the redshift {redshift:g} (--redshift) does not match the cube's spectrum: its "
            f"{found['method']} put the galaxy at z = {found['z']:.4f} ({offset:+.0f} km/s from z = "
            f"{redshift:g}, more than {max_offset_kms:.0f} km/s; {found['strength']}). Pass the galaxy's "
            f"systemic redshift (--redshift {found['z']:.4f}?), or, if you are sure of yours, skip this "
            "check with --no-redshift-check (check_redshift=False)"
        )
    return {**found, "offset_kms": offset}
