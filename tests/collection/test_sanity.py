"""`ansible-test sanity` passes for the collection as Galaxy would ship it."""

import re
import subprocess

from testbed import PROJECT_ROOT


def test_ansible_test_sanity_passes():
    result = subprocess.run([str(PROJECT_ROOT / "scripts" / "sanity")], capture_output=True, text=True, timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    ran = re.findall(r'Running sanity test "([\w-]+)"', output)
    for test in ("validate-modules", "pylint", "pep8", "yamllint", "import", "compile", "ansible-doc"):
        assert test in ran, f"{test} did not run: {ran}"
    assert "ERROR" not in output
