# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: ray_auth_token
short_description: The Ray authentication token of a cluster, from its SSH private key
version_added: 0.2.0
description:
  - Derives the cluster's Ray token (HMAC-SHA256 of the cluster name and the token epoch, keyed by the private key)
    as 64 hex digits.
  - The HMAC is keyed by the parsed key (as unencrypted PKCS#8), not by the file's text, so re-saving the key
    (C(ssh-keygen -p)) or converting it between PEM and OpenSSH gives the same token.
  - Another O(epoch) gives another token, so rotating the token is moving to the next epoch (playbook
    C(ray_vsphere.cluster.ray_rotate_token)).
  - Every holder of the cluster's private key gets the same token, so nothing more has to be stored;
    workers get the token only, never the key.
  - The Ray provider derives the same token with the same code.
options:
  _input:
    description: The cluster's private key, as text (PEM or OpenSSH), without a passphrase.
    type: str
    required: true
  cluster_name:
    description: The Ray cluster's name.
    type: str
    required: true
  epoch:
    description: The token epoch, a whole number from 0.
    type: int
    default: 0
"""

EXAMPLES = r"""
- name: Give a node its cluster's token
  ansible.builtin.copy:
    content: "{{ lookup('ansible.builtin.file', '~/.ssh/ray-analytics') | ray_vsphere.cluster.ray_auth_token('analytics', 2) }}"
    dest: ~/.ray/auth_token
    mode: "0600"
  no_log: true
"""

RETURN = r"""
_value:
  description: The token, 64 lower-case hex digits.
  type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ray_auth_token


def _ray_auth_token(private_key_text, cluster_name, epoch=0):
    try:
        return ray_auth_token(private_key_text, cluster_name, epoch)
    except ValueError as error:  # never echo the input: it is a private key
        raise AnsibleFilterError("ray_auth_token: %s" % error) from error


class FilterModule:
    def filters(self):
        return {"ray_auth_token": _ray_auth_token}
