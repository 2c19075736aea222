"""Readers of the PHANGS data products (MUSE cubes, DAP MAPS, HST cluster catalogues and HST images),
and of MaNGA DRP spectra (the real-spectrum check of the network against pPXF).

Each reader checks the file against :mod:`sfh_ml.observations.formats` at run time (releases differ)
and refuses what it cannot use with a message that names the file and says what to do. Cubes are
never read whole: :class:`MuseCube` holds lazy Dask arrays over a memory-mapped FITS file and reads
the spectra of chosen spaxels on request.
"""

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import dask.array as da
import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_area
from dask.base import tokenize

from ..synthesis.photometry import pivot_wavelengths
from ..utils import check_wave_aa
from . import formats

__all__ = [
    "FLAM_UNIT",
    "MAX_SPAXELS_PER_CHUNK",
    "vacuum_to_air",
    "parse_flux_unit",
    "wavelength_axis",
    "MuseCube",
    "read_muse_cube",
    "DapMaps",
    "read_maps",
    "read_cluster_catalogue",
    "HstImage",
    "read_hst_image",
    "MANGA_FLUX_UNIT",
    "MangaSpectra",
    "read_manga_spectra",
]

FLAM_UNIT = u.erg / u.s / u.cm**2 / u.AA  # f_lambda
# Spaxels per Dask chunk of a cube: 4096 x 3681 channels x 4 bytes = 60 MB per chunk and array.
MAX_SPAXELS_PER_CHUNK = 4096
GRID_TOLERANCE_PIX = 0.1  # a MAPS pixel centre may be this far (in pixels) from the cube's one


# ----------------------------------------------------------------------------------------- helpers
def vacuum_to_air(wave_vac_aa):
    """Air wavelengths from vacuum ones (standard air, 15 C, 101325 Pa).

    lambda_air = lambda_vac / n, with the refractive index of Morton (2000, ApJS 130, 403, eq. 8;
    Edlen 1966 form with the coefficients of Birch & Downs 1994), the IAU convention used by VALD
    and SDSS: n = 1 + 8.34254e-5 + 2.406147e-2 / (130 - s^2) + 1.5998e-4 / (38.9 - s^2),
    s = 1e4 / lambda_vac (lambda in Angstrom, s in 1/micron). Valid above 2000 A; error < 0.005 A
    in the MUSE range.

    Parameters
    ----------
    wave_vac_aa : float or ndarray, shape (n_wave,)
        Vacuum wavelengths in Angstrom.

    Returns
    -------
    ndarray, shape (n_wave,)
        Air wavelengths in Angstrom.
    """
    wave_vac_aa = np.asarray(wave_vac_aa, dtype=float)
    s2 = (1e4 / wave_vac_aa) ** 2
    n = 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)
    return wave_vac_aa / n


def parse_flux_unit(bunit, path, expect=FLAM_UNIT, what="BUNIT"):
    """An astropy unit from a FITS ``BUNIT`` string, checked to be convertible to ``expect``.

    The generic astropy format reads ``10**(-20)*erg/s/cm**2/Angstrom`` (the MUSE pipeline's form);
    a bare ``A`` is read as Angstrom when ampere would make no sense (``erg/s/cm2/A``).

    Parameters
    ----------
    bunit : str or None
    path : str or Path
        The file, for the message.
    expect : astropy.units.Unit
        The physical type required (f_lambda by default).

    Returns
    -------
    astropy.units.Unit

    Raises
    ------
    ValueError
        Missing, unparsable, or not convertible to ``expect``.
    """
    fix = (
        f"set it to a flux density per Angstrom, e.g. astropy.io.fits.setval('{path}', 'BUNIT', "
        f"value='{formats.CUBE_BUNIT}', extname='{formats.CUBE_DATA_EXT}')"
    )
    if bunit is None or not str(bunit).strip():
        raise ValueError(f"{path}: no {what}; {fix}")
    candidates = [str(bunit).strip()]
    if re.search(r"(?<![A-Za-z])A(?![A-Za-z])", candidates[0]):
        candidates.append(re.sub(r"(?<![A-Za-z])A(?![A-Za-z])", "Angstrom", candidates[0]))
    for text in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", u.UnitsWarning)
                unit = u.Unit(text)
        except ValueError:
            continue
        if unit.is_equivalent(expect):
            return unit
    raise ValueError(f"{path}: {what} = {bunit!r} is not a unit of {expect.physical_type}; {fix}")


def _celestial_wcs(header, path, what):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        wcs = WCS(header).celestial
    if not wcs.has_celestial or wcs.naxis != 2:
        raise ValueError(
            f"{path}: the {what} has no celestial WCS (CTYPE1/CTYPE2 'RA---TAN'/'DEC--TAN', CRVAL1/2, "
            "CRPIX1/2, CD1_1...CD2_2); add one (e.g. from the original pipeline product) before reading"
        )
    return wcs


def _same_grid(wcs_a, shape_a, wcs_b, shape_b, tol_pix=GRID_TOLERANCE_PIX):
    """Whether two celestial WCS put the same sky positions on the same pixels (shape (ny, nx))."""
    if tuple(shape_a) != tuple(shape_b):
        return False
    ny, nx = shape_a
    x = np.array([0.0, nx - 1.0, 0.0, nx - 1.0, 0.5 * (nx - 1)])
    y = np.array([0.0, 0.0, ny - 1.0, ny - 1.0, 0.5 * (ny - 1)])
    world = wcs_a.pixel_to_world_values(x, y)
    xb, yb = wcs_b.world_to_pixel_values(*world)
    return bool(np.all(np.hypot(np.asarray(xb) - x, np.asarray(yb) - y) < tol_pix))


def _data_bytes(header):
    """Bytes of an HDU's data as its header describes them (FITS standard 4.0, sect. 4.4.1)."""
    n_axis = int(header.get("NAXIS", 0))
    size = int(np.prod([int(header.get(f"NAXIS{i}", 0)) for i in range(1, n_axis + 1)])) if n_axis else 0
    bytes_per_value = abs(int(header.get("BITPIX", 8))) // 8
    return bytes_per_value * int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0)) + size)


def _open_complete(path, **kwargs):
    """``fits.open(path)`` with every HDU read, refusing a damaged or truncated file by name.

    A file cut short (an interrupted download or copy) loses its last extensions or the end of their
    data: astropy then reads fewer HDUs or fails late, with a TypeError, when the data are mapped.
    """
    path = Path(path)
    remedy = "download it again (or copy it again from its source)"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(path, lazy_load_hdus=False, **kwargs)
    except FileNotFoundError:
        raise
    except (OSError, TypeError, ValueError, IndexError) as err:
        raise ValueError(f"{path} is a damaged or truncated FITS file ({err}): {remedy}") from None
    size = path.stat().st_size
    problems = [str(w.message) for w in caught if "truncated" in str(w.message).lower()]
    for i, hdu in enumerate(hdul):
        need = hdul.fileinfo(i)["datLoc"] + _data_bytes(hdu.header)
        if need > size:
            problems.append(f"extension {i} ({hdu.name}) needs {need} bytes, the file has {size}")
    for w in caught:  # the other warnings, as they would have been shown
        if "truncated" not in str(w.message).lower():
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if problems:
        hdul.close()
        raise ValueError(f"{path} is a damaged or truncated FITS file ({problems[-1]}): {remedy}")
    return hdul


class _FitsImage:
    """A picklable, lazily opened, memory-mapped view of one FITS image extension.

    It has what :func:`dask.array.from_array` needs (``shape``, ``dtype``, ``ndim``,
    ``__getitem__``). Pickling (for ``dask.distributed`` workers) keeps the path and drops the open
    file, which each process reopens on first access.
    """

    def __init__(self, path, extname):
        self.path = str(path)
        self.extname = extname
        self._hdul = None
        self._data = None
        data = self._open()
        self.shape = data.shape
        self.dtype = data.dtype.newbyteorder("=")
        self.ndim = data.ndim

    def _open(self):
        if self._data is None:
            # "denywrite": a read-only private map; astropy's default "readonly" map fails on cubes of tens
            # of GB and falls back to it with a warning, once per opening (i.e. per chunk).
            self._hdul = fits.open(self.path, mode="denywrite", memmap=True, lazy_load_hdus=True)
            self._data = self._hdul[self.extname].data
        return self._data

    def __getitem__(self, key):
        return np.asarray(self._open()[key], dtype=self.dtype)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_hdul"] = state["_data"] = None
        return state

    def close(self):
        if self._hdul is not None:
            self._hdul.close()
        self._hdul = self._data = None


def _cube_chunks(shape, max_spaxels=MAX_SPAXELS_PER_CHUNK):
    """Dask chunks (n_wave, cy, cx): the spectral axis whole, at most ``max_spaxels`` spaxels, full rows."""
    n_wave, ny, nx = shape
    if nx <= max_spaxels:
        return (n_wave, max(1, min(ny, max_spaxels // nx)), nx)
    return (n_wave, 1, max_spaxels)


# ----------------------------------------------------------------------------------------- MUSE cube
@dataclass
class MuseCube:
    """A MUSE cube read lazily: nothing is loaded until spectra are asked for.

    Attributes
    ----------
    path : Path
    wave_aa : ndarray, shape (n_wave,)
        Air wavelengths of the channels, Angstrom (converted with :func:`vacuum_to_air` when the file
        has vacuum wavelengths).
    flux : dask.array.Array, shape (n_wave, ny, nx)
        Flux density in ``flux_unit`` (``DATA``), chunked with the spectral axis whole.
    var : dask.array.Array, shape (n_wave, ny, nx)
        Variance in ``flux_unit**2`` (``STAT``).
    dq : dask.array.Array, shape (n_wave, ny, nx), or None
        Data-quality flags (0 = good), when the file has ``DQ``.
    wcs : astropy.wcs.WCS
        The celestial (2-D) WCS of the spaxel grid.
    flux_unit : astropy.units.Unit
        Parsed from ``BUNIT``, e.g. 1e-20 erg / (s cm2 Angstrom).
    header : astropy.io.fits.Header
        Header of the ``DATA`` extension.
    wave_frame_in_file : str
        ``"air"`` or ``"vacuum"``: what the file had (``wave_aa`` is always air).
    """

    path: Path
    wave_aa: np.ndarray
    flux: da.Array
    var: da.Array
    dq: da.Array | None
    wcs: WCS
    flux_unit: u.UnitBase
    header: fits.Header
    wave_frame_in_file: str = "air"
    _sources: dict = field(default_factory=dict, repr=False)

    @property
    def shape(self):
        """(ny, nx): the spaxel grid."""
        return tuple(self.flux.shape[1:])

    @property
    def n_wave(self):
        return self.flux.shape[0]

    def _read(self, name, iy, ix):
        iy, ix = np.broadcast_arrays(np.atleast_1d(np.asarray(iy, dtype=np.intp)), np.atleast_1d(ix))
        ny, nx = self.shape
        if iy.size and (iy.min() < 0 or ix.min() < 0 or iy.max() >= ny or ix.max() >= nx):
            raise IndexError(f"{self.path}: spaxel indices outside the {ny} x {nx} grid")
        # Sorted by position in the file so the memory map is read forwards.
        order = np.argsort(iy * nx + ix, kind="stable")
        out = np.empty((iy.size, self.n_wave), dtype=self._sources[name].dtype)
        out[order] = self._sources[name][:, iy[order], ix[order]].T
        return out

    def spectra(self, iy, ix, dtype=np.float64):
        """Flux and variance spectra of chosen spaxels, read from the memory map (not the whole cube).

        Parameters
        ----------
        iy, ix : int or ndarray, shape (n_spaxel,)
            Row and column of each spaxel (0-based, numpy order of the ``DATA`` image).
        dtype : numpy dtype
            Type of the returned arrays.

        Returns
        -------
        flux : ndarray, shape (n_spaxel, n_wave)
            In ``flux_unit``, as in the file (NaN where the cube has no data).
        var : ndarray, shape (n_spaxel, n_wave)
            In ``flux_unit**2``.
        """
        return self._read("flux", iy, ix).astype(dtype), self._read("var", iy, ix).astype(dtype)

    def dq_spectra(self, iy, ix):
        """``DQ`` flags of chosen spaxels, shape (n_spaxel, n_wave), or None when the cube has no ``DQ``."""
        return None if self.dq is None else self._read("dq", iy, ix)

    def close(self):
        """Close the memory-mapped file (the Dask arrays reopen it if used again)."""
        for source in self._sources.values():
            source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wavelength_axis(header, path, wave_frame, axis=3):
    """Channel wavelengths (air, Angstrom) and the frame the file had, from the spectral keywords of
    FITS axis ``axis`` (3 in a cube, 1 in a 1-D spectrum)."""
    a = int(axis)
    n_wave = int(header[f"NAXIS{a}"])
    missing = [k for k in (f"CRVAL{a}", f"CRPIX{a}") if k not in header]
    if f"CD{a}_{a}" in header:
        step = float(header[f"CD{a}_{a}"])
    elif f"CDELT{a}" in header:
        step = float(header[f"CDELT{a}"]) * float(header.get(f"PC{a}_{a}", 1.0))
    else:
        step = None
        missing.append(f"CD{a}_{a} or CDELT{a}")
    if missing:
        raise ValueError(
            f"{path}: the spectral axis lacks {', '.join(missing)}; a MUSE cube or spectrum has all of them"
        )
    wave = float(header[f"CRVAL{a}"]) + (np.arange(n_wave) + 1.0 - float(header[f"CRPIX{a}"])) * step
    # Units: CUNITa when given; else the FITS default (m, Greisen et al. 2006) for values that are optical
    # wavelengths in metres, and Angstrom for values that are optical wavelengths in Angstrom.
    cunit = header.get(f"CUNIT{a}")
    if cunit:
        try:
            scale = u.Unit(str(cunit).strip(), format="fits").to(u.AA)
        except (ValueError, u.UnitConversionError):
            try:
                scale = u.Unit(str(cunit).strip()).to(u.AA)
            except (ValueError, u.UnitConversionError):
                raise ValueError(
                    f"{path}: CUNIT{a} = {cunit!r} is not a length unit; set it to 'Angstrom' or 'm'"
                ) from None
    elif 1e-7 < abs(wave[0]) < 1e-5:
        scale = 1e10
    elif 1e3 < abs(wave[0]) < 1e5:
        scale = 1.0
    else:
        raise ValueError(f"{path}: no CUNIT{a} and CRVAL{a} = {wave[0]!r} is not a wavelength; set CUNIT{a}")
    wave_aa = wave * scale
    if np.any(np.diff(wave_aa) <= 0):
        raise ValueError(f"{path}: the wavelengths do not increase (CD{a}_{a}/CDELT{a} = {step})")

    ctype = str(header.get(f"CTYPE{a}", "")).strip().upper()
    frames = {formats.AIR_CTYPE: "air", formats.VACUUM_CTYPE: "vacuum"}
    file_frame = frames.get(ctype)
    if ctype and file_frame is None and ctype[:4] in frames:
        raise ValueError(
            f"{path}: CTYPE{a} = {ctype!r} is a non-linear spectral axis; only linear "
            f"'{formats.AIR_CTYPE}' (air) or '{formats.VACUUM_CTYPE}' (vacuum) axes are read"
        )
    if wave_frame not in (None, "air", "vacuum"):
        raise ValueError(f"wave_frame must be None, 'air' or 'vacuum', not {wave_frame!r}")
    if file_frame is None:
        if wave_frame is None:
            raise ValueError(
                f"{path}: CTYPE{a} = {ctype or 'missing'!r} does not say whether the wavelengths are in air "
                f"('{formats.AIR_CTYPE}') or vacuum ('{formats.VACUUM_CTYPE}'); pass wave_frame='air' or "
                "'vacuum' (MUSE pipeline cubes are in air)"
            )
        file_frame = wave_frame
    elif wave_frame is not None and wave_frame != file_frame:
        raise ValueError(
            f"{path}: wave_frame={wave_frame!r} contradicts CTYPE{a} = {ctype!r} ({file_frame}); "
            "leave wave_frame out"
        )
    if file_frame == "vacuum":
        wave_aa = vacuum_to_air(wave_aa)
    return wave_aa, file_frame


def read_muse_cube(path, wave_frame=None, max_spaxels_per_chunk=MAX_SPAXELS_PER_CHUNK):
    """Open a MUSE cube lazily (memory map + Dask).

    Parameters
    ----------
    path : str or Path
        FITS file with ``DATA`` and ``STAT`` extensions (and optionally ``DQ``).
    wave_frame : {None, "air", "vacuum"}
        Only for files whose ``CTYPE3`` is missing or unknown: the frame of their wavelengths.
    max_spaxels_per_chunk : int
        Bound on the spaxels in one Dask chunk (the spectral axis is never split).

    Returns
    -------
    MuseCube

    Raises
    ------
    ValueError
        A damaged or truncated file, not a 3-D cube, no ``STAT``, an unknown ``BUNIT``, a spectral
        axis that cannot be read, or wavelengths whose frame (air or vacuum) is not known. The
        message names the file and the fix.
    """
    path = Path(path)
    with _open_complete(path, memmap=True) as hdul:
        names = [h.name for h in hdul]
        if formats.CUBE_DATA_EXT not in names:
            raise ValueError(
                f"{path}: no '{formats.CUBE_DATA_EXT}' extension (extensions: {names}); a MUSE cube keeps "
                f"the flux in '{formats.CUBE_DATA_EXT}' and its variance in '{formats.CUBE_STAT_EXT}'"
            )
        header = hdul[formats.CUBE_DATA_EXT].header.copy()
        if header.get("NAXIS") != 3:
            raise ValueError(
                f"{path}: '{formats.CUBE_DATA_EXT}' has {header.get('NAXIS')} axes, not 3: not a data cube "
                "(for a MAPS file use read_maps, for an image read_hst_image)"
            )
        if formats.CUBE_STAT_EXT not in names:
            raise ValueError(
                f"{path}: no '{formats.CUBE_STAT_EXT}' (variance) extension; the network needs per-pixel "
                f"variances: append the variance cube as an image extension named '{formats.CUBE_STAT_EXT}' "
                "(same shape as DATA, in BUNIT squared), e.g. from the reduction pipeline's product"
            )
        shape = tuple(header[f"NAXIS{i}"] for i in (3, 2, 1))
        for ext in (formats.CUBE_STAT_EXT, formats.CUBE_DQ_EXT):
            if ext in names:
                other = hdul[ext].header
                other_shape = tuple(other.get(f"NAXIS{i}") for i in (3, 2, 1))
                if other.get("NAXIS") != 3 or other_shape != shape:
                    raise ValueError(f"{path}: '{ext}' has shape {other_shape}, 'DATA' has {shape}")
        has_dq = formats.CUBE_DQ_EXT in names
    flux_unit = parse_flux_unit(header.get("BUNIT"), path)
    wave_aa, file_frame = wavelength_axis(header, path, wave_frame)
    wcs = _celestial_wcs(header, path, "cube")

    chunks = _cube_chunks(shape, max_spaxels_per_chunk)
    sources = {
        "flux": _FitsImage(path, formats.CUBE_DATA_EXT),
        "var": _FitsImage(path, formats.CUBE_STAT_EXT),
    }
    if has_dq:
        sources["dq"] = _FitsImage(path, formats.CUBE_DQ_EXT)
    # Deterministic task names (the same file gives the same graph, in any process).
    token = tokenize(str(path.resolve()), path.stat().st_mtime_ns, max_spaxels_per_chunk)
    arrays = {
        k: da.from_array(s, chunks=chunks, name=f"{k}-{token}", meta=np.array((), s.dtype))
        for k, s in sources.items()
    }
    return MuseCube(
        path=path,
        wave_aa=wave_aa,
        flux=arrays["flux"],
        var=arrays["var"],
        dq=arrays.get("dq"),
        wcs=wcs,
        flux_unit=flux_unit,
        header=header,
        wave_frame_in_file=file_frame,
        _sources=sources,
    )


# ----------------------------------------------------------------------------------------- DAP maps
@dataclass
class DapMaps:
    """The 2-D maps of a MUSE DAP ``MAPS`` file, each read on first use.

    Attributes
    ----------
    path : Path
    names : tuple of str
        Extension names of every 2-D map in the file (``V_STARS``, ``HA6562_FLUX``, ...).
    wcs : astropy.wcs.WCS
        Celestial WCS of the maps (of the first map; all share the grid).
    shape : (int, int)
        (ny, nx).
    units : dict of str to str
        ``BUNIT`` of each map that has one.
    """

    path: Path
    names: tuple
    wcs: WCS
    shape: tuple
    units: dict
    _cache: dict = field(default_factory=dict, repr=False)

    def __contains__(self, name):
        return name.upper() in self.names

    def __getitem__(self, name):
        """One map as float64, shape (ny, nx) (``V_STARS`` in km/s, ``AGE_LW`` in log10 yr, ...)."""
        name = name.upper()
        if name not in self.names:
            raise KeyError(f"{self.path}: no map {name!r}; it has {list(self.names)}")
        if name not in self._cache:
            with fits.open(self.path, memmap=True) as hdul:
                self._cache[name] = np.array(hdul[name].data, dtype=np.float64)
        return self._cache[name]

    def error_name(self, name):
        """Extension name of the error of ``name`` (``{NAME}_ERR`` or ``FORM_ERR_{NAME}``), or None."""
        for template in formats.MAPS_ERROR_NAMES:
            candidate = template.format(name=name.upper())
            if candidate in self.names:
                return candidate
        return None

    def error(self, name):
        """The error map of ``name``, shape (ny, nx), or None when the file has none."""
        err = self.error_name(name)
        return None if err is None else self[err]

    @property
    def quantities(self):
        """The maps of :data:`formats.MAPS_EXTENSIONS` and the line fluxes present (errors left out)."""
        lines = [f"{line}_FLUX" for line in formats.MAPS_LINES]
        return [n for n in (*formats.MAPS_EXTENSIONS, *lines) if n in self.names and "ERR" not in n]


def read_maps(path, cube=None):
    """Open a MUSE DAP ``MAPS`` file (maps are read on first use).

    Parameters
    ----------
    path : str or Path
    cube : MuseCube, optional
        When given, the maps must lie on the cube's spaxel grid (same shape; the sky positions of the
        corners and centre within 0.1 pixel).

    Returns
    -------
    DapMaps

    Raises
    ------
    ValueError
        No 2-D map with a celestial WCS, or a grid other than the cube's (another galaxy, another
        resolution or mosaic): the message names both files.
    """
    path = Path(path)
    names, units, wcs, shape = [], {}, None, None
    with fits.open(path, memmap=True) as hdul:
        for hdu in hdul:
            if not isinstance(hdu, fits.ImageHDU | fits.PrimaryHDU) or hdu.header.get("NAXIS") != 2:
                continue
            name = hdu.name.upper()
            names.append(name)
            if "BUNIT" in hdu.header:
                units[name] = str(hdu.header["BUNIT"])
            if wcs is None:
                wcs = _celestial_wcs(hdu.header, path, f"map {name!r}")
                shape = (hdu.header["NAXIS2"], hdu.header["NAXIS1"])
    if not names:
        raise ValueError(
            f"{path}: no 2-D map; a DAP MAPS file has one image extension per quantity (V_STARS, ...)"
        )
    if cube is not None and not _same_grid(cube.wcs, cube.shape, wcs, shape):
        raise ValueError(
            f"{path}: the maps ({shape[0]} x {shape[1]}) are not on the spaxel grid of the cube {cube.path} "
            f"({cube.shape[0]} x {cube.shape[1]}): another galaxy, resolution or mosaic? Use the MAPS file "
            "made from this cube (the same galaxy and copt/native resolution)"
        )
    return DapMaps(path=path, names=tuple(names), wcs=wcs, shape=shape, units=units)


# ----------------------------------------------------------------------------------------- catalogues
def _as_float(column):
    """A float64 array with -9999 and non-finite values (and masked entries) as NaN."""
    values = np.ma.filled(np.ma.asarray(column, dtype=np.float64), np.nan)
    values[(values == formats.MISSING_VALUE) | ~np.isfinite(values)] = np.nan
    return values


def _find_flux_columns(lower, path):
    """(release index, bands used, [(flux column, error column)] in the model band order)."""
    best = None
    for release in range(len(formats.CATALOGUE_FLUX_COLUMNS)):
        found, missing, bands = [], [], []
        for band in formats.CATALOGUE_BANDS:
            choices = [band] + (
                [formats.CATALOGUE_ALT_BANDS[band]] if band in formats.CATALOGUE_ALT_BANDS else []
            )
            for choice in choices:
                cols = [
                    formats.catalogue_flux_column(choice, release, error=e).lower() for e in (False, True)
                ]
                if all(c in lower for c in cols):
                    found.append(tuple(lower[c] for c in cols))
                    bands.append(choice)
                    break
            else:
                missing.append(
                    " or ".join(formats.catalogue_flux_column(c, release) for c in choices) + " (+ error)"
                )
        if not missing:
            return release, bands, found
        if best is None or len(missing) < len(best):
            best = missing
    releases = ", ".join(t[0] for t in formats.CATALOGUE_FLUX_COLUMNS)
    raise ValueError(
        f"{path}: not a PHANGS-HST catalogue with the five bands: missing {', '.join(best)}. Known flux "
        f"columns ({releases}, matched without case); convert the file's columns to one of these"
    )


def read_cluster_catalogue(path):
    """Read a PHANGS-HST cluster or compact-association catalogue into one normalised table.

    Parameters
    ----------
    path : str or Path
        FITS (or any astropy-readable) table with the release's column names
        (:data:`formats.CATALOGUE_FLUX_COLUMNS`, :data:`formats.CATALOGUE_COLUMNS`), matched without case.

    Returns
    -------
    astropy.table.Table
        ``id`` (the catalogue's, else the row index), ``ra``, ``dec`` (deg), ``flux_mjy`` and
        ``flux_err_mjy`` (n, 5) in the model's band order :data:`formats.CATALOGUE_BANDS` (F435W in the
        F438W slot where the file has F435W), NaN where the file has -9999 or a non-finite value (no
        coverage), and whichever of ``x``, ``y``, ``class_human``, ``class_ml``, ``age_myr``,
        ``mass_msun``, ``ebv_mag`` (and their ``_err``), ... the file has (floats: -9999 -> NaN).
        ``meta``: ``path``, ``bands`` (catalogue band names used), ``filters`` (their pyphot names),
        ``flux_columns`` (the file's columns).

    Raises
    ------
    ValueError
        Five bands not found in any known release's names, or no position columns.
    """
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        table = Table.read(path)
    lower = {name.lower(): name for name in table.colnames}
    _, bands, columns = _find_flux_columns(lower, path)
    pos = [formats.CATALOGUE_COLUMNS[k] for k in ("ra", "dec")]
    missing = [c for c in pos if c.lower() not in lower]
    if missing:
        raise ValueError(f"{path}: no position column {missing} (deg, ICRS); add them to use the catalogue")

    out = Table(
        meta={"path": str(path), "bands": bands, "filters": [formats.BAND_TO_FILTER[b] for b in bands]}
    )
    out.meta["flux_columns"] = [c for pair in columns for c in pair]
    id_col = formats.CATALOGUE_COLUMNS["id"].lower()
    out["id"] = np.asarray(table[lower[id_col]]) if id_col in lower else np.arange(len(table))
    out["ra"] = _as_float(table[lower[pos[0].lower()]])
    out["dec"] = _as_float(table[lower[pos[1].lower()]])
    flux = np.stack([_as_float(table[f]) for f, _ in columns], axis=1)
    err = np.stack([_as_float(table[e]) for _, e in columns], axis=1)
    err[np.isnan(flux)] = np.nan
    out["flux_mjy"] = flux
    out["flux_err_mjy"] = err
    for key, name in formats.CATALOGUE_COLUMNS.items():
        if key in ("id", "ra", "dec") or name.lower() not in lower:
            continue
        column = table[lower[name.lower()]]
        kind = np.asarray(column).dtype.kind
        out[key] = _as_float(column) if kind == "f" else np.ma.filled(np.ma.asarray(column))
    out["ra"].unit = out["dec"].unit = u.deg
    out["flux_mjy"].unit = out["flux_err_mjy"].unit = u.mJy
    return out


# ----------------------------------------------------------------------------------------- HST images
@dataclass
class HstImage:
    """A flux-calibrated HST image.

    Attributes
    ----------
    path : Path
    data : dask.array.Array, shape (ny, nx)
        Flux density per pixel, erg/s/cm2/A (:data:`FLAM_UNIT`), float64, lazy over a memory map.
    wcs : astropy.wcs.WCS
        Celestial WCS.
    band : str or None
        Catalogue band name (``"F555W"``) from ``FILTER``/``FILTER1``/``FILTER2`` or the caller.
    filter : str or None
        Its pyphot name.
    pivot_aa : float or None
        Pivot wavelength (``PHOTPLAM``, else the filter curve's), Angstrom.
    flam_per_unit : float
        The factor that took the file's values to erg/s/cm2/A per pixel.
    header : astropy.io.fits.Header
    """

    path: Path
    data: da.Array
    wcs: WCS
    band: str | None
    filter: str | None
    pivot_aa: float | None
    flam_per_unit: float
    header: fits.Header


def _image_hdu(hdul):
    names = [h.name for h in hdul]
    if formats.HST_SCI_EXT in names and hdul[formats.HST_SCI_EXT].header.get("NAXIS") == 2:
        return formats.HST_SCI_EXT
    for i, hdu in enumerate(hdul):
        if hdu.is_image and hdu.header.get("NAXIS") == 2:
            return i
    return None


def _band_from_header(header, path, band):
    if band is None:
        for key in formats.HST_FILTER_KEYS:
            value = str(header.get(key, "")).strip().upper()
            if value in formats.BAND_TO_FILTER:
                band = value
                break
    elif band.upper() not in formats.BAND_TO_FILTER:
        raise ValueError(f"{path}: band {band!r} is not one of {sorted(formats.BAND_TO_FILTER)}")
    return None if band is None else band.upper()


def _flam_factor(header, path, pivot_aa, pixel_sr):
    """Factor from the file's pixel values to erg/s/cm2/A per pixel (see :func:`read_hst_image`)."""
    fix = (
        f"add {formats.HST_PHOTFLAM} (erg/s/cm2/A per e-/s) and {formats.HST_PHOTPLAM} (A) as in the "
        "drizzled HST products, or a BUNIT in a flux-density unit (erg/s/cm2/A, Jy, MJy/sr)"
    )
    bunit = str(header.get("BUNIT", "")).strip()
    count_rate = bunit.upper().replace(" ", "") in formats.HST_COUNT_RATE_UNITS
    if formats.HST_PHOTFLAM in header and (count_rate or not bunit):
        return float(header[formats.HST_PHOTFLAM])
    if not bunit or count_rate:
        raise ValueError(
            f"{path}: no flux calibration ({bunit or 'no BUNIT'}, no {formats.HST_PHOTFLAM}); {fix}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)
            unit = u.Unit(bunit)
    except ValueError:
        raise ValueError(f"{path}: BUNIT = {bunit!r} is not a unit astropy reads; {fix}") from None
    if unit.is_equivalent(u.Jy / u.sr):
        unit = u.CompositeUnit(pixel_sr, [unit, u.sr], [1, 1])  # surface brightness -> per pixel
    if unit.is_equivalent(FLAM_UNIT):
        return unit.to(FLAM_UNIT)
    if unit.is_equivalent(u.Jy):
        if pivot_aa is None:
            raise ValueError(f"{path}: BUNIT = {bunit!r} is per frequency; the band is unknown: pass band=")
        return unit.to(FLAM_UNIT, equivalencies=u.spectral_density(pivot_aa * u.AA))
    raise ValueError(f"{path}: BUNIT = {bunit!r} is not a flux density; {fix}")


def read_hst_image(path, band=None):
    """Open an HST image and calibrate it to f_lambda per pixel.

    Calibration, first that applies: ``PHOTFLAM`` when ``BUNIT`` is a count rate (electrons/s) or
    missing (f_lambda = value x PHOTFLAM); else ``BUNIT`` converted with astropy units: f_lambda
    units directly, f_nu (Jy) at the pivot wavelength (``u.spectral_density``), surface brightness
    (MJy/sr) times the pixel solid angle from the WCS first.

    Parameters
    ----------
    path : str or Path
        FITS image: a ``SCI`` extension, else the first 2-D image HDU. Keywords are looked up in
        that HDU's header, then in the primary header.
    band : str, optional
        Catalogue band name (``"F275W"``), when the header's ``FILTER`` keywords do not say.

    Returns
    -------
    HstImage

    Raises
    ------
    ValueError
        No 2-D image, no celestial WCS, or no flux calibration: the message names the file and the fix.
    """
    path = Path(path)
    with fits.open(path, memmap=True) as hdul:
        ext = _image_hdu(hdul)
        if ext is None:
            raise ValueError(f"{path}: no 2-D image (HDUs: {[h.name for h in hdul]})")
        header = hdul[0].header.copy() if ext != 0 else fits.Header()
        header.update(hdul[ext].header)
    wcs = _celestial_wcs(header, path, "image")
    band = _band_from_header(header, path, band)
    filt = None if band is None else formats.BAND_TO_FILTER[band]
    if formats.HST_PHOTPLAM in header:
        pivot_aa = float(header[formats.HST_PHOTPLAM])
    elif filt is not None:
        pivot_aa = float(pivot_wavelengths([filt])[0])
    else:
        pivot_aa = None
    pixel_sr = (proj_plane_pixel_area(wcs) * u.deg**2).to_value(u.sr)
    factor = float(_flam_factor(header, path, pivot_aa, pixel_sr))
    source = _FitsImage(path, ext)
    raw = da.from_array(
        source, chunks=(min(source.shape[0], 2048), source.shape[1]), meta=np.array((), source.dtype)
    )
    return HstImage(
        path=path,
        data=raw.astype(np.float64) * factor,
        wcs=wcs,
        band=band,
        filter=filt,
        pivot_aa=pivot_aa,
        flam_per_unit=factor,
        header=header,
    )


# ----------------------------------------------------------------------------------------- MaNGA spectra
MANGA_EXTENSIONS = ("WAVE", "FLUX", "IVAR", "MASK", "SRES", "Z")
MANGA_FLUX_UNIT = 1e-17 * FLAM_UNIT  # MaNGA DRP flux densities (Law et al. 2016)


@dataclass
class MangaSpectra:
    """Spectra in the layout of the MaNGA DRP (row-stacked spectra of a ``LOGCUBE``).

    Attributes
    ----------
    path : Path
    wave_aa : ndarray, shape (n_wave,)
        Observed-frame **air** wavelengths, Angstrom (the DRP's vacuum wavelengths converted with
        :func:`vacuum_to_air`, so that they match the air-wavelength models and MUSE).
    flux : ndarray, shape (n, n_wave)
        Flux density, 1e-17 erg / s / cm^2 / Angstrom (:data:`MANGA_FLUX_UNIT`).
    var : ndarray, shape (n, n_wave)
        Its variance, NaN where the DRP masks the pixel (``MASK`` != 0) or ``IVAR`` <= 0.
    resolution : ndarray, shape (n, n_wave)
        Spectral resolution R = lambda / FWHM of each pixel (``SRES``; NaN where not positive).
    z : ndarray, shape (n,)
        Redshift of each spectrum.
    """

    path: Path
    wave_aa: np.ndarray
    flux: np.ndarray
    var: np.ndarray
    resolution: np.ndarray
    z: np.ndarray

    def __len__(self):
        return self.flux.shape[0]


def read_manga_spectra(path):
    """Read MaNGA DRP spectra stored as image extensions ``WAVE``, ``FLUX``, ``IVAR``, ``MASK``,
    ``SRES`` and ``Z`` (the layout of the test spectra of the MaNGA DAP, see
    :func:`sfh_ml.observations.manga_test_spectra_path`).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    MangaSpectra

    Raises
    ------
    ValueError
        A missing extension, arrays of disagreeing shapes, or wavelengths that are not increasing
        Angstrom: the message names the file.
    """
    path = Path(path)
    with fits.open(path) as hdul:
        names = {hdu.name.upper() for hdu in hdul}
        missing = [name for name in MANGA_EXTENSIONS if name not in names]
        if missing:
            raise ValueError(
                f"{path}: no extension(s) {missing}; a file of MaNGA spectra needs {list(MANGA_EXTENSIONS)}"
            )
        data = {name: np.array(hdul[name].data, dtype=np.float64) for name in MANGA_EXTENSIONS}
    wave = data["WAVE"]
    flux = np.atleast_2d(data["FLUX"])
    z = np.atleast_1d(data["Z"])
    for name in ("IVAR", "MASK", "SRES"):
        if np.atleast_2d(data[name]).shape != flux.shape:
            raise ValueError(f"{path}: {name} has shape {data[name].shape}, FLUX {flux.shape}")
    if wave.ndim != 1 or wave.size != flux.shape[1] or z.size != flux.shape[0]:
        raise ValueError(
            f"{path}: WAVE has shape {wave.shape} and Z {z.shape} for FLUX of shape {flux.shape} "
            "(expected (n_wave,) and (n,) for (n, n_wave))"
        )
    wave = check_wave_aa(wave, f"{path}: WAVE", increasing=True)
    ivar = np.atleast_2d(data["IVAR"])
    good = (np.atleast_2d(data["MASK"]) == 0) & (ivar > 0) & np.isfinite(flux)
    with np.errstate(divide="ignore"):
        var = np.where(good, 1.0 / np.where(good, ivar, 1.0), np.nan)
    sres = np.atleast_2d(data["SRES"])
    return MangaSpectra(
        path=path,
        wave_aa=vacuum_to_air(wave),
        flux=np.where(good, flux, np.nan),
        var=var,
        resolution=np.where(sres > 0, sres, np.nan),
        z=z,
    )
