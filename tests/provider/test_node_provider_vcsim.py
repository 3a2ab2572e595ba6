"""VsphereNodeProvider against vcsim through the real playbooks: failures leave nothing behind.

No guest simulator here, so no VM ever reports an IP: that is the failure
under test in the first case.
"""


import re
import time
import uuid
from pathlib import Path

import pytest
from ray.autoscaler.node_launch_exception import NodeLaunchException

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _records
from ray_provider import node_provider
from ray_provider.node_provider import ClusterConfigError, VsphereNodeProvider
from testbed import node_identity, simulator
from testbed.guests import make_key_pair
from testbed.ova_import import import_ova

import provider_tools


@pytest.fixture
def provider(vcsim, test_ova, tmp_path, monkeypatch):
    return make_provider(vcsim, test_ova, tmp_path, monkeypatch)


def make_provider(vcsim, test_ova, tmp_path, monkeypatch):
    # No guests here: a short ip_timeout lets the no-IP failure come quickly.
    return provider_tools.make_provider(vcsim, test_ova, tmp_path, monkeypatch, "unit-vcsim", ip_timeout=3)


def vm_names(vcsim):
    service_instance = vcsim.endpoint.connect()
    try:
        return sorted(props["name"] for props in _nodes.Inventory(service_instance).vms.values())
    finally:
        service_instance.content.sessionManager.Logout()


def test_nodes_without_an_ip_fail_the_launch_and_every_vm_of_it_is_removed(provider, vcsim, capsys):
    before = vm_names(vcsim)
    with pytest.raises(NodeLaunchException) as raised:
        provider.create_node({}, {"ray-node-type": "worker", "ray-user-node-type": "worker"}, 3)
    assert raised.value.category == "NoIpAddress"
    assert "no usable IP after 3 s" in raised.value.description
    # What the guest told vCenter, per node: vcsim's VMs here have no Tools (no guest simulator behind them).
    for index in range(3):
        assert re.search(rf"unit-vcsim-worker-\w+-{index}: guest reported no address \(guest.ipAddress empty\); "
                         r"VMware Tools not running \(toolsRunningStatus guestToolsNotRunning, toolsStatus "
                         r"toolsNotInstalled\)", raised.value.description), raised.value.description
    # The run folder, where ansible-runner kept the whole run.
    run_folder = Path(re.search(r"\(run folder: (\S+)\)$", raised.value.description).group(1))
    assert (run_folder / "artifacts").is_dir() and list(run_folder.glob("artifacts/*/job_events/*.json"))
    # What `ray up` (cli_logger, on stdout) showed while the run went on.
    shown = capsys.readouterr().out
    assert re.search(r"create_nodes: uploaded ray-template-\w+-\w+'s disks: 100% of [\d.]+ MiB", shown), shown
    assert "create_nodes: waiting for IPs: 0 of 3" in shown, shown
    assert re.search(r"create_nodes: failed in [\d.]+ s", shown), shown
    after = vm_names(vcsim)
    assert [name for name in after if name.startswith("unit-vcsim-")] == []
    assert set(after) - set(before) <= {name for name in after if name.startswith("ray-template-")}, \
        "only the reusable template of the clone fast path stays"
    assert provider.non_terminated_nodes({}) == []


def test_a_placement_vcenter_refuses_fails_the_launch_before_any_vm_exists(provider, vcsim):
    before = vm_names(vcsim)
    with pytest.raises(NodeLaunchException) as raised:
        provider.create_node({"datastore": "LocalDS_9"}, {"ray-node-type": "worker"}, 2)
    assert raised.value.category == "Placement"
    assert "datastore 'LocalDS_9' not found in datacenter DC0" in raised.value.description
    assert vm_names(vcsim) == before


def test_every_node_setting_reaches_node_deploy_in_the_check_and_the_launch(provider, vcsim):
    # ignored_cidrs came to the cluster YAML from node_deploy's argument spec, with no provider code of its own.
    not_a_network = {"ignored_cidrs": ["10.0.0.0/99"]}
    before = vm_names(vcsim)
    with pytest.raises(ClusterConfigError) as raised:
        VsphereNodeProvider.bootstrap_config({
            "cluster_name": "unit-vcsim", "provider": provider.provider_config,
            "auth": {"ssh_user": "ubuntu", "ssh_private_key": provider.provider_config["ssh_private_key_file"]},
            "available_node_types": {"head": {"node_config": {}}, "worker": {"node_config": not_a_network}}})
    problems = raised.value.problems
    assert len(problems) == 1 and problems[0].startswith(
        "available_node_types.worker.node_config: ignored_cidrs: '10.0.0.0/99'"), problems
    with pytest.raises(NodeLaunchException) as raised:
        provider.create_node(not_a_network, {"ray-node-type": "worker"}, 1)
    assert "ignored_cidrs: '10.0.0.0/99'" in raised.value.description
    assert vm_names(vcsim) == before


def test_the_provider_still_sees_its_nodes_after_vcenter_ended_its_session(test_ova, tmp_path, monkeypatch):
    """vCenter ends a session idle for about 30 minutes; a head's autoscaler can idle longer than that."""
    with simulator.Vcsim(session_idle_timeout=1) as forgetful:
        provider = make_provider(forgetful, test_ova, tmp_path, monkeypatch)
        service_instance = forgetful.endpoint.connect()
        # A node as node_deploy makes it: with the identity the cluster's key makes for it.
        vm = import_ova(service_instance, test_ova, "unit-vcsim-worker-idle", **simulator.default_placement(service_instance),
                        instance_uuid=str(uuid.uuid4()))
        node_identity.bind(service_instance, vm, provider.cluster_key())
        tags = {_records.CLUSTER_NAME: "unit-vcsim", _records.NODE_KIND: "worker"}
        attributes = _nodes.Inventory(service_instance).attributes
        attributes.require(set(tags))
        attributes.set(vm, "unit-vcsim-worker-idle", tags)
        service_instance.content.sessionManager.Logout()

        nodes = provider.non_terminated_nodes({})
        assert len(nodes) == 1
        client = provider.vcenter_session._client
        first_session = client.service_instance.content.sessionManager.currentSession.key
        time.sleep(max(2.5, node_provider.REFRESH_INTERVAL_S + 0.5))  # the session ends; the cache goes stale
        admin = forgetful.endpoint.connect()
        try:
            assert first_session not in {session.key for session in admin.content.sessionManager.sessionList}, \
                "vcsim ended the provider's idle session"
            assert provider.non_terminated_nodes({}) == nodes
            assert provider.vcenter_session._client is client, "the same client, logged in again on NotAuthenticated"
            second_session = client.service_instance.content.sessionManager.currentSession.key
            assert second_session != first_session, "a new login, not the old session"
            assert second_session in {session.key for session in admin.content.sessionManager.sessionList}
            assert provider.full_reads == 2, "the read after the re-login read everything again: a new session"
        finally:
            admin.content.sessionManager.Logout()
def test_ray_up_on_a_vcenter_nobody_prepared_is_refused_naming_the_prepare_playbook(
        testbed_prerequisites, test_ova, tmp_path, monkeypatch):
    """bootstrap_config's check-mode deploy asks for the custom attribute definitions before anything exists."""
    with simulator.Vcsim(prepared=False) as unprepared:
        key = make_key_pair(tmp_path / "ray-key")
        for name, value in unprepared.endpoint.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(node_provider, "STATE_DIR", tmp_path / "state")
        provider_config = {
            "type": "external", "module": "ray_provider.node_provider.VsphereNodeProvider",
            "ovf": str(test_ova), "datacenter": simulator.DATACENTER, "cluster": simulator.CLUSTERS[0],
            "vm_folder": simulator.VM_FOLDER, "datastore": simulator.DATASTORES[0]}
        before = vm_names(unprepared)
        with pytest.raises(ClusterConfigError) as raised:
            VsphereNodeProvider.bootstrap_config({
                "cluster_name": "unprepared", "provider": provider_config,
                "auth": {"ssh_user": "ubuntu", "ssh_private_key": str(key)},
                "available_node_types": {"head": {"node_config": {}}}})
        problems = " ".join(raised.value.problems)
        assert "vCenter has no custom attribute definition ray-cluster-name" in problems, problems
        assert "ray_vsphere.cluster.vcenter_prepare (playbooks/vcenter_prepare.yml" in problems, problems
        assert vm_names(unprepared) == before


def test_ray_down_and_the_like_need_no_head_account_but_a_given_one_is_checked_by_a_login(provider, vcsim, monkeypatch):
    """bootstrap_config runs for every `ray` command; only making or setting up a head needs the head's account."""
    config = {"cluster_name": "unit-vcsim", "provider": provider.provider_config, "head_node_type": "head",
              "auth": {"ssh_user": "ubuntu", "ssh_private_key": provider.provider_config["ssh_private_key_file"]},
              "available_node_types": {"head": {"node_config": {}}}}
    for name in ("RAY_VSPHERE_HEAD_USER", "RAY_VSPHERE_HEAD_PASSWORD"):
        monkeypatch.delenv(name)
    assert VsphereNodeProvider.bootstrap_config(config)["provider"]["node_folders"] == [
        [simulator.DATACENTER, simulator.VM_FOLDER]]
    monkeypatch.setenv("RAY_VSPHERE_HEAD_USER", vcsim.autoscaler_username)
    monkeypatch.setenv("RAY_VSPHERE_HEAD_PASSWORD", vcsim.endpoint.password)  # the operator's, not the head's
    with pytest.raises(ClusterConfigError) as raised:
        VsphereNodeProvider.bootstrap_config(config)
    assert raised.value.problems == [
        f"RAY_VSPHERE_HEAD_USER / RAY_VSPHERE_HEAD_PASSWORD: vCenter {vcsim.endpoint.host}:{vcsim.endpoint.port} "
        f"rejected the login of the head's account '{vcsim.autoscaler_username}': wrong username or password"]
    monkeypatch.setenv("RAY_VSPHERE_HEAD_PASSWORD", vcsim.autoscaler_password)
    VsphereNodeProvider.bootstrap_config(config)
