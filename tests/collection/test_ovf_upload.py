"""An NFC upload that fails half-way: the lease is aborted and the half-made VM removed.

A playbook cannot make a source fail mid-upload (the module hashes the whole
package before it uploads anything), so this calls the collection's importer
directly against vcsim with a package whose disk stream breaks after 8 KiB.
Everything else is real: CreateImportSpec, ImportVApp, the lease, the HTTP
upload to vcsim's NFC endpoint, HttpNfcLeaseAbort and the cleanup.
"""

import io

import pytest
from pyVmomi import vim, vmodl

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nfc, _ovf_package, _placement
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, VcenterClient
from testbed import simulator, vsphere


class BreaksHalfWay(io.RawIOBase):
    def __init__(self, source, after):
        self.source, self.left = source, after

    def readable(self):
        return True

    def read(self, size=-1):
        if self.left <= 0:
            raise OSError("the storage holding the disk went away")
        chunk = self.source.read(min(size, self.left) if size > 0 else self.left)
        self.left -= len(chunk)
        return chunk

    def close(self):
        self.source.close()
        super().close()


def test_a_disk_upload_failing_half_way_aborts_the_lease_and_removes_the_vm(vcsim, test_ova, service_instance,
                                                                           monkeypatch):
    endpoint = vcsim.endpoint
    aborted = []
    real_abort = _nfc._abort

    def abort(lease, error):
        aborted.append((lease, lease.state))
        real_abort(lease, error)
    monkeypatch.setattr(_nfc, "_abort", abort)
    with VcenterClient(endpoint.host, endpoint.username, endpoint.password, port=endpoint.port,
                       ca_path=str(endpoint.ca_path)) as client, _ovf_package.OvfPackage(str(test_ova)) as package:
        placement = _placement.resolve(client.service_instance, dict(
            datacenter="DC0", cluster="DC0_C0", resource_pool="DC0_C0_RP1", vm_folder=simulator.VM_FOLDER,
            datastore="LocalDS_0", network="VM Network"))
        spec = _nfc.import_spec(client.service_instance, package, "half-uploaded", placement, {}, lambda config: None)
        whole_file = package.open_file
        package.open_file = lambda href: BreaksHalfWay(whole_file(href), after=8192)
        with pytest.raises(RayVsphereError, match=r"upload of ray-test-appliance-disk1.vmdk for VM half-uploaded "
                                                  r"stopped after 8192 of \d+ bytes: the storage holding the disk went away"):
            _nfc.import_vm(client, package, spec, "half-uploaded", placement, timeout=60)
        [(lease, state_before)] = aborted
        assert state_before == vim.HttpNfcLease.State.ready
        # vcsim ends an aborted lease by removing it (simulator/http_nfc_lease.go, HttpNfcLeaseAbort:
        # ctx.Session.Remove and nfcLease.Delete), where vCenter would show state 'error': either way
        # it is no longer a ready lease. Without the abort it would still be one.
        with pytest.raises(vmodl.fault.ManagedObjectNotFound):
            lease.state
    names = [p["name"] for p in vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name"]).values()]
    assert "half-uploaded" not in names
