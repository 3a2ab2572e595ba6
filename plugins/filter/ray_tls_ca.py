# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: ray_tls_ca
short_description: The CA of a Ray cluster's TLS, from its SSH private key
version_added: 0.2.0
description:
  - Derives the cluster's CA (an ECDSA P-256 key and its self-signed certificate) from the cluster's private key,
    as the token is derived, so every holder of the key makes the same CA with nothing more to store.
  - Every node gets the CA through the same channel as the token and makes its own certificate for its address
    (Ray's gRPC checks the address it dials against the certificate's names).
  - The Ray provider derives the same CA with the same code.
options:
  _input:
    description: The cluster's private key, as text (PEM or OpenSSH), without a passphrase.
    type: str
    required: true
  cluster_name:
    description: The Ray cluster's name.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Give a node its cluster's CA key
  ansible.builtin.copy:
    content: "{{ (lookup('ansible.builtin.file', '~/.ssh/ray-analytics') | ray_vsphere.cluster.ray_tls_ca('analytics')).key }}"
    dest: ~/.ray/tls/ca.key
    mode: "0600"
  no_log: true
"""

RETURN = r"""
_value:
  description: The CA.
  type: dict
  contains:
    cert:
      description: The CA's certificate, PEM.
      type: str
    key:
      description: The CA's private key, PEM (PKCS#8).
      type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ClusterKey
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_tls import HAS_CRYPTOGRAPHY, cluster_ca


def _ray_tls_ca(private_key_text, cluster_name):
    if not HAS_CRYPTOGRAPHY:
        raise AnsibleFilterError("ray_tls_ca: the Python package cryptography is required on the controller")
    try:
        secret = ClusterKey(private_key_text, cluster_name, "the text").ray_tls_ca_secret()
    except ValueError as error:  # never echo the input: it is a private key
        raise AnsibleFilterError("ray_tls_ca: %s" % error) from error
    key_pem, cert_pem = cluster_ca(secret, cluster_name)
    return {"cert": cert_pem.decode(), "key": key_pem.decode()}


class FilterModule:
    def filters(self):
        return {"ray_tls_ca": _ray_tls_ca}
