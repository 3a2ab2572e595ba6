"""What node_deploy injects and the guests present, parsed by cloud-init's own datasource code.

cloud-init is Debian's package (what the guests boot with), imported by
Debian's /usr/bin/python3 in a subprocess: its modules and their
dependencies live in dist-packages, not in the project's virtualenv.
"""

import json
import subprocess

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy import DeployRequest
from testbed.appliance import CLOUD_INIT_PROPERTIES
from testbed.guest_boot import ovf_environment, presented_guestinfo

PARSE_WITH_CLOUD_INIT = """
import json, sys
from cloudinit import sources
from cloudinit.sources.DataSourceOVF import read_ovf_environment
from cloudinit.sources.DataSourceVMware import decode, load_json_or_yaml

guestinfo = json.load(sys.stdin)
ovf_metadata, _, _ = read_ovf_environment(guestinfo["guestinfo.ovfEnv"])
vmware_metadata = load_json_or_yaml(decode("metadata", guestinfo["guestinfo.metadata.encoding"],
                                           guestinfo["guestinfo.metadata"]))
print(json.dumps({
    "ovf": {"instance-id": ovf_metadata["instance-id"], "hostname": ovf_metadata["local-hostname"],
            "keys": sources.normalize_pubkey_data(ovf_metadata["public-keys"])},
    "vmware": {"instance-id": vmware_metadata["instance-id"], "hostname": vmware_metadata["local-hostname"],
               "keys": sources.normalize_pubkey_data(vmware_metadata["public-keys-data"])},
}))
"""

KEYS = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFirstKeyOfTheCluster ray-vsphere analytics",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAISecondKeyOfAnOperator operator@example.com"]


def deploy_request(**params):
    return DeployRequest(dict(dict(cluster_name="analytics", node_kind="worker", node_type=None, names=None, count=2,
                                   request_id="r1", tags={}, ovf_properties={}, guestinfo={}, ssh_public_keys=KEYS),
                              **params))


def what_the_guest_reads(request, name):
    """The guestinfo a VM deployed by `request` shows its guest, as vCenter and the testbed present it."""
    properties = request.ovf_properties(CLOUD_INIT_PROPERTIES, name)
    extra_config = {**request.vmware_metadata(name), **request.guestinfo}
    return presented_guestinfo("vm-42", properties, extra_config)


def parsed_by_cloud_init(guestinfo):
    result = subprocess.run(["/usr/bin/python3", "-c", PARSE_WITH_CLOUD_INIT], input=json.dumps(guestinfo),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_ovf_environment_and_the_vmware_metadata_say_the_same_to_cloud_init():
    request = deploy_request()
    name = request.names[0]
    parsed = parsed_by_cloud_init(what_the_guest_reads(request, name))
    expected = {"instance-id": request.instance_uuids[name], "hostname": name, "keys": KEYS}
    assert parsed["ovf"] == expected
    assert parsed["vmware"] == expected, "cloud-init 25.1+ reads VMware first: it must make the same node"


def test_every_clone_gets_its_own_instance_id():
    request = deploy_request()
    first, second = (parsed_by_cloud_init(what_the_guest_reads(request, name)) for name in request.names)
    assert first["ovf"]["instance-id"] != second["ovf"]["instance-id"]
    assert first["vmware"]["instance-id"] != second["vmware"]["instance-id"]
    assert deploy_request().instance_uuids != request.instance_uuids, "a new request, new instances"


def test_property_values_with_xml_specials_survive_the_ovf_environment():
    """DSP0243 puts values in attributes: quotes, ampersands and newlines must come back as given."""
    tricky = "ssh-ed25519 AAAA \"quoted\" & <angled> 'single'"
    document = ovf_environment("vm-7", {"instance-id": "i-1", "hostname": "h", "public-keys": tricky})
    parsed = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; from cloudinit.sources.DataSourceOVF import get_properties; "
                                   "print(get_properties(sys.stdin.read())['public-keys'])"],
        input=document, capture_output=True, text=True, timeout=60)
    assert parsed.returncode == 0, parsed.stderr
    assert parsed.stdout.rstrip("\n") == tricky
