# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""OVF packages and their import through ImportVApp and the NFC lease.

Written here because no maintained collection offers it: vmware.vmware only
deploys OVFs from content libraries, and community.vmware's
vmware_deploy_ovf neither keeps the lease alive on a timer nor removes the
half-made VM when an upload fails.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import shutil
import tarfile
import tempfile
import threading
import time
from xml.etree import ElementTree

from ansible.module_utils.six.moves import http_client
from ansible.module_utils.six.moves.urllib.parse import urljoin, urlsplit
from ansible.module_utils.urls import open_url

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, fault_text
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _vsphere
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._nodes import destroy_vm

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module

OVF_NS = "{http://schemas.dmtf.org/ovf/envelope/1}"
CHUNK = 1024 * 1024
LEASE_KEEPALIVE_SECONDS = 15  # vCenter drops an NFC lease after about 5 minutes without progress


class OvfPackage(object):
    """A local .ovf with its files, a local .ova, or an http(s) URL to either.

    A URL is downloaded once into a private temp folder: an OVA's members come
    in tar order and each NFC upload needs its length up front.
    """

    def __init__(self, location, validate_certs=True, timeout=600):
        self.location = location
        self._validate_certs = validate_certs
        self._timeout = timeout
        self._download_dir = None
        self._tar = None
        self._ovf_dir = None
        self.descriptor = None
        self.files = {}  # href -> size
        self.content_hash = None

    def __enter__(self):
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        if self._download_dir is not None:
            shutil.rmtree(self._download_dir, ignore_errors=True)
            self._download_dir = None

    def _open(self):
        path = self.location
        if urlsplit(self.location).scheme in ("http", "https"):
            path = self._download(self.location)
        elif not os.path.isfile(path):
            raise RayVsphereError("OVF source %s: no such file" % self.location)
        if tarfile.is_tarfile(path):
            try:
                self._tar = tarfile.open(path)
                names = [name for name in self._tar.getnames() if name.endswith(".ovf")]
            except (tarfile.TarError, EOFError) as error:
                raise RayVsphereError("OVF source %s: the archive is damaged (%s)" % (self.location, error))
            if not names:
                raise RayVsphereError("OVF source %s: an archive without an .ovf descriptor" % self.location)
            self.descriptor = self._tar.extractfile(names[0]).read().decode("utf-8")
            sizes = dict((member.name, member.size) for member in self._tar.getmembers())
        elif path.endswith(".ova"):
            raise RayVsphereError("OVF source %s: not an OVA (a tar archive holding an .ovf descriptor)" % self.location)
        else:
            with open(path, "rb") as descriptor:
                self.descriptor = descriptor.read().decode("utf-8", "replace")
            self._ovf_dir = os.path.dirname(os.path.abspath(path))
            sizes = None
        self.files = self._referenced_files(sizes)
        self.content_hash = self._hash(path)

    def _download(self, url):
        self._download_dir = tempfile.mkdtemp(prefix="ray-vsphere-ovf-")
        target = os.path.join(self._download_dir, os.path.basename(urlsplit(url).path) or "package.ova")
        self._fetch(url, target)
        if not tarfile.is_tarfile(target):  # an .ovf: fetch the files it references next to it
            for href in self._hrefs(self._read_text(target)):
                self._fetch(urljoin(url, href), os.path.join(self._download_dir, os.path.basename(href)))
        return target

    def _fetch(self, url, target):
        try:
            response = open_url(url, validate_certs=self._validate_certs, timeout=self._timeout)
            with open(target, "wb") as out:
                shutil.copyfileobj(response, out, CHUNK)
        except Exception as error:  # pylint: disable=broad-except
            raise RayVsphereError("OVF source %s: download of %s failed: %s" % (self.location, url, error))

    @staticmethod
    def _read_text(path):
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")

    def _hrefs(self, descriptor):
        try:
            envelope = ElementTree.fromstring(descriptor)
        except ElementTree.ParseError as error:
            raise RayVsphereError("OVF source %s: the descriptor is not valid XML: %s" % (self.location, error))
        if envelope.tag != OVF_NS + "Envelope":
            raise RayVsphereError("OVF source %s: the descriptor is not an OVF Envelope (root element %s)"
                                  % (self.location, envelope.tag))
        return [item.get(OVF_NS + "href") for item in envelope.iter(OVF_NS + "File")]

    def _referenced_files(self, archive_sizes):
        files = {}
        for href in self._hrefs(self.descriptor):
            if archive_sizes is not None:
                size = archive_sizes.get(href)
            else:
                file_path = os.path.join(self._ovf_dir, href)
                size = os.path.getsize(file_path) if os.path.isfile(file_path) else None
            if size is None:
                raise RayVsphereError("OVF source %s: the descriptor references %s, which is missing"
                                      % (self.location, href))
            files[href] = size
        return files

    def _hash(self, path):
        digest = hashlib.sha256()
        paths = [path] if self._tar is not None else [path] + [os.path.join(self._ovf_dir, href) for href in self.files]
        for file_path in paths:
            with open(file_path, "rb") as handle:
                for chunk in iter(lambda: handle.read(CHUNK), b""):
                    digest.update(chunk)
        return digest.hexdigest()

    def open_file(self, href):
        if self._tar is not None:
            return self._tar.extractfile(href)
        return open(os.path.join(self._ovf_dir, href), "rb")


def declared_properties(descriptor):
    """The keys of the OVF's ProductSection properties."""
    envelope = ElementTree.fromstring(descriptor)
    return [prop.get(OVF_NS + "key") for prop in envelope.iter(OVF_NS + "Property")]


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
        raise RayVsphereError("OvfManager.CreateImportSpec for %s failed: %s" % (package.location, fault_text(error)))
    if result.error:
        raise RayVsphereError("OvfManager.CreateImportSpec for %s failed: %s"
                              % (package.location, "; ".join(fault_text(error) for error in result.error)))
    configure(result.importSpec.configSpec)
    return result


def import_vm(client, package, spec_result, name, placement, timeout):
    """Import one VM through the NFC lease and return it.

    On any failure the lease is aborted and the VM vCenter made for it is
    destroyed (an aborted lease leaves it behind).
    """
    service_instance = client.service_instance
    try:
        lease = placement.resource_pool.ImportVApp(spec_result.importSpec, placement.folder, placement.host)
    except vmodl.MethodFault as error:
        raise RayVsphereError("ResourcePool.ImportVApp of VM %s failed: %s" % (name, fault_text(error)),
                              fault=type(error).__name__)
    try:
        info = _wait_for_lease(service_instance, lease, name, timeout)
        _upload_disks(client, package, spec_result, lease, info, name)
        lease.HttpNfcLeaseComplete()
        return info.entity
    except BaseException as error:
        _abort(service_instance, lease, error)
        remove_half_made_vm(service_instance, placement.folder, name)
        raise


def _wait_for_lease(service_instance, lease, name, timeout):
    deadline = time.time() + timeout
    while True:
        props = _vsphere.read(service_instance, lease, ["state", "info", "error"])
        if props.get("state") == vim.HttpNfcLease.State.ready:
            return props["info"]
        if props.get("state") == vim.HttpNfcLease.State.error:
            raise RayVsphereError("HttpNfcLease for VM %s failed: %s" % (name, fault_text(props.get("error"))))
        if time.time() > deadline:
            raise RayVsphereError("HttpNfcLease for VM %s not ready after %s s" % (name, timeout))
        time.sleep(0.05)


class _Progress(object):
    """Reports upload progress on a timer, which also keeps the lease alive."""

    def __init__(self, lease, total):
        self._lease = lease
        self._total = max(total, 1)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.daemon = True

    def _run(self):
        while not self._stop.wait(LEASE_KEEPALIVE_SECONDS):
            try:
                self._lease.HttpNfcLeaseProgress(min(99, int(100 * self.sent / self._total)))
            except Exception:  # pylint: disable=broad-except
                return  # the lease ended; the upload reports the error

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()


def _upload_disks(client, package, spec_result, lease, info, name):
    items = dict((item.deviceId, item) for item in spec_result.fileItem or [])
    uploads = [(device_url, items[device_url.importKey]) for device_url in info.deviceUrl or []
               if device_url.importKey in items]
    with _Progress(lease, sum(package.files.get(upload[1].path, 0) for upload in uploads)) as progress:
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
            raise RayVsphereError("upload of %s for VM %s stopped after %d of %d bytes: %s"
                                  % (item.path, name, sent, size, error))
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


def _abort(service_instance, lease, error):
    try:
        lease.HttpNfcLeaseAbort(vmodl.fault.SystemError(reason=str(error)[:200]))
    except vmodl.MethodFault:
        pass  # the lease already ended


def remove_half_made_vm(service_instance, folder, name):
    try:
        vm = service_instance.content.searchIndex.FindChild(folder, name)
    except vmodl.MethodFault:
        return
    if vm is not None:
        destroy_vm(service_instance, vm, name)
