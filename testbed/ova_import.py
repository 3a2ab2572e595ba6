"""Import an OVA into vcsim as one powered-off VM, with the collection's own OVF code.

For tests and `testbed up --demo`, which need a plain VM before (or without)
any playbook: the NFC upload, lease handling and cleanup are the
collection's (module_utils/_ovf_package.py and _nfc.py), so what the tests prove is what ships.
"""

from types import SimpleNamespace

from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nfc, _ovf_package, _placement


def import_ova(service_instance, ova_path, vm_name, *, resource_pool, datastore, folder, network,
               properties=None, extra_config=None, instance_uuid=None, timeout=120):
    """Import `ova_path` as `vm_name`; OVF properties, extraConfig and instance UUID as given.

    The disk upload (NFC) verifies vcsim's certificate with the session's own TLS settings.
    """
    stub = service_instance._stub
    stub = getattr(stub, "soapStub", stub)  # the SOAP stub under a re-login stub
    host, _, port = stub.host.rpartition(":")
    session = SimpleNamespace(service_instance=service_instance, hostname=host,
                              ssl_context=lambda: stub.schemeArgs["context"])
    placement = _placement.Placement(None, resource_pool, None, folder, datastore, network)

    def configure(config_spec):
        config_spec.extraConfig = [vim.option.OptionValue(key=key, value=value)
                                   for key, value in sorted((extra_config or {}).items())]
        if instance_uuid:
            config_spec.instanceUuid = instance_uuid

    with _ovf_package.OvfPackage(str(ova_path)) as package:  # a local file: no download, no TLS
        spec = _nfc.import_spec(service_instance, package, vm_name, placement, properties or {}, configure)
        return _nfc.import_vm(session, package, spec, vm_name, placement, timeout)
