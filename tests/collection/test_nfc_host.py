"""NFC uploads go to the ESXi host the lease names, with that host's certificate, as on a vCenter.

vcsim serves the upload under a host name of its own with a certificate of a
second, VMCA-like CA (testbed/vcsim/nfc_host.go): VMware's hybrid certificate
mode, where vCenter's certificate comes from the company's CA and the ESXi
hosts' from VMCA. Every failure of the upload (a CA file without VMCA's root,
a host name that does not resolve, a refused connection, a connection reset
half-way) is a module error that names the upload and the host, never a
traceback, and leaves no VM behind: VMs are counted at vcsim.
"""

import re
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import deploy_task
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ovf_package, _waiter
from ray_provider.runner import task_results
from testbed import simulator, vsphere
from testbed.appliance import build_test_ova
from testbed.ray_cluster import run_tasks

DISK = "ray-test-appliance-disk1.vmdk"
UNRESOLVABLE = "esx-01.ray-vsphere.invalid"  # RFC 6761: .invalid never resolves


def vm_names(endpoint):
    service_instance = endpoint.connect()
    try:
        return sorted(p["name"] for p in vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name"]).values())
    finally:
        vsphere.disconnect(service_instance)


def deploy(endpoint, run_dir, ova, cluster_key_file, env=None, **options):
    """node_deploy in a playbook run against endpoint: (its result, the run's stdout)."""
    task = deploy_task("nfc", ova, cluster_key_file=str(cluster_key_file), **options)
    runner = run_tasks([task], run_dir, dict(endpoint.environment(), **(env or {})))
    results = task_results(runner)
    assert results, runner.stdout.read()
    return results[-1], runner.stdout.read()


def assert_module_error(result, stdout, *parts):
    """A module's own error (fail_json), not a crash: no MODULE FAILURE, no Python traceback anywhere."""
    assert result.get("failed") is True, result
    assert "module_stderr" not in result and not result["msg"].startswith("MODULE FAILURE"), result
    assert "Traceback" not in str(result) and "Traceback" not in stdout, result
    for part in parts:
        assert part in result["msg"], (part, result["msg"])


def test_the_lease_names_the_esxi_host_and_vcenter_serves_no_disk(vcsim, service_instance, test_ova):
    """The testbed's oracle: the URL is not vCenter's, its certificate is not of vCenter's CA."""
    endpoint = vcsim.endpoint
    assert endpoint.esxi_host not in (endpoint.host, "localhost", "127.0.0.1")
    assert simulator.loopback_addresses(endpoint.esxi_host), "the ESXi host must be served on loopback only"
    placement = simulator.default_placement(service_instance)
    with _ovf_package.OvfPackage(str(test_ova)) as package:
        spec = service_instance.content.ovfManager.CreateImportSpec(
            package.descriptor, placement["resource_pool"], placement["datastore"],
            vim.OvfManager.CreateImportSpecParams(entityName="lease-probe", diskProvisioning="thin"))
    lease = placement["resource_pool"].ImportVApp(spec.importSpec, placement["folder"])
    try:
        info = _waiter.wait_for_lease(service_instance, lease, "lease-probe", 30)
        [device] = [device for device in info.deviceUrl if device.importKey]
        url = urlsplit(device.url)
        assert url.hostname == endpoint.esxi_host and url.port != endpoint.port
        # The ESXi host's certificate is the VMCA-like CA's: vCenter's CA alone does not verify it.
        with pytest.raises(urllib.error.URLError, match="certificate verify failed: unable to get local issuer"):
            urllib.request.urlopen(device.url, context=ssl.create_default_context(cafile=endpoint.vcenter_ca_path))
        # The bundle of both CAs verifies it, under the name the lease gives.
        with urllib.request.urlopen(urllib.request.Request(device.url, data=b"", method="PUT"),
                                    context=ssl.create_default_context(cafile=endpoint.ca_path)) as answer:
            assert answer.status == 200
        # vCenter's own address does not serve the disk.
        on_vcenter = url._replace(netloc=f"{endpoint.host}:{endpoint.port}").geturl()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(urllib.request.Request(on_vcenter, data=b"x", method="PUT"),
                                   context=ssl.create_default_context(cafile=endpoint.ca_path))
    finally:
        lease.HttpNfcLeaseAbort()  # leaves the VM, as on vCenter (govmomi #3554)
        probe = vsphere.find_by_name(service_instance, vim.VirtualMachine, "lease-probe")
        vsphere.wait_for_task(service_instance, probe.Destroy_Task())


def test_a_ca_file_of_vcenters_ca_alone_fails_the_import_naming_the_esxi_host_and_the_fix(
        vcsim, test_ova, cluster_key_file, tmp_path):
    endpoint = vcsim.endpoint
    before = vm_names(endpoint)
    result, stdout = deploy(endpoint, tmp_path / "run", test_ova, cluster_key_file, names=["nfc-vcenter-ca-only"],
                            env={"VMWARE_CA_PATH": str(endpoint.vcenter_ca_path)})
    assert_module_error(
        result, stdout,
        f"of {DISK} for VM ray-template-",  # the template's import: the default path
        f"to ESXi host {endpoint.esxi_host}:",
        f"its certificate is not signed by a CA in ca_path {endpoint.vcenter_ca_path} "
        "(unable to get local issuer certificate), though vCenter's was.",
        "put both CA certificates in one PEM file",
        "give it as ca_path (VMWARE_CA_PATH)",
        "removed the VMs this call created: ray-template-")
    assert result["msg"].startswith("NFC upload (HTTP "), result["msg"]
    assert vm_names(endpoint) == before


def test_a_bundle_of_both_cas_imports(vcsim, test_ova, cluster_key_file, tmp_path):
    endpoint = vcsim.endpoint
    bundled = Path(endpoint.ca_path).read_text()
    assert bundled.count("BEGIN CERTIFICATE") == 2 and Path(endpoint.vcenter_ca_path).read_text() in bundled
    before = vm_names(endpoint)
    result, _ = deploy(endpoint, tmp_path / "run", test_ova, cluster_key_file, names=["nfc-bundle"],
                       clone_from_template=False)
    assert not result.get("failed"), result
    assert result["created"] == ["nfc-bundle"]
    assert vm_names(endpoint) == sorted(before + ["nfc-bundle"])


@pytest.mark.parametrize("vcsim_options, clone_from_template, expected", [
    (dict(esxi_host_name=UNRESOLVABLE), True,
     [f"to ESXi host {UNRESOLVABLE}:", f"the ESXi host name '{UNRESOLVABLE}' does not resolve on this machine",
      "must resolve and reach (HTTPS, port"]),
    (dict(nfc_fault="refuse"), False,
     ["to ESXi host {esxi}:", "refused the connection ([Errno 111] Connection refused)",
      "must reach the ESXi hosts vCenter names on port"]),
    (dict(nfc_fault="reset"), False,
     ["to ESXi host {esxi}:", "the connection to ESXi host {esxi}:", " broke after "]),
], ids=["unresolvable", "refused", "reset-half-way"])
def test_an_esxi_host_that_cannot_be_reached_or_drops_the_upload_is_a_module_error_and_leaves_no_vm(
        testbed_prerequisites, cluster_key_file, tmp_path, vcsim_options, clone_from_template, expected):
    # Big enough that the reset comes while the disk is still being sent, not after it was buffered.
    ova = build_test_ova(payload_mib=16) if vcsim_options.get("nfc_fault") == "reset" else build_test_ova()
    with simulator.Vcsim(**vcsim_options) as sim:
        endpoint = sim.endpoint
        before = vm_names(endpoint)
        result, stdout = deploy(endpoint, tmp_path / "run", ova, cluster_key_file, names=["nfc-unreachable"],
                                clone_from_template=clone_from_template)
        assert_module_error(result, stdout, "NFC upload (HTTP ", f"of {DISK} for VM ",
                            "removed the VMs this call created: ",
                            *(part.format(esxi=endpoint.esxi_host) for part in expected))
        if vcsim_options.get("nfc_fault") == "reset":  # while the disk was still going out
            sent, size = re.search(r" broke after (\d+) of (\d+) bytes", result["msg"]).groups()
            assert 0 < int(sent) < int(size)
        assert vm_names(endpoint) == before
