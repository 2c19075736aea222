"""From star formation histories to MUSE spectra and HST fluxes, vectorised over objects.

For each object (all quantities per solar mass formed in total):

1. mass formed in each SSP age bin, and the mass-weighted [M/H] of those stars (:mod:`sfh_ml.synthesis.sfh`);
   each bin's spectrum is interpolated linearly in [M/H] between the two nearest SSP metallicities;
2. Charlot & Fall (2000) dust: stars younger than 10 Myr (``birth_cloud_age_yr``) and the nebular
   emission see the birth cloud and the ISM, older stars the ISM only (:mod:`sfh_ml.synthesis.dust`;
   the ISM screen may follow another law, ``dust_law``, for held-out sets; per object,
   :class:`SynthesisParams` may give its own ISM power-law index and birth-cloud age, an IMF-like
   mass-to-light slope and factors on the emission lines: the domain randomisation of
   :data:`sfh_ml.synthesis.TRAINING_WORLD`);
3. nebular continuum and lines from the Cloudy grids, scaled by the mass formed at each age
   younger than 10 Myr, interpolated in [M/H] and log U (:mod:`sfh_ml.synthesis.nebular`);
4. the five HST fluxes from the full-range (1680-11010 A) spectrum (:mod:`sfh_ml.synthesis.photometry`);
5. the spectrum on the MUSE grid, broadened to the MUSE line-spread function in quadrature with
   the stellar velocity dispersion; emission lines with their own gas dispersion
   (:mod:`sfh_ml.synthesis.instrument`);
6. Gaussian noise at a S/N per pixel in the 5300-5700 A continuum, shaped like a MUSE variance
   spectrum (object photon noise plus night sky and detector,
   :func:`sfh_ml.synthesis.instrument.noise_sigma`), and per band for the fluxes.

Speed comes from linearity: the SSPs are broadened once (at a few velocity dispersions,
interpolated between), the mixing is a matrix product, the object-dependent dust is applied to the
mixed spectra, and for the fluxes the dust curve is applied on 50 A bins of band-weighted template
integrals (exact to < 0.1 %). There is no Python loop over objects.
"""

import weakref
from dataclasses import dataclass, fields

import numpy as np
from scipy import sparse

from ..constants import BIRTH_CLOUD_AGE_YR, C_KMS, FWHM_TO_SIGMA, HBETA_LABEL, V_WAVE_AA
from ..utils import check_wave_aa, interp_weights
from .dust import CF00_SLOPE, attenuation_curve, dust_curve, transmission
from .instrument import broadening_matrix, muse_lsf_fwhm, muse_wave, noise_sigma, total_sigma_aa
from .lines import LINE_MIN_HBETA_RATIO
from .nebular import add_lines
from .photometry import PHANGS_FILTERS, band_weights
from .sfh import closed_edges, time_overlap
from .ssp import load_library

__all__ = ["SynthesisParams", "Synthesizer", "LibraryMix", "v_band_flux", "bin_light", "LSF_REF_WAVE_AA"]

V_HALF_WIDTH_AA = 50.0  # light weights use the SSP flux averaged over 5500 +- 50 A
# An LSF-width error (SynthesisParams.lsf_scale) is applied to the stars as the velocity dispersion
# that gives the same extra Gaussian variance at H-alpha (the lines take it exactly at their own lambda).
LSF_REF_WAVE_AA = 6563.0


def v_band_flux(library):
    """The 5500 A luminosity of each SSP, the weight of light-weighted means.

    Parameters
    ----------
    library : SSPLibrary

    Returns
    -------
    ndarray, shape (n_age, n_zh)
        Flux density averaged over 5450-5550 A, L_sun / A per M_sun formed, before dust.
    """
    v = np.abs(library.wave_aa - V_WAVE_AA) < V_HALF_WIDTH_AA
    return library.flux[:, :, v].mean(axis=2).astype(np.float64)


def bin_light(library, age_bins_yr, zh_grid=None, closed=True):
    """5500 A luminosity of one solar mass formed at a constant rate within each age bin.

    The table that turns binned mass fractions and [M/H] into light-weighted means without the SSP
    library: for a history with mass fractions m_b and [M/H] z_b in the bins, the light of bin b is
    m_b * L_b(z_b) (interpolated in [M/H] over the table's columns, as the synthesizer mixes the
    SSPs), before dust. Within a bin the stars are spread uniformly in time and each part takes the
    luminosity of the SSP whose age bin (``SSPLibrary.age_edges_yr``) it falls in, as in the
    synthesis.

    Parameters
    ----------
    library : SSPLibrary
    age_bins_yr : ndarray, shape (n_bins + 1,)
        Increasing bin edges, years.
    zh_grid : ndarray, shape (n_zh,), optional
        [M/H] at which to tabulate (default the library's; other values are interpolated linearly
        between the library's, clamped to its range).
    closed : bool
        As in :meth:`sfh_ml.synthesis.sfh.SFHBatch.mass_fractions`: the first bin starts at age 0 and
        the last ends at 14.1 Gyr (the convention of the targets).

    Returns
    -------
    ndarray, shape (n_bins, n_zh)
        L_sun / A per M_sun formed.
    """
    edges = closed_edges(age_bins_yr, closed)
    frac = time_overlap(edges, library.age_edges_yr) / np.diff(edges)[:, None]  # (n_bins, n_age): time share
    light = frac @ v_band_flux(library)  # (n_bins, n_zh of the library)
    if zh_grid is None:
        return light
    return light @ interp_weights(np.atleast_1d(np.asarray(zh_grid, dtype=float)), library.zh).T


@dataclass
class SynthesisParams:
    """Per-object parameters of the synthesis besides the star formation history.

    All attributes are ndarrays of shape (n_obj,).

    Attributes
    ----------
    tau_bc, tau_ism : ndarray
        V-band optical depths of the birth clouds and of the diffuse ISM (Charlot & Fall 2000).
    log_u : ndarray
        Ionisation parameter of the birth clouds (-4 to 0).
    sigma_kms : ndarray
        Stellar velocity dispersion, km/s.
    sigma_gas_kms : ndarray
        Velocity dispersion of the ionised gas, km/s.
    snr : ndarray
        S/N per MUSE pixel of the continuum at 5300-5700 A
        (see :func:`sfh_ml.synthesis.instrument.noise_sigma`).
    snr_phot : ndarray, shape (n_obj,) or (n_obj, n_band)
        S/N of the HST fluxes: one value for all bands of an object, or one per band.
    sky_frac : ndarray
        Fraction of the 5300-5700 A variance from the night sky and the detector (0, the default:
        photon noise of the object only).
    sky_z : ndarray
        Redshift at which the sky lines and the instrument throughput fall on the rest-frame
        spectrum (default 0).
    lsf_scale : ndarray
        Width of the line-spread function the spectrum was observed with, in units of the MUSE LSF
        (Bacon et al. 2017) the pipeline assumes (default 1; e.g. 1.1 for an LSF 10 % broader).
        Emission lines take it exactly; the stars as an effective dispersion
        sqrt(sigma_kms**2 + (lsf_scale**2 - 1) sigma_LSF**2), sigma_LSF in km/s at
        :data:`LSF_REF_WAVE_AA` (the stellar dispersion is >= 150 km/s, the LSF 40-80 km/s, so
        the error of this approximation across the range is below 2 km/s for a 10 % LSF error).
    ism_slope : ndarray
        Per-object index of the diffuse-ISM power law, tau(lambda) / tau_V = (lambda / 5500 A)**slope,
        in place of the synthesizer's ``dust_law`` (domain randomisation of the dust law); NaN (the
        default): the synthesizer's curve.
    birth_cloud_age_yr : ndarray
        Per-object age at which stars leave their birth clouds, years, at most the synthesizer's
        ``birth_cloud_age_yr`` (which sets how many SSP ages can be in clouds); NaN (the default):
        the synthesizer's.
    ml_slope : ndarray
        An IMF-like perturbation of the mass-to-light ratio: the light of the stars of age t is
        multiplied by 10**(ml_slope (log10 t - 9)) (spectra, fluxes and light weights), their mass
        is not (the truth). Negative values make young stars brighter per unit mass than the
        library's IMF says and old ones fainter, as a top-heavy IMF would; the nebular emission and
        the spectral shape of each SSP (dwarf-to-giant features) are unchanged. Default 0.
    line_scale : ndarray, shape (n_obj,) or (n_obj, n_lines)
        Factors on the library's emission-line luminosities (all lines, or one per line of
        :attr:`sfh_ml.synthesis.ssp.SSPLibrary.line_wave_aa`): line ratios outside the Cloudy grid's
        (:func:`sfh_ml.synthesis.lines.ion_scales`). Default 1.
    """

    tau_bc: np.ndarray
    tau_ism: np.ndarray
    log_u: np.ndarray
    sigma_kms: np.ndarray
    sigma_gas_kms: np.ndarray
    snr: np.ndarray
    snr_phot: np.ndarray
    sky_frac: np.ndarray = 0.0
    sky_z: np.ndarray = 0.0
    lsf_scale: np.ndarray = 1.0
    ism_slope: np.ndarray = np.nan
    birth_cloud_age_yr: np.ndarray = np.nan
    ml_slope: np.ndarray = 0.0
    line_scale: np.ndarray = 1.0

    _PER_BAND_OR_LINE = ("snr_phot", "line_scale")  # may hold one value per object and band or line
    _NAN_IS_DEFAULT = ("ism_slope", "birth_cloud_age_yr")  # NaN: the synthesizer's own

    def __post_init__(self):
        n = None
        for f in fields(self):
            value = np.atleast_1d(np.asarray(getattr(self, f.name), dtype=float))
            if value.ndim > (2 if f.name in self._PER_BAND_OR_LINE else 1):
                raise ValueError(f"{f.name} has shape {value.shape}: expected one value per object")
            setattr(self, f.name, value)
            finite = np.isfinite(value) | (np.isnan(value) if f.name in self._NAN_IS_DEFAULT else False)
            if not np.all(finite):
                raise ValueError(f"{f.name} contains NaN or infinite values")
            rows = value.shape[0]
            n = rows if n is None else n
            if rows != n and rows != 1:
                raise ValueError(f"{f.name} has {rows} values, expected {n}")
        size = max(getattr(self, f.name).shape[0] for f in fields(self))
        for f in fields(self):
            value = getattr(self, f.name)
            setattr(self, f.name, np.broadcast_to(value, (size,) + value.shape[1:]).copy())
        if np.any(self.tau_bc < 0) or np.any(self.tau_ism < 0):
            raise ValueError("tau_bc and tau_ism must be >= 0")
        if np.any(self.log_u < -4.0) or np.any(self.log_u > 0.0):
            raise ValueError("log_u must lie inside the Cloudy grid, -4 <= log U <= 0")
        if np.any(self.sigma_kms < 0) or np.any(self.sigma_gas_kms < 0):
            raise ValueError("velocity dispersions must be >= 0 km/s")
        if np.any(self.snr <= 0) or np.any(self.snr_phot <= 0):
            raise ValueError("S/N must be > 0")
        if np.any(self.sky_frac < 0) or np.any(self.sky_frac > 1):
            raise ValueError("sky_frac must lie in [0, 1]")
        if np.any(self.sky_z < 0):
            raise ValueError("sky_z must be >= 0")
        if np.any(self.lsf_scale <= 0):
            raise ValueError("lsf_scale must be > 0")
        if np.any(self.birth_cloud_age_yr <= 0) or np.any(self.birth_cloud_age_yr > 1e9):
            raise ValueError("birth_cloud_age_yr must be in (0, 1e9] yr (or NaN: the synthesizer's)")
        if np.any(np.abs(self.ml_slope) > 1):
            raise ValueError("ml_slope must lie in [-1, 1] (dex of light per dex of age)")
        if np.any(self.line_scale < 0):
            raise ValueError("line_scale must be >= 0")

    def stellar_sigma_kms(self):
        """Velocity dispersion the stellar templates are broadened to, km/s, shape (n_obj,): ``sigma_kms``,
        or with an LSF error the :meth:`effective_sigma_kms`."""
        return self.effective_sigma_kms(self.sigma_kms, self.lsf_scale)

    @staticmethod
    def effective_sigma_kms(sigma_kms, lsf_scale):
        """sqrt(sigma_kms**2 + (lsf_scale**2 - 1) sigma_LSF**2), sigma_LSF the MUSE LSF in km/s at
        :data:`LSF_REF_WAVE_AA`; exactly ``sigma_kms`` where ``lsf_scale`` is 1 (arrays, km/s)."""
        sigma_kms, lsf_scale = np.asarray(sigma_kms, float), np.asarray(lsf_scale, float)
        sigma_lsf = muse_lsf_fwhm(LSF_REF_WAVE_AA) * FWHM_TO_SIGMA / LSF_REF_WAVE_AA * C_KMS
        extra = (lsf_scale**2 - 1.0) * sigma_lsf**2
        return np.where(lsf_scale == 1.0, sigma_kms, np.sqrt(np.clip(sigma_kms**2 + extra, 0, None)))

    def __len__(self):
        return self.tau_bc.size

    def take(self, index):
        """The parameters of objects ``index``."""
        return SynthesisParams(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


@dataclass
class _Weights:
    """How much of each SSP (and Cloudy grid point) goes into each object's spectrum.

    Attributes
    ----------
    mass : ndarray, shape (n_obj, n_age)
        Mass formed in each SSP age bin (rows sum to 1).
    zh : ndarray, shape (n_obj, n_age)
        Mass-weighted [M/H] of the stars formed in each SSP age bin.
    wz : ndarray, shape (n_obj, n_age, n_zh)
        Interpolation weights of ``zh`` on the SSP metallicities.
    w_old : ndarray, shape (n_obj, n_age * n_zh)
        Weights of the templates for the stars older than the birth clouds (10 Myr).
    w_young : ndarray, shape (n_obj, n_young * n_zh)
        Weights of the templates for the stars still inside their birth clouds.
    m_neb, z_neb : ndarray, shape (n_obj, n_neb_age)
        Mass formed, and its [M/H], in each age bin of the Cloudy grids (< 10 Myr).
    """

    mass: np.ndarray
    zh: np.ndarray
    wz: np.ndarray
    w_old: np.ndarray
    w_young: np.ndarray
    m_neb: np.ndarray
    z_neb: np.ndarray


_SVD_CACHE = {}  # id(library) -> (weak reference, SVD): synthesizers of one library share it


def _nebular_svd(library):
    """SVD of the library's nebular continua, (n_neb_age * n_zh * n_u, n_lw), computed once per library
    object (the slowest step of building a Synthesizer; several worlds share a library)."""
    hit = _SVD_CACHE.get(id(library))
    if hit is not None and hit[0]() is library:
        return hit[1]
    neb = library.neb_cont.reshape(-1, library.wave_aa.size).astype(np.float64)
    svd = np.linalg.svd(neb, full_matrices=False)
    key = id(library)
    _SVD_CACHE[key] = (weakref.ref(library, lambda _, key=key: _SVD_CACHE.pop(key, None)), svd)
    return svd


def _sigma_nodes(sigma_kms):
    """Velocity dispersions (km/s) at which the SSPs are broadened: one value, or log-spaced nodes 10 %
    apart over a (min, max) range (plus the minimum itself if it is below 1 km/s)."""
    sig = np.atleast_1d(np.asarray(sigma_kms, dtype=float))
    if (
        sig.size not in (1, 2)
        or not np.all(np.isfinite(sig))
        or np.any(sig < 0)
        or (sig.size == 2 and sig[1] < sig[0])
    ):
        raise ValueError(
            f"sigma_kms must be a value or an increasing (min, max) range >= 0 km/s, got {sigma_kms}"
        )
    if sig.size == 2 and sig[1] > sig[0]:
        lo = max(sig[0], 1.0)
        n = int(np.ceil(np.log(sig[1] / lo) / np.log(1.1))) + 1
        sig = np.concatenate([[sig[0]] if sig[0] < 1.0 else [], np.geomspace(lo, sig[1], n)])
    return sig[:1] if sig.size == 2 and sig[0] == sig[1] else sig


class Synthesizer:
    """Synthetic MUSE spectra and HST fluxes for batches of star formation histories.

    Parameters
    ----------
    library : SSPLibrary, optional
        Default: :func:`sfh_ml.synthesis.ssp.load_library`.
    wave_aa : ndarray, shape (n_wave,), optional
        Output wavelength grid (air, Angstrom); default the MUSE cube grid (4749.89 A + 1.25 A x 3681).
    filters : sequence of str
        pyphot names of the bands, default the five PHANGS-HST bands.
    sigma_kms : float or (float, float)
        Stellar velocity dispersion(s) the synthesizer must support: one value (150 km/s, the
        seed's choice) or a range; within a range the SSPs are broadened at log-spaced nodes
        (10 % apart) and interpolated.
    phot_bin_aa : float
        Width of the bins on which dust is applied for the fluxes (50 A: error < 2e-4 for
        tau_V <= 3 in F275W, the worst case).
    neb_rank : int
        Number of singular vectors kept for the nebular continuum (relative error < 1e-3).
    dtype : numpy dtype
        Floating type of the outputs.
    dust_law : {"cf00", "calzetti", "smc"}
        Curve of the diffuse-ISM screen (:func:`sfh_ml.synthesis.dust.dust_curve`); the birth clouds
        always follow the CF00 power law (:data:`sfh_ml.synthesis.dust.CF00_SLOPE`). Spectra, fluxes
        and the light-weighted truths after dust all use it (the latter at 5500 A, where every curve
        is 1).
    dust_slope : float
        Index of the ISM power law when ``dust_law`` is ``"cf00"`` (default CF00's -0.7).
    birth_cloud_age_yr : float
        Stars younger than this sit in their birth clouds (default 10 Myr, CF00). Any age in
        (0, 1 Gyr] works: an SSP age bin that straddles it is split by the mass formed on each side.
        The nebular emission (Cloudy grids of stars younger than 10 Myr) always sees the birth cloud:
        it is the birth cloud's gas.
    """

    def __init__(
        self,
        library=None,
        wave_aa=None,
        filters=PHANGS_FILTERS,
        sigma_kms=150.0,
        phot_bin_aa=50.0,
        neb_rank=12,
        dtype=np.float32,
        dust_law="cf00",
        dust_slope=CF00_SLOPE,
        birth_cloud_age_yr=BIRTH_CLOUD_AGE_YR,
    ):
        if not 0 < birth_cloud_age_yr <= 1e9:
            raise ValueError(f"birth_cloud_age_yr must be in (0, 1e9] yr, got {birth_cloud_age_yr}")
        dust_curve(V_WAVE_AA, dust_law, dust_slope)  # validates the law and its slope
        self.dust_law, self.dust_slope = dust_law, float(dust_slope)
        self.birth_cloud_age_yr = float(birth_cloud_age_yr)
        lib = load_library() if library is None else library
        self.library = lib
        self.dtype = dtype
        self.filters = tuple(filters)
        self.wave_aa = self._output_grid(wave_aa)
        self.sigma_nodes_kms = _sigma_nodes(sigma_kms)
        self.n_age, self.n_zh = lib.flux.shape[:2]
        self.n_young = int(
            np.sum(lib.age_edges_yr[:-1] < self.birth_cloud_age_yr)
        )  # bins with stars in clouds
        tpl = lib.flux.reshape(self.n_age * self.n_zh, -1).astype(np.float64)  # (n_t, n_lw)
        self._broaden_templates(tpl)
        neb_vt = self._nebular_basis(neb_rank)
        lam_col = self._photometry_operators(tpl, neb_vt, phot_bin_aa)
        self._dust_curves(lam_col)
        self._muse_lines = self._lines_on_the_grid()
        self._ssp_v = v_band_flux(lib)  # (n_age, n_zh): 5500 A flux, for light weights

    # ------------------------------------------------------------------ set-up steps
    def _output_grid(self, wave_aa):
        """The output grid (default MUSE), checked against the library's range (50 A margins)."""
        if wave_aa is None:
            return muse_wave()
        wave_aa = check_wave_aa(wave_aa, increasing=True)
        lw = self.library.wave_aa
        if wave_aa[0] < lw[0] + 50 or wave_aa[-1] > lw[-1] - 50:
            raise ValueError(
                f"wave_aa {wave_aa[0]:.0f}-{wave_aa[-1]:.0f} A is outside the SSP library "
                f"({lw[0] + 50:.0f}-{lw[-1] - 50:.0f} A usable)"
            )
        return wave_aa

    def _broaden_templates(self, tpl):
        """Stellar templates on the output grid at the MUSE LSF plus each dispersion node."""
        lib, lw = self.library, self.library.wave_aa
        fwhm_lib = np.interp(self.wave_aa, lw, lib.fwhm_aa)
        self._tpl = np.empty((self.sigma_nodes_kms.size, tpl.shape[0], self.wave_aa.size), dtype=self.dtype)
        for k, s in enumerate(self.sigma_nodes_kms):
            op = broadening_matrix(lw, self.wave_aa, total_sigma_aa(self.wave_aa, s, fwhm_lib))
            self._tpl[k] = (op @ tpl.T).T
        self._tpl_young = np.ascontiguousarray(self._tpl[:, : self.n_young * self.n_zh])

    def _nebular_basis(self, rank):
        """Low-rank basis of the nebular continuum (it is smooth), at the LSF on the output grid.

        Returns the basis on the library grid, ndarray of shape (rank, n_lw).
        """
        lib, lw = self.library, self.library.wave_aa
        u, s, vt = _nebular_svd(lib)
        self._neb_coef = (u[:, :rank] * s[:rank]).astype(self.dtype)  # (n_neb, rank)
        op_lsf = broadening_matrix(lw, self.wave_aa, total_sigma_aa(self.wave_aa, 0.0))
        self._neb_basis = (op_lsf @ vt[:rank].T).T.astype(self.dtype)  # (rank, n_wave)
        self._line_lum = lib.line_lum.reshape(-1, lib.line_wave_aa.size).astype(
            self.dtype
        )  # (n_neb, n_lines)
        return vt[:rank]

    def _photometry_operators(self, tpl, neb_vt, bin_aa):
        """Band-weighted integrals of each template over ``bin_aa`` bins (dust is applied per bin), and
        the contribution of each emission line (a delta function) to each band.

        Returns the mean wavelength of each (band, bin) column, ndarray of shape (n_col,).
        """
        lw = self.library.wave_aa
        bw = band_weights(lw, self.filters)  # (n_band, n_lw)
        cols, rows, vals, band_of_col, lam_col = [], [], [], [], []
        bin_id = np.floor((lw - lw[0]) / bin_aa).astype(int)
        for b in range(bw.shape[0]):
            nz = np.flatnonzero(bw[b] > 0)
            for j in np.unique(bin_id[nz]):
                pix = nz[bin_id[nz] == j]
                c = len(band_of_col)
                rows.extend(pix)
                cols.extend([c] * pix.size)
                vals.extend(bw[b, pix])
                band_of_col.append(b)
                lam_col.append(np.sum(bw[b, pix] * lw[pix]) / np.sum(bw[b, pix]))
        proj = sparse.csr_matrix((vals, (rows, cols)), shape=(lw.size, len(band_of_col)))  # (n_lw, n_col)
        self._phot_tpl = np.asarray((proj.T @ tpl.T).T, dtype=self.dtype)  # (n_t, n_col)
        self._phot_tpl_young = np.ascontiguousarray(self._phot_tpl[: self.n_young * self.n_zh])
        self._phot_neb = np.asarray((proj.T @ neb_vt.T).T, dtype=self.dtype)  # (rank, n_col)
        self._phot_sum = np.zeros((len(band_of_col), bw.shape[0]), dtype=self.dtype)
        self._phot_sum[np.arange(len(band_of_col)), band_of_col] = 1.0
        # A line contributes L T(lambda_l) lambda_l / int T lambda dlambda to a band.
        trap = np.gradient(lw)
        lines = self.library.line_wave_aa
        self._line_phot = np.zeros((lines.size, bw.shape[0]))
        for b in range(bw.shape[0]):
            self._line_phot[:, b] = np.interp(lines, lw, bw[b] / trap, left=0.0, right=0.0)
        return np.array(lam_col)

    def _dust_curves(self, lam_col):
        """tau(lambda) / tau_V of the birth clouds (``_k_*``) and of the ISM (``_k_*_ism``) on the output
        grid, the flux columns and the emission lines."""
        self._lam_col = lam_col
        self._k_wave = attenuation_curve(self.wave_aa).astype(self.dtype)
        self._k_phot = attenuation_curve(lam_col).astype(self.dtype)
        self._line_k = attenuation_curve(self.library.line_wave_aa)
        self._same_dust = self.dust_law == "cf00" and self.dust_slope == CF00_SLOPE
        if self._same_dust:  # one curve for both screens (the training model)
            self._k_wave_ism, self._k_phot_ism, self._line_k_ism = self._k_wave, self._k_phot, self._line_k
        else:
            law, slope = self.dust_law, self.dust_slope
            self._k_wave_ism = dust_curve(self.wave_aa, law, slope).astype(self.dtype)
            self._k_phot_ism = dust_curve(lam_col, law, slope).astype(self.dtype)
            self._line_k_ism = dust_curve(self.library.line_wave_aa, law, slope)

    def _ism_curves(self, params):
        """tau(lambda) / tau_V of each object's ISM on the output grid, the flux columns and the lines:
        the synthesizer's curves (shape (n_wave,), ...) or, with per-object ``params.ism_slope``,
        (n_obj, n_wave), ..., the power law for those objects and the synthesizer's for the rest."""
        fixed = (self._k_wave_ism, self._k_phot_ism, self._line_k_ism)
        own = np.isfinite(params.ism_slope)
        if not own.any():
            return fixed
        grids = (self.wave_aa, self._lam_col, self.library.line_wave_aa)
        out = []
        for grid, k in zip(grids, fixed):
            curves = np.repeat(np.asarray(k)[None, :], len(params), axis=0)
            curves[own] = attenuation_curve(grid, params.ism_slope[own][:, None])
            out.append(curves)
        return tuple(out)

    def _lines_on_the_grid(self):
        """Lines drawn on the spectra: near the grid, and reaching
        :data:`~sfh_ml.synthesis.lines.LINE_MIN_HBETA_RATIO` of H-beta somewhere (33 for MUSE)."""
        lib, w = self.library, self.wave_aa
        lines = lib.line_wave_aa
        margin = 10 * (muse_lsf_fwhm(w[-1]) + 500.0 / C_KMS * w[-1])
        hb = lib.line_index(HBETA_LABEL)
        strong = (
            np.max(lib.line_lum / lib.line_lum[..., hb : hb + 1].clip(1e-30), axis=(0, 1, 2))
            > LINE_MIN_HBETA_RATIO
        )
        return np.flatnonzero((lines > w[0] - margin) & (lines < w[-1] + margin) & strong)

    def bin_light(self, age_bins_yr, zh_grid=None, closed=True):
        """5500 A luminosity per M_sun formed at a constant rate within each age bin, per [M/H].

        See :func:`bin_light`; returns ndarray of shape (n_bins, n_zh), L_sun / A per M_sun formed,
        before dust (columns: ``zh_grid``, default the library's [M/H]).
        """
        return bin_light(self.library, age_bins_yr, zh_grid, closed)

    # ------------------------------------------------------------------ weights
    def _weights(self, sfh, params=None):
        """Mass-and-metallicity weights of the SSPs and of the nebular grid for each object (with
        ``params``: its own birth-cloud age and mass-to-light perturbation, if it has them)."""
        lib = self.library
        n = len(sfh)
        edges = lib.age_edges_yr
        c = sfh.cumulative_at(np.concatenate([[0.0], edges[1:-1], [edges[-1]]]))
        c[:, 0], c[:, -1] = 0.0, 1.0
        mass = np.clip(np.diff(c, axis=1), 0, None)  # (n, n_age)
        bc = np.full(n, self.birth_cloud_age_yr)
        if params is not None:
            own = np.isfinite(params.birth_cloud_age_yr)
            bc[own] = params.birth_cloud_age_yr[own]
            if np.any(bc > self.birth_cloud_age_yr * (1 + 1e-9)):
                raise ValueError(
                    f"per-object birth_cloud_age_yr up to {bc.max():.3g} yr, above the "
                    f"{self.birth_cloud_age_yr:.3g} yr this Synthesizer was built for: build it with "
                    "birth_cloud_age_yr set to the largest one"
                )
        if np.all(bc == self.birth_cloud_age_yr):  # one age for all: the histories' shared-grid call
            c_bc = sfh.cumulative_at(np.minimum(edges[: self.n_young + 1], self.birth_cloud_age_yr))
        else:
            c_bc = sfh.cumulative_at(np.minimum(edges[None, : self.n_young + 1], bc[:, None]))
        mass_young = np.clip(np.diff(c_bc, axis=1), 0, None)  # (n, n_young): part of each bin in clouds
        mass_old = mass.copy()
        mass_old[:, : self.n_young] -= mass_young
        mass_old = np.clip(mass_old, 0, None)
        if params is not None and np.any(params.ml_slope != 0):
            light = 10.0 ** (params.ml_slope[:, None] * (lib.log_age[None, :] - 9.0))  # (n, n_age)
            mass_old = mass_old * light
            mass_young = mass_young * light[:, : self.n_young]
        zh = sfh.zh_in_bins(edges)  # (n, n_age)
        wz = interp_weights(zh, lib.zh)  # (n, n_age, n_zh)
        neb_edges = lib.neb_age_edges_yr
        return _Weights(
            mass=mass,
            zh=zh,
            wz=wz,
            w_old=(mass_old[:, :, None] * wz).reshape(n, -1),
            w_young=(mass_young[:, :, None] * wz[:, : self.n_young]).reshape(n, -1),
            m_neb=np.clip(np.diff(sfh.cumulative_at(neb_edges), axis=1), 0, None),
            z_neb=sfh.zh_in_bins(neb_edges, closed=False),
        )

    def _nebular_weights(self, m_neb, z_neb, log_u):
        """Cloudy-grid weights flattened as (age, [M/H], log U): (n_obj, n_neb_age * n_zh * n_u)."""
        lib = self.library
        wz = interp_weights(z_neb, lib.zh)  # (n, n_neb_age, n_zh)
        wu = interp_weights(log_u, lib.log_u)  # (n, n_u)
        return (m_neb[:, :, None, None] * wz[:, :, :, None] * wu[:, None, None, :]).reshape(len(m_neb), -1)

    # ------------------------------------------------------------------ main entry
    def __call__(self, sfh, params, rng=None, noise=True, components=False, block_size=1024):
        """Synthesise spectra and fluxes.

        Parameters
        ----------
        sfh : SFHBatch
            ``n_obj`` histories (total mass formed: 1 M_sun each).
        params : SynthesisParams
            ``n_obj`` sets of dust, nebular, kinematic and noise parameters.
        rng : numpy.random.Generator, optional
            For the noise (required if ``noise``).
        noise : bool
            Add noise.
        components : bool
            Also return the stellar, nebular-continuum and emission-line parts of the noise-free
            spectrum, and the spectrum without dust.
        block_size : int
            Objects processed at a time; blocks of ~1000 keep the work arrays small enough to be
            recycled by the allocator, which is much faster than fresh memory for large batches.

        Returns
        -------
        dict of ndarray
            ``spectra_noiseless`` (n_obj, n_wave) and ``photometry_noiseless`` (n_obj, n_band), in
            L_sun / A per M_sun formed; ``spectra``, ``ivar``, ``photometry`` and
            ``photometry_ivar`` if ``noise``, with ``noise`` (n_obj, n_wave) and ``photometry_err``
            (n_obj, n_band), the 1-sigma errors they were drawn with; ``mass_ssp`` (n_obj, n_age)
            and ``zh_ssp``, the mass formed and [M/H] per SSP age; the (n_obj,) means of
            :meth:`_summaries`: ``mw_log_age``, ``mw_zh`` (mass formed), ``lw_log_age``, ``lw_zh``
            (5500 A light, before dust), ``lw_log_age_dust``, ``lw_zh_dust`` (after dust), and
            ``mstar_frac``, the stellar mass left per unit mass formed; ``mw_log_age_exact``
            (n_obj,), the mass-weighted log age of the continuous history
            (:meth:`sfh_ml.synthesis.sfh.SFHBatch.mean_log_age`); ``line_lum`` (n_obj, n_lines),
            emission-line luminosities before dust, L_sun per M_sun formed.
        """
        n = len(sfh)
        if len(params) != n:
            raise ValueError(f"{n} histories but {len(params)} parameter sets")
        if noise and rng is None:
            raise ValueError("an rng is needed to add noise")
        if n > block_size:
            parts = [
                self(
                    sfh.take(slice(i, i + block_size)),
                    params.take(slice(i, i + block_size)),
                    rng,
                    noise,
                    components,
                    block_size,
                )
                for i in range(0, n, block_size)
            ]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        self._check_sigma(params.stellar_sigma_kms())
        dt = self.dtype
        w = self._weights(sfh, params)
        w_old, w_young = w.w_old.astype(dt), w.w_young.astype(dt)
        w_neb = self._nebular_weights(w.m_neb, w.z_neb, params.log_u).astype(dt)
        line_lum = (w_neb @ self._line_lum) * params.line_scale.reshape(n, -1).astype(dt)  # (n, n_lines)
        neb_coef = w_neb @ self._neb_coef  # (n, rank)
        old, young = self._stellar_spectra(w_old, w_young, params.stellar_sigma_kms())
        neb_cont = neb_coef @ self._neb_basis
        lines = self._emission_lines(line_lum, params.sigma_gas_kms, params.lsf_scale)
        ism = self._ism_curves(params)
        att_ism = transmission(params.tau_ism, ism[0])
        att_bc = transmission(params.tau_bc, self._k_wave)
        spec = att_ism * (old + att_bc * (young + neb_cont + lines))
        phot = self._photometry(w_old, w_young, neb_coef, line_lum, params, ism)
        out = dict(
            spectra_noiseless=spec,
            photometry_noiseless=phot,
            **self._summaries(w, params),
            mw_log_age_exact=sfh.mean_log_age(),
            line_lum=line_lum,
        )
        if noise:
            out.update(self.noisy(spec, phot, params, rng))
        if components:
            out["stellar"] = att_ism * (old + att_bc * young)
            out["nebular_continuum"] = att_ism * att_bc * neb_cont
            out["emission_lines"] = att_ism * att_bc * lines
            out["dust_free"] = old + young + neb_cont + lines
        return out

    # ------------------------------------------------------------------ synthesis steps
    def _check_sigma(self, sigma_kms):
        if np.any(sigma_kms < self.sigma_nodes_kms[0] - 1e-6) or np.any(
            sigma_kms > self.sigma_nodes_kms[-1] + 1e-6
        ):
            raise ValueError(
                f"sigma_kms outside the range this Synthesizer was built for "
                f"({self.sigma_nodes_kms[0]:.0f}-{self.sigma_nodes_kms[-1]:.0f} km/s)"
            )

    def _stellar_spectra(self, w_old, w_young, sigma_kms):
        """Old and young stellar spectra, interpolating between the dispersion nodes' templates."""
        old = np.zeros((w_old.shape[0], self.wave_aa.size), dtype=self.dtype)
        young = np.zeros_like(old)
        if self.sigma_nodes_kms.size == 1:
            old[:] = w_old @ self._tpl[0]
            young[:] = w_young @ self._tpl_young[0]
            return old, young
        ws = interp_weights(sigma_kms, self.sigma_nodes_kms)  # (n, n_sig)
        for k in np.flatnonzero(ws.sum(axis=0) > 0):
            sel = np.flatnonzero(ws[:, k] > 0)
            f = ws[sel, k : k + 1].astype(self.dtype)
            old[sel] += f * (w_old[sel] @ self._tpl[k])
            young[sel] += f * (w_young[sel] @ self._tpl_young[k])
        return old, young

    def _emission_lines(self, line_lum, sigma_gas_kms, lsf_scale=1.0):
        """Lines on the output grid, Gaussians of the MUSE LSF (times ``lsf_scale``, (n_obj,)) and the
        gas dispersion in quadrature."""
        lines = np.zeros((line_lum.shape[0], self.wave_aa.size), dtype=self.dtype)
        idx = self._muse_lines
        lam = self.library.line_wave_aa[idx]
        lsf = muse_lsf_fwhm(lam) * FWHM_TO_SIGMA * np.reshape(lsf_scale, (-1, 1))
        sig_line = np.sqrt(lsf**2 + (sigma_gas_kms[:, None] * lam / C_KMS) ** 2)
        return add_lines(lines, self.wave_aa, lam, line_lum[:, idx], sig_line)

    def _photometry(self, w_old, w_young, neb_coef, line_lum, params, ism):
        """Fluxes: template integrals per bin with that bin's dust, lines as delta functions (``ism``:
        the ISM curves of :meth:`_ism_curves`)."""
        dt = self.dtype
        _, k_phot_ism, line_k_ism = ism
        a_ism = transmission(params.tau_ism, k_phot_ism)
        a_bc = transmission(params.tau_bc, self._k_phot)
        cols = a_ism * (
            w_old @ self._phot_tpl + a_bc * (w_young @ self._phot_tpl_young + neb_coef @ self._phot_neb)
        )
        if self._same_dust and line_k_ism is self._line_k:
            line_att = transmission(params.tau_ism + params.tau_bc, self._line_k)
        else:
            line_att = transmission(params.tau_ism, line_k_ism) * transmission(params.tau_bc, self._line_k)
        return cols @ self._phot_sum + ((line_lum * line_att) @ self._line_phot).astype(dt)

    def _summaries(self, w, params):
        """Mass- and light-weighted ages and [M/H], surviving mass, and the truth on the SSP grid.

        Light-weighted means are taken over the SSP mixture itself: the SSP of age a and [M/H] z
        weighs light_az = mass_az * L5500_az (mass_az: the mass formed in age bin a times its [M/H]
        interpolation weight on z; L5500: :func:`v_band_flux`) and contributes its own log age and
        [M/H]. ``lw_*`` are before dust; ``lw_*_dust`` after it, at 5500 A (tau = tau_V for every
        law, see :mod:`sfh_ml.synthesis.dust`): stars younger than ``birth_cloud_age_yr`` dimmed by
        exp(-(tau_bc + tau_ism)), older ones by exp(-tau_ism).

        Returns
        -------
        dict of ndarray
            ``mass_ssp``, ``zh_ssp`` (n_obj, n_age); ``mw_log_age``, ``lw_log_age``,
            ``lw_log_age_dust`` (log10 yr), ``mw_zh``, ``lw_zh``, ``lw_zh_dust`` (dex),
            ``mstar_frac`` (n_obj,); ``lum_5500``, ``lum_5500_dust`` (n_obj,), the total 5500 A
            light the light weights sum to (L_sun / A per M_sun formed).
        """
        lib = self.library
        n = w.mass.shape[0]
        old = w.w_old.reshape(n, self.n_age, self.n_zh) * self._ssp_v  # (n, n_age, n_zh)
        young = np.zeros_like(old)
        young[:, : self.n_young] = w.w_young.reshape(n, self.n_young, self.n_zh) * self._ssp_v[: self.n_young]
        t_ism = np.exp(-params.tau_ism)[:, None, None]
        t_bc = np.exp(-params.tau_bc)[:, None, None]
        out = dict(
            mass_ssp=w.mass,
            zh_ssp=w.zh,
            mw_log_age=w.mass @ lib.log_age,
            mw_zh=np.sum(w.mass * w.zh, axis=1),
        )
        for suffix, light in (("", old + young), ("_dust", t_ism * (old + t_bc * young))):
            total = light.sum(axis=(1, 2))
            out[f"lum_5500{suffix}"] = total
            out[f"lw_log_age{suffix}"] = light.sum(axis=2) @ lib.log_age / total
            out[f"lw_zh{suffix}"] = light.sum(axis=1) @ lib.zh / total
        out["mstar_frac"] = np.einsum("na,naz,az->n", w.mass, w.wz, lib.mstar_frac)
        return out

    def noisy(self, spec, phot, params, rng):
        """Noisy spectra (S/N per pixel in 5300-5700 A, MUSE-like shape) and fluxes (S/N per band),
        with their 1-sigma errors and inverse variances.

        The noise step of :meth:`__call__`, for noise-free spectra perturbed in between
        (:mod:`sfh_ml.synthesis.perturbations`); same draws from ``rng`` as :meth:`__call__`.

        Parameters
        ----------
        spec : ndarray, shape (n_obj, n_wave)
        phot : ndarray, shape (n_obj, n_band)
            Noise-free spectra and fluxes.
        params : SynthesisParams
        rng : numpy.random.Generator

        Returns
        -------
        dict of ndarray
            ``spectra``, ``noise``, ``ivar``, ``photometry``, ``photometry_err``, ``photometry_ivar``.
        """
        dt = self.dtype
        sigma = noise_sigma(spec, params.snr, self.wave_aa, params.sky_frac, params.sky_z).astype(dt)
        noisy = rng.standard_normal(spec.shape, dtype=dt)
        noisy *= sigma
        noisy += spec
        ivar = np.square(sigma)
        np.reciprocal(ivar, out=ivar)
        snr_phot = params.snr_phot.reshape(len(params), -1).astype(dt)  # (n, 1) or (n, n_band)
        sig_phot = (phot / snr_phot).astype(dt)
        return dict(
            spectra=noisy,
            noise=sigma,
            ivar=ivar,
            photometry=phot + sig_phot * rng.standard_normal(phot.shape, dtype=dt),
            photometry_err=sig_phot,
            photometry_ivar=1.0 / sig_phot**2,
        )

    def full_spectrum(self, sfh, params):
        """Rest-frame spectrum on the library grid (1680-11010 A, 0.9 A, library resolution).

        The same model as :meth:`__call__` without the MUSE broadening and noise, with emission
        lines as Gaussians of the gas dispersion. Used to draw the spectral energy distribution
        and to check the fluxes against an independent integration.

        Returns
        -------
        wave_aa : ndarray, shape (n_lw,)
        flux : ndarray, shape (n_obj, n_lw)
            L_sun / A per M_sun formed.
        """
        lib = self.library
        n = len(sfh)
        w = self._weights(sfh, params)
        tpl = lib.flux.reshape(self.n_age * self.n_zh, -1).astype(np.float64)
        w_neb = self._nebular_weights(w.m_neb, w.z_neb, params.log_u)
        line_lum = w_neb @ lib.line_lum.reshape(-1, lib.line_wave_aa.size)
        line_lum = line_lum * params.line_scale.reshape(n, -1)
        neb = w_neb @ lib.neb_cont.reshape(-1, lib.wave_aa.size).astype(np.float64)
        lines = np.zeros((n, lib.wave_aa.size))
        lam = lib.line_wave_aa
        inside = (lam > lib.wave_aa[0]) & (lam < lib.wave_aa[-1])
        sig = np.maximum(params.sigma_gas_kms[:, None] * lam[inside] / C_KMS, 0.3)
        add_lines(lines, lib.wave_aa, lam[inside], line_lum[:, inside], sig)
        k = attenuation_curve(lib.wave_aa)
        k_ism = np.repeat(dust_curve(lib.wave_aa, self.dust_law, self.dust_slope)[None, :], n, axis=0)
        own = np.isfinite(params.ism_slope)
        k_ism[own] = attenuation_curve(lib.wave_aa, params.ism_slope[own][:, None])
        a_ism = transmission(params.tau_ism, k_ism)
        a_bc = transmission(params.tau_bc, k)
        young = w.w_young @ tpl[: self.n_young * self.n_zh]
        return lib.wave_aa, a_ism * (w.w_old @ tpl + a_bc * (young + neb + lines))


class LibraryMix:
    """Two synthesizers of the same setup but different SSP libraries, mixed per object (domain
    randomisation of the stellar spectra).

    Object i gets ``weight[i] * first + (1 - weight[i]) * second``. Synthesis is linear in the
    templates, so for the same history and parameters the mix of the two outputs is exactly the
    synthesis with the mixed library: spectra, fluxes, line luminosities and surviving mass mix
    linearly; mass-weighted truths do not depend on the library (same age and [M/H] grids); the
    light-weighted means mix their light weights (means weighted by ``weight * lum_5500``).

    Parameters
    ----------
    first, second : Synthesizer
        Built with the same wavelength grid, bands, dispersions, dust and libraries on the same age
        and [M/H] grids (e.g. E-MILES and BC03).
    """

    def __init__(self, first, second):
        if first.library.age_yr.shape != second.library.age_yr.shape or not np.allclose(
            first.library.age_yr, second.library.age_yr
        ):
            raise ValueError("the two libraries must share their age grid")
        if not np.array_equal(first.wave_aa, second.wave_aa) or first.filters != second.filters:
            raise ValueError("the two synthesizers must share their wavelength grid and bands")
        self.first, self.second = first, second
        self.library, self.wave_aa, self.filters = first.library, first.wave_aa, first.filters

    _LINEAR = (
        "spectra_noiseless",
        "photometry_noiseless",
        "line_lum",
        "mstar_frac",
        "lum_5500",
        "lum_5500_dust",
    )

    def __call__(self, sfh, params, weight, rng=None, noise=True):
        """Synthesise with each object's library mix.

        Parameters
        ----------
        sfh : SFHBatch
        params : SynthesisParams
        weight : ndarray, shape (n_obj,)
            Share of the first library, in [0, 1].
        rng : numpy.random.Generator, optional
            For the noise (same draws as :meth:`Synthesizer.__call__`).
        noise : bool

        Returns
        -------
        dict of ndarray
            As :meth:`Synthesizer.__call__` (without ``components``).
        """
        w = np.asarray(weight, dtype=float)
        if w.shape != (len(sfh),) or np.any(w < 0) or np.any(w > 1):
            raise ValueError("weight must hold one value in [0, 1] per object")
        a = self.first(sfh, params, noise=False)
        b = self.second(sfh, params, noise=False)
        out = dict(a)
        for key in self._LINEAR:
            wk = w.reshape((-1,) + (1,) * (a[key].ndim - 1)).astype(a[key].dtype)
            out[key] = wk * a[key] + (1 - wk) * b[key]
        for suffix in ("", "_dust"):
            la, lb = w * a[f"lum_5500{suffix}"], (1 - w) * b[f"lum_5500{suffix}"]
            for name in (f"lw_log_age{suffix}", f"lw_zh{suffix}"):
                out[name] = (la * a[name] + lb * b[name]) / (la + lb)
        if noise:
            if rng is None:
                raise ValueError("an rng is needed to add noise")
            out.update(self.first.noisy(out["spectra_noiseless"], out["photometry_noiseless"], params, rng))
        return out
