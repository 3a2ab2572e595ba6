"""What the provider shows while it works (progress.py, summary.py) and what a failed run says (runs.py).

The runs here are real ansible-runner runs of ansible-playbook; the event
file is written by the collection's own _progress.report, as a module does.
"""

import os
import re
import threading
from pathlib import Path

import pytest

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _progress
from ray_provider import progress, summary
from ray_provider.config import VcenterCredentials
from ray_provider.runs import PlaybookFailed, PlaybookRuns, failure_text

PASSWORD = "Canary-Passw0rd-4711"


@pytest.fixture
def credentials():
    return VcenterCredentials({"vcenter_hostname": "127.0.0.1", "vcenter_username": "ray", "vcenter_port": 9,
                               "vcenter_validate_certs": False}, environ={"VMWARE_PASSWORD": PASSWORD})


def test_the_events_a_module_appends_are_shown_while_the_run_lasts_one_line_each(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "TAIL_INTERVAL_S", 0.05)
    events = tmp_path / "progress.jsonl"
    monkeypatch.setenv(_progress.PROGRESS_FILE_VARIABLE, str(events))
    shown_early = threading.Event()
    with progress.ProgressTail(events, "create_nodes"):
        upload = _progress.Transfer("upload", "ray-head", 4 * 2**20)
        upload.sent(2**20)
        _progress.report("ips", have=2, of=3)
        for _ in range(100):  # shown while the run goes on, not only at its end
            if "waiting for IPs: 2 of 3" in capsys.readouterr().out:
                shown_early.set()
                break
            threading.Event().wait(0.05)
        upload.sent(4 * 2**20, final=True)
        with open(events, "a") as half:
            half.write('{"event": "ips", "have": 3')  # a line still being written is not read
    assert shown_early.is_set()
    out = capsys.readouterr().out
    assert re.search(r"create_nodes: uploaded ray-head's disks: 100% of 4\.0 MiB, [\d.]+ MiB/s", out), out
    assert "3 of" not in out


def test_an_image_url_is_shown_without_its_user_password_and_signature():
    assert _progress.shown_location("https://joe:s3cret@images.example.com/node.ova?X-Amz-Signature=abc#x") == \
        "https://images.example.com/node.ova"
    assert _progress.shown_location("/srv/images/node.ova") == "/srv/images/node.ova"


def test_the_vsphere_block_names_vcenter_account_image_and_placement_and_no_secret(monkeypatch, capsys):
    monkeypatch.setenv("VMWARE_HOST", "vcenter.example.com")
    monkeypatch.setenv("VMWARE_USER", "ray-operator@vsphere.local")
    monkeypatch.setenv("VMWARE_PASSWORD", PASSWORD)
    config = {"cluster_name": "talk", "auth": {"ssh_user": "ubuntu"}, "provider": {
        "type": "external", "module": "ray_provider.node_provider.VsphereNodeProvider", "datacenter": "DC0",
        "cluster": "C0", "datastore": "DS0", "network": "VM Network", "vm_folder": "ray",
        "ovf": "https://user:pw@images.example.com/node.ova?sig=SECRET", "ovf_sha256": "a" * 64},
        "head_node_type": "head", "available_node_types": {
            "head": {"node_config": {}, "resources": {}, "max_workers": 0},
            "worker": {"node_config": {"cpus": 4}, "resources": {}, "min_workers": 0, "max_workers": 2}}}
    summary.vsphere_block(config)
    out = capsys.readouterr().out
    assert "vSphere" in out
    assert "vCenter: vcenter.example.com (certificates verified with the system's CAs)" in out
    assert "account: ray-operator@vsphere.local" in out
    assert ("worker: image https://images.example.com/node.ova (pinned by ovf_sha256); datacenter DC0, cluster C0, "
            "vm_folder ray, datastore DS0, network VM Network") in out
    assert PASSWORD not in out and "SECRET" not in out and "user:pw" not in out


def test_a_failed_task_is_quoted_with_the_end_of_its_stderr():
    text = failure_text({"msg": "MODULE FAILURE\nSee stdout/stderr for the exact error",
                         "module_stderr": "Traceback (most recent call last):\n" + "x\n" * 2000 +
                                          "ModuleNotFoundError: No module named 'pyVmomi'\n"})
    assert text.startswith("MODULE FAILURE")
    assert text.endswith("ModuleNotFoundError: No module named 'pyVmomi'")
    assert len(text) < 1700


def test_a_run_without_a_failed_task_says_how_its_output_ends_and_where_its_folder_is(tmp_path, credentials,
                                                                                       capsys):
    runs = PlaybookRuns(tmp_path, "talk", credentials)
    with pytest.raises(PlaybookFailed) as raised:
        runs.run("no_such_playbook", {})  # ansible-playbook stops before any task
    message = str(raised.value)
    assert message.startswith("no_such_playbook failed: ansible-runner status failed, no task failed; its output "
                              "ends: "), message
    assert "ray_vsphere.cluster.provider.no_such_playbook" in message, "ansible-playbook's own error is quoted"
    folder = Path(re.search(r"\(run folder: (\S+)\)$", message).group(1))
    assert folder.parent == tmp_path / "talk" / "runs" and (folder / "artifacts").is_dir()
    assert PASSWORD not in message
    assert re.search(r"no_such_playbook: failed in [\d.]+ s", capsys.readouterr().out)


def test_a_failed_task_in_a_real_run_is_quoted_with_the_run_folder(tmp_path, credentials):
    runs = PlaybookRuns(tmp_path, "talk", credentials)
    with pytest.raises(PlaybookFailed) as raised:
        runs.run("terminate_nodes", {})  # none of the play's variables: its first task fails on them
    message = str(raised.value)
    assert re.match(r"terminate_nodes failed: .*'ray_provider_\w+' is undefined", message), message
    folder = Path(re.search(r"\(run folder: (\S+)\)$", message).group(1))
    assert list(folder.glob("artifacts/*/job_events/*.json"))
    assert os.environ.get(_progress.PROGRESS_FILE_VARIABLE) is None, "the run's variable stays in the run"
