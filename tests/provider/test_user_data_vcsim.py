"""A user's own cloud-init user-data runs on each image style, beside the node's own, on both deploy paths.

One guest per image style, each booting Debian's real cloud-init:
- the Ubuntu-style OVA declares the OVF transport, so cloud-init 22.4 reads
  the OVF environment (the vApp property user-data) and never guestinfo:
  deployed here by node_deploy, as ray_up.yml deploys;
- the Packer-style OVA declares neither properties nor transport, so
  cloud-init reads guestinfo (guestinfo.userdata): deployed here by the Ray
  provider, with the user-data in a node type's node_config.
The oracles are in the guest (the file written, the command run, the users
and host keys it has) and in vcsim's record of the VM, never our own tables.
"""

import json
import subprocess

from testbed import vsphere
from testbed.appliance import build_test_ova
from testbed.guests.ssh import ssh
from testbed.ray_cluster import run_tasks
from ray_provider.runner import task_results

import provider_tools

WORKER = {"ray-node-type": "worker", "ray-user-node-type": "worker"}
PLACEMENT = dict(datacenter="DC0", cluster="DC0_C0", resource_pool="DC0_C0_RP1", vm_folder="ray",
                 datastore="LocalDS_0")

# What the guest shows of the user's data and of the node's own: the file the user wrote, whether the
# user's command ran (and as root), the service user and whether it may sudo, the datasource cloud-init read.
IN_THE_GUEST = ("cat /etc/ray-vsphere-test/mine; cat /var/tmp/mine-ran; id -un ray; "
                "sudo -n -l -U ray | grep -c NOPASSWD || true; "
                "cloud-init status --long | grep -o 'DataSource[A-Za-z]*' | head -1")


def user_data(style):
    """write_files and runcmd of a user's: a file with the style in it, and a command leaving a trace as root."""
    return {"write_files": [{"path": "/etc/ray-vsphere-test/mine", "content": f"written for {style}\n"}],
            "runcmd": ["id -un > /var/tmp/mine-ran"]}


def host_key_recorded(vcsim, uuid):
    recorded, _guestinfo, _vapp = vsphere.host_key_records(vcsim.endpoint, uuid)
    return " ".join(recorded.split()[:2])


def seen_in_the_guest(ip, key):
    """IN_THE_GUEST's lines, then every host key the guest's sshd offers (ssh-keyscan, from outside)."""
    result = ssh(ip, key, IN_THE_GUEST)
    assert result.returncode == 0, result.stderr
    offered = subprocess.run(["ssh-keyscan", "-T", "10", ip], capture_output=True, text=True, timeout=60)
    assert offered.returncode == 0, offered.stderr
    return result.stdout.splitlines() + sorted(line.split(" ", 1)[1] for line in offered.stdout.splitlines()
                                               if line and not line.startswith("#"))


def test_node_deploy_sends_user_data_an_ovf_transport_image_reads_from_the_ovf_environment(
        vcsim, guest_simulator, test_ova, ssh_key_pair, tmp_path):
    key, public_key = ssh_key_pair("user-data-ovf")
    deploy = {"name": "Deploy", "ray_vsphere.cluster.node_deploy": dict(
        PLACEMENT, cluster_name="mine", cluster_key_file=str(key), ovf=str(test_ova), names=["mine-ovf"],
        ssh_public_keys=[public_key], ssh_host_key=True, service_users=["ray"], user_data=user_data("ovf"),
        wait_for_ip=True, ip_timeout=120)}
    result = task_results(run_tasks([deploy], tmp_path / "run", vcsim.endpoint.environment()))[-1]
    assert not result["failed"], json.dumps(result)[:2000]
    (node,) = result["nodes"]
    assert seen_in_the_guest(node["ip"], key) == [
        "written for ovf", "root", "ray", "0", "DataSourceOVF", host_key_recorded(vcsim, node["uuid"])]


def test_the_provider_sends_node_config_user_data_a_guestinfo_image_reads_from_guestinfo(
        vcsim, guest_simulator, tmp_path, monkeypatch):
    packer_ova = build_test_ova(style="packer")
    text = "#cloud-config\n" + json.dumps(user_data("guestinfo"))
    provider = provider_tools.make_provider(vcsim, packer_ova, tmp_path, monkeypatch, "theirs", ip_timeout=120)
    [node_id] = provider.create_node({"user_data": text}, WORKER, 1)
    assert seen_in_the_guest(provider.internal_ip(node_id), provider.private_key_path()) == [
        "written for guestinfo", "root", "ray", "0", "DataSourceVMware", host_key_recorded(vcsim, node_id)]
