"""Bad inputs and fault scenarios, one table: each case must end in a clear refusal or a flag.

Every row is ``(id, scenario, expectation)``: ``scenario(tmp_path)`` does what a user (or an
adversary) would do; ``expectation`` is either an exception type plus a regular expression its
message must match (the message names the file or the parameter and says what to do), or a check
function run on what the scenario returned (a per-object quality flag, an exit status, a file left
untouched). Add a case by adding a row to the table of its wing; nothing else changes.

Sections: synthesis and model data (``SYNTHESIS_CASES``), network and inference
(``NETWORK_CASES``), files and processes (``FILE_CASES``).
"""

import re

import pytest

# ----------------------------------------------------------------------------------------- helpers


def raises(exc, pattern):
    """Expectation: ``scenario`` raises ``exc`` whose message matches ``pattern`` (re.search)."""
    return ("raises", exc, pattern)


def check(fn):
    """Expectation: ``fn(result, tmp_path)`` passes (it asserts) on what ``scenario`` returned."""
    return ("check", fn)


# ----------------------------------------------------------------------------------------- synthesis
SYNTHESIS_CASES = [
    # (id, scenario(tmp_path), expectation)
]

# ----------------------------------------------------------------------------------------- network
NETWORK_CASES = [
    # (id, scenario(tmp_path), expectation)
]

# ----------------------------------------------------------------------------------------- files
FILE_CASES = [
    # (id, scenario(tmp_path), expectation)
]

CASES = SYNTHESIS_CASES + NETWORK_CASES + FILE_CASES


@pytest.mark.parametrize("scenario, expectation", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(scenario, expectation, tmp_path):
    if expectation[0] == "raises":
        _, exc, pattern = expectation
        with pytest.raises(exc) as info:
            scenario(tmp_path)
        assert re.search(pattern, str(info.value)), f"message {str(info.value)!r} does not match {pattern!r}"
    else:
        expectation[1](scenario(tmp_path), tmp_path)
