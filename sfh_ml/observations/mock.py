"""A mock PHANGS galaxy in the release's file formats, made with the project's own synthesizer.

:func:`write_mock_galaxy` writes, into one folder,

* ``{NAME}.fits``: a MUSE cube (``DATA``, ``STAT`` variance, ``DQ``) with celestial and spectral
  WCS, in the observed frame: systemic redshift plus a rotating disc, each spaxel at its own
  stellar dispersion, Milky Way foreground extinction applied (F99, R_V = 3.1), noise from a
  photon + read noise model with sky lines (S/N falling with radius) and sky-subtraction
  residuals in the windows of :data:`~sfh_ml.observations.prepare.SKY_LINE_WINDOWS_AA`, no
  coverage (NaN, ``DQ`` = 2) in the corners, a few bad voxels (a spike in ``DATA``, ``DQ`` = 1;
  ``DQ`` is uint8);
* ``{NAME}_MAPS.fits``: DAP-like maps (kinematics, dust, the true ages and metallicities, S/N,
  H-alpha), one image per extension with the cube's celestial WCS;
* five HST images (``PHOTFLAM``/``PHOTPLAM``, e-/s, finer pixels and PSF), F275W without coverage
  over a strip;
* a cluster catalogue with the release's column names (mJy, Milky-Way corrected, -9999 where F275W
  has no coverage);
* ``{NAME}_TRUTH.fits`` and ``{NAME}_TRUTH.json``: the true maps, the clusters and the parameters.

The galaxy is a disc scaled down to fit the field: its scale length r_d is a fixed fraction of
the field (the field's half-width is :data:`FIELD_HALF_WIDTH_RD` r_d), so the radial gradients
span the field whatever its size. They are set per scale length to what a real disc with
r_d = 3 kpc and a -0.1 dex/kpc [M/H] gradient has (-0.3 dex per r_d, :data:`ZH_GRADIENT_PER_RD`);
the JSON also gives them per arcsec and per kpc at the mock's distance, where they are far steeper
than in real galaxies (at 10 Mpc the disc of a 60 x 60 mock is 26 times smaller than a real one).

Populations: each spaxel is one skew-normal history whose peak age falls with radius (old centre,
younger outskirts), with a chemical track whose final [M/H] falls with radius; a one-armed
logarithmic spiral carries a recent burst (5-50 Myr, 20 Myr long, a few % of the mass); a small
bulge raises the dispersion (up to ~120 km/s) and the surface density in the centre. Star
clusters (ages log-spaced from 2 Myr to 1 Gyr, young ones on the arm; 10^5 to 10^6 M_sun formed,
so that each dominates its MUSE aperture) are single bursts convolved with the MUSE PSF (Gaussian)
in the cube and with the HST PSF in the images, on top of the disc, at the local disc's [M/H],
dust, velocity and dispersion.
The disc itself is not convolved (it is smooth on the PSF's scale; the truth maps are at native
resolution).
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import ndtr
from tqdm import tqdm

from ..constants import ARCSEC_PER_RAD, C_KMS, FWHM_TO_SIGMA, HALPHA_LABEL, MAX_AGE_YR, V_WAVE_AA, ZH_RANGE
from ..files import check_output, tmp_path
from . import formats as fmt
from .binning import continuum_snr
from .prepare import MW_LAW, MW_R_V, SKY_LINE_WINDOWS_AA, mw_transmission

__all__ = ["MockGalaxy", "mock_paths", "write_mock_galaxy", "load_mock_truth", "DQ_BAD", "DQ_NO_COVERAGE"]

DEFAULT_NAME = "MOCKGAL"
HALPHA_MAPS_LINE = fmt.MAPS_LINES[3]  # HA6562
DEFAULT_CENTRE_DEG = (150.1, 2.2)  # RA, Dec of the galaxy's centre (an empty patch of sky)
CM_PER_MPC = 3.0856775814913673e24
UNIT_CGS = 1e-20  # the cube's BUNIT is 10**(-20) erg/s/cm2/A

# Geometry and populations (see the module docstring).
FIELD_HALF_WIDTH_RD = 2.5  # half-width of the field (its shorter side) in disc scale lengths
ZH_CENTRE = 0.15  # final [M/H] of the gas at the centre
ZH_GRADIENT_PER_RD = -0.3  # d[M/H]/dR: -0.1 dex/kpc for r_d = 3 kpc
ZH_ENRICHMENT = 0.4  # zh_final - zh_start of each spaxel's chemical track
LOG_PEAK_AGE_CENTRE = 10.0  # log10 peak age (yr) of the star formation at the centre ...
LOG_PEAK_AGE_GRADIENT_PER_RD = -0.22  # ... and its gradient (inside-out growth)
SIGMA_DISC_KMS = (40.0, 35.0, 1.2)  # disc dispersion: 40 + 35 exp(-R / 1.2 r_d) km/s
SIGMA_BULGE_KMS = (90.0, 0.3)  # bulge dispersion in quadrature: 90 exp(-(R / 0.3 r_d)^2) km/s
SURFACE_DENSITY_MSUN_PC2 = 2000.0  # mass formed per pc^2 at the centre of the disc
BULGE_CONTRAST, BULGE_RD = 1.5, 0.15  # bulge surface density (x the disc's) and scale, r_d
ARM_PITCH_DEG, ARM_WIDTH_RD, ARM_RANGE_RD = 20.0, 0.2, (0.5, 2.6)
ARM_BURST_FRAC = 0.03  # mass fraction of the arm's burst on the arm's ridge
ARM_BURST_DURATION_YR = 2e7
TAU_ISM_CENTRE, TAU_ISM_ARM, TAU_BC = 0.5, 0.4, 1.0
LOG_U, SIGMA_GAS_KMS = -3.0, 30.0
B_WAVE_AA = 4400.0  # effective wavelength of the B band, for E(B-V) of the attenuation law
MAG_PER_TAU = 2.5 / np.log(10.0)


# Instrument and noise.
REST_STEP_AA = 1.25 / 3  # rest-frame grid of the synthesis, resampled to the observed frame (Keys cubic)
COVERAGE_SIDE, POINTING_ROTATION_DEG = 0.92, 8.0  # the MUSE pointing: a rotated square inside the grid
SKY_FRACTION = 0.05  # sky continuum, in units of the central spaxel's continuum
SKY_LINE_PEAK, SKY_LINE_SIGMA_AA = 30.0, 1.1  # sky lines (x the sky continuum) in the narrow sky windows
SKY_RESIDUAL_RMS = 0.02  # rms fraction of each sky line left by the sky subtraction, per spaxel
READ_NOISE_FRACTION = 0.2  # read noise sigma, in units of the central spaxel's noise
DQ_BAD_FRACTION = 1e-4  # voxels flagged as bad (with a spike in DATA)
DQ_BAD = 1  # DQ value of a bad voxel (cosmic ray, hot pixel)
DQ_NO_COVERAGE = 2  # DQ value of a spaxel outside the pointing
HST_NOISE_FRACTION = 0.01  # sky noise of the HST images, in units of their median disc level
# Inverse sensitivities of WFC3/UVIS (erg/s/cm2/A per e-/s, order of formats.CATALOGUE_BANDS;
# rounded instrument-handbook values): they only set the count scale of the mock images.
MOCK_PHOTFLAM = (3.2e-18, 1.3e-18, 6.7e-19, 1.9e-19, 1.5e-19)
CLUSTER_LOG_MASS = (5.0, 6.0)  # log10 mass formed of the youngest (2 Myr) and oldest (1 Gyr) cluster
CLUSTER_FLUX_REL_ERR = 0.05  # quoted catalogue errors (the catalogue fluxes themselves are noise-free)


@dataclass(frozen=True)
class MockGalaxy:
    """The files of a mock galaxy.

    Attributes
    ----------
    name : str
    cube, maps, catalogue, truth, truth_json : pathlib.Path
    images : dict of str -> pathlib.Path
        One HST image per band of :data:`sfh_ml.observations.formats.CATALOGUE_BANDS`.
    params : dict
        The parameters it was made with (the content of ``truth_json``).
    """

    name: str
    cube: Path
    maps: Path
    images: dict
    catalogue: Path
    truth: Path
    truth_json: Path
    params: dict

    @property
    def paths(self):
        """Every file, as a list of Path."""
        return [self.cube, self.maps, *self.images.values(), self.catalogue, self.truth, self.truth_json]


def mock_paths(folder, name=DEFAULT_NAME):
    """Where :func:`write_mock_galaxy` writes each file.

    The catalogue is one table with classes 1 to 3 (the release splits clusters, classes 1-2,
    and compact associations, class 3, into two files with the same columns).

    Returns
    -------
    dict
        ``cube``, ``maps``, ``catalogue``, ``truth``, ``truth_json`` (Path) and ``images`` (dict of
        band -> Path).
    """
    folder = Path(folder)
    gal = name.lower()
    return dict(
        cube=folder / f"{name}.fits",
        maps=folder / f"{name}_MAPS.fits",
        images={
            b: folder / f"hlsp_phangs-hst_hst_wfc3-uvis_{gal}_{b.lower()}_v1_exp-drc-sci.fits"
            for b in fmt.CATALOGUE_BANDS
        },
        catalogue=folder / f"hlsp_phangs-cat_hst_uvis_{gal}_multi_v1_obs-human-cluster-class123.fits",
        truth=folder / f"{name}_TRUTH.fits",
        truth_json=folder / f"{name}_TRUTH.json",
    )


# ----------------------------------------------------------------------------------------- geometry


def _celestial_header(shape, pixel_arcsec, centre_deg, naxis=2):
    """FITS keywords of a TAN celestial WCS (CD matrix, north up, east left) centred on the grid."""
    from astropy.io import fits

    ny, nx = shape
    scale = pixel_arcsec / 3600.0
    h = fits.Header()
    h["WCSAXES"] = naxis
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    h["CRVAL1"], h["CRVAL2"] = float(centre_deg[0]), float(centre_deg[1])
    h["CRPIX1"], h["CRPIX2"] = (nx + 1) / 2.0, (ny + 1) / 2.0
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -scale, 0.0, 0.0, scale
    h["RADESYS"], h["EQUINOX"] = "ICRS", 2000.0
    return h


def _cube_header(shape, wave_aa, centre_deg):
    """The DATA/STAT header of a MUSE cube: celestial WCS and the air-wavelength axis."""
    from ..synthesis.instrument import MUSE_DWAVE_AA

    h = _celestial_header(shape, fmt.MUSE_SPAXEL_ARCSEC, centre_deg, naxis=3)
    h["CTYPE3"], h["CUNIT3"] = fmt.AIR_CTYPE, "Angstrom"
    h["CRVAL3"], h["CRPIX3"], h["CD3_3"] = float(wave_aa[0]), 1.0, MUSE_DWAVE_AA
    h["CD1_3"] = h["CD2_3"] = h["CD3_1"] = h["CD3_2"] = 0.0
    return h


def _disc_coordinates(x_pix, y_pix, shape, r_d_arcsec, inclination_deg, pa_deg):
    """Deprojected radius (r_d) and azimuth (rad, from the receding major axis) of pixel positions."""
    ny, nx = shape
    east = -(np.asarray(x_pix) - (nx - 1) / 2.0) * fmt.MUSE_SPAXEL_ARCSEC
    north = (np.asarray(y_pix) - (ny - 1) / 2.0) * fmt.MUSE_SPAXEL_ARCSEC
    pa, inc = np.radians(pa_deg), np.radians(inclination_deg)
    x_maj = east * np.sin(pa) + north * np.cos(pa)
    y_disc = (-east * np.cos(pa) + north * np.sin(pa)) / np.cos(inc)
    return np.hypot(x_maj, y_disc) / r_d_arcsec, np.arctan2(y_disc, x_maj)


def _disc_to_pixel(r_rd, theta, shape, r_d_arcsec, inclination_deg, pa_deg):
    """Inverse of :func:`_disc_coordinates`."""
    ny, nx = shape
    pa, inc = np.radians(pa_deg), np.radians(inclination_deg)
    x_maj = r_rd * r_d_arcsec * np.cos(theta)
    y_min = r_rd * r_d_arcsec * np.sin(theta) * np.cos(inc)
    east = x_maj * np.sin(pa) - y_min * np.cos(pa)
    north = x_maj * np.cos(pa) + y_min * np.sin(pa)
    return (nx - 1) / 2.0 - east / fmt.MUSE_SPAXEL_ARCSEC, (ny - 1) / 2.0 + north / fmt.MUSE_SPAXEL_ARCSEC


def _arm_angle(r_rd):
    """Azimuth of the spiral arm's ridge at radius ``r_rd`` (a logarithmic spiral)."""
    return np.log(np.maximum(r_rd, 1e-3) / ARM_RANGE_RD[0]) / np.tan(np.radians(ARM_PITCH_DEG))


def _arm_strength(r_rd, theta):
    """0-1 weight of the spiral arm (Gaussian across its ridge, tapered at its ends)."""
    dtheta = np.angle(np.exp(1j * (theta - _arm_angle(r_rd))))
    d = r_rd * dtheta * np.sin(np.radians(ARM_PITCH_DEG))
    lo, hi = ARM_RANGE_RD
    taper = np.clip((r_rd - lo) / 0.3, 0, 1) * np.clip((hi - r_rd) / 0.3, 0, 1)
    return np.exp(-0.5 * (d / ARM_WIDTH_RD) ** 2) * taper


def _coverage(shape):
    """True for spaxels inside the MUSE pointing (a square rotated by a few degrees)."""
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx]
    return _distance_inside(x, y, shape) >= 0


def _distance_inside(x, y, shape):
    """Distance (spaxels) of positions inside the pointing's edge (negative outside)."""
    ny, nx = shape
    a = np.radians(POINTING_ROTATION_DEG)
    dx, dy = np.asarray(x) - (nx - 1) / 2.0, np.asarray(y) - (ny - 1) / 2.0
    u = dx * np.cos(a) + dy * np.sin(a)
    v = -dx * np.sin(a) + dy * np.cos(a)
    half = COVERAGE_SIDE * min(nx, ny) / 2.0
    return half - np.maximum(np.abs(u), np.abs(v))


def _sky_lines(wave_aa):
    """Night-sky lines (in units of the sky continuum) at the centres of the narrow sky windows."""
    w = SKY_LINE_WINDOWS_AA
    centres = w[(w[:, 1] - w[:, 0]) <= 20.0].mean(axis=1)
    return SKY_LINE_PEAK * np.exp(-0.5 * ((wave_aa[:, None] - centres) / SKY_LINE_SIGMA_AA) ** 2).sum(axis=1)


def _gaussian_image(shape, x0, y0, fwhm_pix):
    """Gaussian PSF of unit total flux integrated over each pixel, shape (ny, nx)."""
    ny, nx = shape
    s = fwhm_pix * FWHM_TO_SIGMA
    ex = ndtr((np.arange(nx) + 0.5 - x0) / s) - ndtr((np.arange(nx) - 0.5 - x0) / s)
    ey = ndtr((np.arange(ny) + 0.5 - y0) / s) - ndtr((np.arange(ny) - 0.5 - y0) / s)
    return ey[:, None] * ex[None, :]


def _ebv(tau_v):
    """E(B-V) (mag) of a screen of V optical depth ``tau_v`` with the synthesizer's attenuation law."""
    from ..synthesis.dust import optical_depth

    tau_b, tau_vv = optical_depth(np.array([B_WAVE_AA, V_WAVE_AA]), np.asarray(tau_v, dtype=float)).T
    return MAG_PER_TAU * (tau_b - tau_vv)


# ----------------------------------------------------------------------------------------- populations


def _params(tau_ism, sigma_kms):
    """Synthesis parameters: the given ISM optical depths and dispersions, the mock's other values."""
    from ..synthesis import SynthesisParams

    one = np.ones(np.size(tau_ism))
    return SynthesisParams(
        tau_bc=TAU_BC * one,
        tau_ism=tau_ism,
        log_u=LOG_U * one,
        sigma_kms=sigma_kms,
        sigma_gas_kms=SIGMA_GAS_KMS * one,
        snr=100.0 * one,  # no noise is drawn by the synthesizer: the cube has its own noise model
        snr_phot=100.0 * one,
    )


def _disc_model(shape, r_d_arcsec, cfg):
    """Per-spaxel disc populations, kinematics and dust (flattened, row-major)."""
    from ..synthesis import SkewNormalBurst

    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx]
    r, theta = _disc_coordinates(
        x.ravel(), y.ravel(), shape, r_d_arcsec, cfg["inclination_deg"], cfg["pa_deg"]
    )
    arm = _arm_strength(r, theta)
    peak = 10 ** (LOG_PEAK_AGE_CENTRE + LOG_PEAK_AGE_GRADIENT_PER_RD * r)
    zh_final = np.clip(ZH_CENTRE + ZH_GRADIENT_PER_RD * r, ZH_RANGE[0] + ZH_ENRICHMENT, ZH_RANGE[1])
    burst_frac = np.where(arm > 0.02, ARM_BURST_FRAC * arm, 0.0)
    burst_age = 5e6 * 10 ** ((r - ARM_RANGE_RD[0]) / (ARM_RANGE_RD[1] - ARM_RANGE_RD[0]))  # 5-50 Myr
    sfh = SkewNormalBurst().batch(
        peak,
        0.5 * peak,
        np.zeros_like(r),
        burst_age,
        np.full_like(r, ARM_BURST_DURATION_YR),
        burst_frac,
        zh_final - ZH_ENRICHMENT,
        zh_final,
        np.ones_like(r),
    )
    sigma = np.hypot(
        SIGMA_DISC_KMS[0] + SIGMA_DISC_KMS[1] * np.exp(-r / SIGMA_DISC_KMS[2]),
        SIGMA_BULGE_KMS[0] * np.exp(-((r / SIGMA_BULGE_KMS[1]) ** 2)),
    )
    tau_ism = TAU_ISM_CENTRE * np.exp(-r / 2.0) + TAU_ISM_ARM * arm
    params = _params(tau_ism, sigma)
    sin_i = np.sin(np.radians(cfg["inclination_deg"]))
    v_rot = cfg["v_max_kms"] * (2 / np.pi) * np.arctan(r / cfg["r_turn_rd"])
    v_los = v_rot * sin_i * np.cos(theta)
    spaxel_pc = cfg["distance_mpc"] * 1e6 * fmt.MUSE_SPAXEL_ARCSEC / ARCSEC_PER_RAD
    density = SURFACE_DENSITY_MSUN_PC2 * (np.exp(-r) + BULGE_CONTRAST * np.exp(-r / BULGE_RD))
    return dict(
        sfh=sfh,
        params=params,
        r_rd=r,
        theta=theta,
        arm=arm,
        v_los_kms=v_los,
        mass_formed=density * spaxel_pc**2,
        spaxel_pc=spaxel_pc,
    )


def _place_clusters(n, shape, r_d_arcsec, cfg, rng):
    """Pixel positions of ``n`` clusters: young ones on the arm, all inside the pointing, apart."""
    ages = np.geomspace(cfg["cluster_age_range_yr"][0], cfg["cluster_age_range_yr"][1], n)
    fwhm_pix = cfg["psf_fwhm_arcsec"] / fmt.MUSE_SPAXEL_ARCSEC
    geo = (shape, r_d_arcsec, cfg["inclination_deg"], cfg["pa_deg"])
    for min_sep in fwhm_pix * np.array([2.5, 1.5, 1.0, 0.5]):
        xy = []
        for age in ages:
            for _ in range(500):
                if age < 5e7 and rng.random() < 0.9:
                    r = rng.uniform(ARM_RANGE_RD[0] + 0.2, ARM_RANGE_RD[1] - 0.3)
                    th = _arm_angle(r) + rng.normal(0, 0.05)
                else:
                    r, th = rng.uniform(0.3, FIELD_HALF_WIDTH_RD), rng.uniform(-np.pi, np.pi)
                x, y = _disc_to_pixel(r, th, *geo)
                if _distance_inside(x, y, shape) < fwhm_pix:
                    continue
                if all(np.hypot(x - a, y - b) >= min_sep for a, b in xy):
                    xy.append((float(x), float(y)))
                    break
            else:
                break
        if len(xy) == n:
            return ages, np.array(xy)
    raise ValueError(
        f"cannot place {n} clusters at least {0.5 * cfg['psf_fwhm_arcsec']:.2f} arcsec apart inside a "
        f"{shape[1]}x{shape[0]} spaxel field: ask for fewer clusters or a larger shape"
    )


def _cluster_model(n, shape, r_d_arcsec, cfg, rng, disc):
    """Star clusters: single bursts of known age and mass at the local disc's [M/H], dust, velocity."""
    from ..synthesis import SkewNormalBurst

    ages, xy = _place_clusters(n, shape, r_d_arcsec, cfg, rng)
    ny, nx = shape
    near = np.clip(np.rint(xy[:, 1]).astype(int), 0, ny - 1) * nx + np.clip(
        np.rint(xy[:, 0]).astype(int), 0, nx - 1
    )
    zh = disc["sfh"].zh_final[near]
    log_age = np.log10(ages)
    # 10^5 M_sun at 2 Myr to 10^6 at 1 Gyr: bright enough to dominate their MUSE aperture (many real
    # clusters do not: the disc under a 0.8" aperture holds ~10^6 M_sun of older stars).
    log_mass = CLUSTER_LOG_MASS[0] + (CLUSTER_LOG_MASS[1] - CLUSTER_LOG_MASS[0]) * (log_age - 6.3) / 2.7
    log_mass = log_mass + rng.normal(0, 0.1, n)
    sfh = SkewNormalBurst().batch(
        ages, 0.1 * ages, np.zeros(n), 0.9 * ages, 0.2 * ages, np.ones(n), zh, zh, np.ones(n)
    )
    params = _params(disc["params"].tau_ism[near], disc["params"].sigma_kms[near])
    young = ages < 1e7  # in their birth cloud (the synthesizer applies tau_bc to them only)
    tau = params.tau_ism + np.where(young, params.tau_bc, 0.0)
    cls = np.where(ages <= 5e6, 3, np.where(ages <= 5e7, 2, 1))
    return dict(
        sfh=sfh,
        params=params,
        age_yr=ages,
        mass_formed=10**log_mass,
        zh=zh,
        x_muse=xy[:, 0],
        y_muse=xy[:, 1],
        v_los_kms=disc["v_los_kms"][near],
        ebv=_ebv(tau),
        cls=cls,
        burst_age_yr=0.9 * ages,
        burst_duration_yr=0.2 * ages,
    )


# ----------------------------------------------------------------------------------------- spectra


def _keys_weights(t):
    """Keys (1981) cubic-convolution weights (a = -0.5) of the 4 neighbours j-1..j+2 at offset t."""
    t2, t3 = t * t, t * t * t
    return (
        -0.5 * t3 + t2 - 0.5 * t,
        1.5 * t3 - 2.5 * t2 + 1.0,
        -1.5 * t3 + 2.0 * t2 + 0.5 * t,
        0.5 * t3 - 0.5 * t2,
    )


def _to_observed(rest, rest_start_aa, rest_step_aa, wave_obs_aa, redshift):
    """Redshift rest-frame spectra: f_obs(lambda) = f_rest(lambda / (1 + z)) / (1 + z).

    ``rest`` (n, n_rest) on a uniform grid, sampled at lambda / (1 + z) by cubic convolution (its
    error is < 0.5 % of an emission line's peak on a grid 3 times finer than MUSE's).
    """
    u = (wave_obs_aa[None, :] / (1.0 + redshift[:, None]) - rest_start_aa) / rest_step_aa
    j = np.floor(u).astype(np.int64)
    if j.min() < 1 or j.max() > rest.shape[1] - 3:
        raise ValueError("internal: the rest-frame grid does not cover the redshifted MUSE grid")
    t = u - j
    out = np.zeros(u.shape)
    for k, w in enumerate(_keys_weights(t)):
        out += w * np.take_along_axis(rest, j + k - 1, axis=1)
    return (out / (1.0 + redshift[:, None])).astype(np.float32)


def _synthesise(synth, sfh, params, redshift, wave_obs_aa, block_size=256, progress=True, desc=""):
    """Observed-frame spectra (L_sun/A per M_sun formed, (1+z) stretch included) and the truths."""
    n = len(sfh)
    ha = synth.library.line_index(HALPHA_LABEL)
    v_window = np.abs(synth.wave_aa - V_WAVE_AA) < 50.0
    keys = ("mw_log_age", "lw_log_age", "mw_zh", "lw_zh", "mstar_frac")
    out = {k: np.empty(n) for k in (*keys, "halpha", "light_v", "young_frac")}
    out["spectra"] = np.empty((n, wave_obs_aa.size), dtype=np.float32)
    out["photometry"] = np.empty((n, len(synth.filters)))
    young = sfh.mass_fractions(np.array([0.0, 1e8, MAX_AGE_YR]))[:, 0]
    for i in tqdm(range(0, n, block_size), disable=not progress, desc=desc, unit="block"):
        sl = slice(i, min(n, i + block_size))
        res = synth(sfh.take(sl), params.take(sl), noise=False, components=True)
        out["spectra"][sl] = _to_observed(
            res["spectra_noiseless"].astype(np.float64),
            synth.wave_aa[0],
            synth.wave_aa[1] - synth.wave_aa[0],
            wave_obs_aa,
            redshift[sl],
        )
        out["photometry"][sl] = res["photometry_noiseless"]
        for k in keys:
            out[k][sl] = res[k]
        out["halpha"][sl] = res["line_lum"][:, ha]
        out["light_v"][sl] = res["dust_free"][:, v_window].mean(axis=1)
    out["young_frac"] = young
    return out


# ----------------------------------------------------------------------------------------- writing


def _write_all(hduls, texts):
    """Write every file under a temporary name, then rename them all; nothing is left on failure."""
    tmps = []
    try:
        for path, hdul in hduls.items():
            tmp = tmp_path(path)
            hdul.writeto(tmp, overwrite=True, checksum=True)
            tmps.append((tmp, path))
        for path, text in texts.items():
            tmp = tmp_path(path)
            tmp.write_text(text)
            tmps.append((tmp, path))
        for tmp, path in tmps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in tmps:
            if tmp.exists():
                tmp.unlink()


def _image_hdu(name, data, header, unit, comment=""):
    """A float32 image extension with ``header`` (a WCS), its unit and a comment."""
    from astropy.io import fits

    hdu = fits.ImageHDU(np.asarray(data, dtype=np.float32), header=header.copy(), name=name)
    hdu.header["BUNIT"] = unit
    if comment:
        hdu.header["COMMENT"] = comment
    return hdu


def write_mock_galaxy(
    folder,
    seed=0,
    shape=(60, 60),
    name=DEFAULT_NAME,
    n_clusters=8,
    redshift=0.0035,
    distance_mpc=10.0,
    ebv_mw=0.03,
    inclination_deg=50.0,
    pa_deg=30.0,
    v_max_kms=150.0,
    snr_centre=40.0,
    psf_fwhm_arcsec=0.8,
    hst_psf_fwhm_arcsec=0.08,
    centre_deg=DEFAULT_CENTRE_DEG,
    overwrite=False,
    progress=True,
    synthesizer_library=None,
):
    """Write a small mock PHANGS galaxy (MUSE cube, MAPS, HST images, cluster catalogue, truth).

    Parameters
    ----------
    folder : str or Path
        Existing output folder.
    seed : int
        Seed of the noise, the cluster positions and masses and the flagged voxels.
    shape : (int, int)
        (ny, nx) spaxels (0.2"). 60 x 60 (12", 117 MB of files) takes 7 s on 2 idle cores (30 s
        on 2 busy ones); 30 x 30 or 24 x 24 (tests) 3-8 s, most of it building the synthesizer.
        The cube always has the 3681 MUSE channels.
    name : str
        Galaxy name, used in the file names and headers.
    n_clusters : int
        Star clusters, ages log-spaced from 2 Myr to 1 Gyr (>= 2: one or two lack F275W).
    redshift : float
        Systemic redshift (0.0035: 1049 km/s).
    distance_mpc : float
        Luminosity distance, Mpc (sets the fluxes and the physical scale).
    ebv_mw : float
        Milky Way foreground E(B-V), mag (F99, R_V = 3.1), applied to the cube and the HST
        images; the catalogue's fluxes are corrected for it, as in the release.
    inclination_deg, pa_deg : float
        Disc inclination and position angle of the receding major axis (east of north), degrees.
    v_max_kms : float
        Flat rotation velocity of the arctan rotation curve (turnover at 0.4 r_d).
    snr_centre : float
        Continuum S/N per pixel (5300-5700 A rest) of the brightest spaxel of the disc (clusters
        reach more).
    psf_fwhm_arcsec, hst_psf_fwhm_arcsec : float
        Gaussian PSFs of MUSE and HST (clusters only).
    centre_deg : (float, float)
        RA, Dec of the centre, degrees.
    overwrite : bool
        Replace existing files; otherwise refuse before any work.
    progress : bool
        Show a progress bar.
    synthesizer_library : SSPLibrary, optional
        The SSP library (default: :func:`sfh_ml.synthesis.load_library`).

    Returns
    -------
    MockGalaxy

    Raises
    ------
    FileExistsError
        A file exists and ``overwrite`` is False (nothing is written).
    ValueError
        Parameters out of range, or the clusters do not fit in the field.
    """
    ny, nx = (int(s) for s in shape)
    if min(ny, nx) < 10:
        raise ValueError(f"shape {shape} is too small: at least 10 x 10 spaxels")
    if n_clusters < 2:
        raise ValueError(f"n_clusters must be >= 2 (one or two of them lack F275W), got {n_clusters}")
    if not 0 <= redshift < 0.05 or not distance_mpc > 0 or ebv_mw < 0 or not 0 <= inclination_deg < 85:
        raise ValueError(
            "need 0 <= redshift < 0.05, distance_mpc > 0, ebv_mw >= 0, 0 <= inclination_deg < 85"
        )
    paths = mock_paths(folder, name)
    for p in [paths["cube"], paths["maps"], *paths["images"].values()] + [
        paths[k] for k in ("catalogue", "truth", "truth_json")
    ]:
        check_output(p, overwrite)
    shape = (ny, nx)
    r_d_arcsec = min(ny, nx) * fmt.MUSE_SPAXEL_ARCSEC / 2.0 / FIELD_HALF_WIDTH_RD
    cfg = dict(
        name=name,
        seed=int(seed),
        shape=shape,
        n_clusters=int(n_clusters),
        redshift=float(redshift),
        distance_mpc=float(distance_mpc),
        ebv_mw=float(ebv_mw),
        inclination_deg=float(inclination_deg),
        pa_deg=float(pa_deg),
        v_max_kms=float(v_max_kms),
        r_turn_rd=0.4,
        r_d_arcsec=float(r_d_arcsec),
        snr_centre=float(snr_centre),
        psf_fwhm_arcsec=float(psf_fwhm_arcsec),
        hst_psf_fwhm_arcsec=float(hst_psf_fwhm_arcsec),
        centre_deg=(float(centre_deg[0]), float(centre_deg[1])),
        cluster_age_range_yr=(2e6, 1e9),
    )
    rng = np.random.default_rng(seed)
    disc = _disc_model(shape, r_d_arcsec, cfg)
    clus = _cluster_model(cfg["n_clusters"], shape, r_d_arcsec, cfg, rng, disc)
    model = _model_spectra(disc, clus, cfg, synthesizer_library, progress)
    cube = _observe(model, cfg, rng)
    truth_maps = _truth_maps(disc, model, cube["covered"])
    hst = _hst_images(disc, clus, model, cfg, rng, paths["images"])
    cat = _catalogue(clus, model, hst)
    params = _parameters(cfg, model, cube, hst, paths)
    hduls = {
        paths["cube"]: _cube_file(cube, cfg),
        paths["maps"]: _maps_file(disc, clus, model, cube, truth_maps, cfg),
        **hst["hduls"],
        paths["catalogue"]: cat,
        paths["truth"]: _truth_file(truth_maps, clus, model, hst, cat, cfg),
    }
    _write_all(hduls, {paths["truth_json"]: json.dumps(params, indent=2) + "\n"})
    return MockGalaxy(
        name=name,
        cube=paths["cube"],
        maps=paths["maps"],
        images=paths["images"],
        catalogue=paths["catalogue"],
        truth=paths["truth"],
        truth_json=paths["truth_json"],
        params=params,
    )


def _model_spectra(disc, clus, cfg, library, progress):
    """Noise-free observed-frame spectra of the disc and the clusters, their photometry and truths.

    The spectra are synthesised in the rest frame on a grid 3 times finer than MUSE's, redshifted
    spaxel by spaxel, scaled from L_sun/A per M_sun to the cube's unit, the clusters spread by the
    MUSE PSF, and the Milky Way foreground applied.
    """
    from ..synthesis import Synthesizer, load_library, muse_wave
    from ..synthesis.nebular import L_SUN_ERG_S

    shape, z_sys = cfg["shape"], cfg["redshift"]
    wave = muse_wave()
    z_disc = (1 + z_sys) * (1 + disc["v_los_kms"] / C_KMS) - 1
    z_clus = (1 + z_sys) * (1 + clus["v_los_kms"] / C_KMS) - 1
    z_all = np.concatenate([z_disc, z_clus])
    rest = np.arange(
        wave[0] / (1 + z_all.max()) - 4 * REST_STEP_AA,
        wave[-1] / (1 + z_all.min()) + 5 * REST_STEP_AA,
        REST_STEP_AA,
    )
    sig = np.concatenate([disc["params"].sigma_kms, clus["params"].sigma_kms])
    lib = load_library() if library is None else library
    synth = Synthesizer(lib, wave_aa=rest, sigma_kms=(np.floor(sig.min()), np.ceil(sig.max())))
    d = _synthesise(synth, disc["sfh"], disc["params"], z_disc, wave, progress=progress, desc=cfg["name"])
    c = _synthesise(synth, clus["sfh"], clus["params"], z_clus, wave, progress=False)

    flux_scale_cgs = L_SUN_ERG_S / (4 * np.pi * (cfg["distance_mpc"] * CM_PER_MPC) ** 2)  # per L_sun
    scale = flux_scale_cgs / UNIT_CGS
    fwhm_pix = cfg["psf_fwhm_arcsec"] / fmt.MUSE_SPAXEL_ARCSEC
    psf = np.array([_gaussian_image(shape, x, y, fwhm_pix) for x, y in zip(clus["x_muse"], clus["y_muse"])])
    mass_disc = disc["mass_formed"].reshape(shape)  # M_sun formed per spaxel
    mass_clus = clus["mass_formed"][:, None, None] * psf  # (n_cl, ny, nx)
    mw = mw_transmission(wave, cfg["ebv_mw"], law=MW_LAW, r_v=MW_R_V).astype(np.float32)
    flux = d["spectra"].T.reshape(wave.size, *shape) * (mass_disc * scale)[None]
    flux *= mw[:, None, None]
    disc_cont, _ = continuum_snr(flux, np.ones_like(flux), wave, redshift=z_sys)
    flux += np.einsum("cw,cyx->wyx", c["spectra"] * mw, mass_clus * scale).astype(np.float32)
    ha_wave = lib.line_wave_aa[lib.line_index(HALPHA_LABEL)]
    return dict(
        wave=wave,
        flux=flux,
        disc_continuum_max=float(np.nanmax(disc_cont)),
        disc=d,
        clusters=c,
        z_disc=z_disc,
        mass_disc=mass_disc,
        mass_clus=mass_clus,
        flux_scale_cgs=flux_scale_cgs,
        halpha_wave_aa=float(ha_wave),
    )


def _observe(model, cfg, rng):
    """Noise, sky residuals, coverage and flags: the cube's DATA, STAT and DQ.

    var = g (model + sky) + read^2, with g set so that the disc's brightest spaxel has a continuum
    S/N of ``snr_centre``; sky lines add variance and leave residuals of a few % in DATA.
    """
    wave, flux = model["wave"], model["flux"]
    shape = cfg["shape"]
    f_c = model["disc_continuum_max"]
    sky = SKY_FRACTION * f_c
    sky_lines = sky * _sky_lines(wave)  # (n_wave,)
    read2 = (READ_NOISE_FRACTION * f_c / cfg["snr_centre"]) ** 2
    gain = (f_c**2 / cfg["snr_centre"] ** 2 - read2) / (f_c + sky)
    stat = (gain * (flux + sky + sky_lines[:, None, None]) + read2).astype(np.float32)
    data = flux + np.sqrt(stat) * rng.standard_normal(flux.shape, dtype=np.float32)
    residual = sky_lines[:, None, None] * SKY_RESIDUAL_RMS * rng.standard_normal(shape)[None]
    data += residual.astype(np.float32)
    covered = _coverage(shape)
    dq = np.zeros(flux.shape, dtype=np.uint8)
    n_bad = max(1, int(DQ_BAD_FRACTION * covered.sum() * wave.size))
    iy, ix = np.nonzero(covered)
    pick = rng.integers(0, iy.size, n_bad)
    bad = (rng.integers(0, wave.size, n_bad), iy[pick], ix[pick])
    dq[bad] = DQ_BAD
    data[bad] += 30.0 * np.sqrt(stat[bad])  # a cosmic-ray-like spike that DQ flags
    dq[:, ~covered] = DQ_NO_COVERAGE
    data[:, ~covered] = np.nan
    stat[:, ~covered] = np.nan
    noise = dict(gain=float(gain), sky=float(sky), read_noise=float(np.sqrt(read2)), n_bad_voxels=int(n_bad))
    return dict(data=data, stat=stat, dq=dq, covered=covered, noise=noise)


def _truth_maps(disc, model, covered):
    """True maps: disc and clusters mixed by mass formed (mass-weighted) or V light (light-weighted)."""
    shape = covered.shape
    d, c = model["disc"], model["clusters"]
    m_d, m_c = model["mass_disc"], model["mass_clus"]

    def mix(disc_values, clus_values, wd, wc):
        num = wd * disc_values.reshape(shape) + np.einsum("c,cyx->yx", clus_values, wc)
        return num / (wd + wc.sum(axis=0))

    l_d = m_d * d["light_v"].reshape(shape)
    l_c = m_c * c["light_v"][:, None, None]
    return {
        "MW_LOG_AGE": mix(d["mw_log_age"], c["mw_log_age"], m_d, m_c),
        "LW_LOG_AGE": mix(d["lw_log_age"], c["lw_log_age"], l_d, l_c),
        "MW_ZH": mix(d["mw_zh"], c["mw_zh"], m_d, m_c),
        "LW_ZH": mix(d["lw_zh"], c["lw_zh"], l_d, l_c),
        "YOUNG_FRAC": mix(d["young_frac"], c["young_frac"], m_d, m_c),
        "DISC_MW_LOG_AGE": d["mw_log_age"].reshape(shape),
        "DISC_MW_ZH": d["mw_zh"].reshape(shape),
        "MASS_FORMED": m_d + m_c.sum(axis=0),
        "MSTAR": m_d * d["mstar_frac"].reshape(shape) + np.einsum("c,cyx->yx", c["mstar_frac"], m_c),
        "CLUSTER_LIGHT_FRAC": l_c.sum(axis=0) / (l_d + l_c.sum(axis=0)),
        "SIGMA_KMS": disc["params"].sigma_kms.reshape(shape),
        "V_KMS": disc["v_los_kms"].reshape(shape),
        "EBV": _ebv(disc["params"].tau_ism).reshape(shape),
        "RADIUS_RD": disc["r_rd"].reshape(shape),
        "ARM": disc["arm"].reshape(shape),
        "COVERED": covered.astype(np.float32),
    }


TRUTH_UNITS = {
    "MW_LOG_AGE": "log10(yr)",
    "LW_LOG_AGE": "log10(yr)",
    "DISC_MW_LOG_AGE": "log10(yr)",
    "MASS_FORMED": "Msun",
    "MSTAR": "Msun",
    "SIGMA_KMS": "km/s",
    "V_KMS": "km/s",
    "EBV": "mag",
    "RADIUS_RD": "disc scale lengths",
}


def _maps_file(disc, clus, model, cube, truth, cfg):
    """The DAP-like MAPS: measured S/N and H-alpha error, true kinematics, dust and populations."""
    from astropy.io import fits

    from ..synthesis.dust import optical_depth

    shape, wave, stat, covered = cfg["shape"], model["wave"], cube["stat"], cube["covered"]
    cel = _celestial_header(shape, fmt.MUSE_SPAXEL_ARCSEC, cfg["centre_deg"])
    signal, noise = continuum_snr(cube["data"], stat, wave, redshift=cfg["redshift"])
    snr = signal / noise
    area_pc2 = disc["spaxel_pc"] ** 2
    # H-alpha: line luminosity behind the birth-cloud and ISM dust, MW-corrected (as the DAP's).
    ha = model["halpha_wave_aa"]
    att = lambda p: np.exp(-optical_depth(np.array([ha]), p.tau_ism + p.tau_bc)[..., 0])
    ha_d = model["disc"]["halpha"] * att(disc["params"])
    ha_c = model["clusters"]["halpha"] * att(clus["params"])
    scale = model["flux_scale_cgs"] / UNIT_CGS
    ha_flux = (
        model["mass_disc"] * ha_d.reshape(shape) + np.einsum("c,cyx->yx", ha_c, model["mass_clus"])
    ) * scale
    near_ha = np.abs(wave[:, None, None] - ha * (1 + model["z_disc"].reshape(shape))[None]) < 3.0
    ha_err = np.diff(wave[:2])[0] * np.sqrt(np.where(near_ha, stat, 0.0).sum(axis=0))
    nan = np.where(covered, 1.0, np.nan)
    maps = {
        "FLUX": np.where(covered, np.mean(np.where(covered[None], cube["data"], 0.0), axis=0), np.nan),
        "SNR": snr,
        "V_STARS": truth["V_KMS"] * nan,
        "FORM_ERR_V_STARS": np.clip(150.0 / snr, 1.0, 50.0) * nan,
        "SIGMA_STARS": truth["SIGMA_KMS"] * nan,
        "EBV_STARS": truth["EBV"] * nan,
        "AGE_LW": truth["LW_LOG_AGE"] * nan,
        "AGE_MW": truth["MW_LOG_AGE"] * nan,
        "Z_LW": truth["LW_ZH"] * nan,
        "Z_MW": truth["MW_ZH"] * nan,
        "STELLAR_MASS_DENSITY": truth["MSTAR"] / area_pc2 * nan,
    }
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["OBJECT"] = cfg["name"]
    hdus[0].header["COMMENT"] = (
        "sfh_ml mock galaxy: DAP-like maps; ages, metallicities and kinematics are the truth"
    )
    for key, value in maps.items():
        hdus.append(_image_hdu(key, value, cel, *fmt.MAPS_EXTENSIONS[key]))
    ha_name = f"{HALPHA_MAPS_LINE}_FLUX"
    hdus.append(_image_hdu(ha_name, ha_flux * nan, cel, "1e-20 erg/s/cm2", "H-alpha flux, MW-corrected"))
    hdus.append(
        _image_hdu(fmt.MAPS_ERROR_NAMES[0].format(name=ha_name), ha_err * nan, cel, "1e-20 erg/s/cm2")
    )
    return fits.HDUList(hdus)


def _hst_images(disc, clus, model, cfg, rng, paths):
    """Five HST images in e-/s: the disc's band fluxes interpolated onto finer pixels, the clusters
    through the HST PSF, the Milky Way foreground at each pivot, sky noise; F275W has no coverage
    east of a cut that leaves one or two clusters outside its footprint."""
    from astropy.io import fits
    from astropy.wcs import WCS
    from scipy.ndimage import map_coordinates

    from ..synthesis import PHANGS_FILTERS, pivot_wavelengths

    shape, n_cl = cfg["shape"], cfg["n_clusters"]
    hst_scale = fmt.HST_PIXEL_ARCSEC
    hny, hnx = (int(np.ceil(s * fmt.MUSE_SPAXEL_ARCSEC / hst_scale)) for s in shape)
    hdr0 = _celestial_header((hny, hnx), hst_scale, cfg["centre_deg"])
    w_hst = WCS(hdr0)
    w_muse = WCS(_celestial_header(shape, fmt.MUSE_SPAXEL_ARCSEC, cfg["centre_deg"]))
    hy, hx = np.mgrid[0:hny, 0:hnx]
    mx, my = w_muse.world_to_pixel_values(*w_hst.pixel_to_world_values(hx, hy))
    ra, dec = w_muse.pixel_to_world_values(clus["x_muse"], clus["y_muse"])
    cx, cy = w_hst.world_to_pixel_values(ra, dec)
    pivots = pivot_wavelengths(PHANGS_FILTERS)
    mw_band = mw_transmission(pivots, cfg["ebv_mw"], law=MW_LAW, r_v=MW_R_V)
    area_ratio = (hst_scale / fmt.MUSE_SPAXEL_ARCSEC) ** 2
    n_missing = 1 if n_cl < 4 else 2
    x_cut = 0.5 * (np.sort(cx)[-n_missing] + np.sort(cx)[-n_missing - 1])  # F275W footprint ends here
    psf = [_gaussian_image((hny, hnx), x, y, cfg["hst_psf_fwhm_arcsec"] / hst_scale) for x, y in zip(cx, cy)]
    fs = model["flux_scale_cgs"]
    d_phot, c_phot = model["disc"]["photometry"], model["clusters"]["photometry"]
    hduls = {}
    for b, band in enumerate(fmt.CATALOGUE_BANDS):
        disc_flam = model["mass_disc"] * d_phot[:, b].reshape(shape) * fs  # erg/s/cm2/A per spaxel
        img = map_coordinates(disc_flam, [my, mx], order=1, mode="nearest") * area_ratio
        for k in range(n_cl):
            img += psf[k] * clus["mass_formed"][k] * c_phot[k, b] * fs
        counts = img * mw_band[b] / MOCK_PHOTFLAM[b]
        counts += HST_NOISE_FRACTION * np.median(counts) * rng.standard_normal(counts.shape)
        if b == 0:
            counts[hx > x_cut] = np.nan
        hdr = hdr0.copy()
        hdr["TELESCOP"], hdr["INSTRUME"], hdr["DETECTOR"] = "HST", "WFC3", "UVIS"
        hdr["FILTER"], hdr["OBJECT"] = band, cfg["name"]
        hdr["BUNIT"] = fmt.HST_COUNT_RATE_UNITS[0]
        hdr[fmt.HST_PHOTFLAM] = (MOCK_PHOTFLAM[b], "inverse sensitivity, erg/cm2/A/e-")
        hdr[fmt.HST_PHOTPLAM] = (float(pivots[b]), "pivot wavelength (Angstrom)")
        hduls[paths[band]] = fits.HDUList([fits.PrimaryHDU(counts.astype(np.float32), header=hdr)])
    return dict(
        hduls=hduls, ra=ra, dec=dec, x=cx, y=cy, pivots=pivots, x_cut=float(x_cut), covered_f275w=cx <= x_cut
    )


def _catalogue(clus, model, hst):
    """Cluster catalogue: fluxes of the clusters alone (noise-free, Milky-Way corrected), -9999 where
    F275W has no coverage, the true ages (Myr), stellar masses and E(B-V) as the SED-fit columns."""
    from astropy.io import fits
    from astropy.table import Table

    from ..synthesis import flam_to_mjy

    col = fmt.CATALOGUE_COLUMNS
    n = clus["age_yr"].size
    c = model["clusters"]
    flux_mjy = flam_to_mjy(
        c["photometry"] * clus["mass_formed"][:, None] * model["flux_scale_cgs"], hst["pivots"]
    )
    covered = hst["covered_f275w"]
    cat = Table()
    cat[col["id"]] = np.arange(1, n + 1, dtype=np.int64)
    cat[col["ra"]], cat[col["dec"]] = hst["ra"], hst["dec"]
    cat[col["x"]], cat[col["y"]] = hst["x"], hst["y"]
    cat[col["class_human"]] = clus["cls"]
    cat[col["class_ml"]] = clus["cls"]
    for b, band in enumerate(fmt.CATALOGUE_BANDS):
        f = flux_mjy[:, b].copy()
        e = CLUSTER_FLUX_REL_ERR * f
        if b == 0:
            f[~covered] = e[~covered] = fmt.MISSING_VALUE
        cat[fmt.catalogue_flux_column(band)] = f
        cat[fmt.catalogue_flux_column(band, error=True)] = e
    mstar = clus["mass_formed"] * c["mstar_frac"]
    cat[col["age_myr"]] = clus["age_yr"] / 1e6
    cat[col["age_myr_err"]] = clus["age_yr"] / 1e6 * (10**0.1 - 1)
    cat[col["mass_msun"]], cat[col["mass_msun_err"]] = mstar, 0.2 * mstar
    cat[col["ebv_mag"]], cat[col["ebv_mag_err"]] = clus["ebv"], np.full(n, 0.05)
    cat[col["reduced_chisq"]] = np.ones(n)
    cat[col["no_coverage"]] = (~covered).astype(np.int16)
    cat[col["non_detection"]] = np.zeros(n, dtype=np.int16)
    return fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(cat)])


def _truth_file(truth, clus, model, hst, cat, cfg):
    """The true maps (one image each) and a CLUSTERS table with everything needed to remake them."""
    from astropy.io import fits
    from astropy.table import Table

    c, p = model["clusters"], clus["params"]
    tcl = Table()
    tcl["id"] = cat[1].data[fmt.CATALOGUE_COLUMNS["id"]]
    tcl["ra_deg"], tcl["dec_deg"] = hst["ra"], hst["dec"]
    tcl["x_muse"], tcl["y_muse"], tcl["x_hst"], tcl["y_hst"] = (
        clus["x_muse"],
        clus["y_muse"],
        hst["x"],
        hst["y"],
    )
    tcl["age_yr"], tcl["log_age"] = clus["age_yr"], np.log10(clus["age_yr"])
    tcl["burst_age_yr"], tcl["burst_duration_yr"] = clus["burst_age_yr"], clus["burst_duration_yr"]
    tcl["mass_formed"], tcl["mstar"] = clus["mass_formed"], clus["mass_formed"] * c["mstar_frac"]
    tcl["zh"], tcl["tau_bc"], tcl["tau_ism"], tcl["log_u"] = clus["zh"], p.tau_bc, p.tau_ism, p.log_u
    tcl["sigma_kms"], tcl["sigma_gas_kms"], tcl["v_kms"] = p.sigma_kms, p.sigma_gas_kms, clus["v_los_kms"]
    tcl["mw_log_age"], tcl["lw_log_age"], tcl["mw_zh"] = c["mw_log_age"], c["lw_log_age"], c["mw_zh"]
    tcl["class"] = clus["cls"]
    tcl["flux_mjy"] = np.column_stack(
        [cat[1].data[fmt.catalogue_flux_column(b)] for b in fmt.CATALOGUE_BANDS]
    )
    tcl["f275w_covered"] = hst["covered_f275w"]
    cel = _celestial_header(cfg["shape"], fmt.MUSE_SPAXEL_ARCSEC, cfg["centre_deg"])
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["OBJECT"] = cfg["name"]
    hdus += [_image_hdu(key, value, cel, TRUTH_UNITS.get(key, "")) for key, value in truth.items()]
    table = fits.table_to_hdu(tcl)
    table.name = "CLUSTERS"
    return fits.HDUList([*hdus, table])


def _cube_file(cube, cfg):
    """The MUSE cube: primary header, DATA, STAT (variance) and DQ with celestial + spectral WCS."""
    from astropy.io import fits

    from ..synthesis import muse_wave

    primary = fits.PrimaryHDU()
    ph = primary.header
    ph["OBJECT"], ph["TELESCOP"], ph["INSTRUME"] = cfg["name"], "ESO-VLT-U4", "MUSE"
    ph["RA"], ph["DEC"] = cfg["centre_deg"]
    ph["EBV_MW"] = (cfg["ebv_mw"], f"Milky Way E(B-V) applied ({MW_LAW}, R_V={MW_R_V})")
    ph["COMMENT"] = "sfh_ml mock galaxy (sfh_ml.observations.mock); not real data"
    ch = _cube_header(cfg["shape"], muse_wave(), cfg["centre_deg"])
    h_data, h_stat, h_dq = ch.copy(), ch.copy(), ch.copy()
    h_data["BUNIT"] = fmt.CUBE_BUNIT
    h_stat["BUNIT"] = f"({fmt.CUBE_BUNIT})**2"
    h_dq["COMMENT"] = f"0 good, {DQ_BAD} bad voxel, {DQ_NO_COVERAGE} no coverage"
    return fits.HDUList(
        [
            primary,
            fits.ImageHDU(cube["data"].astype(np.float32), header=h_data, name=fmt.CUBE_DATA_EXT),
            fits.ImageHDU(cube["stat"], header=h_stat, name=fmt.CUBE_STAT_EXT),
            fits.ImageHDU(cube["dq"], header=h_dq, name=fmt.CUBE_DQ_EXT),
        ]
    )


def _parameters(cfg, model, cube, hst, paths):
    """The JSON of the truth: the parameters, the gradients in several units, the noise model, files."""
    kpc_per_arcsec = cfg["distance_mpc"] * 1e3 / ARCSEC_PER_RAD
    r_d = cfg["r_d_arcsec"]
    out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    out.update(
        n_wave=int(model["wave"].size),
        milky_way_law=MW_LAW,
        milky_way_r_v=MW_R_V,
        r_d_kpc=r_d * kpc_per_arcsec,
        zh_gradient_dex_per_rd=ZH_GRADIENT_PER_RD,
        zh_gradient_dex_per_arcsec=ZH_GRADIENT_PER_RD / r_d,
        zh_gradient_dex_per_kpc=ZH_GRADIENT_PER_RD / (r_d * kpc_per_arcsec),
        log_peak_age_gradient_per_rd=LOG_PEAK_AGE_GRADIENT_PER_RD,
        flux_scale_cgs_per_lsun=model["flux_scale_cgs"],
        noise=dict(cube["noise"], unit=fmt.CUBE_BUNIT),
        dq=dict(bad=DQ_BAD, no_coverage=DQ_NO_COVERAGE),
        f275w_x_cut_hst_pix=hst["x_cut"],
        files={
            k: (v.name if isinstance(v, Path) else {b: q.name for b, q in v.items()})
            for k, v in paths.items()
        },
    )
    return out


def load_mock_truth(path):
    """The true maps, clusters and parameters of a mock galaxy.

    Parameters
    ----------
    path : str or Path
        The ``{NAME}_TRUTH.fits`` file (its JSON beside it).

    Returns
    -------
    maps : dict of str -> ndarray, shape (ny, nx)
        ``MW_LOG_AGE``, ``LW_LOG_AGE`` (log10 yr), ``MW_ZH``, ``LW_ZH``, ``YOUNG_FRAC`` (mass
        fraction formed in the last 100 Myr), ``DISC_MW_LOG_AGE``, ``DISC_MW_ZH`` (disc alone),
        ``MASS_FORMED`` (M_sun per spaxel), ``CLUSTER_LIGHT_FRAC``, ``SIGMA_KMS``, ``V_KMS``, ``EBV``,
        ``RADIUS_RD`` (deprojected radius in disc scale lengths), ``ARM`` (0-1), ``COVERED``.
    clusters : astropy.table.Table
        One row per cluster (``age_yr``, ``mass_formed``, ``zh``, positions, ``flux_mjy``, ...).
    params : dict
        The JSON.
    """
    from astropy.io import fits
    from astropy.table import Table

    path = Path(path)
    with fits.open(path) as hdul:
        maps = {h.name: np.asarray(h.data, dtype=float) for h in hdul[1:] if h.is_image}
        clusters = Table(hdul["CLUSTERS"].data)
    params = json.loads(path.with_suffix(".json").read_text())
    return maps, clusters, params
