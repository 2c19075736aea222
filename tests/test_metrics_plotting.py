"""Tests of the validation helpers of sfh_ml.network.metrics that the chapters call, and of the book's
figures in sfh_ml.plotting (what they draw, not how it looks)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sfh_ml.network import metrics  # noqa: E402

N_BINS = 8
AGE_BINS_YR = np.logspace(np.log10(6.3e6), np.log10(1.41e10), N_BINS + 1)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _gaussian_predictions(n=4000, sigma_scale=1.0, seed=5):
    """Truth and predictions whose errors are Gaussian with the predicted sigma times ``sigma_scale``."""
    rng = np.random.default_rng(seed)
    sfh = rng.dirichlet(np.ones(N_BINS), n)
    zh = rng.uniform(-1.5, 0.2, (n, N_BINS))
    cum_sigma = rng.uniform(0.02, 0.1, (n, N_BINS))
    zh_sigma = rng.uniform(0.05, 0.3, (n, N_BINS))
    pred = {
        "sfh": sfh,
        "sfh_cum": np.cumsum(sfh, axis=1) + sigma_scale * cum_sigma * rng.standard_normal((n, N_BINS)),
        "sfh_cum_sigma": cum_sigma,
        "zh": zh + sigma_scale * zh_sigma * rng.standard_normal((n, N_BINS)),
        "zh_sigma": zh_sigma,
    }
    return pred, {"sfh": sfh, "zh": zh}


def _light_table(slope=-0.8, zh_grid=(-1.7, -1.0, -0.4, 0.0, 0.2)):
    """A light table falling with age as age^slope and rising linearly with [M/H] by 30 % per dex."""
    grid = np.asarray(zh_grid, dtype=np.float64)
    per_age = (metrics.bin_centres_yr(AGE_BINS_YR) / 1e9) ** slope  # (N_BINS,)
    return np.outer(per_age, 1.0 + 0.3 * (grid - grid[0])), grid


# ------------------------------------------------------------------------------------- light weights
def test_bin_light_is_interpolated_linearly_in_zh_and_held_at_the_grid_ends():
    table, grid = _light_table()
    sfh = np.full((1, N_BINS), 1.0 / N_BINS)
    zh = np.array([[-1.7, -1.35, -0.2, 0.2, 0.5, -3.0, -1.0, 0.1]])  # nodes, midpoints, beyond the ends
    light = metrics.bin_light_weights(sfh, zh, table, grid)
    expected_per_mass = 1.0 + 0.3 * (np.clip(zh[0], grid[0], grid[-1]) - grid[0])
    np.testing.assert_allclose(light[0], table[:, 0] * expected_per_mass / N_BINS, rtol=1e-12)
    # a bin without mass has no light; NaN [M/H] (an unusable object) gives NaN, not a number
    sfh0 = np.eye(N_BINS)[[2]]
    assert np.count_nonzero(metrics.bin_light_weights(sfh0, zh, table, grid)) == 1
    assert np.isnan(metrics.bin_light_weights(sfh, np.full_like(zh, np.nan), table, grid)).all()


def test_light_weighted_means_follow_the_table_not_a_fixed_law():
    rng = np.random.default_rng(1)
    sfh = rng.dirichlet(np.ones(N_BINS), 200)
    zh = np.tile(np.linspace(0.0, -1.0, N_BINS), (200, 1))  # young stars metal-rich
    means = metrics.mean_quantities(sfh, zh, AGE_BINS_YR, *_light_table())
    # young stars outshine old ones per unit mass: younger, more metal-rich light than mass
    assert np.all(means["lw_log_age"] < means["mw_log_age"]) and np.all(means["lw_zh"] > means["mw_zh"])
    # a table with equal light per unit mass in every bin gives the mass-weighted means exactly
    flat = metrics.mean_quantities(sfh, zh, AGE_BINS_YR, *_light_table(slope=0.0, zh_grid=(-1.0,)))
    np.testing.assert_allclose(flat["lw_log_age"], flat["mw_log_age"], rtol=1e-12)
    np.testing.assert_allclose(flat["lw_zh"], flat["mw_zh"], rtol=1e-12)
    # a steeper table pulls the light-weighted age further towards the young bins
    steep = metrics.mean_quantities(sfh, zh, AGE_BINS_YR, *_light_table(slope=-1.2))
    assert np.all(steep["lw_log_age"] < means["lw_log_age"])
    # without a table there are no light-weighted means at all, never an approximation
    assert set(metrics.mean_quantities(sfh, zh, AGE_BINS_YR)) == {"mw_log_age", "mw_zh"}


@pytest.mark.parametrize(
    "table, grid, match",
    [
        (np.ones((N_BINS, 3)), [0.0, -0.5, 0.2], "zh_grid"),  # not increasing
        (np.ones((N_BINS, 2)), [-1.0, 0.0, 0.2], "bin_light must have shape"),
        (np.ones((N_BINS - 1, 3)), [-1.0, 0.0, 0.2], "age bins"),
        (np.zeros((N_BINS, 3)), [-1.0, 0.0, 0.2], "> 0"),
    ],
)
def test_a_bad_light_table_is_refused(table, grid, match):
    with pytest.raises(ValueError, match=match):
        metrics.check_light_table(table, grid, n_bins=N_BINS)


# --------------------------------------------------------------------------------------- evaluation
def _truth_with_means(truth, table, grid, offset=0.0):
    """The truth plus per-object means as a synthetic set stores them (here: the binned ones + offset)."""
    means = metrics.mean_quantities(truth["sfh"], truth["zh"], AGE_BINS_YR, table, grid)
    return {**truth, **{key: value + offset for key, value in means.items()}}


def test_evaluation_reports_bin_and_exact_levels_and_says_what_it_left_out():
    import json

    pred, truth = _gaussian_predictions(n=600)
    table, grid = _light_table()
    full = _truth_with_means(truth, table, grid, offset=0.05)  # "exact" truths 0.05 above the bins
    full["mw_log_age_exact"] = full.pop("mw_log_age") + 0.02
    ev = metrics.evaluate_predictions(pred, full, AGE_BINS_YR, bin_light=table, zh_grid=grid)
    json.dumps(ev, allow_nan=False)  # plain JSON
    assert ev["notes"] == [] and ev["exact"]["truth"]["mw_log_age"] == "mw_log_age_exact"
    for name in metrics.MEAN_QUANTITIES:
        binned, exact = ev["mean_quantities"][name], ev["exact"]["mean_quantities"][name]
        shift = 0.07 if name == "mw_log_age" else 0.05
        assert exact["bias"] == pytest.approx(binned["bias"] - shift, abs=1e-9)
        assert sum(g["n"] for g in ev["exact"]["by_true_zh"][name]) == 600
    # an older set: no light table, no mw_log_age_exact, no lw truths
    old = {key: full[key] for key in ("sfh", "zh", "mw_zh")} | {"mw_log_age": full["mw_log_age_exact"]}
    ev_old = metrics.evaluate_predictions(pred, old, AGE_BINS_YR)
    assert (
        set(ev_old["mean_quantities"]) == set(ev_old["exact"]["mean_quantities"]) == {"mw_log_age", "mw_zh"}
    )
    assert ev_old["exact"]["truth"]["mw_log_age"] == "mw_log_age"
    notes = " | ".join(ev_old["notes"])
    assert "light-weighted quantities skipped" in notes and "no mw_log_age_exact" in notes
    assert "exact lw_log_age skipped" in notes
    table_text = metrics.mean_quantities_table({"old": ev_old}, level="exact")
    assert table_text.splitlines()[1].split()[-2:] == ["n/a", "n/a"]  # lw_log_age, lw_zh


def test_bias_by_true_zh_shows_a_pull_towards_the_middle_and_young_objects_are_apart():
    rng = np.random.default_rng(12)
    n = 3000
    sfh = rng.dirichlet(0.3 * np.ones(N_BINS), n)
    zh = np.repeat(rng.uniform(-1.7, 0.2, (n, 1)), N_BINS, axis=1)
    pulled = 0.5 * zh + 0.5 * (-0.75)  # half-way to the middle of the prior
    pred = {"sfh": sfh, "zh": pulled}
    ev = metrics.evaluate_predictions(pred, {"sfh": sfh, "zh": zh}, AGE_BINS_YR)
    bias = metrics.group_statistic(ev["by_true_zh"]["mw_zh"], "bias")  # (7,) for DEFAULT_ZH_BINS
    centres = 0.5 * (np.array(metrics.DEFAULT_ZH_BINS[:-1]) + np.array(metrics.DEFAULT_ZH_BINS[1:]))
    filled = np.isfinite(bias)
    assert filled.sum() >= 5 and np.all(np.diff(bias[filled]) < 0)  # falls with true [M/H]
    assert bias[filled][0] > 0.3 and bias[filled][-1] < -0.2
    np.testing.assert_allclose(bias[filled][1:-1], -0.5 * (centres[filled][1:-1] + 0.75), atol=0.03)
    # the young objects: those whose true mass-weighted age is below 100 Myr, and only those
    young = metrics.mean_log_age(sfh, AGE_BINS_YR) < 8.0
    assert 0 < young.sum() < n and ev["young"]["mw_zh"]["n"] == young.sum()
    assert ev["young"]["max_age_yr"] == metrics.YOUNG_AGE_YR


# ------------------------------------------------------------------------------------------- S/N bins
def test_snr_bin_centres_are_geometric_and_open_ends_sit_beyond_the_finite_edge():
    centres = metrics.snr_bin_centres(metrics.DEFAULT_SNR_BINS)  # (0, 5, 10, 20, 50, 100, inf)
    np.testing.assert_allclose(centres[1:-1], np.sqrt([5 * 10, 10 * 20, 20 * 50, 50 * 100]))
    assert centres[0] == pytest.approx(5 / metrics.OPEN_END_FACTOR)
    assert centres[-1] == pytest.approx(100 * metrics.OPEN_END_FACTOR)
    assert np.all(np.diff(centres) > 0)


def test_snr_bin_centres_read_the_edges_as_the_json_output_writes_them():
    # evaluate_predictions turns 0 into 0.0 and inf into None on its way to JSON
    as_json = [0.0, 5.0, 10.0, 20.0, 50.0, 100.0, None]
    np.testing.assert_allclose(metrics.snr_bin_centres(as_json), metrics.snr_bin_centres())


@pytest.mark.parametrize("edges", [(5.0,), (10.0, 5.0, 20.0), (0.0, np.inf)])
def test_snr_bin_centres_refuse_edges_that_are_not_bins(edges):
    with pytest.raises(ValueError, match="snr_bins"):
        metrics.snr_bin_centres(edges)


# -------------------------------------------------------------------------------- cumulative errors
def test_cumulative_error_is_zero_for_the_truth_and_counts_a_one_bin_shift_once():
    sfh = np.eye(N_BINS)[[2, 5]]
    assert np.all(metrics.cumulative_sfh_mae(np.cumsum(sfh, axis=1), sfh) == 0)
    older = np.eye(N_BINS)[[3, 6]]  # all the mass one bin too old: the cumulative is off by 1 in one bin
    np.testing.assert_allclose(metrics.cumulative_sfh_mae(np.cumsum(older, axis=1), sfh), 1 / (N_BINS - 1))


def test_cumulative_error_agrees_with_the_per_bin_errors():
    rng = np.random.default_rng(7)
    sfh_true, sfh_pred = rng.dirichlet(np.ones(N_BINS), (2, 500))
    per_object = metrics.cumulative_sfh_mae(np.cumsum(sfh_pred, axis=1), sfh_true)
    per_bin = metrics.sfh_bin_errors(sfh_pred, sfh_true)["cum_mae"]
    assert per_object.mean() == pytest.approx(per_bin[:-1].mean(), rel=1e-12)


def test_cumulative_error_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="sfh_cum_pred"):
        metrics.cumulative_sfh_mae(np.zeros((3, N_BINS)), np.zeros((3, N_BINS - 1)))


# ------------------------------------------------------------------------------------------ coverage
def test_gaussian_coverage_at_one_and_two_sigma():
    np.testing.assert_allclose(metrics.gaussian_coverage([1.0, 2.0]), [0.682689, 0.954500], atol=1e-6)


def test_calibrated_uncertainties_follow_the_gaussian_curve_and_overconfident_ones_fall_below():
    k = np.linspace(0.2, 3.0, 15)
    pred, truth = _gaussian_predictions()
    curves = metrics.uncertainty_coverage_curves(pred, truth, k)
    assert set(curves) == {"sfh_cum", "zh", "zh_mass_weighted"}
    for curve in curves.values():
        np.testing.assert_allclose(curve, metrics.gaussian_coverage(k), atol=0.015)
    # errors twice the predicted sigma: k sigma covers what k/2 sigma of a Gaussian covers
    pred2, truth2 = _gaussian_predictions(sigma_scale=2.0)
    curve = metrics.uncertainty_coverage_curves(pred2, truth2, k)["zh"]
    np.testing.assert_allclose(curve, metrics.gaussian_coverage(k / 2), atol=0.015)


def test_per_bin_coverage_is_weighted_like_the_overall_one():
    true = np.zeros((4, 2))
    pred = np.array([[0.5, 0.5], [0.5, 0.5], [2.0, 2.0], [2.0, 2.0]])  # two inside 1 sigma, two outside
    weights = np.array([[3.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    cov = metrics.coverage(pred, np.ones((4, 2)), true, n_sigma=(1.0,), weights=weights)["1sigma"]
    assert cov["all"] == 1.0 and cov["per_bin"][0] == 1.0 and np.isnan(cov["per_bin"][1])  # no weight
    plain = metrics.coverage(pred, np.ones((4, 2)), true, n_sigma=(1.0,))["1sigma"]
    np.testing.assert_allclose(plain["per_bin"], [0.5, 0.5])


def test_coverage_curves_match_the_coverage_of_evaluate_predictions():
    pred, truth = _gaussian_predictions(n=500, sigma_scale=1.3)
    curves = metrics.uncertainty_coverage_curves(pred, truth, [1.0, 2.0])
    cov = metrics.evaluate_predictions(pred, truth, AGE_BINS_YR)["coverage"]
    for name, curve in curves.items():
        assert curve[0] == pytest.approx(cov[name]["1sigma"]["all"], rel=1e-12)
        assert curve[1] == pytest.approx(cov[name]["2sigma"]["all"], rel=1e-12)


def test_coverage_curve_ignores_elements_without_weight():
    true = np.zeros((100, 2))
    pred = np.column_stack([np.full(100, 0.5), np.full(100, 50.0)])  # the second bin is wildly off
    sigma = np.ones((100, 2))
    weights = np.column_stack([np.ones(100), np.zeros(100)])
    np.testing.assert_allclose(metrics.coverage_curve(pred, sigma, true, [0.4, 0.6]), [0.0, 0.5])
    np.testing.assert_allclose(metrics.coverage_curve(pred, sigma, true, [0.4, 0.6], weights), [0.0, 1.0])
    with pytest.raises(ValueError, match="weights"):
        metrics.coverage_curve(pred, sigma, true, [1.0], np.zeros((100, 2)))


# --------------------------------------------------------------------------- groups, picks, learning
def test_group_statistic_gives_nan_for_empty_groups():
    groups = metrics.grouped_stats([1.0, 1.2, 3.0], [1.0, 1.0, 2.0], groups=[0, 0, 2], n_groups=3)
    mae = metrics.group_statistic(groups, "mae")
    np.testing.assert_allclose(mae[[0, 2]], [0.1, 1.0])
    assert np.isnan(mae[1])
    n = metrics.group_statistic(groups, "n")
    np.testing.assert_array_equal(n, [2, 0, 1])


def test_first_dominated_by_picks_the_first_object_of_each_bin_and_skips_empty_bins():
    sfh = np.eye(N_BINS)[[4, 1, 4, 7, 1]] * 0.6 + 0.4 / N_BINS
    assert metrics.first_dominated_by(sfh, bins=(1, 4, 7)) == [1, 0, 3]
    assert metrics.first_dominated_by(sfh, bins=(7, 2, 1)) == [3, 1]


def test_learning_curve_sorts_by_size_and_skips_models_not_evaluated():
    def fake(nmad):
        return {"mean_quantities": {"mw_log_age": {"nmad": nmad}}}

    by_model = {"v2": fake(0.1), "v2_n200": fake(0.4), "v2_n2000": fake(None)}
    n, value = metrics.learning_curve(by_model, {"v2_n2000": 2000, "v2": 20000, "v2_n200": 200, "v2_n50": 50})
    np.testing.assert_array_equal(n, [200, 2000, 20000])
    np.testing.assert_allclose(value, [0.4, np.nan, 0.1])


def test_mean_quantities_table_has_one_row_per_model_with_bias_and_scatter():
    pred, truth = _gaussian_predictions(n=300)
    ev = metrics.evaluate_predictions(pred, truth, AGE_BINS_YR)
    table = metrics.mean_quantities_table({"v2": ev, "v2_spectra_only": ev})
    lines = table.splitlines()
    assert len(lines) == 3 and lines[0].split() == ["model", *metrics.MEAN_QUANTITIES]
    q = ev["mean_quantities"]["mw_zh"]
    assert f"{q['median_bias']:+.3f} / {q['nmad']:.3f}" in lines[1]
    assert lines[2].startswith("v2_spectra_only")


# ------------------------------------------------------------------------------------------ plotting
def test_scatter_by_group_draws_each_model_at_the_snr_and_age_bin_centres():
    from sfh_ml.plotting import plot_scatter_by_group

    pred, truth = _gaussian_predictions(n=600)
    snr = np.random.default_rng(8).uniform(3.0, 200.0, 600)
    ev = metrics.evaluate_predictions(pred, truth, AGE_BINS_YR, snr=snr)
    ax_snr, ax_age = plot_scatter_by_group({"a": ev, "b": ev}, quantity="mw_zh")
    assert [line.get_label() for line in ax_snr.lines] == ["a", "b"]
    x, y = ax_snr.lines[0].get_data()
    np.testing.assert_allclose(x, metrics.snr_bin_centres())
    np.testing.assert_allclose(y, metrics.group_statistic(ev["by_snr"]["mw_zh"], "nmad"))
    np.testing.assert_allclose(ax_age.lines[0].get_xdata(), metrics.bin_centres_yr(AGE_BINS_YR))


def test_validation_curves_skip_runs_without_the_key():
    from sfh_ml.plotting import plot_validation_curves

    histories = {"v2": [{"val_sfh_cum_mae": 0.2}, {"val_sfh_cum_mae": 0.1}], "old": [{"loss": 1.0}]}
    ax = plot_validation_curves(histories, "val_sfh_cum_mae")
    assert [line.get_label() for line in ax.lines] == ["v2"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.2, 0.1])


def test_learning_curve_plot_draws_one_line_per_quantity():
    from sfh_ml.plotting import plot_learning_curve

    ax = plot_learning_curve(np.array([200, 2000]), {"age": np.array([0.3, 0.2]), "zh": np.array([0.2, 0.1])})
    assert len(ax.lines) == 2 and ax.get_xscale() == "log"
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.2, 0.1])


def test_one_to_one_writes_the_median_bias_and_nmad_of_scatter_stats():
    from sfh_ml.plotting import plot_one_to_one

    rng = np.random.default_rng(9)
    true = rng.uniform(7, 10, 2000)
    pred = true + 0.05 + 0.1 * rng.standard_normal(2000)
    ax = plot_one_to_one(true, pred, "log age")
    stats = metrics.scatter_stats(pred, true)
    assert ax.texts[0].get_text() == f"bias {stats['median_bias']:+.3f}\nscatter {stats['nmad']:.3f}"


def test_spectra_by_age_are_divided_by_their_median_and_offset_by_one():
    from sfh_ml.plotting import plot_spectra_by_age

    rng = np.random.default_rng(10)
    wave = np.linspace(4750, 9350, 50)
    spectra = rng.uniform(1, 3, (12, 50)) * 1e-3
    data = {"wave_aa": wave, "spectra": spectra, "mw_log_age": rng.uniform(7, 10, 12)}
    ax = plot_spectra_by_age(data, n_show=4)
    assert len(ax.lines) == 4
    for k, line in enumerate(ax.lines):
        assert np.median(line.get_ydata()) == pytest.approx(1.0 + k)  # the median: lines do not rescale
    ages = [float(line.get_label().split()[-1]) for line in ax.lines]
    assert ages == sorted(ages)


def test_binned_histories_show_the_mass_fractions_in_each_bin():
    from sfh_ml.plotting import plot_binned_histories
    from sfh_ml.synthesis import SkewNormalBurst

    batch = SkewNormalBurst().sample(4, np.random.default_rng(11))
    ax_sfh, ax_zh = plot_binned_histories(batch, AGE_BINS_YR, n_show=3)
    assert len(ax_sfh.lines) == 3 and len(ax_zh.lines) == 3
    np.testing.assert_allclose(ax_sfh.lines[1].get_ydata(), batch.mass_fractions(AGE_BINS_YR)[1])
    np.testing.assert_allclose(ax_sfh.lines[1].get_xdata(), metrics.bin_centres_yr(AGE_BINS_YR))
