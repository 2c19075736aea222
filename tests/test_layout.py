"""The package layout: public names resolve, and the parts that need no network start without Keras."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest


def test_every_public_name_of_the_package_and_its_wings_resolves():
    import sfh_ml.network
    import sfh_ml.observations
    import sfh_ml.synthesis

    for module in (sfh_ml, sfh_ml.synthesis, sfh_ml.network, sfh_ml.observations):
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"{module.__name__}.__all__ lists undefined names {missing}"


@pytest.mark.parametrize(
    "statement",
    [
        "import sfh_ml",
        "import sfh_ml.plotting",
        "import sfh_ml.network.metrics",
        "import sfh_ml.observations",
        "import sfh_ml; sfh_ml.decode_quality([0, 1, 1 << 13]); sfh_ml.read_spectra",
        "from sfh_ml.cli import build_parser; build_parser()",
    ],
)
def test_data_and_plotting_code_starts_without_keras(statement):
    code = f"import sys; {statement}; sys.exit(3 if 'keras' in sys.modules else 0)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"`{statement}` imported Keras (or failed): {result.stderr[-2000:]}"


def test_a_network_name_loads_keras_on_first_use():
    code = "import sys, sfh_ml; sfh_ml.predict; sys.exit(0 if 'keras' in sys.modules else 3)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_package_exports_one_short_explicit_list():
    import sfh_ml

    assert sfh_ml.__all__ == ["__version__", *sfh_ml.PUBLIC]
    assert len(sfh_ml.PUBLIC) <= 25, (
        "the top level is for the few names a user needs; the rest live in the wings"
    )
    for name, where in sfh_ml.PUBLIC.items():
        wing = importlib.import_module(where, "sfh_ml")
        assert name in wing.__all__, f"sfh_ml.{name} comes from {wing.__name__}, which does not export it"
        assert getattr(sfh_ml, name) is getattr(wing, name)
    assert set(sfh_ml.PUBLIC) <= set(dir(sfh_ml))
    with pytest.raises(AttributeError, match="no attribute 'Synthesizer'"):
        sfh_ml.Synthesizer  # noqa: B018  (a wing's name, not the package's)


def test_the_lazy_import_machinery_is_written_once():
    root = Path(__file__).resolve().parents[1] / "sfh_ml"
    defined = [
        p.relative_to(root).as_posix() for p in root.rglob("*.py") if "def __getattr__" in p.read_text()
    ]
    assert defined == ["_lazy.py"], f"module-level __getattr__ written outside sfh_ml/_lazy.py: {defined}"


def _public_modules():
    import sfh_ml

    return {"sfh_ml", *(f"sfh_ml.{m}" for m in sfh_ml._MODULES)}


def _is_public(module_name, public):
    """A module is public if the package lists it, or its parent is public and exports it by name."""
    if module_name in public:
        return True
    parent, _, child = module_name.rpartition(".")
    return bool(parent) and _is_public(parent, public) and child in importlib.import_module(parent).__all__


def _chapter_imports(path):
    """(cell number, module, name) of every ``sfh_ml`` import in a chapter's code cells."""
    import nbformat

    for number, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type != "code":
            continue
        source = "\n".join(
            line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sfh_ml":
                for alias in node.names:
                    yield number, node.module, alias.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "sfh_ml":
                        parent, _, child = alias.name.rpartition(".")
                        yield number, parent or alias.name, child if parent else None


CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "book").glob("*.ipynb"))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapters_import_only_public_names(chapter):
    public = _public_modules()
    private = []
    for cell, module, name in _chapter_imports(chapter):
        if not _is_public(module, public):
            private.append(f"cell {cell}: from {module} import {name} (module {module} is not public)")
        elif name is not None and (
            name.startswith("_") or name not in importlib.import_module(module).__all__
        ):
            if not _is_public(f"{module}.{name}", public):
                private.append(
                    f"cell {cell}: from {module} import {name} ({name} is not in {module}.__all__)"
                )
    assert not private, f"{chapter.name} imports private names: " + "; ".join(private)


def test_the_public_names_check_catches_a_private_import(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from sfh_ml.observations.binning import _row_step\nimport numpy")]
    path = tmp_path / "chapter.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(AssertionError, match="_row_step"):
        test_chapters_import_only_public_names(path)
