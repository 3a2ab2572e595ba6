"""The guests' network: one bridge holding the gateway of a /24, and the DHCP leases it offers.

Addresses come from 198.18.0.0/15 (RFC 2544's benchmarking range: never
anybody's LAN). The testbed plays the site's DHCP server: each guest is
offered a lease of .10-.199 (its slot's), which its DHCP client takes if its
network configuration asks for DHCP (testbed.guests.boot). The offer names no
router, so a DHCP guest reaches its /24 only, as guests always did; a static
configuration may name the gateway, through which nothing is forwarded.
.200-.254 are never leased: static addresses (tests' IP pools) live there.
"""

import re
import secrets
import subprocess
from pathlib import Path

from testbed.guests.commands import GuestError, run

ADDRESS_PREFIX = "198.18"
FIRST_HOST_OCTET = 10
MAX_GUESTS = 190      # leases .10-.199
STATIC_OCTETS = (200, 254)


class GuestNetwork:
    """A bridge holding the gateway of one /24, and the addresses on it."""

    def __init__(self):
        self.tag = secrets.token_hex(2)
        self.bridge = f"rvb{self.tag}"
        self.subnet_octet = None
        self._free_slots = list(range(MAX_GUESTS))

    @property
    def gateway(self):
        return f"{ADDRESS_PREFIX}.{self.subnet_octet}.1"

    @property
    def cidr(self):
        return f"{ADDRESS_PREFIX}.{self.subnet_octet}.0/24"

    def up(self):
        in_use = set(re.findall(rf"inet {re.escape(ADDRESS_PREFIX)}\.(\d+)\.", run("ip", "-4", "-o", "addr", "show")))
        self.subnet_octet = next(octet for octet in range(1, 255) if str(octet) not in in_use)
        # A bridge without an address of its own takes the lowest MAC among its ports, so removing a
        # guest can change the gateway's MAC under the other guests, whose neighbour entries then
        # black-hole their traffic to vcsim until they go stale. A set address is kept.
        mac = f"02:72:76:00:{self.tag[:2]}:{self.tag[2:]}"
        run("ip", "link", "add", "name", self.bridge, "address", mac, "type", "bridge")
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        # The gateway routes nowhere: what a guest with a default route sends beyond the /24 is dropped,
        # never forwarded to the machine's network (the bridge's own setting; the machine's stay as they are).
        Path(f"/proc/sys/net/ipv4/conf/{self.bridge}/forwarding").write_text("0\n")
        run("ip", "link", "set", self.bridge, "up")

    def down(self):
        if self.subnet_octet is not None:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
            self.subnet_octet = None

    def static_range(self):
        """(first, last) addresses of the /24 that no DHCP lease takes: for static configurations."""
        return tuple(f"{ADDRESS_PREFIX}.{self.subnet_octet}.{octet}" for octet in STATIC_OCTETS)

    def take_slot(self):
        if not self._free_slots:
            raise GuestError(f"all {MAX_GUESTS} guest addresses of {self.cidr} are in use")
        return self._free_slots.pop(0)

    def give_back(self, slot, addresses=()):
        """Forget the MACs of the slot's lease and of the addresses its guest had, and hand the lease out last.

        The next guest on such an address has another MAC; a stale neighbour
        entry on the bridge would black-hole its traffic for seconds.
        """
        for address in {self.address(slot), *addresses}:
            subprocess.run(["ip", "neigh", "flush", "to", address, "dev", self.bridge], capture_output=True)
        self._free_slots.append(slot)

    def address(self, slot):
        """The address the slot's DHCP lease offers."""
        return f"{ADDRESS_PREFIX}.{self.subnet_octet}.{FIRST_HOST_OCTET + slot}"
