"""The wheel as a user installs it: on a machine without the checkout, then the collection and provider run.

The "machine" is a test guest: the node image's Python (Ray, no
ray-vsphere), no checkout, no project virtualenv, no package index. The
wheel and the dependency wheels the image lacks are copied in and installed
with pip, from /, with an empty HOME; everything then runs by FQCN from the
installed copy, against vcsim on the guests' gateway.
"""

import re
import shlex
import subprocess
import zipfile

import pytest
import yaml

from testbed import PROJECT_ROOT, image, simulator, vsphere
from testbed.appliance import build_test_ova
from testbed.guests import SSH_OPTIONS, make_key_pair, ssh, vcsim_with_guests
from testbed.ova_import import import_ova

pytestmark = pytest.mark.slow

MODULES = sorted(path.stem for path in (PROJECT_ROOT / "plugins" / "modules").glob("*.py"))
PLAYBOOK_FILES = {".".join(path.relative_to(PROJECT_ROOT / "playbooks").with_suffix("").parts): path
                  for path in (PROJECT_ROOT / "playbooks").rglob("*.yml") if "vars" not in path.parts}
# The operator's administration playbooks use collections of the `ansible` package (the wheel's `operator`
# extra), which `pip install ray-vsphere` does not install: every other playbook runs on ansible-core alone.
OPERATOR_COLLECTIONS = ("community.vmware.", "vmware.vmware.")
OPERATOR_PLAYBOOKS = sorted(name for name, path in PLAYBOOK_FILES.items()
                            if any(prefix in path.read_text() for prefix in OPERATOR_COLLECTIONS))
PLAYBOOKS = sorted(set(PLAYBOOK_FILES) - set(OPERATOR_PLAYBOOKS))


def round_trip_play(ovf, public_key, key_file):
    """node_deploy, node_info and node_delete by FQCN, checking each other's results (with the cluster's key)."""
    keyed = {f"ray_vsphere.cluster.{module}": {"cluster_key_file": key_file}
             for module in ("node_deploy", "node_info", "node_delete")}
    return [{"name": "Round trip", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "module_defaults": keyed, "tasks": [
        {"name": "Deploy", "register": "deployed", "ray_vsphere.cluster.node_deploy": {
            "cluster_name": "wheel", "request_id": "rt", "count": 2, "ovf": ovf,
            "datacenter": simulator.DATACENTER, "cluster": simulator.CLUSTERS[0], "datastore": simulator.DATASTORES[0],
            "vm_folder": simulator.VM_FOLDER, "network": simulator.NETWORK, "ovf_properties": {"public-keys": public_key},
            "wait_for_ip": True, "ip_timeout": 60}},
        {"name": "List", "register": "listed", "ray_vsphere.cluster.node_info": {"cluster_name": "wheel"}},
        {"name": "Delete", "register": "deleted", "ray_vsphere.cluster.node_delete": {"cluster_name": "wheel",
                                                                                       "all_nodes": True}},
        {"name": "List again", "register": "after", "ray_vsphere.cluster.node_info": {"cluster_name": "wheel"}},
        {"name": "Report", "ansible.builtin.debug": {"msg": "ROUND TRIP {{ {'deployed': deployed.nodes | "
                                                            "map(attribute='uuid') | sort, 'listed': listed.nodes | "
                                                            "map(attribute='uuid') | sort, 'ips': listed.nodes | "
                                                            "map(attribute='ip') | list, 'deleted': deleted.deleted | "
                                                            "length, 'after': after.nodes | length} | to_json }}"}},
    ]}]


def test_the_wheel_installs_without_the_checkout_and_its_collection_and_provider_work(
        testbed_prerequisites, tmp_path):
    wheels = image.head_wheels()
    (product,) = wheels.glob(image.PRODUCT_WHEEL_GLOB)
    contents = zipfile.ZipFile(product).namelist()
    assert "ansible_collections/ray_vsphere/cluster/MANIFEST.json" in contents
    assert "ansible_collections/ray_vsphere/cluster/playbooks/provider/create_nodes.yml" in contents
    assert not [name for name in contents if name.startswith(("testbed/", "tests/"))], "the testbed is not the product"
    assert not list(wheels.glob("ansible-[0-9]*.whl")), "the head's wheel folder carries the ansible package"
    assert list(wheels.glob("ansible_core-*.whl")) and OPERATOR_PLAYBOOKS and PLAYBOOKS

    key = make_key_pair(tmp_path / "key")
    public_key = key.with_suffix(".pub").read_text().strip()
    ova = build_test_ova()
    (tmp_path / "round_trip.yml").write_text(yaml.safe_dump(round_trip_play(f"/home/ubuntu/{ova.name}", public_key,
                                                                            f"/home/ubuntu/{key.name}"),
                                                            sort_keys=False))
    with vcsim_with_guests() as (sim, guests):
        service_instance = sim.endpoint.connect()
        machine = import_ova(service_instance, ova, "users-machine", **simulator.default_placement(service_instance),
                             properties={"public-keys": public_key, "instance-id": "users-machine"})
        vsphere.wait_for_task(service_instance, machine.PowerOnVM_Task())
        address = guests.wait_for_guest(machine._moId).address
        copied = subprocess.run(["scp", "-q", "-r", "-i", str(key), *SSH_OPTIONS, str(wheels), str(ova),
                                 str(tmp_path / "round_trip.yml"), str(sim.endpoint.ca_path), str(key), f"ubuntu@{address}:"],
                                capture_output=True, text=True, timeout=120)
        assert copied.returncode == 0, copied.stderr
        # The user's machine trusts vCenter's CA from its own copy.
        environment = dict(sim.endpoint.environment(), VMWARE_CA_PATH=f"/home/ubuntu/{sim.endpoint.ca_path.name}")
        credentials = " ".join(f"{name}={shlex.quote(value)}" for name, value in environment.items())
        script = f"""
            set -e
            cd / && export HOME="$(mktemp -d)" ANSIBLE_NOCOLOR=1
            ! python -c 'import ray_provider' 2>/dev/null
            sudo env "PATH=$PATH" pip install --quiet --no-index --find-links /home/ubuntu/{wheels.name} ray-vsphere
            python -c 'import ray_provider.node_provider as provider; print("PROVIDER", provider.__file__)'
            ansible-galaxy collection list ray_vsphere.cluster 2>/dev/null | grep -E '^# |^ray_vsphere'
            for module in {' '.join(MODULES)}; do ansible-doc ray_vsphere.cluster.$module | head -n 1; done
            for playbook in {' '.join(PLAYBOOKS)}; do
                ansible-playbook --syntax-check ray_vsphere.cluster.$playbook 2>&1 | grep '^playbook:'
            done
            if pip show --quiet ansible 2>/dev/null; then echo "the ansible package came with ray-vsphere"; exit 1; fi
            for playbook in {' '.join(OPERATOR_PLAYBOOKS)}; do
                if ansible-playbook --syntax-check ray_vsphere.cluster.$playbook >"$HOME/operator.out" 2>&1; then
                    exit 1
                fi
                grep -o "couldn't resolve module/action '[a-z._]*'" "$HOME/operator.out" | sed "s/^/OPERATOR $playbook /"
            done
            env {credentials} ansible-playbook /home/ubuntu/round_trip.yml
        """
        result = ssh(address, key, script, timeout=600)
        vsphere.disconnect(service_instance)
    output = result.stdout
    assert result.returncode == 0, output[-4000:] + result.stderr[-4000:]
    site_packages = "/opt/ray/lib/python3.11/site-packages"
    assert f"PROVIDER {site_packages}/ray_provider/node_provider.py" in output
    assert f"# {site_packages}/ansible_collections" in output
    for module in MODULES:
        assert f"ray_vsphere.cluster.{module}" in output and f"{site_packages}/ansible_collections/ray_vsphere" in output
    assert output.count("playbook: /opt/ray/lib/python3.11/site-packages/ansible_collections/ray_vsphere/cluster/"
                        "playbooks/") == len(PLAYBOOKS)
    for playbook in OPERATOR_PLAYBOOKS:
        assert re.search(rf"OPERATOR {playbook} couldn't resolve module/action '(community|vmware)\.vmware\.", output), \
            f"{playbook} ran without the operator extra, or failed otherwise"
    round_trip = yaml.safe_load(output.split("ROUND TRIP ", 1)[1].splitlines()[0].rstrip('"').replace('\\"', '"'))
    assert len(round_trip["deployed"]) == 2 and round_trip["listed"] == round_trip["deployed"]
    assert all(ip.startswith("198.18.") for ip in round_trip["ips"])
    assert round_trip["deleted"] == 2 and round_trip["after"] == 0
