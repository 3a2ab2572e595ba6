"""ansible-lint's production profile passes for the playbooks, roles and collection."""

import subprocess
import sys
from pathlib import Path

from testbed import PROJECT_ROOT


def test_ansible_lint_production_profile_passes():
    lint = Path(sys.executable).parent / "ansible-lint"
    result = subprocess.run([str(lint), "--offline", "--nocolor"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "Profile 'production' was required, and it passed" in output
