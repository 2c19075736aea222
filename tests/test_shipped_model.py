"""The network that ships in ``sfh_ml/pretrained/``: it loads with its digests checked, is the model its
card describes, and reproduces the card's S/N-50 figures on a freshly generated test set."""

import json

import numpy as np
import pytest

from sfh_ml import DatasetConfig, generate, load_pretrained
from sfh_ml.network import evaluate, get_metadata, pretrained
from sfh_ml.synthesis.photometry import PHANGS_FILTERS
from sfh_ml.synthesis.sfh import default_age_bins

N_TEST = 2000  # NMAD of n = 2000 has a relative standard error of about 3 %
SEED = 2026  # not a seed of the card's sets: an independent draw of the same population


@pytest.fixture(scope="module")
def card_results():
    info = pretrained.pretrained_info()
    return json.loads(info["results"].read_text())


@pytest.fixture(scope="module")
def fresh_snr50(tmp_path_factory):
    path = tmp_path_factory.mktemp("shipped") / "snr50.h5"
    generate(DatasetConfig(n=N_TEST, seed=SEED, snr=50.0), path, progress=False)
    return path


def test_the_shipped_model_is_what_its_card_says(card_results):
    model = load_pretrained(members="fast")  # digests checked on the way
    meta = get_metadata(model)
    assert meta["filters"] == list(PHANGS_FILTERS)
    np.testing.assert_allclose(meta["age_bins_yr"], default_age_bins(), rtol=1e-9)
    assert meta["n_wave"] == card_results["model"]["n_wave"]
    assert meta["bin_light"] is not None and np.all(np.asarray(meta["bin_light"]) > 0)
    # calibrated: the factors are stored, and differ from 1 (the raw cumulative-SFH sigmas were too wide)
    scale = np.asarray(meta["sigma_scale_sfh_cum"], dtype=float)
    assert scale.shape == (meta["n_bins"],) and np.nanmedian(scale) < 0.9


def test_the_shipped_model_reproduces_its_card_at_snr_50(card_results, fresh_snr50):
    card = next(m for m in card_results["metrics"] if m["label"] == "S/N 50")
    coverage = next(c for c in card_results["coverage"] if c["label"] == "S/N 50")["after"]
    result = evaluate(pretrained.pretrained_paths(), fresh_snr50)
    assert result["n_unusable"] == 0 and result["sigma_calibrated"]
    for key, tol in (("mw_log_age", 0.02), ("lw_log_age", 0.02), ("mw_zh", 0.01), ("lw_zh", 0.01)):
        got, expected = result["mean_quantities"][key], card["bin"][key]
        assert got["nmad"] == pytest.approx(expected["nmad"], abs=tol), key
        # the bias of 2000 objects scatters by ~ std / sqrt(2000) (0.006 dex for the age): 0.02 is 3 sigma
        assert got["bias"] == pytest.approx(expected["bias"], abs=0.02), key
        assert abs(got["bias"]) < 0.08, key  # the own world's bias of the domain-randomised training
    cov = result["coverage"]
    assert cov["sfh_cum"]["1sigma"]["all"] == pytest.approx(coverage["sfh_cum"]["1sigma"], abs=0.03)
    assert cov["sfh_cum"]["1sigma"]["all"] == pytest.approx(0.683, abs=0.04)
    assert cov["zh"]["1sigma"]["all"] == pytest.approx(0.683, abs=0.04)
