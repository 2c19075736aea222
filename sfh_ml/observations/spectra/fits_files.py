"""Readers of the FITS formats of spectra: SDSS/BOSS ``spec-*.fits``, MaNGA (the DAP's test spectra,
DRP LOGRSS and LOGCUBE) and MUSE 1-D spectra; each gives :func:`~.parts.file_part`'s layout."""

import warnings

import astropy.units as u
import numpy as np
from astropy.utils.exceptions import AstropyWarning

from ...constants import FWHM_TO_SIGMA
from ...synthesis.instrument import muse_lsf_fwhm
from ..readers import MANGA_EXTENSIONS, MANGA_FLUX_UNIT, read_manga_spectra, wavelength_axis
from .parts import (
    RESOLUTION_FIX,
    file_part,
    fill_positive,
    fill_positive_rows,
    noise_from_snr,
    resolve_medium,
    variance_from,
)

__all__ = [
    "SDSS_DLOGLAM",
    "SDSS_FORMAT",
    "MANGA_FORMATS",
    "MANGA_SIGMA_EXT",
    "MANGA_R_EXT",
    "MANGA_PRE_SIGMA_EXT",
    "MANGA_PRE_R_EXT",
    "read_sdss",
    "read_manga",
    "read_muse_1d",
]

SDSS_DLOGLAM = 1e-4  # SDSS/BOSS coadd pixel in log10(lambda / A) (datamodel COEFF1): the unit of wdisp
SDSS_FORMAT = "SDSS-III/IV spec"  # the specutils loaders used
MANGA_FORMATS = {2: "MaNGA rss", 3: "MaNGA cube"}
# Resolution extensions of MaNGA DRP files, in order of preference: Gaussian sigma of the LSF in
# Angstrom measured on the pixelised spectrum (DR17 LSFPOST, DR15 DISP), R = lambda / FWHM (SPECRES),
# and the pre-pixelisation sigma (LSFPRE, PREDISP, PRESPECRES), to which the pixel's boxcar adds
# width^2 / 12 in variance (Law et al. 2016, sect. 7; Westfall et al. 2019, sect. 5).
MANGA_SIGMA_EXT = ("LSFPOST", "DISP")
MANGA_R_EXT = ("SPECRES",)
MANGA_PRE_SIGMA_EXT = ("LSFPRE", "PREDISP")
MANGA_PRE_R_EXT = ("PRESPECRES",)


def read_sdss(path, hdul, medium, snr):
    from specutils import Spectrum

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        warnings.simplefilter("ignore", AstropyWarning)
        spec = Spectrum.read(path, format=SDSS_FORMAT)
    wave = spec.spectral_axis.to_value(u.AA)
    flux = np.asarray(spec.flux.value, dtype=float)
    var = variance_from(ivar=spec.uncertainty.array)
    coadd = hdul[1].data
    if "wdisp" not in coadd.columns.names:
        raise ValueError(f"{path}: an SDSS spec file without 'wdisp' (the resolution); {RESOLUTION_FIX}")
    # wdisp: Gaussian sigma of the LSF in pixels of 1e-4 dex; sigma_aa = wdisp dloglam ln(10) lambda
    sigma_aa = fill_positive(coadd["wdisp"]) * SDSS_DLOGLAM * np.log(10.0) * wave
    z = None
    for ext in ("SPECOBJ", "SPALL"):
        if ext in hdul and "Z" in hdul[ext].columns.names:
            z = float(hdul[ext].data["Z"][0])
            break
    header = hdul[0].header
    name = header.get("NAME") or path.name
    if all(k in header for k in ("PLATEID", "MJD", "FIBERID")):
        name = f"{header['PLATEID']:04d}-{header['MJD']:05d}-{header['FIBERID']:04d}"
    return file_part(
        wave=wave,
        flux=flux,
        var=var,
        mask=np.asarray(spec.mask, dtype=bool),
        fwhm=sigma_aa / FWHM_TO_SIGMA,
        z=z,
        names=[str(name)],
        medium=resolve_medium(path, "vacuum", medium),
        unit=spec.flux.unit,
        resolution_source="wdisp",
        source=str(path),
    )


def _spectral_last(raw, ndim):
    """The FITS array (n_wave, ...) with the spectral axis last, as (n_spec, n_wave), in C order of the
    remaining numpy axes (the order of specutils' MaNGA loaders, checked against their flux)."""
    raw = np.asarray(raw, dtype=float)
    return np.moveaxis(raw, 0, -1).reshape(-1, raw.shape[0]) if ndim == 3 else raw


def _manga_resolution(path, hdul, wave, ndim):
    """(FWHM (n, n_wave) or (n_wave,), the extension used) of a MaNGA DRP file, or (None, None)."""
    names = {h.name.upper() for h in hdul}
    pixel_aa = np.gradient(wave)
    for group, kind in (
        (MANGA_SIGMA_EXT, "sigma"),
        (MANGA_R_EXT, "r"),
        (MANGA_PRE_SIGMA_EXT, "pre_sigma"),
        (MANGA_PRE_R_EXT, "pre_r"),
    ):
        for ext in group:
            if ext not in names:
                continue
            data = np.asarray(hdul[ext].data, dtype=float)
            values = data if data.ndim == 1 else _spectral_last(data, data.ndim)
            values = fill_positive_rows(values)
            if kind in ("r", "pre_r"):
                sigma = wave / values * FWHM_TO_SIGMA
            else:
                sigma = values
            if kind.startswith("pre"):
                sigma = np.sqrt(sigma**2 + pixel_aa**2 / 12.0)  # the pixel's boxcar
            fwhm = sigma / FWHM_TO_SIGMA
            return (fwhm[0] if fwhm.shape[0] == 1 else fwhm), ext
    return None, None


def read_manga(path, hdul, medium, snr):
    names = {h.name.upper() for h in hdul}
    if set(MANGA_EXTENSIONS) <= names:  # the DAP's test layout: WAVE, FLUX, IVAR, MASK, SRES, Z
        ms = read_manga_spectra(path)  # air wavelengths (the DRP's vacuum ones converted)
        resolve_medium(path, "vacuum", medium)
        return file_part(
            wave=ms.wave_aa,
            flux=ms.flux,
            var=ms.var,
            fwhm=fill_positive_rows(ms.wave_aa[None, :] / ms.resolution),
            z=ms.z,
            stem=path.name.split(".")[0],
            medium="air",
            unit=MANGA_FLUX_UNIT,
            resolution_source="SRES",
            source=str(path),
            notes=["MaNGA vacuum wavelengths converted to air on reading"],
        )
    from specutils import Spectrum

    ndim = int(hdul["FLUX"].header["NAXIS"])
    if ndim not in MANGA_FORMATS:
        raise ValueError(f"{path}: a MaNGA FLUX of {ndim} axes; a LOGRSS has 2, a LOGCUBE 3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        warnings.simplefilter("ignore", AstropyWarning)
        spec = Spectrum.read(path, format=MANGA_FORMATS[ndim])
    wave = spec.spectral_axis.to_value(u.AA)
    flux = np.asarray(spec.flux.value, dtype=float).reshape(-1, wave.size)
    if not np.array_equal(flux, _spectral_last(hdul["FLUX"].data, ndim), equal_nan=True):
        raise ValueError(f"{path}: specutils' MaNGA loader returned the spectra in an unexpected order")
    ivar = np.asarray(spec.uncertainty.array, dtype=float).reshape(flux.shape)
    mask = np.asarray(spec.mask, dtype=bool).reshape(flux.shape)
    fwhm, ext = _manga_resolution(path, hdul, wave, ndim)
    if ndim == 3:
        ny, nx = hdul["FLUX"].data.shape[1:]
        iy, ix = np.unravel_index(np.arange(flux.shape[0]), (ny, nx))
        spaxel_names = [f"{path.name.split('.')[0]}[{y},{x}]" for y, x in zip(iy, ix)]
    else:
        spaxel_names = None
    return file_part(
        wave=wave,
        flux=flux,
        var=variance_from(ivar=ivar),
        mask=mask,
        fwhm=fwhm,
        names=spaxel_names,
        stem=path.name.split(".")[0],
        medium=resolve_medium(path, "vacuum", medium),
        unit=MANGA_FLUX_UNIT,  # per fibre or spaxel
        resolution_source=ext or "",
        source=str(path),
    )


def read_muse_1d(path, hdul, medium, snr):
    header = hdul["DATA"].header.copy()
    if header.get("NAXIS") not in (1, 2):
        raise ValueError(
            f"{path}: 'DATA' has {header.get('NAXIS')} axes: a MUSE cube? Use sfh-ml apply (apply_cube) "
            "for cubes; read_spectra reads 1-D spectra (or rows of them)"
        )
    ctype = str(header.get("CTYPE1", "")).strip().upper()
    if ctype not in ("AWAV", "WAVE") and medium is None:
        resolve_medium(path, None, None)
    wave, file_medium = wavelength_axis(header, path, medium, axis=1)  # air, Angstrom
    flux = np.atleast_2d(np.asarray(hdul["DATA"].data, dtype=float))
    if "STAT" in hdul:
        var = variance_from(var=np.atleast_2d(hdul["STAT"].data))
    else:
        var = noise_from_snr(path, flux, snr)
    mask = np.atleast_2d(hdul["DQ"].data) != 0 if "DQ" in hdul else False
    unit = None
    if header.get("BUNIT"):
        from ..readers import parse_flux_unit

        unit = parse_flux_unit(header["BUNIT"], path)
    z = None
    for key in ("Z", "REDSHIFT"):
        for h in (header, hdul[0].header):
            if key in h:
                z = float(h[key])
                break
        if z is not None:
            break
    return file_part(
        wave=wave,
        flux=flux,
        var=var,
        mask=mask,
        fwhm=muse_lsf_fwhm(wave),
        z=z,
        stem=path.name.split(".")[0],
        medium="air",
        unit=unit,
        resolution_source="MUSE LSF (Bacon et al. 2017)",
        source=str(path),
        notes=[] if file_medium == "air" else ["vacuum wavelengths converted to air on reading"],
    )
