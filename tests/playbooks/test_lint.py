"""ansible-lint's production profile passes for the playbooks, roles and collection."""

import os
import subprocess
import sys
from pathlib import Path

from testbed import PROJECT_ROOT


def test_ansible_lint_production_profile_passes(tmp_path):
    lint = Path(sys.executable).parent / "ansible-lint"
    # A HOME of its own: ansible-lint puts ~/.ansible/collections first, where
    # an older install of this collection would shadow the checkout.
    result = subprocess.run([str(lint), "--offline", "--nocolor"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, HOME=str(tmp_path)))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "Profile 'production' was required, and it passed" in output
