"""Placement options name objects by name, moid or inventory path; an ambiguous name is refused, never guessed.

The objects are made here, in vcsim, and the expected ones are those the test
made (compared by moid), not what our own lookup returns for another spelling.
"""

import pytest
from conftest import PLACEMENT, deploy_task
from pyVmomi import vim

from testbed import vsphere

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _placement
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError


def pool_spec():
    allocation = vim.ResourceAllocationInfo(reservation=0, expandableReservation=True, limit=-1,
                                            shares=vim.SharesInfo(level="normal", shares=0))
    return vim.ResourceConfigSpec(cpuAllocation=allocation, memoryAllocation=allocation)


@pytest.fixture(scope="module")
def twin_pools(vcsim):
    """Two resource pools named "twin" in cluster DC0_C0: one at its root, one inside DC0_C0_RP1."""
    service_instance = vcsim.endpoint.connect()
    cluster = vsphere.find_by_name(service_instance, vim.ClusterComputeResource, "DC0_C0")
    outer = cluster.resourcePool.CreateResourcePool("twin", pool_spec())
    inner = vsphere.find_by_name(service_instance, vim.ResourcePool, "DC0_C0_RP1").CreateResourcePool("twin", pool_spec())
    yield dict(outer=outer, inner=inner)
    for pool in (inner, outer):
        vsphere.wait_for_task(service_instance, pool.Destroy_Task())
    service_instance.content.sessionManager.Logout()


@pytest.fixture
def twin_cluster(service_instance):
    """A second cluster named DC0_C0, in host folder "more" of DC0; renamed after the test (vcsim cannot destroy one)."""
    datacenter = vsphere.find_by_name(service_instance, vim.Datacenter, "DC0")
    folder = datacenter.hostFolder.CreateFolder("more")
    twin = folder.CreateClusterEx("DC0_C0", vim.cluster.ConfigSpecEx())
    yield twin
    vsphere.wait_for_task(service_instance, twin.Rename_Task("retired-twin"))


def refusal(service_instance, **options):
    with pytest.raises(RayVsphereError) as raised:
        _placement.resolve(service_instance, dict(PLACEMENT, **options))
    return str(raised.value)


def test_an_ambiguous_resource_pool_name_is_refused_listing_each_candidate_by_path(service_instance, twin_pools):
    message = refusal(service_instance, resource_pool="twin")
    assert message.startswith("resource pool 'twin' is ambiguous in cluster DC0_C0: 2 objects have that name, "
                              "give the inventory path or moid of one: ")
    assert f"/DC0/host/DC0_C0/Resources/twin ({twin_pools['outer']._moId})" in message
    assert f"/DC0/host/DC0_C0/Resources/DC0_C0_RP1/twin ({twin_pools['inner']._moId})" in message


def test_an_ambiguous_cluster_name_is_refused_listing_each_candidate_by_path(service_instance, twin_cluster):
    first = [cluster for cluster, props in vsphere.objects_of_type(service_instance, vim.ClusterComputeResource,
                                                                   ["name"]).items()
             if props["name"] == "DC0_C0" and cluster._moId != twin_cluster._moId]
    message = refusal(service_instance)
    assert message.startswith("cluster 'DC0_C0' is ambiguous in datacenter DC0: 2 objects have that name")
    assert f"/DC0/host/DC0_C0 ({first[0]._moId})" in message
    assert f"/DC0/host/more/DC0_C0 ({twin_cluster._moId})" in message
    by_path = _placement.resolve(service_instance, dict(PLACEMENT, cluster="/DC0/host/DC0_C0"))
    assert by_path.resource_pool._moId == vsphere.find_by_name(service_instance, vim.ResourcePool, "DC0_C0_RP1")._moId


def test_a_resource_pool_by_path_or_moid_is_exactly_that_pool(service_instance, twin_pools):
    for pool in twin_pools.values():
        assert _placement.resolve(service_instance, dict(PLACEMENT, resource_pool=pool._moId)).resource_pool._moId \
            == pool._moId
    for path, pool in (("/DC0/host/DC0_C0/Resources/DC0_C0_RP1/twin", twin_pools["inner"]),
                       ("DC0/host/DC0_C0/Resources/twin/", twin_pools["outer"])):
        assert _placement.resolve(service_instance, dict(PLACEMENT, resource_pool=path)).resource_pool._moId \
            == pool._moId
    root = vsphere.find_by_name(service_instance, vim.ClusterComputeResource, "DC0_C0").resourcePool
    assert _placement.resolve(service_instance, dict(PLACEMENT, resource_pool="/DC0/host/DC0_C0/Resources")
                              ).resource_pool._moId == root._moId
    # A pool of another cluster is not one of DC0_C0's, however it is named.
    other = vsphere.find_by_name(service_instance, vim.ResourcePool, "DC0_C1_RP1")
    for spelling in (other._moId, "/DC0/host/DC0_C1/Resources/DC0_C1_RP1"):
        assert f"resource pool '{spelling}' not found in cluster DC0_C0" in refusal(service_instance,
                                                                                      resource_pool=spelling)


def test_every_other_placement_option_takes_a_path_or_a_moid(service_instance):
    def one(managed_type, name):
        return vsphere.find_by_name(service_instance, managed_type, name)

    datacenter, cluster = one(vim.Datacenter, "DC0"), one(vim.ClusterComputeResource, "DC0_C0")
    datastore, network, folder = one(vim.Datastore, "LocalDS_0"), one(vim.Network, "VM Network"), one(vim.Folder, "ray")
    host = one(vim.HostSystem, "DC0_C0_H0")
    spellings = [
        dict(datacenter=datacenter._moId, cluster=cluster._moId, datastore=datastore._moId, network=network._moId,
             vm_folder=folder._moId),
        dict(datacenter="/DC0", cluster="/DC0/host/DC0_C0", datastore="/DC0/datastore/LocalDS_0",
             network="/DC0/network/VM Network", vm_folder="/DC0/vm/ray"),
    ]
    for spelling in spellings:
        placement = _placement.resolve(service_instance, dict(PLACEMENT, resource_pool=None, **spelling))
        assert [obj._moId for obj in (placement.datacenter, placement.resource_pool, placement.datastore,
                                      placement.network, placement.folder)] == [
            datacenter._moId, cluster.resourcePool._moId, datastore._moId, network._moId, folder._moId], spelling
    for esxi_host in (host._moId, "/DC0/host/DC0_C0/DC0_C0_H0"):
        placement = _placement.resolve(service_instance, dict(PLACEMENT, cluster=None, esxi_host=esxi_host,
                                                              resource_pool=None))
        assert (placement.host._moId, placement.resource_pool._moId) == (host._moId, cluster.resourcePool._moId)
    assert [f._moId for f in _placement.vm_folders(service_instance, datacenter._moId, [folder._moId, ""])] == [
        folder._moId, datacenter.vmFolder._moId]


def test_a_deploy_into_an_ambiguous_pool_creates_nothing_and_one_by_path_lands_in_that_pool(
        play, test_ova, vm_names, service_instance, twin_pools):
    before = vm_names()
    refused = play([deploy_task("zeta", test_ova, resource_pool="twin", count=1, request_id="amb")]).result
    assert refused["failed"]
    assert "resource pool 'twin' is ambiguous in cluster DC0_C0" in refused["msg"]
    assert vm_names() == before

    inner = "/DC0/host/DC0_C0/Resources/DC0_C0_RP1/twin"
    made = play([deploy_task("zeta", test_ova, resource_pool=inner, names=["zeta-head"], power_on=False)]).result
    assert not made["failed"], made
    vm = vsphere.find_by_name(service_instance, vim.VirtualMachine, "zeta-head")
    assert vm.resourcePool._moId == twin_pools["inner"]._moId
    vsphere.wait_for_task(service_instance, vm.Destroy_Task())
