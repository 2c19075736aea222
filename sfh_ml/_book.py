"""Tidy executed chapters before the HTML book is rendered: ``python sfh_ml/_book.py NOTEBOOK...``.

TensorFlow writes start-up lines to the C-level stderr when it is imported (absl's "All log messages
before absl::InitializeLog()", the oneDNN notice, CPU-feature and CUDA-registration lines, and on the
first prediction a harmless complaint about a tf.data attribute). It also logs "triggered
tf.function retracing" when several models are trained or run in one process, as chapters 2 and 3
do: Keras traces one ``tf.function`` per model, and TensorFlow counts the traces of all of them
together because they share the same Python code, so six models look like one function retraced six
times. That warning goes through Python's logging, to stdout inside a Jupyter kernel.

The kernel forwards all of this into the notebook as stream output. This module removes exactly those
lines from the stream outputs (and outputs left empty) and nothing else, so that a real warning or
traceback still shows in the book. It also joins consecutive pieces of the same stream into one
block, and keeps only the last state of a line that a progress bar (tqdm) rewrote with carriage
returns, as a terminal would show it: one bar, not one line per update. ``make`` runs it on every
executed chapter, as a plain script (it imports nothing from ``sfh_ml``, so it works whatever state
the package is in).
"""

import json
import re
import sys

__all__ = ["NOISE_PATTERNS", "is_noise", "tidy_outputs", "tidy_file"]

NOISE_PATTERNS = tuple(
    re.compile(p)
    for p in (
        r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
        # C++ INFO and WARNING lines in the absl format, "I0000 00:00:1795622296.29 7030 port.cc:153] ..."
        # (before absl is initialised the seconds field holds the whole Unix time)
        r"^[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+\.(cc|h):\d+\] ",
        # the same in TensorFlow's older format, "2026-01-01 12:00:00.000000: I tensorflow/...cc:42] ..."
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] [\w./-]+\.(cc|h):\d+\] ",
        # second line of the CPU-feature notice of cpu_feature_guard.cc
        r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags",
        # CUDA libraries looked for on a machine without a GPU (logged at error level, harmless)
        r"^E\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+\.cc:\d+\] Unable to register cu(DNN|FFT|BLAS) factory",
        # tf.data of this TensorFlow build sets an attribute its own C++ MapDataset op does not define;
        # the attribute is dropped and the data are unaffected (logged at error level, on first predict)
        r"^E\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ node_def_util\.cc:\d+\] NodeDef mentions attribute "
        r"use_unbounded_threadpool which is not in the op definition",
        r"^WARNING:tensorflow:\d+ out of the last \d+ calls to .* triggered tf\.function retracing\.",
    )
)


def is_noise(line):
    """True if ``line`` (without its newline) is TensorFlow start-up or retracing noise."""
    return any(p.search(line) for p in NOISE_PATTERNS)


def _merge_streams(outputs):
    """Join consecutive stream outputs of the same name, so that no line is split between two."""
    merged = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if out.get("output_type") == "stream" and prev and prev.get("output_type") == "stream":
            if prev["name"] == out["name"]:
                prev["text"] = "".join(prev["text"]) + "".join(out["text"])
                continue
        merged.append(dict(out))
    return merged


def _resolve_carriage_returns(text):
    """What a terminal shows of ``text``: each line's text after its last carriage return."""
    lines = text.split("\n")
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines)


def tidy_outputs(notebook):
    """Remove the noise lines from the stream outputs (stderr and stdout) of a notebook, in place.

    Parameters
    ----------
    notebook : dict
        A notebook in the nbformat 4 JSON structure.

    Returns
    -------
    int
        Number of lines removed.
    """
    removed = 0
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code" or not cell.get("outputs"):
            continue
        outputs = []
        for out in _merge_streams(cell["outputs"]):
            if out.get("output_type") == "stream":
                lines = _resolve_carriage_returns("".join(out["text"])).splitlines(keepends=True)
                kept = [line for line in lines if not is_noise(line.rstrip("\r\n"))]
                removed += len(lines) - len(kept)
                if not kept:
                    continue
                out["text"] = "".join(kept)
            outputs.append(out)
        cell["outputs"] = outputs
    return removed


def tidy_file(path):
    """:func:`tidy_outputs` on a notebook file, rewritten only if that changed it.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    int
        Number of lines removed.
    """
    with open(path, encoding="utf-8") as f:
        notebook = json.load(f)
    before = json.dumps(notebook, sort_keys=True)
    removed = tidy_outputs(notebook)
    if json.dumps(notebook, sort_keys=True) != before:  # noise removed, streams merged, bars resolved
        with open(path, "w", encoding="utf-8") as f:
            json.dump(notebook, f, indent=1, ensure_ascii=False)
            f.write("\n")
    return removed


def main(argv=None):
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m sfh_ml._book NOTEBOOK.ipynb...", file=sys.stderr)
        return 2
    for path in paths:
        print(f"{path}: {tidy_file(path)} lines of TensorFlow start-up or retracing noise removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
