# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""One vCenter connection layer for every module of the collection.

Arguments and environment fallbacks are those of AWX's VMware vCenter
credential (VMWARE_HOST, VMWARE_USER, VMWARE_PASSWORD, VMWARE_VALIDATE_CERTS,
plus VMWARE_PORT). A session is always logged out, also when the module fails,
and a failed login says which of host, TLS or credentials is wrong.

Every HTTP call to vCenter is bounded by `request_timeout`: a vCenter that
stops answering fails the call instead of hanging it forever.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import socket
import ssl
import traceback
from xml.etree import ElementTree

from ansible.module_utils.basic import env_fallback, missing_required_lib

PYVMOMI_IMPORT_ERROR = None
from ansible.module_utils.six.moves import http_client

try:
    from pyVim.connect import Connect, Disconnect, parse_hostport
    from pyVmomi import vim, vmodl
    from pyVmomi.VmomiSupport import GetServiceVersions, versionIdMap
except ImportError:
    PYVMOMI_IMPORT_ERROR = traceback.format_exc()

# Seconds any one HTTP exchange with vCenter may take: connecting, and each
# wait for response bytes. Above the longest wait the collection asks vCenter
# for itself (WaitForUpdatesEx's maxWaitSeconds of 30 in _deploy.wait_for_ips).
DEFAULT_REQUEST_TIMEOUT = 60

CONNECTION_ARGUMENT_SPEC = dict(
    # Not required=True: run_module names the VMWARE_* variable of a missing one, which
    # Ansible's generic "missing required arguments" would not.
    hostname=dict(type="str", fallback=(env_fallback, ["VMWARE_HOST"])),
    username=dict(type="str", aliases=["user"], fallback=(env_fallback, ["VMWARE_USER"])),
    password=dict(type="str", aliases=["pass", "pwd"], no_log=True,
                  fallback=(env_fallback, ["VMWARE_PASSWORD"])),
    port=dict(type="int", default=443, fallback=(env_fallback, ["VMWARE_PORT"])),
    validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["VMWARE_VALIDATE_CERTS"])),
    request_timeout=dict(type="int", default=DEFAULT_REQUEST_TIMEOUT,
                         fallback=(env_fallback, ["VMWARE_REQUEST_TIMEOUT"])),
)
# Each required connection option and the variable AWX's credential sets it through.
REQUIRED_CONNECTION = (("hostname", "VMWARE_HOST"), ("username", "VMWARE_USER"), ("password", "VMWARE_PASSWORD"))


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


def supported_version(hostname, port, ssl_context, timeout):
    """The newest vSphere API version both pyVmomi and the server speak, asked with a timeout.

    What pyVim.connect.SmartConnect does in __FindSupportedVersion: read
    /sdk/vimServiceVersions.xml and take the first of pyVmomi's versions
    (newest first) the server lists as its version or a prior one. Done here
    because SmartConnect's request has no timeout (pyVim/connect.py
    __GetElementTree opens HTTPSConnection(server, port, context=...)), so a
    silent vCenter would hang the login before any timeout applies.
    """
    connection = http_client.HTTPSConnection(hostname, port, context=ssl_context, timeout=timeout)
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


def fault_text(error):
    """A vSphere fault as 'FaultType: message', for error messages."""
    name = type(error).__name__.split(".")[-1]
    # A fault without a message of its own (SystemError, RuntimeFault) says why in `reason`, if at all.
    message = getattr(error, "msg", None) or getattr(error, "reason", None) or str(error)
    return "%s: %s" % (name, message.strip())


class VcenterClient(object):
    """A logged-in pyVmomi session, used as a context manager."""

    def __init__(self, hostname, username, password, port=443, validate_certs=True,
                 request_timeout=DEFAULT_REQUEST_TIMEOUT):
        self.hostname = hostname
        self.port = port
        self.validate_certs = validate_certs
        self._username = username
        self._password = password
        self.request_timeout = request_timeout
        self.service_instance = None

    @property
    def content(self):
        return self.service_instance.content

    def ssl_context(self):
        if self.validate_certs:
            return ssl.create_default_context()
        return ssl._create_unverified_context()  # validate_certs: false, said by the user

    def connect(self):
        where = "%s:%s" % (self.hostname, self.port)
        # AWX's credential takes a port as part of the host ("vcenter:8443"): SmartConnect split it so.
        hostname, port = parse_hostport(self.hostname, self.port)
        try:
            context = self.ssl_context()
            # httpConnectionTimeout becomes the timeout of every HTTPSConnection
            # the SOAP stub opens (pyVmomi/SoapAdapter.py, SoapStubAdapter.__init__:
            # schemeArgs['timeout'], passed to self.scheme(...) in GetConnection),
            # so it bounds connecting and each read of every call. (Its
            # connectionPoolTimeout is only how long an idle pooled connection is kept.)
            self.service_instance = Connect(
                host=hostname, port=port, user=self._username, pwd=self._password,
                version=supported_version(hostname, port, context, self.request_timeout),
                sslContext=context, httpConnectionTimeout=self.request_timeout,
            )
        except vim.fault.InvalidLogin:
            raise RayVsphereError(
                "vCenter %s rejected the login of %r: wrong username or password "
                "(VMWARE_USER / VMWARE_PASSWORD)" % (where, self._username), fault="InvalidLogin")
        except ssl.SSLError as error:
            raise RayVsphereError(
                "TLS with vCenter %s failed: %s. Trust its CA certificate, or set validate_certs: false "
                "(VMWARE_VALIDATE_CERTS=false) for a test vCenter with a self-signed certificate" % (where, error))
        except socket.timeout:
            raise RayVsphereError("vCenter %s did not answer within %s s (request_timeout)"
                                  % (where, self.request_timeout), timed_out=True)
        except (socket.error, OSError, http_client.HTTPException) as error:
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
                         port=params["port"], validate_certs=params["validate_certs"],
                         request_timeout=params["request_timeout"])


def run_module(module, action):
    """Connect, run action(client) -> result dict, log out, exit or fail."""
    if PYVMOMI_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("pyVmomi"), exception=PYVMOMI_IMPORT_ERROR)
    missing = missing_connection(module.params)
    if missing:
        module.fail_json(msg="missing vCenter connection: set %s" % ", ".join(missing))
    try:
        with client_from_params(module.params) as client:
            result = action(client)
    except RayVsphereError as error:
        module.fail_json(msg=str(error), **error.details)
    except vmodl.MethodFault as error:
        module.fail_json(msg="vCenter call failed: %s" % fault_text(error), exception=traceback.format_exc())
    except socket.timeout:
        module.fail_json(msg="vCenter %s:%s did not answer within %s s (request_timeout)"
                         % (module.params["hostname"], module.params["port"], module.params["request_timeout"]),
                         exception=traceback.format_exc())
    module.exit_json(**result)
