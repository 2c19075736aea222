"""The configuration of a synthetic set: :class:`DatasetConfig`, its checks and its JSON form.

Equal configs give identical files (:func:`sfh_ml.synthesis.dataset.generate`). The options of held-out
"worlds" (:data:`WORLD_DEFAULTS`) draw their random numbers from their own streams
(:meth:`DatasetConfig.world_rng`); at their defaults they are left out of the stored config.
"""

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from ..constants import BIRTH_CLOUD_AGE_YR, TRAINING_SIGMA_KMS
from ..utils import check_positive_int
from . import schema
from .dust import CF00_SLOPE, DUST_LAWS
from .history_worlds import ZH_TRACKS
from .instrument import SKY_Z_RANGE
from .parametric import PARAMETRIC_FAMILIES
from .photometry import PHANGS_FILTERS, phangs_snr
from .sfh import YOUNG_BIN_EDGES_YR, ChemicalEvolution, DenseBasis, SkewNormalBurst, default_age_bins
from .ssp import LIBRARY_VARIANTS, load_library
from .synthesizer import LibraryMix, SynthesisParams, Synthesizer

__all__ = ["DatasetConfig", "FAMILIES", "LIBRARIES", "TRAINING_FAMILIES", "WORLD_DEFAULTS", "MAX_N"]

TRAINING_FAMILIES = ("skewnormal", "densebasis", "mix")
FAMILIES = (*TRAINING_FAMILIES, *PARAMETRIC_FAMILIES, "parametric")
LIBRARIES = (*LIBRARY_VARIANTS, "mix")
# Options of held-out worlds and their defaults (the training set's): left out of the stored config
# at these values, so files made before they existed keep their bytes.
WORLD_DEFAULTS = dict(
    dust_law="cf00",
    dust_slope=CF00_SLOPE,
    birth_cloud_age_yr=BIRTH_CLOUD_AGE_YR,
    flux_calibration=0.0,
    lsf_error=0.0,
    wave_shift_kms=0.0,
    sky_residual=0.0,
    library_mix=(0.0, 1.0),
    parametric_frac=0.0,
    zh_track="rising",
    zh_track_frac=0.0,
    burst_any_age=0.0,
    ml_slope=(0.0, 0.0),
    line_scatter=0.0,
)
# spawn_key (chunk, k) of each option's random stream
_STREAMS = dict(
    family=1, library_mix=2, flux_calibration=3, lsf_error=4, wave_shift_kms=5, sky_residual=6,
    zh_track=7, burst_any_age=8, dust_slope=9, birth_cloud_age_yr=10, ml_slope=11, line_scatter=12,
)  # fmt: skip


# The largest set generate accepts: 10^8 objects are ~3 TB of chunks plus the file (about 30 kB per
# object), a week of synthesis on 16 cores; more is a typing error (a count of 2**63 would spin for
# minutes building its list of chunks before any other check).
MAX_N = 10**8


def _pair(value, name):
    v = np.atleast_1d(np.asarray(value, dtype=float))
    if v.size == 1:
        v = np.repeat(v, 2)
    if v.size != 2 or not np.all(np.isfinite(v)) or v[1] < v[0]:
        raise ValueError(f"{name} must be a value or an increasing (min, max) range, got {value!r}")
    return (float(v[0]), float(v[1]))


def _value_or_range(value, name):
    """A float, or a (min, max) tuple of floats when the two differ (a range drawn per object)."""
    lo, hi = _pair(value, name)
    return lo if lo == hi else (lo, hi)


@dataclass
class DatasetConfig:
    """Everything that defines a synthetic set; equal configs give identical files.

    Ranges are (min, max) pairs (equal values fix the parameter); S/N and the gas dispersion are
    drawn log-uniformly, the rest uniformly (the ``"phangs"`` photometric S/N: log-normally).

    Parameters
    ----------
    n : int
        Number of objects.
    seed : int
        Master seed.
    family : str
        SFH family. Training families: ``"skewnormal"``, ``"densebasis"``, ``"mix"`` (each object from
        either, skew-normal with probability ``mix_skewnormal``). Held-out families
        (:mod:`sfh_ml.synthesis.parametric`): ``"delayedtau"`` (delayed tau + burst), ``"exptau"``
        (exponential), ``"truncated"`` (constant, then quenched), ``"lognormal"``, ``"doublepl"``
        (double power law), or ``"parametric"`` (each object from one of these five, equal odds);
        everything else is drawn as for ``"mix"``, from the same random numbers. See also
        ``parametric_frac``.
    snr : (float, float)
        S/N per MUSE pixel (5300-5700 A continuum).
    snr_phot : "phangs" or (float, float)
        S/N of the HST fluxes: ``"phangs"`` draws a S/N per object and band with the spread of the
        PHANGS-HST cluster catalogues (F275W the noisiest; approximate, see
        :func:`sfh_ml.synthesis.photometry.phangs_snr`); a range draws one S/N per object for all
        bands (log-uniform, the seed's behaviour with (20, 20)).
    sky_frac : (float, float)
        Fraction of the spectrum's 5300-5700 A variance from the night sky and the detector
        (uniform): near 1 for faint, sky-dominated disc regions, near 0 for bright cluster
        apertures (see :func:`sfh_ml.synthesis.instrument.noise_sigma`).
    sky_z : (float, float)
        Redshift at which the sky lines and the throughput fall on the rest-frame spectrum (uniform;
        default :data:`sfh_ml.synthesis.instrument.SKY_Z_RANGE`).
    sigma_kms : (float, float)
        Stellar velocity dispersion, km/s: by default 150-350 (PHANGS bulges and massive-cluster
        apertures; colder disc spectra are broadened to 150 km/s before prediction).
    sigma_gas_kms : (float, float)
        Gas velocity dispersion, km/s.
    tau_bc, tau_ism : (float, float)
        V-band optical depths (birth cloud, ISM).
    log_u : (float, float)
        Ionisation parameter.
    n_bins : int
        Number of log-spaced target age bins from 10 Myr to 14.1 Gyr (the seed's 16); the young bins
        come on top of them (``len(young_bins_yr) + n_bins`` bins in all, 19 by default).
    young_bins_yr : tuple of float
        Edges of the target bins below 10 Myr, in years, increasing (default 1, 3 and 6 Myr: bins
        1-3, 3-6 and 6-10 Myr, the first one also holding the stars younger than 1 Myr); ``()`` gives
        only the log-spaced bins, the first from 0 to the next log edge. See
        :func:`sfh_ml.synthesis.sfh.default_age_bins`.
    n_tx, alpha : int, float
        Dense-basis parameters.
    mix_skewnormal : float
        Fraction of skew-normal histories in ``mix``.
    chunk_size : int
        Objects per independently seeded chunk.
    filters : tuple of str
        pyphot band names.
    library : {"emiles", "bc03", "mix"}
        SSP library of the stars (see :mod:`sfh_ml.synthesis.ssp`): ``"bc03"`` makes held-out sets
        whose stellar spectra the network (trained on ``"emiles"``) has never seen; everything else
        is drawn and computed the same way, from the same random numbers. ``"mix"``: each object's
        stars are w E-MILES + (1 - w) BC03, w uniform in ``library_mix`` (domain randomisation; see
        :class:`sfh_ml.synthesis.synthesizer.LibraryMix`; the file's ``bin_light`` is E-MILES').
    dust_law : {"cf00", "calzetti", "smc"}
        Curve of the diffuse-ISM screen (:func:`sfh_ml.synthesis.dust.dust_curve`, normalised at
        5500 A); the birth clouds keep the CF00 power law.
    dust_slope : float or (float, float)
        Index of the ISM power law for ``"cf00"`` (default -0.7, CF00); a (min, max) range draws one
        per object, uniformly (domain randomisation of the dust law: greyer than Calzetti's, about
        -0.8 in the optical, near -0.4, as star-dust mixed geometries give; SMC-like near -1.3).
    birth_cloud_age_yr : float or (float, float)
        Age at which stars leave their birth clouds, years (default 1e7; any value in (0, 1e9]); a
        (min, max) range draws one per object, log-uniformly.
    flux_calibration : float
        Rms of a smooth multiplicative flux-calibration error of the spectra (Legendre orders 1-3,
        :func:`sfh_ml.synthesis.perturbations.flux_calibration_error`), e.g. 0.03; 0: none.
    lsf_error : float
        Largest fractional error of the MUSE LSF width: each object is observed with an LSF
        (1 + e) times the nominal one, e uniform in [-lsf_error, lsf_error]; 0: none.
    wave_shift_kms : float
        Rms (normal) of a residual wavelength-calibration / redshift error, km/s; 0: none.
    sky_residual : float
        Amplitude of sky-subtraction residuals at the night-sky lines, in units of the local noise
        (:func:`sfh_ml.synthesis.perturbations.sky_residuals`); 0: none.
    library_mix : (float, float)
        Range of the E-MILES share w for ``library="mix"`` (uniform).
    parametric_frac : float
        With a training family: the fraction of objects (each with this probability) whose history
        is drawn instead from one of the five parametric families, equal odds (domain randomisation
        of the histories; everything else is drawn as without it). 0: none.
    zh_track : {"rising", "constant", "falling"}
        Metallicity tracks (:func:`sfh_ml.synthesis.history_worlds.with_zh_tracks`): the training
        population's, rising with the mass formed; constant at their final [M/H]; or falling (the
        first stars the most metal-rich).
    zh_track_frac : float
        With ``zh_track="rising"``: the fraction of objects (each with this probability) whose track
        is made constant or falling instead, equal odds (domain randomisation). 0: none.
    burst_any_age : float
        Probability per object of a burst at any look-back age, 1 Myr to 12 Gyr, of 5-50 % of the
        mass (:func:`sfh_ml.synthesis.history_worlds.with_bursts`; replacing a skew-normal history's
        own burst). 0: none (the training bursts: skew-normal histories only, younger than 2 Gyr).
    ml_slope : (float, float)
        Range (uniform, per object) of an IMF-like perturbation of the mass-to-light ratio: the light
        of the stars of age t times 10**(ml_slope (log10 t - 9)), their mass unchanged (see
        :class:`~sfh_ml.synthesis.synthesizer.SynthesisParams`); e.g. (-0.1, 0.1) moves the light of
        10 Myr and 10 Gyr stars relative to each other by up to 0.4 dex. (0, 0): none.
    line_scatter : float
        Rms, dex, of per-object factors on the metal lines, one per ion
        (:func:`sfh_ml.synthesis.lines.ion_scales`): line ratios ([N II]/H-alpha, [O III]/H-beta,
        [S II]/H-alpha, ...) outside the Cloudy grid's, as abundance patterns, shocks or diffuse
        ionised gas give; the H and He lines are kept. 0: none.
    """

    n: int
    seed: int = 42
    family: str = "mix"
    snr: tuple = (50.0, 50.0)
    snr_phot: tuple | str = "phangs"
    sigma_kms: tuple = TRAINING_SIGMA_KMS
    sigma_gas_kms: tuple = (20.0, 80.0)
    tau_bc: tuple = (0.0, 2.0)
    tau_ism: tuple = (0.0, 1.0)
    log_u: tuple = (-4.0, -1.5)
    n_bins: int = 16
    young_bins_yr: tuple = YOUNG_BIN_EDGES_YR
    n_tx: int = 3
    alpha: float = 1.0
    mix_skewnormal: float = 0.5
    chunk_size: int = 1024
    filters: tuple = field(default=PHANGS_FILTERS)
    sky_frac: tuple = (0.0, 0.9)
    sky_z: tuple = SKY_Z_RANGE
    library: str = "emiles"
    dust_law: str = WORLD_DEFAULTS["dust_law"]
    dust_slope: float = WORLD_DEFAULTS["dust_slope"]
    birth_cloud_age_yr: float = WORLD_DEFAULTS["birth_cloud_age_yr"]
    flux_calibration: float = WORLD_DEFAULTS["flux_calibration"]
    lsf_error: float = WORLD_DEFAULTS["lsf_error"]
    wave_shift_kms: float = WORLD_DEFAULTS["wave_shift_kms"]
    sky_residual: float = WORLD_DEFAULTS["sky_residual"]
    library_mix: tuple = WORLD_DEFAULTS["library_mix"]
    parametric_frac: float = WORLD_DEFAULTS["parametric_frac"]
    zh_track: str = WORLD_DEFAULTS["zh_track"]
    zh_track_frac: float = WORLD_DEFAULTS["zh_track_frac"]
    burst_any_age: float = WORLD_DEFAULTS["burst_any_age"]
    ml_slope: tuple = WORLD_DEFAULTS["ml_slope"]
    line_scatter: float = WORLD_DEFAULTS["line_scatter"]

    def __post_init__(self):
        self.n = check_positive_int(self.n, "n", high=MAX_N)  # before anything: 2**63 would spin
        if self.library not in LIBRARIES:
            raise ValueError(f"unknown SSP library {self.library!r}; choose one of {LIBRARIES}")
        self._check_world()
        if self.family not in FAMILIES:
            raise ValueError(f"unknown SFH family {self.family!r}; choose one of {FAMILIES}")
        ranges = ["snr", "sigma_kms", "sigma_gas_kms", "tau_bc", "tau_ism", "log_u", "sky_frac", "sky_z"]
        if isinstance(self.snr_phot, str):
            if self.snr_phot != "phangs":
                raise ValueError(f'snr_phot must be "phangs" or a (min, max) range, got {self.snr_phot!r}')
        else:
            ranges.append("snr_phot")
        for name in ranges:
            setattr(self, name, _pair(getattr(self, name), name))
        if self.snr[0] <= 0 or (self.snr_phot != "phangs" and self.snr_phot[0] <= 0):
            raise ValueError(f"S/N must be > 0, got snr={self.snr}, snr_phot={self.snr_phot}")
        if self.sky_frac[0] < 0 or self.sky_frac[1] > 1:
            raise ValueError(f"sky_frac must lie in [0, 1], got {self.sky_frac}")
        if self.sky_z[0] < 0 or self.sky_z[1] > 0.1:
            raise ValueError(f"sky_z must lie in [0, 0.1], got {self.sky_z}")
        if self.sigma_kms[0] < 0 or self.sigma_gas_kms[0] <= 0:
            raise ValueError("velocity dispersions must be >= 0 km/s (gas: > 0)")
        if self.tau_bc[0] < 0 or self.tau_ism[0] < 0:
            raise ValueError(f"optical depths must be >= 0, got tau_bc={self.tau_bc}, tau_ism={self.tau_ism}")
        if self.log_u[0] < -4.0 or self.log_u[1] > 0.0:
            raise ValueError(f"log_u {self.log_u} is outside the Cloudy grid [-4, 0]")
        if int(self.chunk_size) != self.chunk_size or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {self.chunk_size}")
        if not 0 <= self.mix_skewnormal <= 1:
            raise ValueError(f"mix_skewnormal must be in [0, 1], got {self.mix_skewnormal}")
        self.filters = tuple(self.filters)
        if self.snr_phot == "phangs":
            phangs_snr(self.filters, 1, np.random.default_rng(0))  # every band has a PHANGS median
        self.young_bins_yr = tuple(
            float(a) for a in np.atleast_1d(np.asarray(self.young_bins_yr, dtype=float))
        )
        default_age_bins(self.n_bins, self.young_bins_yr)  # validates n_bins and young_bins_yr
        DenseBasis(self.n_tx, self.alpha)  # validates n_tx, alpha

    def _check_world(self):
        if self.dust_law not in DUST_LAWS:
            raise ValueError(f"unknown dust law {self.dust_law!r}; choose one of {DUST_LAWS}")
        self.dust_slope = _value_or_range(self.dust_slope, "dust_slope")
        if self.dust_law != "cf00" and self.dust_slope != CF00_SLOPE:
            raise ValueError(
                f"dust_slope applies to dust_law='cf00' only (got {self.dust_slope} with {self.dust_law!r})"
            )
        if min(self.dust_slope_range) < -3 or max(self.dust_slope_range) > 0:
            raise ValueError(f"dust_slope must lie in [-3, 0], got {self.dust_slope}")
        self.birth_cloud_age_yr = _value_or_range(self.birth_cloud_age_yr, "birth_cloud_age_yr")
        lo, hi = self.birth_cloud_age_range
        if not (0 < lo and hi <= 1e9):
            raise ValueError(f"birth_cloud_age_yr must be in (0, 1e9] yr, got {self.birth_cloud_age_yr}")
        self.ml_slope = _pair(self.ml_slope, "ml_slope")
        if self.ml_slope[0] < -1 or self.ml_slope[1] > 1:
            raise ValueError(f"ml_slope must lie in [-1, 1], got {self.ml_slope}")
        self.line_scatter = float(self.line_scatter)
        if not 0 <= self.line_scatter <= 1:
            raise ValueError(f"line_scatter must be in [0, 1] dex, got {self.line_scatter}")
        limits = dict(flux_calibration=0.5, lsf_error=0.5, wave_shift_kms=1000.0, sky_residual=100.0)
        for name, hi in limits.items():
            value = float(getattr(self, name))
            if not 0 <= value <= hi:
                raise ValueError(f"{name} must be in [0, {hi}], got {value}")
            setattr(self, name, value)
        self.library_mix = _pair(self.library_mix, "library_mix")
        if self.library_mix[0] < 0 or self.library_mix[1] > 1:
            raise ValueError(f"library_mix must lie in [0, 1], got {self.library_mix}")
        self.parametric_frac = float(self.parametric_frac)
        if not 0 <= self.parametric_frac <= 1:
            raise ValueError(f"parametric_frac must be in [0, 1], got {self.parametric_frac}")
        if self.zh_track not in ZH_TRACKS:
            raise ValueError(f"unknown zh_track {self.zh_track!r}; choose one of {ZH_TRACKS}")
        for name in ("zh_track_frac", "burst_any_age"):
            value = float(getattr(self, name))
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
            setattr(self, name, value)
        if self.zh_track_frac > 0 and self.zh_track != "rising":
            raise ValueError(f"zh_track_frac applies to zh_track='rising', not {self.zh_track!r}")
        if self.parametric_frac > 0 and self.family not in TRAINING_FAMILIES:
            raise ValueError(
                f"parametric_frac applies to a training family ({TRAINING_FAMILIES}), not {self.family!r}"
            )

    @property
    def dust_slope_range(self):
        """(min, max) of the ISM power-law index (equal values: one for the whole set)."""
        return _pair(self.dust_slope, "dust_slope")

    @property
    def birth_cloud_age_range(self):
        """(min, max) of the birth-cloud age, yr (equal values: one for the whole set)."""
        return _pair(self.birth_cloud_age_yr, "birth_cloud_age_yr")

    @property
    def parametric(self):
        """Whether the set draws parametric families (and stores their parameters)."""
        return self.family not in TRAINING_FAMILIES or self.parametric_frac > 0

    @property
    def world_params(self):
        """Names of the ``world/<name>`` datasets this set stores (see :data:`schema.WORLD_PARAMS`)."""
        used = dict(
            library_weight=self.library == "mix",
            lsf_scale=self.lsf_error > 0,
            wave_shift_kms=self.wave_shift_kms > 0,
            ism_slope=isinstance(self.dust_slope, tuple),
            birth_cloud_age_yr=isinstance(self.birth_cloud_age_yr, tuple),
            ml_slope=self.ml_slope != (0.0, 0.0),
        )
        return tuple(name for name in schema.WORLD_PARAMS if used[name])

    def world_rng(self, index, option):
        """The random stream of a world option (a key of ``_STREAMS``) for chunk ``index``."""
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(index, _STREAMS[option])))

    @property
    def n_chunks(self):
        return -(-self.n // self.chunk_size)

    @property
    def age_bins_yr(self):
        """Edges of the target age bins, years, shape (len(young_bins_yr) + n_bins + 1,)."""
        return default_age_bins(self.n_bins, self.young_bins_yr)

    def to_json(self):
        """The config as JSON; world options at their defaults are left out (see :data:`WORLD_DEFAULTS`)."""
        d = asdict(self)
        for name, default in WORLD_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(text).items()})

    def families(self):
        """The SFH family objects (skew-normal, dense basis)."""
        chem = ChemicalEvolution()
        return SkewNormalBurst(chemistry=chem), DenseBasis(self.n_tx, self.alpha, chemistry=chem)

    def synthesizer(self, library=None):
        """A :class:`Synthesizer` for this config's SSP library, bands, dispersion range and dust
        (``library``: an :class:`~sfh_ml.synthesis.ssp.SSPLibrary` to use instead of loading it);
        for ``library="mix"`` a :class:`LibraryMix` of E-MILES and BC03 (``library`` not accepted)."""
        if self.library == "mix":
            if library is not None:
                raise ValueError("a library mix loads its two libraries itself: pass library=None")
            return LibraryMix(*(self._synthesizer(load_library(variant=v)) for v in ("emiles", "bc03")))
        if library is None:
            library = load_library(variant=self.library)
        elif library.variant != self.library:
            raise ValueError(
                f"this config synthesises with the {self.library!r} library, not {library.variant!r}"
            )
        return self._synthesizer(library)

    def _synthesizer(self, library):
        sigma = self.sigma_kms
        if self.lsf_error > 0:  # the stars' effective dispersions reach beyond the drawn range
            sigma = tuple(
                SynthesisParams.effective_sigma_kms(
                    np.array(sigma), np.array([1 - self.lsf_error, 1 + self.lsf_error])
                )
            )
        return Synthesizer(
            library=library,
            filters=self.filters,
            sigma_kms=sigma,
            dust_law=self.dust_law,
            dust_slope=CF00_SLOPE if isinstance(self.dust_slope, tuple) else self.dust_slope,
            birth_cloud_age_yr=self.birth_cloud_age_range[1],  # per-object ages: the largest
        )
