"""The testbed's vcsim knows GPUs as a vCenter without DRS does (testbed/vcsim/gpu.go, gpu_admission.go).

Hosts list the devices of testbed/gpu_hosts.yml, QueryConfigTarget offers them per host, a power-on takes a free
device or fails with vCenter's fault, power-off gives it back, and snapshots, linked clones and suspend of a
passthrough VM are refused. VMs are made with CreateVM_Task: no guests, no Ray. The expected values come from
testbed/gpu_hosts.yml (read through testbed.gpus), the faults from vCenter's API reference (cited in the Go files).
"""

import threading
import time

import pytest
from pyVim.connect import Connect
from pyVmomi import vim, vmodl

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _waiter
from testbed import gpus, simulator, vsphere

LAYOUT = gpus.gpu_layout()
API_VERSION = gpus.API_VERSION
PASSTHROUGH_HOSTS = sorted(name for name, devices in LAYOUT["hosts"].items()
                           if any(gpu["mode"] == "passthrough" for gpu in devices))
VGPU_HOSTS = sorted(name for name, devices in LAYOUT["hosts"].items() if any(gpu["mode"] == "vgpu" for gpu in devices))
PASSTHROUGH_GPU = LAYOUT["hosts"][PASSTHROUGH_HOSTS[0]][0]
VGPU_GPU = LAYOUT["hosts"][VGPU_HOSTS[0]][0]
PCI_3D_CONTROLLER = 0x0302


@pytest.fixture(scope="module")
def gpu_vcsim(testbed_prerequisites):
    with simulator.Vcsim(api_version=API_VERSION) as sim:
        yield sim


@pytest.fixture
def si(gpu_vcsim):
    service_instance = gpu_vcsim.endpoint.connect()
    yield service_instance
    service_instance.content.sessionManager.Logout()


@pytest.fixture
def make_vm(si):
    """make_vm(name, host, backing, ...): a powered-off VM on that host of the GPU cluster; all are destroyed after."""
    made = []

    def make(name, host_name, backing=None, *, version="vmx-17", locked=True):
        cluster = vsphere.find_by_name(si, vim.ClusterComputeResource, LAYOUT["cluster"])
        datacenter = vsphere.find_by_name(si, vim.Datacenter, simulator.DATACENTER)
        changes = []
        if backing is not None:
            changes.append(vim.vm.device.VirtualDeviceSpec(
                operation="add", device=vim.vm.device.VirtualPCIPassthrough(key=-100, backing=backing)))
        spec = vim.vm.ConfigSpec(name=name, memoryMB=1024, numCPUs=1, guestId="otherGuest64", version=version,
                                 files=vim.vm.FileInfo(vmPathName=f"[{simulator.DATASTORES[0]}]"),
                                 memoryReservationLockedToMax=locked, deviceChange=changes)
        vm = vsphere.wait_for_task(si, datacenter.vmFolder.CreateVM_Task(
            config=spec, pool=cluster.resourcePool, host=host_named(si, host_name)))
        made.append(vm)
        return vm

    yield make
    for vm in made:
        if read(si, vm, "runtime.powerState") == "poweredOn":
            vsphere.wait_for_task(si, vm.PowerOffVM_Task())
        vsphere.wait_for_task(si, vm.Destroy_Task())


def host_named(si, name):
    return vsphere.find_by_name(si, vim.HostSystem, name)


def read(si, obj, path):
    return vsphere.objects_of_type(si, type(obj), [path]).get(obj, {}).get(path)


def dynamic(gpu=PASSTHROUGH_GPU, *, label=None, device_id=None):
    return vim.vm.device.VirtualPCIPassthrough.DynamicBackingInfo(
        allowedDevice=[vim.vm.device.VirtualPCIPassthrough.AllowedDevice(
            vendorId=gpu["vendor_id"], deviceId=device_id if device_id is not None else gpu["device_id"])],
        customLabel=label if label is not None else gpu.get("custom_label", ""), deviceName="")


def vgpu(profile):
    return vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo(vgpu=profile)


def profile_capacity(gpu, profile):
    size = {entry["name"]: entry["framebuffer_gib"] for entry in gpu["vgpu_profiles"]}[profile]
    return gpu["memory_gib"] // size


def task_outcome(si, task, timeout=30):
    """The finished task's info (state success or error)."""
    deadline = time.monotonic() + timeout
    while True:
        info = _waiter.task_info(si, task)
        if info.state in (vim.TaskInfo.State.success, vim.TaskInfo.State.error):
            return info
        assert time.monotonic() < deadline, f"task {task._moId} still {info.state}"
        time.sleep(0.05)


def refused(si, task, fault_type):
    info = task_outcome(si, task)
    assert info.state == vim.TaskInfo.State.error, "the task must fail"
    assert isinstance(info.error, fault_type), f"{type(info.error).__name__}: {info.error.msg}"
    return info.error


def bindings(si, host_name):
    return [(binding.instanceId, binding.vm) for binding in read(si, host_named(si, host_name),
                                                                 "config.assignableHardwareBinding") or []]


def assigned_ids(si, vm):
    return [device.backing.assignedId or None for device in read(si, vm, "config.hardware.device")
            if isinstance(device, vim.vm.device.VirtualPCIPassthrough)]


def vgpu_users(si, host_name, pci_id):
    infos = read(si, host_named(si, host_name), "config.graphicsInfo") or []
    return [list(info.vm) for info in infos if info.pciId == pci_id][0]


# ----- what hosts list -----

def test_hosts_list_exactly_the_gpus_of_the_layout(si):
    hosts = vsphere.objects_of_type(si, vim.HostSystem, ["name", "hardware.pciDevice", "config.pciPassthruInfo",
                                                         "config.sharedPassthruGpuTypes", "config.graphicsInfo"])
    assert set(LAYOUT["hosts"]) <= {props["name"] for props in hosts.values()}
    for props in hosts.values():
        expected = LAYOUT["hosts"].get(props["name"], [])
        devices = [device for device in props["hardware.pciDevice"] if device.classId == PCI_3D_CONTROLLER]
        # One fresh list per host: a host without GPUs must not see another's (vcsim shares its template's slices).
        assert [(device.id, device.vendorId, device.deviceId, device.subVendorId, device.subDeviceId, device.deviceName,
                 device.vendorName) for device in devices] == [
            (gpu["pci_id"], gpu["vendor_id"], gpu["device_id"], gpu["sub_vendor_id"], gpu["sub_device_id"],
             gpu["device_name"], gpu["vendor_name"]) for gpu in expected], props["name"]
        passthru = {info.id: info for info in props["config.pciPassthruInfo"] or []}
        assert set(passthru) >= {device.id for device in props["hardware.pciDevice"]}, "one entry per PCI device"
        for gpu in expected:
            info = passthru[gpu["pci_id"]]  # matched by id: the two lists are not in the same order
            enabled = gpu["mode"] == "passthrough"
            assert (info.passthruCapable, info.passthruEnabled, info.passthruActive) == (True, enabled, enabled)
            assert (info.hardwareLabel or "") == gpu.get("custom_label", "")
        profiles = [profile["name"] for gpu in expected for profile in gpu.get("vgpu_profiles", [])]
        assert list(props["config.sharedPassthruGpuTypes"] or []) == profiles
        graphics = [(info.pciId, info.graphicsType, info.memorySizeInKB, list(info.vm))
                    for info in props["config.graphicsInfo"] or []]
        assert graphics == [(gpu["pci_id"], "sharedDirect", gpu["memory_gib"] * 1024 * 1024, [])
                            for gpu in expected if gpu["mode"] == "vgpu"]
        assert not [info for info in props["config.pciPassthruInfo"] or []
                    if info.passthruEnabled and info.id not in {gpu["pci_id"] for gpu in expected}]


def test_the_gpu_cluster_runs_without_drs(si):
    cluster = vsphere.find_by_name(si, vim.ClusterComputeResource, LAYOUT["cluster"])
    assert read(si, cluster, "configurationEx").drsConfig.enabled is False


def test_query_config_target_offers_the_gpus_of_the_host_asked_about(si):
    cluster = vsphere.find_by_name(si, vim.ClusterComputeResource, LAYOUT["cluster"])
    browser = read(si, cluster, "environmentBrowser")
    for host_name in sorted(read(si, host, "name") for host in read(si, cluster, "host")):
        target = browser.QueryConfigTarget(host=host_named(si, host_name))
        expected = LAYOUT["hosts"].get(host_name, [])
        assert [(info.vendorId, info.deviceId, info.customLabel) for info in target.dynamicPassthrough] == [
            (gpu["vendor_id"], gpu["device_id"], gpu["custom_label"]) for gpu in expected
            if gpu["mode"] == "passthrough"], host_name
        profiles = [(profile["name"], profile["framebuffer_gib"]) for gpu in expected
                    for profile in gpu.get("vgpu_profiles", [])]
        assert [(info.profileName, info.fbSizeInGib) for info in target.vgpuProfileInfo] == profiles, host_name
        assert [info.vgpu for info in target.sharedGpuPassthroughTypes] == [name for name, _ in profiles]
        assert target.datastore, "vcsim's own answer is kept"
    everywhere = browser.QueryConfigTarget()
    assert {(info.vendorId, info.deviceId) for info in everywhere.dynamicPassthrough} == {
        (PASSTHROUGH_GPU["vendor_id"], PASSTHROUGH_GPU["device_id"])}
    assert {info.profileName for info in everywhere.vgpuProfileInfo} == {
        profile["name"] for profile in VGPU_GPU["vgpu_profiles"]}


# ----- power-on admission and bindings -----

def test_a_power_on_takes_the_free_device_and_power_off_gives_it_back(si, make_vm):
    host = PASSTHROUGH_HOSTS[0]
    first = make_vm("gpu-first", host, dynamic())
    second = make_vm("gpu-second", host, dynamic())
    vsphere.wait_for_task(si, first.PowerOnVM_Task())
    assert bindings(si, host) == [(PASSTHROUGH_GPU["pci_id"], first)]
    assert assigned_ids(si, first) == [PASSTHROUGH_GPU["pci_id"]], "the VM's backing names the device it got"

    error = refused(si, second.PowerOnVM_Task(), vim.fault.InsufficientResourcesFault)
    assert "pciPassthru0" in error.msg and "gpu-second" in error.msg and host in error.msg
    assert read(si, second, "runtime.powerState") == "poweredOff"
    assert bindings(si, host) == [(PASSTHROUGH_GPU["pci_id"], first)], "a refused power-on binds nothing"

    vsphere.wait_for_task(si, first.PowerOffVM_Task())
    assert bindings(si, host) == []
    assert assigned_ids(si, first) == [None] and assigned_ids(si, second) == [None]
    vsphere.wait_for_task(si, second.PowerOnVM_Task())
    assert bindings(si, host) == [(PASSTHROUGH_GPU["pci_id"], second)]


def test_a_device_of_another_label_or_id_is_not_taken(si, make_vm):
    host = PASSTHROUGH_HOSTS[0]
    for name, backing in (("gpu-label", dynamic(label="h100")), ("gpu-id", dynamic(device_id=0x2330))):
        vm = make_vm(name, host, backing)
        refused(si, vm.PowerOnVM_Task(), vim.fault.InsufficientResourcesFault)
        assert bindings(si, host) == []


def test_a_host_admits_only_the_kind_of_gpu_it_has(si, make_vm):
    """The vGPU host's GPU is in shared-direct mode, not passthrough; a passthrough host offers no vGPU."""
    refused(si, make_vm("gpu-on-vgpu-host", VGPU_HOSTS[0], dynamic(VGPU_GPU, label="")).PowerOnVM_Task(),
            vim.fault.InsufficientResourcesFault)
    refused(si, make_vm("vgpu-on-passthrough-host", PASSTHROUGH_HOSTS[0], vgpu("grid_a100-4c")).PowerOnVM_Task(),
            vim.fault.InsufficientGraphicsResourcesFault)


def test_vgpus_of_one_profile_share_a_gpu_up_to_its_framebuffer(si, make_vm):
    host, profile = VGPU_HOSTS[0], "grid_a100-20c"
    capacity = profile_capacity(VGPU_GPU, profile)
    assert capacity == 2, "the layout's A100 40GB holds two 20 GB vGPUs"
    vms = [make_vm(f"vgpu-{index}", host, vgpu(profile)) for index in range(capacity + 1)]
    for vm in vms[:capacity]:
        vsphere.wait_for_task(si, vm.PowerOnVM_Task())
    assert sorted(vgpu_users(si, host, VGPU_GPU["pci_id"]), key=str) == sorted(vms[:capacity], key=str)
    error = refused(si, vms[capacity].PowerOnVM_Task(), vim.fault.InsufficientGraphicsResourcesFault)
    assert "vgpu-2" in error.msg
    vsphere.wait_for_task(si, vms[0].PowerOffVM_Task())
    vsphere.wait_for_task(si, vms[capacity].PowerOnVM_Task())
    assert vms[0] not in vgpu_users(si, host, VGPU_GPU["pci_id"])


def test_a_gpu_holds_one_vgpu_profile_at_a_time(si, make_vm):
    host = VGPU_HOSTS[0]
    large = make_vm("vgpu-20c", host, vgpu("grid_a100-20c"))
    small = make_vm("vgpu-10c", host, vgpu("grid_a100-10c"))
    vsphere.wait_for_task(si, large.PowerOnVM_Task())
    refused(si, small.PowerOnVM_Task(), vim.fault.InsufficientGraphicsResourcesFault)
    vsphere.wait_for_task(si, large.PowerOffVM_Task())
    vsphere.wait_for_task(si, small.PowerOnVM_Task())
    assert vgpu_users(si, host, VGPU_GPU["pci_id"]) == [small]


def test_a_profile_the_host_does_not_offer_is_refused(si, make_vm):
    vm = make_vm("vgpu-unknown", VGPU_HOSTS[0], vgpu("grid_h100-20c"))
    refused(si, vm.PowerOnVM_Task(), vim.fault.InsufficientGraphicsResourcesFault)


def test_memory_not_all_reserved_is_refused(si, make_vm):
    for name, backing in (("gpu-unreserved", dynamic()), ("vgpu-unreserved", vgpu("grid_a100-4c"))):
        host = PASSTHROUGH_HOSTS[0] if name.startswith("gpu") else VGPU_HOSTS[0]
        vm = make_vm(name, host, backing, locked=False)
        error = refused(si, vm.PowerOnVM_Task(), vim.fault.GenericVmConfigFault)
        assert "memory reservation (sched.mem.min) should be equal to memsize(1024)" in error.msg
        # A reservation of all the memory is what the lock stands for: it is admitted too.
        vsphere.wait_for_task(si, vm.ReconfigVM_Task(vim.vm.ConfigSpec(
            memoryAllocation=vim.ResourceAllocationInfo(reservation=1024))))
        vsphere.wait_for_task(si, vm.PowerOnVM_Task())


def test_dynamic_directpath_below_hardware_version_17_is_refused(si, make_vm):
    vm = make_vm("gpu-vmx13", PASSTHROUGH_HOSTS[0], dynamic(), version="vmx-13")
    error = refused(si, vm.PowerOnVM_Task(), vim.fault.DeviceUnsupportedForVmVersion)
    assert (error.currentVersion, error.expectedVersion) == ("vmx-13", "vmx-17")
    assert bindings(si, PASSTHROUGH_HOSTS[0]) == []
    vsphere.wait_for_task(si, vm.UpgradeVM_Task(version="vmx-17"))
    vsphere.wait_for_task(si, vm.PowerOnVM_Task())


def test_two_power_ons_racing_for_the_last_device_one_wins(gpu_vcsim, make_vm, si):
    host = PASSTHROUGH_HOSTS[-1]
    for round_ in range(4):
        vms = [make_vm(f"gpu-race-{round_}-{index}", host, dynamic()) for index in range(2)]
        sessions = [gpu_vcsim.endpoint.connect() for _ in vms]
        tasks, start = [None, None], threading.Barrier(len(vms))

        def power_on(index):
            stub_vm = vim.VirtualMachine(vms[index]._moId, sessions[index]._stub)
            start.wait()
            tasks[index] = stub_vm.PowerOnVM_Task()

        threads = [threading.Thread(target=power_on, args=(index,)) for index in range(len(vms))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        states = [task_outcome(si, vim.Task(task._moId, si._stub)).state for task in tasks]
        assert sorted(states) == ["error", "success"], f"round {round_}: {states}"
        winner = vms[states.index("success")]
        assert bindings(si, host) == [(PASSTHROUGH_GPU["pci_id"], winner)]
        assert [read(si, vm, "runtime.powerState") for vm in vms].count("poweredOn") == 1
        vsphere.wait_for_task(si, winner.PowerOffVM_Task())
        for session in sessions:
            session.content.sessionManager.Logout()


def test_a_client_speaking_an_api_older_than_dynamic_directpath_is_refused_not_ignored(gpu_vcsim, si, make_vm):
    """pyVmomi sends a 7.0 backing as its 6.5 base type; vcsim refuses it rather than power on a VM with no GPU."""
    endpoint = gpu_vcsim.endpoint
    old = Connect(host=endpoint.host, port=endpoint.port, user=endpoint.username, pwd=endpoint.password,
                       sslContext=endpoint.ssl_context(), version="vim.version.version11")
    try:
        vm = make_vm("gpu-old-api", PASSTHROUGH_HOSTS[0])
        spec = vim.vm.ConfigSpec(memoryReservationLockedToMax=True, deviceChange=[vim.vm.device.VirtualDeviceSpec(
            operation="add", device=vim.vm.device.VirtualPCIPassthrough(key=-100, backing=dynamic()))])
        task = vim.VirtualMachine(vm._moId, old._stub).ReconfigVM_Task(spec)
        error = refused(si, vim.Task(task._moId, si._stub), vim.fault.InvalidDeviceBacking)
        assert error.property == "spec.deviceChange[0].device.backing"
        assert not [device for device in read(si, vm, "config.hardware.device")
                    if isinstance(device, vim.vm.device.VirtualPCIPassthrough)]
        # QueryConfigTarget answers it in its own version: without the 7.0 types it could not read.
        browser = read(si, vsphere.find_by_name(si, vim.ClusterComputeResource, LAYOUT["cluster"]), "environmentBrowser")
        target = vim.EnvironmentBrowser(browser._moId, old._stub).QueryConfigTarget(
            host=vim.HostSystem(host_named(si, PASSTHROUGH_HOSTS[0])._moId, old._stub))
        assert target.datastore and not target.dynamicPassthrough
    finally:
        old.content.sessionManager.Logout()


# ----- what a passthrough VM cannot do -----

def test_snapshots_and_linked_clones_of_a_passthrough_vm_are_refused(si, make_vm):
    vm = make_vm("gpu-snapshot", PASSTHROUGH_HOSTS[0])
    vsphere.wait_for_task(si, vm.CreateSnapshot_Task(name="before-gpu", memory=False, quiesce=False))
    snapshot = read(si, vm, "snapshot").currentSnapshot
    vsphere.wait_for_task(si, vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(
        operation="add", device=vim.vm.device.VirtualPCIPassthrough(key=-100, backing=dynamic()))])))

    error = refused(si, vm.CreateSnapshot_Task(name="with-gpu", memory=False, quiesce=False),
                    vim.fault.SnapshotIncompatibleDeviceInVm)
    assert isinstance(error.fault, vim.fault.DeviceNotSupported) and "PCI passthrough" in error.msg
    refused(si, vm.CreateSnapshotEx_Task(name="with-gpu", memory=False), vim.fault.SnapshotIncompatibleDeviceInVm)

    folder = read(si, vm, "parent")
    before = len(vsphere.objects_of_type(si, vim.VirtualMachine, ["name"]))
    linked = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(diskMoveType="createNewChildDiskBacking"), snapshot=snapshot)
    refused(si, vm.CloneVM_Task(folder=folder, name="gpu-linked", spec=linked), vim.fault.SnapshotIncompatibleDeviceInVm)
    assert len(vsphere.objects_of_type(si, vim.VirtualMachine, ["name"])) == before, "no clone is left behind"


def test_a_vm_without_passthrough_still_snapshots_and_suspends(si, make_vm):
    vm = make_vm("plain", PASSTHROUGH_HOSTS[0])
    vsphere.wait_for_task(si, vm.CreateSnapshot_Task(name="plain", memory=False, quiesce=False))
    vsphere.wait_for_task(si, vm.PowerOnVM_Task())
    vsphere.wait_for_task(si, vm.SuspendVM_Task())
    assert read(si, vm, "runtime.powerState") == "suspended"
    vsphere.wait_for_task(si, vm.PowerOnVM_Task())


def test_a_passthrough_vm_is_not_suspended(si, make_vm):
    vm = make_vm("gpu-suspend", PASSTHROUGH_HOSTS[0], dynamic())
    vsphere.wait_for_task(si, vm.PowerOnVM_Task())
    refused(si, vm.SuspendVM_Task(), vmodl.fault.NotSupported)
    assert read(si, vm, "runtime.powerState") == "poweredOn"
    assert bindings(si, PASSTHROUGH_HOSTS[0]) == [(PASSTHROUGH_GPU["pci_id"], vm)]
