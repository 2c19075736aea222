"""Star formation histories and their chemical evolution.

Two families of parametric histories, as in the seed:

* :class:`SkewNormalBurst`: a skewed normal in lookback time (peak age, width, skewness; the
  ``massfunc_snorm`` form of ProSpect, Robotham et al. 2020) plus a short top-hat burst (age, mass
  fraction, duration);
* :class:`DenseBasis`: the non-parametric "dense basis" histories of Iyer & Gawiser (2017) and
  Iyer et al. (2019): the times ``tx`` at which the galaxy had formed the mass fractions
  ``linspace(0, 1, N + 2)[1:-1]`` are a Dirichlet draw (concentration ``alpha``, 1 by default),
  and the cumulative mass curve through them is a monotonic PCHIP interpolant.

Every family returns an :class:`SFHBatch`: the cumulative fraction of mass formed, tabulated for
each object on a fine grid of lookback ages, with a chemical-evolution track tied to the mass
build-up (:class:`ChemicalEvolution`). From it come the mass formed in any set of age bins and the
mass-weighted [M/H] of the stars formed in each bin, exactly as the synthesis and the network
targets need them.
"""

from dataclasses import dataclass, field

import numpy as np

from ..constants import MAX_AGE_YR, ZH_RANGE

__all__ = [
    "SFHBatch",
    "ChemicalEvolution",
    "SkewNormalBurst",
    "DenseBasis",
    "ConstantSFH",
    "concatenate",
    "default_age_bins",
    "history_grid",
    "cumulative_from_sfr",
    "YOUNG_BIN_EDGES_YR",
    "pchip_eval",
    "closed_edges",
    "time_overlap",
]

MIN_GRID_AGE_YR = 1e5
# Edges of the young age bins below 10 Myr (1-3, 3-6, 6-10 Myr): the cluster science case.
YOUNG_BIN_EDGES_YR = (1e6, 3e6, 6e6)
N_GRID = 500  # the smooth part of a history is tabulated at 2 x 500 ages (see _grid)


def default_age_bins(n_bins=16, young_edges_yr=YOUNG_BIN_EDGES_YR, min_age_yr=1e7, max_age_yr=MAX_AGE_YR):
    """The network's age bins: young bins, then ``n_bins`` log-spaced bins from 10 Myr to 14.1 Gyr.

    By default the first 10 Myr are split at 1, 3 and 6 Myr (1-3, 3-6 and 6-10 Myr: the ages of
    star clusters and their H II regions, which the library resolves in 0.1 dex steps from 1 Myr),
    followed by the 16 log-spaced bins of Galceran et al. above 10 Myr: 19 bins in all.

    The first bin also holds every star younger than its lower edge (the SSP library starts at
    1 Myr), so mass fractions always add up to one.

    Parameters
    ----------
    n_bins : int
        Number of log-spaced bins from ``min_age_yr`` to ``max_age_yr``.
    young_edges_yr : sequence of float
        Increasing edges below ``min_age_yr``, in years (default :data:`YOUNG_BIN_EDGES_YR`); an empty
        sequence gives plain log-spaced bins from ``min_age_yr``.
    min_age_yr, max_age_yr : float
        Range of the log-spaced bins, years.

    Returns
    -------
    ndarray, shape (len(young_edges_yr) + n_bins + 1,)
        Bin edges in years.
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    if not 0 < min_age_yr < max_age_yr <= MAX_AGE_YR * (1 + 1e-9):
        raise ValueError(f"age bins must lie inside (0, {MAX_AGE_YR:.4g}] yr, got {min_age_yr}..{max_age_yr}")
    young = np.asarray(young_edges_yr, dtype=float).ravel()
    if young.size and (
        not np.all(np.isfinite(young))
        or young[0] <= 0
        or np.any(np.diff(young) <= 0)
        or young[-1] >= min_age_yr
    ):
        raise ValueError(
            f"young_edges_yr must be increasing, > 0 and below min_age_yr = {min_age_yr:.4g} yr, "
            f"got {tuple(young_edges_yr)}"
        )
    log_bins = np.logspace(np.log10(min_age_yr), np.log10(max_age_yr), int(n_bins) + 1)
    return np.concatenate([young, log_bins])


def history_grid():
    """The look-back ages (years, shape (n_grid,), 0 to 14.1 Gyr) on which every family tabulates its
    cumulative mass (see :class:`SFHBatch`)."""
    return _grid()


def cumulative_from_sfr(age_grid_yr, sfr):
    """Trapezoid integral of star formation rates from look-back age 0, not normalised.

    Parameters
    ----------
    age_grid_yr : ndarray, shape (n_grid,)
        Increasing look-back ages, years.
    sfr : ndarray, shape (n_obj, n_grid)
        Star formation rates at those ages (any unit per year).

    Returns
    -------
    ndarray, shape (n_obj, n_grid)
        Mass formed at look-back ages younger than each grid age (0 in the first column).
    """
    return np.concatenate(
        [
            np.zeros((sfr.shape[0], 1)),
            np.cumsum(0.5 * (sfr[:, 1:] + sfr[:, :-1]) * np.diff(age_grid_yr), axis=1),
        ],
        axis=1,
    )


def _grid():
    """Look-back ages log-spaced from 0.1 Myr (0.008 dex steps) and, towards 14.1 Gyr, log-spaced in
    forward time from the start of the history, so both ends are resolved (0 and 14.1 Gyr included)."""
    back = np.logspace(np.log10(MIN_GRID_AGE_YR), np.log10(MAX_AGE_YR), N_GRID)
    fwd = MAX_AGE_YR - np.logspace(np.log10(MIN_GRID_AGE_YR), np.log10(MAX_AGE_YR / 2), N_GRID // 2)
    g = np.unique(np.concatenate([[0.0], back[:-1], fwd, [MAX_AGE_YR]]))
    return g[np.concatenate([[True], np.diff(g) > 1e-6 * g[1:]])]


@dataclass
class ChemicalEvolution:
    """Prior on a metallicity track tied to the mass build-up (after ProSpect's ``Zfunc_massmap``).

    The stars formed when a fraction F of the final mass had formed have
    ``zh(F) = zh_start + (zh_final - zh_start) * F**gamma``: metallicity rises from ``zh_start`` to
    ``zh_final`` as the mass builds up, quickly (gamma < 1) or late (gamma > 1).

    The default is centred where star-forming discs and their clusters are: the present-day gas of
    PHANGS galaxies has 12 + log(O/H) ~ 8.4-8.7, i.e. [M/H] ~ -0.3 to +0.2 (Kreckel et al. 2019;
    Williams et al. 2022; roughly, for a solar 8.69), so most tracks end there, with modest enrichment
    (up to 0.6 dex); a fraction ``wide_frac`` ends anywhere on the SSP grid (:data:`ZH_RANGE`) and
    keeps the whole grid covered (metal-poor dwarfs, outer discs, old metal-poor populations).

    Parameters
    ----------
    zh_final_range : (float, float)
        Uniform range of the present-day [M/H] of the gas, dex.
    delta_range : (float, float)
        Uniform range of the enrichment zh_final - zh_start, dex.
    gamma_range : (float, float)
        Log-uniform range of the shape exponent.
    wide_frac : float
        Fraction of tracks whose ``zh_final`` is drawn uniformly over :data:`ZH_RANGE` instead.
    """

    zh_final_range: tuple = (-0.3, ZH_RANGE[1])
    delta_range: tuple = (0.0, 0.6)
    gamma_range: tuple = (0.3, 3.0)
    wide_frac: float = 0.2

    def __post_init__(self):
        lo, hi = self.zh_final_range
        if not ZH_RANGE[0] <= lo <= hi <= ZH_RANGE[1]:
            raise ValueError(f"zh_final_range {self.zh_final_range} is outside the SSP grid {ZH_RANGE}")
        if self.delta_range[0] < 0 or self.delta_range[1] < self.delta_range[0]:
            raise ValueError(f"delta_range must be increasing and >= 0, got {self.delta_range}")
        if self.gamma_range[0] <= 0 or self.gamma_range[1] < self.gamma_range[0]:
            raise ValueError(f"gamma_range must be increasing and > 0, got {self.gamma_range}")
        if not 0 <= self.wide_frac <= 1:
            raise ValueError(f"wide_frac must be in [0, 1], got {self.wide_frac}")

    def sample(self, n, rng):
        """Draw ``n`` tracks; returns (zh_start, zh_final, gamma), each of shape (n,)."""
        zh_final = rng.uniform(*self.zh_final_range, n)
        wide = rng.random(n) < self.wide_frac
        zh_final = np.where(wide, rng.uniform(*ZH_RANGE, n), zh_final)
        zh_start = np.maximum(zh_final - rng.uniform(*self.delta_range, n), ZH_RANGE[0])
        gamma = np.exp(rng.uniform(*np.log(self.gamma_range), n))
        return zh_start, zh_final, gamma


@dataclass
class SFHBatch:
    """A batch of star formation and chemical-evolution histories.

    Attributes
    ----------
    age_grid_yr : ndarray, shape (n_grid,)
        Look-back ages of the tabulation, from 0 to 14.1 Gyr.
    cumulative : ndarray, shape (n_obj, n_grid)
        The smooth part of the history: fraction of its mass formed at look-back ages younger than
        ``age_grid_yr`` (0 at age 0, 1 at 14.1 Gyr, non-decreasing), interpolated linearly in log age.
    burst_frac, burst_age_yr, burst_duration_yr : ndarray, shape (n_obj,)
        A top-hat episode, kept analytic so its sharp edges are exact: ``burst_frac`` of the total
        mass forms at a constant rate between look-back ages ``burst_age_yr`` and
        ``burst_age_yr + burst_duration_yr``; the smooth part holds the rest.
    zh_start, zh_final, zh_gamma : ndarray, shape (n_obj,)
        The metallicity track, see :class:`ChemicalEvolution`.
    family : ndarray of str, shape (n_obj,)
        Family name of each history.
    params : dict of str -> ndarray, shape (n_obj,)
        Generator parameters (NaN where a parameter does not apply to the object's family).
    """

    age_grid_yr: np.ndarray
    cumulative: np.ndarray
    zh_start: np.ndarray
    zh_final: np.ndarray
    zh_gamma: np.ndarray
    family: np.ndarray
    params: dict = field(default_factory=dict)
    burst_frac: np.ndarray = None
    burst_age_yr: np.ndarray = None
    burst_duration_yr: np.ndarray = None

    def __post_init__(self):
        n = self.cumulative.shape[0]
        if self.burst_frac is None:
            self.burst_frac = np.zeros(n)
            self.burst_age_yr = np.zeros(n)
            self.burst_duration_yr = np.ones(n)

    def __len__(self):
        return self.cumulative.shape[0]

    def cumulative_at(self, age_yr):
        """Fraction of mass formed at look-back ages younger than ``age_yr``.

        Parameters
        ----------
        age_yr : ndarray, shape (n_age,) or (n_obj, n_age)
            Look-back ages in years, within [0, 14.1 Gyr]: the same for every object, or one row
            per object.

        Returns
        -------
        ndarray, shape (n_obj, n_age)
        """
        age_yr = np.asarray(age_yr, dtype=float)
        if age_yr.ndim == 2 and age_yr.shape[0] != len(self):
            raise ValueError(f"age_yr has {age_yr.shape[0]} rows for {len(self)} histories")
        if np.any(age_yr < 0) or np.any(age_yr > self.age_grid_yr[-1] * (1 + 1e-9)):
            raise ValueError(f"ages must lie in [0, {self.age_grid_yr[-1]:.4g}] yr")
        # Linear interpolation in log age (linear in age in the first grid cell).
        x_grid = np.log10(np.maximum(self.age_grid_yr, 1.0))
        x = np.log10(np.maximum(age_yr, 1.0))
        j = np.clip(np.searchsorted(x_grid, x, side="right") - 1, 0, x_grid.size - 2)
        w = np.where(j == 0, age_yr / self.age_grid_yr[1], (x - x_grid[j]) / (x_grid[j + 1] - x_grid[j]))
        w = np.clip(w, 0.0, 1.0)
        if age_yr.ndim == 2:  # one row of ages per object
            lo = np.take_along_axis(self.cumulative, j, axis=1)
            hi = np.take_along_axis(self.cumulative, j + 1, axis=1)
        else:
            lo, hi = self.cumulative[:, j], self.cumulative[:, j + 1]
        smooth = (1 - w) * lo + w * hi
        rows = age_yr if age_yr.ndim == 2 else age_yr[None, :]
        burst = np.clip((rows - self.burst_age_yr[:, None]) / self.burst_duration_yr[:, None], 0.0, 1.0)
        f = self.burst_frac[:, None]
        return (1.0 - f) * smooth + f * burst

    def mass_fractions(self, edges_yr, closed=True):
        """Fraction of the total mass formed in each age bin.

        Parameters
        ----------
        edges_yr : ndarray, shape (n_bins + 1,)
            Increasing look-back ages.
        closed : bool
            Take the first bin to start at age 0 and the last to end at 14.1 Gyr, so the fractions
            sum to one (the default); otherwise use the edges as given.

        Returns
        -------
        ndarray, shape (n_obj, n_bins)
        """
        c = self.cumulative_at(closed_edges(edges_yr, closed))
        return np.clip(np.diff(c, axis=1), 0.0, None)

    def zh_at(self, formed_fraction):
        """[M/H] of stars born when ``formed_fraction`` (shape (n_obj, k)) of the mass had formed."""
        f = np.clip(formed_fraction, 0.0, 1.0)
        return self.zh_start[:, None] + (self.zh_final - self.zh_start)[:, None] * f ** self.zh_gamma[:, None]

    def zh_in_bins(self, edges_yr, closed=True):
        """Mass-weighted [M/H] of the stars formed in each age bin.

        With F the fraction formed (1 - cumulative), the mean over a bin of
        zh_start + dz F**g is zh_start + dz (F_hi**(g+1) - F_lo**(g+1)) / ((g+1)(F_hi - F_lo));
        a bin with no mass gets the track's value at that time.

        Parameters
        ----------
        edges_yr : ndarray, shape (n_bins + 1,)
        closed : bool
            As in :meth:`mass_fractions`.

        Returns
        -------
        ndarray, shape (n_obj, n_bins)
        """
        c = self.cumulative_at(closed_edges(edges_yr, closed))
        f_hi = 1.0 - c[:, :-1]  # younger edge: more mass formed
        f_lo = 1.0 - c[:, 1:]
        g = self.zh_gamma[:, None] + 1.0
        df = f_hi - f_lo
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_pow = (f_hi**g - f_lo**g) / (g * df)
        mean_pow = np.where(df > 1e-9, mean_pow, np.clip(f_lo, 0, 1) ** self.zh_gamma[:, None])
        return self.zh_start[:, None] + (self.zh_final - self.zh_start)[:, None] * mean_pow

    def mean_log_age(self):
        """Exact mass-weighted mean log10 age of the continuous history: integral of log10 t dM.

        Exact for the batch's representation: the smooth part's cumulative mass is linear in log t
        within each grid cell (its mean log t is the cell's mid-point in log t) but the first, where
        it is linear in t (mean log10 t = log10 t_1 - 1 / ln 10); the burst is uniform in t, whose
        mean of ln t over [a, b] is [t ln t - t]_a^b / (b - a). Unlike a mean over SSP or target bins,
        it has no floor at the youngest bin: 1 M_sun formed at a constant rate over the last 3 Myr
        has log10(3e6) - 1 / ln 10 = 6.04.

        Returns
        -------
        ndarray, shape (n_obj,)
            log10 yr.
        """
        g = self.age_grid_yr
        log_g = np.log10(np.maximum(g, 1.0))
        cell = 0.5 * (log_g[1:] + log_g[:-1])
        cell[0] = np.log10(g[1]) - 1.0 / np.log(10.0)
        smooth = np.clip(np.diff(self.cumulative, axis=1), 0.0, None) @ cell
        a = self.burst_age_yr
        b = a + self.burst_duration_yr

        def t_ln_t(t):
            return np.where(t > 0, t * np.log(np.maximum(t, 1e-300)), 0.0) - t

        burst = (t_ln_t(b) - t_ln_t(a)) / (self.burst_duration_yr * np.log(10.0))
        f = self.burst_frac
        return (1.0 - f) * smooth + np.where(f > 0, f * burst, 0.0)

    def sfr(self, age_yr):
        """Star formation rate (fraction of the total mass per year) at look-back ages ``age_yr``.

        Returns
        -------
        ndarray, shape (n_obj, n_age)
        """
        age_yr = np.asarray(age_yr, dtype=float)
        lo = np.clip(age_yr * 10**-0.01, 0, None)
        hi = np.minimum(age_yr * 10**0.01 + 1e3, self.age_grid_yr[-1])
        return (self.cumulative_at(hi) - self.cumulative_at(lo)) / (hi - lo)

    def take(self, index):
        """A new batch holding the objects ``index``."""
        return SFHBatch(
            self.age_grid_yr,
            self.cumulative[index],
            self.zh_start[index],
            self.zh_final[index],
            self.zh_gamma[index],
            self.family[index],
            {k: v[index] for k, v in self.params.items()},
            self.burst_frac[index],
            self.burst_age_yr[index],
            self.burst_duration_yr[index],
        )


def closed_edges(edges_yr, closed=True):
    """Age-bin edges checked (1-D, increasing, within [0, 14.1 Gyr]) and, if ``closed``, widened so
    that the first bin starts at age 0 and the last ends at 14.1 Gyr (the convention of the targets).

    Returns
    -------
    ndarray, shape (n_bins + 1,)
        A copy, years.
    """
    edges = np.asarray(edges_yr, dtype=float).copy()
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("age-bin edges must be a 1-D increasing array with at least two entries")
    if edges[0] < 0 or edges[-1] > MAX_AGE_YR * (1 + 1e-6):
        raise ValueError(
            f"age-bin edges must lie within [0, {MAX_AGE_YR:.4g}] yr, got {edges[0]:.4g}..{edges[-1]:.4g}"
        )
    if closed:
        edges[0] = 0.0
        edges[-1] = MAX_AGE_YR
    return edges


def time_overlap(edges_a_yr, edges_b_yr):
    """How long each bin of one set of age bins overlaps each bin of another.

    Parameters
    ----------
    edges_a_yr : ndarray, shape (n_a + 1,)
    edges_b_yr : ndarray, shape (n_b + 1,)
        Increasing bin edges, years.

    Returns
    -------
    ndarray, shape (n_a, n_b)
        Overlap in years (0 where the bins do not meet).
    """
    a = np.asarray(edges_a_yr, dtype=float)
    b = np.asarray(edges_b_yr, dtype=float)
    lo = np.maximum(a[:-1, None], b[None, :-1])
    hi = np.minimum(a[1:, None], b[None, 1:])
    return np.clip(hi - lo, 0.0, None)


def concatenate(batches):
    """Join several :class:`SFHBatch` into one (parameters missing from a family become NaN)."""
    keys = sorted({k for b in batches for k in b.params})
    params = {k: np.concatenate([b.params.get(k, np.full(len(b), np.nan)) for b in batches]) for k in keys}
    return SFHBatch(
        batches[0].age_grid_yr,
        np.concatenate([b.cumulative for b in batches]),
        np.concatenate([b.zh_start for b in batches]),
        np.concatenate([b.zh_final for b in batches]),
        np.concatenate([b.zh_gamma for b in batches]),
        np.concatenate([b.family for b in batches]),
        params,
        *(
            np.concatenate([getattr(b, k) for b in batches])
            for k in ("burst_frac", "burst_age_yr", "burst_duration_yr")
        ),
    )


def _check_range(name, rng_, lo, hi):
    a, b = rng_
    if not lo <= a <= b <= hi:
        raise ValueError(f"{name} = {rng_} must be an increasing range inside [{lo:.4g}, {hi:.4g}]")


def _loguniform(rng, bounds, n):
    return np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]), n))


@dataclass
class SkewNormalBurst:
    """Skewed-normal history in look-back time plus a short burst (the seed's first family).

    SFR(t) is proportional to exp(-X^2 / 2) with X = x * (10**skew)**asinh(x) and
    x = (t - peak_age) / width (ProSpect's ``massfunc_snorm``, Robotham et al. 2020), truncated to
    0 <= t <= 14.1 Gyr. A burst forms ``burst_frac`` of the mass at a constant rate between look-back
    ages ``burst_age`` and ``burst_age + burst_duration``.

    Parameters
    ----------
    peak_age_range : (float, float)
        Log-uniform range of the peak age, years. The default reaches 3 Myr so that young-dominated
        populations (clusters, associations: the project's main science case) are common.
    rel_width_range : (float, float)
        Log-uniform range of width / peak_age.
    skew_range : (float, float)
        Uniform range of the skewness (log10 of ProSpect's lambda).
    burst_prob : float
        Probability that an object has a burst.
    burst_age_range, burst_duration_range : (float, float)
        Log-uniform ranges, years.
    burst_frac_range : (float, float)
        Log-uniform range of the burst's mass fraction.
    chemistry : ChemicalEvolution
    """

    peak_age_range: tuple = (3e6, 13e9)
    rel_width_range: tuple = (0.1, 2.0)
    skew_range: tuple = (-0.5, 0.5)
    burst_prob: float = 0.5
    burst_age_range: tuple = (1e6, 2e9)
    burst_duration_range: tuple = (1e6, 3e7)
    burst_frac_range: tuple = (1e-3, 0.5)
    chemistry: ChemicalEvolution = field(default_factory=ChemicalEvolution)

    name = "skewnormal"

    def __post_init__(self):
        _check_range("peak_age_range", self.peak_age_range, 1e5, MAX_AGE_YR)
        _check_range("rel_width_range", self.rel_width_range, 1e-3, 1e3)
        _check_range("skew_range", self.skew_range, -3, 3)
        _check_range("burst_age_range", self.burst_age_range, 0.0, MAX_AGE_YR)
        _check_range("burst_duration_range", self.burst_duration_range, 1e3, MAX_AGE_YR)
        _check_range("burst_frac_range", self.burst_frac_range, 1e-8, 1.0)
        if not 0 <= self.burst_prob <= 1:
            raise ValueError(f"burst_prob must be in [0, 1], got {self.burst_prob}")

    def sample(self, n, rng):
        """Draw ``n`` histories.

        Parameters
        ----------
        n : int
        rng : numpy.random.Generator

        Returns
        -------
        SFHBatch
        """
        peak = _loguniform(rng, self.peak_age_range, n)
        width = peak * _loguniform(rng, self.rel_width_range, n)
        skew = rng.uniform(*self.skew_range, n)
        has_burst = rng.random(n) < self.burst_prob
        b_age = _loguniform(rng, (max(self.burst_age_range[0], 1.0), self.burst_age_range[1]), n)
        b_dur = _loguniform(rng, self.burst_duration_range, n)
        b_dur = np.minimum(b_dur, MAX_AGE_YR - b_age)
        b_frac = np.where(has_burst, _loguniform(rng, self.burst_frac_range, n), 0.0)
        zh = self.chemistry.sample(n, rng)
        return self.batch(peak, width, skew, b_age, b_dur, b_frac, *zh)

    def batch(
        self, peak_age, width, skew, burst_age, burst_duration, burst_frac, zh_start, zh_final, zh_gamma
    ):
        """Build the batch for given parameters (all arrays of shape (n_obj,))."""
        grid = _grid()
        x = (grid[None, :] - peak_age[:, None]) / width[:, None]
        x = x * (10.0 ** skew[:, None]) ** np.arcsinh(x)
        sfr = np.exp(-0.5 * x**2)
        # Trapezoid integral of the SFR on the grid, normalised.
        cum = cumulative_from_sfr(grid, sfr)
        total = cum[:, -1:]
        # A skewed normal that vanishes numerically on the grid falls back to its peak bin.
        degenerate = total[:, 0] <= 0
        total[degenerate] = 1.0
        cum = cum / total
        if degenerate.any():
            cum[degenerate] = (grid[None, :] >= peak_age[degenerate, None]).astype(float)
        cum[:, -1] = 1.0
        n = len(peak_age)
        params = dict(
            peak_age_yr=peak_age,
            width_yr=width,
            skew=skew,
            burst_age_yr=np.where(burst_frac > 0, burst_age, np.nan),
            burst_duration_yr=np.where(burst_frac > 0, burst_duration, np.nan),
            burst_frac=burst_frac,
        )
        return SFHBatch(
            grid,
            cum,
            zh_start,
            zh_final,
            zh_gamma,
            np.full(n, self.name),
            params,
            np.asarray(burst_frac, float),
            np.asarray(burst_age, float),
            np.asarray(burst_duration, float),
        )


def pchip_eval(x_knots, y_knots, x):
    """Monotone piecewise-cubic Hermite (PCHIP, Fritsch & Carlson 1980) interpolation, row by row.

    Same derivative rule as ``scipy.interpolate.PchipInterpolator``, vectorised over rows that each
    have their own knots.

    Parameters
    ----------
    x_knots, y_knots : ndarray, shape (n_obj, n_knots)
        Increasing abscissae and the values at them.
    x : ndarray, shape (n_x,) or (n_obj, n_x)
        Where to evaluate (inside each row's knot range).

    Returns
    -------
    ndarray, shape (n_obj, n_x)
    """
    xk, yk = np.asarray(x_knots, float), np.asarray(y_knots, float)
    n, k = xk.shape
    h = np.diff(xk, axis=1)
    delta = np.diff(yk, axis=1) / h
    d = np.zeros_like(xk)
    # interior: weighted harmonic mean where the secants agree in sign
    w1 = 2 * h[:, 1:] + h[:, :-1]
    w2 = h[:, 1:] + 2 * h[:, :-1]
    same = (np.sign(delta[:, 1:]) * np.sign(delta[:, :-1])) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        harm = (w1 + w2) / (w1 / delta[:, :-1] + w2 / delta[:, 1:])
    d[:, 1:-1] = np.where(same, harm, 0.0)

    def edge(h0, h1, m0, m1):
        dd = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        dd = np.where(np.sign(dd) != np.sign(m0), 0.0, dd)
        return np.where((np.sign(m0) != np.sign(m1)) & (np.abs(dd) > 3 * np.abs(m0)), 3 * m0, dd)

    d[:, 0] = edge(h[:, 0], h[:, 1], delta[:, 0], delta[:, 1])
    d[:, -1] = edge(h[:, -1], h[:, -2], delta[:, -1], delta[:, -2])
    # Per-segment cubic coefficients in t = (x - x_j) / h_j, then one gather per object and point.
    y0, y1, d0, d1 = yk[:, :-1], yk[:, 1:], d[:, :-1] * h, d[:, 1:] * h
    coef = np.stack([y0, d0, 3 * (y1 - y0) - 2 * d0 - d1, 2 * (y0 - y1) + d0 + d1], axis=-1)  # (n, k-1, 4)
    x = np.broadcast_to(np.asarray(x, float), (n, np.shape(x)[-1]))
    j = np.zeros(x.shape, dtype=np.intp)
    for i in range(1, k - 1):
        j += x >= xk[:, i : i + 1]
    t = (x - np.take_along_axis(xk, j, axis=1)) / np.take_along_axis(h, j, axis=1)
    flat = (j + (k - 1) * np.arange(n)[:, None]).ravel()
    c = coef.reshape(-1, 4)[flat].reshape(n, -1, 4)
    return c[..., 0] + t * (c[..., 1] + t * (c[..., 2] + t * c[..., 3]))


@dataclass
class DenseBasis:
    """Dense-basis histories (Iyer & Gawiser 2017; Iyer et al. 2019), the seed's second family.

    ``tx = cumsum(dirichlet(alpha * ones(n_tx + 1)))[:-1]`` are the times, in units of the 14.1 Gyr
    history and counted forward from its start, at which the fractions
    ``linspace(0, 1, n_tx + 2)[1:-1]`` of the mass had formed; the cumulative mass curve through
    (0, 0), (tx_i, f_i), (1, 1) is a monotonic PCHIP interpolant, so the SFR is never negative.

    Parameters
    ----------
    n_tx : int
        Number of tx parameters.
    alpha : float
        Dirichlet concentration (1: uniform over the simplex, the seed's choice).
    chemistry : ChemicalEvolution
    """

    n_tx: int = 3
    alpha: float = 1.0
    chemistry: ChemicalEvolution = field(default_factory=ChemicalEvolution)

    name = "densebasis"

    def __post_init__(self):
        if int(self.n_tx) != self.n_tx or self.n_tx < 1:
            raise ValueError(f"n_tx must be a positive integer, got {self.n_tx}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")

    @property
    def fractions(self):
        """Mass fractions whose formation times are the tx, shape (n_tx,)."""
        return np.linspace(0.0, 1.0, self.n_tx + 2)[1:-1]

    def sample(self, n, rng):
        """Draw ``n`` histories (see :meth:`SkewNormalBurst.sample`)."""
        tx = np.cumsum(rng.dirichlet(self.alpha * np.ones(self.n_tx + 1), size=n), axis=1)[:, :-1]
        zh = self.chemistry.sample(n, rng)
        return self.batch(tx, *zh)

    def batch(self, tx, zh_start, zh_final, zh_gamma):
        """Build the batch for given ``tx`` (shape (n_obj, n_tx)) and metallicity tracks."""
        tx = np.atleast_2d(np.asarray(tx, float))
        n = tx.shape[0]
        # Guard against coincident knots (Dirichlet components can underflow to zero).
        tx = np.maximum.accumulate(np.clip(tx, 1e-9, 1 - 1e-9) + 1e-12 * np.arange(self.n_tx), axis=1)
        xk = np.concatenate([np.zeros((n, 1)), tx, np.ones((n, 1))], axis=1)
        yk = np.broadcast_to(np.concatenate([[0.0], self.fractions, [1.0]]), xk.shape)
        grid = _grid()
        formed = pchip_eval(xk, yk, 1.0 - grid[::-1] / MAX_AGE_YR)[:, ::-1]  # fraction formed by then
        cum = np.clip(1.0 - formed, 0.0, 1.0)
        cum = np.maximum.accumulate(cum, axis=1)
        cum[:, 0], cum[:, -1] = 0.0, 1.0
        params = {f"tx{i + 1}": tx[:, i] for i in range(self.n_tx)}
        return SFHBatch(grid, cum, zh_start, zh_final, zh_gamma, np.full(n, self.name), params)


@dataclass
class ConstantSFH:
    """Constant star formation over the last ``duration_yr`` (a reference model, e.g. for Kennicutt 1998).

    Parameters
    ----------
    duration_yr : float
        Look-back age at which star formation started.
    zh : float
        [M/H] of all stars.
    """

    duration_yr: float = 1e8
    zh: float = 0.0
    name = "constant"

    def __post_init__(self):
        if not 0 < self.duration_yr <= MAX_AGE_YR:
            raise ValueError(f"duration_yr must be in (0, {MAX_AGE_YR:.4g}], got {self.duration_yr}")
        if not ZH_RANGE[0] <= self.zh <= ZH_RANGE[1]:
            raise ValueError(f"zh = {self.zh} is outside the SSP grid {ZH_RANGE}")

    def sample(self, n, rng=None):
        """``n`` identical histories (``rng`` is ignored)."""
        grid = _grid()
        cum = np.broadcast_to(grid / MAX_AGE_YR, (n, grid.size)).copy()
        z = np.full(n, float(self.zh))
        # All the mass in an exact top-hat from now to duration_yr ago.
        return SFHBatch(
            grid,
            cum,
            z,
            z,
            np.ones(n),
            np.full(n, self.name),
            {"duration_yr": np.full(n, float(self.duration_yr))},
            np.ones(n),
            np.zeros(n),
            np.full(n, float(self.duration_yr)),
        )
