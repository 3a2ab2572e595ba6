"""The test appliance: a valid OVA that imports like a real Ray node image."""

import hashlib
import tarfile
import xml.etree.ElementTree as ElementTree

from pyVmomi import vim

from testbed import appliance, vsphere

OVF = "{http://schemas.dmtf.org/ovf/envelope/1}"


def test_ova_is_a_descriptor_first_archive_with_a_matching_manifest(test_ova):
    with tarfile.open(test_ova) as ova:
        names = ova.getnames()
        assert names[0].endswith(".ovf") and names[1].endswith(".mf")
        contents = {name: ova.extractfile(name).read() for name in names}
    manifest = dict(line.split("= ") for line in contents[names[1]].decode().splitlines())
    for name in (names[0], appliance.DISK_FILE):
        assert manifest[f"SHA256({name})"] == hashlib.sha256(contents[name]).hexdigest()

    disk = contents[appliance.DISK_FILE]
    assert disk[:4] == b"KDMV", "a VMDK sparse extent"
    assert b'createType="streamOptimized"' in disk[:4096]

    envelope = ElementTree.fromstring(contents[names[0]])
    keys = [p.get(f"{OVF}key") for p in envelope.iter(f"{OVF}Property")]
    assert keys == ["instance-id", "hostname", "public-keys", "user-data", "network-config"]
    file_size = envelope.find(f"{OVF}References/{OVF}File").get(f"{OVF}size")
    assert int(file_size) == len(disk)


def test_ova_is_built_once_and_then_taken_from_the_cache(tmp_path):
    first = appliance.build_test_ova(tmp_path)
    built_at = first.stat().st_mtime_ns
    assert appliance.build_test_ova(tmp_path) == first
    assert first.stat().st_mtime_ns == built_at
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, "ray-test-appliance.ova"])
    assert (tmp_path / "ray-test-appliance.ova").resolve() == first, "the stable name the testbed cluster YAML uses"


def test_ova_imports_through_importvapp_with_its_disk_uploaded_through_the_nfc_lease(service_instance, deploy_test_vm):
    vm = deploy_test_vm("ray-import-check", public_key="ssh-ed25519 AAAAC3Nz test", power_on=False)
    props = vsphere.read_properties(service_instance, vm, ["name", "config.hardware", "config.vAppConfig.property",
                                                           "runtime.powerState"])
    assert props["name"] == "ray-import-check"
    hardware = props["config.hardware"]
    assert (hardware.numCPU, hardware.memoryMB) == (2, 2048)
    disks = [d for d in hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
    assert [d.capacityInKB for d in disks] == [appliance.DISK_CAPACITY_MIB * 1024]
    assert any(isinstance(d, vim.vm.device.VirtualVmxnet3) for d in hardware.device)
    vapp = {p.id: p.value for p in props["config.vAppConfig.property"]}
    assert vapp["public-keys"] == "ssh-ed25519 AAAAC3Nz test"
    assert vapp["hostname"] == "ray-import-check"
    assert props["runtime.powerState"] == vim.VirtualMachine.PowerState.poweredOff
    vsphere.wait_for_task(service_instance, vm.Destroy_Task())
