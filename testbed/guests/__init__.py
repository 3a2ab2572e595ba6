"""Test guests: a real SSH host behind every powered-on simulated VM.

vcsim models VMs but runs nothing; these modules play the hypervisor and
VMware Tools, one job each:

- tools.py: the GuestSimulator, which watches vcsim, brings a guest up for
  every powered-on VM and reports its address back as VMware Tools would;
  vcsim_with_guests, a vcsim listening where guests reach it;
- guest.py: one guest (namespaces, a copy-on-write root of its own, boot, sshd);
- boot.py and guest_init.sh: what a guest boots with (cloud-init as on
  Ubuntu's cloud images, what vCenter presents through VMware Tools) and the
  init that builds its root, moves into it and starts it;
- pci.py: the GPUs on a guest's PCI bus, as its host bound them at power-on,
  and the image's nvidia-smi stand-in that lists them;
- net.py: the bridge and the DHCP leases it offers;
- ssh.py: logging in to a guest, and the key pairs tests use;
- commands.py: the host commands all of them run, and GuestError.

The names below are what tests, benchmarks and the testbed's CLI use.
"""

from testbed.guests.commands import GuestError
from testbed.guests.guest import Guest
from testbed.guests.net import GuestNetwork
from testbed.guests.ssh import DEFAULT_USER, SSH_OPTIONS, make_key_pair, ssh
from testbed.guests.tools import NETNS_PREFIX, TEMP_PREFIX, GuestSimulator, vcsim_with_guests

__all__ = [
    "DEFAULT_USER", "NETNS_PREFIX", "SSH_OPTIONS", "TEMP_PREFIX", "Guest", "GuestError", "GuestNetwork",
    "GuestSimulator", "make_key_pair", "ssh", "vcsim_with_guests",
]
