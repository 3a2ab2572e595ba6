# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The option of module_utils/_ip_pool.py's IP_POOL_OPTIONS, checked and chosen there, delivered by module_utils/_build.py.
    DOCUMENTATION = r"""
options:
  ip_pool:
    description:
      - Static addresses for networks without DHCP. Each new node takes the lowest free address of the pool and gets
        it through cloud-init's own network config; without O(ip_pool), nodes use DHCP.
      - "vCenter is the ledger, no IPAM service: each node records its address in its C(extraConfig)
        (C(ray-vsphere.ip-address)) in the call that creates it, so no node exists without it. The free addresses
        are the pool's minus those the VMs of O(vm_folder) record, whichever cluster they belong to; an address is
        free again once its VM is destroyed. Nodes that already exist (a retry) keep theirs."
      - "Delivery, once the node exists and its MAC is known, before it is powered on: cloud-init network config
        version 2 with one ethernet matched by the MAC of the VM's first network adapter (C(match.macaddress)),
        renamed C(eth0) (C(set-name)), with the address, O(ip_pool.gateway) (C(gateway4) or C(gateway6)) and
        C(nameservers). It goes in C(guestinfo.metadata) under C(network) (cloud-init's VMware datasource) and, where
        the OVF declares it, in the OVF property C(network-config) (base64 of C({network: ...}), cloud-init's OVF
        datasource): both say the same."
      - "Two callers at once (C(ray up) and the head's autoscaler, two playbooks) may pick the same address. After
        its nodes are made, and before any is powered on, the deploy reads the folder's records again: where two VMs
        record one address, the VM whose managed object id has the lower number keeps it (vCenter gives moids from an
        increasing sequence, so the VM made first keeps it, and every caller that reads both reaches that verdict
        alone). A node of this call that lost is destroyed and made again (a new VM, moid and MAC) with the next free
        address, and the folder read again, at most 5 times. It is made again rather than given another address in
        place: a third caller may have checked the records before the change."
      - With fewer free addresses than new nodes, the deploy fails before anything is made with
        C(failure=ip_pool_exhausted) and a message naming the pool, how many addresses were asked and how many are
        free; so does a pool that runs out while a lost address is replaced, and nothing of the call is left.
      - Everything below is checked before anything is made, each problem naming C(ip_pool.<key>). Not with
        C(network-config) in O(ovf_properties) nor C(metadata) in O(guestinfo), which would say otherwise.
      - Check mode returns the addresses the new nodes would take in RV(ip_pool_addresses).
      - Addresses of one family, IPv4 or IPv6, as O(ip_pool.cidr).
    type: dict
    version_added: 0.5.0
    suboptions:
      cidr:
        description:
          - The subnet, with its prefix length (C(198.18.5.0/24), C(2001:db8:5::/64)); its address must be the
            network's own (no host bits set).
          - Without O(ip_pool.range) or O(ip_pool.addresses), the pool is every host address of it but the gateway.
        type: str
        required: true
      range:
        description:
          - The pool's addresses, C(FIRST-LAST) (C(198.18.5.200-198.18.5.254)), both host addresses of
            O(ip_pool.cidr), the first not after the last.
          - Mutually exclusive with O(ip_pool.addresses).
        type: str
      addresses:
        description: The pool's addresses, each a host address of O(ip_pool.cidr).
        type: list
        elements: str
      gateway:
        description:
          - The default gateway (C(gateway4) or C(gateway6) in the network config), a host address of
            O(ip_pool.cidr). Never handed out, even when the range holds it.
        type: str
      dns_servers:
        description: The nameservers' addresses (either family).
        type: list
        elements: str
        default: []
      search_domains:
        description: The DNS search domains.
        type: list
        elements: str
        default: []
"""
