"""A trained network recovers the known gradients of the mock galaxy (issue 7).

The whole path of chapter 4 with a network trained here: a synthetic set on the MUSE grid (the
default generator configuration, stellar dispersion 150 km/s, S/N 20-100), a tiny v2 network trained
for a few epochs (seeded, deterministic), a seeded mock galaxy, ``apply_cube`` with its MAPS,
catalogue and HST images, then the per-bin comparison with the mock's truth maps (averaged over each
bin with the weights of the quantity: mass for mass-weighted, V light for light-weighted ones).

What a network of this size (10,000 spectra, 10 epochs: about a minute of training on 2 cores)
recovers, measured on three seeds (the numbers are beside the thresholds below):

* mass-weighted [M/H]: per-bin Pearson r 0.89-0.95, and its radial gradient negative and within a
  factor of 2 of the truth's (0.83-1.16 of it);
* light-weighted log age: r 0.92-0.96, its gradient of the truth's sign and 0.34-0.76 of it (the
  recovered ages are compressed towards the middle of the training prior);
* mass-weighted log age: NOT recovered at this training size: Pearson r 0.03-0.15 and a radial
  gradient of the wrong sign (-0.75 to -1.24 of the truth's; the network follows the light of the
  young populations). Only its ranking holds (Spearman 0.31-0.40), and that is what is asserted;
  the chapter's full training is needed for the rest;
* the clusters' mass-weighted ages: median |Δ log age| 0.31-0.63 dex (not the 0.3 dex of
  ``CLUSTER_TOLERANCE_DEX``; measured with the library and 16 bins from 6.3 Myr, below which the
  youngest, 2 Myr, then sat; it now has its own SSPs and the 1-3 Myr bin) and a
  Spearman rank correlation 0.57-0.71 with 7-8 clusters: a weak test (a tenth of the shuffles pass).

The run is deterministic (the same numbers twice).

Each correlation threshold rejects the same predictions shuffled across the bins (and every
threshold a constant prediction), so a pipeline that scrambles, drops or flattens the maps fails
(:func:`test_the_thresholds_reject_shuffled_and_constant_predictions`).
"""

from dataclasses import dataclass

import numpy as np
import pytest
from astropy.io import fits

keras = pytest.importorskip("keras")

from conftest import TINY_V2  # noqa: E402

import sfh_ml  # noqa: E402
from sfh_ml import network  # noqa: E402
from sfh_ml.observations import (  # noqa: E402
    apply_cube,
    bin_average,
    cluster_age_agreement,
    compare_with_truth,
    deprojected_radius,
    fit_gradient,
    load_mock_truth,
    read_application,
    usable_objects,
    write_mock_galaxy,
)

pytestmark = pytest.mark.slow

# The run (about 100 s on 2 cores, most of it training).
N_TRAIN, TRAIN_SNR, EPOCHS, BATCH_SIZE = 10_000, (20.0, 100.0), 10, 64
TRAIN_SEED, MOCK_SEED = 1, 1
MOCK_SHAPE, BINS = (40, 40), "grid:3"  # 167 bins; the clusters' background annuli do not overlap much

# Thresholds, measured on three seeds (training set and weights, mock galaxy: 1/1, 2/2, 3/3; the
# numbers in the comments are those three), and the largest value of 200 shuffles of the predictions
# across the bins (or clusters) of any of the three.
# (1) mass-weighted [M/H]: Pearson r per bin, and the recovered radial gradient over the true one.
ZH_MIN_R = 0.75  # 0.927, 0.894, 0.946; shuffled at most 0.26
ZH_GRADIENT_RATIO = (0.5, 2.0)  # within a factor of 2: 0.83, 0.87, 1.16; shuffled at most 0.31
# (2) light-weighted log age (the mass-weighted one is not recovered at this training size, below).
LW_AGE_MIN_R = 0.75  # 0.959, 0.920, 0.955; shuffled at most 0.25
LW_AGE_GRADIENT_RATIO = (0.2, 2.0)  # same sign, compressed: 0.68, 0.34, 0.76 (shuffled up to 0.55)
MW_AGE_MIN_SPEARMAN = 0.2  # 0.31, 0.39, 0.40; shuffled at most 0.22 (1 in 600 passes)
# (3) the clusters' mass-weighted ages against the true burst ages (7-8 usable clusters, 2 Myr-1 Gyr).
CLUSTER_MAX_MEDIAN_DEX = 0.75  # median |Δ log age|: 0.31, 0.63, 0.50; one constant age at best 0.77
CLUSTER_MIN_SPEARMAN = 0.4  # 0.57, 0.71, 0.57; 16-20 % of shuffles pass it, about 10 % both


@dataclass
class Recovery:
    """Per-bin recovered and true values, the bins' deprojected radii, and the clusters' ages."""

    radius: np.ndarray  # arcsec, usable bins
    recovered: dict  # key -> ndarray, usable bins
    true: dict
    cluster_log_age: np.ndarray  # network's mass-weighted log age (yr) of the usable clusters
    cluster_true_log_age: np.ndarray
    n_bins: int
    n_clusters: int


def run_recovery(folder, train_seed=TRAIN_SEED, mock_seed=MOCK_SEED):
    """Train, write the mock, apply, and compare bin by bin (everything under ``folder``)."""
    data = folder / "train.h5"
    config = sfh_ml.DatasetConfig(n=N_TRAIN, seed=train_seed, snr=TRAIN_SNR, sigma_kms=(150.0, 150.0))
    sfh_ml.generate(config, data, progress=False)
    network.train(
        data,
        version="v2",
        out_path=folder / "v2.keras",
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        seed=train_seed,
        patience=EPOCHS,
        verbose=0,
        **TINY_V2,
    )
    galaxy = write_mock_galaxy(folder, seed=mock_seed, shape=MOCK_SHAPE, progress=False)
    p = galaxy.params
    result = apply_cube(
        network.load_model(folder / "v2.keras"),
        galaxy.cube,
        folder / "application",
        maps_path=galaxy.maps,
        redshift=p["redshift"],
        ebv_mw=p["ebv_mw"],
        catalogue_path=galaxy.catalogue,
        hst_paths=list(galaxy.images.values()),
        bins=BINS,
        muse_fwhm_arcsec=p["psf_fwhm_arcsec"],
        progress=False,
    )
    app = read_application(result.out_dir)
    truth, truth_clusters, _ = load_mock_truth(galaxy.truth)
    table = app.bins
    usable = usable_objects(table["quality"])
    radius, _ = deprojected_radius(
        app.wcs, table["x_centre"], table["y_centre"], p["centre_deg"], p["inclination_deg"], p["pa_deg"]
    )
    # Mass-weighted truths are averaged over a bin by mass, light-weighted ones by light (the mean flux
    # of the spectra, FLUX of the MAPS).
    light = fits.getdata(galaxy.maps, "FLUX")
    weights = {"mw_zh": truth["MASS_FORMED"], "mw_log_age": truth["MASS_FORMED"], "lw_log_age": light}
    names = {"mw_zh": "MW_ZH", "mw_log_age": "MW_LOG_AGE", "lw_log_age": "LW_LOG_AGE"}
    recovered = {key: np.asarray(table[key], dtype=float)[usable] for key in names}
    true = {
        key: bin_average(app.maps["BIN_ID"], truth[name], weights[key])[usable] for key, name in names.items()
    }
    clusters = app.clusters
    usable_cl = usable_objects(clusters["quality"])
    true_age = dict(zip(np.asarray(truth_clusters["id"]), np.asarray(truth_clusters["log_age"])))
    return Recovery(
        radius=radius[usable],
        recovered=recovered,
        true=true,
        cluster_log_age=np.asarray(clusters["mw_log_age"], dtype=float)[usable_cl],
        cluster_true_log_age=np.array([true_age[i] for i in np.asarray(clusters["id"])[usable_cl]]),
        n_bins=int(usable.sum()),
        n_clusters=int(usable_cl.sum()),
    )


def map_checks(radius, recovered, true):
    """Each criterion on the per-bin values: name -> (measured value, met). NaN never meets one."""
    checks = {}
    for key, min_r, (lo, hi) in (
        ("mw_zh", ZH_MIN_R, ZH_GRADIENT_RATIO),
        ("lw_log_age", LW_AGE_MIN_R, LW_AGE_GRADIENT_RATIO),
    ):
        r = compare_with_truth(recovered[key], true[key])["pearson_r"]
        ratio = fit_gradient(radius, recovered[key]).slope / fit_gradient(radius, true[key]).slope
        checks[f"{key} pearson_r"] = (r, r >= min_r)
        checks[f"{key} gradient ratio"] = (ratio, lo <= ratio <= hi)
    rho = compare_with_truth(recovered["mw_log_age"], true["mw_log_age"])["spearman_r"]
    checks["mw_log_age spearman_r"] = (rho, rho >= MW_AGE_MIN_SPEARMAN)
    return checks


def cluster_checks(log_age, true_log_age):
    """The criteria on the clusters' ages (log10 yr): name -> (measured value, met)."""
    agreement = cluster_age_agreement(10.0**log_age, 10.0**true_log_age)
    median, rho = agreement["median_abs_dlog_age"], agreement["spearman_r"]
    return {
        "clusters median |dlog age|": (median, median <= CLUSTER_MAX_MEDIAN_DEX),
        "clusters spearman_r": (rho, rho >= CLUSTER_MIN_SPEARMAN),
    }


def failed(checks):
    return {name: value for name, (value, met) in checks.items() if not met}


@pytest.fixture(scope="module")
def recovery(tmp_path_factory):
    return run_recovery(tmp_path_factory.mktemp("recovery"))


def test_the_mock_is_binned_and_predicted(recovery):
    assert recovery.n_bins >= 150 and recovery.n_clusters >= 6


def test_recovered_maps_follow_the_known_gradients(recovery):
    assert failed(map_checks(recovery.radius, recovery.recovered, recovery.true)) == {}
    # The true [M/H] falls outwards (-0.3 dex per disc scale length), and so does the recovered one.
    assert fit_gradient(recovery.radius, recovery.recovered["mw_zh"]).slope < 0


def test_cluster_ages_follow_the_truth(recovery):
    assert failed(cluster_checks(recovery.cluster_log_age, recovery.cluster_true_log_age)) == {}


def test_the_thresholds_reject_shuffled_and_constant_predictions(recovery):
    """Predictions shuffled across the bins fail each correlation criterion (the gradient ratio of the
    light-weighted age and the clusters' median offset are bounds, not tests of the ranking, and
    are left out); constant predictions fail every criterion."""
    rng = np.random.default_rng(0)
    n_shuffles = 200
    rejected = {}
    for _ in range(n_shuffles):
        shuffled = {key: rng.permutation(value) for key, value in recovery.recovered.items()}
        checks = map_checks(recovery.radius, shuffled, recovery.true)
        checks |= cluster_checks(rng.permutation(recovery.cluster_log_age), recovery.cluster_true_log_age)
        for name, (_, met) in checks.items():
            rejected[name] = rejected.get(name, 0) + (not met)
    rate = {name: count / n_shuffles for name, count in rejected.items()}
    for name in ("mw_zh pearson_r", "mw_zh gradient ratio", "lw_log_age pearson_r"):
        assert rate[name] == 1.0, name
    assert rate["mw_log_age spearman_r"] >= 0.95
    assert rate["clusters spearman_r"] >= 0.7  # 8 clusters: a weak test of the ranking (see above)
    constant = {key: np.full_like(value, np.median(value)) for key, value in recovery.recovered.items()}
    checks = map_checks(recovery.radius, constant, recovery.true)
    checks |= cluster_checks(
        np.full_like(recovery.cluster_log_age, np.median(recovery.cluster_true_log_age)),
        recovery.cluster_true_log_age,
    )
    assert failed(checks).keys() == checks.keys()
