"""The container of spectra of any instrument: :class:`Spectra`, what :func:`read_spectra` gives."""

from dataclasses import dataclass, field

import astropy.units as u
import numpy as np

__all__ = ["MEDIA", "FRAMES", "Spectra"]

MEDIA = ("air", "vacuum")
FRAMES = ("observed", "rest")


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
