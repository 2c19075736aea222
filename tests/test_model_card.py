"""The model card (sfh_ml.network.card): every table holds the numbers of the results it is rendered from."""

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from sfh_ml.network.card import card_summary, render_model_card


def stats(nmad, std, bias):
    return {"nmad": nmad, "std": std, "bias": bias, "median_bias": bias / 2, "n": 1000}


RESULTS = {
    "name": "v2",
    "created": "2026-05-20",
    "model": {
        "architecture": "v2",
        "n_members": 3,
        "n_parameters": 271234,
        "size_mb": 3.61,
        "files": ["v2_m0.keras", "v2_m1.keras", "v2_m2.keras"],
        "n_wave": 3681,
        "wave_range_aa": [4749.89, 9349.89],
        "filters": ["HST_WFC3_F275W", "HST_WFC3_F336W", "HST_WFC3_F438W", "HST_WFC3_F555W", "HST_WFC3_F814W"],
        "age_bins_yr": [1e6, 3e6, 6e6, 1e7, 1.41e10],
        "zh_range": [-1.71, 0.22],
        "calibrated": True,
        "ood_thresholds": [[9.3, 0.0201], [46.4, 0.0053]],
    },
    "training": {
        "n_train": 200000,
        "dataset_config": {"n": 200000, "seed": 1, "snr": [10.0, 100.0], "sigma_kms": [150.0, 350.0]},
        "seed": 42,
        "epochs": 30,
        "batch_size": 256,
        "learning_rate": 0.001,
        "epochs_run": [30, 28, 30],
        "best_epoch": [29, 22, 27],
        "backend": "jax",
        "device": "gpu:0 (NVIDIA H200); 16 CPU cores",
        "seconds": 5400.0,
        "calibration": {"n": 20000, "seed": 2, "snr": [10.0, 100.0]},
        "test_sets": [{"label": "S/N 50", "n": 10000, "seed": 5, "snr": [50.0, 50.0]}],
    },
    "generator": {
        "sfh_ml_version": "0.2.0",
        "schema_version": 3,
        "library_version": 2,
        "git_commit": "abc1234",
    },
    "domain": {
        "age_range_yr": [1e6, 1.41254e10],
        "wave_range_aa": [4749.89, 9349.89],
        "sigma_kms": [150.0, 350.0],
        "snr": [10.0, 100.0],
        "zh_range": [-1.71, 0.22],
        "seam_age_yr": 6.31e7,
        "tau_bc": [0.0, 2.0],
        "tau_ism": [0.0, 1.0],
        "birth_cloud_age_yr": 1e7,
    },
    "metrics": [
        {
            "label": "S/N 10",
            "snr": [10.0, 10.0],
            "n_objects": 10000,
            "bin": {"mw_log_age": stats(0.123, 0.234, -0.012), "mw_zh": stats(0.081, 0.15, 0.004)},
            "exact": {"mw_log_age": stats(0.145, 0.262, -0.031), "mw_zh": stats(0.09, 0.16, 0.006)},
        },
        {
            "label": "S/N 50",
            "snr": [50.0, 50.0],
            "n_objects": 10000,
            "bin": {
                "mw_log_age": stats(0.047, 0.118, 0.003),
                "lw_log_age": stats(0.052, 0.101, -0.008),
                "mw_zh": stats(0.028, 0.061, 0.001),
                "lw_zh": stats(0.033, 0.07, -0.002),
            },
            "exact": {"mw_log_age": stats(0.061, 0.131, 0.021)},
        },
    ],
    "zh_prior": {
        "label": "S/N 50",
        "zh_bins": [-2.0, -1.25, -1.0, -0.75, -0.5, -0.25, 0.0, 0.5],
        "rows": [
            {
                "zh_range": [-2.0, -1.25],
                "n": 1234,
                "mw_zh": {"bias": 0.152, "nmad": 0.081},
                "mw_log_age": {"bias": -0.044, "nmad": 0.071},
            },
            {
                "zh_range": [-0.25, 0.0],
                "n": 2011,
                "mw_zh": {"bias": 0.004, "nmad": 0.022},
                "mw_log_age": {"bias": None, "nmad": 0.039},
            },
            {
                "zh_range": [0.0, 0.5],
                "n": 987,
                "mw_zh": {"bias": -0.093, "nmad": 0.047},
                "mw_log_age": {"bias": 0.018, "nmad": 0.052},
            },
        ],
    },
    "coverage": [
        {
            "label": "S/N 10-100",
            "before": {
                "sfh_cum": {"1sigma": 0.881, "2sigma": 0.981},
                "zh": {"1sigma": 0.712, "2sigma": 0.93},
            },
            "after": {
                "sfh_cum": {"1sigma": 0.684, "2sigma": 0.951},
                "zh": {"1sigma": 0.679, "2sigma": 0.948},
            },
        }
    ],
    "ablation": {
        "young_definition": "true mass-weighted age (from the bins) below 100 Myr",
        "statistic": "NMAD (dex), bin level",
        "rows": [
            {
                "snr": 10.0,
                "sample": "all",
                "n_objects": 10000,
                "with_photometry": {"mw_log_age": 0.131, "mw_zh": 0.085},
                "without_photometry": {"mw_log_age": 0.158, "mw_zh": 0.088},
            },
            {
                "snr": 10.0,
                "sample": "young",
                "n_objects": 412,
                "with_photometry": {"mw_log_age": 0.221, "mw_zh": 0.19},
                "without_photometry": {"mw_log_age": 0.402, "mw_zh": 0.21},
            },
        ],
    },
    "valley": {
        "snr": 50.0,
        "n_objects": 1000,
        "seed": 7100,
        "statistic": "bin level",
        "note": "The training set mixed E-MILES and BC03 stars: the bc03 world is partly seen.",
        "rows": [
            {
                "world": "own",
                "description": "the training population (held out by its seed)",
                "mw_log_age": {"bias": 0.004, "nmad": 0.051, "n": 1000},
                "mw_log_age_young": {"bias": -0.012, "nmad": 0.2, "n": 87},
                "mw_zh": {"bias": 0.002, "nmad": 0.031, "n": 1000},
                "flagged": 0.094,
                "hit_rate": 0.5,
            },
            {
                "world": "bc03",
                "description": "BC03-MILES stars at all ages",
                "mw_log_age": {"bias": -0.183, "nmad": 0.142, "n": 1000},
                "mw_log_age_young": None,
                "mw_zh": {"bias": 0.121, "nmad": 0.088, "n": 1000},
                "flagged": 0.412,
                "hit_rate": 0.737,
                "n_lost": 312,
            },
            {
                "world": "smc",
                "description": "SMC attenuation of the diffuse ISM",
                "mw_log_age": {"bias": 0.021, "nmad": 0.066, "n": 1000},
                "mw_log_age_young": {"bias": 0.254, "nmad": 0.3, "n": 90},
                "mw_zh": {"bias": -0.011, "nmad": 0.034, "n": 1000},
                "flagged": None,
                "hit_rate": None,
            },
        ],
    },
    "speed": {
        "batch_size": 1024,
        "backend": "tensorflow",
        "device": "cpu:0; 2 CPU cores",
        "rows": [
            {"what": "one network, Keras model.predict", "spectra_per_s": 5850.4},
            {"what": "sfh_ml.predict, all 3 members", "spectra_per_s": 1890.2},
        ],
    },
    "limitations": ["A limitation the release found."],
    "reproduce": "KERAS_BACKEND=jax python benchmarks/release_model.py --out OUT --members 3",
}


def table_after(text, heading):
    """The rows (lists of cells) of the first Markdown table after the line ``heading``."""
    lines = text.splitlines()
    start = lines.index(heading)
    rows, inside = [], False
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            inside = True
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif inside:
            break
    return rows[0], rows[2:]  # header, body (the separator row dropped)


def row_of(body, *first):
    matches = [row for row in body if row[: len(first)] == list(first)]
    assert len(matches) == 1, f"no single row starting {first} in {body}"
    return matches[0]


def test_the_metrics_table_holds_bin_and_exact_figures_per_set_and_quantity():
    card = render_model_card(RESULTS)
    header, body = table_after(card, "## Accuracy on held-out synthetic spectra")
    assert header[2:] == [f"{s} ({lvl})" for lvl in ("bins", "exact") for s in ("NMAD", "std", "bias")]
    row = row_of(body, "S/N 50", "log age, mass-weighted")
    assert [float(c) for c in row[2:]] == [0.047, 0.118, 0.003, 0.061, 0.131, 0.021]
    assert row[4] == "+0.003"  # biases carry their sign
    row = row_of(body, "S/N 50", "log age, light-weighted")
    assert row[2:5] == ["0.052", "0.101", "-0.008"] and row[5:] == ["–", "–", "–"]  # no exact figure given
    assert [float(c) for c in row_of(body, "S/N 10", "[M/H], mass-weighted")[2:]] == [
        0.081,
        0.15,
        0.004,
        0.09,
        0.16,
        0.006,
    ]
    # a quantity given at neither level is left out rather than shown empty
    assert not [row for row in body if row[:2] == ["S/N 10", "[M/H], light-weighted"]]


def test_the_zh_prior_table_holds_the_biases_per_true_zh_bin_after_the_accuracy():
    card = render_model_card(RESULTS)
    heading = "## Is the network pulled toward its [M/H] prior?"
    accuracy, uncertainties = (card.index(h) for h in ("## Accuracy on held-out", "## Uncertainties"))
    assert accuracy < card.index(heading) < uncertainties
    header, body = table_after(card, heading)
    assert header == ["True [M/H] (mw)", "Objects", "[M/H] (mw) bias / NMAD", "log age (mw) bias / NMAD"]
    assert body == [
        ["-2.00 to -1.25", "1,234", "+0.152 / 0.081", "-0.044 / 0.071"],
        ["-0.25 to +0.00", "2,011", "+0.004 / 0.022", "– / 0.039"],  # a bias not measured
        ["+0.00 to +0.50", "987", "-0.093 / 0.047", "+0.018 / 0.052"],
    ]
    section = card.split(heading)[1].split("\n## ")[0]
    assert "S/N 50 test set" in section
    assert "positive [M/H] bias for metal-poor objects and a negative one for metal-rich" in section


@pytest.fixture(scope="module")
def release_model():
    """benchmarks/release_model.py (not a package), imported from its file."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "release_model.py"
    spec = importlib.util.spec_from_file_location("benchmarks_release_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_zh_prior_figures_take_the_non_empty_true_zh_bins_of_an_evaluation(release_model):
    from sfh_ml.network.metrics import evaluate_predictions

    bins = np.array([1e6, 1e7, 1e8, 1e9, 1e10])
    sfh = np.zeros((5, 4))
    sfh[:, 2] = 1.0  # all mass in one bin: the true mass-weighted [M/H] is that bin's
    zh_true = np.zeros((5, 4))
    zh_true[:3, 2], zh_true[3:, 2] = -1.5, 0.2  # three metal-poor objects, two metal-rich
    zh_pred = zh_true.copy()
    zh_pred[:3, 2] += [0.1, 0.2, 0.3]  # pulled up
    zh_pred[3:, 2] -= 0.1  # pulled down
    ev = evaluate_predictions({"sfh": sfh, "zh": zh_pred}, {"sfh": sfh, "zh": zh_true}, bins)
    figures = release_model.zh_prior_figures(ev, "S/N 50")
    assert figures["label"] == "S/N 50"
    assert figures["zh_bins"] == [-2.0, -1.25, -1.0, -0.75, -0.5, -0.25, 0.0, 0.5]
    assert [r["zh_range"] for r in figures["rows"]] == [[-2.0, -1.25], [0.0, 0.5]]  # empty bins left out
    poor, rich = figures["rows"]
    assert (poor["n"], rich["n"]) == (3, 2)
    assert poor["mw_zh"]["bias"] == pytest.approx(0.2) and rich["mw_zh"]["bias"] == pytest.approx(-0.1)
    assert poor["mw_zh"]["nmad"] == pytest.approx(0.1 * 1.4826)
    assert poor["mw_log_age"] == {"bias": 0.0, "nmad": 0.0}
    assert set(poor) == {"zh_range", "n", "mw_zh", "mw_log_age"}
    assert release_model.zh_prior_figures({}, "S/N 50") is None  # an evaluation without the table
    card = render_model_card({**RESULTS, "zh_prior": figures})
    _, body = table_after(card, "## Is the network pulled toward its [M/H] prior?")
    assert body[0][:3] == ["-2.00 to -1.25", "3", "+0.200 / 0.148"]


def test_the_coverage_table_holds_the_fractions_before_and_after_calibration():
    card = render_model_card(RESULTS)
    header, body = table_after(card, "## Uncertainties: coverage before and after calibration")
    assert header[2:] == ["within 1σ, before", "within 1σ, after", "within 2σ, before", "within 2σ, after"]
    assert row_of(body, "S/N 10-100", "cumulative SFH")[2:] == ["0.881", "0.684", "0.981", "0.951"]
    assert row_of(body, "S/N 10-100", "[M/H] per bin")[2:] == ["0.712", "0.679", "0.930", "0.948"]
    assert "a Gaussian has 0.683 and 0.954" in card


def test_the_ablation_table_holds_both_networks_for_all_and_young_objects():
    card = render_model_card(RESULTS)
    header, body = table_after(card, "## Does the photometry help? (ablation)")
    assert header == ["S/N", "Sample", "Objects", "Quantity", "with HST", "without HST"]
    assert row_of(body, "10", "young", "412", "log age, mass-weighted")[4:] == ["0.221", "0.402"]
    assert row_of(body, "10", "young", "412", "[M/H], mass-weighted")[4:] == ["0.190", "0.210"]
    assert row_of(body, "10", "all", "10,000", "log age, mass-weighted")[4:] == ["0.131", "0.158"]
    assert row_of(body, "10", "all", "10,000", "[M/H], mass-weighted")[4:] == ["0.085", "0.088"]
    assert len(body) == 4
    assert "below 100 Myr" in card


def test_the_valley_table_holds_each_test_world_after_the_ablation():
    card = render_model_card(RESULTS)
    heading = "## The synthetic valley: test worlds"
    assert card.index("## Does the photometry help?") < card.index(heading) < card.index("## Inference speed")
    header, body = table_after(card, heading)
    assert header == [
        "World",
        "What it changes",
        "Objects",
        "log age (mw) bias / NMAD",
        "young-dominated bias",
        "[M/H] (mw) bias / NMAD",
        "flagged",
        "hit rate",
    ]
    assert [row[0] for row in body] == ["own", "bc03", "smc"]
    assert row_of(body, "own")[1:] == [
        "the training population (held out by its seed)",
        "1,000",
        "+0.004 / 0.051",
        "-0.012 (n=87)",
        "+0.002 / 0.031",
        "0.09",
        "0.50",
    ]
    assert row_of(body, "bc03")[3:] == ["-0.183 / 0.142", "–", "+0.121 / 0.088", "0.41", "0.74 (n=312)"]
    assert row_of(body, "smc")[4:] == ["+0.254 (n=90)", "-0.011 / 0.034", "–", "–"]  # flag not measured
    section = card.split(heading)[1].split("\n## ")[0]
    assert "S/N 50, 1,000 objects per world, data seed 7100" in section
    assert "training population's own world" in section
    assert RESULTS["valley"]["note"] in section  # the domain-randomisation note is printed


def test_the_limitations_name_the_worst_test_world():
    limitations = render_model_card(RESULTS).split("## Known limitations")[1].split("## ")[0]
    assert "suffers most on *bc03* (bias -0.183 dex, NMAD 0.142 dex)" in limitations
    assert "flag marks 74% of its objects" in limitations
    results = copy.deepcopy(RESULTS)
    del results["valley"]
    assert "suffers most" not in render_model_card(results)


def test_model_training_generator_speed_limitations_and_command_are_stated():
    card = render_model_card(RESULTS)
    _, body = table_after(card, "## What the model is")
    assert row_of(body, "**Parameters**")[1] == "271,234 per member"
    assert row_of(body, "**Size**")[1] == "3.6 MB (all members)"
    thresholds = row_of(body, "**Out-of-distribution thresholds (residual fraction)**")[1]
    assert thresholds == "0.0201 at S/N 9, 0.0053 at S/N 46"
    _, body = table_after(card, "## Training")
    assert row_of(body, "**Seed (weights, split, augmentation)**")[1] == "42"
    assert row_of(body, "**Epochs run, per member**")[1] == "30, 28, 30"
    _, body = table_after(card, "## Generator")
    assert [row_of(body, f"**{k}**")[1] for k in ("sfh_ml version", "SSP library version")] == ["0.2.0", "2"]
    _, body = table_after(card, "## Inference speed")
    assert row_of(body, "sfh_ml.predict, all 3 members") == ["sfh_ml.predict, all 3 members", "1,890"]
    limitations = card.split("## Known limitations")[1].split("## ")[0]
    for fact in ("1 Myr to 14.1 Gyr", "63.1 Myr", "150-350 km/s", "4750-9350 Å", "Charlot & Fall", "valley"):
        assert fact in limitations, fact
    assert "- A limitation the release found." in limitations
    assert RESULTS["reproduce"] in card.split("## Reproducing this model")[1]


def test_the_summary_quotes_the_s_n_50_figures_and_ends_before_the_first_section():
    summary = card_summary(render_model_card(RESULTS))
    assert summary.startswith("# Model card: v2 (released 2026-05-20)")
    assert "a deep ensemble of 3 networks" in summary and "200,000 synthetic spectra" in summary
    assert "NMAD of 0.047 dex (standard deviation 0.118 dex)" in summary and "NMAD of 0.028 dex" in summary
    assert "##" not in summary


def test_sections_left_out_of_the_results_render_as_not_measured():
    results = copy.deepcopy(RESULTS)
    for key in ("ablation", "speed", "coverage", "domain", "limitations", "valley", "zh_prior"):
        del results[key]
    card = render_model_card(results)
    assert card.count("Not measured") == 7  # and the trust and leave-one-out sections, absent here too
    assert card.split("## The synthetic valley: test worlds")[1].split("## ")[0].strip() == "Not measured."
    assert card.split("## Is the network pulled toward its [M/H] prior?")[1].split("## ")[0].strip() == (
        "Not measured."
    )
    assert "valley" in card  # the limitation every card states


def test_a_missing_required_key_is_named():
    results = copy.deepcopy(RESULTS)
    del results["training"]["seed"]
    with pytest.raises(ValueError, match=r"results\['training'\] lack \['seed'\]"):
        render_model_card(results)
    with pytest.raises(ValueError, match="'generator'"):
        render_model_card({k: v for k, v in RESULTS.items() if k != "generator"})


def test_long_tables_are_folded_and_short_ones_are_not():
    from sfh_ml.network.card import FOLD_ROWS

    card = render_model_card(RESULTS)
    blocks = card.split("<details>")
    for block in blocks[1:]:  # every folded table is longer than FOLD_ROWS and closes its block
        inside, _, _ = block.partition("</details>")
        rows = [line for line in inside.splitlines() if line.startswith("| ")]
        assert len(rows) - 1 > FOLD_ROWS  # minus the header
        assert "<summary>The table (" in inside
    outside = "".join(b.partition("</details>")[2] for b in blocks[1:]) + blocks[0]
    tables, rows = [], 0
    for line in outside.splitlines() + [""]:
        if line.startswith("|"):
            rows += 1
        elif rows:
            tables.append(rows - 2)  # header and rule
            rows = 0
    assert tables and max(tables) <= FOLD_ROWS


def _trust_row(world, **kw):
    row = {"world": world, "wrong_fraction": 0.18, "hit_rate": 0.79, "false_alarm": 0.13, "auc": 0.93,
           "coverage_sfh_cum_1sigma": 0.69, "coverage_sfh_cum_2sigma": 0.95, "coverage_zh_1sigma": 0.67,
           "coverage_zh_2sigma": 0.94, "age_bias": -0.01, "age_nmad": 0.16}  # fmt: skip
    return {**row, **kw}


def test_the_training_curve_trust_and_leave_one_out_tables_hold_their_figures():
    results = copy.deepcopy(RESULTS)
    results["training"].update(schedule="plateau", best_epoch=[2, 1, 2], stopped=["no improvement"] * 3)
    curve = [(0.28, 1e-3), (0.2, 1e-3), (0.1875, 5e-4), (0.19, 5e-4)]
    results["training"]["history"] = [
        {
            "epoch": e,
            "point_error": 0.3 - 0.05 * e,
            "val_point_error": v,
            "val_loss": -3.0 - e,
            "learning_rate": r,
        }
        for e, (v, r) in enumerate(curve)
    ]
    rows = [_trust_row("own"), _trust_row("bursts_any_age", hit_rate=0.83, false_alarm=0.32)]
    results["trust"] = {"n_objects": 1500, "snr": [10.0, 100.0], "seed": 7400, "rows": rows}
    unseen = _trust_row("bc03", network="no-library (50k)", left_out=True, age_bias=-0.249)
    results["leave_out"] = {"rows": [unseen, _trust_row("own", network="no-library (50k)", left_out=False)]}
    card = render_model_card(results)
    header, body = table_after(card, "## How long it trained")
    assert header[0] == "Epoch" and len(body) == 4
    assert row_of(body, "**2** (shipped)")[1] == "0.1875" and row_of(body, "3")[4] == "0.0005"
    section = card.split("## How long it trained")[1].split("## ")[0]
    assert "halved after 2 epochs" in section and "no improvement" in section and "0.2800" in section
    _, body = table_after(card, "## How far to trust an answer: the trust score on every test world")
    assert row_of(body, "bursts_any_age")[1:5] == ["0.18", "0.83", "0.32", "0.93"]
    assert row_of(body, "own")[5:] == ["0.69 / 0.95", "0.67 / 0.94"]
    assert "1,500 objects per test world at S/N 10-100" in card
    _, body = table_after(card, "## Unseen shifts: leave one axis out")
    assert row_of(body, "no-library (50k)", "**bc03** (unseen)")[2] == "-0.249 / 0.160"
    assert row_of(body, "no-library (50k)", "own")[2] == "-0.010 / 0.160"
    assert "Not measured" not in card.split("## How far to trust")[1].split("## Inference speed")[0]
