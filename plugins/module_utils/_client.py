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

Every HTTP call to vCenter is bounded by `request_timeout`: a vCenter that
stops answering fails the call instead of hanging it forever. A session
vCenter ended (idle for its timeout, about 30 minutes, or a vCenter restart:
NotAuthenticated; pyvmomi issues #349, #953) is logged in again on the next
call, which is then retried: long-lived clients such as the Ray provider
need not notice.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os
import platform
import socket
import ssl
import threading
import traceback
from xml.etree import ElementTree

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible.module_utils.six.moves import http_client

PYVMOMI_IMPORT_ERROR = None
try:
    from pyVim.connect import Disconnect, VimSessionOrientedStub, parse_hostport
    import pyVmomi
    from pyVmomi import SoapStubAdapter, vim, vmodl
    from pyVmomi.StubAdapterAccessorImpl import StubAdapterAccessorMixin
    from pyVmomi.VmomiSupport import GetServiceVersions, versionIdMap
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

# Seconds any one HTTP exchange with vCenter may take: connecting, and each
# wait for response bytes. The waits the collection asks vCenter for itself
# (WaitForUpdatesEx's maxWaitSeconds) are derived from it, well below it
# (_waiter.update_wait_seconds), so network latency never turns one into a timeout.
DEFAULT_REQUEST_TIMEOUT = 60

CONNECTION_ARGUMENT_SPEC = dict(
    # Not required=True: run_module names the VMWARE_* variable of a missing one, which
    # Ansible's generic "missing required arguments" would not.
    hostname=dict(type="str", fallback=(env_fallback, ["VMWARE_HOST"])),
    # Aliases and proxy options as vmware.vmware's base_argument_spec names them, so its users' tasks carry over.
    username=dict(type="str", aliases=["admin", "user"], fallback=(env_fallback, ["VMWARE_USER"])),
    password=dict(type="str", aliases=["pass", "pwd"], no_log=True,
                  fallback=(env_fallback, ["VMWARE_PASSWORD"])),
    port=dict(type="int", default=443, fallback=(env_fallback, ["VMWARE_PORT"])),
    validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["VMWARE_VALIDATE_CERTS"])),
    ca_path=dict(type="path", fallback=(env_fallback, ["VMWARE_CA_PATH"])),
    request_timeout=dict(type="int", default=DEFAULT_REQUEST_TIMEOUT,
                         fallback=(env_fallback, ["VMWARE_REQUEST_TIMEOUT"])),
    proxy_host=dict(type="str", fallback=(env_fallback, ["VMWARE_PROXY_HOST"])),
    proxy_port=dict(type="int", fallback=(env_fallback, ["VMWARE_PROXY_PORT"])),
)
# Stable names of what failed, in a failed result's `failure` field (beside `fault`, the vSphere fault's
# type name, and `timed_out`): callers that act on the kind of failure (the Ray provider's launch categories)
# read these, never the English of a message.
FAILURE_PLACEMENT = "placement"
FAILURE_NO_IP_ADDRESS = "no_ip_address"
# No host of the placement has a free device for a GPU node (node_deploy's gpus, vgpu_profile); the result's
# gpu_model names the model.
FAILURE_GPU_CAPACITY = "gpu_capacity"
# node_deploy's ip_pool has fewer free addresses than new nodes; the result's `asked` and `free` count them.
FAILURE_IP_POOL_EXHAUSTED = "ip_pool_exhausted"

# Each required connection option and the variable AWX's credential sets it through.
REQUIRED_CONNECTION = (("hostname", "VMWARE_HOST"), ("username", "VMWARE_USER"), ("password", "VMWARE_PASSWORD"))
# In every result of a module run with validate_certs false: AWX's own VMware vCenter credential sets
# VMWARE_VALIDATE_CERTS=False for every job (awx/main/models/credential/injectors.py, vmware()), silently.
UNVERIFIED_TLS_WARNING = (
    "validate_certs is false (VMWARE_VALIDATE_CERTS): vCenter %s's certificate is not verified, so whoever answers "
    "at that address gets the password and every call. Give the CA that signed it in ca_path (VMWARE_CA_PATH) and "
    "leave validate_certs true; in AWX, AWX's VMware vCenter credential turns the check off: use the credential "
    "type 'vCenter with verified TLS (ray_vsphere)' (awx/credential_types/vcenter_verified.yml) instead.")


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


def missing_connection(params):
    """What to set for each missing connection option, naming its VMWARE_* variable; [] when none is missing."""
    return ["%s (or %s)" % (option, variable) for option, variable in REQUIRED_CONNECTION if not params.get(option)]


def https_connection(hostname, port, ssl_context, timeout, proxy=None):
    """To hostname:port, through the CONNECT proxy (host, port) if given; TLS and its name check stay end to end."""
    if not proxy:
        return http_client.HTTPSConnection(hostname, port, context=ssl_context, timeout=timeout)
    connection = http_client.HTTPSConnection(proxy[0], proxy[1], context=ssl_context, timeout=timeout)
    connection.set_tunnel(hostname, port)
    return connection


def supported_version(hostname, port, ssl_context, timeout, proxy=None):
    """The newest vSphere API version both pyVmomi and the server speak, asked with a timeout.

    What pyVim.connect.SmartConnect does in __FindSupportedVersion: read
    /sdk/vimServiceVersions.xml and take the first of pyVmomi's versions
    (newest first) the server lists as its version or a prior one. Done here
    because SmartConnect's request has no timeout (pyVim/connect.py
    __GetElementTree opens HTTPSConnection(server, port, context=...)), so a
    silent vCenter would hang the login before any timeout applies.
    """
    connection = https_connection(hostname, port, ssl_context, timeout, proxy)
    try:
        connection.request("GET", "/sdk/vimServiceVersions.xml")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise RayVsphereError("vCenter %s:%s is not a vSphere API endpoint: GET /sdk/vimServiceVersions.xml "
                              "answered HTTP %s" % (hostname, port, response.status))
    spoken = set()
    for namespace in ElementTree.fromstring(body).findall("namespace"):
        spoken.update(version.text for version in namespace.findall("version"))
        spoken.update(version.text for version in namespace.findall("priorVersions/version"))
    for version in GetServiceVersions("vim25"):
        if versionIdMap[version] in spoken:
            return version
    raise RayVsphereError("vCenter %s:%s speaks none of pyVmomi's API versions (it lists %s)"
                          % (hostname, port, ", ".join(sorted(spoken))))


def fault_name(error):
    """A vSphere fault's type name without its namespace (vim.fault.NoDiskSpace -> NoDiskSpace)."""
    return type(error).__name__.split(".")[-1]


def fault_text(error):
    """A vSphere fault as 'FaultType: message', for error messages."""
    name = fault_name(error)
    # A fault without a message of its own (SystemError, RuntimeFault) says why in `reason`, if at all.
    message = getattr(error, "msg", None) or getattr(error, "reason", None) or str(error)
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


# Calls that make something each time vCenter gets them: never sent again blindly.
NON_IDEMPOTENT_CALLS = frozenset(["CloneVM_Task", "CreateSnapshot_Task", "ImportVApp", "CreateVM_Task",
                                  "RegisterVM_Task", "CreateChildVM_Task"])
_ISSUE_LOCKS_GUARD = threading.Lock()

if not PYVMOMI_IMPORT_ERROR:
    class _SessionStub(VimSessionOrientedStub):
        """pyVmomi's re-login stub, except that a call vCenter did not answer in time is not sent again.

        SessionOrientedStub (pyVmomi/SoapAdapter.py) resends a call after any
        socket error, a timeout included, so a silent vCenter would cost
        retryCount timeouts per call instead of one. Here a call is sent again
        once, and only after NotAuthenticated (logged in again first: an expired
        or terminated session) or a connection that broke (a pooled connection
        the server had closed). Property reads go through InvokeMethod too.
        A call that makes something (NON_IDEMPOTENT_CALLS) is not sent again
        after a broken connection until vCenter shows it did not get it.
        """

        def InvokeMethod(self, mo, info, args):
            if info.wsdlName in NON_IDEMPOTENT_CALLS:
                return self._invoke_once(mo, info, args)
            return self._invoke(mo, info, args, resend_after_break=True)

        def _invoke(self, mo, info, args, resend_after_break):
            for attempt in (1, 2):
                try:
                    if self.state == self.STATE_UNAUTHENTICATED:
                        self._CallLoginMethod()
                    status, result = self.soapStub.InvokeMethod(mo, info, args, self)
                except socket.timeout as error:  # no answer: never sent again; the error says how long we waited
                    error.request_timeout = self.request_timeout
                    raise
                except (ConnectionError, http_client.HTTPException):
                    if attempt == 2 or not resend_after_break:
                        raise
                    continue
                if status == 200:
                    return result
                if attempt == 1 and isinstance(result, self.SESSION_EXCEPTIONS):
                    self._SetStateUnauthenticated()
                    continue
                raise result

        def _invoke_once(self, mo, info, args):
            """A call that makes something: after a broken connection, sent again only if vCenter did not do it.

            One such call per object and method at a time in this session, so
            a task that appeared on the object meanwhile is this call's.
            """
            with self._issue_lock(mo, info.wsdlName):
                before = self._recent_tasks() if info.wsdlName.endswith("_Task") else None
                try:
                    return self._invoke(mo, info, args, resend_after_break=False)
                except (ConnectionError, http_client.HTTPException):
                    done = self._what_happened(mo, info, args, before)
                    if done is not None:
                        return done
                # vCenter shows no sign of it: sent again, once.
                return self._invoke(mo, info, args, resend_after_break=False)

        def _issue_lock(self, mo, method):
            with _ISSUE_LOCKS_GUARD:
                locks = self.__dict__.setdefault("_issue_locks", {})
                return locks.setdefault((mo._moId, method), threading.Lock())

        def _read(self, obj, path):
            """One property, by RetrievePropertiesEx as every read of the collection (not an accessor read)."""
            collector = vmodl.query.PropertyCollector
            spec = collector.FilterSpec(objectSet=[collector.ObjectSpec(obj=obj, skip=False)],
                                        propSet=[collector.PropertySpec(type=type(obj), pathSet=[path])])
            result = self._content().propertyCollector.RetrievePropertiesEx([spec], collector.RetrieveOptions())
            for found in (result.objects if result else []):
                for prop in found.propSet:
                    return prop.val
            return None

        def _content(self):
            # A session's ServiceContent never changes: read once, not before every creating call.
            if self.__dict__.get("_service_content") is None:
                self._service_content = vim.ServiceInstance("ServiceInstance", self).RetrieveContent()
            return self._service_content

        def _recent_tasks(self):
            return list(self._read(self._content().taskManager, "recentTask") or [])

        def _what_happened(self, mo, info, args, before):
            """What the call returned, found in vCenter (its task), or None if it did not happen; raises if unknown."""
            if before is not None:
                known = set(task._moId for task in before)
                stem = info.wsdlName[:-len("_Task")].lower().replace("_", "")
                mine = []
                for task in self._recent_tasks():
                    if task._moId in known:
                        continue
                    task_info = self._read(task, "info")
                    said = ("%s %s" % (task_info.name, task_info.descriptionId)).lower().replace("_", "")
                    if task_info.entity is not None and task_info.entity._moId == mo._moId and stem in said:
                        mine.append(task)
                if len(mine) > 1:
                    raise RayVsphereError("%s on %s: the connection broke, and %d such tasks started on it meanwhile; "
                                          "not sent again" % (info.wsdlName, mo._moId, len(mine)))
                return mine[0] if mine else None
            if info.wsdlName == "ImportVApp" and len(args) > 1 and args[1] is not None:
                name = args[0].configSpec.name
                if self._content().searchIndex.FindChild(args[1], name) is not None:
                    raise RayVsphereError("ResourcePool.ImportVApp of VM %s: the connection broke after vCenter made "
                                          "the VM, and its lease with it; not sent again" % name)
                return None
            raise RayVsphereError("%s on %s: the connection broke, and whether vCenter did it cannot be told; "
                                  "not sent again" % (info.wsdlName, mo._moId))

        def InvokeAccessor(self, mo, info):
            return StubAdapterAccessorMixin.InvokeAccessor(self, mo, info)


class VcenterClient(object):
    """A logged-in pyVmomi session, used as a context manager."""

    def __init__(self, hostname, username, password, port=443, validate_certs=True,
                 request_timeout=DEFAULT_REQUEST_TIMEOUT, ca_path=None, proxy_host=None, proxy_port=None):
        self.hostname = hostname
        # pyVmomi speaks plain HTTP CONNECT to the proxy (SoapStubAdapter's httpProxyHost). Its TLS-to-the-proxy
        # mode (tlsOverTlsTunnel) is not offered: pyVmomi 9.1 then checks vCenter's certificate against the
        # proxy's name, and not at all for a proxy on loopback (SoapAdapter._SSLTunnelConnection.connect).
        self.proxy = (proxy_host, proxy_port) if proxy_host else None
        self.port = port
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self._username = username
        self._password = password
        self.request_timeout = request_timeout
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
        # AWX's credential takes a port as part of the host ("vcenter:8443"): SmartConnect split it so.
        hostname, port = parse_hostport(self.hostname, self.port)
        where = "%s:%s" % (hostname, port)
        if self.proxy:
            if not self.proxy[1]:
                raise RayVsphereError("proxy_host %s is given without proxy_port (VMWARE_PROXY_PORT): give the port "
                                      "of the HTTP CONNECT proxy" % self.proxy[0])
            where += " through proxy %s:%s" % self.proxy
        if self.validate_certs and self.ca_path and not os.path.isfile(self.ca_path):
            raise RayVsphereError("ca_path %s: no such file (VMWARE_CA_PATH): give the PEM file of the CA that "
                                  "signed vCenter's certificate" % self.ca_path)
        try:
            context = self.ssl_context()
        except ssl.SSLError as error:
            raise RayVsphereError("ca_path %s is not a PEM CA certificate: %s" % (self.ca_path, error))
        try:
            # httpConnectionTimeout becomes the timeout of every HTTPSConnection
            # the SOAP stub opens (pyVmomi/SoapAdapter.py, SoapStubAdapter.__init__:
            # schemeArgs['timeout'], passed to self.scheme(...) in GetConnection),
            # so it bounds connecting and each read of every call. (Its
            # connectionPoolTimeout is only how long an idle pooled connection is kept.)
            proxy_options = dict(httpProxyHost=self.proxy[0], httpProxyPort=self.proxy[1]) if self.proxy else {}
            stub = SoapStubAdapter(host=hostname, port=port, sslContext=context,
                                   version=supported_version(hostname, port, context, self.request_timeout, self.proxy),
                                   httpConnectionTimeout=self.request_timeout,
                                   customHeaders={"User-Agent": user_agent()}, **proxy_options)
            # Logs in on the first call and again on NotAuthenticated.
            stub = _SessionStub(stub, self._login)
            stub.request_timeout = self.request_timeout
            self.service_instance = vim.ServiceInstance("ServiceInstance", stub)
            self.service_instance.content.sessionManager.currentSession  # logs in now: errors belong to connect()
        except vim.fault.InvalidLogin:
            raise RayVsphereError(
                "vCenter %s rejected the login of %r: wrong username or password "
                "(VMWARE_USER / VMWARE_PASSWORD)" % (where, self._username), fault="InvalidLogin")
        except ssl.SSLError as error:
            raise RayVsphereError(tls_error_message(where, hostname, port, self.ca_path, error))
        except socket.timeout:
            raise RayVsphereError("vCenter %s did not answer within %s s (request_timeout)"
                                  % (where, self.request_timeout), timed_out=True)
        except (socket.error, OSError, http_client.HTTPException) as error:
            raise RayVsphereError("cannot reach vCenter %s: %s" % (where, error))
        except vmodl.MethodFault as error:
            raise RayVsphereError("login to vCenter %s failed: %s" % (where, fault_text(error)))
        return self

    def _login(self, soap_stub):
        # Not VimSessionOrientedStub.makeUserLoginMethod's: it first reads
        # currentSession, which vcsim refuses without a session.
        content = vim.ServiceInstance("ServiceInstance", soap_stub).RetrieveContent()
        content.sessionManager.Login(self._username, self._password)

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
                         port=params["port"], validate_certs=params["validate_certs"],
                         request_timeout=params["request_timeout"], ca_path=params["ca_path"],
                         proxy_host=params["proxy_host"], proxy_port=params["proxy_port"])


def run_module(module, action):
    """Connect, run action(client) -> result dict, log out, exit or fail."""
    if PYVMOMI_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("pyVmomi"), exception=PYVMOMI_IMPORT_ERROR)
    missing = missing_connection(module.params)
    if missing:
        module.fail_json(msg="missing vCenter connection: set %s" % ", ".join(missing))
    if not module.params["validate_certs"]:
        module.warn(UNVERIFIED_TLS_WARNING % module.params["hostname"])
    try:
        with client_from_params(module.params) as client:
            result = action(client)
    except RayVsphereError as error:
        module.fail_json(msg=str(error), **error.details)
    except vmodl.MethodFault as error:
        module.fail_json(msg="vCenter call failed: %s" % fault_text(error), fault=fault_name(error),
                         exception=traceback.format_exc())
    except socket.timeout:
        module.fail_json(msg="vCenter %s:%s did not answer within %s s (request_timeout)"
                         % (module.params["hostname"], module.params["port"], module.params["request_timeout"]),
                         timed_out=True, exception=traceback.format_exc())
    module.exit_json(**result)
