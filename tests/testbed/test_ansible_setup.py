"""Ansible from a plain checkout: this collection and the VMware collections are found,
and a playbook reaches the testbed with AWX-style VMWARE_* credentials only."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

from testbed import PROJECT_ROOT

VENV_BIN = Path(sys.executable).parent


def ansible(*command, env=None):
    environment = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **(env or {})}
    return subprocess.run(command, cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=300)


def test_ansible_finds_this_collection_in_the_checkout_and_the_vmware_collections_from_pypi():
    listed = ansible("ansible-galaxy", "collection", "list")
    assert listed.returncode == 0, listed.stderr
    sections = {}
    for line in listed.stdout.splitlines():
        if line.startswith("# "):
            current = line[2:]
        elif line and not line.startswith(("Collection", "-")):
            name, version = line.split()[:2]
            sections[name] = (current, version)
    version = yaml.safe_load((PROJECT_ROOT / "galaxy.yml").read_text())["version"]
    assert sections["ray_vsphere.cluster"] == (str(PROJECT_ROOT / "collections" / "ansible_collections"), version)
    assert sections["community.vmware"][1] == "5.10.0"


def test_vcenter_info_playbook_reads_the_testbed_with_credentials_only_from_the_environment(vcsim):
    result = ansible("ansible-playbook", "playbooks/vcenter_info.yml", env=vcsim.endpoint.environment())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for expected in ("cluster: '/DC0/host/DC0_C0'", "cluster: '/DC0/host/DC0_C1'", "/DC0/datastore/LocalDS_0",
                     "/DC0/datastore/LocalDS_1", "(govmomi simulator)"):
        assert expected in result.stdout
    assert vcsim.endpoint.password not in result.stdout + result.stderr
