"""Import an OVA into vcsim through ImportVApp and the NFC lease.

The testbed needs this to prove the test appliance is valid and to run the
`testbed up --demo` VM before the collection exists. The product's deploy
(bounded parallelism, lease keep-alive, cloning) is the collection's deploy
module; this is the plain single-VM path.
"""

import http.client
import ssl
import tarfile
import time
from urllib.parse import urlsplit

from pyVmomi import vim

from testbed import vsphere


class OvaImportError(RuntimeError):
    pass


def import_ova(service_instance, ova_path, vm_name, *, resource_pool, datastore, folder, network,
               properties=None, extra_config=None, lease_timeout=60.0):
    """Import `ova_path` as a powered-off VM and return it.

    properties fill the OVF ProductSection (public-keys, hostname, ...);
    extra_config adds guestinfo.* keys. On any failure the lease is aborted and
    the half-made VM destroyed (vcsim, like vCenter, keeps it after an abort).
    """
    with tarfile.open(ova_path) as ova:
        descriptor_name = next(name for name in ova.getnames() if name.endswith(".ovf"))
        descriptor = ova.extractfile(descriptor_name).read().decode()
        spec_params = vim.OvfManager.CreateImportSpecParams(
            entityName=vm_name,
            networkMapping=[vim.OvfManager.NetworkMapping(name="VM Network", network=network)],
            propertyMapping=[vim.KeyValue(key=key, value=value) for key, value in (properties or {}).items()],
        )
        ovf_manager = service_instance.content.ovfManager
        spec_result = ovf_manager.CreateImportSpec(descriptor, resource_pool, datastore, spec_params)
        if spec_result.error:
            raise OvaImportError(f"CreateImportSpec for {ova_path}: {spec_result.error[0].msg}")
        if extra_config:
            spec_result.importSpec.configSpec.extraConfig = [
                vim.option.OptionValue(key=key, value=value) for key, value in extra_config.items()
            ]
        lease = resource_pool.ImportVApp(spec_result.importSpec, folder)
        try:
            lease_info = _wait_until_ready(service_instance, lease, lease_timeout)
            for device_url in lease_info.deviceUrl:
                item = next(i for i in spec_result.fileItem if i.deviceId == device_url.importKey)
                _upload(ova, item.path, device_url.url)
            lease.HttpNfcLeaseProgress(100)
            lease.HttpNfcLeaseComplete()
        except BaseException as error:
            _abort(service_instance, lease, error)
            raise
        return lease_info.entity


def _wait_until_ready(service_instance, lease, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        props = vsphere.read_properties(service_instance, lease, ["state", "info", "error"])
        if props["state"] == vim.HttpNfcLease.State.ready:
            return props["info"]
        if props["state"] == vim.HttpNfcLease.State.error:
            raise OvaImportError(f"HttpNfcLease failed: {props['error'].msg}")
        time.sleep(0.05)
    raise OvaImportError(f"HttpNfcLease not ready after {timeout} s")


def _upload(ova, member_name, url):
    member = ova.getmember(member_name)
    parts = urlsplit(url)
    connection = http.client.HTTPSConnection(
        parts.hostname, parts.port or 443, context=ssl._create_unverified_context(), timeout=60
    )
    try:
        connection.request(
            "PUT", parts.path, body=ova.extractfile(member),
            headers={"Content-Type": "application/x-vnd.vmware-streamVmdk", "Content-Length": str(member.size)},
        )
        response = connection.getresponse()
        response.read()
        if response.status not in (200, 201):
            raise OvaImportError(f"NFC upload of {member_name} to {url}: HTTP {response.status} {response.reason}")
    finally:
        connection.close()


def _abort(service_instance, lease, error):
    try:
        entity = vsphere.read_properties(service_instance, lease, ["info"]).get("info")
        lease.HttpNfcLeaseAbort(vim.fault.SystemError(reason=str(error)))
    except vim.fault.InvalidState:  # the lease already ended
        entity = None
    if entity is not None and entity.entity is not None:
        vsphere.wait_for_task(service_instance, entity.entity.Destroy_Task())
