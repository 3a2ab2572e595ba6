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
      - A node's identity, an HMAC-SHA256 of the cluster name, the VM name and its instance UUID keyed by this key,
        is written into the VM's C(extraConfig) (C(ray-vsphere.cluster-identity)) by the call that creates it, which
        also sets the instance UUID. A VM is a node of
        O(cluster_name) only if it carries the custom attribute C(ray-cluster-name) with that name B(and) an
        identity this key verifies; a VM tagged by someone else, or a cluster of the same name made with another
        key, is never listed, tagged or deleted as one.
      - A missing or unreadable file, or one that holds no private key, fails before any vCenter call.
    type: path
    required: true
"""
