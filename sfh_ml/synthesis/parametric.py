"""Classic parametric star formation histories, for held-out sets the network never trains on.

The network trains on skew-normal + burst and dense-basis histories (:mod:`sfh_ml.synthesis.sfh`).
The five families here are the usual parametric forms of SED-fitting codes (bagpipes, Carnall et al.
2018; Prospector, Leja et al. 2017; Johnson et al. 2021), so held-out sets drawn from them test the
network on histories shaped unlike its training ones:

* :class:`DelayedTauBurst`: SFR proportional to T exp(-T / tau), plus the training families' burst;
* :class:`ExponentialTau`: SFR proportional to exp(-T / tau) (the "tau model");
* :class:`TruncatedConstant`: a constant SFR that stops at a quenching age;
* :class:`LogNormal`: SFR proportional to exp(-(ln T - T0)^2 / (2 tau^2)) / T (Gladders et al. 2013;
  Diemer et al. 2017);
* :class:`DoublePowerLaw`: SFR proportional to [(T / tau)^alpha + (T / tau)^-beta]^-1 (Behroozi et
  al. 2013; bagpipes' ``dblplaw``).

T is the time since star formation began, ``formation_age_yr`` (a look-back age drawn below
14.1 Gyr, :data:`sfh_ml.constants.MAX_AGE_YR`) ago: T = formation_age_yr - t for look-back age t, and
no stars form before. With a formation age of 14.1 Gyr, T is the cosmic time of the log-normal and
double-power-law papers. The cumulative mass is analytic where it can be (exponential, delayed,
log-normal; the truncated constant is an exact top-hat), a trapezoid integral on the history grid
otherwise (double power law); between grid ages it is interpolated
(:class:`~sfh_ml.synthesis.sfh.SFHBatch`), so a sudden start (exponential) is resolved to the
grid's cell, about 2.4 % in age. Every family draws its metallicity track from the training prior
(:class:`~sfh_ml.synthesis.sfh.ChemicalEvolution`), so the [M/H] histories are comparable.

The parameter ranges follow the priors of bagpipes and Prospector fits of nearby galaxies and their
regions (each class says which), with formation ages log-uniform from 30 Myr (young star-forming
regions, the project's science case) or 1 Gyr to 14.1 Gyr.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

from ..constants import MAX_AGE_YR
from .sfh import ChemicalEvolution, SFHBatch, cumulative_from_sfr, history_grid

__all__ = [
    "DelayedTauBurst",
    "ExponentialTau",
    "TruncatedConstant",
    "LogNormal",
    "DoublePowerLaw",
    "PARAMETRIC_FAMILIES",
    "parametric_families",
]


def _check_range(name, bounds, lo, hi):
    a, b = bounds
    if not lo <= a <= b <= hi:
        raise ValueError(f"{name} = {bounds} must be an increasing range inside [{lo:.4g}, {hi:.4g}]")


def _loguniform(rng, bounds, n):
    lo, hi = np.asarray(bounds[0], float), np.asarray(bounds[1], float)
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _since_formation(formation_age_yr, grid):
    """T = formation age - look-back age on the grid, clipped to [0, formation age]: shape (n_obj, n_grid)."""
    return np.clip(formation_age_yr[:, None] - grid[None, :], 0.0, formation_age_yr[:, None])


def _from_formed(name, formed, zh, params, burst=None):
    """An :class:`SFHBatch` from the fraction of the mass formed by each grid age (n_obj, n_grid),
    counted forward in time (0 before formation, 1 today)."""
    grid = history_grid()
    cum = np.clip(1.0 - formed, 0.0, 1.0)
    cum = np.maximum.accumulate(cum, axis=1)
    cum[:, 0], cum[:, -1] = 0.0, 1.0
    n = cum.shape[0]
    return SFHBatch(grid, cum, *zh, np.full(n, name), params, *(burst if burst is not None else ()))


@dataclass
class _Family:
    formation_age_range: tuple = (3e7, MAX_AGE_YR)
    chemistry: ChemicalEvolution = field(default_factory=ChemicalEvolution)

    def _check(self):
        _check_range("formation_age_range", self.formation_age_range, 1e6, MAX_AGE_YR)

    def _formation(self, rng, n):
        return _loguniform(rng, self.formation_age_range, n)


@dataclass
class ExponentialTau(_Family):
    """Exponentially declining SFR (the "tau model"): SFR(T) proportional to exp(-T / tau).

    Mass formed by time T: tau (1 - exp(-T / tau)), normalised at T = formation age.

    Parameters
    ----------
    formation_age_range : (float, float)
        Log-uniform range of the look-back age at which star formation began, years (default
        30 Myr to 14.1 Gyr; bagpipes examples draw the age uniformly in 0.1-15 Gyr, Prospector's
        ``parametric_sfh`` ``tage`` uniformly up to 13.8 Gyr: log-uniform keeps young regions common).
    tau_range : (float, float)
        Log-uniform range of the e-folding time, years (default 0.1-10 Gyr: bagpipes' 0.3-10 Gyr,
        Prospector's 0.1-30 Gyr).
    chemistry : ChemicalEvolution
    """

    tau_range: tuple = (1e8, 1e10)
    name = "exptau"

    def __post_init__(self):
        self._check()
        _check_range("tau_range", self.tau_range, 1e5, 1e12)

    def sample(self, n, rng):
        """Draw ``n`` histories (:class:`~sfh_ml.synthesis.sfh.SFHBatch`) with ``rng``
        (numpy.random.Generator)."""
        t_form = self._formation(rng, n)
        tau = _loguniform(rng, self.tau_range, n)
        return self.batch(t_form, tau, *self.chemistry.sample(n, rng))

    def batch(self, formation_age_yr, tau_yr, zh_start, zh_final, zh_gamma):
        """The batch for given parameters (arrays of shape (n_obj,), years and dex)."""
        t_form, tau = np.asarray(formation_age_yr, float), np.asarray(tau_yr, float)
        x = _since_formation(t_form, history_grid()) / tau[:, None]
        formed = np.expm1(-x) / np.expm1(-t_form / tau)[:, None]
        params = dict(formation_age_yr=t_form, tau_yr=tau)
        return _from_formed(self.name, formed, (zh_start, zh_final, zh_gamma), params)


@dataclass
class DelayedTauBurst(_Family):
    """Delayed-tau SFR, T exp(-T / tau), plus a burst (bagpipes' ``delayed`` + ``burst``).

    Mass formed by time T: tau^2 [1 - exp(-T / tau) (1 + T / tau)], normalised at T = formation age.
    The burst is the training families' top-hat (same probability and ranges as
    :class:`~sfh_ml.synthesis.sfh.SkewNormalBurst`), so only the smooth part is new.

    Parameters
    ----------
    formation_age_range : (float, float)
        As in :class:`ExponentialTau`.
    tau_range : (float, float)
        Log-uniform range of tau, years (default 0.1-10 Gyr; bagpipes examples: 0.3-10 Gyr).
    burst_prob : float
        Probability of a burst.
    burst_age_range, burst_duration_range, burst_frac_range : (float, float)
        Log-uniform ranges of the burst's look-back age and duration (years) and mass fraction; the
        burst lies within the history (its age below the formation age, and it ends before it).
    chemistry : ChemicalEvolution
    """

    tau_range: tuple = (1e8, 1e10)
    burst_prob: float = 0.5
    burst_age_range: tuple = (1e6, 2e9)
    burst_duration_range: tuple = (1e6, 3e7)
    burst_frac_range: tuple = (1e-3, 0.5)
    name = "delayedtau"

    def __post_init__(self):
        self._check()
        _check_range("tau_range", self.tau_range, 1e5, 1e12)
        _check_range("burst_age_range", self.burst_age_range, 1.0, MAX_AGE_YR)
        _check_range("burst_duration_range", self.burst_duration_range, 1e3, MAX_AGE_YR)
        _check_range("burst_frac_range", self.burst_frac_range, 1e-8, 1.0)
        if not 0 <= self.burst_prob <= 1:
            raise ValueError(f"burst_prob must be in [0, 1], got {self.burst_prob}")

    def sample(self, n, rng):
        """Draw ``n`` histories (see :meth:`ExponentialTau.sample`)."""
        t_form = self._formation(rng, n)
        tau = _loguniform(rng, self.tau_range, n)
        has_burst = rng.random(n) < self.burst_prob
        # the burst happens after formation began: its age below the formation age
        b_age = _loguniform(rng, (self.burst_age_range[0], np.minimum(self.burst_age_range[1], t_form)), n)
        b_dur = np.minimum(_loguniform(rng, self.burst_duration_range, n), t_form - b_age)
        b_frac = np.where(has_burst, _loguniform(rng, self.burst_frac_range, n), 0.0)
        return self.batch(t_form, tau, b_age, b_dur, b_frac, *self.chemistry.sample(n, rng))

    def batch(self, formation_age_yr, tau_yr, burst_age_yr, burst_duration_yr, burst_frac, *zh):
        """The batch for given parameters (arrays of shape (n_obj,); ``zh``: start, final, gamma)."""
        t_form, tau = np.asarray(formation_age_yr, float), np.asarray(tau_yr, float)
        x = _since_formation(t_form, history_grid()) / tau[:, None]
        x_end = (t_form / tau)[:, None]
        formed = (-np.expm1(-x) - x * np.exp(-x)) / (-np.expm1(-x_end) - x_end * np.exp(-x_end))
        b_frac = np.asarray(burst_frac, float)
        params = dict(
            formation_age_yr=t_form,
            tau_yr=tau,
            burst_age_yr=np.where(b_frac > 0, burst_age_yr, np.nan),
            burst_duration_yr=np.where(b_frac > 0, burst_duration_yr, np.nan),
            burst_frac=b_frac,
        )
        burst = (b_frac, np.asarray(burst_age_yr, float), np.asarray(burst_duration_yr, float))
        return _from_formed(self.name, formed, zh, params, burst)


@dataclass
class TruncatedConstant(_Family):
    """Constant SFR from the formation age until a quenching age, nothing since (a quenched region).

    An exact top-hat (the :class:`~sfh_ml.synthesis.sfh.SFHBatch` burst with all the mass), like
    Prospector's truncated ``sf_trunc`` histories without the post-truncation decline.

    Parameters
    ----------
    formation_age_range : (float, float)
        Log-uniform range of the start, years (default 0.1-14.1 Gyr).
    quench_frac_range : (float, float)
        Log-uniform range of the quenching look-back age as a fraction of the formation age
        (default 0.01-0.8: star formation stopped between 1 % and 80 % of the way back; Prospector's
        ``sf_trunc`` is drawn as such a fraction of ``tage``).
    chemistry : ChemicalEvolution
    """

    formation_age_range: tuple = (1e8, MAX_AGE_YR)
    quench_frac_range: tuple = (0.01, 0.8)
    name = "truncated"

    def __post_init__(self):
        self._check()
        _check_range("quench_frac_range", self.quench_frac_range, 1e-6, 0.999)

    def sample(self, n, rng):
        """Draw ``n`` histories (see :meth:`ExponentialTau.sample`)."""
        t_form = self._formation(rng, n)
        quench = t_form * _loguniform(rng, self.quench_frac_range, n)
        return self.batch(t_form, quench, *self.chemistry.sample(n, rng))

    def batch(self, formation_age_yr, quench_age_yr, zh_start, zh_final, zh_gamma):
        """The batch for given formation and quenching look-back ages (years, shape (n_obj,))."""
        t_form, quench = np.asarray(formation_age_yr, float), np.asarray(quench_age_yr, float)
        if np.any(quench >= t_form) or np.any(quench < 0):
            raise ValueError("the quenching age must lie in [0, formation age)")
        grid = history_grid()
        n = t_form.size
        cum = np.broadcast_to(grid / MAX_AGE_YR, (n, grid.size)).copy()  # unused: the top-hat holds all
        params = dict(formation_age_yr=t_form, quench_age_yr=quench)
        return SFHBatch(
            grid,
            cum,
            zh_start,
            zh_final,
            zh_gamma,
            np.full(n, self.name),
            params,
            np.ones(n),
            quench,
            t_form - quench,
        )


@dataclass
class LogNormal(_Family):
    """Log-normal SFR in time since formation (Gladders et al. 2013; Diemer et al. 2017).

    SFR(T) proportional to exp(-(ln T - T0)^2 / (2 tau^2)) / T, which peaks at T = exp(T0 - tau^2);
    the parameters drawn are that peak, as a look-back age ``peak_age_yr``, and the width ``tau``
    (``log_width``). Mass formed by time T: Phi((ln T - T0) / tau), Phi the normal CDF.

    Parameters
    ----------
    formation_age_range : (float, float)
        Log-uniform range of the start, years (default 1-14.1 Gyr; 14.1 Gyr is Gladders' cosmic time).
    peak_frac_range : (float, float)
        Uniform range of the peak's time since formation as a fraction of the formation age
        (default 0.05-0.95: bagpipes' ``lognormal`` ``tmax`` prior spans the whole age of the universe).
    log_width_range : (float, float)
        Uniform range of tau (default 0.2-1.0, the range of Diemer et al. 2017's fits to simulated
        galaxies, their fig. 5; bagpipes draws the FWHM instead).
    chemistry : ChemicalEvolution
    """

    formation_age_range: tuple = (1e9, MAX_AGE_YR)
    peak_frac_range: tuple = (0.05, 0.95)
    log_width_range: tuple = (0.2, 1.0)
    name = "lognormal"

    def __post_init__(self):
        self._check()
        _check_range("peak_frac_range", self.peak_frac_range, 1e-3, 0.999)
        _check_range("log_width_range", self.log_width_range, 0.01, 5.0)

    def sample(self, n, rng):
        """Draw ``n`` histories (see :meth:`ExponentialTau.sample`)."""
        t_form = self._formation(rng, n)
        peak_age = t_form * (1.0 - rng.uniform(*self.peak_frac_range, n))
        width = rng.uniform(*self.log_width_range, n)
        return self.batch(t_form, peak_age, width, *self.chemistry.sample(n, rng))

    def batch(self, formation_age_yr, peak_age_yr, log_width, zh_start, zh_final, zh_gamma):
        """The batch for given start and peak look-back ages (years) and width (shape (n_obj,))."""
        t_form, peak, tau = (np.asarray(a, float) for a in (formation_age_yr, peak_age_yr, log_width))
        if np.any(peak >= t_form) or np.any(peak < 0):
            raise ValueError("the peak age must lie in [0, formation age)")
        t0 = np.log(t_form - peak) + tau**2
        big_t = _since_formation(t_form, history_grid())
        with np.errstate(divide="ignore"):
            formed = ndtr((np.log(big_t) - t0[:, None]) / tau[:, None])
        formed /= ndtr((np.log(t_form) - t0) / tau)[:, None]
        params = dict(formation_age_yr=t_form, peak_age_yr=peak, log_width=tau)
        return _from_formed(self.name, formed, (zh_start, zh_final, zh_gamma), params)


@dataclass
class DoublePowerLaw(_Family):
    """Double-power-law SFR (Behroozi et al. 2013; bagpipes' ``dblplaw``, Carnall et al. 2018).

    SFR(T) proportional to [(T / tau)^alpha + (T / tau)^-beta]^-1: rising as T^beta, falling as
    T^-alpha after the turnover time tau (since formation).

    Parameters
    ----------
    formation_age_range : (float, float)
        Log-uniform range of the start, years (default 1-14.1 Gyr).
    tau_frac_range : (float, float)
        Uniform range of the turnover time as a fraction of the formation age (default 0.05-1;
        bagpipes draws tau uniformly over the age of the universe).
    alpha_range, beta_range : (float, float)
        Log-uniform ranges of the falling and rising slopes (default 0.1-100; bagpipes' prior is
        0.01-1000, whose extremes are step functions).
    chemistry : ChemicalEvolution
    """

    formation_age_range: tuple = (1e9, MAX_AGE_YR)
    tau_frac_range: tuple = (0.05, 1.0)
    alpha_range: tuple = (0.1, 100.0)
    beta_range: tuple = (0.1, 100.0)
    name = "doublepl"

    def __post_init__(self):
        self._check()
        _check_range("tau_frac_range", self.tau_frac_range, 1e-3, 10.0)
        _check_range("alpha_range", self.alpha_range, 1e-3, 1e4)
        _check_range("beta_range", self.beta_range, 1e-3, 1e4)

    def sample(self, n, rng):
        """Draw ``n`` histories (see :meth:`ExponentialTau.sample`)."""
        t_form = self._formation(rng, n)
        tau = t_form * rng.uniform(*self.tau_frac_range, n)
        alpha = _loguniform(rng, self.alpha_range, n)
        beta = _loguniform(rng, self.beta_range, n)
        return self.batch(t_form, tau, alpha, beta, *self.chemistry.sample(n, rng))

    def batch(self, formation_age_yr, dpl_tau_yr, dpl_alpha, dpl_beta, zh_start, zh_final, zh_gamma):
        """The batch for given parameters (shape (n_obj,); times in years)."""
        t_form, tau, alpha, beta = (
            np.asarray(a, float) for a in (formation_age_yr, dpl_tau_yr, dpl_alpha, dpl_beta)
        )
        grid = history_grid()
        big_t = _since_formation(t_form, grid)
        with np.errstate(divide="ignore"):
            ln_x = np.log(big_t / tau[:, None])
        sfr = np.where(big_t > 0, np.exp(-np.logaddexp(alpha[:, None] * ln_x, -beta[:, None] * ln_x)), 0.0)
        cum = cumulative_from_sfr(grid, sfr)
        formed = 1.0 - cum / cum[:, -1:]
        params = dict(formation_age_yr=t_form, dpl_tau_yr=tau, dpl_alpha=alpha, dpl_beta=beta)
        return _from_formed(self.name, formed, (zh_start, zh_final, zh_gamma), params)


PARAMETRIC_FAMILIES = ("delayedtau", "exptau", "truncated", "lognormal", "doublepl")


def parametric_families(chemistry=None):
    """One object of each parametric family (default ranges), keyed by name, sharing ``chemistry``
    (default :class:`~sfh_ml.synthesis.sfh.ChemicalEvolution`)."""
    chem = ChemicalEvolution() if chemistry is None else chemistry
    classes = (DelayedTauBurst, ExponentialTau, TruncatedConstant, LogNormal, DoublePowerLaw)
    return {c.name: c(chemistry=chem) for c in classes}
