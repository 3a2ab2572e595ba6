"""A missing prerequisite fails with a message saying what to do; it never skips."""

import subprocess
import sys

from testbed import PROJECT_ROOT, prereqs


def test_not_root_is_reported_with_how_to_run(monkeypatch):
    monkeypatch.setattr(prereqs.os, "geteuid", lambda: 1000)
    problems = prereqs.missing_prerequisites()
    assert any("need root" in p and "sudo scripts/test" in p for p in problems)


def test_missing_commands_name_their_debian_packages_and_the_setup_script(monkeypatch, tmp_path):
    monkeypatch.setattr(prereqs, "SEARCH_PATH", str(tmp_path))  # a PATH with nothing on it
    [problem] = [p for p in prereqs.missing_prerequisites() if "missing commands" in p]
    for package in ("iproute2", "openssh-server", "openssh-client", "qemu-utils", "tini", "util-linux"):
        assert package in problem
    assert "scripts/setup" in problem


def test_missing_vcsim_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setattr(prereqs, "VCSIM_BIN", tmp_path / "vcsim")
    assert any("scripts/setup" in p and "Go" in p for p in prereqs.missing_prerequisites())


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
