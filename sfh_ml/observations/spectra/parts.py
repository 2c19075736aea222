"""One file's spectra in a uniform layout (:func:`file_part`), and the checks every reader shares:
wavelengths in Angstrom, the medium, errors as variances, resolutions without holes."""

import warnings

import numpy as np

from ...utils import check_wave_aa
from .container import MEDIA

__all__ = [
    "LOG10_WAVE_RANGE",
    "TABLE_FORMATS",
    "FITS_SUFFIXES",
    "RESOLUTION_FIX",
    "fill_positive",
    "fill_positive_rows",
    "variance_from",
    "noise_from_snr",
    "resolve_medium",
    "check_wave",
    "file_part",
]

# Values of an unlabelled wavelength column between these are log10(lambda / A) (316 A to 10 micron),
# not Angstrom.
LOG10_WAVE_RANGE = (2.5, 5.0)
TABLE_FORMATS = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv"}
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
RESOLUTION_FIX = (
    "pass the instrument's resolution: fwhm_aa= (FWHM in Angstrom, a number or one per pixel) or "
    "resolution= (R = lambda / FWHM) to read_spectra (--fwhm A or --resolution R)"
)


def fill_positive(values):
    """A copy of a 1-D array with its non-finite or non-positive values interpolated over (ends held)."""
    values = np.asarray(values, dtype=float).copy()
    ok = np.isfinite(values) & (values > 0)
    if not ok.any():
        return np.full_like(values, np.nan)
    idx = np.arange(values.size)
    values[~ok] = np.interp(idx[~ok], idx[ok], values[ok])
    return values


def fill_positive_rows(values):
    """:func:`fill_positive` on each row of a 2-D array (resolution tables: a few rows, once per file)."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    return np.array([fill_positive(row) for row in values])


def variance_from(ivar=None, err=None, var=None):
    if ivar is not None:
        ivar = np.asarray(ivar, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ivar > 0, 1.0 / ivar, np.nan)
    if err is not None:
        err = np.asarray(err, dtype=float)
        return np.where(err > 0, err**2, np.nan)
    if var is not None:
        var = np.asarray(var, dtype=float)
        return np.where(var > 0, var, np.nan)
    return None


def noise_from_snr(path, flux, snr):
    """Constant variance per spectrum from a S/N per pixel at the median flux of its good pixels."""
    if snr is None:
        raise ValueError(
            f"{path}: the file gives no errors (no ivar, error or variance); the network and the "
            "kinematics need them: pass snr= (--snr S/N per pixel) to take the noise as constant, the "
            "median flux over that S/N, or add an error column"
        )
    snr = float(snr)
    if not snr > 0:
        raise ValueError(f"snr must be > 0 (S/N per pixel), got {snr}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        level = np.nanmedian(np.where(flux > 0, flux, np.nan), axis=1)
    return np.broadcast_to(((level / snr) ** 2)[:, None], flux.shape).copy()


def resolve_medium(path, stated, given):
    """The medium: what the format states, else the caller's; refuse a contradiction or neither."""
    if given is not None and given not in MEDIA:
        raise ValueError(f"medium must be 'air' or 'vacuum', not {given!r}")
    if stated is not None:
        if given is not None and given != stated:
            raise ValueError(
                f"{path}: medium={given!r} contradicts the format, whose wavelengths are in {stated}; "
                "leave medium (--medium) out"
            )
        return stated
    if given is None:
        raise ValueError(
            f"{path}: the file does not say whether its wavelengths are in air or vacuum; pass "
            "medium='air' or 'vacuum' (--medium air|vacuum)"
        )
    return given


def check_wave(path, name, wave):
    """Refuse wavelengths that are not increasing Angstrom (nm, log10, micron), naming the fix."""
    finite = wave[np.isfinite(wave)]
    if finite.size and LOG10_WAVE_RANGE[0] < finite.min() and finite.max() < LOG10_WAVE_RANGE[1]:
        raise ValueError(
            f"{path}: {name} runs {finite.min():.4g}-{finite.max():.4g}: log10 of the wavelength? Name the "
            f"column 'loglam' (log10 of Angstrom), give it a unit, or convert it (10**{name}, Angstrom)"
        )
    try:
        check_wave_aa(finite, f"{path}: {name}")
    except ValueError as err:
        raise ValueError(f"{err}; or give the column its unit (e.g. nm) and it is converted") from None
    for row in np.atleast_2d(wave):
        row = row[np.isfinite(row)]
        if row.size < 2 or np.any(np.diff(row) <= 0):
            raise ValueError(f"{path}: {name} must increase along each spectrum (at least 2 pixels)")


def file_part(**kw):
    """One file's content, the shapes made uniform: every array (n, n_wave)."""
    flux = np.atleast_2d(np.asarray(kw["flux"], dtype=np.float64))
    n, n_wave = flux.shape
    full = lambda a: None if a is None else np.broadcast_to(np.asarray(a, dtype=np.float64), (n, n_wave))
    var = full(kw["var"]).copy()
    mask = np.broadcast_to(np.asarray(kw.get("mask", False), dtype=bool), (n, n_wave)).copy()
    with np.errstate(invalid="ignore"):
        mask |= ~np.isfinite(flux) | ~np.isfinite(var) | ~(var > 0)
    z = kw.get("z")
    return {
        "wave": full(kw["wave"]),
        "flux": flux,
        "var": var,
        "mask": mask,
        "fwhm": full(kw.get("fwhm")),
        "z": None if z is None else np.broadcast_to(np.asarray(z, dtype=float), (n,)).copy(),
        "names": list(kw["names"])
        if kw.get("names") is not None
        else [f"{kw['stem']}[{i}]" for i in range(n)],
        "medium": kw["medium"],
        "frame": kw.get("frame", "observed"),
        "unit": kw.get("unit"),
        "resolution_source": kw.get("resolution_source", ""),
        "source": kw["source"],
        "notes": kw.get("notes", []),
    }
