"""Reading spectra of any instrument into one :class:`~.container.Spectra` (:func:`read_spectra`):
the format recognised, each file read, the caller's resolution and redshift, the files stacked."""

import os
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning

from ..readers import MANGA_EXTENSIONS, vacuum_to_air
from .container import FRAMES, Spectra
from .fits_files import read_manga, read_muse_1d, read_sdss
from .parts import FITS_SUFFIXES, TABLE_FORMATS
from .tables import from_specutils, read_table

__all__ = ["read_spectra"]


def _read_one(item, medium, snr, format):
    """One file or object, in :func:`file_part`'s layout."""
    if hasattr(item, "spectral_axis") and hasattr(item, "flux"):
        return from_specutils(item, medium, snr, "<Spectrum>")
    if isinstance(item, Table):
        return read_table(Path("<Table>"), medium, snr, table=item.copy(copy_data=False))
    path = Path(item)
    if not path.is_file():
        raise FileNotFoundError(f"no such spectrum file: {path}")
    if format in ("table", "ecsv", "csv") or "".join(path.suffixes[-1:]).lower() in TABLE_FORMATS:
        return read_table(path, medium, snr)
    if not path.name.lower().endswith(FITS_SUFFIXES) and format is None:
        return read_table(path, medium, snr)  # astropy guesses the format
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
        readers = {"sdss": read_sdss, "manga": read_manga, "muse": read_muse_1d}
        if kind in readers:
            return readers[kind](path, hdul, medium, snr)
        if kind == "table":
            hdu = next(i for i, h in enumerate(hdul) if isinstance(h, fits.BinTableHDU))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", u.UnitsWarning)
                table = Table.read(hdul[hdu])
            table.meta.update({k: v for k, v in header.items() if k not in table.meta})
            return read_table(path, medium, snr, table=table)
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
