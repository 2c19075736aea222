"""benchmarks/report.py assembles the benchmarks' records and the chapters' run times into one report
(tiny fake inputs: no benchmark is run)."""

import importlib.util
import json
from pathlib import Path

import pytest

MACHINE = {
    "cpu": "Test CPU 9000",
    "cores": 16,
    "cores_available": 4,
    "memory_gb": 31.2,
    "os": "Linux-test",
    "python": "3.11.7",
    "versions": {"numpy": "2.0.0", "keras": "3.8.0", "tensorflow": "2.18.0", "ppxf": "9.4.1"},
    "date": "2026-01-02 03:04 UTC",
    "commit": "abcdef123456",
}


@pytest.fixture(scope="module")
def report():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "report.py"
    spec = importlib.util.spec_from_file_location("benchmarks_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _chapter(folder, name, seconds, end="2026-01-01T10:00:00"):
    folder.mkdir(parents=True, exist_ok=True)
    nb = {"cells": [], "metadata": {"papermill": {"duration": seconds, "end_time": end}}, "nbformat": 4}
    (folder / f"{name}.ipynb").write_text(json.dumps(nb))


def _records(folder):
    folder.mkdir(parents=True, exist_ok=True)
    records = {
        "synthesis": {"benchmark": "synthesis", "n": 1000, "workers": 2, "to_hdf5_spectra_per_s": 500.0,
                      "paper_size_s": 330.0, "in_memory": [{"what": "default", "spectra_per_s": 900.0,
                                                            "setup_s": 4.0}]},
        "inference": {"benchmark": "inference", "n_infer": 1024, "train_steps": 2, "backend": "tensorflow",
                      "models": [{"version": "v2", "params": 246304, "infer_per_s": 2500.0,
                                  "train_per_s": 400.0}]},
        "compare_ppxf": {
            "benchmark": "compare_ppxf", "n_fit": 4, "regul": 3.0,
            "speed": {"pPXF": {"one_thread": 2.0, "wall": 1.1, "workers": 2},
                      "network (shipped)": {"one_thread": None, "wall": 0.002, "workers": None}},
            "scores": [
                {"method": m, "snr": "50", "quantity": q, "n": 4, "n_failed": 0, "bias": 0.01, "nmad": nmad,
                 "std": 0.2, "level": "object" if q == "cum_sfh_mae" else "exact"}
                for m, nmad in (("pPXF", 0.25), ("network (shipped)", 0.125))
                for q in ("mw_log_age", "mw_zh", "cum_sfh_mae")
            ],
        },
    }  # fmt: skip
    for name, record in records.items():
        (folder / f"{name}.json").write_text(json.dumps(record))


def test_report_holds_the_machine_every_record_and_the_book_times(report, tmp_path):
    _records(tmp_path / "bench")
    _chapter(tmp_path / "book", "01_a", 600.0)
    _chapter(tmp_path / "book", "02_b", 1200.0, end="2026-01-01T11:30:00")
    _chapter(tmp_path / "test", "01_a", 30.0)
    text = report.assemble(
        tmp_path / "bench", tmp_path / "book", tmp_path / "test", machine=MACHINE, quick=True
    )
    for fact in ("Test CPU 9000", "31.2 GiB", "Linux-test", "| ppxf | 9.4.1 |", "abcdef123456", "2026-01-02"):
        assert fact in text
    assert "Quick mode" in text
    # synthesis and network numbers are copied, the missing apply record is reported as not run
    assert "| synthesis: spectra per second (to HDF5) | 500 |" in text
    assert "| v2 | 246,304 | 2,500 | 400 |" in text
    assert "## Application to a cube (benchmarks/apply.py)\n\nnot run" in text
    # speed-up and cube time use the cores available (4): 2 s / 4 cores / 0.002 s = 250
    assert "| network speed-up over pPXF on this machine | 250x |" in text
    assert "| one PHANGS cube (40,000 Voronoi bins): pPXF / network | 5.56 h / 1.33 min |" in text
    assert "network (shipped) / pPXF | 0.125 / 0.250 |" in text
    # the book: the total of the last full run (30 min), each chapter, and the quick run
    assert "| `make book`: chapters' wall time | 30.0 min | 2 chapters, last run 2026-01-01T11:30 |" in text
    assert "| total | 1800 |" in text and "| `make test`: chapters' wall time | 0.5 min |" in text


def test_a_report_without_records_or_chapters_says_so(report, tmp_path):
    text = report.assemble(tmp_path / "none", tmp_path / "none", tmp_path / "none", machine=MACHINE)
    assert text.count("not run") == 4 and "no executed chapters found" in text and "Quick mode" not in text


def test_machine_info_names_the_cpu_memory_versions_and_date(report):
    info = report.machine_info()
    assert info["cores"] >= 1 and info["python"].count(".") == 2
    assert set(report.LIBRARIES) <= set(info["versions"]) and info["versions"]["numpy"] != "not installed"
    assert info["date"].endswith("UTC")


def test_main_writes_the_report_file(report, tmp_path):
    _records(tmp_path)
    out = report.main(
        ["--dir", str(tmp_path), "--book", str(tmp_path / "b"), "--test-chapters", str(tmp_path / "t")]
    )
    assert out == tmp_path / "REPORT.md" and out.read_text().startswith("# sfh_ml performance report")
