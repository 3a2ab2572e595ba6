"""Build the test appliance: a small but valid OVA, cached between runs.

It has what a real Ray node image has in the places vCenter looks: an OVF
descriptor with CPU, memory, a SCSI disk and a NIC on "VM Network"; a
streamOptimized VMDK made by qemu-img; a SHA256 manifest; and a ProductSection
with the cloud-init properties of Ubuntu's cloud images (instance-id,
hostname, public-keys, user-data), through which a deploy injects SSH keys.
"""

import hashlib
import io
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

APPLIANCE_NAME = "ray-test-appliance"
DISK_FILE = f"{APPLIANCE_NAME}-disk1.vmdk"
DISK_CAPACITY_MIB = 16
# network-config: cloud-init's OVF datasource reads static network config from it (node_deploy's ip_pool).
CLOUD_INIT_PROPERTIES = ("instance-id", "hostname", "public-keys", "user-data", "network-config")
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ray-vsphere"

OVF_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
          xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
          xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
          xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
          xmlns:vmw="http://www.vmware.com/schema/ovf"
          xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{disk_file}" ovf:id="file1" ovf:size="{disk_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity_mib}" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1"
          ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
          ovf:populatedSize="{disk_size}"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A Ray node for tests</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="94" vmw:osType="ubuntu64Guest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
{product_section}
    <VirtualHardwareSection{transport}>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>2 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>2048MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>2048</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard Disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:Description>VmxNet3 ethernet adapter on "VM Network"</rasd:Description>
        <rasd:ElementName>Ethernet 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""

# Ubuntu's cloud OVA: cloud-init's OVF properties, shown to the guest as
# guestinfo.ovfEnv (the com.vmware.guestInfo transport).
PRODUCT_SECTION = """    <ProductSection ovf:required="false">
      <Info>Cloud-Init customization</Info>
      <Product>Ray test appliance</Product>
{properties}
    </ProductSection>"""
GUESTINFO_TRANSPORT = ' ovf:transport="com.vmware.guestInfo"'
# Ubuntu-style declares cloud-init's OVF properties; Packer-style, like most
# Packer-built images, declares none and is configured through guestinfo.
STYLES = ("ubuntu", "packer")

PROPERTY_TEMPLATE = (
    '      <Property ovf:key="{key}" ovf:type="string" ovf:userConfigurable="true" ovf:value="">\n'
    "        <Label>{key}</Label>\n"
    "      </Property>"
)


def build_test_ova(cache_dir=DEFAULT_CACHE_DIR, payload_mib=0, style="ubuntu"):
    """Path of the test OVA, built once per descriptor version into cache_dir.

    payload_mib writes that much incompressible data into the disk, for
    benchmarks whose uploads should cost what a real image's do. style: one
    of STYLES.
    """
    capacity_mib = DISK_CAPACITY_MIB + payload_mib
    descriptor = _descriptor(style)
    recipe = hashlib.sha256(f"{descriptor}{capacity_mib}".encode()).hexdigest()[:12]
    ova_path = Path(cache_dir) / f"{APPLIANCE_NAME}-{style}-{recipe}.ova"
    if not ova_path.exists():
        _build(ova_path, descriptor, capacity_mib, payload_mib)
    if not payload_mib and style == "ubuntu":
        _link_latest(ova_path)
    return ova_path


def _descriptor(style):
    """The OVF descriptor without its disk size, which _build fills in."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, not {style!r}")
    ubuntu = style == "ubuntu"
    properties = "\n".join(PROPERTY_TEMPLATE.format(key=key) for key in CLOUD_INIT_PROPERTIES)
    return OVF_TEMPLATE.replace("{product_section}", PRODUCT_SECTION.format(properties=properties) if ubuntu else "") \
        .replace("{transport}", GUESTINFO_TRANSPORT if ubuntu else "")


def _link_latest(ova_path):
    """<cache>/ray-test-appliance.ova, the stable name examples/ray-cluster.testbed.yaml uses."""
    link = ova_path.with_name(f"{APPLIANCE_NAME}.ova")
    if link.is_symlink() and os.readlink(link) == ova_path.name:
        return
    partial = link.with_suffix(f".{os.getpid()}.link")
    partial.unlink(missing_ok=True)
    partial.symlink_to(ova_path.name)
    partial.rename(link)


def _build(ova_path, descriptor, capacity_mib, payload_mib):
    ova_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ray-vsphere-appliance-") as work_dir:
        disk = _streamoptimized_disk(Path(work_dir), capacity_mib, payload_mib)
        descriptor = descriptor.format(
            name=APPLIANCE_NAME,
            disk_file=DISK_FILE,
            disk_size=disk.stat().st_size,
            capacity_mib=capacity_mib,
        ).encode()
        partial = ova_path.with_suffix(f".{os.getpid()}.partial")
        _write_ova(partial, descriptor, disk)
        partial.rename(ova_path)  # atomic: parallel builders never see half an OVA


def _streamoptimized_disk(work_dir, capacity_mib, payload_mib):
    raw, vmdk = work_dir / "disk.raw", work_dir / DISK_FILE
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(raw), f"{capacity_mib}M"], check=True)
    if payload_mib:
        with open(raw, "r+b") as disk:
            for _ in range(payload_mib):
                disk.write(os.urandom(1024 * 1024))
    subprocess.run(
        ["qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", str(raw), str(vmdk)],
        check=True,
    )
    return vmdk


def _write_ova(path, descriptor, disk):
    """An OVA is a ustar archive with the descriptor first, then the manifest."""
    disk_bytes = disk.read_bytes()
    manifest = (
        f"SHA256({APPLIANCE_NAME}.ovf)= {hashlib.sha256(descriptor).hexdigest()}\n"
        f"SHA256({DISK_FILE})= {hashlib.sha256(disk_bytes).hexdigest()}\n"
    ).encode()
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as ova:
        for name, data in ((f"{APPLIANCE_NAME}.ovf", descriptor), (f"{APPLIANCE_NAME}.mf", manifest), (DISK_FILE, disk_bytes)):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            member.mode = 0o644
            ova.addfile(member, io.BytesIO(data))
