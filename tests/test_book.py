"""Tests of sfh_ml._book, which removes TensorFlow's start-up and retracing noise from executed chapters.

The noise lines are those TensorFlow 2.21 wrote into the chapters of this book (copied from executed
notebooks); the real warning must survive.
"""

import json

import pytest

from sfh_ml._book import is_noise, tidy_file, tidy_outputs

ABSL = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = (
    "I0000 00:00:1795622296.295635    7030 port.cc:153] oneDNN custom operations are on. You may see "
    "slightly different numerical results due to floating-point round-off errors from different "
    "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`."
)
NODEDEF = (
    "E0000 00:00:1795622391.479442    8470 node_def_util.cc:682] NodeDef mentions attribute "
    "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset; signature=...>"
)
RETRACING = (
    "WARNING:tensorflow:5 out of the last 7 calls to <function TensorFlowTrainer.make_predict_function."
    "<locals>.one_step_on_data_distributed at 0x7fdbf3cd7600> triggered tf.function retracing. Tracing "
    "is expensive and the excessive number of tracings could be due to (1) creating @tf.function ..."
)
CPU_GUARD = (
    "2026-01-05 10:00:00.123456: I tensorflow/core/platform/cpu_feature_guard.cc:210] This TensorFlow "
    "binary is optimized to use available CPU instructions in performance-critical operations."
)
REAL = "/path/to/sfh_ml/network/inference.py:80: UserWarning: 3 objects have no usable photometry"


@pytest.mark.parametrize("line", [ABSL, ONEDNN, NODEDEF, RETRACING, CPU_GUARD])
def test_tensorflow_noise_is_recognised(line):
    assert is_noise(line)


@pytest.mark.parametrize(
    "line",
    [
        REAL,
        "E0000 00:00:1795622391.479442    8470 some_op.cc:12] Invalid argument: a real failure",
        "WARNING:tensorflow:Your input ran out of data; interrupting training.",
        "train.h5: 100%|██████████| 600/600",
    ],
)
def test_other_lines_are_kept(line):
    assert not is_noise(line)


def _notebook(outputs):
    return {"cells": [{"cell_type": "code", "source": "import sfh_ml", "outputs": outputs}], "nbformat": 4}


def test_noise_is_removed_from_both_streams_and_the_chapter_output_stays():
    nb = _notebook(
        [
            {"output_type": "stream", "name": "stderr", "text": [ABSL + "\n", ONEDNN[:60]]},
            {"output_type": "stream", "name": "stderr", "text": ONEDNN[60:] + "\n" + REAL + "\n"},
            # inside a kernel, TensorFlow's Python logger writes to stdout, between the chapter's lines
            {
                "output_type": "stream",
                "name": "stdout",
                "text": ["v1  2 epochs\n", RETRACING + "\n", "v2  2 epochs\n"],
            },
        ]
    )
    assert tidy_outputs(nb) == 3  # the oneDNN line, split across two outputs, counts once
    outputs = nb["cells"][0]["outputs"]
    assert [o["name"] for o in outputs] == ["stderr", "stdout"]
    assert outputs[0]["text"] == REAL + "\n"
    assert outputs[1]["text"] == "v1  2 epochs\nv2  2 epochs\n"


def test_outputs_left_empty_are_dropped(tmp_path):
    nb = _notebook(
        [
            {"output_type": "stream", "name": "stderr", "text": [ABSL + "\n", ONEDNN + "\n"]},
            {"output_type": "display_data", "data": {"text/plain": "<Figure>"}, "metadata": {}},
            {"output_type": "stream", "name": "stderr", "text": RETRACING + "\n"},
        ]
    )
    path = tmp_path / "chapter.ipynb"
    path.write_text(json.dumps(nb))
    assert tidy_file(path) == 3
    assert [o["output_type"] for o in json.loads(path.read_text())["cells"][0]["outputs"]] == ["display_data"]
    before = path.stat().st_mtime_ns
    assert tidy_file(path) == 0  # nothing left to remove: the file is not rewritten
    assert path.stat().st_mtime_ns == before


def test_split_streams_are_merged_in_the_file_even_without_noise(tmp_path):
    # a training log arrives as many small stream outputs: without noise to remove, the merge must
    # still be written back, or the page shows one box per piece
    pieces = [{"output_type": "stream", "name": "stdout", "text": f"epoch {i}\n"} for i in range(5)]
    path = tmp_path / "chapter.ipynb"
    path.write_text(json.dumps(_notebook(pieces)))
    assert tidy_file(path) == 0
    outputs = json.loads(path.read_text())["cells"][0]["outputs"]
    assert len(outputs) == 1
    assert "".join(outputs[0]["text"]) == "".join(f"epoch {i}\n" for i in range(5))


def test_a_progress_bar_keeps_only_its_last_state():
    states = ("  0%|  | 0/700", " 50%|# | 350/700", "100%|##| 700/700")
    bar = "\r".join(f"training v2.keras: {s}" for s in states) + "\n"
    nb = _notebook([{"output_type": "stream", "name": "stderr", "text": bar + REAL + "\n"}])
    tidy_outputs(nb)
    assert nb["cells"][0]["outputs"][0]["text"] == "training v2.keras: 100%|##| 700/700\n" + REAL + "\n"
