"""What node_deploy injects and vCenter presents, parsed by cloud-init's own datasource code.

The OVF environment is the one vcsim writes into guestinfo.ovfEnv at
power-on, as vCenter does (testbed/vcsim/ovfenv.go). cloud-init is Debian's
package (what the guests boot with), imported by Debian's /usr/bin/python3 in
a subprocess: its modules and their dependencies live in dist-packages, not
in the project's virtualenv.
"""

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import DeployRequest
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ClusterKey
from testbed import simulator, vsphere
from testbed.appliance import CLOUD_INIT_PROPERTIES
from testbed.guests import make_key_pair
from testbed.guests.boot import presented_guestinfo
from testbed.ova_import import import_ova

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
    # The identity the key makes goes to vCenter, not to cloud-init: a key made here, for this request only.
    with tempfile.TemporaryDirectory(prefix="cloud-init-documents-") as folder:
        cluster_key = ClusterKey(make_key_pair(Path(folder) / "key").read_text(), "analytics")
    return DeployRequest(dict(dict(cluster_name="analytics", node_kind="worker", node_type=None, names=None, count=2,
                                   request_id="r1", tags={}, ovf_properties={}, guestinfo={}, ssh_public_keys=KEYS,
                                   clone_from_template=True),
                              **params), cluster_key)


@pytest.fixture
def what_the_guest_reads(service_instance, test_ova):
    """The guestinfo of a powered-on VM made with `properties` and `extra_config`, as its guest reads it."""
    made = []

    def read(properties, extra_config):
        vm = import_ova(service_instance, test_ova, f"cloud-init-documents-{len(made)}",
                        **simulator.default_placement(service_instance),
                        properties=properties, extra_config=extra_config)
        made.append(vm)
        vsphere.wait_for_task(service_instance, vm.PowerOnVM_Task())
        extra = vsphere.read_properties(service_instance, vm, ["config.extraConfig"])["config.extraConfig"]
        return presented_guestinfo({option.key: option.value for option in extra})

    yield read
    for vm in made:
        vsphere.wait_for_task(service_instance, vm.PowerOffVM_Task())
        vsphere.wait_for_task(service_instance, vm.Destroy_Task())


@pytest.fixture
def what_a_node_reads(what_the_guest_reads):
    """The guestinfo a VM deployed by `request` as `name` shows its guest."""
    def read(request, name):
        return what_the_guest_reads(request.ovf_properties(CLOUD_INIT_PROPERTIES, name),
                                    {**request.vmware_metadata(name), **request.guestinfo})
    return read


def parsed_by_cloud_init(guestinfo):
    result = subprocess.run(["/usr/bin/python3", "-c", PARSE_WITH_CLOUD_INIT], input=json.dumps(guestinfo),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_ovf_environment_and_the_vmware_metadata_say_the_same_to_cloud_init(what_a_node_reads):
    request = deploy_request()
    name = request.names[0]
    parsed = parsed_by_cloud_init(what_a_node_reads(request, name))
    expected = {"instance-id": request.instance_uuids[name], "hostname": name, "keys": KEYS}
    assert parsed["ovf"] == expected
    assert parsed["vmware"] == expected, "cloud-init 25.1+ reads VMware first: it must make the same node"


def test_every_clone_gets_its_own_instance_id(what_a_node_reads):
    request = deploy_request()
    first, second = (parsed_by_cloud_init(what_a_node_reads(request, name)) for name in request.names)
    assert first["ovf"]["instance-id"] != second["ovf"]["instance-id"]
    assert first["vmware"]["instance-id"] != second["vmware"]["instance-id"]
    assert deploy_request().instance_uuids != request.instance_uuids, "a new request, new instances"


def test_property_values_with_xml_specials_survive_the_ovf_environment(what_the_guest_reads):
    """DSP0243 puts values in attributes: quotes, ampersands and newlines must come back as given."""
    tricky = "ssh-ed25519 AAAA \"quoted\" & <angled> 'single'\nssh-ed25519 BBBB second"
    document = what_the_guest_reads({"instance-id": "i-1", "hostname": "h", "public-keys": tricky}, {})[
        "guestinfo.ovfEnv"]
    parsed = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; from cloudinit.sources.DataSourceOVF import get_properties; "
                                   "print(get_properties(sys.stdin.read())['public-keys'])"],
        input=document, capture_output=True, text=True, timeout=60)
    assert parsed.returncode == 0, parsed.stderr
    assert parsed.stdout.rstrip("\n") == tricky


USER_DATA_AS_CLOUD_INIT_READS_IT = """
import json, sys, tempfile
from cloudinit import helpers, user_data
from cloudinit.sources.DataSourceOVF import read_ovf_environment
from cloudinit.sources.DataSourceVMware import decode

guestinfo = json.load(sys.stdin)
_, from_ovf, _ = read_ovf_environment(guestinfo["guestinfo.ovfEnv"])
from_vmware = decode("userdata", guestinfo["guestinfo.userdata.encoding"], guestinfo["guestinfo.userdata"])
with tempfile.TemporaryDirectory() as folder:
    parts = [[part.get_content_type(), part.get_payload(decode=True).decode()]
             for part in user_data.UserDataProcessor(helpers.Paths({"cloud_dir": folder})).process(from_ovf).walk()
             if part.get_content_maintype() != "multipart"]
text = lambda data: data.decode() if isinstance(data, bytes) else data
print(json.dumps({"ovf": text(from_ovf), "vmware": text(from_vmware), "parts": parts}))
"""


def test_a_users_user_data_reaches_both_datasources_the_same_merged_with_the_nodes_own(what_the_guest_reads):
    """What node_deploy writes (its create call's extraConfig, its OVF properties), as each datasource decodes it."""
    request = deploy_request(ssh_host_key=True, service_users=["ray"], user_data="#!/bin/sh\necho mine\n")
    name = request.names[0]
    request.placed("group-v3", "vcenter-uuid")
    spec = vim.vm.ConfigSpec()
    request.configure(spec, name)
    guestinfo = what_the_guest_reads(request.ovf_properties(CLOUD_INIT_PROPERTIES, name),
                                     {option.key: option.value for option in spec.extraConfig})
    result = subprocess.run(["/usr/bin/python3", "-c", USER_DATA_AS_CLOUD_INIT_READS_IT], input=json.dumps(guestinfo),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    read = json.loads(result.stdout)
    assert read["ovf"] == read["vmware"], "cloud-init 22.4 reads the OVF copy, 25.1 the guestinfo one: the same"
    (script, own) = read["parts"]
    assert script == ["text/x-shellscript", "#!/bin/sh\necho mine\n"], "the user's script, as given"
    assert own[0] == "text/cloud-config", "then the node's own"
    assert json.loads(own[1].split("\n", 1)[1])["ssh_keys"]["ed25519_private"] == request.host_keys[name][0]
