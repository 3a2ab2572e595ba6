"""This machine has every prerequisite, and a testbed test without one fails with a message, never skips.

The checks' messages, with the machine faked, are tested in tests/unit/testbed/test_prereqs.py.
"""

import subprocess
import sys

from testbed import PROJECT_ROOT, prereqs


def test_the_machine_running_this_suite_has_every_prerequisite():
    assert prereqs.missing_prerequisites() == []


def test_a_testbed_test_without_root_fails_loudly_instead_of_skipping():
    as_non_root = (
        "import os, sys, pytest; os.geteuid = lambda: 1000; "
        "sys.exit(pytest.main(['-p', 'no:cacheprovider', '-rA', "
        "'tests/testbed/test_simulator.py::test_only_the_configured_password_logs_in']))"
    )
    result = subprocess.run([sys.executable, "-c", as_non_root], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout
    assert "1 error" in result.stdout
    assert "skipped" not in result.stdout
    assert "test guests need root" in result.stdout
