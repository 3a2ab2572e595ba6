"""molecule's default scenario: the roles converge against test guests, Ray runs everywhere, idempotent."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import PROJECT_ROOT, leftovers
from testbed.appliance import DEFAULT_CACHE_DIR

pytestmark = pytest.mark.slow


def test_molecule_default_scenario_converges_verifies_and_is_idempotent(testbed_prerequisites, tmp_path):
    before = leftovers.snapshot()
    venv_bin = Path(sys.executable).parent
    # A HOME of its own: molecule installs the collection under ~/.ansible,
    # where it would outlive the test and shadow the checkout. The caches (the
    # test OVA, the guests' image) stay where every other test finds them.
    environment = dict(os.environ, PATH=f"{venv_bin}:{os.environ['PATH']}", NO_COLOR="1", HOME=str(tmp_path),
                       ANSIBLE_HOME=str(tmp_path / ".ansible"), XDG_CACHE_HOME=str(DEFAULT_CACHE_DIR.parent))
    result = subprocess.run([str(venv_bin / "molecule"), "test"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=900, env=environment)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for step in ("create", "converge", "idempotence", "verify", "destroy"):
        assert f"[default > {step}] Executed: Successful" in output, f"molecule {step} did not succeed"
    assert "failed=0" in output
    assert leftovers.left_behind(before, leftovers.snapshot()) == {}
