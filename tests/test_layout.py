"""The package layout: public names resolve, and the parts that need no network start without Keras."""

import subprocess
import sys

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
