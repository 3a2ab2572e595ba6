# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  hostname:
    description:
      - The vCenter server's host name or IP address.
      - If not set, the value of the E(VMWARE_HOST) environment variable is used, as AWX's VMware vCenter credential injects it.
      - Required through one of the two; the module names the variable to set when neither is.
    type: str
  username:
    description:
      - The user to log in to vCenter as.
      - If not set, the value of the E(VMWARE_USER) environment variable is used.
      - Required through one of the two.
    type: str
    aliases: [admin, user]
  password:
    description:
      - The password of O(username).
      - If not set, the value of the E(VMWARE_PASSWORD) environment variable is used.
      - Required through one of the two.
    type: str
    aliases: [pass, pwd]
  port:
    description:
      - The port of the vCenter API.
      - If not set, the value of the E(VMWARE_PORT) environment variable is used.
    type: int
    default: 443
  validate_certs:
    description:
      - Whether to check vCenter's TLS certificate, host name included, against O(ca_path) or the system's trust store.
      - Set to V(false) only for a test vCenter; for a certificate of VMCA or an internal CA, give that CA in O(ca_path).
      - With V(false) the module warns in its result, since the password then goes to whoever answers at O(hostname).
      - AWX's own VMware vCenter credential sets E(VMWARE_VALIDATE_CERTS=False) for every job and has no CA field; the
        project's AWX credential type C(awx/credential_types/vcenter_verified.yml) injects the CA as E(VMWARE_CA_PATH)
        and E(VMWARE_VALIDATE_CERTS=true) instead.
      - If not set, the value of the E(VMWARE_VALIDATE_CERTS) environment variable is used.
    type: bool
    default: true
  ca_path:
    description:
      - A PEM file with the CA certificate(s) that signed vCenter's certificate, for example VMCA's root
        (C(https://<vcenter>/certs/download.zip)) or an internal CA.
      - Replaces the system's trust store for the connection to vCenter, as O(ansible.builtin.uri#module:ca_path) does.
      - OVF imports upload disks to the ESXi hosts vCenter names, verified against the same file. Their certificates
        are VMCA's even when vCenter's is of an internal CA (hybrid mode); then give one PEM file with both CAs.
      - Not set means the system's trust store, which E(SSL_CERT_FILE) replaces as well (that is how the
        community.vmware and vmware.vmware modules, which have no such option, can be made to trust an internal CA).
      - If not set, the value of the E(VMWARE_CA_PATH) environment variable is used.
    type: path
    version_added: 0.2.0
  request_timeout:
    description:
      - Seconds one HTTP exchange with vCenter may take, to connect and for each wait on its answer.
      - A vCenter that stops answering fails the module after this long instead of hanging it.
      - If not set, the value of the E(VMWARE_REQUEST_TIMEOUT) environment variable is used.
    type: int
    default: 60
  proxy_host:
    description:
      - The host name or IP address of an HTTP proxy every connection of the module goes through, with HTTP
        C(CONNECT) (a plain HTTP proxy such as Squid); the options are named as in vmware.vmware.
      - The calls to vCenter and the OVF disk uploads to the ESXi hosts vCenter names both go through it. TLS stays
        end to end, so vCenter's and the hosts' certificates are still checked against O(ca_path) and their names.
      - Not set means a direct connection.
      - If not set, the value of the E(VMWARE_PROXY_HOST) environment variable is used.
    type: str
    version_added: 0.2.0
  proxy_port:
    description:
      - The port of the proxy in O(proxy_host); required with it.
      - If not set, the value of the E(VMWARE_PROXY_PORT) environment variable is used.
    type: int
    version_added: 0.2.0
requirements:
  - pyVmomi >= 8.0.3
notes:
  - Every module logs in once per run and always logs out, also on failure.
"""
