"""From observed spectra and fluxes to the network's frame: each step a small function.

Order (:func:`prepare_spectra`): bad pixels and sky-line windows to NaN in the observed frame; Milky
Way foreground extinction removed (observed frame: the foreground dust sees observed wavelengths);
shift to the rest frame and flux-conserving resampling onto the model's grid; broadening to the
model's stellar velocity dispersion (and, for an instrument other than MUSE, from its line-spread
function to MUSE's); per-object quality flags (:mod:`sfh_ml.observations.flags`).

Conventions
-----------
* Wavelengths are in air, Angstrom, as in MUSE cubes and the model grid.
* Resolution: the model's spectra have the MUSE line-spread function (:func:`muse_lsf_fwhm`, at
  rest-frame wavelengths) and a stellar dispersion ``sigma_model``. A spectrum with stellar dispersion
  sigma and an instrument of FWHM(lambda_obs) has, in the rest frame, the instrumental FWHM
  FWHM(lambda (1 + z)) / (1 + z); its *effective* dispersion is sigma_eff^2(lambda) = sigma^2 +
  (c / lambda)^2 (sigma_instr^2 - sigma_MUSE^2) (Gaussian sigmas in Angstrom; negative excess where the
  instrument is sharper than MUSE), and it is convolved with a Gaussian of sigma_model^2 - sigma_eff^2
  at each wavelength (:func:`rest_frame_fwhm`, :func:`lsf_excess_kms2`, :func:`broaden_to_model`).
  Without an instrumental FWHM (MUSE cubes) the LSF is taken to be MUSE's in both frames.
* Redshift: z_total = (1 + z_sys)(1 + v / c) - 1, with v the line-of-sight velocity relative to the
  systemic redshift z_sys (how the DAP's ``V_STARS`` is defined), v/c to first order.
* Rest-frame flux density: f_lambda,rest(lambda / (1 + z)) = (1 + z) f_lambda,obs(lambda), variance
  times (1 + z)^2. This keeps the integral of f_lambda d lambda over any feature (a line flux, a band
  integral) unchanged; the cosmological dimming of the total flux is not undone. The HST fluxes stay
  observed-frame (at PHANGS redshifts, z < 0.006, the bands shift by < 0.6 %).
* Variances are propagated pixel by pixel. The covariance between neighbouring pixels that
  resampling creates is passed on to the broadening, whose kernels sum over it (ignoring it
  underestimated the broadened variance by a factor of ~1.5); the covariance the broadening itself
  creates is not returned: ``var`` is the exact variance of each pixel, not a full covariance.
"""

import warnings
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from dust_extinction import parameter_averages
from scipy import sparse
from spectres.spectral_resampling import make_bins

from ..constants import C_KMS, FWHM_TO_SIGMA
from ..synthesis.instrument import SKY_LINE_WINDOWS_AA, broadening_matrix, muse_lsf_fwhm
from ..synthesis.photometry import pivot_wavelengths
from . import flags as qf

__all__ = [
    "SKY_LINE_WINDOWS_AA",
    "MIN_COVERAGE",
    "SIGMA_TOLERANCE_KMS",
    "total_redshift",
    "to_rest_frame",
    "mw_transmission",
    "deredden_mw",
    "sky_line_mask",
    "clean_pixels",
    "resample_spectra",
    "rest_frame_fwhm",
    "lsf_excess_kms2",
    "broaden_to_model",
    "photometry_to_flux_density",
    "PreparedSpectra",
    "prepare_spectra",
]

# The sky-line windows (SKY_LINE_WINDOWS_AA, re-exported here) live with the rest of the night-sky model
# in sfh_ml.synthesis.instrument.
# Milky Way foreground: Fitzpatrick (1999) with R_V = 3.1, the law Schlafly & Finkbeiner (2011) used to
# calibrate the E(B-V) maps that foreground values are usually taken from.
MW_LAW, MW_R_V = "F99", 3.1
MIN_COVERAGE = 0.8  # fraction of the model grid that valid rest-frame pixels must cover
SIGMA_TOLERANCE_KMS = 10.0  # a dispersion up to this much above the model's is accepted unbroadened
SIGMA_NODE_MIN_KMS = 5.0  # broadening kernels are built at 0 and at log-spaced nodes from here ...
SIGMA_NODE_RATIO = 1.1  # ... 10 % apart, and mixed between the two nodes around each object's value


# ----------------------------------------------------------------------------------------- rest frame
def total_redshift(z_sys=0.0, v_kms=None):
    """Total redshift of each object: z = (1 + z_sys)(1 + v / c) - 1.

    Parameters
    ----------
    z_sys : float or ndarray, shape (n,)
        Systemic redshift.
    v_kms : float or ndarray, shape (n,), optional
        Line-of-sight velocity relative to the systemic one, km/s (e.g. the DAP's ``V_STARS``).

    Returns
    -------
    ndarray, shape (n,) or ()
    """
    z = np.asarray(z_sys, dtype=float)
    if v_kms is None:
        return z
    return (1.0 + z) * (1.0 + np.asarray(v_kms, dtype=float) / C_KMS) - 1.0


def to_rest_frame(wave_obs_aa, flux, var, z):
    """Rest-frame wavelengths and flux densities (see the module's conventions).

    Parameters
    ----------
    wave_obs_aa : ndarray, shape (n_wave,)
    flux, var : ndarray, shape (n, n_wave)
        Flux density and its variance.
    z : float or ndarray, shape (n,)

    Returns
    -------
    wave_rest_aa : ndarray, shape (n, n_wave)
        lambda_obs / (1 + z).
    flux, var : ndarray, shape (n, n_wave)
        Times (1 + z) and (1 + z)^2.
    """
    scale = np.reshape(1.0 + np.asarray(z, dtype=float), (-1, 1))
    return np.asarray(wave_obs_aa)[None, :] / scale, np.asarray(flux) * scale, np.asarray(var) * scale**2


# ----------------------------------------------------------------------------------------- Milky Way dust
def mw_transmission(wave_aa, ebv, law=MW_LAW, r_v=MW_R_V):
    """Transmission 10^(-0.4 A_lambda) of the Milky Way foreground.

    A_lambda = (A_lambda / A_V)(law) R_V E(B-V), with the average law of ``dust-extinction``:
    ``F99`` (Fitzpatrick 1999, PASP 111, 63; the default, :data:`MW_LAW`), ``G23`` (Gordon et al. 2023,
    ApJ 950, 86), ``CCM89``, ``O94``, ``F19``, ...

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Observed wavelengths, Angstrom.
    ebv : float or ndarray, shape (n,)
        Foreground E(B-V), mag (e.g. Schlafly & Finkbeiner 2011 at the galaxy's position).
    law : str
        Name of a class of ``dust_extinction.parameter_averages``.
    r_v : float

    Returns
    -------
    ndarray, shape (n_wave,) for a scalar ``ebv``, else (n, n_wave)
    """
    model = getattr(parameter_averages, law, None)
    if model is None:
        raise ValueError(
            f"unknown extinction law {law!r}; use a dust_extinction.parameter_averages name (G23, F99)"
        )
    a_over_av = model(Rv=r_v)(np.asarray(wave_aa, dtype=float) * u.AA)
    ebv = np.asarray(ebv, dtype=float)
    return 10.0 ** (-0.4 * r_v * ebv[..., None] * a_over_av)


def deredden_mw(wave_aa, flux, var, ebv, law=MW_LAW, r_v=MW_R_V):
    """Remove the Milky Way foreground extinction: flux / T and var / T^2 (:func:`mw_transmission`).

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Observed wavelengths, Angstrom.
    flux, var : ndarray, shape (n, n_wave)
    ebv : float or ndarray, shape (n,)
    law, r_v : see :func:`mw_transmission`

    Returns
    -------
    flux, var : ndarray, shape (n, n_wave)
    """
    t = mw_transmission(wave_aa, ebv, law, r_v)
    return np.asarray(flux) / t, np.asarray(var) / t**2


# ----------------------------------------------------------------------------------------- bad pixels
def sky_line_mask(wave_obs_aa, windows=SKY_LINE_WINDOWS_AA):
    """True at observed-frame wavelengths inside a sky-line window, shape (n_wave,)."""
    wave = np.asarray(wave_obs_aa, dtype=float)
    windows = np.asarray(windows, dtype=float).reshape(-1, 2)
    return np.any((wave[:, None] >= windows[:, 0]) & (wave[:, None] <= windows[:, 1]), axis=1)


def clean_pixels(flux, var, dq=None, mask=None):
    """Copies of ``flux`` and ``var`` with NaN at every pixel that cannot be used.

    A pixel is bad where the flux or variance is not finite, the variance is <= 0, ``dq != 0``, or
    ``mask`` is True (e.g. :func:`sky_line_mask`).

    Parameters
    ----------
    flux, var : ndarray, shape (n, n_wave)
    dq : ndarray of int, shape (n, n_wave), optional
    mask : ndarray of bool, shape (n_wave,) or (n, n_wave), optional

    Returns
    -------
    flux, var : ndarray of float64, shape (n, n_wave)
    """
    flux = np.array(flux, dtype=np.float64, ndmin=2)
    var = np.array(var, dtype=np.float64, ndmin=2)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(flux) | ~np.isfinite(var) | ~(var > 0)
    if dq is not None:
        bad |= np.asarray(dq).reshape(bad.shape) != 0
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    flux[bad] = np.nan
    var[bad] = np.nan
    return flux, var


# ----------------------------------------------------------------------------------------- resampling
def _bin_index(edges_in, x):
    """Indices k of the input bins with edges_in[k] <= x < edges_in[k + 1] ("right") and
    edges_in[k] < x <= edges_in[k + 1] ("left"), clipped to the grid; arithmetic on a uniform grid
    (the MUSE one), a binary search otherwise."""
    n_bins = edges_in.size - 1
    step = edges_in[1] - edges_in[0]
    if np.allclose(np.diff(edges_in), step, rtol=1e-9, atol=0.0):
        with np.errstate(invalid="ignore"):
            k = np.floor((x - edges_in[0]) / step)
        k = np.clip(np.nan_to_num(k, nan=0.0), 0, n_bins - 1).astype(np.intp)
        k += (edges_in[k + 1] <= x) & (k < n_bins - 1)  # rounding at a bin edge
        k -= (edges_in[k] > x) & (k > 0)
    else:
        k = np.clip(np.searchsorted(edges_in, x, side="right") - 1, 0, n_bins - 1)
    left = np.where((edges_in[k] == x) & (k > 0), k - 1, k)
    return k, left


def resample_spectra(wave_in_aa, flux, var, wave_out_aa, z=0.0, covariance=False):
    """Shift to the rest frame and resample onto a new grid, conserving flux, variance propagated.

    The same operation as ``spectres.spectres(wave_out_aa, wave_in_aa / (1 + z), flux * (1 + z),
    sqrt(var) * (1 + z), fill=nan)`` (Carnall 2017, arXiv:1705.05165): bins with edges half-way
    between pixel centres, input taken as constant within each bin, output = mean over the output
    bin, error = sqrt(sum (err_i w_i)^2) / sum w_i with w_i the overlaps. ``spectres`` takes one
    input grid per call and loops over output pixels in Python; here every object has its own
    redshift (a per-spaxel velocity), so the same sums are done at once for all objects with
    cumulative integrals (equal to ``spectres`` to rounding, tested).

    Parameters
    ----------
    wave_in_aa : ndarray, shape (n_in,)
        Observed-frame wavelengths (increasing), Angstrom.
    flux, var : ndarray, shape (n, n_in)
        Flux density and variance; NaN marks bad pixels.
    wave_out_aa : ndarray, shape (n_out,)
        Rest-frame output grid (the model's), Angstrom.
    z : float or ndarray, shape (n,)
        Redshift of each object (:func:`total_redshift`).
    covariance : bool
        Also return the covariance between output pixels that share an input pixel (for
        :func:`broaden_to_model`, whose wide kernels sum over it).

    Returns
    -------
    flux, var : ndarray, shape (n, n_out)
        Rest-frame flux density (times 1 + z) and variance (times (1 + z)^2); NaN in every output
        pixel that overlaps a bad input pixel or reaches beyond the input grid.
    cov : ndarray, shape (n_lag, n, n_out)
        Only with ``covariance``: ``cov[lag - 1, :, i]`` is the covariance of output pixels i and
        i + lag (0 in the last ``lag`` pixels and where either is NaN). Two output bins share at
        most one input pixel (the one holding the edge between them), so it is
        w_i w_(i + lag) var_k / (width_i width_(i + lag)); n_lag is the largest lag with a shared
        pixel (1 between grids of similar steps, as MUSE and the model's).
    """
    flux = np.array(flux, dtype=np.float64, ndmin=2)
    var = np.array(var, dtype=np.float64, ndmin=2)
    n, n_in = flux.shape
    scale = np.broadcast_to(1.0 + np.asarray(z, dtype=float), (n,))[:, None]
    e_in, _ = make_bins(np.asarray(wave_in_aa, dtype=float))
    e_out, _ = make_bins(np.asarray(wave_out_aa, dtype=float))
    w_in = np.diff(e_in)
    good = np.isfinite(flux) & np.isfinite(var)
    # Per-pixel values and their cumulative sums over the bins left of each edge, all (n, n_in + 1)
    # so that one flat index per output bin serves every array.
    f0 = np.zeros((n, n_in + 1))
    v0 = np.zeros((n, n_in + 1))
    np.copyto(f0[:, :-1], flux, where=good)
    np.copyto(v0[:, :-1], var, where=good)

    def cumulative(x):
        return np.concatenate([np.zeros((n, 1)), np.cumsum(x, axis=1)], axis=1)

    cf = cumulative(f0[:, :-1] * w_in)
    cv = cumulative(v0[:, :-1] * w_in**2)
    cb = cumulative(~good)
    edges = e_out[None, :] * scale  # observed-frame output edges, (n, n_out + 1)
    a, b = edges[:, :-1], edges[:, 1:]
    with np.errstate(invalid="ignore"):
        inside = (a >= e_in[0]) & (b <= e_in[-1])
    # First and last input bin overlapped by each output bin (spectres' start and stop).
    right, left = _bin_index(e_in, edges)
    start, stop = right[:, :-1], left[:, 1:]
    offset = np.arange(n)[:, None] * (n_in + 1)
    i_start, i_stop = start + offset, stop + offset  # flat indices

    e_start, e_stop = e_in[start], e_in[stop]
    f_start, f_stop = f0.take(i_start), f0.take(i_stop)
    integral = cf.take(i_stop) - cf.take(i_start) + f_stop * (b - e_stop) - f_start * (a - e_start)
    width = b - a
    lo = np.minimum(e_in[start + 1], b) - a  # overlap with the first bin
    hi = b - np.maximum(e_stop, a)  # overlap with the last bin
    v_start, v_stop = v0.take(i_start), v0.take(i_stop)
    vsum = np.where(
        start == stop,
        v_start * width**2,
        v_start * lo**2 + (cv.take(i_stop) - cv.take(i_start + 1)) + v_stop * hi**2,
    )
    ok = inside & (cb.take(i_stop + 1) == cb.take(i_start))
    with np.errstate(invalid="ignore", divide="ignore"):
        out_flux = np.where(ok, integral / width * scale, np.nan)
        out_var = np.where(ok, vsum / width**2 * scale**2, np.nan)
    if not covariance:
        return out_flux, out_var
    cov = []
    for lag in range(1, width.shape[1]):
        shared = (stop[:, :-lag] == start[:, lag:]) & ok[:, :-lag] & ok[:, lag:]
        if not shared.any():
            break
        c = np.zeros_like(out_var)
        with np.errstate(invalid="ignore"):
            c[:, :-lag] = np.where(
                shared,
                hi[:, :-lag] * lo[:, lag:] * v_stop[:, :-lag] / (width[:, :-lag] * width[:, lag:]) * scale**2,
                0.0,
            )
        cov.append(c)
    return out_flux, out_var, np.array(cov).reshape(len(cov), *out_var.shape)


# ----------------------------------------------------------------------------------------- resolution
_OPERATORS = {}


def _broadening_operator(wave_aa, sigma_kms):
    """Sparse Gaussian convolution of width sigma_kms (velocity) on ``wave_aa``, and its square."""
    key = (hash(wave_aa.tobytes()), float(sigma_kms))
    if key not in _OPERATORS:
        if len(_OPERATORS) > 256:
            _OPERATORS.clear()
        op = broadening_matrix(wave_aa, wave_aa, wave_aa * sigma_kms / C_KMS)
        _OPERATORS[key] = (op, op.multiply(op).tocsr())
    return _OPERATORS[key]


def _lag_operator(wave_aa, sigma_kms, lag):
    """K_ij K_i(j + lag) of :func:`_broadening_operator`'s K: applied to the covariance of pixels j and
    j + lag, twice it is their contribution to the variance of the convolution."""
    key = (hash(wave_aa.tobytes()), float(sigma_kms), int(lag))
    if key not in _OPERATORS:
        op, _ = _broadening_operator(wave_aa, sigma_kms)
        shift = sparse.eye(op.shape[1], op.shape[1], k=-lag, format="csr")  # (op @ shift)_ij = op_i(j+lag)
        _OPERATORS[key] = op.multiply(op @ shift).tocsr()
    return _OPERATORS[key]


def rest_frame_fwhm(wave_obs_aa, fwhm_obs_aa, wave_rest_aa, z):
    """The instrument's FWHM at rest-frame wavelengths: FWHM(lambda (1 + z)) / (1 + z).

    Linear interpolation in the observed-frame table, constant beyond its ends.

    Parameters
    ----------
    wave_obs_aa : ndarray, shape (n_obs,)
        Increasing observed-frame wavelengths of the table, Angstrom.
    fwhm_obs_aa : ndarray, shape (n_obs,) or (n, n_obs)
        Instrumental FWHM at each of them, Angstrom (finite, > 0); one row for all objects or one each.
    wave_rest_aa : ndarray, shape (n_rest,)
        Rest-frame wavelengths (the model's grid), Angstrom.
    z : float or ndarray, shape (n,)
        Total redshift of each object (:func:`total_redshift`); NaN gives NaN.

    Returns
    -------
    ndarray, shape (n, n_rest)
        Rest-frame FWHM, Angstrom.
    """
    wave_obs = np.asarray(wave_obs_aa, dtype=float)
    fwhm = np.atleast_2d(np.asarray(fwhm_obs_aa, dtype=float))
    if fwhm.shape[1] != wave_obs.size:
        raise ValueError(f"fwhm_obs_aa has {fwhm.shape[1]} values per row for {wave_obs.size} wavelengths")
    if not np.all(np.isfinite(fwhm) & (fwhm > 0)):
        raise ValueError("fwhm_obs_aa must be finite and > 0 (Angstrom) at every wavelength")
    scale = np.atleast_1d(1.0 + np.asarray(z, dtype=float))
    n = max(scale.size, fwhm.shape[0])
    scale = np.broadcast_to(scale, (n,))
    x = np.asarray(wave_rest_aa, dtype=float)[None, :] * scale[:, None]  # observed frame, (n, n_rest)
    with np.errstate(invalid="ignore"):
        j = np.clip(np.searchsorted(wave_obs, np.nan_to_num(x)) - 1, 0, wave_obs.size - 2)
        t = np.clip((x - wave_obs[j]) / (wave_obs[j + 1] - wave_obs[j]), 0.0, 1.0)
    rows = np.broadcast_to(fwhm, (n, wave_obs.size))
    lo, hi = np.take_along_axis(rows, j, axis=1), np.take_along_axis(rows, j + 1, axis=1)
    return ((1.0 - t) * lo + t * hi) / scale[:, None]


def lsf_excess_kms2(wave_aa, fwhm_aa):
    """An instrument's line-spread function in excess of MUSE's, as a squared velocity dispersion.

    (c / lambda)^2 (sigma_instr^2 - sigma_MUSE^2), with sigma = FWHM / 2.355 in Angstrom and the MUSE
    LSF of :func:`sfh_ml.synthesis.instrument.muse_lsf_fwhm` (Bacon et al. 2017) at the same
    (rest-frame) wavelengths: what the instrument adds to the stellar dispersion (negative where it is
    sharper than MUSE). Zero for MUSE itself.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Rest-frame wavelengths, Angstrom (4000-10500 A: the range of the MUSE LSF).
    fwhm_aa : ndarray, shape (n_wave,) or (n, n_wave)
        Rest-frame instrumental FWHM (:func:`rest_frame_fwhm`), Angstrom.

    Returns
    -------
    ndarray, shape of ``fwhm_aa``
        km^2/s^2.
    """
    wave_aa = np.asarray(wave_aa, dtype=float)
    fwhm_aa = np.asarray(fwhm_aa, dtype=float)
    return (C_KMS * FWHM_TO_SIGMA / wave_aa) ** 2 * (fwhm_aa**2 - muse_lsf_fwhm(wave_aa) ** 2)


def _sigma_nodes(sigma_max_kms):
    n = int(
        np.ceil(
            np.log(max(sigma_max_kms, SIGMA_NODE_MIN_KMS) / SIGMA_NODE_MIN_KMS) / np.log(SIGMA_NODE_RATIO)
        )
    )
    return np.concatenate([[0.0], SIGMA_NODE_MIN_KMS * SIGMA_NODE_RATIO ** np.arange(n + 2)])


def broaden_to_model(
    wave_aa,
    flux,
    var,
    sigma_obs_kms,
    sigma_model_kms,
    tolerance_kms=SIGMA_TOLERANCE_KMS,
    cov=None,
    lsf_excess_kms2=None,
):
    """Broaden spectra to the model's stellar velocity dispersion (and LSF).

    The MUSE line-spread function is the same in the observed and the synthetic spectra, so only the
    stellar dispersions differ: each spectrum is convolved with a Gaussian of
    sigma_k = sqrt(sigma_model^2 - sigma_obs^2) in velocity, i.e. sigma_k lambda / c in Angstrom at
    each wavelength: a kernel of varying width on the linear grid, integrated exactly over each input
    pixel (:func:`sfh_ml.synthesis.instrument.broadening_matrix`, the operator the synthesizer uses).
    To stay vectorised, the kernels are built at fixed sigma nodes (0 and log-spaced, 10 % apart)
    and each spectrum is the mixture of its two neighbouring nodes with weights linear in sigma^2,
    so the kernel's second moment is exactly sigma_k^2. Bad (NaN) pixels are left out of the
    convolution (normalised convolution) and stay NaN.

    An instrument other than MUSE (``lsf_excess_kms2``, :func:`lsf_excess_kms2`) makes the effective
    dispersion depend on wavelength, sigma_eff^2 = sigma_obs^2 + excess(lambda), and the kernel
    sigma_k^2(lambda) = sigma_model^2 - sigma_eff^2(lambda): the same nodes, mixed with weights that
    change from pixel to pixel (the kernel of each output pixel is the one of its wavelength, as in
    :func:`sfh_ml.synthesis.instrument.broadening_matrix`). An instrument sharper than MUSE is so
    degraded to MUSE's LSF plus the model's dispersion; where sigma_eff exceeds the model's, the
    spectrum is left as it is there.

    Variance: var_out = sum_jk K_ij K_ik C_jk / (sum_j K_ij)^2 for each node, with C the covariance
    of the input pixels: its diagonal ``var`` and, if given, the off-diagonals ``cov`` (exact per
    pixel; the covariance the convolution creates between output pixels is not returned), mixed
    with the same weights (an upper bound by convexity, tight because the nodes are 10 % apart).
    Resampled spectra (:func:`resample_spectra`) have correlated neighbours: a kernel wider than a
    pixel sums over that covariance, so without ``cov`` their variance comes out too small (by up
    to a factor of 2; 1.5 on average over the fractional shifts between two grids of equal steps).

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Rest-frame wavelengths, Angstrom.
    flux, var : ndarray, shape (n, n_wave)
    sigma_obs_kms : float or ndarray, shape (n,)
        Stellar dispersion of each spectrum (e.g. the DAP's ``SIGMA_STARS``), km/s.
    sigma_model_kms : float or ndarray, shape (n,)
        The model's (training) stellar dispersion, km/s.
    tolerance_kms : float
        Spectra up to this much broader than the model are left as they are without a flag.
    cov : ndarray, shape (n_lag, n, n_wave), optional
        Covariance of the input pixels i and i + lag in ``cov[lag - 1, :, i]`` (the ``cov`` of
        :func:`resample_spectra`); None: independent pixels.
    lsf_excess_kms2 : ndarray, shape (n_wave,) or (n, n_wave), optional
        The instrument's LSF in excess of MUSE's at each rest-frame wavelength, km^2/s^2
        (:func:`lsf_excess_kms2`); None: the spectra have the MUSE LSF.

    Returns
    -------
    flux, var : ndarray, shape (n, n_wave)
        Broadened spectra; unchanged where sigma_eff >= sigma_model or sigma_obs is NaN.
    too_broad : ndarray of bool, shape (n,)
        sigma_eff > sigma_model + tolerance (at any pixel with data, with ``lsf_excess_kms2``): cannot
        be matched (flag :data:`flags.TOO_BROAD`).
    """
    wave_aa = np.asarray(wave_aa, dtype=float)
    flux = np.array(flux, dtype=np.float64, ndmin=2)
    var = np.array(var, dtype=np.float64, ndmin=2)
    n = flux.shape[0]
    s_obs = np.broadcast_to(np.asarray(sigma_obs_kms, dtype=float), (n,))
    s_mod = np.broadcast_to(np.asarray(sigma_model_kms, dtype=float), (n,))
    good = np.isfinite(flux) & np.isfinite(var)
    eff2 = s_obs[:, None] ** 2  # squared effective dispersion, (n, 1) or (n, n_wave)
    if lsf_excess_kms2 is not None:
        eff2 = eff2 + np.broadcast_to(np.asarray(lsf_excess_kms2, dtype=float), flux.shape)
    with np.errstate(invalid="ignore"):
        too_broad = np.any(
            (eff2 > ((s_mod + tolerance_kms) ** 2)[:, None]) & (good | (eff2.shape[1] == 1)), axis=1
        )
        sigma_k = np.sqrt(np.clip(s_mod[:, None] ** 2 - eff2, 0.0, None))  # (n, 1) or (n, n_wave)
    finite = np.isfinite(sigma_k)
    todo = np.any(finite & (sigma_k > 0), axis=1)
    out_f, out_v = flux.copy(), var.copy()
    if not todo.any():
        return out_f, out_v, too_broad
    nodes = _sigma_nodes(sigma_k[todo][finite[todo]].max())
    sigma_k = np.where(finite, sigma_k, 0.0)  # NaN pixels of a broadened row: left as they are
    k = np.clip(np.searchsorted(nodes, sigma_k, side="right") - 1, 0, nodes.size - 2)
    w_hi = np.where(todo[:, None], (sigma_k**2 - nodes[k] ** 2) / (nodes[k + 1] ** 2 - nodes[k] ** 2), 0.0)
    f0, v0, g0 = np.where(good, flux, 0.0), np.where(good, var, 0.0), good.astype(float)
    c0 = []  # (lag, covariance of pixels j and j + lag, 0 where either is bad)
    for lag, c in enumerate(() if cov is None else np.asarray(cov, dtype=np.float64), start=1):
        both = np.zeros_like(good)
        both[:, :-lag] = good[:, :-lag] & good[:, lag:]
        c0.append((lag, np.where(both & np.isfinite(c), c, 0.0)))
    acc_f, acc_v = np.zeros_like(flux), np.zeros_like(var)
    for j in np.unique(np.concatenate([k[todo].ravel(), k[todo].ravel() + 1])):
        rows = np.flatnonzero(todo & np.any((k == j) | (k + 1 == j), axis=1))
        kr = k[rows]  # (r, 1) or (r, n_wave): the weight of node j at each pixel
        weight = np.where(kr == j, 1.0 - w_hi[rows], np.where(kr + 1 == j, w_hi[rows], 0.0))
        if nodes[j] == 0.0:
            acc_f[rows] += weight * f0[rows]
            acc_v[rows] += weight * v0[rows]
            continue
        op, op2 = _broadening_operator(wave_aa, nodes[j])
        norm = (op @ g0[rows].T).T
        v_sum = (op2 @ v0[rows].T).T
        for lag, c in c0:
            v_sum += 2.0 * (_lag_operator(wave_aa, nodes[j], lag) @ c[rows].T).T
        with np.errstate(invalid="ignore", divide="ignore"):
            acc_f[rows] += weight * (op @ f0[rows].T).T / norm
            acc_v[rows] += weight * v_sum / norm**2
    out_f[todo] = np.where(good[todo], acc_f[todo], np.nan)
    out_v[todo] = np.where(good[todo], acc_v[todo], np.nan)
    return out_f, out_v, too_broad


# ----------------------------------------------------------------------------------------- HST fluxes
def photometry_to_flux_density(flux_mjy, flux_err_mjy, filters, unit):
    """mJy to f_lambda at each band's pivot wavelength, in the cube's flux unit.

    f_lambda = f_nu c / lambda_p^2 (astropy ``u.spectral_density``), which is exactly the
    photon-weighted band mean of f_lambda for a source flat in f_nu (the definition of the pivot
    wavelength; Tokunaga & Vacca 2005, PASP 117, 421). Where a galaxy has ACS F435W in the B slot
    (``filters`` from :func:`read_cluster_catalogue`), its own pivot is used (4317 A, against 4320 A
    for F438W, from pyphot's curves), so the value is right for F435W. But F435W is wider
    (3690-4820 A against 3950-4670 A at 10 % of peak) and reaches below the 4000 A break: for
    solar-metallicity SSPs of this project's library its band mean is 0.6-3 % below F438W's
    (6 Myr: -0.6 %, 100 Myr: -2.6 %, 1 Gyr: -2.9 %, 12.6 Gyr: -1.2 %). A network trained with
    F438W in the B slot therefore sees a B flux biased by that much: for those galaxies
    (NGC0628, NGC1300, NGC1672) synthesise with ``HST_ACS_WFC_F435W`` in the B slot.

    Parameters
    ----------
    flux_mjy, flux_err_mjy : ndarray, shape (n, n_band)
        Fluxes and errors in mJy (NaN where missing stays NaN).
    filters : sequence of str, length n_band
        pyphot names of the bands.
    unit : astropy.units.Unit
        Target f_lambda unit (e.g. ``MuseCube.flux_unit``).

    Returns
    -------
    flux, flux_err : ndarray, shape (n, n_band)
        In ``unit``.
    """
    pivot = pivot_wavelengths(tuple(filters)) * u.AA
    out = []
    for values in (flux_mjy, flux_err_mjy):
        values = np.asarray(values, dtype=float)
        out.append((values * u.mJy).to_value(unit, equivalencies=u.spectral_density(pivot)))
    return out[0], out[1]


# ----------------------------------------------------------------------------------------- all steps
@dataclass
class PreparedSpectra:
    """Spectra on the model's grid, ready for the network.

    Attributes
    ----------
    flux : ndarray, shape (n, n_wave_model)
        Rest-frame flux density (NaN where no valid data).
    var : ndarray, shape (n, n_wave_model)
        Its variance (NaN where no valid data).
    flags : ndarray of int64, shape (n,)
        Bit mask of :mod:`sfh_ml.observations.flags`.
    coverage : ndarray, shape (n,)
        Fraction of the model grid with valid pixels.
    fwhm_aa : ndarray, shape (n, n_wave_model), or None
        The instrument's FWHM at the rest-frame wavelengths of the model grid, Angstrom
        (:func:`rest_frame_fwhm`), when it was given.
    """

    flux: np.ndarray
    var: np.ndarray
    flags: np.ndarray
    coverage: np.ndarray
    fwhm_aa: np.ndarray | None = None

    @property
    def ivar(self):
        """Inverse variance, 0 where the pixel is missing, shape (n, n_wave_model)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ivar = 1.0 / self.var
        return np.where(np.isfinite(ivar) & np.isfinite(self.flux), ivar, 0.0)


def prepare_spectra(
    wave_obs_aa,
    flux,
    var,
    wave_model_aa,
    *,
    sigma_model_kms,
    z_sys=0.0,
    v_kms=None,
    ebv_mw=0.0,
    sigma_obs_kms=None,
    dq=None,
    mask_sky=True,
    law=MW_LAW,
    r_v=MW_R_V,
    min_coverage=MIN_COVERAGE,
    tolerance_kms=SIGMA_TOLERANCE_KMS,
    fwhm_obs_aa=None,
):
    """Observed spectra to the model's frame (see the module's docstring for the order and conventions).

    Parameters
    ----------
    wave_obs_aa : ndarray, shape (n_wave_obs,)
        The cube's air wavelengths, Angstrom (:attr:`MuseCube.wave_aa`).
    flux, var : ndarray, shape (n, n_wave_obs)
        Observed-frame flux density and variance (e.g. :meth:`MuseCube.spectra`).
    wave_model_aa : ndarray, shape (n_wave_model,)
        The model's rest-frame grid.
    sigma_model_kms : float
        The model's stellar velocity dispersion, km/s.
    z_sys : float
        Systemic redshift.
    v_kms : float or ndarray, shape (n,), optional
        Velocity relative to ``z_sys`` (e.g. ``V_STARS``), km/s; NaN flags ``NO_KINEMATICS``.
    ebv_mw : float or ndarray, shape (n,)
        Milky Way foreground E(B-V), mag.
    sigma_obs_kms : float or ndarray, shape (n,), optional
        Stellar dispersion of the spectra (``SIGMA_STARS``), km/s; None: no broadening (the spectra
        are taken to be at the model's resolution); NaN flags ``NO_KINEMATICS``.
    dq : ndarray, shape (n, n_wave_obs), optional
        Data-quality flags, 0 = good.
    mask_sky : bool
        Mask :data:`SKY_LINE_WINDOWS_AA`.
    law, r_v : see :func:`mw_transmission`
    min_coverage : float
        Below this fraction of valid model pixels: ``LOW_COVERAGE``.
    tolerance_kms : float
        See :func:`broaden_to_model`.
    fwhm_obs_aa : ndarray, shape (n_wave_obs,) or (n, n_wave_obs), optional
        The instrument's FWHM at the observed (air) wavelengths, Angstrom: with ``sigma_obs_kms``, the
        broadening also takes the instrument's LSF to MUSE's (:func:`lsf_excess_kms2`; an instrument
        broader than the model's dispersion range at any wavelength gets ``TOO_BROAD``). None: the
        spectra have the MUSE LSF (MUSE cubes).

    Returns
    -------
    PreparedSpectra
    """
    wave_obs_aa = np.asarray(wave_obs_aa, dtype=float)
    mask = sky_line_mask(wave_obs_aa) if mask_sky else None
    flux, var = clean_pixels(flux, var, dq=dq, mask=mask)
    n = flux.shape[0]
    flags = np.zeros(n, dtype=np.int64)
    if np.any(np.asarray(ebv_mw) != 0):
        flux, var = deredden_mw(wave_obs_aa, flux, var, ebv_mw, law, r_v)
    z = np.broadcast_to(total_redshift(z_sys, v_kms), (n,))
    flags[~np.isfinite(z)] |= qf.NO_KINEMATICS
    broaden = sigma_obs_kms is not None
    flux, var, *cov = resample_spectra(wave_obs_aa, flux, var, wave_model_aa, z, covariance=broaden)
    fwhm_rest = None
    if fwhm_obs_aa is not None:
        fwhm_rest = rest_frame_fwhm(wave_obs_aa, fwhm_obs_aa, wave_model_aa, z)
    if broaden:
        s_obs = np.broadcast_to(np.asarray(sigma_obs_kms, dtype=float), (n,))
        flags[~np.isfinite(s_obs)] |= qf.NO_KINEMATICS
        flux, var, too_broad = broaden_to_model(
            wave_model_aa,
            flux,
            var,
            s_obs,
            sigma_model_kms,
            tolerance_kms=tolerance_kms,
            cov=cov[0],
            lsf_excess_kms2=None if fwhm_rest is None else lsf_excess_kms2(wave_model_aa, fwhm_rest),
        )
        flags[too_broad] |= qf.TOO_BROAD
    valid = np.isfinite(flux) & np.isfinite(var)
    coverage = valid.mean(axis=1)
    flags[coverage == 0] |= qf.NO_DATA
    flags[coverage < min_coverage] |= qf.LOW_COVERAGE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NO_DATA already
        median = np.nanmedian(np.where(valid, flux, np.nan), axis=1)
    flags[(coverage > 0) & ~(median > 0)] |= qf.NEGATIVE_FLUX
    return PreparedSpectra(flux=flux, var=var, flags=flags, coverage=coverage, fwhm_aa=fwhm_rest)
