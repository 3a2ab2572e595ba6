# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  preferred_cidr:
    description:
      - Prefer a node address in this network; IPv4 addresses come before IPv6 ones either way.
    type: str
  ignored_cidrs:
    description:
      - Networks whose addresses are used to reach a node only when it reports no other (after they stayed
        its only ones for 60 seconds while waiting for an IP). The default lowers the default bridges of
        Docker, Podman and libvirt inside the guest. Link-local and loopback addresses are never used.
    type: list
    elements: str
    default: [169.254.0.0/16, fe80::/10, 127.0.0.0/8, "::1/128", 172.17.0.0/16, 10.88.0.0/16, 192.168.122.0/24]
"""
