"""What a test guest boots with: Ubuntu's cloud-init setup and what vCenter presents to a VM.

A VM on vCenter boots its image's cloud-init, which reads what vCenter shows
it through VMware Tools: `vmware-rpctool "info-get guestinfo.<key>"` answers
extraConfig's guestinfo.* keys, and guestinfo.ovfEnv is the OVF environment
document vCenter generates from the VM's vApp properties. A test guest runs
Debian's real cloud-init the same way; these stand-ins are what it calls:

- vmware-rpctool answers from files the guest simulator wrote at power-on
  from vcsim's view of the VM (and keeps what the guest sets, such as
  guestinfo.local-ipv4);
- systemd-detect-virt says "not a container" and dmidecode says "VMware
  Virtual Platform": these machines are containers without DMI, and cloud-init
  only trusts the VMware and OVF sources on a VMware VM.

The image's cloud-init configuration is Ubuntu's cloud images': a default
user `ubuntu` with passwordless sudo, root login refused (disable_root), no
password login.
"""

from xml.sax.saxutils import quoteattr

# DMTF DSP0243 (OVF 2.1.1), section 11.1 "Environment Document": an Environment
# element in the OVF environment namespace whose PropertySection holds one
# Property (oe:key, oe:value) per vApp property; vCenter adds VMware's
# PlatformSection and ve:vCenterId (the VM's managed object id).
OVF_ENV_NAMESPACE = "http://schemas.dmtf.org/ovf/environment/1"

CLOUD_CONFIG = """\
# As Ubuntu's cloud images configure cloud-init (the test guests' image).
datasource_list: [OVF, VMware, None]
disable_root: true
ssh_pwauth: false
system_info:
  distro: debian
  default_user:
    name: ubuntu
    lock_passwd: true
    gecos: Ubuntu
    groups: [adm, sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
  paths:
    cloud_dir: /var/lib/cloud/
    templates_dir: /etc/cloud/templates/
  ssh_svcname: ssh
# No disk to grow, no locale to generate and no network to configure in a
# network namespace; they would only fail and mark the boot as an error.
resize_rootfs: false
growpart: {mode: "off"}
locale: false
network: {config: disabled}
"""

VMWARE_RPCTOOL = """\
#!/bin/sh
# vmware-rpctool "info-get guestinfo.KEY" | "info-set guestinfo.KEY VALUE", as open-vm-tools' does.
store={store}
case "$1" in
"info-get "*)
    key=${{1#info-get }}
    [ -f "$store/$key" ] || exit 1
    cat "$store/$key" ;;
"info-set "*)
    rest=${{1#info-set }}
    printf '%s' "${{rest#* }}" >"$store/${{rest%% *}}" ;;
*) echo "vmware-rpctool: unsupported: $1" >&2; exit 1 ;;
esac
"""

SYSTEMD_DETECT_VIRT = """\
#!/bin/sh
# A VMware VM, not a container: what systemd-detect-virt answers there.
for arg; do [ "$arg" = --container ] && exit 1; done
echo vmware
"""

DMIDECODE = """\
#!/bin/sh
# What dmidecode --string reads from a VMware VM's SMBIOS.
case "$2" in
system-product-name) echo "VMware Virtual Platform" ;;
system-manufacturer) echo "VMware, Inc." ;;
system-uuid) echo {system_uuid} ;;
*) echo "" ;;
esac
"""

STAND_INS = {"vmware-rpctool": VMWARE_RPCTOOL, "systemd-detect-virt": SYSTEMD_DETECT_VIRT, "dmidecode": DMIDECODE}


def ovf_environment(vm_moid, properties):
    """The guestinfo.ovfEnv document for {property id: value} (DSP0243 section 11.1)."""
    entries = "\n".join(f"    <Property oe:key={quoteattr(key)} oe:value={quoteattr(value)}/>"
                        for key, value in sorted(properties.items()))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Environment xmlns="{OVF_ENV_NAMESPACE}" xmlns:oe="{OVF_ENV_NAMESPACE}"\n'
        '     xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
        f'     xmlns:ve="http://www.vmware.com/schema/ovfenv" oe:id="" ve:vCenterId={quoteattr(vm_moid)}>\n'
        "  <PlatformSection>\n"
        "    <Kind>VMware ESXi</Kind>\n"
        "    <Vendor>VMware, Inc.</Vendor>\n"
        "    <Locale>en</Locale>\n"
        "  </PlatformSection>\n"
        "  <PropertySection>\n"
        f"{entries}\n"
        "  </PropertySection>\n"
        "</Environment>\n"
    )


def presented_guestinfo(vm_moid, vapp_properties, extra_config):
    """{guestinfo key: value} a VM's guest reads through VMware Tools.

    vApp properties reach the guest only as guestinfo.ovfEnv. vCenter shows it
    when the VM's OVF environment transport is com.vmware.guestInfo; vcsim
    v0.56.0 drops the transport on import, so a VM with vApp properties is
    taken to have it, as Ubuntu's cloud OVA declares.
    """
    presented = {key: value for key, value in extra_config.items() if key.startswith("guestinfo.")}
    if vapp_properties:
        presented["guestinfo.ovfEnv"] = ovf_environment(vm_moid, vapp_properties)
    return presented
