"""MUSE: wavelength grid, line-spread function, broadening, the night sky and the noise model.

The night-sky tables (:data:`SKY_LINE_WINDOWS_AA`, the windows masked in observed spectra, and
:data:`SKY_EMISSION_LINES_AA`, the lines that shape the noise) have their one home here; the
observations wing and the training augmentation import them.
"""

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
    "SNR_WINDOW_AA",
    "SKY_LINE_WINDOWS_AA",
    "SKY_EMISSION_LINES_AA",
    "SKY_Z_RANGE",
    "muse_throughput",
    "photon_sensitivity",
    "sky_spectrum",
    "sky_variance",
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

# ----------------------------------------------------------------------------------------- night sky
# Observed-frame air wavelength windows (Angstrom) of the strongest night-sky emission lines and
# telluric absorption bands in the MUSE range, whose residuals after sky subtraction are masked.
# Lines: Osterbrock et al. (1996, PASP 108, 277) and Hanuschik (2003, A&A 407, 1157) sky atlases
# (OH positions to about 0.1 A); each line window is +-3 A or more, more than twice the MUSE FWHM
# (2.4-3.0 A, Bacon et al. 2017). Bands: the O2 B (6867 A head) and A (7594 A head) bands.
SKY_LINE_WINDOWS_AA = np.array(
    [
        (5572.0, 5583.0),  # [O I] 5577.34 airglow
        (5885.0, 5900.0),  # Na D 5889.95, 5895.92 (airglow and street lights)
        (6295.0, 6306.0),  # [O I] 6300.30
        (6358.0, 6369.0),  # [O I] 6363.78
        (6860.0, 6920.0),  # O2 B band, with OH 6863.9
        (7273.0, 7280.0),  # OH 7276.4
        (7313.0, 7320.0),  # OH 7316.3
        (7337.0, 7344.0),  # OH 7340.9
        (7366.0, 7373.0),  # OH 7369.3
        (7590.0, 7700.0),  # O2 A band (telluric)
        (7747.0, 7754.0),  # OH 7750.6
        (7791.0, 7797.0),  # OH 7794.1
        (7818.0, 7825.0),  # OH 7821.5
        (7910.0, 7917.0),  # OH 7913.7
        (7990.0, 7997.0),  # OH 7993.3
        (8341.0, 8348.0),  # OH 8344.6
        (8396.0, 8403.0),  # OH 8399.2
        (8427.0, 8434.0),  # OH 8430.2
        (8462.0, 8469.0),  # OH 8465.4
        (8824.0, 8831.0),  # OH 8827.1
        (8882.0, 8889.0),  # OH 8885.8
        (8916.0, 8923.0),  # OH 8919.6
        (8940.0, 8947.0),  # OH 8943.4
        (8955.0, 8962.0),  # OH 8958.1
        (8998.0, 9005.0),  # OH 9001.3
    ]
)

# Night-sky emission lines in the MUSE range: air wavelength (A) and strength, the line flux divided by
# the dark-sky continuum at 5500 A (an equivalent width, A). Positions are those of the windows above.
# Strengths are APPROXIMATE (typical dark-time Paranal values, within a factor ~2, and variable from
# night to night): [O I] 5577 ~ 250 R on a ~1 R/A continuum (Osterbrock et al. 1996; Hanuschik 2003;
# Patat 2008, A&A 481, 575), [O I] 6300 about half of it and 6364 a third of 6300, Na D ~20 R, and
# OH Meinel-band lines growing from ~40 R near 7300 A to ~150 R near 9000 A.
SKY_EMISSION_LINES_AA = np.array(
    [
        (5577.34, 250.0),
        (5889.95, 20.0),
        (5895.92, 15.0),
        (6300.30, 120.0),
        (6363.78, 40.0),
        (6863.9, 30.0),
        (7276.4, 40.0),
        (7316.3, 50.0),
        (7340.9, 50.0),
        (7369.3, 40.0),
        (7750.6, 60.0),
        (7794.1, 60.0),
        (7821.5, 60.0),
        (7913.7, 70.0),
        (7993.3, 80.0),
        (8344.6, 120.0),
        (8399.2, 100.0),
        (8430.2, 100.0),
        (8465.4, 100.0),
        (8827.1, 150.0),
        (8885.8, 150.0),
        (8919.6, 120.0),
        (8943.4, 150.0),
        (8958.1, 150.0),
        (9001.3, 150.0),
    ]
)
# The many fainter OH lines red-ward of ~6800 A are not listed: they enter as a smooth pseudo-continuum
# rising as ((lambda - 6800 A) / 2500 A)**2 to OH_FOREST_AT_9300 times the 5500 A continuum at 9300 A.
OH_FOREST_START_AA, OH_FOREST_AT_9300 = 6800.0, 5.0
# Relative end-to-end throughput (atmosphere + telescope + MUSE WFM, normalised to its peak) in the
# observed frame: APPROXIMATE shape read off the MUSE User Manual / Bacon et al. (2017) efficiency
# curves (peak ~ 6500-8000 A, falling below ~5000 A and above ~9000 A).
MUSE_THROUGHPUT_REL = np.array(
    [
        (4500.0, 0.3),
        (4650.0, 0.45),
        (4750.0, 0.55),
        (5000.0, 0.72),
        (5500.0, 0.9),
        (6000.0, 0.97),
        (7000.0, 1.0),
        (8000.0, 0.92),
        (8500.0, 0.82),
        (9000.0, 0.65),
        (9350.0, 0.48),
        (9700.0, 0.3),
        (12000.0, 0.05),
    ]
)
# The telluric O2 bands (the windows of SKY_LINE_WINDOWS_AA wider than 20 A) pass about this fraction
# of the light at the MUSE resolution (approximate mean: the A-band head is much deeper); correcting
# them scales the noise up by its inverse.
TELLURIC_BAND_MIN_WIDTH_AA, TELLURIC_BAND_TRANSMISSION = 20.0, 0.6
# Read noise and dark current: their variance at 5500 A as a fraction of the sky-continuum variance
# there (approximate: between the sky lines a deep MUSE exposure is mostly sky-limited, with read
# noise a few tens of per cent of the variance). In counts it is flat, so it rises as 1 / sensitivity**2.
DETECTOR_TO_SKY_VAR_5500 = 0.3
# Redshifts at which the sky lines fall on a rest-frame spectrum: PHANGS-MUSE galaxies have z < 0.006;
# 0.03 leaves room for other nearby galaxies. Used by the generator and the training augmentation.
SKY_Z_RANGE = (0.0, 0.03)
_TABLE_AA = (4000.0, 12000.0, 0.1)  # observed-frame grid of the noise terms (looked up to the nearest 0.1 A)


def muse_throughput(wave_obs_aa):
    """Relative end-to-end throughput of MUSE (peak 1; approximate, see :data:`MUSE_THROUGHPUT_REL`),
    with the telluric O2 bands.

    Parameters
    ----------
    wave_obs_aa : ndarray, shape (n_wave,)
        Observed-frame air wavelengths, Angstrom.

    Returns
    -------
    ndarray, shape (n_wave,)
    """
    t = MUSE_THROUGHPUT_REL
    wave = np.asarray(wave_obs_aa, dtype=float)
    out = np.interp(wave, t[:, 0], t[:, 1])
    w = SKY_LINE_WINDOWS_AA
    for lo, hi in w[w[:, 1] - w[:, 0] > TELLURIC_BAND_MIN_WIDTH_AA]:
        out = np.where((wave >= lo) & (wave <= hi), out * TELLURIC_BAND_TRANSMISSION, out)
    return out


def photon_sensitivity(wave_obs_aa):
    """Detected photons per unit f_lambda, relative to 5500 A: throughput x wavelength, shape (n_wave,).

    The photon-noise variance of a flux density f_lambda is proportional to f_lambda / sensitivity,
    and a constant per-pixel (detector) variance in counts to 1 / sensitivity**2.
    """
    wave = np.asarray(wave_obs_aa, dtype=float)
    return muse_throughput(wave) * wave / (muse_throughput(5500.0) * 5500.0)


def sky_spectrum(wave_obs_aa):
    """Dark night-sky flux density at the MUSE resolution, in units of its continuum at 5500 A.

    A flat continuum, the lines of :data:`SKY_EMISSION_LINES_AA` as Gaussians of the MUSE LSF
    (:func:`muse_lsf_fwhm`), and the OH pseudo-continuum red-ward of 6800 A. Approximate: a shape for
    the noise model, not a sky model to subtract.

    Parameters
    ----------
    wave_obs_aa : ndarray, shape (n_wave,)
        Observed-frame air wavelengths, Angstrom (4000-10500 A).

    Returns
    -------
    ndarray, shape (n_wave,)
    """
    wave = np.asarray(wave_obs_aa, dtype=float)
    lam, ew = SKY_EMISSION_LINES_AA.T
    sig = muse_lsf_fwhm(lam) * FWHM_TO_SIGMA
    lines = np.zeros_like(wave)
    for c, s, a in zip(lam, sig, ew):
        near = np.abs(wave - c) < 8 * s
        lines[near] += a / (np.sqrt(2 * np.pi) * s) * np.exp(-0.5 * ((wave[near] - c) / s) ** 2)
    forest = (
        OH_FOREST_AT_9300 * (np.clip(wave - OH_FOREST_START_AA, 0, None) / (9300.0 - OH_FOREST_START_AA)) ** 2
    )
    return 1.0 + forest + lines


def sky_variance(wave_obs_aa):
    """Variance of the sky + detector noise term (arbitrary units), shape (n_wave,).

    sky_spectrum / sensitivity + detector / sensitivity**2 (see :func:`photon_sensitivity`): it
    follows the night-sky lines, rises red-ward of 6800 A with the OH bands, and at both ends of the
    range where the throughput falls.
    """
    s = photon_sensitivity(wave_obs_aa)
    return sky_spectrum(wave_obs_aa) / s + DETECTOR_TO_SKY_VAR_5500 / s**2


_tables = {}


def _observed_terms(wave_aa, z, sky):
    """1 / :func:`photon_sensitivity` and :func:`sky_variance` at ``wave_aa * (1 + z)``, float32.

    Looked up in 0.1 A tables (nearest entry: well below the 2.5 A MUSE FWHM); far faster than
    interpolating for every object. ``z`` has shape (n_z, 1); returns arrays of shape (n_z, n_wave)
    (the sky term None unless ``sky``).
    """
    lo, hi, step = _TABLE_AA
    if not _tables:
        grid = np.arange(lo, hi + step / 2, step)
        _tables["inv_sens"] = (1.0 / photon_sensitivity(grid)).astype(np.float32)
        _tables["sky"] = sky_variance(grid).astype(np.float32)
    if wave_aa[0] * (1 + z.min()) < lo or wave_aa[-1] * (1 + z.max()) > hi:
        raise ValueError(f"observed wavelengths outside {lo:.0f}-{hi:.0f} A: not MUSE, or not Angstrom")
    # index of lambda (1 + z) in the tables, rounded: ((lambda - lo) (1 + z) + lo z) / step + 0.5
    x = np.multiply.outer((1.0 + z[:, 0]).astype(np.float32), ((wave_aa - lo) / step).astype(np.float32))
    x += (lo * z / step + 0.5).astype(np.float32)
    i = x.astype(np.int32)
    return np.take(_tables["inv_sens"], i), (np.take(_tables["sky"], i) if sky else None)


def noise_sigma(flux, snr, wave_aa=None, sky_frac=0.0, sky_z=0.0):
    """Per-pixel noise of a MUSE spectrum: object photon noise plus a sky and detector term.

    The variance is

        var_i = (f_ref / snr)**2 [(1 - sky_frac) p_i / <p>_ref + sky_frac s_i / <s>_ref],

    with f_ref the mean flux in 5300-5700 A (the whole spectrum if the grid does not cover that
    window) and <.>_ref means over that window, so that the continuum there has S/N = ``snr``
    whatever ``sky_frac``:

    * p_i = max(f_i, 1e-3 f_ref) / sensitivity_i, the object's photon noise: brighter pixels
      (emission lines) are noisier, and so are the ends of the range where fewer photons are
      detected per unit flux (:func:`photon_sensitivity`);
    * s_i = :func:`sky_variance` at the observed wavelength lambda_i (1 + ``sky_z``): night-sky lines
      ([O I] 5577, 6300, 6364, Na D, OH), the OH bands rising towards 9300 A, read noise, all
      divided by the sensitivity.

    ``sky_frac`` is the fraction of the continuum variance at 5300-5700 A that the sky and detector
    give: near 1 for faint disc regions (sky-dominated), near 0 for bright cluster apertures. The
    shapes are approximate (see :data:`SKY_EMISSION_LINES_AA`, :data:`MUSE_THROUGHPUT_REL`):
    variance spectra of real PHANGS-MUSE cubes also carry sky-subtraction residuals and covariance
    between pixels, which this model has not.

    Parameters
    ----------
    flux : ndarray, shape (n_obj, n_wave)
        Noise-free spectra (positive mean in the reference window).
    snr : ndarray, shape (n_obj,)
        S/N per pixel at the reference flux (> 0).
    wave_aa : ndarray, shape (n_wave,), optional
        Rest-frame wavelengths, to locate the reference window and place the instrument and sky
        terms; default the MUSE grid if ``n_wave`` matches it. Without it the noise is photon noise
        with a flat sensitivity, and ``sky_frac`` must be 0.
    sky_frac : float or ndarray, shape (n_obj,)
        Sky + detector fraction of the reference variance, in [0, 1].
    sky_z : float or ndarray, shape (n_obj,)
        Redshift of the observation: the instrument and sky terms are evaluated at
        ``wave_aa * (1 + sky_z)``.

    Returns
    -------
    ndarray, shape (n_obj, n_wave)
        1-sigma noise per pixel, in the units of ``flux``.
    """
    flux = np.asarray(flux)
    check_range(snr, "snr (signal-to-noise ratio)", low=0.0, low_open=True)
    sky_frac = np.asarray(check_range(sky_frac, "sky_frac (sky share of the variance)", low=0.0, high=1.0))
    sky_z = np.asarray(check_range(sky_z, "sky_z (redshift of the sky lines)", low=0.0, high=1.0))
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
    elif np.any(sky_frac > 0):
        raise ValueError("a sky term (sky_frac > 0) needs the wavelengths, wave_aa")
    ref = flux[..., window].mean(axis=-1, keepdims=True)
    if not np.all(ref > 0):
        raise ValueError(
            "flux must be noise-free spectra with a positive mean in the S/N window "
            f"({SNR_WINDOW_AA[0]:.0f}-{SNR_WINDOW_AA[1]:.0f} A); got a mean <= 0 or NaN"
        )
    dt = flux.dtype
    snr = np.asarray(snr, dtype=dt)
    snr = snr.reshape(ref.shape) if snr.size == ref.size else np.broadcast_to(snr, ref.shape)
    var = np.maximum(flux, (1e-3 * ref).astype(dt))  # (n_obj, n_wave): object photons
    with_sky = bool(np.any(sky_frac > 0))
    if wave_aa is not None:
        z = np.reshape(sky_z, (-1, 1))
        z = z[:1] if np.all(z == z[0]) else z  # one row serves every object at one redshift
        inv_sens, sky = _observed_terms(wave_aa, z, with_sky)  # (1 or n_obj, n_wave)
        var *= inv_sens
    var /= var[..., window].mean(axis=-1, keepdims=True)
    if with_sky:
        sky /= sky[..., window].mean(axis=-1, keepdims=True)
        f = np.reshape(sky_frac, (-1, 1)).astype(dt)
        var *= 1 - f
        var += f * sky
    var *= (ref / snr) ** 2
    return np.sqrt(var, out=var)


def add_noise(flux, snr, rng, wave_aa=None, sky_frac=0.0, sky_z=0.0):
    """Gaussian noise at S/N ``snr`` (see :func:`noise_sigma`).

    Parameters
    ----------
    flux : ndarray, shape (n_obj, n_wave)
    snr : ndarray, shape (n_obj,)
    rng : numpy.random.Generator
    wave_aa : ndarray, shape (n_wave,), optional
    sky_frac, sky_z : float or ndarray, shape (n_obj,)
        See :func:`noise_sigma`.

    Returns
    -------
    noisy : ndarray, shape (n_obj, n_wave)
    ivar : ndarray, shape (n_obj, n_wave)
        Inverse variance, 1 / sigma^2.
    """
    sigma = noise_sigma(flux, snr, wave_aa, sky_frac, sky_z)
    noisy = rng.standard_normal(flux.shape, dtype=flux.dtype)
    noisy *= sigma
    noisy += flux
    sigma *= sigma
    return noisy, np.reciprocal(sigma, out=sigma)
