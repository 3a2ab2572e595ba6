"""What node_deploy gives a node of an ip_pool, read by Debian's cloud-init: both datasources, one network state.

The network config goes to the guest two ways (_ip_pool.delivery): guestinfo.metadata's `network`, which
cloud-init's VMware datasource reads (process_metadata), and the OVF property `network-config`, which its OVF
datasource reads from the OVF environment (read_ovf_environment). Each is parsed by cloud-init's own code
(network_state.parse_net_config_data) and rendered with the ENI renderer Debian's image uses. cloud-init is Debian's
package, imported by Debian's /usr/bin/python3 in a subprocess, as tests/testbed/test_cloud_init_documents.py does.
"""

import base64
import json
import subprocess
from xml.sax.saxutils import quoteattr

import pytest
from deploy_request_tools import request
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ip_pool, _records

RENDER_WITH_CLOUD_INIT = """
import json, sys
from cloudinit.net import eni, network_state
from cloudinit.sources.DataSourceOVF import read_ovf_environment
from cloudinit.sources.DataSourceVMware import decode, load_json_or_yaml, process_metadata

given = json.load(sys.stdin)
metadata = process_metadata(load_json_or_yaml(decode("metadata", given["encoding"], given["metadata"])))
ovf_metadata, _, _ = read_ovf_environment(given["ovf_environment"], True)
result = {}
for source, config in (("vmware", metadata["network"]["config"]), ("ovf", ovf_metadata["network-config"])):
    state = network_state.parse_net_config_data(config)
    result[source] = {
        "interfaces": [{"name": iface["name"], "mac_address": iface.get("mac_address")}
                       for iface in state.iter_interfaces()],
        "state": json.loads(json.dumps(state.config)),
        "eni": eni.Renderer()._render_interfaces(state),
    }
print(json.dumps(result))
"""

MAC = "00:50:56:8A:1B:2C"


def ovf_environment(properties):
    """An OVF environment (DSP0243) carrying properties, as vCenter presents it in guestinfo.ovfEnv."""
    entries = "\n".join('    <Property oe:key=%s oe:value=%s/>' % (quoteattr(key), quoteattr(value))
                        for key, value in sorted(properties.items()))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" '
            'xmlns:oe="http://schemas.dmtf.org/ovf/environment/1" oe:id="">\n'
            '  <PropertySection>\n%s\n  </PropertySection>\n</Environment>\n' % entries)


def delivered(tmp_path, pool, address):
    """(guestinfo extraConfig, OVF property values) node_deploy writes for node c1-head holding address."""
    deploy = request(tmp_path, ip_pool=dict(dict(dns_servers=[], search_domains=[]), **pool))
    deploy.addresses["c1-head"] = address
    nic = vim.vm.device.VirtualVmxnet3(key=4000, macAddress=MAC)
    declared = [vim.vApp.PropertyInfo(key=key, id=name, value="")
                for key, name in enumerate(("instance-id", "hostname", _ip_pool.OVF_NETWORK_CONFIG))]
    extra, specs = _ip_pool.delivery(deploy, "c1-head", {"config.hardware.device": [nic],
                                                         "config.vAppConfig.property": declared})
    ids = dict((info.key, info.id) for info in declared)
    properties = deploy.ovf_properties(("instance-id", "hostname", _ip_pool.OVF_NETWORK_CONFIG), "c1-head")
    properties.update((ids[spec.info.key], spec.info.value) for spec in specs)
    return extra, properties


def rendered_by_cloud_init(extra, properties):
    given = dict(metadata=extra[_records.GUESTINFO_METADATA], encoding=extra[_records.GUESTINFO_METADATA_ENCODING],
                 ovf_environment=ovf_environment(properties))
    result = subprocess.run(["/usr/bin/python3", "-c", RENDER_WITH_CLOUD_INIT], input=json.dumps(given),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def stanza(eni_text, header):
    """The lines of the ENI stanza that starts with header, stripped."""
    lines = eni_text.splitlines()
    start = lines.index(header)
    body = []
    for line in lines[start + 1:]:
        if not line.startswith((" ", "\t")):
            break
        body.append(line.strip())
    return body


@pytest.mark.parametrize("pool, address, header, lines", [
    (dict(cidr="198.18.5.0/24", range="198.18.5.200-198.18.5.254", gateway="198.18.5.1",
          dns_servers=["198.18.5.53"], search_domains=["lab.example.com"]), "198.18.5.200",
     "iface eth0 inet static",
     ["address 198.18.5.200/24", "dns-nameservers 198.18.5.53", "dns-search lab.example.com", "gateway 198.18.5.1"]),
    (dict(cidr="2001:db8:5::/64", gateway="2001:db8:5::1", dns_servers=["2001:db8:5::53"]), "2001:db8:5::2",
     "iface eth0 inet6 static",
     ["address 2001:db8:5::2/64", "dns-nameservers 2001:db8:5::53", "gateway 2001:db8:5::1"]),
])
def test_both_datasources_give_cloud_init_the_same_static_interface_of_the_nics_mac(tmp_path, pool, address, header,
                                                                                   lines):
    read = rendered_by_cloud_init(*delivered(tmp_path, pool, address))
    assert read["vmware"]["state"] == read["ovf"]["state"], "cloud-init 22.4 reads OVF first, 25.1 VMware: the same"
    assert read["vmware"]["eni"] == read["ovf"]["eni"]
    assert read["vmware"]["interfaces"] == [{"name": "eth0", "mac_address": MAC.lower()}]
    eni_text = read["vmware"]["eni"]
    assert "auto eth0" in eni_text.splitlines()
    rendered = stanza(eni_text, header)
    # Debian 22.4's ENI renderer also writes a v2 subnet's nameservers as a `dns {...}` line (Python's repr):
    # ifupdown passes an option it does not know to its hook scripts as IF_DNS, and nothing reads that.
    assert sorted(line for line in rendered if not line.startswith("dns {")) == sorted(lines), eni_text
    assert len([line for line in rendered if line.startswith("dns {")]) <= 1


def test_a_node_without_a_pool_gets_no_network_config_from_either_source(tmp_path):
    deploy = request(tmp_path)
    extra = deploy.vmware_metadata("c1-head")
    properties = deploy.ovf_properties(("instance-id", "hostname", _ip_pool.OVF_NETWORK_CONFIG), "c1-head")
    assert "network" not in json.loads(base64.b64decode(extra[_records.GUESTINFO_METADATA]))
    assert properties.get(_ip_pool.OVF_NETWORK_CONFIG) is None
