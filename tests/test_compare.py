"""The comparison of pPXF with the networks (sfh_ml.fitting.compare) and chapter 5's figures: the
rows are turned into the right arrays, the tables round-trip, and the figures draw what they are given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sfh_ml.fitting import compare  # noqa: E402
from sfh_ml.plotting import (  # noqa: E402
    plot_accuracy_vs_snr,
    plot_method_histories,
    plot_per_bin_by_method,
    plot_regul_choice,
    plot_speed,
    plot_valley,
    plot_young_old,
)

METHODS = ("pPXF", "pPXF + HST", "network (shipped)")
SNRS = ("10", "50")
N_BINS = 3
AGE_BINS_YR = np.array([1e6, 1e8, 1e9, 1.4e10])


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _value(method, snr, sample, quantity, stat):
    """A distinct, reproducible number for every cell of the fake table."""
    m, s = METHODS.index(method), SNRS.index(snr)
    return 0.01 * (1 + m) + 0.1 * s + 0.001 * len(sample) + 0.0001 * len(quantity) + 0.00001 * len(stat)


def _rows(samples=("all", "young", "old"), skip=()):
    rows = []
    for method in METHODS:
        for snr in SNRS:
            for sample in samples:
                if (method, snr, sample) in skip:
                    continue
                cells = [(q, "exact") for q in ("mw_log_age", "mw_zh", "lw_log_age", "lw_zh")]
                cells += [("cum_sfh_mae", "object")]
                cells += [(f"sfh_cum_{k:02d}", "bin") for k in range(N_BINS)]
                cells += [(f"sfh_bin_{k:02d}", "bin") for k in range(N_BINS)]
                for quantity, level in cells:
                    row = {c: None for c in compare.COLUMNS}
                    row.update(method=method, snr=snr, sample=sample, quantity=quantity, level=level, n=4)
                    row["n_failed"] = 0
                    for stat in ("bias", "nmad", "std", "mae"):
                        row[stat] = _value(method, snr, sample, quantity, stat)
                    rows.append(row)
    speed = {("pPXF", snr, compare.SPEED_ONE_THREAD): 1.5 for snr in SNRS}
    speed.update({("pPXF", snr, "wall, 2 workers"): 0.8 for snr in SNRS})
    speed[("network (shipped)", "all", compare.SPEED_PREDICT)] = 2e-3
    return rows + compare.speed_rows(speed), speed


# ------------------------------------------------------------------------------ rows -> arrays, tables
def test_score_series_give_each_method_its_values_in_snr_order_without_the_speed_rows():
    rows, _ = _rows()
    series = compare.score_series(rows[::-1], "mw_zh", "nmad")  # reversed: the order must be restored
    assert set(series) == set(METHODS)
    snr, value = series["pPXF + HST"]
    np.testing.assert_array_equal(snr, [10.0, 50.0])
    np.testing.assert_allclose(value, [_value("pPXF + HST", s, "all", "mw_zh", "nmad") for s in SNRS])


def test_per_bin_errors_are_ordered_from_the_youngest_bin_and_pick_cumulative_or_not():
    rows, _ = _rows()
    cum = compare.per_bin_errors(rows, 50, cumulative=True)
    frac = compare.per_bin_errors(rows, 50.0, cumulative=False, stat="bias")
    assert set(cum) == set(METHODS) and all(v.shape == (N_BINS,) for v in cum.values())
    assert cum["pPXF"][0] == pytest.approx(_value("pPXF", "50", "all", "sfh_cum_00", "mae"))
    assert frac["pPXF"][0] == pytest.approx(_value("pPXF", "50", "all", "sfh_bin_00", "bias"))


def test_sample_stats_are_nan_for_a_sample_without_objects():
    rows, _ = _rows(skip={("pPXF", "10", "young")})
    stats = compare.sample_stats(rows, 10, "mw_log_age", "nmad")
    assert np.isnan(stats["pPXF"][1]) and np.isfinite(stats["pPXF"][[0, 2]]).all()
    assert stats["network (shipped)"][2] == pytest.approx(
        _value("network (shipped)", "10", "old", "mw_log_age", "nmad")
    )


def test_speed_summary_averages_over_snr_and_reads_the_workers():
    _, speed = _rows()
    summary = compare.speed_summary(speed)
    assert summary["pPXF"] == {"one_thread": 1.5, "wall": 0.8, "workers": 2}
    assert summary["network (shipped)"] == {"one_thread": None, "wall": 2e-3, "workers": None}


def test_cube_hours_scale_with_spectra_and_divide_by_cores():
    assert compare.cube_hours(1.8, 40_000, 2) == pytest.approx(10.0)
    np.testing.assert_allclose(compare.cube_hours([3.6, 0.36], 1000), [1.0, 0.1])


def test_tables_are_written_and_the_csv_reads_back_as_numbers(tmp_path):
    rows, speed = _rows()
    csv_path, md_path = compare.write_tables(tmp_path, rows, speed, n_fit=4, regul=3.0)
    back = compare.read_csv_rows(csv_path)
    assert len(back) == len(rows)
    assert back[0]["bias"] == pytest.approx(rows[0]["bias"]) and back[0]["n"] == 4
    assert [r["value"] for r in back if r["quantity"] == "seconds_per_spectrum"][-1] == pytest.approx(2e-3)
    text = md_path.read_text()
    assert "regul 3" in text and "| 10 | pPXF + HST | 4 |" in text and "## Speed" in text


# ----------------------------------------------------------------------------------------- figures
def test_accuracy_vs_snr_draws_a_line_per_method_with_the_table_values():
    rows, _ = _rows()
    axs = plot_accuracy_vs_snr(rows)
    assert len(axs) == 5
    for ax, (quantity, stat) in zip(axs, [("mw_log_age", "bias"), ("mw_log_age", "nmad"), ("mw_zh", "bias"),
                                          ("mw_zh", "nmad"), ("cum_sfh_mae", "bias")]):  # fmt: skip
        lines = [ln for ln in ax.get_lines() if ln.get_label() in METHODS]
        assert [ln.get_label() for ln in lines] == list(METHODS)
        expected = [_value("network (shipped)", s, "all", quantity, stat) for s in SNRS]
        np.testing.assert_allclose(lines[-1].get_ydata(), expected)
    assert "cumulative-mass" in axs[-1].get_ylabel() and "NMAD" in axs[1].get_ylabel()


def test_per_bin_figure_has_one_panel_per_snr_and_one_line_per_method():
    rows, _ = _rows()
    axs = plot_per_bin_by_method(rows, AGE_BINS_YR, [10, 50])
    assert [ax.get_title() for ax in axs] == ["S/N = 10", "S/N = 50"]
    lines = axs[1].get_lines()
    assert len(lines) == len(METHODS)
    np.testing.assert_allclose(lines[0].get_ydata()[2], _value("pPXF", "50", "all", "sfh_cum_02", "mae"))


def test_young_old_bars_are_grouped_by_sample_with_a_bar_per_method():
    rows, _ = _rows(skip={("pPXF", "50", "young")})
    axs = plot_young_old(rows, 50)
    heights = np.array([p.get_height() for p in axs[0].patches])
    assert heights.size == 3 * len(METHODS)  # 3 samples x 3 methods
    assert [t.get_text() for t in axs[0].get_xticklabels()] == ["all", "young", "old"]
    assert np.isnan(heights[1])  # pPXF, young: no objects
    assert heights[2] == pytest.approx(_value("pPXF", "50", "old", "mw_log_age", "nmad"))


def test_speed_bars_and_cube_hours_follow_seconds_and_cores():
    seconds = {"pPXF": 1.8, "network": 0.0018}
    axs = plot_speed(seconds, workers={"pPXF": 16}, n_bins=40_000, n_spaxels=200_000)
    np.testing.assert_allclose([p.get_height() for p in axs[0].patches], [1.8, 0.0018])
    hours = [p.get_height() for p in axs[1].patches]  # bins (pPXF, network), then spaxels
    np.testing.assert_allclose(hours, [1.8 * 4e4 / 16 / 3600, 0.0018 * 4e4 / 3600, 1.8 * 2e5 / 16 / 3600,
                                       0.0018 * 2e5 / 3600])  # fmt: skip
    labels = [t.get_text() for t in axs[1].get_xticklabels()]
    assert "16 cores" in labels[0] and "as measured" in labels[1]


def test_valley_bars_compare_the_libraries_for_each_method():
    rows, _ = _rows()
    shifted = [{**r, "bias": None if r["bias"] is None else r["bias"] + 1.0} for r in rows]
    axs = plot_valley({"E-MILES": rows, "BC03": shifted}, 50)
    patches = axs[0].patches  # mw_log_age bias: E-MILES bars of every method, then BC03 bars
    assert len(patches) == 2 * len(METHODS)
    h = np.array([p.get_height() for p in patches])
    np.testing.assert_allclose(h[len(METHODS) :] - h[: len(METHODS)], 1.0)
    assert [t.get_text() for t in axs[0].get_legend().get_texts()] == ["E-MILES", "BC03"]


def test_method_histories_draw_the_truth_and_each_method():
    true_sfh = np.array([0.2, 0.3, 0.5])
    preds = {
        "pPXF": {"sfh": np.array([0.1, 0.4, 0.5]), "zh": np.array([0.0, -0.5, -1.0])},
        "network": {"sfh_cum": np.array([0.2, 0.6, 1.0]), "zh": np.zeros(3), "zh_sigma": np.full(3, 0.1)},
    }
    ax1, ax2 = plot_method_histories(AGE_BINS_YR, true_sfh, np.full(3, -0.3), preds)
    assert [ln.get_label() for ln in ax1.get_lines()] == ["truth", "pPXF", "network"]
    np.testing.assert_allclose(ax1.get_lines()[0].get_ydata(), [1.0, 0.8, 0.5])  # formed before each edge
    np.testing.assert_allclose(ax1.get_lines()[1].get_ydata(), [1.0, 0.9, 0.5])
    np.testing.assert_allclose(ax2.get_lines()[1].get_ydata(), [0.0, -0.5, -1.0])
    assert len(ax2.collections) == 1  # the network's [M/H] band only


def test_regul_choice_draws_each_object_the_threshold_and_the_choice():
    grid = np.array([1.0, 3.0, 10.0])
    delta = np.array([[1.0, 20.0, 300.0], [2.0, 30.0, 400.0]])
    ax = plot_regul_choice(grid, delta, threshold=80.0, chosen=3.0)
    lines = ax.get_lines()
    assert len(lines) == 4  # two objects, threshold, choice
    np.testing.assert_allclose(lines[1].get_ydata(), delta[1])
    assert lines[2].get_ydata()[0] == 80.0 and lines[3].get_xdata()[0] == 3.0


def test_delta_chi2_grows_with_regul_and_the_choice_is_the_last_value_within_sqrt_2n(tmp_path):
    from sfh_ml.fitting import regul_by_delta_chi2
    from sfh_ml.synthesis import DatasetConfig, generate

    path = generate(
        DatasetConfig(n=1, seed=11, snr=(50.0, 50.0), chunk_size=1), tmp_path / "s.h5", progress=False
    )
    res = regul_by_delta_chi2(path, slice(0, 1), grid=(0.1, 1e5))
    delta = res["delta_chi2"][0]
    assert abs(delta[0]) < res["threshold"]  # almost no smoothing: chi^2 as unregularised
    assert delta[1] > res["threshold"]  # a flat history cannot fit a real one at S/N 50
    assert res["chosen"][0] == 0.1
    assert 0.5 < res["chi2_unregularised"][0] < 2.0  # the file's noise is the true noise
