"""What `testbed demo` refuses before it starts anything."""

import os
import subprocess
import sys

from testbed import PROJECT_ROOT

TESTBED = [sys.executable, "-m", "testbed"]


def test_testbed_demo_against_a_real_vcenter_needs_a_vars_file():
    result = subprocess.run([*TESTBED, "demo"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, VMWARE_HOST="vcenter.example.com"))
    assert result.returncode == 1
    assert "give your cluster's vars file: --vars FILE" in result.stderr
