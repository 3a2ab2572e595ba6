"""The provider's refresh against vcsim: only the cluster's VM folders, read once, then kept current from updates.

The cluster's nodes here are clones of a model VM tagged directly through
pyVmomi (an "admin" session of its own), which is also how other processes'
changes reach vCenter behind the provider's back.
"""

import logging
import uuid
from types import SimpleNamespace

import pytest
from pyVmomi import vim
from ray.autoscaler.node_launch_exception import NodeLaunchException

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import (
    _node_watch, _nodes, _ray_auth, _records)
from ray_provider import node_provider, node_reader
from ray_provider.node_provider import VsphereNodeProvider
from testbed import node_identity, simulator, vsphere
from testbed.guests import make_key_pair

CLUSTER = "watched"


@pytest.fixture
def admin(vcsim):
    service_instance = vcsim.endpoint.connect()
    yield service_instance
    vsphere.disconnect(service_instance)


class Site:
    """Clones of a model VM as nodes of CLUSTER, made and changed from the admin session.

    Each clone carries the identity the cluster's key makes for it where it is, as node_deploy writes it.
    """

    def __init__(self, admin, cluster_key):
        self.admin = admin
        self.cluster_key = cluster_key
        self.datacenter = vsphere.find_by_name(admin, vim.Datacenter, simulator.DATACENTER)
        self.folder = vsphere.find_by_name(admin, vim.Folder, simulator.VM_FOLDER)
        self.model = vsphere.find_by_name(admin, vim.VirtualMachine, "DC0_C0_RP1_VM0")
        inventory = _nodes.Inventory(admin)
        self.attributes = inventory.attributes
        self.attributes.require([_records.CLUSTER_NAME, _records.NODE_KIND, "ray-node-status"])

    def node(self, name, folder=None, **tags):
        task = self.model.CloneVM_Task(folder=folder or self.folder, name=name, spec=vim.vm.CloneSpec(
            location=vim.vm.RelocateSpec(), config=vim.vm.ConfigSpec(instanceUuid=str(uuid.uuid4()))))
        vm = vsphere.wait_for_task(self.admin, task)
        node_identity.bind(self.admin, vm, self.cluster_key)
        self.tag(vm, **{_records.CLUSTER_NAME: CLUSTER, _records.NODE_KIND: "worker", **tags})
        return vm

    def tag(self, vm, **tags):
        self.attributes.set(vm, vm.name, tags)

    def uuid(self, vm):
        return vm.config.instanceUuid


@pytest.fixture
def cluster_key_file(tmp_path):
    return make_key_pair(tmp_path / "ray-key")


@pytest.fixture
def site(admin, cluster_key_file):
    site = Site(admin, _ray_auth.ClusterKey(cluster_key_file.read_text(), CLUSTER))
    yield site
    for vm, props in vsphere.objects_of_type(admin, vim.VirtualMachine, ["name", "runtime.powerState"]).items():
        if props["name"].startswith(CLUSTER):
            if props["runtime.powerState"] == "poweredOn":
                vsphere.wait_for_task(admin, vm.PowerOffVM_Task())
            vsphere.wait_for_task(admin, vm.Destroy_Task())


@pytest.fixture
def provider(vcsim, tmp_path, monkeypatch, cluster_key_file):
    key = cluster_key_file
    for name, value in vcsim.endpoint.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(node_provider, "STATE_DIR", tmp_path / "state")
    monkeypatch.setattr(node_provider, "REFRESH_INTERVAL_S", 0.0)  # every non_terminated_nodes refreshes
    return VsphereNodeProvider({
        "type": "external", "module": "ray_provider.node_provider.VsphereNodeProvider",
        "ovf": "https://images.example.com/ray.ova", "datacenter": simulator.DATACENTER,
        "cluster": simulator.CLUSTERS[0], "vm_folder": simulator.VM_FOLDER, "datastore": simulator.DATASTORES[0],
        "ssh_private_key_file": str(key), "ssh_public_key_file": f"{key}.pub",
    }, CLUSTER)


def session_key(provider):
    return provider.vcenter_session._client.service_instance.content.sessionManager.currentSession.key


def test_the_refresh_reads_the_folder_once_then_only_what_changed(provider, site, admin):
    head = site.node(f"{CLUSTER}-head", **{_records.NODE_KIND: "head"})
    worker = site.node(f"{CLUSTER}-worker")
    outside = site.node(f"{CLUSTER}-outside", folder=site.datacenter.vmFolder)  # tagged, but not in the folder

    assert sorted(provider.non_terminated_nodes({})) == sorted([site.uuid(head), site.uuid(worker)])
    assert provider.full_reads == 1
    watch = provider._watch
    assert site.uuid(outside) not in {watch.vms[vm].get("config.instanceUuid") for vm in watch.vms}, \
        "the filter holds only the folder's VMs"

    updates = watch.object_updates
    assert sorted(provider.non_terminated_nodes({})) == sorted([site.uuid(head), site.uuid(worker)])
    assert (watch.object_updates, watch.polls) == (updates, 1), "a refresh with no change gets no object update"

    # Changes made behind the provider's back, each seen by the next refresh without a full read.
    site.tag(worker, **{"ray-node-status": "up-to-date"})
    provider.non_terminated_nodes({})
    assert provider.node_tags(site.uuid(worker))["ray-node-status"] == "up-to-date"
    vsphere.wait_for_task(admin, worker.PowerOnVM_Task())
    vsphere.wait_for_task(admin, worker.ReconfigVM_Task(vim.vm.ConfigSpec(extraConfig=[
        vim.option.OptionValue(key="SET.guest.ipAddress", value="198.51.100.7")])))
    provider.non_terminated_nodes({})
    assert provider.is_running(site.uuid(worker))
    assert provider.internal_ip(site.uuid(worker)) == "198.51.100.7"
    late = site.node(f"{CLUSTER}-late")
    late_id = site.uuid(late)
    assert late_id in provider.non_terminated_nodes({})
    assert provider.non_terminated_nodes({_records.NODE_KIND: "head"}) == [site.uuid(head)]
    vsphere.wait_for_task(admin, late.Destroy_Task())
    assert late_id not in provider.non_terminated_nodes({})
    assert provider._watch is watch and provider.full_reads == 1

    # ray down: every node the refresh lists is terminated through terminate_nodes.yml.
    provider.terminate_nodes(provider.non_terminated_nodes({}))
    assert provider.non_terminated_nodes({}) == []
    left = {props["name"] for props in vsphere.objects_of_type(admin, vim.VirtualMachine, ["name"]).values()}
    assert {f"{CLUSTER}-head", f"{CLUSTER}-worker"} & left == set()
    assert f"{CLUSTER}-outside" in left


def test_a_session_terminated_on_the_server_is_logged_in_again_and_read_in_full(provider, site, admin, caplog):
    worker = site.node(f"{CLUSTER}-worker")
    assert provider.non_terminated_nodes({}) == [site.uuid(worker)]
    ended = session_key(provider)
    admin.content.sessionManager.TerminateSession([ended])
    assert ended not in {session.key for session in admin.content.sessionManager.sessionList}
    added = site.node(f"{CLUSTER}-added")  # while the provider had no session

    with caplog.at_level(logging.INFO, logger=node_reader.__name__):
        assert sorted(provider.non_terminated_nodes({})) == sorted([site.uuid(worker), site.uuid(added)])
    assert session_key(provider) != ended, "logged in again"
    assert provider.full_reads == 2, "read in full once more"
    assert any("(reconnect" in record.getMessage() for record in caplog.records)
    # And back to changes only.
    site.tag(added, **{"ray-node-status": "setting-up"})
    assert len(provider.non_terminated_nodes({})) == 2
    assert provider.node_tags(site.uuid(added))["ray-node-status"] == "setting-up"
    assert provider.full_reads == 2


def test_a_lost_filter_is_made_again_with_a_full_read(provider, site):
    worker = site.node(f"{CLUSTER}-worker")
    assert provider.non_terminated_nodes({}) == [site.uuid(worker)]
    provider._watch._collector.DestroyPropertyCollector()  # the next WaitForUpdatesEx: ManagedObjectNotFound
    assert provider.non_terminated_nodes({}) == [site.uuid(worker)]
    assert provider.full_reads == 2


def test_every_node_types_folder_is_watched_and_a_launch_into_a_new_one_widens_the_watch(provider, site):
    subfolder = site.folder.CreateFolder("gpu")
    sibling = site.datacenter.vmFolder.CreateFolder("sibling")
    in_subfolder = site.node(f"{CLUSTER}-gpu", folder=subfolder)
    in_sibling = site.node(f"{CLUSTER}-sibling", folder=sibling)
    in_folder = site.node(f"{CLUSTER}-worker")
    # Only the folder's own VMs: ray/gpu is another folder, which no node type names (a node's identity binds
    # the folder it is in); bootstrap_config's node_folders names every node type's folder.
    assert provider.non_terminated_nodes({}) == [site.uuid(in_folder)]
    assert site.uuid(in_subfolder) not in {props.get("config.instanceUuid") for props in provider._watch.vms.values()}, \
        "a subfolder's VMs are not even read"
    both = VsphereNodeProvider(dict(provider.provider_config, node_folders=[
        [simulator.DATACENTER, simulator.VM_FOLDER], [simulator.DATACENTER, "sibling"]]), CLUSTER)
    assert sorted(both.non_terminated_nodes({})) == sorted([site.uuid(in_folder), site.uuid(in_sibling)])

    # A launch into a folder not watched yet: the next refresh watches it too, with one full read.
    failed = SimpleNamespace(status="failed", events=[])
    provider.playbooks = SimpleNamespace(run=lambda playbook, extravars, **options: (_ for _ in ()).throw(
        node_provider.PlaybookFailed(playbook, failed)))
    with pytest.raises(NodeLaunchException):
        provider.create_node({"vm_folder": "sibling"}, {_records.NODE_KIND: "worker"}, 1)
    assert site.uuid(in_sibling) in provider.non_terminated_nodes({})
    assert provider.full_reads == 2


def test_a_watch_over_more_vms_than_one_update_set_holds_reads_them_all(testbed_prerequisites):
    """vCenter (and vcsim) send at most 100 object updates per WaitForUpdatesEx; the rest follow, truncated=True."""
    with simulator.Vcsim(vms_per_pool=80) as sim:
        service_instance = sim.endpoint.connect()
        try:
            everything = _nodes.Inventory(service_instance, paths=["name"]).vms
            assert len(everything) > 150
            vm_folders = [datacenter.vmFolder for datacenter in service_instance.content.rootFolder.childEntity]
            watch = _node_watch.NodeWatch(service_instance, vm_folders)
            assert set(watch.vms) == set(everything)
            assert watch.poll() is False
            watch.close()
        finally:
            vsphere.disconnect(service_instance)
