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

import tarfile
from xml.etree import ElementTree

from ansible.module_utils.six.moves import http_client
from ansible.module_utils.six.moves.urllib.parse import urlsplit

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, fault_text
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ledger, _waiter
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ovf_package import CHUNK, OVF_NS

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module

# vCenter fails an NFC lease that gets no HttpNfcLeaseProgress for its
# info.leaseTimeout (300 s by default). Progress goes every quarter of it, at
# most every 15 s; a lease that states no timeout is kept with the 15 s.
LEASE_KEEPALIVE_SECONDS = 15


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
    """How much of the upload went; each report to the lease also keeps it alive."""

    def __init__(self, lease, total):
        self._lease = lease
        self._total = max(total, 1)
        self.sent = 0

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
    progress = _Progress(lease, total)
    with _waiter.Every(keepalive_interval(info.leaseTimeout), progress.report):
        for device_url, item in uploads:
            _upload(client, package, item, device_url.url, progress, name)
    lease.HttpNfcLeaseProgress(100)


def _upload(client, package, item, url, progress, name):
    parts = urlsplit(url.replace("*", client.hostname))  # ESX and old vcsim answer with host '*'
    size = package.files[item.path]
    connection = http_client.HTTPSConnection(parts.hostname, parts.port or 443, context=client.ssl_context(),
                                             timeout=600)
    try:
        connection.putrequest("PUT" if item.create else "POST", parts.path)
        connection.putheader("Content-Type", "application/x-vnd.vmware-streamVmdk")
        connection.putheader("Content-Length", str(size))
        connection.endheaders()
        source = package.open_file(item.path)
        sent = 0
        try:
            while sent < size:
                chunk = source.read(min(CHUNK, size - sent))
                if not chunk:
                    break
                connection.send(chunk)
                sent += len(chunk)
                progress.sent += len(chunk)
        except (tarfile.TarError, IOError, OSError) as error:
            raise _waiter.chained(RayVsphereError("upload of %s for VM %s stopped after %d of %d bytes: %s"
                                                  % (item.path, name, sent, size, error)), error)
        finally:
            source.close()
        if sent < size:
            raise RayVsphereError("upload of %s for VM %s stopped after %d of %d bytes: the source ended early"
                                  % (item.path, name, sent, size))
        response = connection.getresponse()
        response.read()
        if response.status not in (200, 201):
            raise RayVsphereError("upload of %s for VM %s: HTTP %s %s" % (item.path, name, response.status, response.reason))
    finally:
        connection.close()


def _abort(lease, error):
    try:
        lease.HttpNfcLeaseAbort(vmodl.fault.SystemError(reason=str(error)[:200]))
    except Exception:  # pylint: disable=broad-except
        pass  # the lease already ended, or vCenter is gone: the ledger's undo reports what is left
