"""Knowing when the network is lost: the re-synthesis goodness of fit as an out-of-distribution flag.

Generates (once, kept in ``--out``) held-out sets of the network's own world (E-MILES, at S/N 10,
20, 50 and 100) and of another world (BC03, S/N 50), predicts them with the shipped network with the
goodness of fit (:func:`sfh_ml.network.goodness.resynthesis_fit`) and prints, per set:

* the false-alarm rate: the fraction of objects whose mass-weighted log age is within 0.3 dex of
  the truth (bin level, :func:`sfh_ml.network.metrics.mean_log_age` of the predicted and true bins,
  as ``benchmarks/valley.py``) that carry the flag;
* the hit rate: the fraction of objects off by more than 0.3 dex that carry it;
* the flagged fraction of all objects, and the same with the flag OR'ed with a large ensemble
  spread (``sfh_cum_sigma`` of the bin around 100 Myr above its own-world 97th percentile), for
  comparison;
* the time per spectrum of the goodness of fit (the network's own prediction excluded).

``--calibrate`` instead fits :data:`sfh_ml.network.goodness.OOD_THRESHOLDS` on independent sets
(seed 101: at each S/N, the 90th percentile of ``residual_fraction`` over the objects whose age is
within 0.3 dex, so that about 10 % of them are flagged) and prints the
table to paste there.

    python benchmarks/ood.py [--n 1000] [--out DIR] [--seed 7] [--calibrate] [--mdegree 0]
"""

import argparse
import time
from pathlib import Path

import h5py
import numpy as np

import sfh_ml
from sfh_ml.network import metrics, predict
from sfh_ml.network.goodness import resynthesis_fit
from sfh_ml.synthesis.dataset import DatasetConfig, generate
from sfh_ml.utils import as_str

SETS = (("emiles", 10.0), ("emiles", 20.0), ("emiles", 50.0), ("emiles", 100.0), ("bc03", 50.0))
AGE_ERROR_DEX = 0.3  # an object is "lost" when its mass-weighted log age is off by more than this
CALIBRATION_SEED = 101
CALIBRATION_PERCENTILE = 90.0  # at most 10 % of the own world flagged
SPREAD_BIN = 8  # the cumulative-SFH bin (~100 Myr) whose sigma is the spread compared with
SPREAD_PERCENTILE = 97.0


def load_set(folder, library, snr, n, seed):
    """The set's arrays (generated if missing)."""
    path = Path(folder) / f"ood_{library}_snr{snr:g}_n{n}_seed{seed}.h5"
    generate(DatasetConfig(n=n, seed=seed, snr=(snr, snr), library=library), path, progress=False)
    keys = ("spectra", "noise", "photometry", "photometry_err", "sfh", "zh")
    with h5py.File(path, "r") as f:
        data = {k: f[k][:] for k in keys}
        data.update(wave_aa=f["wave_aa"][:], filters=as_str(f["filters"][:]), age_bins_yr=f["age_bins_yr"][:])
    return data


def score_set(model, data, mdegree=0):
    """Prediction, goodness of fit, age error (dex) and seconds per spectrum of the goodness."""
    pred = predict(model, data["spectra"], data["photometry"])
    start = time.perf_counter()
    fit = resynthesis_fit(
        pred,
        data["spectra"],
        data["noise"],
        data["photometry"],
        data["photometry_err"],
        data["wave_aa"],
        data["filters"],
        data["age_bins_yr"],
        progress=False,
        mdegree=mdegree,
    )
    seconds = (time.perf_counter() - start) / len(data["sfh"])
    bins = data["age_bins_yr"]
    error = metrics.mean_log_age(pred["sfh"], bins) - metrics.mean_log_age(data["sfh"], bins)
    return pred, fit, error, seconds


def calibrate(model, folder, n, mdegree=0):
    rows = []
    for library, snr in SETS:
        if library != "emiles":
            continue
        _, fit, error, _ = score_set(model, load_set(folder, library, snr, n, CALIBRATION_SEED), mdegree)
        good = np.abs(error) <= AGE_ERROR_DEX  # a false alarm is a flag on one of these
        rows.append(
            (
                float(np.nanmedian(fit["snr_model"])),
                float(np.nanpercentile(fit["residual_fraction"][good], CALIBRATION_PERCENTILE)),
            )
        )
    print("OOD_THRESHOLDS = (" + ", ".join(f"({s:.1f}, {t:.4f})" for s, t in rows) + ")")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="objects per set")
    parser.add_argument("--out", default="ood_sets", help="folder for the generated sets (reused)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--calibrate", action="store_true", help="fit OOD_THRESHOLDS instead")
    parser.add_argument(
        "--mdegree", type=int, default=0, help="multiplicative polynomial of the fit (thresholds: for 0)"
    )
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    model = sfh_ml.load_pretrained()
    if args.calibrate:
        calibrate(model, args.out, args.n, args.mdegree)
        return
    results = {
        (lib, snr): score_set(model, load_set(args.out, lib, snr, args.n, args.seed), args.mdegree)
        for lib, snr in SETS
    }
    own = results[("emiles", 50.0)][0]["sfh_cum_sigma"][:, SPREAD_BIN]
    spread_cut = np.nanpercentile(own, SPREAD_PERCENTILE)
    print(f"shipped network, {args.n} objects per set, seed {args.seed}")
    print(f"lost: |mw log age error| > {AGE_ERROR_DEX} dex; false alarm: flagged among the others")
    print(
        f"{'set':14s} {'lost':>6s} {'false alarm':>12s} {'hit':>6s} {'flagged':>8s} "
        f"{'| +spread: FA':>14s} {'hit':>6s} {'flagged':>8s} {'ms/spec':>8s}"
    )
    for (lib, snr), (pred, fit, error, seconds) in results.items():
        lost = np.abs(error) > AGE_ERROR_DEX
        flag = fit["ood_score"] > 1.0
        either = flag | (pred["sfh_cum_sigma"][:, SPREAD_BIN] > spread_cut)
        rate = lambda f, sel: float(np.mean(f[sel])) if sel.any() else float("nan")
        print(
            f"{lib + ' S/N ' + format(snr, 'g'):14s} {lost.mean():6.3f} {rate(flag, ~lost):12.3f} "
            f"{rate(flag, lost):6.3f} {flag.mean():8.3f} {rate(either, ~lost):14.3f} "
            f"{rate(either, lost):6.3f} "
            f"{either.mean():8.3f} {1e3 * seconds:8.2f}"
        )


if __name__ == "__main__":
    main()
