"""What deploy, set tags and delete cost as vCenter grows: 5,000 other VMs next to 100, each VM as heavy as a real one.

    .venv/bin/python benchmarks/write_paths.py [--sizes 100,5000] [--repeat 15] [--extra-config 57]

Every other VM (vcsim's -vm, outside the Ray folder) carries a real VM's
extraConfig: --extra-config keys, about 6 KiB at the default 57, hardware
keys and cloud-init's base64 guestinfo among them (testbed/vcsim/extra_config.go
says where each comes from). The Ray folder holds a cluster of --nodes
nodes made by node_deploy, cloned from its template.

One round, in each vCenter in turn (they run side by side, so load from
elsewhere on the machine falls on every size alike), runs the collection's
own code in process (no Ansible start-up), as the playbooks and the provider
call it:
- deploy: node_deploy of one more worker (clone of the template, powered on);
- set tags: node_tags of one node, as the provider's tag writer does;
- delete: node_delete of the worker the round deployed, by instance UUID;
tags and delete given the cluster's datacenter and VM folder, as the
provider and the playbooks give them, and looking them up on each call.
Median wall time of --repeat rounds. Goal: largest / smallest size <= 1.3 for each.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pyVmomi import vim

from testbed import simulator, vsphere  # puts the checkout's collections on sys.path
from testbed.appliance import build_test_ova
from testbed.guests import make_key_pair

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import (  # noqa: E402
    _build, _node_changes, _nodes, _ray_auth, _vsphere)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import (  # noqa: E402
    VcenterClient, argument_spec)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import DEPLOY_OPTIONS  # noqa: E402

CLUSTER = "bench"
POOLS = 2  # vcsim's -vm makes that many VMs in each cluster's child resource pool
PLACEMENT = dict(datacenter=simulator.DATACENTER, cluster=simulator.CLUSTERS[0], resource_pool=simulator.RESOURCE_POOL,
                 vm_folder=simulator.VM_FOLDER, datastore=simulator.DATASTORES[0], network=simulator.NETWORK)
GOAL = 1.3


class Site:
    """One vcsim of `size` other VMs, its logged-in client and the Ray cluster in its folder."""

    def __init__(self, size, extra_config, key_path, ova, nodes):
        started = time.monotonic()
        self.sim = simulator.Vcsim(vms_per_pool=size // POOLS, vm_extra_config=extra_config, start_timeout=1800)
        endpoint = self.sim.start()
        self.client = VcenterClient(endpoint.host, endpoint.username, endpoint.password, port=endpoint.port,
                                    ca_path=str(endpoint.ca_path)).__enter__()
        self.service_instance = self.client.service_instance
        self.key_path, self.ova = key_path, ova
        self.cluster_key = _ray_auth.ClusterKey(Path(key_path).read_text(), CLUSTER)
        self.other_vms = len(_nodes.Inventory(self.service_instance, None, ["name"]).vms)
        result = self.deploy([f"{CLUSTER}-worker-{index}" for index in range(nodes)])  # imports the template
        self.tagged = result["nodes"][0]["uuid"]
        self.heaviest = self._extra_config_bytes()
        self.up_seconds = time.monotonic() - started

    def _extra_config_bytes(self):
        """Bytes of extraConfig keys and values of one other VM, as vcsim serves it."""
        vm = vsphere.find_by_name(self.service_instance, vim.VirtualMachine, "DC0_C0_RP1_VM0")
        options = _vsphere.read(self.service_instance, vm, ["config.extraConfig"])["config.extraConfig"]
        return len(options), sum(len(option.key) + len(str(option.value)) for option in options)

    def params(self, names):
        params = dict((name, spec.get("default")) for name, spec in argument_spec(**DEPLOY_OPTIONS).items())
        params.update(PLACEMENT, cluster_name=CLUSTER, cluster_key_file=str(self.key_path), ovf=str(self.ova),
                      names=names, node_kind="worker", wait_for_ip=False)
        return params

    def deploy(self, names):
        result = _build.deploy(self.client, self.params(names), False, self.cluster_key)
        assert result["created"] == names, result
        return result

    def roots(self):
        """The folders node_tags and node_delete read, looked up as they look them up, on every call."""
        return _nodes.folder_roots(self.service_instance, dict(datacenter=simulator.DATACENTER,
                                                               vm_folders=[simulator.VM_FOLDER]))

    def set_tags(self, value):
        before, after = _node_changes.set_node_tags(self.service_instance, self.cluster_key, [
            {"uuid": self.tagged, "tags": {"ray-node-status": value}}], 8, False, roots=self.roots())
        assert list(after.values()) and list(after.values())[0]["ray-node-status"] == value, after

    def delete(self, uuid):
        deleted, absent, _ = _node_changes.delete_nodes(self.service_instance, self.cluster_key, [uuid], [], 8, False,
                                                        roots=self.roots())
        assert len(deleted) == 1 and not absent, (deleted, absent)

    def stop(self):
        try:
            self.client.__exit__(None, None, None)
        finally:
            self.sim.stop()


def measure(sites, repeat):
    """{size: {step: [seconds]}}, the sites measured in turn, round after round."""
    times = dict((size, {"deploy": [], "set tags": [], "delete": []}) for size in sites)
    for round_number in range(repeat):
        # Each round in the other order: a size measured first is not always the one after a pause.
        for size, site in sorted(sites.items(), reverse=bool(round_number % 2)):
            name = f"{CLUSTER}-worker-r{round_number}"
            started = time.perf_counter()
            result = site.deploy([name])
            times[size]["deploy"].append(time.perf_counter() - started)
            started = time.perf_counter()
            site.set_tags(f"round-{round_number}")
            times[size]["set tags"].append(time.perf_counter() - started)
            started = time.perf_counter()
            site.delete(result["nodes"][0]["uuid"])
            times[size]["delete"].append(time.perf_counter() - started)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,5000")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--extra-config", type=int, default=57)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if min(sizes) < POOLS:
        sys.exit("--sizes: at least one VM per resource pool")
    work_dir = Path(tempfile.mkdtemp(prefix="write-paths-"))
    os.environ["XDG_CACHE_HOME"] = str(work_dir)  # the OVA's hash cache, fresh
    key_path = make_key_pair(work_dir / "ray-key")
    ova = build_test_ova()
    sites = {}
    try:
        for size in sizes:
            sites[size] = Site(size, args.extra_config, key_path, ova, args.nodes)
        print(f"deploy, set tags and delete in a Ray folder of {args.nodes} nodes, the collection's code in process "
              f"(median of {args.repeat} rounds)")
        for size, site in sites.items():
            keys, size_bytes = site.heaviest
            print(f"  vCenter with {site.other_vms:5} other VMs, {keys} extraConfig keys ({size_bytes:,} bytes) each "
                  f"(vcsim up and the cluster deployed in {site.up_seconds:5.1f} s)")
        times = measure(sites, args.repeat)
    finally:
        for site in sites.values():
            site.stop()
    medians = dict((size, dict((step, statistics.median(values) * 1000) for step, values in steps.items()))
                   for size, steps in times.items())
    for size in sizes:
        print(f"  {size:5} other VMs: " + ", ".join(f"{step} {ms:6.1f} ms" for step, ms in medians[size].items()))
    low, high = min(sizes), max(sizes)
    ratios = dict((step, medians[high][step] / medians[low][step]) for step in medians[low])
    print(f"  {high:,} / {low:,} other VMs: " + ", ".join(f"{step} {ratio:.2f}" for step, ratio in ratios.items())
          + f" (goal <= {GOAL})")
    return 0 if all(ratio <= GOAL for ratio in ratios.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
