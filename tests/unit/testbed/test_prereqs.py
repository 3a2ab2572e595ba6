"""A missing prerequisite is named with what to do about it: the checks themselves, with the machine faked.

The machine's real prerequisites, and that a testbed test run without root
fails loudly, are checked in tests/testbed/test_prerequisites.py.
"""

import subprocess

from testbed import PROJECT_ROOT, prereqs


def test_not_root_is_reported_with_how_to_run(monkeypatch):
    monkeypatch.setattr(prereqs.os, "geteuid", lambda: 1000)
    problems = prereqs.missing_prerequisites()
    assert any("need root" in p and "sudo scripts/test" in p for p in problems)


def test_missing_commands_name_their_debian_packages_and_the_setup_script(monkeypatch, tmp_path):
    monkeypatch.setattr(prereqs, "SEARCH_PATH", str(tmp_path))  # a PATH with nothing on it
    [problem] = [p for p in prereqs.missing_prerequisites() if "missing Debian packages" in p]
    for package in ("iproute2", "openssh-server", "openssh-client", "qemu-utils", "tini", "util-linux", "rsync"):
        assert package in problem
    assert "scripts/setup" in problem


def test_setup_installs_exactly_the_packages_the_check_probes():
    """scripts/setup and the check read one list, so neither can miss what the other needs."""
    listed = subprocess.run([str(PROJECT_ROOT / "scripts" / "setup"), "--list-debian-packages"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed == [package for package, _ in prereqs.debian_prerequisites()]
    # Every command the testbed runs from a Debian package is probed, hence installed by setup.
    probes = " ".join(probe for _, probe in prereqs.debian_prerequisites())
    for command in ("ip", "unshare", "mount", "sshd", "ssh", "ssh-keygen", "qemu-img", "tini", "rsync", "cloud-init",
                    "sudo", "nsenter"):
        assert f"command -v {command}" in probes
    assert "/usr/bin/python3 -c 'import ensurepip, venv'" in probes


def test_an_old_go_is_refused_with_the_version_govmomi_needs(tmp_path):
    """install-vcsim checks Go against go.mod before building, and names both versions."""
    fake_go = tmp_path / "go"
    fake_go.write_text("#!/bin/sh\necho go1.19.8\n")
    fake_go.chmod(0o755)
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    (checkout / "scripts" / "install-vcsim").write_bytes((PROJECT_ROOT / "scripts" / "install-vcsim").read_bytes())
    (checkout / "scripts" / "install-vcsim").chmod(0o755)
    (checkout / "testbed").mkdir()
    (checkout / "testbed" / "vcsim").symlink_to(PROJECT_ROOT / "testbed" / "vcsim")
    result = subprocess.run([str(checkout / "scripts" / "install-vcsim")], capture_output=True, text=True,
                            env={"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "Go 1.19.8 is too old: govmomi v0.56.0 needs Go >= 1.25.0" in result.stderr
    assert not (checkout / ".tools").exists()


def test_missing_vcsim_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setattr(prereqs, "VCSIM_BIN", tmp_path / "vcsim")
    assert any("scripts/setup" in p and "Go" in p for p in prereqs.missing_prerequisites())
