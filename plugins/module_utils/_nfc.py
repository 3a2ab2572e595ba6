# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""An OVF's import into vCenter: CreateImportSpec, ImportVApp and the upload to the host the NFC lease names.

Written here because no maintained collection offers it: community.vmware's
vmware_deploy_ovf neither keeps the lease alive on a timer nor removes the
half-made VM when an upload fails.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import socket
import ssl
import tarfile
from xml.etree import ElementTree

from ansible.module_utils.six.moves import http_client
from ansible.module_utils.six.moves.urllib.parse import urlsplit

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import (
    NAME_MISMATCH_CODES, UNTRUSTED_ISSUER_CODES, RayVsphereError, certificate_names, fault_text, https_connection)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ledger, _progress, _waiter
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ovf_download import CHUNK
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ovf_package import OVF_NS

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module

# vCenter fails an NFC lease that gets no HttpNfcLeaseProgress for its
# info.leaseTimeout (300 s by default). Progress goes every quarter of it, at
# most every 15 s; a lease that states no timeout is kept with the 15 s.
LEASE_KEEPALIVE_SECONDS = 15
# Seconds one exchange with the ESXi host may take: connecting, each send, the wait for its answer.
UPLOAD_TIMEOUT = 600
# What a connection to the ESXi host can raise: DNS (gaierror), refused, reset, timeout, TLS, HTTP.
_TRANSPORT_ERRORS = (ssl.SSLError, ssl.CertificateError, socket.error, OSError, http_client.HTTPException)


def import_spec(service_instance, package, name, placement, properties, configure):
    """CreateImportSpec for one VM: validates the OVF against the placement, creates nothing."""
    mapping = []
    if placement.network is not None:
        envelope = ElementTree.fromstring(package.descriptor)
        mapping = [vim.OvfManager.NetworkMapping(name=network.get(OVF_NS + "name"), network=placement.network)
                   for network in envelope.iter(OVF_NS + "Network")]
    params = vim.OvfManager.CreateImportSpecParams(
        entityName=name, diskProvisioning="thin", networkMapping=mapping,
        propertyMapping=[vim.KeyValue(key=key, value=value) for key, value in sorted(properties.items())],
    )
    try:
        result = service_instance.content.ovfManager.CreateImportSpec(
            package.descriptor, placement.resource_pool, placement.datastore, params)
    except vmodl.MethodFault as error:
        raise _waiter.chained(RayVsphereError("OvfManager.CreateImportSpec for %s failed: %s"
                                              % (package.location, fault_text(error))), error)
    if result.error:
        raise RayVsphereError("OvfManager.CreateImportSpec for %s failed: %s"
                              % (package.location, "; ".join(fault_text(error) for error in result.error)))
    configure(result.importSpec.configSpec)
    return result


def import_vm(client, package, spec_result, name, placement, timeout, ledger=None):
    """Import one VM through the NFC lease and return it.

    ImportVApp is recorded in ledger (a _ledger.Ledger) before it is sent; on
    any failure the lease is aborted, and the ledger removes the VM vCenter
    made for it (an aborted lease leaves it behind). Without a ledger, the
    import is a call of its own, undone as one.
    """
    if ledger is None:
        with _ledger.Ledger(client.service_instance, "importing VM %s" % name) as own:
            return import_vm(client, package, spec_result, name, placement, timeout, own)
    service_instance = client.service_instance
    lease = ledger.issue(placement.folder, name, lambda: placement.resource_pool.ImportVApp(
        spec_result.importSpec, placement.folder, placement.host), "ResourcePool.ImportVApp of VM %s" % name)
    try:
        info = _waiter.wait_for_lease(service_instance, lease, name, timeout)
        ledger.made(name, info.entity)
        _upload_disks(client, package, spec_result, lease, info, name)
        try:
            lease.HttpNfcLeaseComplete()
        except vmodl.MethodFault as error:
            raise _waiter.chained(RayVsphereError("HttpNfcLease.HttpNfcLeaseComplete for VM %s failed: %s"
                                                  % (name, fault_text(error)), fault=type(error).__name__), error)
        return info.entity
    except BaseException as error:
        _abort(lease, error)
        raise


def keepalive_interval(lease_timeout):
    """Seconds between HttpNfcLeaseProgress calls for a lease that times out after lease_timeout seconds."""
    if not lease_timeout or lease_timeout <= 0:
        return LEASE_KEEPALIVE_SECONDS
    return min(LEASE_KEEPALIVE_SECONDS, lease_timeout / 4.0)


class _Progress(object):
    """How much of the upload went; each report to the lease also keeps it alive, each chunk goes to _progress."""

    def __init__(self, lease, total, name):
        self._lease = lease
        self._total = max(total, 1)
        self.sent = 0
        self.watched = _progress.Transfer("upload", name, total)

    def add(self, count):
        self.sent += count
        self.watched.sent(self.sent)

    def report(self):
        try:
            self._lease.HttpNfcLeaseProgress(min(99, int(100 * self.sent / self._total)))
        except Exception:  # pylint: disable=broad-except
            return False  # the lease ended; the upload reports the error
        return True


def _upload_disks(client, package, spec_result, lease, info, name):
    items = dict((item.deviceId, item) for item in spec_result.fileItem or [])
    uploads = [(device_url, items[device_url.importKey]) for device_url in info.deviceUrl or []
               if device_url.importKey in items]
    total = sum(package.files.get(upload[1].path, 0) for upload in uploads)
    progress = _Progress(lease, total, name)
    with _waiter.Every(keepalive_interval(info.leaseTimeout), progress.report):
        for device_url, item in uploads:
            _upload(client, package, item, device_url.url, progress, name)
    progress.watched.sent(progress.sent, final=True)
    lease.HttpNfcLeaseProgress(100)


def _upload(client, package, item, url, progress, name):
    parts = urlsplit(url.replace("*", client.hostname))  # ESX and old vcsim answer with host '*'
    host, port = parts.hostname, parts.port or 443
    size = package.files[item.path]
    method = "PUT" if item.create else "POST"
    # The lease names an ESXi host, not vCenter: each error says which, and that it is the upload.
    call = "NFC upload (HTTP %s of %s for VM %s to ESXi host %s:%s, as the import lease names it)" % (
        method, item.path, name, host, port)
    connection = https_connection(host, port, client.ssl_context(), UPLOAD_TIMEOUT, getattr(client, "proxy", None))
    try:
        try:
            connection.putrequest(method, parts.path)
            connection.putheader("Content-Type", "application/x-vnd.vmware-streamVmdk")
            connection.putheader("Content-Length", str(size))
            connection.endheaders()  # connects: DNS, TCP and TLS errors come here
        except _TRANSPORT_ERRORS as error:
            raise _transport_failed(call, client, host, port, error)
        _send_disk(client, connection, package, item, progress, name, call)
        try:
            response = connection.getresponse()
            response.read()
        except _TRANSPORT_ERRORS as error:
            raise _transport_failed(call, client, host, port, error, "after all %d bytes were sent" % size)
        if response.status not in (200, 201):
            raise RayVsphereError("%s failed: HTTP %s %s" % (call, response.status, response.reason))
    finally:
        connection.close()


def _send_disk(client, connection, package, item, progress, name, call):
    size = package.files[item.path]
    source = package.open_file(item.path)
    sent = 0
    try:
        while sent < size:
            try:
                chunk = source.read(min(CHUNK, size - sent))
            except (tarfile.TarError, IOError, OSError) as error:
                raise _waiter.chained(RayVsphereError("upload of %s for VM %s stopped after %d of %d bytes: %s"
                                                      % (item.path, name, sent, size, error)), error)
            if not chunk:
                break
            try:
                connection.send(chunk)
            except _TRANSPORT_ERRORS as error:
                raise _transport_failed(call, client, connection.host, connection.port, error,
                                        "after %d of %d bytes" % (sent, size))
            sent += len(chunk)
            progress.add(len(chunk))
    finally:
        source.close()
    if sent < size:
        raise RayVsphereError("upload of %s for VM %s stopped after %d of %d bytes: the source ended early"
                              % (item.path, name, sent, size))


def _transport_failed(call, client, host, port, error, when=None):
    """A RayVsphereError for call failing on its connection to the ESXi host, with what to do about it."""
    where = "%s:%s" % (host, port)
    code = getattr(error, "verify_code", None)
    details = {}
    if code in UNTRUSTED_ISSUER_CODES:
        ca_path = getattr(client, "ca_path", None)
        trusted = "ca_path %s" % ca_path if ca_path else "the system's trust store"
        text = ("TLS with ESXi host %s failed: its certificate is not signed by a CA in %s (%s), though "
                "vCenter's was. In VMware's hybrid certificate mode vCenter's certificate comes from your "
                "company's CA and the ESXi hosts' from VMCA: put both CA certificates in one PEM file (VMCA's "
                "root is in https://<vcenter>/certs/download.zip) and give it as ca_path (VMWARE_CA_PATH)"
                % (where, trusted, error.verify_message))
    elif code in NAME_MISMATCH_CODES:
        names = certificate_names(host, port)
        text = ("TLS with ESXi host %s failed: its certificate is not valid for the name %r that vCenter gives "
                "the host%s. Have the host's certificate re-issued for that name (Renew in the vSphere Client, "
                "for hosts in VMCA mode)" % (where, host, " (it is for %s)" % ", ".join(names) if names else ""))
    elif isinstance(error, socket.timeout):
        text, details = "ESXi host %s did not answer within %s s" % (where, UPLOAD_TIMEOUT), dict(timed_out=True)
    elif when:  # connected, TLS done: whatever comes now (reset, EOF, a bad reply) broke the connection
        text = "the connection to ESXi host %s broke %s: %s: %s" % (where, when, type(error).__name__, error)
    elif isinstance(error, (ssl.SSLError, ssl.CertificateError)):
        text = "TLS with ESXi host %s failed: %s" % (where, error)
    elif isinstance(error, socket.gaierror):
        text = ("the ESXi host name %r does not resolve on this machine (%s). The machine that runs the module "
                "must resolve and reach (HTTPS, port %s) the ESXi hosts vCenter names, not only vCenter"
                % (host, error, port))
    elif getattr(error, "errno", None) == errno.ECONNREFUSED:
        text = ("ESXi host %s refused the connection (%s). The machine that runs the module must reach the "
                "ESXi hosts vCenter names on port %s (firewall), not only vCenter" % (where, error, port))
    else:
        text = "cannot connect to ESXi host %s: %s: %s" % (where, type(error).__name__, error)
    return _waiter.chained(RayVsphereError("%s failed: %s" % (call, text), **details), error)


def _abort(lease, error):
    try:
        lease.HttpNfcLeaseAbort(vmodl.fault.SystemError(reason=str(error)[:200]))
    except Exception:  # pylint: disable=broad-except
        pass  # the lease already ended, or vCenter is gone: the ledger's undo reports what is left
