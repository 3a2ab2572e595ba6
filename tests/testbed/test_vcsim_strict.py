"""The testbed's vcsim refuses what vCenter refuses, where upstream vcsim forgives.

Each test shows one behaviour of vCenter that testbed/vcsim adds over
govmomi's simulator (the Go file named in each test cites the source of the
behaviour), and where it matters, that the collection's own code copes with it.
"""

import threading
import time
from xml.etree import ElementTree

import pytest
from pyVmomi import vim, vmodl

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ledger, _nfc, _nodes, _ovf_package, _waiter
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, VcenterClient
from testbed import simulator, vsphere
from testbed.appliance import CLOUD_INIT_PROPERTIES, build_test_ova
from testbed.ova_import import import_ova

OVF_ENV = "{http://schemas.dmtf.org/ovf/environment/1}"
VMWARE_OVF_ENV = "{http://www.vmware.com/schema/ovfenv}"
SHORT_LEASE_SECONDS = 2



def remove_vm_named(service_instance, folder, name):
    vm = _ledger.vm_in_folder(service_instance, folder, name)
    if vm is not None:
        _nodes.destroy_vm(service_instance, vm, name)

def connect(sim):
    endpoint = sim.endpoint
    return VcenterClient(endpoint.host, endpoint.username, endpoint.password, port=endpoint.port,
                         validate_certs=False)


@pytest.fixture(scope="module")
def strict_vcsim(testbed_prerequisites):
    """A vcsim whose NFC leases time out after 2 s (vCenter: 300 s)."""
    with simulator.Vcsim(lease_timeout=SHORT_LEASE_SECONDS) as sim:
        yield sim


@pytest.fixture
def client(strict_vcsim):
    with connect(strict_vcsim) as client:
        yield client


@pytest.fixture(scope="module")
def forgetful_vcsim(testbed_prerequisites):
    """A vcsim whose sessions end after 1 s idle (vCenter: 30 min)."""
    with simulator.Vcsim(session_idle_timeout=1) as sim:
        yield sim


def import_plain(service_instance, name, style="ubuntu", properties=None):
    ova = build_test_ova(style=style)
    return import_ova(service_instance, ova, name, **simulator.default_placement(service_instance),
                      properties=properties or {})


def lease_for(service_instance, name):
    """An ImportVApp lease for the test OVA, ready; (lease, info)."""
    placement = simulator.default_placement(service_instance)
    with _ovf_package.OvfPackage(str(build_test_ova()), validate_certs=False) as package:
        spec = service_instance.content.ovfManager.CreateImportSpec(
            package.descriptor, placement["resource_pool"], placement["datastore"],
            vim.OvfManager.CreateImportSpecParams(entityName=name))
    lease = placement["resource_pool"].ImportVApp(spec.importSpec, placement["folder"])
    return lease, _waiter.wait_for_lease(service_instance, lease, name, 30)


# ----- NFC leases (lease.go) -----

def test_a_lease_without_progress_times_out_and_says_so(client):
    service_instance = client.service_instance
    lease, info = lease_for(service_instance, "strict-lease-idle")
    assert info.leaseTimeout == SHORT_LEASE_SECONDS, "the lease states the timeout it is held to"
    time.sleep(SHORT_LEASE_SECONDS + 1.5)
    props = vsphere.read_properties(service_instance, lease, ["state", "error"])
    assert props["state"] == vim.HttpNfcLease.State.error
    assert isinstance(props["error"], vim.fault.Timedout)
    with pytest.raises(vim.fault.Timedout):
        lease.HttpNfcLeaseComplete()
    with pytest.raises(vim.fault.Timedout):
        lease.HttpNfcLeaseProgress(50)
    remove_vm_named(service_instance, simulator.default_placement(service_instance)["folder"],
                    "strict-lease-idle")


def test_progress_keeps_a_lease_alive_past_its_timeout(client):
    service_instance = client.service_instance
    lease, _ = lease_for(service_instance, "strict-lease-kept")
    for percent in range(0, 100, 10):
        lease.HttpNfcLeaseProgress(percent)
        time.sleep(SHORT_LEASE_SECONDS / 4)
    assert vsphere.read_properties(service_instance, lease, ["state"])["state"] == vim.HttpNfcLease.State.ready
    lease.HttpNfcLeaseComplete()
    remove_vm_named(service_instance, simulator.default_placement(service_instance)["folder"],
                    "strict-lease-kept")


class SlowFile:
    """A disk whose first bytes come after `seconds`: an upload stalled for several lease timeouts."""

    def __init__(self, handle, seconds):
        self._handle = handle
        self._seconds = seconds

    def read(self, size):
        time.sleep(self._seconds)
        self._seconds = 0
        return self._handle.read(size)

    def close(self):
        self._handle.close()


@pytest.fixture
def slow_upload(monkeypatch):
    seconds = 2 * SHORT_LEASE_SECONDS + 1
    original = _ovf_package.OvfPackage.open_file
    monkeypatch.setattr(_ovf_package.OvfPackage, "open_file", lambda package, href: SlowFile(original(package, href), seconds))
    return seconds


def test_the_collections_import_keeps_a_slow_upload_alive(client, slow_upload):
    started = time.monotonic()
    vm = import_plain(client.service_instance, "strict-slow-upload")
    assert time.monotonic() - started > slow_upload - 0.5, "the upload outlasted the lease timeout"
    assert vsphere.read_properties(client.service_instance, vm, ["name"])["name"] == "strict-slow-upload"
    remove_vm_named(client.service_instance, simulator.default_placement(client.service_instance)["folder"],
                    "strict-slow-upload")


def test_without_keepalive_the_same_slow_upload_fails_and_leaves_no_vm(client, slow_upload, monkeypatch):
    monkeypatch.setattr(_nfc, "keepalive_interval", lambda lease_timeout: 3600)
    service_instance = client.service_instance
    with pytest.raises((vim.fault.Timedout, RayVsphereError)):
        import_plain(service_instance, "strict-slow-unkept")
    assert service_instance.content.searchIndex.FindChild(
        simulator.default_placement(service_instance)["folder"], "strict-slow-unkept") is None


# ----- clones (clone.go) -----

def clone(service_instance, source, name, *, linked=False, snapshot=None, host=None):
    placement = simulator.default_placement(service_instance)
    location = vim.vm.RelocateSpec(pool=placement["resource_pool"], host=host)
    if linked:
        location.diskMoveType = "createNewChildDiskBacking"
    spec = vim.vm.CloneSpec(location=location, powerOn=False, template=False, snapshot=snapshot)
    return source.CloneVM_Task(folder=placement["folder"], name=name, spec=spec)


def test_a_linked_clone_needs_a_snapshot(client):
    service_instance = client.service_instance
    source = import_plain(service_instance, "strict-linked-source")
    with pytest.raises(vmodl.fault.InvalidArgument) as refused:
        clone(service_instance, source, "strict-linked-nosnap", linked=True)
    assert refused.value.invalidProperty == "spec.snapshot"
    assert service_instance.content.searchIndex.FindChild(
        simulator.default_placement(service_instance)["folder"], "strict-linked-nosnap") is None

    vsphere.wait_for_task(service_instance, source.CreateSnapshot_Task(name="base", memory=False, quiesce=False))
    snapshot = vsphere.read_properties(service_instance, source, ["snapshot"])["snapshot"].currentSnapshot
    linked = vsphere.wait_for_task(service_instance, clone(service_instance, source, "strict-linked-snap",
                                                           linked=True, snapshot=snapshot))
    assert vsphere.read_properties(service_instance, linked, ["name"])["name"] == "strict-linked-snap"
    for vm in (linked, source):
        vsphere.wait_for_task(service_instance, vm.Destroy_Task())


def test_a_clone_keeps_the_sources_vapp_config(client):
    service_instance = client.service_instance
    values = {"hostname": "strict-vapp-source", "instance-id": "i-strict", "public-keys": "ssh-ed25519 AAAA x"}
    source = import_plain(service_instance, "strict-vapp-source", properties=values)
    copy = vsphere.wait_for_task(service_instance, clone(service_instance, source, "strict-vapp-clone"))
    original, cloned = (vsphere.read_properties(service_instance, vm, ["config.vAppConfig"])["config.vAppConfig"]
                        for vm in (source, copy))
    assert cloned.ovfEnvironmentTransport == original.ovfEnvironmentTransport == ["com.vmware.guestInfo"]
    assert {p.id: p.value for p in cloned.property} == {p.id: p.value for p in original.property}
    assert {p.id: p.value for p in cloned.property if p.value} == values
    assert [p.name for p in cloned.product] == [p.name for p in original.product]
    for vm in (copy, source):
        vsphere.wait_for_task(service_instance, vm.Destroy_Task())


# ----- the OVF environment (ovfenv.go) -----

def ovf_environment(service_instance, vm):
    extra = vsphere.read_properties(service_instance, vm, ["config.extraConfig"])["config.extraConfig"]
    return {option.key: option.value for option in extra}.get("guestinfo.ovfEnv")


def test_the_import_spec_carries_the_ovfs_transport(client):
    service_instance = client.service_instance
    placement = simulator.default_placement(service_instance)
    for style, transport in (("ubuntu", ["com.vmware.guestInfo"]), ("packer", [])):
        with _ovf_package.OvfPackage(str(build_test_ova(style=style)), validate_certs=False) as package:
            spec = service_instance.content.ovfManager.CreateImportSpec(
                package.descriptor, placement["resource_pool"], placement["datastore"],
                vim.OvfManager.CreateImportSpecParams(entityName="strict-spec"))
        assert list(spec.importSpec.configSpec.vAppConfig.ovfEnvironmentTransport or []) == transport


def test_power_on_writes_the_ovf_environment_from_the_vapp_properties(client):
    service_instance = client.service_instance
    values = {"hostname": "strict-env", "instance-id": "i-env", "public-keys": "ssh-ed25519 AAAA \"q\" & <a> 'b'"}
    vm = import_plain(service_instance, "strict-env", properties=values)
    assert ovf_environment(service_instance, vm) is None, "written at power-on, not before"
    vsphere.wait_for_task(service_instance, vm.PowerOnVM_Task())
    document = ElementTree.fromstring(ovf_environment(service_instance, vm))
    assert document.tag == OVF_ENV + "Environment"
    assert document.get(VMWARE_OVF_ENV + "vCenterId") == vm._moId
    assert document.find(f"{OVF_ENV}PlatformSection/{OVF_ENV}Kind").text == "VMware ESXi"
    properties = {p.get(OVF_ENV + "key"): p.get(OVF_ENV + "value")
                  for p in document.iter(OVF_ENV + "Property")}
    assert properties == {**dict.fromkeys(CLOUD_INIT_PROPERTIES, ""), **values}, "every property, unset ones empty"
    adapters = list(document.iter(VMWARE_OVF_ENV + "Adapter"))
    assert [a.get(VMWARE_OVF_ENV + "network") for a in adapters] == ["VM Network"]
    vsphere.wait_for_task(service_instance, vm.PowerOffVM_Task())
    vsphere.wait_for_task(service_instance, vm.Destroy_Task())


def test_a_property_edit_changes_only_what_it_sets(client):
    """Clients edit a vApp property by key and value; vcsim replaced the whole property, id and all."""
    service_instance = client.service_instance
    vm = import_plain(service_instance, "strict-edit", properties={"hostname": "before"})
    hostname = next(p for p in vsphere.read_properties(service_instance, vm, ["config.vAppConfig.property"])[
        "config.vAppConfig.property"] if p.id == "hostname")
    edit = vim.vApp.PropertySpec(operation="edit", info=vim.vApp.PropertyInfo(key=hostname.key, value="after"))
    vsphere.wait_for_task(service_instance, vm.ReconfigVM_Task(
        vim.vm.ConfigSpec(vAppConfig=vim.vApp.VmConfigSpec(property=[edit]))))
    edited = next(p for p in vsphere.read_properties(service_instance, vm, ["config.vAppConfig.property"])[
        "config.vAppConfig.property"] if p.key == hostname.key)
    assert (edited.id, edited.type, edited.label, edited.value) == ("hostname", hostname.type, hostname.label, "after")
    vsphere.wait_for_task(service_instance, vm.PowerOnVM_Task())
    assert 'oe:key="hostname" oe:value="after"' in ovf_environment(service_instance, vm)
    vsphere.wait_for_task(service_instance, vm.PowerOffVM_Task())
    vsphere.wait_for_task(service_instance, vm.Destroy_Task())


def test_no_ovf_environment_without_the_guestinfo_transport(client):
    service_instance = client.service_instance
    vm = import_plain(service_instance, "strict-no-env", style="packer")
    vsphere.wait_for_task(service_instance, vm.PowerOnVM_Task())
    assert ovf_environment(service_instance, vm) is None
    vsphere.wait_for_task(service_instance, vm.PowerOffVM_Task())
    vsphere.wait_for_task(service_instance, vm.Destroy_Task())


# ----- sessions (session.go) -----

def test_an_idle_session_ends(forgetful_vcsim):
    endpoint = forgetful_vcsim.endpoint
    service_instance = endpoint.connect()
    root = service_instance.content.rootFolder
    assert vsphere.read_properties(service_instance, root, ["name"])["name"] == "Datacenters"
    time.sleep(2.5)  # idle for more than two checks of a 1 s timeout
    with pytest.raises(vim.fault.NotAuthenticated):  # vcsim answered an empty object without a session
        service_instance.content.propertyCollector.RetrieveContents([vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=root)],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.Folder, pathSet=["name"])])])


def test_the_collections_client_logs_in_again_after_its_session_ended(forgetful_vcsim):
    with connect(forgetful_vcsim) as client:
        session_manager = client.service_instance.content.sessionManager
        first = session_manager.currentSession.key
        time.sleep(2.5)
        assert vsphere.read_properties(client.service_instance, client.content.rootFolder, ["name"])["name"]
        assert session_manager.currentSession.key != first, "a new session"


# ----- provisioning per host (provisioning.go) -----

CLONE_SECONDS = 1.0


@pytest.fixture(scope="module")
def busy_vcsim(testbed_prerequisites):
    """A vcsim whose clones take 1 s each, so that they overlap."""
    with simulator.Vcsim(method_delay={"CloneVm": int(CLONE_SECONDS * 1000)}) as sim:
        yield sim


@pytest.fixture(scope="module")
def sources(busy_vcsim):
    """Five VMs to clone from, each with a snapshot: clones of one source wait for each other anyway."""
    service_instance = busy_vcsim.endpoint.connect()
    vms = [import_plain(service_instance, f"strict-source-{index}") for index in range(5)]
    for vm in vms:
        vsphere.wait_for_task(service_instance, vm.CreateSnapshot_Task(name="base", memory=False, quiesce=False))
    yield service_instance, vms
    vsphere.disconnect(service_instance)


def hosts_of(service_instance, cluster_name):
    cluster = vsphere.find_by_name(service_instance, vim.ClusterComputeResource, cluster_name)
    return vsphere.read_properties(service_instance, cluster, ["host"])["host"]


def clone_at_once(service_instance, requests):
    """Start CloneVM_Task for every (source, name, host, linked) together; when each call returned, in seconds."""
    started = time.monotonic()
    returned, tasks, errors = {}, {}, []

    def start(source, name, host, linked):
        try:
            snapshot = vsphere.read_properties(service_instance, source, ["snapshot"])["snapshot"].currentSnapshot
            tasks[name] = clone(service_instance, source, name, linked=linked, snapshot=snapshot if linked else None,
                                host=host)
            returned[name] = time.monotonic() - started
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=start, args=request) for request in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    for name, task in tasks.items():
        clone_vm = vsphere.wait_for_task(service_instance, task)
        vsphere.wait_for_task(service_instance, clone_vm.Destroy_Task())
    return returned


def test_a_host_runs_four_full_clones_at_once_and_the_fifth_waits(sources):
    service_instance, vms = sources
    host = hosts_of(service_instance, "DC0_C0")[0]
    returned = clone_at_once(service_instance, [(vm, f"strict-full-{i}", host, False) for i, vm in enumerate(vms)])
    times = sorted(returned.values())
    assert times[3] < CLONE_SECONDS / 2, f"16 cost units: four full clones (4 each) start at once: {times}"
    assert times[4] >= CLONE_SECONDS * 0.9, f"the fifth waits for one to end: {times}"


def test_linked_clones_cost_less_and_other_hosts_do_not_wait(sources):
    service_instance, vms = sources
    first, second = hosts_of(service_instance, "DC0_C0")[:2]
    linked = clone_at_once(service_instance, [(vm, f"strict-linked-{i}", first, True) for i, vm in enumerate(vms)])
    assert max(linked.values()) < CLONE_SECONDS / 2, f"five linked clones (1 each) start at once: {linked}"
    spread = clone_at_once(service_instance, [(vm, f"strict-spread-{i}", first if i < 4 else second, False)
                                              for i, vm in enumerate(vms)])
    assert max(spread.values()) < CLONE_SECONDS / 2, f"a full clone to another host does not wait: {spread}"
