# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  datacenter:
    description:
      - The datacenter whose VM folders O(vm_folders) names, by name, moid or inventory path, as
        O(ray_vsphere.cluster.node_deploy#module:datacenter) takes it.
      - Only the VMs in those folders (not in their subfolders, nor in vApps) are read, by the properties and
        C(extraConfig) keys the call needs, so its cost is that of the cluster's folders, not of the vCenter.
        A node's identity binds the folder it is in, so no VM elsewhere is taken for a node.
      - Without it every VM of the vCenter is read, which costs what the whole vCenter holds; that sweep is for
        finding nodes moved out of their folder (C(playbooks/ray_down.yml)); there a VM is a node by the folder it
        records it was made in and by its own moid, so a copy of a node's identity is none anywhere.
    type: str
  vm_folders:
    description:
      - The VM folders the cluster's nodes are in, each as a path below the datacenter's VM folder (C(ray/prod)),
        as C(/DC/vm/ray/prod) or by moid (C(group-v42)), as O(ray_vsphere.cluster.node_deploy#module:vm_folder) takes it.
      - Empty, or an empty path, is the datacenter's VM folder. Needs O(datacenter).
    type: list
    elements: str
    aliases: [vm_folder]
"""
