# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""One vCenter connection layer for every module of the collection.

Arguments and environment fallbacks are those of AWX's VMware vCenter
credential (VMWARE_HOST, VMWARE_USER, VMWARE_PASSWORD, VMWARE_VALIDATE_CERTS,
plus VMWARE_PORT), and ca_path (VMWARE_CA_PATH) for a vCenter whose
certificate comes from an internal CA: neither vmware.vmware nor
community.vmware has such an option (they read the system's trust store, which
SSL_CERT_FILE replaces). A session is always logged out, also when the module
fails, and a failed login says which of host, TLS or credentials is wrong, and
for TLS, how to fix it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os
import platform
import socket
import ssl
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

PYVMOMI_IMPORT_ERROR = None
try:
    from pyVim.connect import Disconnect, SmartConnect
    import pyVmomi
    from pyVmomi import vim, vmodl
except ImportError:
    PYVMOMI_IMPORT_ERROR = traceback.format_exc()

try:
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID
except ImportError:
    x509 = None  # only the names a mismatched certificate lists are lost from the error

# Sent with every vSphere call: vCenter shows it with each session (and vcsim's
# method trace keys on it), so an administrator can tell this collection's
# sessions from others'.
USER_AGENT_PRODUCT = "ray-vsphere"
# OpenSSL's verify codes (include/openssl/x509_vfy.h) of the two mistakes users make.
UNTRUSTED_ISSUER_CODES = (18, 19, 20, 21)  # self-signed leaf or chain, issuer not found, unverifiable leaf
NAME_MISMATCH_CODES = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH

CONNECTION_ARGUMENT_SPEC = dict(
    hostname=dict(type="str", required=True, fallback=(env_fallback, ["VMWARE_HOST"])),
    username=dict(type="str", required=True, aliases=["user"], fallback=(env_fallback, ["VMWARE_USER"])),
    password=dict(type="str", required=True, aliases=["pass", "pwd"], no_log=True,
                  fallback=(env_fallback, ["VMWARE_PASSWORD"])),
    port=dict(type="int", default=443, fallback=(env_fallback, ["VMWARE_PORT"])),
    validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["VMWARE_VALIDATE_CERTS"])),
    ca_path=dict(type="path", fallback=(env_fallback, ["VMWARE_CA_PATH"])),
)


class RayVsphereError(Exception):
    """A failure to report through fail_json; the message names object and call."""

    def __init__(self, msg, **details):
        super(RayVsphereError, self).__init__(msg)
        self.details = details


def argument_spec(**module_options):
    """The connection options merged with a module's own."""
    spec = copy.deepcopy(CONNECTION_ARGUMENT_SPEC)
    spec.update(module_options)
    return spec


def fault_text(error):
    """A vSphere fault as 'FaultType: message', for error messages."""
    name = type(error).__name__.split(".")[-1]
    message = getattr(error, "msg", None) or str(error)
    return "%s: %s" % (name, message.strip())


def user_agent():
    return "%s pyvmomi/%s Python/%s" % (USER_AGENT_PRODUCT, getattr(pyVmomi, "version_info_str", "unknown"),
                                        platform.python_version())


def certificate_names(hostname, port, timeout=10):
    """The DNS names and IP addresses a server's certificate is valid for, read without verifying it; None if unknown."""
    if x509 is None:
        return None
    try:
        pem = ssl.get_server_certificate((hostname, port), timeout=timeout)
        certificate = x509.load_pem_x509_certificate(pem.encode())
        names = certificate.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except Exception:  # pylint: disable=broad-except
        # Only the error message loses the names; the TLS failure itself is reported.
        return None
    return [str(name) for name in names.get_values_for_type(x509.DNSName) + names.get_values_for_type(x509.IPAddress)]


def tls_error_message(where, hostname, port, ca_path, error):
    """What failed in vCenter's certificate, and the fix for it."""
    trusted = "ca_path %s" % ca_path if ca_path else "the system's trust store"
    insecure = ("validate_certs: false (VMWARE_VALIDATE_CERTS=false) turns the check off; "
                "only for a test vCenter, never for production")
    code = getattr(error, "verify_code", None)
    if code in UNTRUSTED_ISSUER_CODES:
        return ("TLS with vCenter %s failed: its certificate is not signed by a CA in %s (%s). Give the CA "
                "certificate that signed it (VMCA's root or your internal CA, PEM) in ca_path (VMWARE_CA_PATH), "
                "or add it to the system's trust store. %s" % (where, trusted, error.verify_message, insecure))
    if code in NAME_MISMATCH_CODES:
        names = certificate_names(hostname, port)
        listed = " (it is for %s)" % ", ".join(names) if names else ""
        return ("TLS with vCenter %s failed: its certificate is not valid for the name %r%s. Set hostname "
                "(VMWARE_HOST) to a name the certificate lists, or have vCenter's certificate re-issued with %r "
                "among its subject alternative names. %s" % (where, hostname, listed, hostname, insecure))
    return "TLS with vCenter %s failed: %s. Check vCenter's certificate against %s. %s" % (
        where, error, trusted, insecure)


class VcenterClient(object):
    """A logged-in pyVmomi session, used as a context manager."""

    def __init__(self, hostname, username, password, port=443, validate_certs=True, timeout=60, ca_path=None):
        self.hostname = hostname
        self.port = port
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self._username = username
        self._password = password
        self._timeout = timeout
        self.service_instance = None

    @property
    def content(self):
        return self.service_instance.content

    def ssl_context(self):
        if not self.validate_certs:
            return ssl._create_unverified_context()  # validate_certs: false, said by the user
        # ca_path replaces the system's trust store, as ca_path of ansible.builtin.uri does.
        return ssl.create_default_context(cafile=self.ca_path)

    def connect(self):
        where = "%s:%s" % (self.hostname, self.port)
        if self.validate_certs and self.ca_path and not os.path.isfile(self.ca_path):
            raise RayVsphereError("ca_path %s: no such file (VMWARE_CA_PATH): give the PEM file of the CA that "
                                  "signed vCenter's certificate" % self.ca_path)
        try:
            context = self.ssl_context()
        except ssl.SSLError as error:
            raise RayVsphereError("ca_path %s is not a PEM CA certificate: %s" % (self.ca_path, error))
        try:
            self.service_instance = SmartConnect(
                host=self.hostname, port=self.port, user=self._username, pwd=self._password,
                sslContext=context, connectionPoolTimeout=self._timeout,
                customHeaders={"User-Agent": user_agent()},
            )
        except vim.fault.InvalidLogin:
            raise RayVsphereError(
                "vCenter %s rejected the login of %r: wrong username or password "
                "(VMWARE_USER / VMWARE_PASSWORD)" % (where, self._username))
        except ssl.SSLError as error:
            raise RayVsphereError(tls_error_message(where, self.hostname, self.port, self.ca_path, error))
        except (socket.error, OSError) as error:
            raise RayVsphereError("cannot reach vCenter %s: %s" % (where, error))
        except vmodl.MethodFault as error:
            raise RayVsphereError("login to vCenter %s failed: %s" % (where, fault_text(error)))
        return self

    def disconnect(self):
        if self.service_instance is not None:
            try:
                Disconnect(self.service_instance)
            except Exception:  # pylint: disable=broad-except
                pass  # the session may already be gone with the connection
            self.service_instance = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc_info):
        self.disconnect()


def client_from_params(params):
    return VcenterClient(params["hostname"], params["username"], params["password"],
                         port=params["port"], validate_certs=params["validate_certs"], ca_path=params["ca_path"])


def run_module(module, action):
    """Connect, run action(client) -> result dict, log out, exit or fail."""
    if PYVMOMI_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("pyVmomi"), exception=PYVMOMI_IMPORT_ERROR)
    try:
        with client_from_params(module.params) as client:
            result = action(client)
    except RayVsphereError as error:
        module.fail_json(msg=str(error), **error.details)
    except vmodl.MethodFault as error:
        module.fail_json(msg="vCenter call failed: %s" % fault_text(error), exception=traceback.format_exc())
    module.exit_json(**result)
