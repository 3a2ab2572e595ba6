"""tests/unit/conftest.py keeps the fast tier free of testbeds: checked on a copy of it, in a session of its own."""

import shutil
import subprocess
import sys
from pathlib import Path

UNIT_CONFTEST = Path(__file__).parents[1] / "conftest.py"

PROBES = '''
import pytest


@pytest.fixture
def vcsim():
    yield "a vcsim would start here"


def test_asks_for_vcsim(vcsim):
    pass


def test_needs_nothing():
    pass
'''


def run_pytest(folder):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(folder)],
                          cwd=folder, capture_output=True, text=True, timeout=120)


def test_a_test_asking_for_a_testbed_fixture_stops_the_session_before_any_test_runs(tmp_path):
    shutil.copy(UNIT_CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(PROBES)
    result = run_pytest(tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr  # pytest's usage error
    assert "tests/unit is the fast tier" in result.stderr
    assert "test_probe.py::test_asks_for_vcsim uses vcsim" in result.stderr
    assert "passed" not in result.stdout


def test_a_test_starting_vcsim_by_hand_fails_at_once(tmp_path):
    shutil.copy(UNIT_CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_by_hand.py").write_text(
        "from testbed import simulator\n\n\ndef test_by_hand():\n    with simulator.Vcsim():\n        pass\n")
    result = run_pytest(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "tests/unit is the fast tier: it starts no vcsim" in result.stdout
