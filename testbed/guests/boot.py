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
password login. Its network is configured as on a Debian image with ifupdown:
cloud-init renders its network configuration (the datasource's, or its
fallback, DHCP on the first NIC) with the ENI renderer into
/etc/network/interfaces.d/50-cloud-init, renaming NICs matched by MAC, and
ifupdown raises them (guest_init.sh runs networking.service's `ifup -a`).
ifupdown's dhcp method runs /sbin/dhclient: in the image, DHCLIENT, which
takes the lease the testbed's DHCP server offers the NIC's MAC
(testbed.guests.net) through the Tools channel and applies it with `ip`.
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
  # The image has ifupdown, not netplan or NetworkManager.
  network:
    renderers: [eni]
# No disk to grow and no locale to generate in a namespace; they would only
# fail and mark the boot as an error.
resize_rootfs: false
growpart: {mode: "off"}
locale: false
"""

# The image's /etc/network/interfaces, as Debian's ifupdown installs it: cloud-init's file is in interfaces.d.
NETWORK_INTERFACES = """\
# interfaces(5) file used by ifup(8) and ifdown(8)
# Include files from /etc/network/interfaces.d:
source /etc/network/interfaces.d/*
"""

# Ubuntu's /etc/resolv.conf: systemd-resolved's stub, which ifupdown's if-up.d/resolved feeds. No resolved runs
# in a test guest, so a name outside /etc/hosts fails at once (a refused query on loopback), rather than after
# the machine's resolver, unreachable through the guests' gateway, times out (10 s in cloud-init's VMware datasource).
RESOLV_CONF = """\
nameserver 127.0.0.53
options edns0 trust-ad
search .
"""

# Where ifupdown's dhcp method looks for the DHCP client (inet.defn: `/sbin/dhclient` executable).
DHCLIENT_PATH = "/sbin/dhclient"
# Where the testbed's DHCP server leaves its offers, in the Tools channel: one file per MAC.
LEASES_FOLDER = "dhcp-leases"

DHCLIENT = """\
#!/bin/sh
# The image's DHCP client, as ifupdown runs it: dhclient -4 -v -i [-r] -pf ... IFACE.
# Takes the lease the testbed's DHCP server offers this NIC's MAC, from the
# Tools channel ({leases}/MAC: "ADDRESS/PREFIX"), or releases it (-r).
release=false iface=""
for arg; do
    [ "$arg" = -r ] && release=true
    iface=$arg
done
if $release; then
    exec ip -4 addr flush dev "$iface" scope global
fi
mac=$(cat "/sys/class/net/$iface/address")
lease="{leases}/$mac"
[ -f "$lease" ] || {{ echo "dhclient: no DHCPOFFER for $mac on $iface" >&2; exit 1; }}
read -r address <"$lease"
ip link set dev "$iface" up
ip addr replace "$address" dev "$iface"
echo "dhclient: bound to ${{address%/*}} on $iface"
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
