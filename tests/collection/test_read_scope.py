"""What deploy, tags, delete and prune read: the cluster's folder only, by the extraConfig keys they need.

The oracle is what went over the wire: every RetrievePropertiesEx the code
sends through pyVmomi (its property paths) and every VM vcsim answered with,
whose folder is then looked up at vcsim. vcsim's own model VMs, outside the
Ray folder, carry a real VM's extraConfig (testbed/vcsim/extra_config.go).
"""

import pytest
from conftest import PLACEMENT
from pyVmomi import SoapAdapter, vim
from test_deploy_rollback import module_params

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _build, _node_changes, _nodes, _templates
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import VcenterClient
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ClusterKey
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._template_identity import TemplateIdentity
from testbed import simulator, vsphere

CLUSTER = "scoped"


@pytest.fixture(scope="module")
def vcsim(testbed_prerequisites):
    """A site whose other VMs (vcsim's model VMs, outside the Ray folder) are as heavy as real ones."""
    with simulator.Vcsim(vm_extra_config=57) as sim:
        yield sim


class Wire:
    """The property paths asked for and the VMs answered, of every PropertyCollector read while recording."""

    def __init__(self, monkeypatch):
        self.paths, self.vms = [], set()
        self.on = True  # off while the test itself reads
        real = SoapAdapter.SoapStubAdapter.InvokeMethod
        wire = self

        def recording(stub, mo, info, args, outerStub=None):
            result = real(stub, mo, info, args, outerStub)
            # Called by a session stub (outerStub), it answers (HTTP status, result or fault).
            answer = result[1] if isinstance(result, tuple) else result
            if wire.on and info.wsdlName in ("RetrievePropertiesEx", "ContinueRetrievePropertiesEx"):
                for spec in (args[0] if info.wsdlName == "RetrievePropertiesEx" else []):
                    wire.paths.extend(path for prop in spec.propSet for path in prop.pathSet or [])
                wire.vms.update(item.obj for item in (getattr(answer, "objects", None) or [])
                                if isinstance(item.obj, vim.VirtualMachine))
            return result
        monkeypatch.setattr(SoapAdapter.SoapStubAdapter, "InvokeMethod", recording)

    def taken(self):
        """(paths, VMs) recorded so far; recording starts afresh."""
        taken = self.paths, self.vms
        self.paths, self.vms = [], set()
        return taken


@pytest.fixture
def client(vcsim):
    endpoint = vcsim.endpoint
    with VcenterClient(endpoint.host, endpoint.username, endpoint.password, port=endpoint.port,
                       ca_path=str(endpoint.ca_path)) as client:
        yield client


def folders_of(service_instance, vms):
    """{VM name: its folder's name}, read at vcsim."""
    found = vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name", "parent"])
    names = dict((vm, props["name"]) for vm, props in vsphere.objects_of_type(
        service_instance, vim.Folder, ["name"]).items())
    return dict((found[vm]["name"], names.get(found[vm]["parent"])) for vm in vms if vm in found)


def test_deploy_tags_delete_and_prune_read_the_clusters_folder_by_keys_and_never_whole_extra_config(
        vcsim, client, service_instance, test_ova, cluster_key_file, monkeypatch, tmp_path):
    """client: the collection's session, whose reads are recorded; service_instance: the test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    others = [name for name, folder in folders_of(service_instance, vsphere.objects_of_type(
        service_instance, vim.VirtualMachine, ["name"])).items() if folder != PLACEMENT["vm_folder"]]
    assert len(others) >= 2  # vcsim's model VMs, each with a real VM's extraConfig
    heavy = vsphere.find_by_name(service_instance, vim.VirtualMachine, others[0])
    assert len(heavy.config.extraConfig) > 50
    cluster_key = ClusterKey.from_file(str(cluster_key_file), CLUSTER)
    roots = _nodes.folder_roots(client.service_instance, dict(datacenter=PLACEMENT["datacenter"],
                                                       vm_folders=[PLACEMENT["vm_folder"]]))
    wire = Wire(monkeypatch)

    def read(step):
        """(paths, {VM name: folder}) of what step read."""
        paths, vms = wire.taken()
        wire.on = False
        try:
            return paths, folders_of(service_instance, vms)
        finally:
            wire.on = True

    def read_only_the_folder(step):
        paths, folders = read(step)
        assert "config.extraConfig" not in paths, f"{step} read whole extraConfig"
        assert folders and set(folders.values()) == {PLACEMENT["vm_folder"]}, \
            f"{step} read VMs outside the cluster's folder, or none: {folders}"

    names = [f"{CLUSTER}-0", f"{CLUSTER}-1"]
    result = _build.deploy(client, module_params(vcsim, cluster_key_file, cluster_name=CLUSTER, ovf=str(test_ova),
                                                 names=names, wait_for_ip=False), False, cluster_key)
    assert result["created"] == names
    read_only_the_folder("node_deploy (first, template made)")
    again = _build.deploy(client, module_params(vcsim, cluster_key_file, cluster_name=CLUSTER, ovf=str(test_ova),
                                                names=names, wait_for_ip=False), False, cluster_key)
    assert again["existing"] == names and not again["created"]
    read_only_the_folder("node_deploy (nodes there)")

    before, after = _node_changes.set_node_tags(client.service_instance, cluster_key, [
        {"uuid": result["nodes"][0]["uuid"], "tags": {"ray-node-status": "up-to-date"}}], 8, False, roots=roots)
    assert after == {names[0]: dict(result["nodes"][0]["tags"], **{"ray-node-status": "up-to-date"})}
    read_only_the_folder("node_tags")

    deleted, absent, _ = _node_changes.delete_nodes(client.service_instance, cluster_key, [result["nodes"][1]["uuid"]], [],
                                                    8, False, roots=roots)
    assert (deleted, absent) == ([names[1]], [])
    read_only_the_folder("node_delete")

    folder = vsphere.find_by_name(service_instance, vim.Folder, PLACEMENT["vm_folder"])
    templates = _templates.survey(client.service_instance, TemplateIdentity.from_file(str(cluster_key_file)), roots[0])
    assert [entry["in_use_by"] for entry in templates] == [[names[0]]]
    # The clones of a template are looked for everywhere (a linked clone moved away still reads its disks),
    # but by the two keys that name a template only.
    paths, folders = read("template_prune's survey")
    assert set(path for path in paths if path.startswith("config.extraConfig")) == {
        'config.extraConfig["ray-vsphere.%s"]' % key for key in (
            "template-identity", "image-sha256", "image-key", "template-maker", "template-started",
            "template-heartbeat", "cloned-from")}
    assert set(others) <= set(folders)

    # ray_down.yml's sweep of all of vCenter: every VM, by keys only; the node moved out of the folder goes too.
    moved = vsphere.find_by_name(service_instance, vim.VirtualMachine, names[0])
    vsphere.wait_for_task(service_instance, folder.parent.MoveIntoFolder_Task([moved]))
    assert _node_changes.delete_nodes(client.service_instance, cluster_key, [], [], 8, True, all_nodes=True,
                                      roots=roots)[0] == []
    read("node_delete in the folder")
    deleted, _, _ = _node_changes.delete_nodes(client.service_instance, cluster_key, [], [], 8, False, all_nodes=True)
    assert deleted == [names[0]]
    paths, folders = read("ray_down.yml's node_delete")
    assert "config.extraConfig" not in paths
    assert set(others) <= set(folders)
