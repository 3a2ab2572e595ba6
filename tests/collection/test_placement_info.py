"""playbooks/vcenter_info.yml and placement_info: what a cluster YAML can name, by inventory path, over verified TLS.

The oracle is vcsim itself: its objects of each kind (a ContainerView of the
whole inventory, by moid) and the object its SearchIndex finds at each path
the module printed; and what the playbook prints as a placement is given to
node_deploy in check mode, which must accept it.
"""

import ssl

import pytest
import yaml
from conftest import deploy_task
from pyVmomi import vim

from ray_provider.runner import run_playbook, task_results
from testbed import pki, vsphere

PLACEMENT_KEYS = ("datacenter", "cluster", "esxi_host", "resource_pool", "vm_folder", "datastore", "network")


@pytest.fixture(scope="module")
def vcenter_info(vcsim, tmp_path_factory):
    """The task results of one vcenter_info.yml run, with credentials and the CA file from the environment only."""
    # The system's trust store, which knows no testbed CA: only ca_path (VMWARE_CA_PATH) can make TLS verify.
    environment = dict(vcsim.endpoint.environment(), SSL_CERT_FILE=ssl.get_default_verify_paths().openssl_cafile)
    assert environment["VMWARE_VALIDATE_CERTS"] == "true" and environment["VMWARE_CA_PATH"]
    runner = run_playbook("ray_vsphere.cluster.vcenter_info", tmp_path_factory.mktemp("vcenter-info"),
                          envvars=environment, timeout=300)
    stdout = runner.stdout.read()
    assert runner.status == "successful", stdout[-3000:]
    assert vcsim.endpoint.password not in stdout
    return task_results(runner)


def the_module_result(results):
    return next(result for result in results if "datacenters" in result)


def printed_placements(results):
    """{compute resource path: the placement the playbook printed, read as YAML}."""
    printed = {}
    for result in results:
        for item in result.get("results", []):
            lines = item.get("msg")
            if isinstance(lines, list) and lines and lines[0].startswith("# cluster "):
                printed[item["item"]["path"]] = yaml.safe_load("\n".join(lines))
    return printed


def vcsim_objects(service_instance, managed_type, root=None):
    """{moid: name} of vcsim's managed_type objects (vApps are no pools)."""
    return {obj._moId: props["name"] for obj, props in vsphere.objects_of_type(service_instance, managed_type,
                                                                                ["name"], root=root).items()
            if not isinstance(obj, vim.VirtualApp)}


def found_at(service_instance, path):
    found = service_instance.content.searchIndex.FindByInventoryPath(path)
    return found._moId if found is not None else None


def test_every_placement_object_is_listed_at_the_path_where_vcsim_finds_it(vcenter_info, service_instance):
    module = the_module_result(vcenter_info)
    assert module["vcenter"]["full_name"] == service_instance.content.about.fullName
    assert module["vcenter"]["version"] == service_instance.content.about.version
    datacenters = module["datacenters"]
    listed = {kind: {} for kind in ("datacenter", "cluster", "host", "pool", "folder", "datastore", "network")}
    for datacenter in datacenters:
        listed["datacenter"][datacenter["path"]] = datacenter["moid"]
        listed["folder"].update((folder["path"], folder["moid"]) for folder in datacenter["vm_folders"])
        listed["datastore"].update((store["path"], store["moid"]) for store in datacenter["datastores"])
        listed["network"].update((network["path"], network["moid"]) for network in datacenter["networks"])
        for compute in datacenter["compute_resources"]:
            assert compute["type"] == "cluster"  # the testbed's site has no standalone host (simulator.SITE_FLAGS)
            listed["cluster"][compute["path"]] = compute["moid"]
            for kind, paths in (("host", compute["hosts"]), ("pool", compute["resource_pools"])):
                listed[kind].update((path, found_at(service_instance, path)) for path in paths)
    # Each path leads vcsim's SearchIndex to the object the module named there.
    for kind, by_path in listed.items():
        for path, moid in by_path.items():
            assert moid is not None and found_at(service_instance, path) == moid, (kind, path, moid)
    # And nothing of vcsim's is missing: its objects of each kind, found without our code.
    vm_folders = set()
    for datacenter in vsphere.objects_of_type(service_instance, vim.Datacenter, ["name"]):
        vm_folders |= {datacenter.vmFolder._moId} | set(vcsim_objects(service_instance, vim.Folder, datacenter.vmFolder))
    expected = {"datacenter": vim.Datacenter, "cluster": vim.ClusterComputeResource, "host": vim.HostSystem,
                "pool": vim.ResourcePool, "datastore": vim.Datastore, "network": vim.Network}
    for kind, managed_type in expected.items():
        assert set(listed[kind].values()) == set(vcsim_objects(service_instance, managed_type)), kind
    assert set(listed["folder"].values()) == vm_folders
    assert "/DC0/vm/ray" in listed["folder"] and "/DC0/host/DC0_C0/Resources/DC0_C0_RP1" in listed["pool"]


def test_each_cluster_lists_what_vcsim_mounts_and_connects_there(vcenter_info, service_instance):
    computes = [compute for datacenter in the_module_result(vcenter_info)["datacenters"]
                for compute in datacenter["compute_resources"]]
    clusters = vsphere.objects_of_type(service_instance, vim.ClusterComputeResource, ["datastore", "network", "host"])
    assert sorted(compute["moid"] for compute in computes) == sorted(cluster._moId for cluster in clusters)
    for cluster, props in clusters.items():
        compute = next(compute for compute in computes if compute["moid"] == cluster._moId)
        assert sorted(found_at(service_instance, path) for path in compute["hosts"]) == \
            sorted(host._moId for host in props["host"])
        assert sorted(store["moid"] for store in compute["datastores"]) == sorted(ds._moId for ds in props["datastore"])
        assert sorted(found_at(service_instance, path) for path in compute["networks"]) == \
            sorted(network._moId for network in props["network"])
        assert found_at(service_instance, compute["resource_pools"][0]) == cluster.resourcePool._moId


def test_the_printed_placement_of_each_cluster_is_the_modules_and_node_deploy_accepts_it(
        vcenter_info, play, test_ova, service_instance):
    printed = printed_placements(vcenter_info)
    computes = {compute["path"]: compute for datacenter in the_module_result(vcenter_info)["datacenters"]
                for compute in datacenter["compute_resources"]}
    assert sorted(printed) == sorted(computes) == ["/DC0/host/DC0_C0", "/DC0/host/DC0_C1"]
    for path, placement in printed.items():
        suggested = {key: value for key, value in computes[path]["placement"].items() if value is not None}
        assert placement == suggested
        assert set(placement) <= set(PLACEMENT_KEYS) and placement["cluster"] == path
        assert all(value.startswith("/") for value in placement.values()), placement
        # node_deploy, in check mode, resolves every placement option before it would create anything.
        checked = play([deploy_task("vcinfo", test_ova, names=["vcinfo-0"], **placement)], check=True).result
        assert not checked.get("failed"), checked.get("msg")
        assert checked["changed"]
    # And so does each listed choice beside the suggestion: another pool, the folder the site made.
    other = dict(printed["/DC0/host/DC0_C0"], resource_pool="/DC0/host/DC0_C0/Resources/DC0_C0_RP1",
                 vm_folder="/DC0/vm/ray", network="/DC0/network/VM Network", datastore="/DC0/datastore/LocalDS_0")
    checked = play([deploy_task("vcinfo", test_ova, names=["vcinfo-0"], **other)], check=True).result
    assert not checked.get("failed"), checked.get("msg")
    names = [props["name"] for props in vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name"]).values()]
    assert not [name for name in names if name.startswith("vcinfo")], names


def test_one_datacenter_by_path_and_an_unknown_one_is_refused_naming_those_there(play):
    only = play([{"name": "placement_info", "ray_vsphere.cluster.placement_info": {"datacenter": "/DC0"}}]).result
    assert [datacenter["path"] for datacenter in only["datacenters"]] == ["/DC0"]
    missing = play([{"name": "placement_info", "ray_vsphere.cluster.placement_info": {"datacenter": "DC9"}}]).result
    assert missing["failed"] and missing["msg"] == "datacenter 'DC9' not found in vCenter (there: /DC0)"


def test_a_certificate_of_an_untrusted_ca_fails_the_module_naming_ca_path(play, vcsim, tmp_path):
    other_ca = pki.make_ca(str(tmp_path), "Another CA", stem="another").certificate
    env = dict(vcsim.endpoint.environment(), VMWARE_CA_PATH=str(other_ca))
    result = play([{"name": "placement_info", "ray_vsphere.cluster.placement_info": {}}], env=env).result
    assert result["failed"] and "ca_path" in result["msg"], result["msg"]
    assert "datacenters" not in result


def test_a_standalone_host_in_a_host_folder_is_offered_as_esxi_host_by_its_path(play, service_instance):
    """Last in this file: it adds a standalone host to the module's vcsim, in a host folder of its own."""
    datacenter = vsphere.find_by_name(service_instance, vim.Datacenter, "DC0")
    folder = datacenter.hostFolder.CreateFolder("edge")
    vsphere.wait_for_task(service_instance, folder.AddStandaloneHost_Task(
        spec=vim.host.ConnectSpec(hostName="edge-esx.example", force=True), addConnected=True))
    host = vsphere.find_by_name(service_instance, vim.HostSystem, "edge-esx.example")
    result = play([{"name": "placement_info", "ray_vsphere.cluster.placement_info": {}}]).result
    computes = {compute["path"]: compute for compute in result["datacenters"][0]["compute_resources"]}
    standalone = computes["/DC0/host/edge/edge-esx.example"]
    assert standalone["type"] == "esxi_host" and standalone["moid"] == host.parent._moId
    assert standalone["hosts"] == ["/DC0/host/edge/edge-esx.example/edge-esx.example"]
    assert found_at(service_instance, standalone["hosts"][0]) == host._moId
    assert found_at(service_instance, standalone["resource_pools"][0]) == host.parent.resourcePool._moId
    assert standalone["placement"]["esxi_host"] == standalone["hosts"][0] and "cluster" not in standalone["placement"]
    # vcsim mounts no datastore on a host it adds: nothing to suggest, rather than a datastore it cannot use.
    assert standalone["datastores"] == [] and standalone["placement"]["datastore"] is None
