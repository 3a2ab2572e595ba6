# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""One vCenter connection layer for every module of the collection.

Arguments and environment fallbacks are those of AWX's VMware vCenter
credential (VMWARE_HOST, VMWARE_USER, VMWARE_PASSWORD, VMWARE_VALIDATE_CERTS,
plus VMWARE_PORT). A session is always logged out, also when the module fails,
and a failed login says which of host, TLS or credentials is wrong. A session
vCenter ended (idle for its timeout, about 30 minutes, or a vCenter restart:
NotAuthenticated; pyvmomi issues #349, #953) is logged in again on the next
call, which is then retried: long-lived clients such as the Ray provider
need not notice.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import socket
import ssl
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

PYVMOMI_IMPORT_ERROR = None
try:
    from pyVim.connect import Disconnect, SmartStubAdapter, VimSessionOrientedStub
    from pyVmomi import vim, vmodl
except ImportError:
    PYVMOMI_IMPORT_ERROR = traceback.format_exc()

CONNECTION_ARGUMENT_SPEC = dict(
    hostname=dict(type="str", required=True, fallback=(env_fallback, ["VMWARE_HOST"])),
    username=dict(type="str", required=True, aliases=["user"], fallback=(env_fallback, ["VMWARE_USER"])),
    password=dict(type="str", required=True, aliases=["pass", "pwd"], no_log=True,
                  fallback=(env_fallback, ["VMWARE_PASSWORD"])),
    port=dict(type="int", default=443, fallback=(env_fallback, ["VMWARE_PORT"])),
    validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["VMWARE_VALIDATE_CERTS"])),
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


class VcenterClient(object):
    """A logged-in pyVmomi session, used as a context manager."""

    def __init__(self, hostname, username, password, port=443, validate_certs=True, timeout=60):
        self.hostname = hostname
        self.port = port
        self.validate_certs = validate_certs
        self._username = username
        self._password = password
        self._timeout = timeout
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
        try:
            stub = SmartStubAdapter(host=self.hostname, port=self.port, sslContext=self.ssl_context(),
                                    connectionPoolTimeout=self._timeout)
            # Logs in on the first call and again on NotAuthenticated. retryCount=2:
            # one new login per expired session, and one resend of a call whose
            # connection broke (a pooled connection the server had closed).
            stub = VimSessionOrientedStub(stub, self._login, retryDelay=0.1, retryCount=2)
            self.service_instance = vim.ServiceInstance("ServiceInstance", stub)
            self.service_instance.content.sessionManager.currentSession  # logs in now: errors belong to connect()
        except vim.fault.InvalidLogin:
            raise RayVsphereError(
                "vCenter %s rejected the login of %r: wrong username or password "
                "(VMWARE_USER / VMWARE_PASSWORD)" % (where, self._username))
        except ssl.SSLError as error:
            raise RayVsphereError(
                "TLS with vCenter %s failed: %s. Trust its CA certificate, or set validate_certs: false "
                "(VMWARE_VALIDATE_CERTS=false) for a test vCenter with a self-signed certificate" % (where, error))
        except (socket.error, OSError) as error:
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
                         port=params["port"], validate_certs=params["validate_certs"])


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
