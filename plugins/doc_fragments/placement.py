# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options of module_utils/_placement.py's PLACEMENT_OPTIONS.
    DOCUMENTATION = r"""
options:
  datacenter:
    description:
      - The datacenter to deploy into.
      - Like every placement option, a name, a managed object id (C(datacenter-2)) or an inventory path (C(/DC1)).
      - A name that more than one object of its kind has is refused, listing each one's inventory path and moid,
        one of which to give instead.
    type: str
    required: true
  cluster:
    description:
      - The vSphere cluster to deploy into, by name, moid (C(domain-c7)) or inventory path (C(/DC1/host/Compute)).
      - One of O(cluster) and O(esxi_host) is required.
    type: str
  esxi_host:
    description:
      - The ESXi host to deploy onto, instead of a cluster, by name, moid (C(host-21)) or inventory path
        (C(/DC1/host/Compute/esx1.example.com)).
    type: str
  resource_pool:
    description:
      - A resource pool of O(cluster) or O(esxi_host), by name, moid (C(resgroup-12)) or inventory path
        (C(/DC1/host/Compute/Resources/ray)); their root pool if not set.
    type: str
  vm_folder:
    description:
      - The VM folder, as a path below the datacenter's VM folder (C(ray/prod)), as C(/DC/vm/ray/prod), or by moid
        (C(group-v42)).
    type: str
  datastore:
    description:
      - The datastore for the VMs' disks, by name, moid (C(datastore-15)) or inventory path (C(/DC1/datastore/vsan));
        it must be mounted on O(cluster) or O(esxi_host).
    type: str
    required: true
  network:
    description:
      - The network every NIC of the OVF is connected to, by name, moid (C(network-11), C(dvportgroup-30)) or
        inventory path (C(/DC1/network/VM Network)); the OVF's own mapping if not set.
    type: str
"""
