# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  cluster_key_file:
    description:
      - The cluster's private SSH key, a file on the machine the module runs on. Never sent anywhere.
      - A node's identity, an HMAC-SHA256 keyed by this key of the cluster name, the VM name, its instance UUID,
        its VM folder's moid, vCenter's own instance UUID and, once the VM exists, its moid, is written into the
        VM's C(extraConfig) (C(ray-vsphere.cluster-identity)) by the call that creates it (without the moid),
        then bound to the moid before the VM is tagged. A copy of a node (same name, instance UUID and identity,
        in any folder) has another moid and is never a node. A VM is a node of
        O(cluster_name) only if it carries the custom attribute C(ray-cluster-name) with that name B(and) an
        identity this key verifies; a VM tagged by someone else, or a cluster of the same name made with another
        key, is never listed, tagged or deleted as one.
      - A missing or unreadable file, or one that holds no private key, fails before any vCenter call.
    type: path
    required: true
"""
