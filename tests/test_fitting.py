"""The pPXF baseline recovers what the generator put in, maps weights as the truths, refuses bad input."""

import numpy as np
import pytest
from conftest import make_params

from sfh_ml.fitting import (
    DEFAULT_LOG_U,
    build_templates,
    emission_line_mask,
    fit_arrays,
    fit_file,
    fit_spectrum,
    ssp_histories,
    ssp_means,
    to_predictions,
)
from sfh_ml.network.metrics import evaluate_predictions, mean_quantities
from sfh_ml.synthesis import DatasetConfig, generate, read_dataset
from sfh_ml.synthesis.sfh import SkewNormalBurst, default_age_bins
from sfh_ml.synthesis.synthesizer import v_band_flux
from sfh_ml.utils import interp_weights

AGE_STEP_DEX = 0.1  # the library's age spacing


@pytest.fixture(scope="module")
def templates(synth, library):
    return build_templates(synth.wave_aa, library)


@pytest.fixture(scope="module")
def mask(templates, library):
    return emission_line_mask(library, templates.lam)


def burst(age_yr, zh, duration_yr=1e6, old_frac=0.0, old_age_yr=5e9):
    """A top-hat burst of ``1 - old_frac`` of the mass, on a narrow population at ``old_age_yr``."""
    one = np.ones(1)
    return SkewNormalBurst().batch(
        old_age_yr * one, 1e7 * one, 0 * one, age_yr * one, duration_yr * one, (1 - old_frac) * one,
        zh * one, zh * one, one,
    )  # fmt: skip


def _means(library, mass):
    return ssp_means(mass[None], library.log_age, library.zh, v_band_flux(library))


@pytest.mark.parametrize(
    "age_yr, zh, tau_bc, tau_ism",
    [(2e9, -0.71, 0.0, 0.6), (4e6, 0.0, 0.8, 0.3)],  # old, dusty; young in its birth cloud, with nebular
)
def test_noiseless_single_population_is_recovered_within_one_grid_step(
    synth, library, templates, mask, age_yr, zh, tau_bc, tau_ism
):
    params = make_params(1, tau_bc=tau_bc, tau_ism=tau_ism, log_u=DEFAULT_LOG_U, snr=50.0)
    out = synth(burst(age_yr, zh), params, rng=np.random.default_rng(0))
    fit = fit_spectrum(templates, out["spectra_noiseless"][0], out["noise"][0], mask, regul=0.0)
    got = _means(library, fit["mass"])
    assert got["mw_log_age"][0] == pytest.approx(out["mw_log_age"][0], abs=AGE_STEP_DEX)
    zh_step = np.max(np.diff(library.zh))
    assert got["mw_zh"][0] == pytest.approx(zh, abs=zh_step)
    assert fit["tau_ism"] == pytest.approx(tau_ism, abs=0.05)
    assert fit["sigma_kms"] == pytest.approx(150.0, rel=0.05)
    assert fit["mass"].sum() == pytest.approx(1.0, rel=0.1)  # weights are masses formed (1 M_sun)


def test_two_population_mix_gives_the_mass_fractions(synth, library, templates, mask):
    # 30 % of the mass formed 300 Myr ago (for 10 Myr), 70 % near 5 Gyr; noiseless, photometry joint.
    params = make_params(1, tau_ism=0.3, snr=50.0)
    out = synth(burst(3e8, -0.4, duration_yr=1e7, old_frac=0.7), params, rng=np.random.default_rng(1))
    fit = fit_spectrum(
        templates,
        out["spectra_noiseless"][0],
        out["noise"][0],
        mask,
        out["photometry_noiseless"][0],
        out["photometry_err"][0],
        regul=0.0,
    )
    sfh_ssp, _ = ssp_histories(fit["mass"][None], library.zh)
    young = library.age_yr < 1e9
    assert sfh_ssp[0, young].sum() == pytest.approx(0.3, abs=0.05)
    assert np.sum(out["mass_ssp"][0, young]) == pytest.approx(0.3, abs=1e-3)


def test_weights_to_means_reproduce_the_truths_and_fits_of_noiseless_files_match_them(tmp_path, library):
    path = tmp_path / "set.h5"
    generate(DatasetConfig(n=3, seed=3, sigma_kms=(150.0, 150.0), tau_bc=(0.0, 0.5), chunk_size=3), path,
             progress=False)  # fmt: skip
    d = read_dataset(path)
    # The file's own SSP weights through the mapping give its truths exactly (the metrics' definitions).
    mass = d["sfh_ssp"][:, :, None] * interp_weights(d["zh_ssp"], library.zh)
    truth = ssp_means(mass, library.log_age, library.zh, v_band_flux(library))
    for key in ("mw_log_age", "mw_zh", "lw_log_age", "lw_zh"):
        np.testing.assert_allclose(truth[key], d[key], atol=2e-3, err_msg=key)
    # pPXF on the noiseless spectra: the same means within a small tolerance.
    res = fit_file(path, noiseless=True, regul=0.0, progress=False)
    assert not res["failed"].any()
    for key, tol in (("mw_log_age", 0.1), ("lw_log_age", 0.05), ("mw_zh", 0.1), ("lw_zh", 0.05)):
        np.testing.assert_allclose(res[key], d[key], atol=tol, err_msg=key)
    np.testing.assert_allclose(res["sfh"].sum(axis=1), 1.0, rtol=1e-6)
    binned = mean_quantities(res["sfh"], res["zh"], d["age_bins_yr"])
    np.testing.assert_allclose(binned["mw_zh"], res["mw_zh"], atol=1e-6)  # bins keep [M/H] mass-weighted
    scores = evaluate_predictions(
        to_predictions(res), d, d["age_bins_yr"], bin_light=d["bin_light"], zh_grid=d["zh_grid"]
    )
    assert scores["n_objects"] == 3 and scores["exact"]["mean_quantities"]["mw_log_age"]["nmad"] < 0.1


def test_fits_on_a_dask_cluster_equal_the_serial_fits_in_object_order(tmp_path, library):
    # Five objects: two Dask tasks of unequal size, which may finish in any order.
    path = tmp_path / "set.h5"
    generate(DatasetConfig(n=5, seed=4, snr=(30.0, 30.0), chunk_size=5), path, progress=False)
    serial = fit_file(path, photometry=True, progress=False, library=library)
    parallel = fit_file(path, photometry=True, workers=2, progress=False, library=library)
    assert not serial["failed"].any() and not parallel["failed"].any()
    for key in ("mass", "sfh", "zh", "mw_log_age", "tau_ism", "sigma_kms", "chi2"):
        np.testing.assert_allclose(parallel[key], serial[key], rtol=1e-6, err_msg=key)
    assert len(set(np.round(serial["mw_log_age"], 3))) == 5  # the objects differ: the order is checked


def test_a_spectrum_on_another_grid_is_refused_by_name(templates):
    n = templates.wave_aa.size
    with pytest.raises(ValueError, match="wrong wavelength grid"):
        fit_spectrum(templates, np.ones(n - 1), np.ones(n - 1))


def test_nan_noise_is_refused_by_name(templates):
    n = templates.wave_aa.size
    noise = np.full(n, 0.01)
    noise[100] = np.nan
    with pytest.raises(ValueError, match="noise holds NaN"):
        fit_spectrum(templates, np.ones(n), noise)
    with pytest.raises(ValueError, match="noise is NaN, infinite or <= 0 in 1 objects"):
        fit_arrays(
            templates.wave_aa, np.ones((2, n)), np.stack([noise, np.full(n, 0.01)]), default_age_bins()
        )


def test_templates_for_a_grid_outside_the_library_are_refused(library):
    with pytest.raises(ValueError, match="outside the SSP library"):
        build_templates(np.linspace(9000.0, 10990.0, 500), library)


def _benchmark(name):
    """A module of benchmarks/ (not a package), imported from its file."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_score_rows_leave_out_failed_fits_and_split_young_from_old():
    from sfh_ml.network.metrics import score_rows

    bins = default_age_bins()
    n_bins = len(bins) - 1
    sfh = np.zeros((4, n_bins))
    sfh[[0, 1], 0] = 1.0  # young
    sfh[[2, 3], -1] = 1.0  # old
    zh = np.zeros((4, n_bins))
    pred = {"sfh": sfh.copy(), "zh": zh + 0.1}
    pred["sfh"][3] = np.nan  # a failed fit
    rows = score_rows(pred, {"sfh": sfh, "zh": zh}, bins)
    get = lambda sample, q, level: next(
        r for r in rows if (r["sample"], r["quantity"], r["level"]) == (sample, q, level)
    )
    assert get("all", "mw_zh", "bin")["n"] == 3 and get("all", "mw_zh", "bin")["n_failed"] == 1
    assert get("young", "mw_zh", "bin")["n"] == 2 and get("old", "mw_zh", "bin")["n_failed"] == 1
    assert get("all", "mw_zh", "bin")["bias"] == pytest.approx(0.1)
    assert get("all", "mw_log_age", "bin")["nmad"] == pytest.approx(0.0)
    assert get("all", "cum_sfh_mae", "object")["bias"] == pytest.approx(0.0)
    assert not any(r["level"] == "exact" for r in rows)  # no per-object truths given


def test_compare_ppxf_benchmark_runs_end_to_end_and_caches_its_fits(tmp_path, capsys):
    import csv

    bench = _benchmark("compare_ppxf")
    argv = [
        "--n",
        "4",
        "--n-fit",
        "2",
        "--snr",
        "20",
        "--workers",
        "1",
        "--speed-n",
        "16",
        "--out",
        str(tmp_path),
    ]
    bench.main(argv)
    with open(tmp_path / "compare_ppxf.csv") as f:
        rows = list(csv.DictReader(f))
    methods = {r["method"] for r in rows}
    assert methods == {"pPXF", "pPXF + HST", "network (shipped)"}
    for method in methods:
        scored = [r for r in rows if r["method"] == method and r["sample"] == "all" and r["value"] == ""]
        keys = {(r["quantity"], r["level"]) for r in scored}
        assert {
            ("mw_log_age", "exact"),
            ("lw_zh", "bin"),
            ("cum_sfh_mae", "object"),
            ("sfh_cum_00", "bin"),
        } <= keys
        assert all(
            r["n"] == "2" and np.isfinite(float(r["bias"])) and np.isfinite(float(r["mae"])) for r in scored
        )
        timings = [
            float(r["value"])
            for r in rows
            if r["method"] == method and r["quantity"] == "seconds_per_spectrum"
        ]
        assert timings and all(t > 0 for t in timings)
    assert "| 20 | pPXF + HST | 2 |" in (tmp_path / "compare_ppxf.md").read_text()
    assert "times faster" in capsys.readouterr().out
    # a rerun reads the cached fits: the same pPXF numbers
    caches = sorted(tmp_path.glob("ppxf_*.npz"))
    assert len(caches) == 2
    stamps = [c.stat().st_mtime_ns for c in caches]
    bench.main(argv)
    assert [c.stat().st_mtime_ns for c in caches] == stamps
    with open(tmp_path / "compare_ppxf.csv") as f:
        again = [r for r in csv.DictReader(f) if r["method"].startswith("pPXF") and r["value"] == ""]
    assert again == [r for r in rows if r["method"].startswith("pPXF") and r["value"] == ""]
