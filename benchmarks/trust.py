"""The trust score and the wrong-redshift check on every test world: hit and false-alarm rates, cost.

For one network (the shipped one, or ``--model``), on a held-out set of ``--n`` objects of each test
world (:data:`sfh_ml.synthesis.TEST_WORLDS`, S/N 10-100 log-uniform, seed 7400):

* the trust score (:mod:`sfh_ml.network.trust`) measured on each world with its parameters fitted on
  the *other* worlds (leave one world out): of the objects whose mass-weighted log age is off by more
  than 0.3 dex, the fraction flagged (hit rate); of those within 0.15 dex, the fraction flagged
  (false alarms); the ROC AUC of the two; the fraction of wrong answers;
* the wrong-redshift check on the own world's spectra brought to the rest frame with a redshift off
  by ``dz`` (|dz| uniform in 0.005-0.05, either sign; the flagged fraction per range of |dz|), and its
  false alarms at the right redshift on every world;
* the cost per spectrum of ``predict(..., trust=True)`` and of ``predict(..., goodness=True,
  trust=True)`` beside ``predict`` alone (one run, same cores).

``--mock`` also runs ``sfh_ml.apply_cube`` (goodness and trust, Voronoi S/N 30 bins) on the
project's mock galaxy (:func:`sfh_ml.write_mock_galaxy`, 60 x 60 spaxels) with its redshift and with
redshifts off by :data:`MOCK_DZ` (the cube's own redshift check switched off), and prints the
fraction of usable bins flagged ``NETWORK_WRONG_REDSHIFT`` and ``NETWORK_UNTRUSTED`` in each run.

``--fit`` also fits the parameters on all the worlds together and prints them (the value of
:data:`sfh_ml.network.trust.TRUST_PARAMS` for the shipped network). Sets and features are cached in
``--out``.

    python benchmarks/trust.py [--model PATH] [--n 1500] [--workers 2] [--fit] [--mock] [--out DIR]
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from sfh_ml.constants import C_KMS  # noqa: E402
from sfh_ml.files import atomic_write_text  # noqa: E402
from sfh_ml.synthesis import TEST_WORLDS, generate, read_dataset, world_config  # noqa: E402

SEED = 7400  # the trust benchmark's sets: a seed no training, calibration or test set uses
SNR_RANGE = (10.0, 100.0)
DZ_RANGES = ((0.005, 0.01), (0.01, 0.02), (0.02, 0.05))
MOCK_DZ = (0.0, 0.005, -0.005, 0.01, 0.02, 0.05)


def mock_runs(model, folder):
    """Rows ``{dz, n_usable, wrong_redshift, untrusted}`` of apply_cube on the mock galaxy."""
    from astropy.table import Table

    from sfh_ml import apply_cube, write_mock_galaxy
    from sfh_ml.observations import quality_bits

    mock_dir = folder / "mock"
    mock_dir.mkdir(exist_ok=True)
    mock = write_mock_galaxy(mock_dir, overwrite=True, progress=False)
    z = mock.params["redshift"]
    bits = quality_bits()
    rows = []
    for dz in MOCK_DZ:
        out = folder / f"mock_apply_dz{dz:+g}"
        apply_cube(
            model, mock.cube, out, maps_path=mock.maps, redshift=z + dz, ebv_mw=mock.params["ebv_mw"],
            bins="voronoi:30", goodness=True, trust=True, check_redshift=False, overwrite=True,
            progress=False,
        )  # fmt: skip
        bins = Table.read(out / "bins.ecsv")
        q = np.asarray(bins["quality"])
        usable = np.isfinite(np.asarray(bins["mw_log_age"]))
        rows.append({
            "dz": dz,
            "n_usable": int(usable.sum()),
            "wrong_redshift": float(np.mean((q[usable] & bits["NETWORK_WRONG_REDSHIFT"]) > 0)),
            "untrusted": float(np.mean((q[usable] & bits["NETWORK_UNTRUSTED"]) > 0)),
        })  # fmt: skip
    return rows


def world_features(model, path, dz=None, rng=None):
    """Trust features, age errors, S/N and redshift scan of one set (optionally shifted by ``dz``)."""
    from sfh_ml.network import get_metadata, load_data, predict, resynthesis_fit, trust
    from sfh_ml.network.metrics import mean_log_age, target_coverage
    from sfh_ml.synthesis.perturbations import shift_spectra

    meta = get_metadata(model if not isinstance(model, list) else model[0])
    data = load_data(path)
    extra = read_dataset(path, ["noise", "photometry_err", "spectra_noiseless", "snr"])
    spectra, noise = data["spectra"], extra["noise"]
    if dz is not None:  # prepared with a wrong redshift: the features move by c dz
        clean = shift_spectra(extra["spectra_noiseless"], data["wave_aa"], C_KMS * dz)
        spectra = clean + noise * rng.standard_normal(spectra.shape).astype(np.float32)
    pred = predict(model, spectra, data["photometry"])
    no_phot = predict(model, spectra, np.full_like(data["photometry"], np.nan))
    edges = data["age_bins_yr"]
    fit = resynthesis_fit(
        pred, spectra, noise, data["photometry"], extra["photometry_err"], data["wave_aa"], meta["filters"],
        edges, return_models=True, ood_thresholds=meta["ood_thresholds"],
    )  # fmt: skip
    offset = trust.redshift_offset(spectra, noise, fit["model_spectra"], data["wave_aa"])
    covered = {
        f"coverage_{name}_{k}": cov[k]["all"]
        for name, cov in target_coverage(pred, {"sfh": data["sfh"], "zh": data["zh"]}).items()
        if name in ("sfh_cum", "zh")
        for k in ("1sigma", "2sigma")
    }
    return {
        **covered,
        "features": trust.trust_features(pred, no_phot, edges),
        "age_error": mean_log_age(pred["sfh"], edges) - mean_log_age(data["sfh"], edges),
        "snr": extra["snr"],
        "wrong_redshift": trust.wrong_redshift(offset),
        **{f"offset_{k}": v for k, v in offset.items()},
    }


def cost(model, path, params, repeats=3):
    """Seconds per spectrum of predict alone, with the trust score, and with goodness and trust."""
    from sfh_ml.network import load_data, predict

    data = load_data(path)
    noise = read_dataset(path, ["noise"])["noise"]
    runs = {
        "predict": {},
        "predict(trust=True)": {"trust": True, "trust_params": params},
        "predict(goodness=True)": {"goodness": True, "noise": noise},
        "predict(goodness=True, trust=True)": {
            "goodness": True,
            "trust": True,
            "noise": noise,
            "trust_params": params,
        },  # fmt: skip
    }
    predict(model, data["spectra"][:256], data["photometry"][:256])  # warm-up
    best = {}
    for _ in range(repeats):  # interleaved, the best of the repeats
        for name, kw in runs.items():
            t = time.perf_counter()
            predict(model, data["spectra"], data["photometry"], **kw)
            best[name] = min(best.get(name, np.inf), (time.perf_counter() - t) / len(data["spectra"]))
    return best


def world_path(folder, world, n, workers):
    """The benchmark's held-out set of one world (generated once, then reused)."""
    path = Path(folder) / f"world_{world}_n{n}_seed{SEED}.h5"
    config = world_config(world, n, SEED, snr=SNR_RANGE, chunk_size=250)
    generate(config, path, workers=workers, progress=True)
    return path


def world_rows(model, folder, n, workers, worlds=None):
    """One row per world: age bias and NMAD, the trust score's rates (its parameters fitted on the other
    worlds), the wrong-redshift false alarms and the coverage; and the features of each world."""
    from sfh_ml.constants import NMAD_FACTOR
    from sfh_ml.network import trust

    feats = {}
    for world in worlds or TEST_WORLDS:
        feats[world] = world_features(model, world_path(folder, world, n, workers))
        print(f"{world}: features", flush=True)
    rows = []
    for world, f in feats.items():
        others = [w for w in feats if w != world]
        params = trust.fit_trust(
            np.concatenate([feats[w]["features"] for w in others]),
            np.concatenate([feats[w]["age_error"] for w in others]),
        )
        value = trust.trust_score(f["features"], params)
        err = f["age_error"][np.isfinite(f["age_error"])]
        rows.append({"world": world, "age_bias": float(np.mean(err)),
                     "age_nmad": float(NMAD_FACTOR * np.median(np.abs(err - np.median(err)))),
                     **trust.trust_rates(value, f["age_error"], params["threshold"]),
                     "wrong_redshift_false_alarm": float(np.mean(f["wrong_redshift"])),
                     **{k: v for k, v in f.items() if k.startswith("coverage_")}})  # fmt: skip
    return rows, feats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a .keras network (default: the shipped one)")
    parser.add_argument("--n", type=int, default=1500, help="objects per world")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fit", action="store_true", help="fit on all worlds and print the parameters")
    parser.add_argument("--no-cost", action="store_true", help="skip the cost measurement")
    parser.add_argument("--mock", action="store_true", help="also the wrong-redshift runs on the mock cube")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "sfh_ml_trust"))
    args = parser.parse_args(argv)
    import sfh_ml
    from sfh_ml.network import trust

    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    model = sfh_ml.load_pretrained() if args.model is None else sfh_ml.load_model(args.model)
    tag = "shipped" if args.model is None else Path(args.model).stem
    rows, feats = world_rows(model, folder, args.n, args.workers)
    rng = np.random.default_rng(SEED)
    own = world_path(folder, "own", args.n, args.workers)
    dz = rng.choice([-1.0, 1.0], args.n) * rng.uniform(DZ_RANGES[0][0], DZ_RANGES[-1][1], args.n)
    shifted = world_features(model, own, dz=dz, rng=rng)
    lines = [
        f"Network: {tag}; {args.n} objects per world, S/N 10-100, seed {SEED}; trust parameters fitted "
        "on the other worlds (leave one world out).",
        "",
        "| world | wrong (> 0.3 dex) | hit rate | false alarms (< 0.15 dex) | ROC AUC "
        "| wrong-z flag at the right z |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['world']} | {r['wrong_fraction']:.2f} | {r['hit_rate']:.2f} | {r['false_alarm']:.2f} "
            f"| {r['auc']:.2f} | {r['wrong_redshift_false_alarm']:.3f} |"
        )
    lines += [
        "",
        "Coverage: within 1 sigma and within the 2-sigma interval (cumulative SFH; [M/H] per bin):",
        "",
    ]
    lines += [
        "| world | SFH 1 sigma | SFH 2 sigma | [M/H] 1 sigma | [M/H] 2 sigma |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [f"{r[f'coverage_{q}_{k}']:.3f}" for q in ("sfh_cum", "zh") for k in ("1sigma", "2sigma")]
        lines.append(f"| {r['world']} | " + " | ".join(cells) + " |")
    lines += ["", "Wrong redshift (own world's spectra, redshift off by dz):", ""]
    lines.append("| abs(dz) | n | flagged |")
    lines.append("|---|---|---|")
    for lo, hi in DZ_RANGES:
        sel = (np.abs(dz) >= lo) & (np.abs(dz) < hi)
        lines.append(f"| {lo:g}-{hi:g} | {sel.sum()} | {np.mean(shifted['wrong_redshift'][sel]):.3f} |")
    record = {"network": tag, "n": args.n, "worlds": rows}
    all_params = trust.fit_trust(
        np.concatenate([f["features"] for f in feats.values()]),
        np.concatenate([f["age_error"] for f in feats.values()]),
    )
    if not args.no_cost:
        spent = cost(model, own, all_params)
        record["seconds_per_spectrum"] = spent
        lines += ["", "| run | ms per spectrum |", "|---|---|"]
        lines += [f"| {name} | {1e3 * s:.3f} |" for name, s in spent.items()]
    if args.mock:
        record["mock"] = mock_runs(model, folder)
        lines += ["", "Mock galaxy (apply_cube, Voronoi S/N 30, its redshift + dz):", ""]
        lines += ["| dz | usable bins | wrong-redshift flag | untrusted |", "|---|---|---|---|"]
        lines += [
            f"| {r['dz']:+g} | {r['n_usable']} | {r['wrong_redshift']:.3f} | {r['untrusted']:.3f} |"
            for r in record["mock"]
        ]
    if args.fit:
        record["params"] = all_params
        lines += ["", "Fitted on all worlds (TRUST_PARAMS):", "", "    " + json.dumps(all_params)]
    text = "\n".join(lines)
    atomic_write_text(folder / f"trust_{tag}.md", text + "\n")
    atomic_write_text(folder / f"trust_{tag}.json", json.dumps(record, indent=1) + "\n")
    print(text)
    return record


if __name__ == "__main__":
    main()
