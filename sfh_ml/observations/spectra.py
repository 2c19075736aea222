"""Real spectra of any instrument: reading them, preparing them for the network and predicting their
histories (:func:`predict_spectra`; on the command line ``sfh-ml predict --spectrum``).

Reading (:func:`read_spectra`) gives one container, :class:`Spectra`, whatever the format:

============================ ============================================= =========== ==========
format                       read with                                     medium      resolution
============================ ============================================= =========== ==========
SDSS/BOSS ``spec-*.fits``    specutils ``SDSS-III/IV spec``; ``wdisp`` and vacuum      ``wdisp``
                             ``SPECOBJ``/``SPALL`` ``Z`` with astropy
MaNGA DAP test spectra       :func:`~sfh_ml.observations.read_manga_spectra` vacuum (air ``SRES``
                                                                           on reading)
MaNGA DRP LOGRSS / LOGCUBE   specutils ``MaNGA rss`` / ``MaNGA cube``;      vacuum      ``LSFPOST``,
                             resolution extensions with astropy                        ``DISP``,
                                                                                       ``SPECRES``,
                                                                                       ``LSFPRE``,
                                                                                       ``PREDISP``
MUSE 1-D spectra             ``DATA``/``STAT`` (``DQ``) with the spectral  ``CTYPE1``  MUSE LSF
                             WCS of axis 1
FITS tables, ECSV, CSV       astropy tables with named columns             given       columns or
                                                                                       given
specutils ``Spectrum``       the object itself                             given       given
============================ ============================================= =========== ==========

Nothing is assumed silently: wavelengths that look like nm or log10 are refused (unless the format
says so: a column unit, ``loglam``), a medium the file does not state must be given (``medium=``,
``--medium``), spectra without errors need ``snr=`` (``--snr``), an unknown resolution
``fwhm_aa=``/``resolution=`` (``--fwhm``/``--resolution``), observed-frame spectra a redshift.

Preparation (:func:`prepare_observed`) is :func:`~sfh_ml.observations.prepare_spectra`, the cube
path's, for each group of spectra on one grid: vacuum to air (:func:`vacuum_to_air`), NaN, zero and
negative pixels masked (a spectrum that loses many gets ``LOW_COVERAGE``), sky-line windows masked,
Milky Way dereddening, rest frame, flux-conserving resampling with the variance propagated, and the
instrument's LSF plus the stellar dispersion brought to the model's (MUSE LSF plus the model's
dispersion; broader than the training range: ``TOO_BROAD``). Where the caller does not give the
stellar velocity and dispersion, :func:`measure_kinematics` measures them with pPXF
(:func:`sfh_ml.fitting.fit_kinematics`) on the same prepared spectra before broadening.

Output (:func:`predict_spectra`): one row per spectrum with the columns of the per-bin table of
``sfh-ml apply`` (:mod:`sfh_ml.observations.apply`, the one home of that schema) plus the spectrum's
name, file, redshift, kinematics and the names of its quality bits.
"""

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning

from ..constants import FWHM_TO_SIGMA
from ..files import check_output, tmp_path
from ..synthesis.instrument import muse_lsf_fwhm
from ..utils import check_wave_aa
from . import flags as qf
from .apply import (
    MIN_SNR,
    NETWORK_FLAG_SHIFT,
    SIGMA_MODEL_KMS,
    SIGMA_MODEL_MAX_KMS,
    _model_fingerprint,
    _quality,
    _table,
    _usable,
    _write_ecsv,
    age_fraction_edges,
    quality_bits,
    summarise_histories,
)
from .binning import continuum_snr
from .prepare import (
    MIN_COVERAGE,
    SIGMA_TOLERANCE_KMS,
    PreparedSpectra,
    deredden_mw,
    prepare_spectra,
    to_rest_frame,
    total_redshift,
)
from .readers import (
    FLAM_UNIT,
    MANGA_EXTENSIONS,
    MANGA_FLUX_UNIT,
    _wavelength_axis,
    read_manga_spectra,
    vacuum_to_air,
)

__all__ = [
    "MEDIA",
    "FRAMES",
    "SDSS_DLOGLAM",
    "UNUSABLE_FLAGS",
    "TABLE_FORMATS",
    "Spectra",
    "read_spectra",
    "prepare_observed",
    "measure_kinematics",
    "predict_spectra",
    "ppxf_spectra",
    "write_spectra_table",
]

MEDIA = ("air", "vacuum")
FRAMES = ("observed", "rest")
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
# Values of an unlabelled wavelength column between these are log10(lambda / A) (316 A to 10 micron),
# not Angstrom.
LOG10_WAVE_RANGE = (2.5, 5.0)
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
TABLE_FORMATS = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv"}
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
# Objects with any of these preparation bits get NaN predictions: their rest frame or resolution is
# not the model's (the other bits inform, as in sfh-ml apply).
UNUSABLE_FLAGS = qf.NO_DATA | qf.TOO_BROAD | qf.NO_KINEMATICS
RESOLUTION_FIX = (
    "pass the instrument's resolution: fwhm_aa= (FWHM in Angstrom, a number or one per pixel) or "
    "resolution= (R = lambda / FWHM) to read_spectra (--fwhm A or --resolution R)"
)


# ----------------------------------------------------------------------------------------- container
@dataclass
class Spectra:
    """Spectra read from files of any instrument (:func:`read_spectra`).

    Attributes
    ----------
    wave_aa : ndarray, shape (n_spec, n_wave)
        Wavelengths, Angstrom, in ``medium`` and ``frame``, increasing along each row; spectra of
        shorter grids are padded at the end with NaN (masked). Spectra of one file share a row
        (a read-only broadcast view).
    flux : ndarray, shape (n_spec, n_wave)
        Flux density per Angstrom, in ``flux_unit``.
    var : ndarray, shape (n_spec, n_wave)
        Its variance (NaN where unknown or masked).
    mask : ndarray of bool, shape (n_spec, n_wave)
        True where the pixel is bad (the file's flags, non-finite values, variance <= 0, padding).
    medium : {"air", "vacuum"}
    frame : {"observed", "rest"}
    fwhm_aa : ndarray, shape (n_spec, n_wave), or None
        The instrument's FWHM at each pixel, Angstrom, in the frame of ``wave_aa`` (NaN where
        unknown); None when unknown for every spectrum.
    redshift : ndarray, shape (n_spec,), or None
        Systemic redshift (NaN where unknown); None when unknown for every spectrum.
    names : ndarray of str, shape (n_spec,)
    source : ndarray of str, shape (n_spec,)
        The file each spectrum comes from (or ``"<Spectrum>"``).
    flux_unit : astropy.units.UnitBase or None
    resolution_source : str
        Where the resolution came from (``"wdisp"``, ``"SRES"``, ``"MUSE LSF"``, ``"fwhm_aa="``, ...).
    meta : dict
        Notes of the readers (e.g. errors from ``snr=``).
    """

    wave_aa: np.ndarray
    flux: np.ndarray
    var: np.ndarray
    mask: np.ndarray
    medium: str
    frame: str
    fwhm_aa: np.ndarray | None
    redshift: np.ndarray | None
    names: np.ndarray
    source: np.ndarray
    flux_unit: u.UnitBase | None = None
    resolution_source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.medium not in MEDIA:
            raise ValueError(f"medium must be one of {MEDIA}, not {self.medium!r}")
        if self.frame not in FRAMES:
            raise ValueError(f"frame must be one of {FRAMES}, not {self.frame!r}")
        shape = self.flux.shape
        if self.flux.ndim != 2 or self.var.shape != shape or self.mask.shape != shape:
            raise ValueError(
                f"flux, var and mask must share one shape (n_spec, n_wave): {self.flux.shape}, "
                f"{self.var.shape}, {self.mask.shape}"
            )
        if self.wave_aa.shape != shape or (self.fwhm_aa is not None and self.fwhm_aa.shape != shape):
            raise ValueError(f"wave_aa and fwhm_aa must have the shape of flux {shape}")
        n = shape[0]
        if len(self.names) != n or len(self.source) != n:
            raise ValueError(f"names and source need one entry per spectrum ({n})")
        if self.redshift is not None and np.shape(self.redshift) != (n,):
            raise ValueError(f"redshift must have shape ({n},), got {np.shape(self.redshift)}")

    def __len__(self):
        return self.flux.shape[0]

    @property
    def n_wave(self):
        return self.flux.shape[1]

    @property
    def ivar(self):
        """Inverse variance, 0 at masked pixels, shape (n_spec, n_wave)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ivar = 1.0 / self.var
        return np.where(self.mask | ~np.isfinite(ivar), 0.0, ivar)

    def __getitem__(self, index):
        """The spectra of ``index`` (an int, slice, index array or boolean mask) as a new :class:`Spectra`."""
        rows = np.arange(len(self))[index]
        rows = np.atleast_1d(rows)
        pick = lambda a: None if a is None else np.asarray(a)[rows]
        return Spectra(
            wave_aa=self.wave_aa[rows],
            flux=self.flux[rows],
            var=self.var[rows],
            mask=self.mask[rows],
            medium=self.medium,
            frame=self.frame,
            fwhm_aa=pick(self.fwhm_aa),
            redshift=pick(self.redshift),
            names=self.names[rows],
            source=self.source[rows],
            flux_unit=self.flux_unit,
            resolution_source=self.resolution_source,
            meta=dict(self.meta),
        )

    def groups(self):
        """The spectra that share one wavelength grid: ``(rows, n_columns)`` per grid.

        Yields
        ------
        rows : ndarray of int
            Spectra on the grid ``wave_aa[rows[0], :n_columns]`` (the padding left out).
        n_columns : int
        """
        wave = self.wave_aa
        if len(self) and wave.strides[0] == 0:  # one grid for all (a broadcast view)
            yield np.arange(len(self)), int(np.isfinite(wave[0]).sum())
            return
        keys = {}
        for i, row in enumerate(wave):
            keys.setdefault(np.ascontiguousarray(row).tobytes(), []).append(i)
        for rows in keys.values():
            yield np.asarray(rows), int(np.isfinite(wave[rows[0]]).sum())


# ----------------------------------------------------------------------------------------- helpers
def _fill_1d(values):
    """A copy of a 1-D array with its non-finite or non-positive values interpolated over (ends held)."""
    values = np.asarray(values, dtype=float).copy()
    ok = np.isfinite(values) & (values > 0)
    if not ok.any():
        return np.full_like(values, np.nan)
    idx = np.arange(values.size)
    values[~ok] = np.interp(idx[~ok], idx[ok], values[ok])
    return values


def _fill_rows(values):
    """:func:`_fill_1d` on each row of a 2-D array (resolution tables: a few rows, once per file)."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    return np.array([_fill_1d(row) for row in values])


def _var_from(ivar=None, err=None, var=None):
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


def _noise_from_snr(path, flux, snr):
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


def _medium(path, stated, given):
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


def _check_wave(path, name, wave):
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


def _part(**kw):
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


# ----------------------------------------------------------------------------------------- readers
def _read_sdss(path, hdul, medium, snr):
    from specutils import Spectrum

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        warnings.simplefilter("ignore", AstropyWarning)
        spec = Spectrum.read(path, format=SDSS_FORMAT)
    wave = spec.spectral_axis.to_value(u.AA)
    flux = np.asarray(spec.flux.value, dtype=float)
    var = _var_from(ivar=spec.uncertainty.array)
    coadd = hdul[1].data
    if "wdisp" not in coadd.columns.names:
        raise ValueError(f"{path}: an SDSS spec file without 'wdisp' (the resolution); {RESOLUTION_FIX}")
    # wdisp: Gaussian sigma of the LSF in pixels of 1e-4 dex; sigma_aa = wdisp dloglam ln(10) lambda
    sigma_aa = _fill_1d(coadd["wdisp"]) * SDSS_DLOGLAM * np.log(10.0) * wave
    z = None
    for ext in ("SPECOBJ", "SPALL"):
        if ext in hdul and "Z" in hdul[ext].columns.names:
            z = float(hdul[ext].data["Z"][0])
            break
    header = hdul[0].header
    name = header.get("NAME") or path.name
    if all(k in header for k in ("PLATEID", "MJD", "FIBERID")):
        name = f"{header['PLATEID']:04d}-{header['MJD']:05d}-{header['FIBERID']:04d}"
    return _part(
        wave=wave,
        flux=flux,
        var=var,
        mask=np.asarray(spec.mask, dtype=bool),
        fwhm=sigma_aa / FWHM_TO_SIGMA,
        z=z,
        names=[str(name)],
        medium=_medium(path, "vacuum", medium),
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
            values = _fill_rows(values)
            if kind in ("r", "pre_r"):
                sigma = wave / values * FWHM_TO_SIGMA
            else:
                sigma = values
            if kind.startswith("pre"):
                sigma = np.sqrt(sigma**2 + pixel_aa**2 / 12.0)  # the pixel's boxcar
            fwhm = sigma / FWHM_TO_SIGMA
            return (fwhm[0] if fwhm.shape[0] == 1 else fwhm), ext
    return None, None


def _read_manga(path, hdul, medium, snr):
    names = {h.name.upper() for h in hdul}
    if set(MANGA_EXTENSIONS) <= names:  # the DAP's test layout: WAVE, FLUX, IVAR, MASK, SRES, Z
        ms = read_manga_spectra(path)  # air wavelengths (the DRP's vacuum ones converted)
        _medium(path, "vacuum", medium)
        return _part(
            wave=ms.wave_aa,
            flux=ms.flux,
            var=ms.var,
            fwhm=_fill_rows(ms.wave_aa[None, :] / ms.resolution),
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
    return _part(
        wave=wave,
        flux=flux,
        var=_var_from(ivar=ivar),
        mask=mask,
        fwhm=fwhm,
        names=spaxel_names,
        stem=path.name.split(".")[0],
        medium=_medium(path, "vacuum", medium),
        unit=MANGA_FLUX_UNIT,  # per fibre or spaxel
        resolution_source=ext or "",
        source=str(path),
    )


def _read_muse_1d(path, hdul, medium, snr):
    header = hdul["DATA"].header.copy()
    if header.get("NAXIS") not in (1, 2):
        raise ValueError(
            f"{path}: 'DATA' has {header.get('NAXIS')} axes: a MUSE cube? Use sfh-ml apply (apply_cube) "
            "for cubes; read_spectra reads 1-D spectra (or rows of them)"
        )
    ctype = str(header.get("CTYPE1", "")).strip().upper()
    if ctype not in ("AWAV", "WAVE") and medium is None:
        _medium(path, None, None)
    wave, file_medium = _wavelength_axis(header, path, medium, axis=1)  # air, Angstrom
    flux = np.atleast_2d(np.asarray(hdul["DATA"].data, dtype=float))
    if "STAT" in hdul:
        var = _var_from(var=np.atleast_2d(hdul["STAT"].data))
    else:
        var = _noise_from_snr(path, flux, snr)
    mask = np.atleast_2d(hdul["DQ"].data) != 0 if "DQ" in hdul else False
    unit = None
    if header.get("BUNIT"):
        from .readers import parse_flux_unit

        unit = parse_flux_unit(header["BUNIT"], path)
    z = None
    for key in ("Z", "REDSHIFT"):
        for h in (header, hdul[0].header):
            if key in h:
                z = float(h[key])
                break
        if z is not None:
            break
    return _part(
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


def _read_table(path, medium, snr, table=None):
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
        _check_wave(path, f"column {wave_name!r}", wave)
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
    _check_wave(path, f"column {wave_name!r}", wave2)
    variance = _var_from(ivar=ivar, err=err, var=var)
    if variance is None:
        variance = _noise_from_snr(path, flux, snr)
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
        fwhm = _fill_rows(np.broadcast_to(fwhm, flux.shape))
    return _part(
        wave=wave2,
        flux=flux,
        var=variance,
        mask=False if mask is None else (mask != 0),
        fwhm=fwhm,
        z=z,
        names=names,
        stem=path.name.split(".")[0],
        medium=_medium(path, stated, medium),
        unit=getattr(table[flux_name], "unit", None),
        resolution_source=resolution_source,
        source=str(path),
    )


def _from_specutils(spec, medium, snr, label):
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
        var = _noise_from_snr(label, flux, snr)
    mask = False if spec.mask is None else np.asarray(spec.mask, dtype=bool).reshape(flux.shape)
    if np.any(np.diff(wave) < 0):  # a frequency axis: increasing wavelengths
        flux, var = flux[:, ::-1], var[:, ::-1]
        mask = mask if np.ndim(mask) == 0 else mask[:, ::-1]
        wave = wave[::-1]
    _check_wave(label, "spectral_axis", wave)
    z = None
    redshift = getattr(spec, "redshift", None)
    if redshift is not None and np.any(np.asarray(getattr(redshift, "value", redshift)) != 0):
        z = float(np.ravel(getattr(redshift, "value", redshift))[0])
    stated = (spec.meta or {}).get("medium")
    return _part(
        wave=wave,
        flux=flux,
        var=var,
        mask=mask,
        z=z,
        stem=label,
        medium=_medium(label, stated, medium),
        unit=unit,
        source=label,
    )


def _read_one(item, medium, snr, format):
    """One file or object, in :func:`_part`'s layout."""
    if hasattr(item, "spectral_axis") and hasattr(item, "flux"):
        return _from_specutils(item, medium, snr, "<Spectrum>")
    if isinstance(item, Table):
        return _read_table(Path("<Table>"), medium, snr, table=item.copy(copy_data=False))
    path = Path(item)
    if not path.is_file():
        raise FileNotFoundError(f"no such spectrum file: {path}")
    if format in ("table", "ecsv", "csv") or "".join(path.suffixes[-1:]).lower() in TABLE_FORMATS:
        return _read_table(path, medium, snr)
    if not path.name.lower().endswith(FITS_SUFFIXES) and format is None:
        return _read_table(path, medium, snr)  # astropy guesses the format
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        hdul = fits.open(path)
    with hdul:
        names = [h.name.upper() for h in hdul]
        header = hdul[0].header
        kind = format
        if kind is None:
            first = hdul[1] if len(hdul) > 1 else None
            cols = [c.lower() for c in first.columns.names] if isinstance(first, fits.BinTableHDU) else []
            is_manga = set(MANGA_EXTENSIONS) <= set(names) or (
                "FLUX" in names and str(hdul["FLUX"].header.get("INSTRUME", "")).strip() == "MaNGA"
            )
            if str(header.get("TELESCOP", "")).startswith("SDSS") and {"loglam", "flux", "ivar"} <= set(cols):
                kind = "sdss"
            elif is_manga:
                kind = "manga"
            elif "DATA" in names:
                kind = "muse"
            elif any(isinstance(h, fits.BinTableHDU) for h in hdul):
                kind = "table"
            else:
                raise ValueError(
                    f"{path}: not a spectrum format read_spectra knows (HDUs: {names}): an SDSS spec file, "
                    "MaNGA spectra, a MUSE 1-D spectrum (DATA, STAT), or a table with wavelength and flux "
                    "columns; pass format= to choose"
                )
        readers = {"sdss": _read_sdss, "manga": _read_manga, "muse": _read_muse_1d}
        if kind in readers:
            return readers[kind](path, hdul, medium, snr)
        if kind == "table":
            hdu = next(i for i, h in enumerate(hdul) if isinstance(h, fits.BinTableHDU))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", u.UnitsWarning)
                table = Table.read(hdul[hdu])
            table.meta.update({k: v for k, v in header.items() if k not in table.meta})
            return _read_table(path, medium, snr, table=table)
    raise ValueError(f"format must be one of sdss, manga, muse, table, or None (guessed), not {format!r}")


def _user_resolution(part, fwhm_aa, resolution):
    """Replace the file's resolution with the caller's (``fwhm_aa`` or ``resolution``)."""
    n, n_wave = part["flux"].shape
    if fwhm_aa is not None:
        value = np.asarray(fwhm_aa, dtype=float)
        if value.ndim and value.shape[-1] != n_wave:
            raise ValueError(f"fwhm_aa has {value.shape[-1]} values for {n_wave} pixels of {part['source']}")
        if not np.all(np.isfinite(value) & (value > 0)):
            raise ValueError("fwhm_aa must be finite and > 0 (FWHM in Angstrom)")
        part["fwhm"] = np.broadcast_to(value, (n, n_wave)).astype(float)
        part["resolution_source"] = "fwhm_aa= (given)"
    elif resolution is not None:
        value = np.asarray(resolution, dtype=float)
        if not np.all(np.isfinite(value) & (value > 0)):
            raise ValueError("resolution must be finite and > 0 (R = lambda / FWHM)")
        part["fwhm"] = part["wave"] / value
        part["resolution_source"] = "resolution= (given)"
    return part


def read_spectra(
    path_or_paths,
    *,
    format=None,
    medium=None,
    frame=None,
    redshift=None,
    fwhm_aa=None,
    resolution=None,
    snr=None,
):
    """Read spectra of any instrument into one :class:`Spectra` (see the module for the formats).

    Parameters
    ----------
    path_or_paths : str, Path, specutils.Spectrum, astropy.table.Table, or a sequence of them
        Files (SDSS/BOSS ``spec-*.fits``, MaNGA spectra, MUSE 1-D ``DATA``/``STAT`` spectra, FITS
        binary tables, ECSV or CSV tables), specutils objects or tables in memory (the columns of
        the table files). Spectra of several files are
        stacked (shorter grids padded with NaN); vacuum ones are converted to air if the media differ.
    format : {None, "sdss", "manga", "muse", "table"}
        None: recognised from the file.
    medium : {None, "air", "vacuum"}
        The medium of the wavelengths, for formats that do not state it (tables, specutils objects,
        MUSE files without ``CTYPE1``); refused if it contradicts the format.
    frame : {None, "observed", "rest"}
        Observed-frame (default) or rest-frame wavelengths.
    redshift : float or sequence of float, optional
        Systemic redshift (one for all, or one per spectrum); overrides the file's.
    fwhm_aa : float or ndarray, shape (n_wave,), optional
        The instrument's FWHM, Angstrom, in the frame of the wavelengths; overrides the file's.
    resolution : float or ndarray, shape (n_wave,), optional
        R = lambda / FWHM instead of ``fwhm_aa``.
    snr : float, optional
        For files without errors: a constant noise per spectrum, its median flux over ``snr``.

    Returns
    -------
    Spectra

    Raises
    ------
    ValueError
        An unknown format, wavelengths that look like nm or log10, a medium not stated, no errors
        and no ``snr``, shapes that disagree: the message names the file and the fix.
    FileNotFoundError
        A path that is not a file.
    """
    if fwhm_aa is not None and resolution is not None:
        raise ValueError("give fwhm_aa= or resolution= (--fwhm or --resolution), not both")
    if frame is not None and frame not in FRAMES:
        raise ValueError(f"frame must be 'observed' or 'rest', not {frame!r}")
    items = (
        [path_or_paths]
        if isinstance(path_or_paths, str | os.PathLike | Table) or hasattr(path_or_paths, "spectral_axis")
        else list(path_or_paths)
    )
    if not items:
        raise ValueError("no spectrum to read")
    parts = [_user_resolution(_read_one(item, medium, snr, format), fwhm_aa, resolution) for item in items]
    for part in parts:
        if frame is not None:
            part["frame"] = frame
    frames = {p["frame"] for p in parts}
    if len(frames) > 1:
        raise ValueError("the files mix observed- and rest-frame wavelengths: read them separately")
    media = {p["medium"] for p in parts}
    target = "air" if len(media) > 1 else media.pop()
    n_wave = max(p["flux"].shape[1] for p in parts)
    n = sum(p["flux"].shape[0] for p in parts)
    stacked = {k: [] for k in ("wave", "flux", "var", "mask", "fwhm")}
    for part in parts:
        m, w = part["flux"].shape
        wave, fwhm = part["wave"], part["fwhm"]
        if part["medium"] != target:  # vacuum to air, the FWHM scaled alike
            air = vacuum_to_air(wave)
            fwhm = None if fwhm is None else fwhm * air / wave
            wave = air
            part["notes"].append("vacuum wavelengths converted to air to match the other files")
        pad = lambda a, fill, w=w: np.pad(
            np.asarray(a, dtype=float), ((0, 0), (0, n_wave - w)), constant_values=fill
        )
        stacked["wave"].append(pad(wave, np.nan))
        stacked["flux"].append(pad(part["flux"], np.nan))
        stacked["var"].append(pad(part["var"], np.nan))
        stacked["mask"].append(np.pad(part["mask"], ((0, 0), (0, n_wave - w)), constant_values=True))
        stacked["fwhm"].append(pad(np.full((m, w), np.nan) if fwhm is None else fwhm, np.nan))
    if len(parts) == 1 and n_wave == parts[0]["flux"].shape[1] and parts[0]["wave"].strides[0] == 0:
        wave = np.broadcast_to(stacked["wave"][0][0], (n, n_wave))  # one grid: a view, not n copies
    else:
        wave = np.concatenate(stacked["wave"])
    fwhm = np.concatenate(stacked["fwhm"])
    z = np.concatenate([np.full(p["flux"].shape[0], np.nan) if p["z"] is None else p["z"] for p in parts])
    if redshift is not None:
        z = np.broadcast_to(np.asarray(redshift, dtype=float), (n,)).copy()
    units = {str(p["unit"]) for p in parts}
    sources = sorted({p["resolution_source"] for p in parts if p["resolution_source"]})
    return Spectra(
        wave_aa=wave,
        flux=np.concatenate(stacked["flux"]),
        var=np.concatenate(stacked["var"]),
        mask=np.concatenate(stacked["mask"]),
        medium=target,
        frame=frames.pop(),
        fwhm_aa=None if np.all(np.isnan(fwhm)) else fwhm,
        redshift=None if np.all(np.isnan(z)) else z,
        names=np.array([name for p in parts for name in p["names"]], dtype=str),
        source=np.array([p["source"] for p in parts for _ in range(p["flux"].shape[0])], dtype=str),
        flux_unit=parts[0]["unit"] if len(units) == 1 else None,
        resolution_source="; ".join(sources),
        meta={"notes": sorted({note for p in parts for note in p["notes"]})},
    )


# ----------------------------------------------------------------------------------------- preparation
def _files(spectra, rows=None):
    names = np.unique(spectra.source if rows is None else spectra.source[rows])
    return ", ".join(names[:3]) + (f" (+{names.size - 3} more)" if names.size > 3 else "")


def _redshifts(spectra):
    """The redshift each spectrum is brought to the rest frame with (0 for rest-frame wavelengths)."""
    if spectra.frame == "rest":
        return np.zeros(len(spectra))
    if spectra.redshift is None:
        raise ValueError(
            f"{_files(spectra)}: observed-frame wavelengths and no redshift: pass redshift= (--redshift Z), "
            "or frame='rest' (--frame rest) if the wavelengths are already rest-frame"
        )
    return np.asarray(spectra.redshift, dtype=float)


def _require_resolution(spectra, rows=None, n_columns=None):
    rows = np.arange(len(spectra)) if rows is None else rows
    fwhm = None if spectra.fwhm_aa is None else spectra.fwhm_aa[rows][:, :n_columns]
    if fwhm is None or np.all(np.isnan(fwhm)):
        raise ValueError(f"{_files(spectra, rows)}: the instrument's resolution is unknown; {RESOLUTION_FIX}")
    return fwhm


def _per_spectrum(value, n, name):
    if value is None:
        return None
    value = np.asarray(value, dtype=float)
    if value.ndim and value.shape != (n,):
        raise ValueError(f"{name} must be one number or one per spectrum ({n}), got shape {value.shape}")
    return np.broadcast_to(value, (n,)).copy()


def prepare_observed(
    spectra,
    wave_model_aa,
    *,
    sigma_model_kms=SIGMA_MODEL_KMS,
    v_kms=None,
    sigma_kms=None,
    ebv_mw=0.0,
    tolerance_kms=SIGMA_TOLERANCE_KMS,
    min_coverage=MIN_COVERAGE,
    broaden=True,
):
    """Spectra of any instrument on the model's grid: :func:`~sfh_ml.observations.prepare_spectra`
    for each group of spectra that share a grid (see the module).

    Parameters
    ----------
    spectra : Spectra
    wave_model_aa : ndarray, shape (n_wave_model,)
        The model's rest-frame (air) grid, Angstrom.
    sigma_model_kms : float
        The model's stellar dispersion, km/s.
    v_kms, sigma_kms : float or ndarray, shape (n_spec,), optional
        Stellar velocity relative to the redshift, and stellar dispersion, km/s (NaN:
        ``NO_KINEMATICS``). ``sigma_kms`` is needed with ``broaden``.
    ebv_mw : float or ndarray, shape (n_spec,)
        Milky Way foreground E(B-V), mag (observed-frame spectra only).
    tolerance_kms : float
        Effective dispersions up to this much above the model's are used as they are; beyond,
        ``TOO_BROAD``.
    min_coverage : float
        Fraction of the model grid the valid pixels must cover (below: ``LOW_COVERAGE``).
    broaden : bool
        Bring each spectrum's LSF and dispersion to the model's; False: resample only (for the
        kinematics fit).

    Returns
    -------
    PreparedSpectra
        Rows in the order of ``spectra``; ``fwhm_aa`` holds the rest-frame instrumental FWHM on the
        model grid where the resolution is known.

    Raises
    ------
    ValueError
        Observed-frame spectra without a redshift; an unknown resolution (with ``broaden``); a file
        none of whose spectra covers ``min_coverage`` of the model grid at its redshift; dereddening
        asked for rest-frame spectra.
    """
    wave_model = np.asarray(wave_model_aa, dtype=float)
    n = len(spectra)
    z = _redshifts(spectra)
    v = _per_spectrum(v_kms, n, "v_kms")
    sigma = _per_spectrum(sigma_kms, n, "sigma_kms")
    ebv = _per_spectrum(ebv_mw, n, "ebv_mw")
    observed = spectra.frame == "observed"
    if not observed and np.any(ebv != 0):
        raise ValueError(
            f"{_files(spectra)}: Milky Way dereddening needs observed-frame wavelengths; deredden the "
            "rest-frame spectra before, or pass the observed-frame ones with their redshift"
        )
    if broaden and sigma is None:
        raise ValueError("broadening needs the stellar dispersion (sigma_kms=; see measure_kinematics)")
    out = {
        "flux": np.full((n, wave_model.size), np.nan),
        "var": np.full((n, wave_model.size), np.nan),
        "flags": np.zeros(n, dtype=np.int64),
        "coverage": np.zeros(n),
        "fwhm_aa": np.full((n, wave_model.size), np.nan),
    }
    for rows, n_col in spectra.groups():
        wave = np.array(spectra.wave_aa[rows[0], :n_col], dtype=float)
        fwhm = None if spectra.fwhm_aa is None else spectra.fwhm_aa[rows][:, :n_col]
        if fwhm is not None and np.all(np.isnan(fwhm)):
            fwhm = None
        if broaden:
            fwhm = _require_resolution(spectra, rows, n_col)
        if spectra.medium == "vacuum":
            air = vacuum_to_air(wave)
            fwhm = None if fwhm is None else fwhm * air / wave
            wave = air
        flux, var = spectra.flux[rows, :n_col], spectra.var[rows, :n_col]
        with np.errstate(invalid="ignore"):
            bad = spectra.mask[rows, :n_col] | ~(flux > 0)  # NaN, zero and negative pixels
        scale = 1.0 + z[rows]
        with np.errstate(invalid="ignore"):
            covered = np.mean(
                (wave_model[None, :] >= wave[0] / scale[:, None])
                & (wave_model[None, :] <= wave[-1] / scale[:, None]),
                axis=1,
            )
        if not np.any(covered >= min_coverage):
            raise ValueError(
                f"{_files(spectra, rows)}: its rest-frame wavelengths ({wave[0] / scale[0]:.0f}-"
                f"{wave[-1] / scale[0]:.0f} A at z = {z[rows[0]]:g}) cover "
                f"{100 * np.nanmax(covered):.0f} % of the model's grid "
                f"({wave_model[0]:.0f}-{wave_model[-1]:.0f} A); at least "
                f"{100 * min_coverage:.0f} % is needed. Check the redshift (--redshift) and the wavelength "
                "unit, or use a model trained on this wavelength range"
            )
        prep = prepare_spectra(
            wave,
            flux,
            var,
            wave_model,
            sigma_model_kms=sigma_model_kms,
            z_sys=z[rows],
            v_kms=None if v is None else v[rows],
            ebv_mw=0.0 if ebv is None else ebv[rows],
            sigma_obs_kms=sigma[rows] if broaden else None,
            dq=bad.astype(np.uint8),
            mask_sky=observed,
            min_coverage=min_coverage,
            tolerance_kms=tolerance_kms,
            fwhm_obs_aa=fwhm,
        )
        out["flux"][rows], out["var"][rows] = prep.flux, prep.var
        out["flags"][rows], out["coverage"][rows] = prep.flags, prep.coverage
        if prep.fwhm_aa is not None:
            out["fwhm_aa"][rows] = prep.fwhm_aa
    if np.all(np.isnan(out["fwhm_aa"])):
        out["fwhm_aa"] = None
    return PreparedSpectra(**out)


def measure_kinematics(spectra, wave_model_aa, *, ebv_mw=0.0, library=None, prepared=None):
    """Stellar velocity and dispersion of each spectrum (pPXF, :func:`sfh_ml.fitting.fit_kinematics`).

    Parameters
    ----------
    spectra : Spectra
    wave_model_aa : ndarray, shape (n_wave_model,)
        The model's rest-frame grid (the templates are built for it), Angstrom.
    ebv_mw : float or ndarray, shape (n_spec,)
    library : SSPLibrary, optional
    prepared : PreparedSpectra, optional
        :func:`prepare_observed` with ``broaden=False``, if already made.

    Returns
    -------
    dict of ndarray, shape (n_spec,)
        ``v_kms`` (relative to the redshift), ``v_kms_err``, ``sigma_kms`` (stellar), ``sigma_kms_err``,
        ``chi2``: NaN where a spectrum cannot be fitted (too few pixels, no positive flux).
    """
    from ..fitting.kinematics import fit_kinematics

    if prepared is None:
        prepared = prepare_observed(spectra, wave_model_aa, ebv_mw=ebv_mw, broaden=False)
    return fit_kinematics(
        wave_model_aa, prepared.flux, prepared.var, fwhm_aa=prepared.fwhm_aa, library=library
    )


def _spectrum_photometry(spectra, z_total, ebv, filters):
    """Band means of the dereddened rest-frame spectra at their own sampling (``spectrum_bands``)."""
    from ..fitting.real_spectra import spectrum_bands

    n = len(spectra)
    phot = np.full((n, len(filters)), np.nan)
    for rows, n_col in spectra.groups():
        wave = np.array(spectra.wave_aa[rows[0], :n_col], dtype=float)
        if spectra.medium == "vacuum":
            wave = vacuum_to_air(wave)
        flux = np.where(spectra.mask[rows, :n_col], np.nan, spectra.flux[rows, :n_col])
        var = np.where(spectra.mask[rows, :n_col], np.nan, spectra.var[rows, :n_col])
        if spectra.frame == "observed" and np.any(ebv[rows] != 0):
            flux, var = deredden_mw(wave, flux, var, ebv[rows])
        with np.errstate(invalid="ignore"):
            rest, flux, var = to_rest_frame(wave, flux, var, z_total[rows])
        phot[rows], _ = spectrum_bands(rest, flux, var, filters)
    return phot


def _models(model):
    from ..network import load_model, load_pretrained

    if model is None:
        return load_pretrained(), "shipped network (sfh_ml.load_pretrained)"
    if isinstance(model, list | tuple):
        return [load_model(m) if isinstance(m, str | os.PathLike) else m for m in model], "ensemble"
    if isinstance(model, str | os.PathLike):
        return load_model(model), str(model)
    return model, "model object"


def predict_spectra(
    spectra,
    model=None,
    *,
    v_kms=None,
    sigma_kms=None,
    ebv_mw=0.0,
    photometry="spectrum",
    min_snr=MIN_SNR,
    batch_size=1024,
    library=None,
    sigma_max_kms=SIGMA_MODEL_MAX_KMS,
):
    """SFHs and [M/H] histories of spectra of any instrument, one table row per spectrum.

    Parameters
    ----------
    spectra : Spectra
        From :func:`read_spectra`.
    model : keras.Model, str, Path or list of them, optional
        Default: the shipped network (:func:`sfh_ml.load_pretrained`).
    v_kms, sigma_kms : float or ndarray, shape (n_spec,), optional
        Stellar velocity (relative to the redshift) and dispersion, km/s; what is not given is
        measured with pPXF (:func:`measure_kinematics`; about a second per spectrum). Given values win.
    ebv_mw : float or ndarray, shape (n_spec,)
        Milky Way foreground E(B-V), mag.
    photometry : "spectrum", None or ndarray, shape (n_spec, n_bands)
        The network's HST bands: ``"spectrum"``, the band means of each rest-frame spectrum for the
        bands it covers entirely (:func:`sfh_ml.fitting.spectrum_bands`, as in chapter 5), the others
        missing; None, all missing; or fluxes in the spectra's unit, in the model's band order.
    min_snr : float
        Below this continuum S/N per pixel (5300-5700 A rest frame) a spectrum gets ``LOW_SNR``.
    batch_size : int
    library : SSPLibrary, optional
        For the kinematics' templates.
    sigma_max_kms : float
        The highest stellar dispersion of the training spectra: effective dispersions beyond it get
        ``TOO_BROAD`` (and NaN predictions).

    Returns
    -------
    astropy.table.Table
        One row per spectrum, the columns of ``sfh-ml apply``'s per-bin table (``sfh``,
        ``sfh_cum``, ``sfh_cum_sigma``, ``zh``, ``zh_sigma`` per age bin; ``mw_log_age``,
        ``mw_log_age_err``, ``lw_log_age``, ``mw_zh``, ``mw_zh_err``, ``lw_zh``, ``f_young``, ...;
        ``photometry``, ``coverage``, ``quality``) after ``name``, ``source``, ``redshift``,
        ``v_kms``, ``v_kms_err``, ``sigma_kms``, ``sigma_kms_err``, ``kinematics_source``, ``snr``,
        ``usable`` and ``quality_names``. Predictions are NaN where the network found a spectrum
        unusable or where its preparation set a bit of :data:`UNUSABLE_FLAGS`. ``meta``: the age
        bins, the quality bits, the options.
    """
    from ..network import PREDICTION_KEYS, get_metadata, predict

    n = len(spectra)
    z = _redshifts(spectra)  # refusals before any work
    _require_resolution(spectra)
    models, model_label = _models(model)
    first = models[0] if isinstance(models, list) else models
    meta = get_metadata(first)
    if meta["wave_aa"] is None or meta["age_bins_yr"] is None:
        raise ValueError(
            "the model records no wavelength grid or age bins: rebuild it with wave_aa= and age_bins_yr="
        )
    wave_model = np.asarray(meta["wave_aa"], dtype=float)
    sigma_model = float(meta.get("sigma_kms") or SIGMA_MODEL_KMS)
    tolerance = max(float(sigma_max_kms) - sigma_model, SIGMA_TOLERANCE_KMS)
    ebv = _per_spectrum(ebv_mw, n, "ebv_mw")
    v_given, s_given = _per_spectrum(v_kms, n, "v_kms"), _per_spectrum(sigma_kms, n, "sigma_kms")
    kin = {k: np.full(n, np.nan) for k in ("v_kms", "v_kms_err", "sigma_kms", "sigma_kms_err")}
    # Resampled, not broadened: the S/N (as a cube's, before any smoothing) and the kinematics fit.
    resampled = prepare_observed(spectra, wave_model, ebv_mw=ebv, broaden=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        signal, noise = continuum_snr(resampled.flux.T, resampled.var.T, wave_model)
        snr = signal / noise
    if v_given is None or s_given is None:
        fitted = measure_kinematics(spectra, wave_model, library=library, prepared=resampled)
        kin.update({k: fitted[k] for k in kin})
    if v_given is not None:
        kin["v_kms"], kin["v_kms_err"] = v_given, np.full(n, np.nan)
    if s_given is not None:
        kin["sigma_kms"], kin["sigma_kms_err"] = s_given, np.full(n, np.nan)
    origin = lambda given: "given" if given is not None else "pPXF"
    source = f"v: {origin(v_given)}; sigma: {origin(s_given)}"
    prep = prepare_observed(
        spectra,
        wave_model,
        sigma_model_kms=sigma_model,
        v_kms=kin["v_kms"],
        sigma_kms=kin["sigma_kms"],
        ebv_mw=ebv,
        tolerance_kms=tolerance,
    )
    z_total = total_redshift(z, np.nan_to_num(kin["v_kms"]))
    if isinstance(photometry, str) and photometry == "spectrum":
        phot = _spectrum_photometry(spectra, z_total, ebv, meta["filters"])
        phot_source = "band means of each rest-frame spectrum, for the bands it covers entirely"
    elif photometry is None:
        phot = np.full((n, meta["n_bands"]), np.nan)
        phot_source = "none: the network predicted from the spectra alone (bands masked)"
    else:
        phot = np.asarray(photometry, dtype=float).reshape(n, meta["n_bands"])
        phot_source = "given (photometry=)"
    pred = predict(
        models, prep.flux, phot, batch_size=batch_size, wave_aa=wave_model, filters=meta["filters"]
    )
    res = {k: np.array(pred[k], dtype=np.float64) for k in PREDICTION_KEYS}
    res["network_quality"] = np.asarray(pred["quality"], dtype=np.int64)
    res["flags"] = prep.flags
    res["coverage"] = prep.coverage
    res["quality"] = _quality(res, snr, min_snr)
    unusable = (prep.flags & UNUSABLE_FLAGS) != 0
    for k in PREDICTION_KEYS:
        res[k][unusable] = np.nan
    usable = _usable(res["quality"]) & ~unusable
    summary = summarise_histories(res, meta["age_bins_yr"], meta["bin_light"], meta["zh_grid"])
    names = {bit: name for name, bit in quality_bits().items()}
    extra = {
        "name": spectra.names,
        "source": spectra.source,
        "redshift": np.full(n, np.nan) if spectra.frame == "rest" else z,
        **kin,
        "kinematics_source": np.full(n, source),
        "snr": snr,
        "usable": usable,
        "quality_names": np.array(
            [",".join(names[b] for b in names if q & b) for q in res["quality"]], dtype=str
        ),
    }
    i_young, i_old = age_fraction_edges(meta["age_bins_yr"])
    setup = {"photometry_source": phot_source, "sigma_source": source}
    options = {
        "model": _model_fingerprint(first, meta),
        "model_label": model_label,
        "spectra": sorted(set(spectra.source.tolist())),
        "medium": spectra.medium,
        "frame": spectra.frame,
        "resolution": spectra.resolution_source,
        "notes": list(spectra.meta.get("notes", [])),
        "ebv_mw": [float(e) for e in np.unique(ebv)],
        "sigma_model_kms": sigma_model,
        "sigma_max_kms": max(float(sigma_max_kms), sigma_model),
        "min_snr": float(min_snr),
        "network_flag_shift": NETWORK_FLAG_SHIFT,
    }
    unit = None if spectra.flux_unit is None else str(spectra.flux_unit)
    table = _table(res, summary, extra, setup, meta, options, i_young, i_old, phot, unit)
    for key in ("v_kms", "v_kms_err", "sigma_kms", "sigma_kms_err"):
        table[key].unit = "km / s"
    return table


def ppxf_spectra(spectra, table=None, *, ebv_mw=0.0, regul=None, library=None, model=None, workers=1):
    """pPXF's histories of the same spectra, prepared as for the network but not broadened
    (:func:`sfh_ml.fitting.fit_arrays`, as :func:`sfh_ml.fitting.real_spectra_check` fits them).

    Parameters
    ----------
    spectra : Spectra
    table : astropy.table.Table, optional
        :func:`predict_spectra`'s table: its ``v_kms`` gives the rest frame (else pPXF's kinematics
        fit, :func:`measure_kinematics`) and its ``meta["age_bins_yr"]`` the bins.
    ebv_mw : float or ndarray, shape (n_spec,)
    regul : float, optional
        pPXF's regularisation (default :data:`sfh_ml.fitting.DEFAULT_REGUL`).
    library : SSPLibrary, optional
    model : keras.Model, optional
        For the grid and the age bins without ``table`` (default: the shipped network).
    workers : int

    Returns
    -------
    astropy.table.Table
        ``name``; ``ppxf_mw_log_age``, ``ppxf_lw_log_age`` (log10 yr), ``ppxf_mw_zh``, ``ppxf_lw_zh``
        (dex); ``ppxf_sfh``, ``ppxf_zh`` (n_spec, n_bins) on the age bins; ``ppxf_sigma_kms``
        (effective dispersion against the MUSE-resolution templates), ``ppxf_chi2``; NaN where a
        spectrum has too little data.
    """
    from ..fitting import DEFAULT_REGUL, fit_arrays
    from ..fitting.fit import MIN_GOOD_FRACTION
    from ..network import get_metadata

    models, _ = _models(model)
    meta = get_metadata(models[0] if isinstance(models, list) else models)
    wave_model = np.asarray(meta["wave_aa"], dtype=float)
    age_bins = np.asarray(table.meta["age_bins_yr"] if table is not None else meta["age_bins_yr"])
    n = len(spectra)
    ebv = _per_spectrum(ebv_mw, n, "ebv_mw")
    if table is not None:
        v = np.asarray(table["v_kms"], dtype=float)
    else:
        v = measure_kinematics(spectra, wave_model, ebv_mw=ebv, library=library)["v_kms"]
    prep = prepare_observed(spectra, wave_model, v_kms=v, ebv_mw=ebv, broaden=False)
    good = np.isfinite(prep.flux) & np.isfinite(prep.var) & (prep.var > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without data: not fitted
        level = np.nanmedian(np.where(good, prep.flux, np.nan), axis=1)
    fit_ok = (good.mean(axis=1) > MIN_GOOD_FRACTION) & (level > 0)
    out = Table()
    out["name"] = spectra.names
    n_bins = age_bins.size - 1
    cols = {
        f"ppxf_{k}": np.full(n, np.nan)
        for k in ("mw_log_age", "lw_log_age", "mw_zh", "lw_zh", "sigma_kms", "chi2")
    }
    cols["ppxf_sfh"] = np.full((n, n_bins), np.nan)
    cols["ppxf_zh"] = np.full((n, n_bins), np.nan)
    if fit_ok.any():
        fits_ = fit_arrays(
            wave_model,
            np.where(good, prep.flux, np.nan)[fit_ok],
            np.sqrt(np.where(good, prep.var, np.nan))[fit_ok],
            age_bins,
            regul=DEFAULT_REGUL if regul is None else regul,
            workers=workers,
            library=library,
            progress=False,
            good=good[fit_ok],
        )
        for k in ("mw_log_age", "lw_log_age", "mw_zh", "lw_zh", "sigma_kms", "chi2", "sfh", "zh"):
            cols[f"ppxf_{k}"][fit_ok] = fits_[k]
    for k, values in cols.items():
        out[k] = values
    out.meta["age_bins_yr"] = [float(a) for a in age_bins]
    return out


# ----------------------------------------------------------------------------------------- writing
def _table_kind(path):
    name = str(path).lower()
    if name.endswith(".ecsv"):
        return "ecsv"
    if name.endswith(FITS_SUFFIXES):
        return "fits"
    raise ValueError(f"{path}: the output table must end in .ecsv or .fits")


def write_spectra_table(table, path, overwrite=False, inputs=()):
    """Write :func:`predict_spectra`'s table atomically as ECSV (all metadata) or FITS (keywords).

    Parameters
    ----------
    table : astropy.table.Table
    path : str or Path
        ``*.ecsv`` or ``*.fits``.
    overwrite : bool
        Replace an existing file (never an input).
    inputs : sequence of str or Path
        The run's input files, which ``path`` may not be.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        Another suffix, or ``path`` is an input.
    """
    path = Path(path)
    kind = _table_kind(path)
    check_output(path, overwrite=overwrite, inputs=inputs)
    tmp = tmp_path(path)
    tmp.unlink(missing_ok=True)  # left by a run killed while writing: never ours to keep
    try:
        if kind == "ecsv":
            _write_ecsv(table, tmp)
        else:
            flat = table.copy(copy_data=False)
            options = table.meta.get("options", {})
            cards = {
                "SFHMODEL": str(options.get("model", ""))[:16],
                "NSPEC": len(table),
                "MEDIUM": str(options.get("medium", "")),
                "SIGMODEL": options.get("sigma_model_kms", np.nan),
                "SIGMAX": options.get("sigma_max_kms", np.nan),
                "YOUNGAGE": table.meta.get("young_edge_yr", np.nan),
                "OLDAGE": table.meta.get("old_edge_yr", np.nan),
                "QSHIFT": NETWORK_FLAG_SHIFT,
            }
            for name, bit in quality_bits().items():
                cards[f"Q{int(np.log2(bit)):d}"[:8]] = name[:60]
            flat.meta = cards
            flat.write(tmp, format="fits")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
