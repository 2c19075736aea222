"""Readers of spectra in tables (FITS binary tables, ECSV, CSV, astropy tables in memory: columns
found by name) and of specutils ``Spectrum`` objects; each gives :func:`~.parts.file_part`'s layout."""

import warnings

import astropy.units as u
import numpy as np
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning

from ..readers import FLAM_UNIT
from .parts import (
    TABLE_FORMATS,
    check_wave,
    file_part,
    fill_positive_rows,
    noise_from_snr,
    resolve_medium,
    variance_from,
)

__all__ = [
    "WAVE_COLUMNS",
    "FLUX_COLUMNS",
    "IVAR_COLUMNS",
    "ERR_COLUMNS",
    "VAR_COLUMNS",
    "FWHM_COLUMNS",
    "RESOLUTION_COLUMNS",
    "MASK_COLUMNS",
    "NAME_COLUMNS",
    "REDSHIFT_KEYS",
    "MEDIUM_KEYS",
    "read_table",
    "from_specutils",
]

# Column names of tables, matched without case.
WAVE_COLUMNS = ("wave_aa", "wave", "wavelength", "lambda", "lam", "wave_air", "wave_vac", "loglam")
FLUX_COLUMNS = ("flux", "flux_density", "flam", "f_lambda")
IVAR_COLUMNS = ("ivar", "inverse_variance")
ERR_COLUMNS = ("err", "error", "sigma", "noise", "flux_err", "flux_error", "uncertainty", "std")
VAR_COLUMNS = ("var", "variance")
FWHM_COLUMNS = ("fwhm_aa", "fwhm", "lsf_fwhm")
RESOLUTION_COLUMNS = ("resolution", "r", "sres", "specres")
MASK_COLUMNS = ("mask", "and_mask", "bad")
NAME_COLUMNS = ("name", "id", "objid", "object")
REDSHIFT_KEYS = ("redshift", "z")
MEDIUM_KEYS = ("medium", "airorvac", "wave_medium", "vacuum")


def _column(table, lower, choices):
    for name in choices:
        if name in lower:
            return lower[name]
    return None


def _values_aa(table, name, path, what):
    """A wavelength-like column in Angstrom: its unit converted, ``loglam`` as log10, else checked."""
    col = table[name]
    values = np.asarray(np.ma.filled(np.ma.asarray(col, dtype=float), np.nan), dtype=float)
    unit = getattr(col, "unit", None)
    if name.lower() == "loglam":
        return 10.0**values, "the format (loglam)"
    if unit is not None and unit != u.dimensionless_unscaled:
        try:
            return (values * u.Unit(unit)).to_value(u.AA, equivalencies=u.spectral()), f"its unit {unit}"
        except (u.UnitConversionError, ValueError):
            raise ValueError(f"{path}: {what} column {name!r} has unit {unit}, not a wavelength") from None
    return values, None


def read_table(path, medium, snr, table=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        warnings.simplefilter("ignore", u.UnitsWarning)
        if table is None:
            suffix = "".join(path.suffixes[-1:]).lower()
            table = (
                Table.read(path, format=TABLE_FORMATS[suffix])
                if suffix in TABLE_FORMATS
                else Table.read(path)
            )
    lower = {name.lower(): name for name in table.colnames}
    wave_name = _column(table, lower, WAVE_COLUMNS)
    flux_name = _column(table, lower, FLUX_COLUMNS)
    if wave_name is None or flux_name is None:
        raise ValueError(
            f"{path}: no wavelength or flux column (columns: {table.colnames}); name them one of "
            f"{WAVE_COLUMNS} and {FLUX_COLUMNS} (any case)"
        )
    wave, converted = _values_aa(table, wave_name, path, "wavelength")
    if converted is None:
        check_wave(path, f"column {wave_name!r}", wave)
    flux = np.asarray(np.ma.filled(np.ma.asarray(table[flux_name], dtype=float), np.nan), dtype=float)

    def get(choices):
        name = _column(table, lower, choices)
        return (
            None
            if name is None
            else np.asarray(np.ma.filled(np.ma.asarray(table[name], dtype=float), np.nan))
        )

    ivar, err, var = get(IVAR_COLUMNS), get(ERR_COLUMNS), get(VAR_COLUMNS)
    mask = get(MASK_COLUMNS)
    fwhm_name, r_name = _column(table, lower, FWHM_COLUMNS), _column(table, lower, RESOLUTION_COLUMNS)
    fwhm, resolution_source = None, ""
    if fwhm_name is not None:
        fwhm, _ = _values_aa(table, fwhm_name, path, "FWHM")
        if (
            getattr(table[fwhm_name], "unit", None) is None
            and getattr(table[wave_name], "unit", None) is not None
        ):
            fwhm = (fwhm * u.Unit(table[wave_name].unit)).to_value(u.AA)  # the wavelengths' unit
        resolution_source = f"column {fwhm_name!r}"
    elif r_name is not None:
        fwhm, resolution_source = wave / get(RESOLUTION_COLUMNS), f"column {r_name!r} (R)"
    # Layout: one row per pixel (1-D columns, or 2-D columns of one spectrum per column), or one row
    # per spectrum (array columns, the wavelengths too).
    one_row_per_spectrum = wave.ndim == 2
    if one_row_per_spectrum:
        if flux.shape != wave.shape:
            raise ValueError(f"{path}: wavelength cells of shape {wave.shape}, flux cells {flux.shape}")
        orient = lambda a: a
    else:
        orient = lambda a: None if a is None else (np.atleast_2d(a) if np.ndim(a) == 1 else np.asarray(a).T)
    flux, ivar, err, var, mask = (orient(a) for a in (flux, ivar, err, var, mask))
    fwhm = orient(fwhm)
    wave2 = wave if one_row_per_spectrum else wave[None, :]
    order = np.argsort(wave2, axis=1)
    if not np.all(order == np.arange(wave2.shape[1])):  # decreasing (e.g. from frequencies): sort
        sort = lambda a: None if a is None else np.take_along_axis(np.broadcast_to(a, flux.shape), order, 1)
        flux, ivar, err, var, mask, fwhm = (sort(a) for a in (flux, ivar, err, var, mask, fwhm))
        wave2 = np.take_along_axis(wave2, order, 1)
    check_wave(path, f"column {wave_name!r}", wave2)
    variance = variance_from(ivar=ivar, err=err, var=var)
    if variance is None:
        variance = noise_from_snr(path, flux, snr)
    meta = {k.lower(): v for k, v in table.meta.items()} if table.meta else {}
    stated = None
    for key in MEDIUM_KEYS:
        if key in meta:
            text = str(meta[key]).strip().lower()
            if key == "vacuum":
                stated = "vacuum" if text in ("true", "t", "1", "yes") else "air"
            elif text.startswith("vac"):
                stated = "vacuum"
            elif text.startswith("air"):
                stated = "air"
            break
    if stated is None and wave_name.lower() in ("wave_air", "wave_vac"):
        stated = "air" if wave_name.lower() == "wave_air" else "vacuum"
    z = next((float(meta[k]) for k in REDSHIFT_KEYS if k in meta), None)
    z_col = _column(table, lower, REDSHIFT_KEYS)
    if z_col is not None and one_row_per_spectrum:
        z = np.asarray(table[z_col], dtype=float)
    name_col = _column(table, lower, NAME_COLUMNS)
    names = [str(v) for v in table[name_col]] if name_col is not None and one_row_per_spectrum else None
    if fwhm is not None:
        fwhm = fill_positive_rows(np.broadcast_to(fwhm, flux.shape))
    return file_part(
        wave=wave2,
        flux=flux,
        var=variance,
        mask=False if mask is None else (mask != 0),
        fwhm=fwhm,
        z=z,
        names=names,
        stem=path.name.split(".")[0],
        medium=resolve_medium(path, stated, medium),
        unit=getattr(table[flux_name], "unit", None),
        resolution_source=resolution_source,
        source=str(path),
    )


def from_specutils(spec, medium, snr, label):
    """A specutils ``Spectrum`` (or ``Spectrum1D``): f_nu converted to f_lambda, uncertainty to variance."""
    from astropy.nddata import VarianceUncertainty

    wave = spec.spectral_axis.to_value(u.AA, equivalencies=u.spectral())
    n_wave = wave.size
    flux_q = spec.flux
    flux = np.asarray(flux_q.value, dtype=float).reshape(-1, n_wave)
    unit = flux_q.unit
    factor = 1.0
    if not unit.is_equivalent(FLAM_UNIT) and unit.is_equivalent(
        FLAM_UNIT, equivalencies=u.spectral_density(wave[0] * u.AA)
    ):
        factor = (1.0 * unit).to_value(FLAM_UNIT, equivalencies=u.spectral_density(wave * u.AA))
        flux, unit = flux * factor, FLAM_UNIT
    var = None
    if spec.uncertainty is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.asarray(spec.uncertainty.represent_as(VarianceUncertainty).array, dtype=float)
        var = var.reshape(flux.shape) * np.asarray(factor) ** 2
    else:
        var = noise_from_snr(label, flux, snr)
    mask = False if spec.mask is None else np.asarray(spec.mask, dtype=bool).reshape(flux.shape)
    if np.any(np.diff(wave) < 0):  # a frequency axis: increasing wavelengths
        flux, var = flux[:, ::-1], var[:, ::-1]
        mask = mask if np.ndim(mask) == 0 else mask[:, ::-1]
        wave = wave[::-1]
    check_wave(label, "spectral_axis", wave)
    z = None
    redshift = getattr(spec, "redshift", None)
    if redshift is not None and np.any(np.asarray(getattr(redshift, "value", redshift)) != 0):
        z = float(np.ravel(getattr(redshift, "value", redshift))[0])
    stated = (spec.meta or {}).get("medium")
    return file_part(
        wave=wave,
        flux=flux,
        var=var,
        mask=mask,
        z=z,
        stem=label,
        medium=resolve_medium(label, stated, medium),
        unit=unit,
        source=label,
    )
