"""Goodness of fit of a prediction: re-synthesise the spectrum and fluxes it implies, compare them with
the data, and flag the objects the network cannot explain (out of its training distribution).

The ensemble spread says how much the networks disagree; it does not say whether the data look like
anything the network was trained on (on BC03 spectra a network trained on E-MILES alone is
confidently wrong by ~0.4 dex in age). A prediction is a full history (mass fractions and [M/H] per
age bin), so the project's own generator (:class:`sfh_ml.synthesis.Synthesizer`) can turn it back
into a spectrum:

1. the predicted bins become a history with a constant star formation rate inside each bin and the
   bin's [M/H] (:class:`BinnedHistory`, which the synthesizer reads like an
   :class:`~sfh_ml.synthesis.sfh.SFHBatch`);
2. the network predicts neither dust, nor the stellar dispersion, nor the normalisation: these are
   fitted. The dust-free spectra of the stars older and younger than the birth clouds (10 Myr, with
   the nebular continuum) are synthesised once per dispersion node (:data:`SIGMA_NODES_KMS`); every
   (tau_ism, tau_bc) point of :data:`TAU_ISM_GRID` x :data:`TAU_BC_GRID` (CF00 dust,
   :func:`sfh_ml.synthesis.dust.transmission`) is then evaluated for all objects at once, with the
   normalisation solved by linear least squares, as a few matrix products of the data against the
   grid's transmission curves (chi-square expanded in its sums); the fluxes take the dust at their
   bands' pivot wavelengths in this search;
3. the best point is synthesised exactly (spectrum and fluxes) and scored: ``chi2_pixel``, the
   chi-square per unmasked pixel against the observed noise (emission lines masked with
   :func:`sfh_ml.synthesis.lines.emission_line_mask`), and ``phot_residual``, (obs - model) / err per
   band, with their rms ``phot_rms``.

The out-of-distribution score
-----------------------------
A correct prediction does not reproduce the data to the noise: the bins are an approximation of the
continuous history, and the nuisances sit on grids. Such model errors are a roughly fixed *fraction*
of the flux, so their chi-square grows as S/N^2, while at low S/N chi-square itself scatters by
sqrt(2 / n_pixels). The score starts from the fractional rms residual beyond the noise,

    residual_fraction = sqrt(max(chi2_pixel - 1, 0)) / snr_model,

with ``snr_model`` the rms model-to-noise ratio over the fitted pixels (a prediction 2 % off
everywhere has 0.02 at any S/N), and divides it by the threshold at the object's S/N,
:func:`ood_threshold` interpolating a table of ``(snr_model, threshold)`` nodes. ``ood_score > 1``
sets :data:`~sfh_ml.network.inference.QUALITY_OUT_OF_DISTRIBUTION`.

The table belongs to a network: another network (or another training set) misses its own world by
other amounts. It is fitted by :func:`fit_ood_thresholds`: at each S/N node, the 90th percentile of
``residual_fraction`` over held-out objects of the network's own world whose age is right (the
mass-weighted log age within :data:`OOD_AGE_ERROR_DEX` of the truth, bin level), so that about
10 % of them are flagged. :func:`sfh_ml.network.calibrate_ood` does this on held-out sets and
stores the table in a copy of the model (:class:`~sfh_ml.network.layers.HistoryHead`'s
``ood_thresholds``, ``get_metadata(model)["ood_thresholds"]``, like the sigma factors of
:mod:`~sfh_ml.network.calibration`), and ``predict(..., goodness=True)`` uses the model's table
(an ensemble's: its first member's); the shipped network carries its own (fitted by
``benchmarks/release_model.py`` on its calibration set). A model without one (every model saved
before the attribute existed) falls back on :data:`OOD_THRESHOLDS`, the table fitted for the first
shipped network, trained on E-MILES alone (``benchmarks/ood.py --calibrate``): only a rough guess for
any other. The fluxes enter the fit of the normalisation and the dust but
not the score: on the BC03 world they add little (the rms of their residuals flags 1 object in 3
at 10 % false alarms, against 5 in 6 for the spectrum).

What it catches, measured by ``benchmarks/ood.py`` with the shipped network (1000 objects per set):
data unlike the generator, such as another stellar library (BC03 at S/N 50: 88 % of the objects
flagged, 75 % of those whose mass-weighted age is off by more than 0.3 dex) or observational errors
(all of them, ``benchmarks/worlds.py``), at 8-10 % false alarms on the own world at S/N 10-100. The
flag follows the data, not the error: a network trained on mixed libraries gets most BC03 histories
right and the flag still marks them. What it cannot catch: the own world's own failures (degenerate
histories that fit the data as well as the truth; 10-32 % of them flagged) and, at S/N ~10,
anything below a ~2 % residual. Sky-line windows are not masked
here: synthetic spectra carry the sky in their noise, and prepared observations have them masked
already (:func:`sfh_ml.observations.prepare.prepare_spectra`); ``mask`` leaves out more pixels.
"""

import functools

import numpy as np
from tqdm import tqdm

from ..constants import BIRTH_CLOUD_AGE_YR
from ..synthesis.dust import attenuation_curve, transmission
from ..synthesis.lines import emission_line_mask
from ..synthesis.photometry import pivot_wavelengths
from ..synthesis.sfh import closed_edges, time_overlap
from ..synthesis.ssp import load_library
from ..synthesis.synthesizer import SynthesisParams, Synthesizer
from ..utils import check_positive_int

__all__ = [
    "BinnedHistory",
    "resynthesis_fit",
    "ood_threshold",
    "residual_fraction",
    "fit_ood_thresholds",
    "age_is_right",
    "age_error",
    "flag_rate",
    "OOD_THRESHOLDS",
    "OOD_PERCENTILE",
    "OOD_AGE_ERROR_DEX",
    "MIN_OOD_OBJECTS",
    "SIGMA_NODES_KMS",
    "TAU_ISM_GRID",
    "TAU_BC_GRID",
    "GOODNESS_KEYS",
]

# Stellar dispersions tried (km/s): the training range (150-350 km/s) in steps of ~20 %.
SIGMA_NODES_KMS = (150.0, 180.0, 220.0, 285.0, 350.0)
# CF00 optical depths tried: the training ranges (tau_ism 0-1, tau_bc 0-2) and a margin beyond them.
TAU_ISM_GRID = np.round(np.arange(0.0, 1.51, 0.1), 2)
TAU_BC_GRID = np.round(np.arange(0.0, 3.01, 0.5), 2)
LOG_U_NEBULAR = -2.75  # of the nebular continuum: the middle of the training range (-4 to -1.5)
SIGMA_GAS_KMS = 50.0  # gas dispersion of the re-synthesised lines (masked; only their far wings remain)
BLOCK = 256  # objects re-synthesised at a time
MDEGREE = 0  # degree of the multiplicative Legendre polynomial of the final fit (0: none)
# The flag threshold on residual_fraction at each model S/N (rms model / noise per pixel) of the
# first shipped network (trained on E-MILES alone), used for models that carry no table of their own
# (HistoryHead.ood_thresholds): the 90th percentile over its own held-out world (E-MILES, 1000 objects
# per S/N, seed 101), measured with ``python benchmarks/ood.py --calibrate``. At low S/N it is the
# noise of chi-square (sqrt(2 / n_pixels)) that sets it, at high S/N the floor of the re-synthesis
# (binned histories).
OOD_THRESHOLDS = ((9.3, 0.0201), (18.6, 0.0106), (46.4, 0.0053), (92.9, 0.0043))
OOD_PERCENTILE = 90.0  # percentile of residual_fraction over the right-age objects: ~10 % false alarms
OOD_AGE_ERROR_DEX = 0.3  # an object's age is right when its mass-weighted log age is within this
# Right-age objects a node of the table needs: the false-alarm rate of a 90th percentile fitted on n
# objects scatters by sqrt(0.09 / n), 0.03 at n = 100.
MIN_OOD_OBJECTS = 100
GOODNESS_KEYS = ("chi2_pixel", "phot_rms", "ood_score")


class BinnedHistory:
    """Histories with a constant star formation rate inside each age bin and one [M/H] per bin.

    Reads like an :class:`~sfh_ml.synthesis.sfh.SFHBatch` (``cumulative_at``, ``zh_in_bins``,
    ``mean_log_age``, ``take``, ``len``) so that :class:`~sfh_ml.synthesis.Synthesizer` synthesises it
    exactly: the network's predictions become spectra with the generator that made its training set.

    Parameters
    ----------
    sfh : ndarray, shape (n, n_bins)
        Mass fraction formed in each bin (normalised here; rows must have a positive sum).
    zh : ndarray, shape (n, n_bins)
        [M/H] of the stars formed in each bin, dex.
    age_bins_yr : ndarray, shape (n_bins + 1,)
        Bin edges, years; the first bin is taken to start at age 0 and the last to end at 14.1 Gyr
        (the convention of the targets, :func:`sfh_ml.synthesis.sfh.closed_edges`).
    """

    def __init__(self, sfh, zh, age_bins_yr):
        sfh = np.clip(np.atleast_2d(np.asarray(sfh, dtype=np.float64)), 0.0, None)
        total = sfh.sum(axis=1, keepdims=True)
        if np.any(~(total > 0)):
            raise ValueError("every history needs a positive total mass")
        self.sfh = sfh / total
        self.zh = np.atleast_2d(np.asarray(zh, dtype=np.float64))
        edges = closed_edges(age_bins_yr)
        self.edges_yr = edges
        if self.zh.shape != self.sfh.shape or edges.size != self.sfh.shape[1] + 1:
            raise ValueError(f"sfh {self.sfh.shape}, zh {self.zh.shape} and {edges.size} edges do not match")
        self.age_grid_yr = edges  # the synthesizer reads the maximum age from it

    def __len__(self):
        return self.sfh.shape[0]

    def take(self, index):
        return BinnedHistory(self.sfh[index], self.zh[index], self.edges_yr)

    def _overlap(self, edges_yr, closed):
        """Fraction of each of our bins inside each of the given bins, shape (n_bins, n_given)."""
        given = closed_edges(edges_yr, closed)
        return time_overlap(self.edges_yr, given) / np.diff(self.edges_yr)[:, None]

    def cumulative_at(self, age_yr):
        """Fraction of the mass formed at look-back ages younger than ``age_yr`` ((n_age,), or one
        row per history, (n, n_age)), shape (n, n_age)."""
        age_yr = np.asarray(age_yr, dtype=np.float64)
        lo, width = self.edges_yr[:-1, None], np.diff(self.edges_yr)[:, None]  # (n_bins, 1)
        if age_yr.ndim == 2:
            inside = np.clip((age_yr[:, None, :] - lo) / width, 0, 1)  # (n, n_bins, n_age)
            return np.einsum("nb,nba->na", self.sfh, inside)
        inside = np.clip((age_yr[None, :] - lo) / width, 0, 1)
        return self.sfh @ inside  # (n, n_bins) @ (n_bins, n_age)

    def mass_fractions(self, edges_yr, closed=True):
        """Mass fraction formed in each of the given bins, shape (n, n_given)."""
        return self.sfh @ self._overlap(edges_yr, closed)

    def zh_in_bins(self, edges_yr, closed=True):
        """Mass-weighted [M/H] of the stars formed in each of the given bins, shape (n, n_given).

        A bin without mass takes the history's mass-weighted mean [M/H] (its value does not
        matter: it weighs nothing)."""
        frac = self._overlap(edges_yr, closed)  # (n_bins, n_given)
        mass = self.sfh @ frac
        with np.errstate(invalid="ignore", divide="ignore"):
            zh = (self.sfh * self.zh) @ frac / mass
        fallback = np.sum(self.sfh * self.zh, axis=1, keepdims=True)  # mass-weighted mean
        return np.where(mass > 1e-12, zh, fallback)

    def mean_log_age(self):
        """Mass-weighted mean log10 age (yr) of the continuous binned history, shape (n,).

        Uniform in t within a bin: mean of ln t over [a, b] is [t ln t - t]_a^b / (b - a)."""
        a, b = self.edges_yr[:-1], self.edges_yr[1:]
        t_ln_t = lambda t: np.where(t > 0, t * np.log(np.maximum(t, 1e-300)), 0.0) - t
        per_bin = (t_ln_t(b) - t_ln_t(a)) / ((b - a) * np.log(10.0))
        return self.sfh @ per_bin

    def split(self, age_yr=BIRTH_CLOUD_AGE_YR):
        """The parts younger and older than ``age_yr``: (young, old, young_fraction (n,)).

        Each part is normalised to one solar mass (a part without mass gets a dummy history, to be
        weighted by its zero fraction)."""
        edges = np.unique(np.concatenate([self.edges_yr, [age_yr]]))
        sfh = self.mass_fractions(edges)  # (n, n_bins + 1 at most)
        zh = self.zh_in_bins(edges)
        young = edges[1:] <= age_yr
        f_young = sfh[:, young].sum(axis=1)
        parts = []
        for sel, f in ((young, f_young), (~young, 1.0 - f_young)):
            part = np.where(sel, sfh, 0.0)
            empty = ~(f > 1e-12)
            part[empty] = sel / sel.sum()
            parts.append(BinnedHistory(part, zh, edges))
        return parts[0], parts[1], f_young


@functools.lru_cache(maxsize=4)
def _synthesizer(wave_bytes, filters, library_variant):
    """A Synthesizer on the given grid over the dispersion nodes (built once per process)."""
    wave_aa = np.frombuffer(wave_bytes, dtype=np.float64)
    library = load_library(variant=library_variant)
    return Synthesizer(library, wave_aa, filters, sigma_kms=(SIGMA_NODES_KMS[0], SIGMA_NODES_KMS[-1]))


@functools.lru_cache(maxsize=4)
def _fit_mask(wave_bytes, library_variant):
    """Pixels fitted (True): away from the emission lines the generator draws."""
    wave_aa = np.frombuffer(wave_bytes, dtype=np.float64)
    return emission_line_mask(load_library(variant=library_variant), wave_aa)


def residual_fraction(chi2_pixel, snr_model):
    """Fractional rms residual beyond the noise, ``sqrt(max(chi2_pixel - 1, 0)) / snr_model``.

    Parameters
    ----------
    chi2_pixel, snr_model : ndarray, shape (n,)
        Reduced chi-square of the spectrum and the rms model-to-noise ratio over the same pixels.

    Returns
    -------
    ndarray, shape (n,)
        NaN where either input is NaN.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.clip(np.asarray(chi2_pixel) - 1.0, 0.0, None)) / np.asarray(snr_model)


def ood_threshold(snr_model, thresholds=None):
    """The flag threshold on :func:`residual_fraction` at a model S/N: a table of thresholds
    interpolated linearly in log S/N; below its first node proportional to 1 / S/N (there the
    scatter of chi-square, sqrt(2 / n_pixels), sets the threshold, and residual_fraction =
    sqrt(chi2 - 1) / S/N), above its last node constant (the floor of the re-synthesis).

    Parameters
    ----------
    snr_model : ndarray, shape (n,)
        rms model-to-noise ratio per fitted pixel (``resynthesis_fit(...)["snr_model"]``).
    thresholds : sequence of (snr_model, threshold), optional
        The model's table (``get_metadata(model)["ood_thresholds"]``, S/N increasing); default
        :data:`OOD_THRESHOLDS` (the first shipped network's).

    Returns
    -------
    ndarray, shape (n,)
        NaN where ``snr_model`` is NaN or <= 0.
    """
    table = np.asarray(OOD_THRESHOLDS if thresholds is None else thresholds, dtype=np.float64)
    snr = np.asarray(snr_model, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.log(np.where(snr > 0, snr, np.nan))
    t = np.interp(np.nan_to_num(x), np.log(table[:, 0]), table[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(snr < table[0, 0], table[0, 1] * table[0, 0] / snr, t)
    return np.where(np.isfinite(x), t, np.nan)


def age_error(pred_sfh, true_sfh, age_bins_yr):
    """Each object's mass-weighted log-age error (dex, bin level): predicted minus true.

    Parameters
    ----------
    pred_sfh, true_sfh : ndarray, shape (n, n_bins)
        Predicted and true mass fractions per bin (rows of NaN: NaN).
    age_bins_yr : ndarray, shape (n_bins + 1,)

    Returns
    -------
    ndarray, shape (n,)
    """
    from . import metrics

    return metrics.mean_log_age(pred_sfh, age_bins_yr) - metrics.mean_log_age(true_sfh, age_bins_yr)


def flag_rate(flag, objects):
    """The fraction of ``objects`` (bool mask, shape (n,)) that carry ``flag`` (bool, shape (n,));
    NaN when there are none. Of the objects whose age is wrong the hit rate, of the others
    (:func:`age_is_right`) the false-alarm rate."""
    objects = np.asarray(objects, dtype=bool)
    return float(np.mean(np.asarray(flag)[objects])) if objects.any() else float("nan")


def age_is_right(pred_sfh, true_sfh, age_bins_yr, max_error_dex=OOD_AGE_ERROR_DEX):
    """Objects whose predicted mass-weighted log age is within ``max_error_dex`` of the truth.

    Both ages at bin level (:func:`sfh_ml.network.metrics.mean_log_age` of the predicted and the
    true mass fractions per bin); the objects :func:`fit_ood_thresholds` calibrates on.

    Parameters
    ----------
    pred_sfh, true_sfh : ndarray, shape (n, n_bins)
        Predicted and true mass fractions per bin (rows of NaN: not predicted, never right).
    age_bins_yr : ndarray, shape (n_bins + 1,)
    max_error_dex : float

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    with np.errstate(invalid="ignore"):
        return np.abs(age_error(pred_sfh, true_sfh, age_bins_yr)) <= max_error_dex  # NaN compares False


def fit_ood_thresholds(
    residual_fraction,
    snr_model,
    ok,
    groups=None,
    n_nodes=1,
    percentile=OOD_PERCENTILE,
    min_objects=MIN_OOD_OBJECTS,
):
    """The table of :func:`ood_threshold` fitted on held-out objects of the network's own world.

    The objects are split into nodes: by ``groups`` (e.g. one label per held-out set, each at one
    S/N), each group further into ``n_nodes`` bins of equal counts in ``snr_model``. A node's S/N is
    the median ``snr_model`` of its objects, its threshold the ``percentile``-th percentile of
    ``residual_fraction`` over its objects with ``ok`` (those whose age is right,
    :func:`age_is_right`), so that ``100 - percentile`` % of them are flagged.

    Parameters
    ----------
    residual_fraction, snr_model : ndarray, shape (n,)
        ``resynthesis_fit(...)["residual_fraction"]`` and ``["snr_model"]`` (NaN: not fitted, left out).
    ok : ndarray of bool, shape (n,)
        The objects the false alarms are counted on (the prediction is right).
    groups : ndarray, shape (n,), optional
        A label per object (any sortable type); None: all objects in one group.
    n_nodes : int
        Nodes per group: bins of equal numbers of objects in ``snr_model`` (1: the group is one S/N).
    percentile : float
        In (0, 100).
    min_objects : int
        The fewest ``ok`` objects a node may be fitted on.

    Returns
    -------
    ndarray, shape (k, 2)
        ``[snr_model, threshold]`` rows, S/N increasing: for
        :meth:`~sfh_ml.network.layers.HistoryHead.set_ood_thresholds` or ``ood_threshold(...,
        thresholds=)``.

    Raises
    ------
    ValueError
        Inputs of different lengths; a node with fewer than ``min_objects`` ``ok`` objects, two
        nodes at the same S/N, or a threshold of 0 (the fits are as good as the noise: chi-square
        <= 1); the message names the group.
    """
    rf = np.asarray(residual_fraction, dtype=np.float64).ravel()
    snr = np.asarray(snr_model, dtype=np.float64).ravel()
    ok = np.asarray(ok, dtype=bool).ravel()
    labels = np.zeros(rf.size, dtype=int) if groups is None else np.asarray(groups).ravel()
    if not (rf.size == snr.size == ok.size == labels.size):
        raise ValueError(
            f"residual_fraction ({rf.size}), snr_model ({snr.size}), ok ({ok.size}) and groups "
            f"({labels.size}) must have one value per object"
        )
    check_positive_int(n_nodes, "n_nodes (--ood-nodes)")
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    fitted = np.isfinite(rf) & np.isfinite(snr) & (snr > 0)
    rows = []
    for label in np.unique(labels):
        members = np.flatnonzero((labels == label) & fitted)
        members = members[np.argsort(snr[members], kind="stable")]
        for j, node in enumerate(np.array_split(members, int(n_nodes))):
            name = f"group {label!s}" + (f", S/N node {j + 1} of {n_nodes}" if n_nodes > 1 else "")
            good = node[ok[node]]
            if good.size < max(int(min_objects), 1):
                raise ValueError(
                    f"{name}: {good.size} fitted objects whose age is right ({node.size} fitted): "
                    f"a threshold needs at least {min_objects}"
                )
            threshold = float(np.percentile(rf[good], percentile))
            if not threshold > 0:
                raise ValueError(
                    f"{name}: the {percentile:g}th percentile of residual_fraction is 0 (chi-square "
                    "<= 1: is the noise overestimated?)"
                )
            rows.append((float(np.median(snr[node])), threshold, name))
    rows.sort(key=lambda r: r[0])
    for a, b in zip(rows, rows[1:]):
        if not b[0] > a[0]:
            raise ValueError(f"{a[2]} and {b[2]} are at the same S/N ({a[0]:g}): merge them")
    return np.array([r[:2] for r in rows], dtype=np.float64).reshape(-1, 2)


def _params(n, sigma_kms, tau_ism=0.0, tau_bc=0.0):
    return SynthesisParams(
        tau_bc=np.broadcast_to(tau_bc, (n,)),
        tau_ism=np.broadcast_to(tau_ism, (n,)),
        log_u=LOG_U_NEBULAR,
        sigma_kms=np.broadcast_to(sigma_kms, (n,)),
        sigma_gas_kms=SIGMA_GAS_KMS,
        snr=1.0,
        snr_phot=1.0,
    )


def _dust_grid(synth):
    """Transmission of every (tau_ism, tau_bc) grid point on the spectrum's pixels and at the bands.

    Returns ``(a_ism, a_bc, p_ism, p_bc, tau_ism, tau_bc)``: (G, n_wave) x 2, (G, n_bands) x 2, (G,) x 2.
    """
    ti, tb = (g.ravel() for g in np.meshgrid(TAU_ISM_GRID, TAU_BC_GRID, indexing="ij"))
    k_wave = attenuation_curve(synth.wave_aa)
    k_phot = attenuation_curve(pivot_wavelengths(list(synth.filters)))
    return (
        transmission(ti, k_wave),
        transmission(tb, k_wave),
        transmission(ti, k_phot),
        transmission(tb, k_phot),
        ti,
        tb,
    )


def _sigma_nodes(synth):
    """The synthesizer's dispersion nodes nearest to :data:`SIGMA_NODES_KMS` (no interpolation
    between its templates: one matrix product per node)."""
    have = synth.sigma_nodes_kms
    return np.unique(have[np.abs(have[None, :] - np.asarray(SIGMA_NODES_KMS)[:, None]).argmin(axis=1)])


def _grid_sums(old, young, pold, pyoung, w, u, pw, pu, grid):
    """The sums over pixels (and bands) of the chi-square at every dust grid point.

    The model is ``A a_ism (old + a_bc young)``; with ``u = w d``, sum w (d - A m)^2 is minimised by
    A = <u, m> / <w m, m>, leaving sum w d^2 - <u, m>^2 / <w m, m>. Both sums are matrix products
    of per-object spectra against the grid's transmissions, split into their old, young and cross
    terms. Returns the terms ``(dm_old, dm_young, mm_old, mm_cross, mm_young)``, each (n, G).
    """
    a_ism, a_bc, p_ism, p_bc = grid[:4]
    a2, p2 = a_ism**2, p_ism**2
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        dm_old = (u * old) @ a_ism.T + (pu * pold) @ p_ism.T if old is not None else None
        mm_old = (w * old * old) @ a2.T + (pw * pold * pold) @ p2.T if old is not None else None
        dm_young = (
            (u * young) @ (a_ism * a_bc).T + (pu * pyoung) @ (p_ism * p_bc).T if young is not None else None
        )
        mm_young = (
            (w * young * young) @ (a2 * a_bc**2).T + (pw * pyoung**2) @ (p2 * p_bc**2).T
            if young is not None
            else None
        )
        mm_cross = (
            2 * ((w * old * young) @ (a2 * a_bc).T + (pw * pold * pyoung) @ (p2 * p_bc).T)
            if old is not None and young is not None
            else None
        )
    return dm_old, dm_young, mm_old, mm_cross, mm_young


def _refine_parabola(x, chi2_nodes, best_k, back=lambda v: v):
    """The abscissa of the vertex of the parabola through the best node and its neighbours, kept
    between the neighbours (the best node itself at the ends of the range), shape (n,).

    ``x`` (n_nodes,), ``chi2_nodes`` (n, n_nodes), ``best_k`` (n,); ``back`` maps x to the result.
    """
    n = len(best_k)
    out = x[best_k].copy()
    inner = (best_k > 0) & (best_k < x.size - 1)
    if not inner.any():
        return back(out)
    k, rows = best_k[inner], np.arange(n)[inner]
    x0, x1, x2 = x[k - 1], x[k], x[k + 1]
    y0, y1, y2 = chi2_nodes[rows, k - 1], chi2_nodes[rows, k], chi2_nodes[rows, k + 1]
    # vertex of the parabola through three points (Numerical Recipes, eq. 10.3.1)
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    with np.errstate(invalid="ignore", divide="ignore"):
        vertex = x1 - 0.5 * num / den
    out[inner] = np.where(np.isfinite(vertex), np.clip(vertex, x0, x2), x1)
    return back(out)


def _synthesise(synth, hist, sigma_kms, tau_ism=0.0, tau_bc=0.0):
    """Noise-free spectra (n, n_wave) and fluxes (n, n_bands) of ``hist``, float64."""
    out = synth(hist, _params(len(hist), sigma_kms, tau_ism, tau_bc), noise=False)
    return out["spectra_noiseless"], out["photometry_noiseless"]


def _fit_block(synth, hist, d, w, pd, pw, grid, sigma_nodes, mdegree=0):
    """Best dispersion, dust and normalisation for one block; the exact model at the best point.

    The grid search runs in float32 (its sums lose < 1e-5 of chi-square's relative precision); the
    young stars (< 10 Myr, with the nebular continuum) are synthesised at the middle dispersion node
    only, their spectra being dominated by broad Balmer lines and the continuum.
    """
    n = len(hist)
    young, old, f_young = hist.split()
    f32 = lambda a: np.asarray(a, dtype=np.float32)
    w32, u32, pw32, pu32 = f32(w), f32(w * d), f32(pw), f32(pw * pd)
    grid32 = [f32(g) for g in grid[:4]]
    sy, py = _synthesise(synth, young, sigma_nodes[len(sigma_nodes) // 2])
    sy, py = f32(sy * f_young[:, None]), f32(py * f_young[:, None])
    dd = np.sum(w * d * d, axis=1) + np.sum(pw * pd * pd, axis=1)
    _, dm_y, _, _, mm_y = _grid_sums(None, sy, None, py, w32, u32, pw32, pu32, grid32)
    chi2_all = np.empty((n, len(sigma_nodes), grid[4].size))  # (n, node, dust grid point)
    for k, s in enumerate(sigma_nodes):
        so, po = _synthesise(synth, old, s)
        so, po = f32(so * (1 - f_young)[:, None]), f32(po * (1 - f_young)[:, None])
        dm_o, _, mm_o, mm_c, _ = _grid_sums(so, sy, po, py, w32, u32, pw32, pu32, grid32)
        dm = dm_o.astype(np.float64) + dm_y
        mm = mm_o.astype(np.float64) + mm_c + mm_y
        with np.errstate(invalid="ignore", divide="ignore"):
            chi2 = np.where(mm > 0, dd[:, None] - dm**2 / mm, np.inf)
        chi2_all[:, k] = chi2
    chi2_nodes = chi2_all.min(axis=2)  # (n, node)
    best_k = np.argmin(chi2_nodes, axis=1)
    best_g = np.argmin(chi2_all[np.arange(n), best_k], axis=1)
    sigma = _refine_parabola(np.log(sigma_nodes), chi2_nodes, best_k, np.exp)
    # tau_ism at the best node and tau_bc (grid flattened as (tau_ism, tau_bc), tau_bc fastest)
    n_bc = TAU_BC_GRID.size
    on_bc = chi2_all[np.arange(n), best_k].reshape(n, -1, n_bc)[np.arange(n), :, best_g % n_bc]  # (n, n_ism)
    tau_ism = _refine_parabola(TAU_ISM_GRID.astype(np.float64), on_bc, best_g // n_bc)
    tau_bc = grid[5][best_g]
    model, pmodel = (a.astype(np.float64) for a in _synthesise(synth, hist, sigma, tau_ism, tau_bc))
    num = np.sum(w * d * model, 1) + np.sum(pw * pd * pmodel, 1)
    den = np.sum(w * model * model, 1) + np.sum(pw * pmodel * pmodel, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = num / den
    spectra = model * scale[:, None]
    if mdegree > 0:
        spectra = _multiplicative_polynomial(model, d, w, mdegree)
    return spectra, pmodel * scale[:, None], tau_ism, tau_bc, sigma, scale


def _multiplicative_polynomial(model, d, w, mdegree):
    """``model`` times the Legendre polynomial of degree ``mdegree`` (over the spectrum's range) that
    fits ``d`` best with weights ``w`` (linear least squares, per object), shape (n, n_wave)."""
    x = np.linspace(-1.0, 1.0, model.shape[1])
    basis = np.polynomial.legendre.legvander(x, mdegree).T  # (K, n_wave)
    k = basis.shape[0]
    pairs = (basis[:, None, :] * basis[None, :, :]).reshape(k * k, -1)  # (K^2, n_wave)
    a = ((w * model * model) @ pairs.T).reshape(-1, k, k)
    b = (w * d * model) @ basis.T  # (n, K)
    a += 1e-12 * np.trace(a, axis1=1, axis2=2)[:, None, None] * np.eye(k)  # objects with no pixel
    coef = np.linalg.solve(a, b[..., None])[..., 0]
    return model * (coef @ basis)


def resynthesis_fit(
    prediction,
    spectra,
    noise,
    photometry,
    photometry_err,
    wave_aa,
    filters,
    age_bins_yr,
    ivar=None,
    library="emiles",
    mask=None,
    block=BLOCK,
    progress=None,
    return_models=False,
    mdegree=MDEGREE,
    ood_thresholds=None,
):
    """Re-synthesise each predicted history, fit dust, dispersion and normalisation, and score the fit.

    Parameters
    ----------
    prediction : dict
        :func:`sfh_ml.network.predict` output: ``sfh`` and ``zh``, shape (n, n_bins) (rows of NaN:
        objects not predicted, scored NaN).
    spectra : ndarray, shape (n, n_wave)
        Observed flux densities per Angstrom; NaN for masked pixels.
    noise : ndarray, shape (n, n_wave), or None
        1-sigma noise of ``spectra``, same units; NaN, inf or <= 0 masks the pixel. None: give ``ivar``.
    photometry, photometry_err : ndarray, shape (n, n_bands)
        Band-mean flux densities and their 1-sigma errors, spectra's units; NaN (either) masks a band.
    wave_aa : ndarray, shape (n_wave,)
        Rest-frame wavelengths of the pixels, Angstrom.
    filters : sequence of str
        pyphot names of the bands.
    age_bins_yr : ndarray, shape (n_bins + 1,)
        The model's age-bin edges, years.
    ivar : ndarray, shape (n, n_wave), optional
        Inverse variance instead of ``noise`` (0 or NaN masks the pixel).
    library : str
        SSP library variant of the re-synthesis (the network's training library: ``"emiles"``).
    mask : ndarray of bool, shape (n_wave,) or (n, n_wave), optional
        Further pixels to leave out (True = left out), e.g. sky-line windows shifted to the rest
        frame. Emission lines are always left out.
    block : int
        Objects fitted at a time.
    progress : bool, optional
        tqdm bar (default: for more than 4 blocks).
    return_models : bool
        Also return the best-fitting ``model_spectra`` and ``model_photometry``.
    mdegree : int
        Degree of a multiplicative Legendre polynomial fitted to the spectrum after the best point
        is found (pPXF's ``mdegree``: absorbs flux-calibration and dust-law shapes). 0, the default,
        is what :data:`OOD_THRESHOLDS` and :func:`sfh_ml.network.calibrate_ood` calibrate for; with
        3 the first shipped network's BC03 hit rate drops from 0.74 to 0.70 at the same false-alarm
        rate (``benchmarks/ood.py --mdegree 3``), and the shipped network still flags 99 % of the
        "observational" world (its sky residuals and LSF errors are not polynomial).
    ood_thresholds : nested sequence of float, shape (k, 2), optional
        The ``[snr_model, threshold]`` table of the ``ood_score`` (:func:`ood_threshold`): the
        predicting model's own, ``get_metadata(model)["ood_thresholds"]``; None, the default:
        :data:`OOD_THRESHOLDS` (the first shipped network's).

    Returns
    -------
    dict of ndarray
        ``chi2_pixel`` (n,): chi-square per fitted pixel against ``noise``; ``n_pixels`` (n,);
        ``snr_model`` (n,): rms of model / noise over those pixels; ``residual_fraction`` (n,)
        (:func:`residual_fraction`); ``ood_score`` (n,): ``residual_fraction`` over the flag
        threshold at the object's S/N (:func:`ood_threshold` of ``ood_thresholds``), > 1: out of
        distribution;
        ``phot_residual`` (n, n_bands): (obs - model) / err, NaN for missing
        bands; ``phot_rms`` (n,): rms over the present bands; ``tau_ism``, ``tau_bc``, ``sigma_kms``,
        ``scale`` (n,): the fitted nuisances (``scale``: the model's normalisation, data units per
        M_sun formed). All NaN for objects without prediction or without usable pixels.
    """
    sfh = np.asarray(prediction["sfh"], dtype=np.float64)
    zh = np.asarray(prediction["zh"], dtype=np.float64)
    spectra = np.atleast_2d(np.asarray(spectra, dtype=np.float64))
    if noise is None:
        if ivar is None:
            raise ValueError("give the noise of the spectra (noise= or ivar=)")
        with np.errstate(divide="ignore", invalid="ignore"):
            noise = 1.0 / np.sqrt(np.asarray(ivar, dtype=np.float64))
    noise = np.atleast_2d(np.asarray(noise, dtype=np.float64))
    photometry = np.atleast_2d(np.asarray(photometry, dtype=np.float64))
    photometry_err = np.atleast_2d(np.asarray(photometry_err, dtype=np.float64))
    wave_aa = np.asarray(wave_aa, dtype=np.float64)
    n = len(sfh)
    if spectra.shape != noise.shape or spectra.shape != (n, wave_aa.size):
        raise ValueError(f"spectra {spectra.shape} and noise {noise.shape} must be ({n}, {wave_aa.size})")
    if photometry.shape != photometry_err.shape or photometry.shape != (n, len(filters)):
        raise ValueError(f"photometry {photometry.shape} and its errors must be ({n}, {len(filters)})")
    wave_key = wave_aa.tobytes()
    synth = _synthesizer(wave_key, tuple(filters), library)
    keep = _fit_mask(wave_key, library)[None, :]
    if mask is not None:
        keep = keep & ~np.asarray(mask, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        w_all = np.where(np.isfinite(spectra) & (noise > 0) & np.isfinite(noise) & keep, 1.0 / noise**2, 0.0)
        pw_all = np.where(
            np.isfinite(photometry) & (photometry_err > 0) & np.isfinite(photometry_err),
            1.0 / photometry_err**2,
            0.0,
        )
    d_all = np.where(w_all > 0, spectra, 0.0)
    pd_all = np.where(pw_all > 0, photometry, 0.0)
    n_pix = (w_all > 0).sum(axis=1)
    ok = np.isfinite(sfh).all(1) & np.isfinite(zh).all(1) & (np.nansum(sfh, 1) > 0) & (n_pix > 0)
    nan = lambda *shape: np.full((n, *shape), np.nan)
    out = {
        k: nan() for k in ("chi2_pixel", "snr_model", "phot_rms", "tau_ism", "tau_bc", "sigma_kms", "scale")
    }
    out["phot_residual"] = nan(len(filters))
    out["n_pixels"] = n_pix
    if return_models:
        out["model_spectra"], out["model_photometry"] = nan(wave_aa.size), nan(len(filters))
    grid = _dust_grid(synth)
    nodes = _sigma_nodes(synth)
    idx = np.flatnonzero(ok)
    starts = range(0, idx.size, block)
    show = len(starts) > 4 if progress is None else progress
    for start in tqdm(starts, desc="goodness of fit", disable=not show):
        rows = idx[start : start + block]
        hist = BinnedHistory(sfh[rows], zh[rows], age_bins_yr)
        d, w, pd, pw = d_all[rows], w_all[rows], pd_all[rows], pw_all[rows]
        model, pmodel, ti, tb, sig, scale = _fit_block(synth, hist, d, w, pd, pw, grid, nodes, mdegree)
        chi2 = np.sum(w * (d - model) ** 2, axis=1)
        out["chi2_pixel"][rows] = chi2 / np.maximum(n_pix[rows] - 1, 1)
        out["snr_model"][rows] = np.sqrt(np.sum(w * model**2, axis=1) / n_pix[rows])
        with np.errstate(invalid="ignore", divide="ignore"):
            resid = np.where(pw > 0, (pd - pmodel) * np.sqrt(pw), np.nan)
        out["phot_residual"][rows] = resid
        with np.errstate(invalid="ignore"):
            present = np.isfinite(resid).sum(1)
            out["phot_rms"][rows] = np.where(
                present > 0, np.sqrt(np.nansum(resid**2, 1) / np.maximum(present, 1)), np.nan
            )
        out["tau_ism"][rows], out["tau_bc"][rows], out["sigma_kms"][rows], out["scale"][rows] = (
            ti,
            tb,
            sig,
            scale,
        )
        if return_models:
            out["model_spectra"][rows], out["model_photometry"][rows] = model, pmodel
    out["residual_fraction"] = residual_fraction(out["chi2_pixel"], out["snr_model"])
    out["ood_score"] = out["residual_fraction"] / ood_threshold(out["snr_model"], ood_thresholds)
    return out
