"""What a test guest boots with: Ubuntu's cloud-init setup and what vCenter presents to a VM.

A VM on vCenter boots its image's cloud-init, which reads what vCenter shows
it through VMware Tools: `vmware-rpctool "info-get guestinfo.<key>"` answers
extraConfig's guestinfo.* keys, among them guestinfo.ovfEnv, the OVF
environment document vCenter writes from the VM's vApp properties at
power-on (the testbed's vcsim does too, testbed/vcsim/ovfenv.go). A test
guest runs Debian's real cloud-init the same way; these stand-ins are what it
calls:

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


def presented_guestinfo(extra_config):
    """{guestinfo key: value} a VM's guest reads through VMware Tools: its extraConfig's guestinfo.* keys.

    vApp properties reach the guest only inside guestinfo.ovfEnv, which vCenter
    writes at power-on when the VM's transport is com.vmware.guestInfo; not
    as keys of their own.
    """
    return {key: value for key, value in extra_config.items() if key.startswith("guestinfo.")}
