import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

from sfh_ml.constants import MAX_AGE_YR, ZH_RANGE
from sfh_ml.synthesis.sfh import (
    ChemicalEvolution,
    ConstantSFH,
    DenseBasis,
    SkewNormalBurst,
    default_age_bins,
    pchip_eval,
)


@pytest.mark.parametrize("family", [SkewNormalBurst(), DenseBasis(), DenseBasis(n_tx=6, alpha=0.5)])
def test_mass_fractions_are_non_negative_and_sum_to_one(family):
    batch = family.sample(2000, np.random.default_rng(3))
    for edges in (default_age_bins(), default_age_bins(8), np.logspace(6, 10, 40)):
        m = batch.mass_fractions(edges)
        assert m.min() >= 0
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-9)


@pytest.mark.parametrize("family", [SkewNormalBurst(), DenseBasis()])
def test_metallicity_stays_inside_the_ssp_grid(family):
    batch = family.sample(2000, np.random.default_rng(4))
    zh = batch.zh_in_bins(default_age_bins())
    assert zh.min() >= ZH_RANGE[0] - 1e-12 and zh.max() <= ZH_RANGE[1] + 1e-12


def test_metallicity_rises_as_mass_builds_up():
    batch = SkewNormalBurst().sample(500, np.random.default_rng(5))
    zh = batch.zh_in_bins(default_age_bins(30))
    # bins run from young to old: metallicity never increases towards older bins
    assert np.all(np.diff(zh, axis=1) <= 1e-6)
    # the youngest stars approach the final metallicity
    assert np.all(zh[:, 0] <= batch.zh_final + 1e-9)


def test_dense_basis_tx_are_recovered_from_the_drawn_histories():
    fam = DenseBasis(n_tx=3, alpha=1.0)
    batch = fam.sample(300, np.random.default_rng(6))
    tx = np.stack([batch.params[f"tx{i + 1}"] for i in range(3)], axis=1)
    edges = np.linspace(0, MAX_AGE_YR, 2001)  # 7 Myr bins, forward time fraction = 1 - age / T
    formed = 1.0 - np.cumsum(batch.mass_fractions(edges), axis=1)  # formed by the older edge of each bin
    t_forward = 1.0 - edges[1:] / MAX_AGE_YR
    for i, f in enumerate(fam.fractions):
        recovered = np.array([np.interp(f, row[::-1], t_forward[::-1]) for row in formed])
        np.testing.assert_allclose(recovered, tx[:, i], atol=0.01)


def test_dense_basis_uses_pchip_like_scipy():
    rng = np.random.default_rng(7)
    xk = np.sort(rng.uniform(0, 1, (5, 6)), axis=1)
    xk[:, 0], xk[:, -1] = 0, 1
    yk = np.sort(rng.uniform(0, 1, (5, 6)), axis=1)
    x = np.linspace(0, 1, 101)
    ours = pchip_eval(xk, yk, x)
    for i in range(5):
        np.testing.assert_allclose(ours[i], PchipInterpolator(xk[i], yk[i])(x), atol=1e-12)


def test_skew_normal_peaks_where_asked_and_burst_holds_its_mass():
    fam = SkewNormalBurst()
    n = 3
    peak = np.array([2e7, 1e9, 8e9])
    batch = fam.batch(
        peak,
        0.2 * peak,
        np.zeros(n),
        np.full(n, 5e6),
        np.full(n, 2e6),
        np.full(n, 0.3),
        np.full(n, -1.0),
        np.zeros(n),
        np.ones(n),
    )
    ages = np.logspace(6.5, 10.1, 2000)
    sfr = batch.sfr(ages)
    old = ages > 1e7
    for i in range(n):
        assert ages[old][np.argmax(sfr[i, old])] == pytest.approx(peak[i], rel=0.05)
    # the burst: 30 % of the mass between 5 and 7 Myr (the old skewed normals add nothing there)
    m = batch.mass_fractions(np.array([0, 5e6, 7e6, MAX_AGE_YR]), closed=False)
    np.testing.assert_allclose(m[1:, 1], 0.3, atol=1e-6)


def test_young_dominated_histories_are_common():
    batch = SkewNormalBurst().sample(4000, np.random.default_rng(8))
    young = batch.mass_fractions(np.array([0, 1e8, MAX_AGE_YR]))[:, 0]
    assert np.mean(young > 0.5) > 0.2


def test_default_age_bins_resolve_the_first_10_myr():
    """1-3, 3-6 and 6-10 Myr, then the 16 log-spaced bins of the seed from 10 Myr to 14.1 Gyr."""
    edges = default_age_bins()
    assert edges.size == 20  # 19 bins
    np.testing.assert_allclose(edges[:4], [1e6, 3e6, 6e6, 1e7])
    assert edges[-1] == pytest.approx(MAX_AGE_YR)
    np.testing.assert_allclose(np.diff(np.log10(edges[3:])), np.log10(MAX_AGE_YR / 1e7) / 16)
    # no young edges: plain log bins from min_age_yr, the old layout with another start
    np.testing.assert_allclose(default_age_bins(young_edges_yr=()), np.geomspace(1e7, MAX_AGE_YR, 17))
    np.testing.assert_allclose(
        default_age_bins(16, (), min_age_yr=10**6.8), np.logspace(6.8, np.log10(MAX_AGE_YR), 17)
    )
    np.testing.assert_allclose(default_age_bins(8, (2e6,))[:2], [2e6, 1e7])


def test_young_bursts_land_in_their_own_bins():
    """Bursts 0.5, 2, 4 and 8 Myr old (0.2 Myr long) fill the bins 1-3 (which also holds the stars
    younger than 1 Myr), 1-3, 3-6 and 6-10 Myr; with the old bins all four fell in the first (< 10.2 Myr)."""
    ages = np.array([0.5e6, 2e6, 4e6, 8e6])
    n = ages.size
    one = np.ones(n)
    batch = SkewNormalBurst().batch(
        1e9 * one, 1e8 * one, 0 * one, ages, 2e5 * one, one, 0 * one, 0 * one, one
    )
    m = batch.mass_fractions(default_age_bins())
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(m[:, :3], [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], atol=1e-12)


def test_constant_sfh_forms_mass_at_a_constant_rate():
    batch = ConstantSFH(duration_yr=1e8).sample(1)
    m = batch.mass_fractions(np.array([0, 1e7, 5e7, 1e8, MAX_AGE_YR]), closed=False)
    np.testing.assert_allclose(m[0], [0.1, 0.4, 0.5, 0.0], atol=1e-9)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ChemicalEvolution(zh_final_range=(-2.5, 0.0)), "outside the SSP grid"),
        (lambda: SkewNormalBurst(peak_age_range=(1e6, 2e10)), "peak_age_range"),
        (lambda: DenseBasis(n_tx=0), "n_tx"),
        (lambda: DenseBasis(alpha=-1), "alpha"),
        (lambda: ConstantSFH(zh=0.5), "outside the SSP grid"),
        (lambda: default_age_bins(0), "n_bins"),
        (lambda: default_age_bins(young_edges_yr=(3e6, 1e6)), "young_edges_yr must be increasing"),
        (lambda: default_age_bins(young_edges_yr=(1e6, 1e7)), "below min_age_yr"),
        (lambda: default_age_bins(young_edges_yr=(0.0, 3e6)), "> 0"),
        (
            lambda: SkewNormalBurst().sample(3, np.random.default_rng(0)).mass_fractions([1e6, 1e5]),
            "increasing",
        ),
        (lambda: SkewNormalBurst().sample(3, np.random.default_rng(0)).mass_fractions([0, 3e10]), "within"),
    ],
)
def test_out_of_grid_parameters_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()
