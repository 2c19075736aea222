"""The network and pPXF on the same real spectra: a consistency check where no truth is known.

Real spectra are prepared for both methods the same way (:func:`sfh_ml.observations.prepare_spectra`:
rest frame, air wavelengths, the model's grid, masked pixels NaN). pPXF fits them with the
project's templates at the MUSE resolution (:func:`sfh_ml.fitting.fit_arrays`), so its fitted
dispersion is the *effective* one, sqrt(sigma_stars^2 + sigma_instr^2 - sigma_MUSE^2) averaged over
the range: exactly what the network's preparation needs to bring the spectrum to the model's
dispersion (:func:`sfh_ml.observations.broaden_to_model`; broader than the training range: the
``TOO_BROAD`` flag). The network gets the HST bands the rest-frame spectrum covers, computed from the
spectrum itself (:func:`spectrum_bands`); the others are missing, as the network was trained to
expect now and then. Both give mass- and light-weighted mean log ages and [M/H] on the same age
bins (:func:`sfh_ml.network.metrics.mean_quantities`, the model's light table).

The spectra that ship with a public package are the eight MaNGA DRP spectra of the MaNGA Data
Analysis Pipeline's tests (:func:`manga_test_spectra_path`; Westfall et al. 2019). Their
resolution (R ~ 1800-2500) is close to MUSE's; one of them has no data and one a S/N near 2: they
must come out flagged, not with numbers.
"""

import numpy as np

from ..constants import TRAINING_SIGMA_KMS
from ..data import fetch
from ..fitting.batch import fit_arrays
from ..fitting.fit import DEFAULT_REGUL, MIN_GOOD_FRACTION
from ..synthesis.photometry import band_weights
from ..synthesis.ssp import load_library
from . import flags as qf
from .binning import continuum_snr
from .prepare import SIGMA_TOLERANCE_KMS, broaden_to_model, prepare_spectra, to_rest_frame
from .readers import read_manga_spectra

__all__ = [
    "MANGA_TEST_SPECTRA",
    "MIN_SNR",
    "manga_test_spectra_path",
    "PPXF_SDSS_GALAXIES",
    "ppxf_sdss_spectrum_path",
    "spectrum_bands",
    "real_spectra_check",
]

MANGA_TEST_SPECTRA = "MaNGA_test_spectra.fits.gz"  # in the artefact "mangadap" (sfh_ml.data)
MIN_SNR = 10.0  # continuum S/N per pixel below which neither method's numbers are kept
THROUGHPUT_EDGE = 1e-3  # throughput below this fraction of the peak (red leaks) is left out of a band
MEAN_KEYS = ("mw_log_age", "lw_log_age", "mw_zh", "lw_zh")


def manga_test_spectra_path(progress=True):
    """Path of the MaNGA DAP's test spectra (fetched once from the package registry, sha256-checked).

    Returns
    -------
    pathlib.Path
        A FITS file for :func:`sfh_ml.observations.read_manga_spectra`.
    """
    return fetch("mangadap", progress=progress) / MANGA_TEST_SPECTRA


# SDSS DR18 spectra that ship with the ppxf package (ppxf/spectra/{name}_SDSS_DR18.fits): the SDSS
# spec-*.fits format, full (COADD with wdisp, SPECOBJ with Z and VDISP).
PPXF_SDSS_GALAXIES = ("NGC3522", "NGC3073")


def ppxf_sdss_spectrum_path(galaxy="NGC3522"):
    """Path of an SDSS DR18 spectrum that ships with ppxf (:data:`PPXF_SDSS_GALAXIES`).

    Returns
    -------
    pathlib.Path
        An SDSS ``spec`` file for :func:`sfh_ml.read_spectra`.
    """
    from pathlib import Path

    import ppxf

    if galaxy not in PPXF_SDSS_GALAXIES:
        raise ValueError(f"ppxf ships SDSS spectra of {PPXF_SDSS_GALAXIES}, not {galaxy!r}")
    return Path(ppxf.__file__).parent / "spectra" / f"{galaxy}_SDSS_DR18.fits"


def spectrum_bands(wave_rest_aa, flux, var, filters):
    """Band-mean flux densities of rest-frame spectra, for the bands they cover entirely.

    Parameters
    ----------
    wave_rest_aa : ndarray, shape (n, n_wave)
        Rest-frame wavelengths of each spectrum, Angstrom.
    flux, var : ndarray, shape (n, n_wave)
        Flux density and variance (NaN where missing).
    filters : sequence of str
        pyphot band names.

    Returns
    -------
    photometry, photometry_err : ndarray, shape (n, n_band)
        Photon-weighted mean flux densities (:func:`sfh_ml.synthesis.photometry.band_flux`) and
        their 1-sigma errors; NaN for a band that reaches beyond the spectrum or over a missing pixel.
    """
    wave_rest_aa = np.asarray(wave_rest_aa, dtype=float)
    flux = np.asarray(flux, dtype=float)
    var = np.asarray(var, dtype=float)
    n = flux.shape[0]
    phot = np.full((n, len(filters)), np.nan)
    err = np.full_like(phot, np.nan)
    for i in range(n):  # one band_weights per spectrum: each has its own rest-frame grid
        for j, name in enumerate(filters):
            try:
                weights = band_weights(wave_rest_aa[i], [name], min_throughput=THROUGHPUT_EDGE)[0]
            except ValueError:  # the band reaches beyond this spectrum
                continue
            used = weights > 0
            if np.all(np.isfinite(flux[i, used]) & np.isfinite(var[i, used])):
                phot[i, j] = weights[used] @ flux[i, used]
                err[i, j] = np.sqrt(weights[used] ** 2 @ var[i, used])
    return phot, err


def real_spectra_check(
    spectra=None,
    model=None,
    regul=DEFAULT_REGUL,
    workers=1,
    min_snr=MIN_SNR,
    library=None,
    progress=True,
    redshift_error=0.0,
):
    """Mean ages and [M/H] of real spectra from the network and from pPXF, side by side.

    Parameters
    ----------
    spectra : MangaSpectra, optional
        From :func:`sfh_ml.observations.read_manga_spectra` (default: the MaNGA DAP's test spectra).
    model : keras.Model, optional
        Default :func:`sfh_ml.network.load_pretrained`.
    regul : float
        pPXF's regularisation.
    workers : int
        pPXF fits in parallel (see :func:`sfh_ml.fitting.fit_arrays`).
    min_snr : float
        Continuum S/N per pixel (5300-5700 A rest frame) below which a spectrum gets no numbers.
    library : SSPLibrary, optional
        The templates' library (default :func:`sfh_ml.synthesis.ssp.load_library`).
    progress : bool
    redshift_error : float
        Added to every spectrum's redshift before it is brought to the rest frame: a user's mistake,
        to see the wrong-redshift check at work (0: the spectra's own redshifts).

    Returns
    -------
    dict of ndarray, shape (n,)
        ``snr``; ``usable`` (bool: enough data and S/N, a successful pPXF fit, a usable network
        prediction, not broader than the training range); ``ppxf_sigma_kms`` (effective dispersion
        against the MUSE-resolution templates), ``ppxf_chi2``; for each of ``mw_log_age``,
        ``lw_log_age`` (log10 yr), ``mw_zh``, ``lw_zh`` (dex): ``ppxf_<key>`` and ``network_<key>``
        (NaN where not usable); ``network_quality`` (the flags of :func:`sfh_ml.network.predict`),
        ``prepare_flags`` (:mod:`sfh_ml.observations.flags`); ``n_bands`` (bands the network got);
        the network's trust score (:mod:`sfh_ml.network.trust`): ``trust`` (in [0, 1]),
        ``untrusted`` (bool: below the threshold), ``redshift_offset_kms`` and ``wrong_redshift``
        (bool: the spectrum's features match the network's answer best away from its redshift);
        ``verdict`` (str): "wrong redshift?" (first: it explains the rest), "no answer" (not usable),
        "untrusted" or "trusted".
    """
    from ..network import (  # Keras: on first use
        QUALITY_UNTRUSTED,
        QUALITY_UNUSABLE,
        QUALITY_WRONG_REDSHIFT,
        get_metadata,
        load_pretrained,
        predict,
    )
    from ..network.metrics import mean_quantities

    if spectra is None:
        spectra = read_manga_spectra(manga_test_spectra_path(progress=progress))
    model = load_pretrained() if model is None else model
    meta = get_metadata(model)
    wave_model = meta["wave_aa"]
    sigma_model, sigma_max = TRAINING_SIGMA_KMS
    n = len(spectra)
    z = np.asarray(spectra.z, dtype=float) + float(redshift_error)
    rest = prepare_spectra(
        spectra.wave_aa, spectra.flux, spectra.var, wave_model, sigma_model_kms=sigma_model, z_sys=z
    )
    signal, noise = continuum_snr(rest.flux.T, rest.var.T, wave_model)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where(noise > 0, signal / noise, np.nan)
    good = np.isfinite(rest.flux) & np.isfinite(rest.var) & (rest.var > 0)
    fit_ok = (snr >= min_snr) & (good.mean(axis=1) > MIN_GOOD_FRACTION)
    out = {"snr": snr, "prepare_flags": rest.flags.copy()}
    for key in MEAN_KEYS:
        out[f"ppxf_{key}"] = np.full(n, np.nan)
        out[f"network_{key}"] = np.full(n, np.nan)
    out["ppxf_sigma_kms"] = np.full(n, np.nan)
    out["ppxf_chi2"] = np.full(n, np.nan)
    lib = load_library() if library is None else library
    if fit_ok.any():
        fits = fit_arrays(
            wave_model,
            np.where(good, rest.flux, np.nan)[fit_ok],
            np.sqrt(np.where(good, rest.var, np.nan))[fit_ok],
            meta["age_bins_yr"],
            regul=regul,
            workers=workers,
            library=lib,
            progress=progress,
            good=good[fit_ok],
        )
        for key in MEAN_KEYS:
            out[f"ppxf_{key}"][fit_ok] = fits[key]
        out["ppxf_sigma_kms"][fit_ok] = fits["sigma_kms"]
        out["ppxf_chi2"][fit_ok] = fits["chi2"]
    # The network: the same prepared spectra, brought to the model's dispersion with pPXF's effective one.
    flux, var, too_broad = broaden_to_model(
        wave_model,
        rest.flux,
        rest.var,
        out["ppxf_sigma_kms"],
        sigma_model,
        tolerance_kms=max(sigma_max - sigma_model, SIGMA_TOLERANCE_KMS),
    )
    out["prepare_flags"][~np.isfinite(out["ppxf_sigma_kms"])] |= qf.NO_KINEMATICS
    out["prepare_flags"][too_broad] |= qf.TOO_BROAD
    wave_rest, flux_rest, var_rest = to_rest_frame(spectra.wave_aa, spectra.flux, spectra.var, z)
    phot, _ = spectrum_bands(wave_rest, flux_rest, var_rest, meta["filters"])
    out["n_bands"] = np.isfinite(phot).sum(axis=1)
    pred = predict(
        model,
        flux,
        phot,
        wave_aa=wave_model,
        filters=meta["filters"],
        trust=True,
        goodness=True,
        noise=np.sqrt(var),
    )
    out["network_quality"] = pred["quality"]
    out["trust"] = pred["trust"]
    out["redshift_offset_kms"] = pred["redshift_offset_kms"]
    out["untrusted"] = (pred["quality"] & QUALITY_UNTRUSTED) > 0
    out["wrong_redshift"] = (pred["quality"] & QUALITY_WRONG_REDSHIFT) > 0
    means = mean_quantities(pred["sfh"], pred["zh"], meta["age_bins_yr"], meta["bin_light"], meta["zh_grid"])
    usable = (
        fit_ok
        & np.isfinite(out["ppxf_mw_log_age"])
        & ((pred["quality"] & QUALITY_UNUSABLE) == 0)
        & (out["prepare_flags"] == 0)
    )
    for key in MEAN_KEYS:
        out[f"network_{key}"] = np.where(usable, means[key], np.nan)
        out[f"ppxf_{key}"] = np.where(usable, out[f"ppxf_{key}"], np.nan)
    out["usable"] = usable
    out["verdict"] = np.select(
        [out["wrong_redshift"], ~usable, out["untrusted"]],
        ["wrong redshift?", "no answer", "untrusted"],
        default="trusted",
    )
    return out
