"""`ansible-playbook` with the ray_vsphere.cluster.progress callback shows a module's progress while it runs.

A real ansible-playbook process, beside its default stdout callback, against
vcsim: node_deploy imports the test OVA (upload events) and waits for an IP
that never comes (no guest simulator here), so its wait events show and the
deploy fails, removing its node.
"""

import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import PLACEMENT

ROOT = Path(__file__).resolve().parents[2]


def test_an_import_and_a_wait_for_ips_show_their_progress_under_the_running_task(vcsim, test_ova, tmp_path,
                                                                                 cluster_key_file):
    playbook = tmp_path / "deploy.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [
        {"name": "Deploy one node", "ray_vsphere.cluster.node_deploy": dict(
            PLACEMENT, cluster_name="talkative", ovf=str(test_ova), cluster_key_file=str(cluster_key_file),
            wait_for_ip=True, ip_timeout=3)}]}]))
    env = dict(os.environ, **vcsim.endpoint.environment(), XDG_CACHE_HOME=str(tmp_path / "cache"),
               ANSIBLE_CALLBACKS_ENABLED="ray_vsphere.cluster.progress", ANSIBLE_NOCOLOR="1")
    env.pop("RAY_VSPHERE_PROGRESS_FILE", None)
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), str(playbook)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output  # the node got no IP: the task failed
    lines = output.splitlines()
    task_line = next(index for index, line in enumerate(lines) if line.startswith("TASK [Deploy one node]"))
    failure_line = next(index for index, line in enumerate(lines) if line.startswith("fatal: [localhost]"))
    progress = lines[task_line:failure_line]  # shown while the task ran, before its result
    assert any(line.startswith("  Deploy one node: uploaded ray-template-") and "'s disks: 100% of" in line
               for line in progress), output
    assert "  Deploy one node: waiting for IPs: 0 of 1" in progress, output
    assert "VMware Tools not running" in lines[failure_line], output
    assert vcsim.endpoint.password not in output
    leftover = [name for name in os.listdir(tmp_path) if name.startswith("ray-vsphere-progress-")]
    assert leftover == [] and not list(Path("/tmp").glob("ray-vsphere-progress-*")), "the event file is removed"
