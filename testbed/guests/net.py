"""The guests' network: one bridge holding the gateway of a /24, and the guests' addresses on it.

Addresses come from 198.18.0.0/15 (RFC 2544's benchmarking range: never
anybody's LAN).
"""

import re
import secrets
import subprocess

from testbed.guests.commands import GuestError, run

ADDRESS_PREFIX = "198.18"
FIRST_HOST_OCTET = 10
MAX_GUESTS = 240


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
        run("ip", "link", "set", self.bridge, "up")

    def down(self):
        if self.subnet_octet is not None:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
            self.subnet_octet = None

    def take_slot(self):
        if not self._free_slots:
            raise GuestError(f"all {MAX_GUESTS} guest addresses of {self.cidr} are in use")
        return self._free_slots.pop(0)

    def give_back(self, slot):
        """Forget the slot's MAC and hand its address out last.

        The next guest on that address has a new MAC; a stale neighbour entry
        on the bridge would black-hole its traffic for seconds.
        """
        subprocess.run(["ip", "neigh", "flush", "to", self.address(slot), "dev", self.bridge], capture_output=True)
        self._free_slots.append(slot)

    def address(self, slot):
        return f"{ADDRESS_PREFIX}.{self.subnet_octet}.{FIRST_HOST_OCTET + slot}"
