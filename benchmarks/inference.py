"""Inference and training throughput of the v1 and v2 networks, and sfh_ml.predict's own cost.

Builds each network for MUSE spectra (3681 pixels), 5 HST bands and the 19 default age bins, and
prints: parameter count, batched inference speed (batch 1024, median of 3 passes after 2 warm-up passes)
and training speed (``train_on_batch``, batch 256, after 2 warm-up steps). Then, on the shipped
network (:func:`sfh_ml.load_pretrained`) and ``--n`` random spectra at its default batch size, the
network alone (its compiled predict step, batch by batch) against :func:`sfh_ml.network.predict` on
the same data (input checks, masking, quality flags and the output dictionary included), passes of
the two interleaved (median of ``--repeats``), and predict's overhead in per cent of the network's
time. Numbers only, no assertions. Synthetic random inputs: the speed does not depend on the values.
The machine's other load counts: run it on an idle machine for numbers to quote.

Usage: ``python benchmarks/inference.py [--n-infer 8192] [--train-steps 8] [--versions v1 v2] [--n 20000]
[--repeats 5] [--json PATH]`` (``--versions`` with no name: only the overhead; ``--n 0``: no overhead;
``--json``: also write the numbers to PATH, for ``benchmarks/report.py``).
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from sfh_ml.network import build_model, get_metadata, make_targets, predict  # noqa: E402

__all__ = ["inference_rate", "training_rate", "predict_overhead", "main"]

N_WAVE, N_BANDS, N_BINS = 3681, 5, 19  # 19: sfh_ml.synthesis.sfh.default_age_bins()
WAVE_AA = 4749.89 + 1.25 * np.arange(N_WAVE)


def _inputs(n, rng):
    """Positive smooth-ish spectra (n, N_WAVE) and photometry (n, N_BANDS), float32."""
    spectrum = (1.0 + 0.1 * rng.standard_normal((n, N_WAVE))) * rng.uniform(1e-3, 1e2, (n, 1))
    photometry = spectrum[:, :: N_WAVE // N_BANDS][:, :N_BANDS]
    return {"spectrum": spectrum.astype(np.float32), "photometry": photometry.astype(np.float32)}


def inference_rate(model, x, batch_size=1024, warmup=2, repeats=3):
    """Spectra per second of ``model.predict`` over all of ``x``: median of ``repeats`` passes.

    The first passes trace the graph and let oneDNN cache its kernels; they are not timed.
    """
    for _ in range(warmup):
        model.predict(x, batch_size=batch_size, verbose=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(x, batch_size=batch_size, verbose=0)
        times.append(time.perf_counter() - start)
    return len(x["spectrum"]) / float(np.median(times))


def _network_alone(model, x, batch_size):
    """The network's own work: its compiled predict step over ``x`` in batches (predict_on_batch)."""
    n = len(x["spectrum"])
    for start in range(0, n, batch_size):
        model.predict_on_batch({k: v[start : start + batch_size] for k, v in x.items()})


def predict_overhead(model, n, batch_size=None, repeats=5, seed=0):
    """Spectra per second of the network alone and of :func:`sfh_ml.network.predict` on the same data.

    Parameters
    ----------
    model : keras.Model
        A network that records its grid and bands (the shipped one).
    n : int
        Random spectra on the model's grid, with fluxes in the bands at the spectra's level (so
        that every object is usable and predict runs every step).
    batch_size : int, optional
        Default: :func:`sfh_ml.network.predict`'s own.
    repeats : int
        Timed passes of each, interleaved (one of each after one warm-up pass of each).

    Returns
    -------
    dict
        ``n``, ``batch_size``, ``repeats``, ``network_per_s``, ``predict_per_s`` (medians) and
        ``overhead_percent`` (predict's time over the network's, minus 1, in per cent).
    """
    import inspect

    if batch_size is None:
        batch_size = inspect.signature(predict).parameters["batch_size"].default
    meta = get_metadata(model)
    rng = np.random.default_rng(seed)
    level = rng.uniform(1e-3, 1e2, (n, 1))  # flux density per Angstrom, any units
    spectra = ((1.0 + 0.1 * rng.standard_normal((n, meta["n_wave"]))) * level).astype(np.float32)
    photometry = (level * rng.uniform(0.8, 1.2, (n, meta["n_bands"]))).astype(np.float32)
    x = {"spectrum": spectra, "photometry": photometry}
    runs = {
        "network": lambda: _network_alone(model, x, batch_size),
        "predict": lambda: predict(model, spectra, photometry, batch_size=batch_size),
    }
    times = {name: [] for name in runs}
    for rep in range(repeats + 1):  # the first pass of each warms up (traces, compiles): not timed
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if rep:
                times[name].append(time.perf_counter() - start)
    network_s, predict_s = (float(np.median(times[name])) for name in runs)
    return {
        "n": n,
        "batch_size": batch_size,
        "repeats": repeats,
        "network_per_s": n / network_s,
        "predict_per_s": n / predict_s,
        "overhead_percent": 100.0 * (predict_s / network_s - 1.0),
    }


def training_rate(model, x, y, steps, batch_size=256, warmup=2):
    """Spectra per second of ``train_on_batch`` over ``steps`` batches (after ``warmup`` steps)."""
    batch = lambda d, i: {k: v[i * batch_size : (i + 1) * batch_size] for k, v in d.items()}
    for i in range(warmup):
        model.train_on_batch(batch(x, i), batch(y, i))
    start = time.perf_counter()
    for i in range(steps):
        model.train_on_batch(batch(x, warmup + i), batch(y, warmup + i))
    return steps * batch_size / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-infer", type=int, default=8192, help="spectra to predict (default 8192)")
    parser.add_argument("--train-steps", type=int, default=8, help="timed training steps (default 8)")
    parser.add_argument("--versions", nargs="*", default=["v1", "v2"])
    parser.add_argument(
        "--n", type=int, default=20_000, help="spectra for predict's overhead on the shipped network (20000)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed passes of the overhead (default 5)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the numbers here")
    args = parser.parse_args(argv)
    record = {
        "benchmark": "inference",
        "n_infer": args.n_infer,
        "train_steps": args.train_steps,
        "models": [],
    }
    rng = np.random.default_rng(0)
    x = _inputs(max(args.n_infer, (args.train_steps + 2) * 256), rng)
    sfh = rng.dirichlet(np.ones(N_BINS), len(x["spectrum"]))
    y = make_targets(sfh, rng.uniform(-1.7, 0.2, sfh.shape))
    x_infer = {k: v[: args.n_infer] for k, v in x.items()}
    print(
        f"backend {keras.backend.backend()}, {os.cpu_count()} CPUs; n_wave={N_WAVE}, n_bands={N_BANDS}, "
        f"n_bins={N_BINS}"
    )
    if args.versions:
        print(f"{'model':6s} {'params':>9s} {'infer/s (b=1024)':>17s} {'train/s (b=256)':>16s}")
    for version in args.versions:
        keras.utils.set_random_seed(0)
        model = build_model(version, N_WAVE, N_BANDS, N_BINS, wave_aa=WAVE_AA)
        infer = inference_rate(model, x_infer)
        train = training_rate(model, x, y, args.train_steps)
        print(f"{version:6s} {model.count_params():9d} {infer:17.0f} {train:16.0f}", flush=True)
        record["models"].append(
            {"version": version, "params": model.count_params(), "infer_per_s": infer, "train_per_s": train}
        )
    if args.n > 0:
        import sfh_ml

        try:
            model = sfh_ml.load_pretrained()
        except sfh_ml.network.PretrainedError as err:
            print(f"no predict overhead: {err}")
        else:
            model = model[0] if isinstance(model, list) else model
            over = predict_overhead(model, args.n, repeats=args.repeats)
            what = f"{over['n']} spectra, batch {over['batch_size']}, median of {over['repeats']} passes"
            print(f"shipped network, {what}:")
            print(f"  network alone (compiled predict step) {over['network_per_s']:8,.0f} spectra/s")
            print(f"  sfh_ml.predict                        {over['predict_per_s']:8,.0f} spectra/s")
            overhead = over["overhead_percent"]
            print(f"  predict's overhead                    {overhead:8.1f} % of the network's time")
            record["predict"] = over
    record["backend"] = keras.backend.backend()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
