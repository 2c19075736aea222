"""Knowing when the network is lost: the re-synthesis goodness of fit as an out-of-distribution flag.

Generates (once, kept in ``--out``) held-out sets of the network's own world (E-MILES, at S/N 10,
20, 50 and 100) and of another world (BC03, S/N 50), predicts them with the shipped network with the
goodness of fit (:func:`sfh_ml.network.goodness.resynthesis_fit`, with the model's own thresholds
when it has them, else :data:`~sfh_ml.network.goodness.OOD_THRESHOLDS`) and prints, per set:

* the false-alarm rate: the fraction of objects whose mass-weighted log age is within 0.3 dex of
  the truth (bin level, :func:`sfh_ml.network.metrics.mean_log_age` of the predicted and true bins,
  as ``benchmarks/valley.py``) that carry the flag;
* the hit rate: the fraction of objects off by more than 0.3 dex that carry it;
* the flagged fraction of all objects, and the same with the flag OR'ed with a large ensemble
  spread (``sfh_cum_sigma`` of the bin around 100 Myr above its own-world 97th percentile), for
  comparison;
* the time per spectrum of the goodness of fit (the network's own prediction excluded).

``--calibrate`` instead fits the thresholds on independent sets of the own world (seed 101:
:func:`sfh_ml.network.goodness.fit_ood_thresholds`, at each S/N the 90th percentile of
``residual_fraction`` over the objects whose age is within 0.3 dex, so that about 10 % of them are
flagged) and prints the table (for the shipped network: :data:`~sfh_ml.network.goodness.OOD_THRESHOLDS`
to paste there). With ``--write OUT.keras`` it also stores the table in a copy of the model
(:func:`sfh_ml.network.calibrate_ood`; ``--overwrite`` replaces OUT), which
``predict(..., goodness=True)`` then uses. ``--model PATH`` benchmarks or calibrates another network
than the shipped one.

    python benchmarks/ood.py [--n 1000] [--out DIR] [--seed 7] [--mdegree 0] [--model PATH]
                             [--calibrate [--write OUT.keras [--overwrite]]]
"""

import argparse
import time
from pathlib import Path

import h5py
import numpy as np

import sfh_ml
from sfh_ml.network import calibrate_ood, get_metadata, load_model, predict
from sfh_ml.network.goodness import (
    OOD_AGE_ERROR_DEX,
    OOD_PERCENTILE,
    age_error,
    fit_ood_thresholds,
    flag_rate,
    resynthesis_fit,
)
from sfh_ml.network.pretrained import pretrained_paths
from sfh_ml.synthesis import DatasetConfig, generate
from sfh_ml.utils import as_str

SETS = (("emiles", 10.0), ("emiles", 20.0), ("emiles", 50.0), ("emiles", 100.0), ("bc03", 50.0))
AGE_ERROR_DEX = OOD_AGE_ERROR_DEX  # an object is "lost" when its mass-weighted log age is off by more
CALIBRATION_SEED = 101
CALIBRATION_PERCENTILE = OOD_PERCENTILE  # at most 10 % of the own world flagged
SPREAD_BIN = 8  # the cumulative-SFH bin (~100 Myr) whose sigma is the spread compared with
SPREAD_PERCENTILE = 97.0


def set_path(folder, library, snr, n, seed):
    """The set's file (generated if missing)."""
    path = Path(folder) / f"ood_{library}_snr{snr:g}_n{n}_seed{seed}.h5"
    generate(DatasetConfig(n=n, seed=seed, snr=(snr, snr), library=library), path, progress=False)
    return path


def load_set(folder, library, snr, n, seed):
    """The set's arrays (generated if missing)."""
    path = set_path(folder, library, snr, n, seed)
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
        ood_thresholds=get_metadata(model)["ood_thresholds"],
    )
    seconds = (time.perf_counter() - start) / len(data["sfh"])
    error = age_error(pred["sfh"], data["sfh"], data["age_bins_yr"])
    return pred, fit, error, seconds


def calibrate(model, folder, n, mdegree=0):
    """The thresholds fitted on the own-world sets at seed 101, ndarray (k, 2)."""
    residual, snr, ok, group = [], [], [], []
    for library, set_snr in SETS:
        if library != "emiles":
            continue
        _, fit, error, _ = score_set(model, load_set(folder, library, set_snr, n, CALIBRATION_SEED), mdegree)
        residual.append(fit["residual_fraction"])
        snr.append(fit["snr_model"])
        ok.append(np.abs(error) <= AGE_ERROR_DEX)  # a false alarm is a flag on one of these
        group.append(np.full(error.size, set_snr))
    return fit_ood_thresholds(
        *(np.concatenate(a) for a in (residual, snr, ok, group)), percentile=CALIBRATION_PERCENTILE
    )


def print_table(table):
    print("OOD_THRESHOLDS = (" + ", ".join(f"({s:.1f}, {t:.4f})" for s, t in table) + ")")


def write_calibrated(model_path, folder, n, out, overwrite=False):
    """The model with its thresholds fitted on the own-world sets at seed 101, saved to ``out``."""
    paths = [set_path(folder, lib, snr, n, CALIBRATION_SEED) for lib, snr in SETS if lib == "emiles"]
    result = calibrate_ood(model_path, paths, out, overwrite=overwrite, percentile=CALIBRATION_PERCENTILE)
    print_table(result["ood_thresholds"])
    for row in result["sets"]:
        print(
            f"{Path(row['data']).name}: S/N {row['median_snr_model']:.1f}, {row['n_age_right']} of "
            f"{row['n_objects']} objects with the right age, false alarms {row['false_alarm']:.3f} "
            f"(before: {row['false_alarm_before']:.3f})"
        )
    print(f"wrote {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="objects per set")
    parser.add_argument("--out", default="ood_sets", help="folder for the generated sets (reused)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--calibrate", action="store_true", help="fit the thresholds instead")
    parser.add_argument("--model", help="the network (.keras; default: the shipped one)")
    parser.add_argument("--write", metavar="OUT", help="with --calibrate: save the model with its thresholds")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --write file")
    parser.add_argument(
        "--mdegree", type=int, default=0, help="multiplicative polynomial of the fit (thresholds: for 0)"
    )
    args = parser.parse_args()
    if args.write and not args.calibrate:
        parser.error("--write goes with --calibrate")
    if args.write and args.mdegree != 0:
        parser.error("--write stores thresholds for predict's fit, which has --mdegree 0")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.write:
        shipped = [] if args.model else pretrained_paths()
        if len(shipped) > 1:
            parser.error("the shipped model is an ensemble: --write one member at a time with --model")
        model_path = args.model or shipped[0]
        write_calibrated(model_path, args.out, args.n, args.write, args.overwrite)
        return
    model = load_model(args.model) if args.model else sfh_ml.load_pretrained()
    if args.calibrate:
        print_table(calibrate(model, args.out, args.n, args.mdegree))
        return
    results = {
        (lib, snr): score_set(model, load_set(args.out, lib, snr, args.n, args.seed), args.mdegree)
        for lib, snr in SETS
    }
    own = results[("emiles", 50.0)][0]["sfh_cum_sigma"][:, SPREAD_BIN]
    spread_cut = np.nanpercentile(own, SPREAD_PERCENTILE)
    print(f"{args.model or 'shipped network'}, {args.n} objects per set, seed {args.seed}")
    print(f"lost: |mw log age error| > {AGE_ERROR_DEX} dex; false alarm: flagged among the others")
    print(
        f"{'set':14s} {'lost':>6s} {'false alarm':>12s} {'hit':>6s} {'flagged':>8s} "
        f"{'| +spread: FA':>14s} {'hit':>6s} {'flagged':>8s} {'ms/spec':>8s}"
    )
    for (lib, snr), (pred, fit, error, seconds) in results.items():
        lost = np.abs(error) > AGE_ERROR_DEX
        flag = fit["ood_score"] > 1.0
        either = flag | (pred["sfh_cum_sigma"][:, SPREAD_BIN] > spread_cut)
        print(
            f"{lib + ' S/N ' + format(snr, 'g'):14s} {lost.mean():6.3f} {flag_rate(flag, ~lost):12.3f} "
            f"{flag_rate(flag, lost):6.3f} {flag.mean():8.3f} {flag_rate(either, ~lost):14.3f} "
            f"{flag_rate(either, lost):6.3f} "
            f"{either.mean():8.3f} {1e3 * seconds:8.2f}"
        )


if __name__ == "__main__":
    main()
