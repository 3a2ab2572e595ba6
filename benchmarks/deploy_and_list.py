"""Deploy and list speed of the collection's modules, measured side by side in one run.

    .venv/bin/python benchmarks/deploy_and_list.py [--nodes 10] [--vms 1000]

Deploy: `node_deploy` through ansible-playbook (ansible-runner), each variant
in a fresh vcsim whose task delays stand in for a real vCenter (DELAYS
below), from an OVA whose disk carries --payload-mib of incompressible data
that really goes over NFC (TLS on loopback) for every import. Clone fast path
vs import per node, each in parallel vs one after another (parallel=1).
"first deploy" includes importing the template; "template there" is every
later deploy of the same OVF, such as each autoscaler scale-up.

List: one cluster of 20 nodes in a vCenter holding --vms VMs. The module
through ansible-playbook, the module's own code in-process (no Ansible), and
the floor: one bare pyVmomi RetrievePropertiesEx over a ContainerView.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pyVmomi import vim, vmodl

from ray_provider.runner import task_results
from testbed import node_identity, simulator, vsphere  # puts the checkout's collections on sys.path
from testbed.appliance import build_test_ova
from testbed.guests import make_key_pair
from testbed.ray_cluster import run_tasks

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _ray_auth  # noqa: E402

# Milliseconds, by method name (ImportVApp, HttpNfcLeaseComplete) or task name
# (CloneVm, PowerOn...). The import pays for the disk at lease completion, once
# per node; a clone does not. LockHandoff 0: vcsim releases the VM's lock during
# a task's delay, so clones of one template run side by side as on vCenter.
DELAYS = {"ImportVApp": 1000, "HttpNfcLeaseComplete": 2000, "CloneVm": 1000, "PowerOn": 500,
          "ReconfigVm": 200, "CreateSnapshotEx": 500, "LockHandoff": 0}
PLACEMENT = dict(datacenter="DC0", cluster="DC0_C0", resource_pool="DC0_C0_RP1", vm_folder="ray",
                 datastore="LocalDS_0", network="VM Network")


def play(endpoint, work_dir, tasks):
    runner = run_tasks(tasks, tempfile.mkdtemp(dir=work_dir), endpoint.environment())
    result = task_results(runner)[-1]
    if result.get("failed"):
        sys.exit(f"benchmark play failed: {result.get('msg')}")
    return result


def deploy_seconds(work_dir, ova, nodes, clone, parallel, warm_template=False):
    def deploy(endpoint, request_id):
        started = time.monotonic()
        result = play(endpoint, work_dir, [{"ray_vsphere.cluster.node_deploy": dict(
            PLACEMENT, cluster_name="bench", cluster_key_file=str(bench_key(work_dir)), ovf=str(ova), count=nodes,
            request_id=request_id,
            clone_from_template=clone, parallel=parallel)}])
        assert len(result["created"]) == nodes
        return time.monotonic() - started

    with simulator.Vcsim(method_delay=DELAYS, vms_per_pool=0) as sim:
        if warm_template:
            deploy(sim.endpoint, "warmup")
        return deploy(sim.endpoint, "b")


def bench_key(work_dir):
    """The benchmark cluster's private key, made once per work dir."""
    path = Path(work_dir) / "ray-bench-key"
    return path if path.exists() else make_key_pair(path)


def median_seconds(function, repeat):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bare_property_collector(service_instance):
    """The floor: one RetrievePropertiesEx for the same properties of every VM."""
    view = service_instance.content.viewManager.CreateContainerView(service_instance.content.rootFolder,
                                                                    [vim.VirtualMachine], True)
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=view, skip=True, selectSet=[
            vmodl.query.PropertyCollector.TraversalSpec(name="v", path="view", skip=False,
                                                        type=vim.view.ContainerView)])],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.VirtualMachine, pathSet=_nodes.NODE_PATHS)])
    result = service_instance.content.propertyCollector.RetrievePropertiesEx(
        [spec], vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=5000))
    view.Destroy()
    return result.objects


def list_benchmark(work_dir, vms, repeat):
    pools = 2  # vcsim puts -vm VMs in each cluster's child resource pool
    started = time.monotonic()
    with simulator.Vcsim(vms_per_pool=vms // pools, start_timeout=600) as sim:
        print(f"  vcsim with {vms // pools * pools} VMs up in {time.monotonic() - started:.1f} s")
        service_instance = sim.endpoint.connect()
        inventory = _nodes.Inventory(service_instance)
        inventory.attributes.require(["ray-cluster-name"])
        key_path = bench_key(work_dir)
        cluster_key = _ray_auth.ClusterKey(key_path.read_text(), "bench")
        for vm in sorted(inventory.vms, key=lambda vm: vm._moId)[:20]:
            inventory.attributes.set(vm, vm._moId, {"ray-cluster-name": "bench"})
            node_identity.bind(service_instance, vm, cluster_key)

        assert len(bare_property_collector(service_instance)) >= vms
        assert len(_nodes.list_nodes(service_instance, cluster_key)[0]) == 20
        floor = median_seconds(lambda: bare_property_collector(service_instance), repeat)
        in_process = median_seconds(lambda: _nodes.list_nodes(service_instance, cluster_key), repeat)
        playbook = median_seconds(lambda: play(sim.endpoint, work_dir, [
            {"ray_vsphere.cluster.node_info": {"cluster_name": "bench", "cluster_key_file": str(key_path)}}]),
            max(2, repeat // 2))
        vsphere.disconnect(service_instance)
    return floor, in_process, playbook


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--payload-mib", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work_dir:
        ova = build_test_ova(payload_mib=args.payload_mib)
        print(f"Deploy {args.nodes} nodes from a {ova.stat().st_size / 2**20:.0f} MiB OVA "
              f"(vcsim delays in ms: {DELAYS})")
        variants = {
            "clone, first deploy": dict(clone=True),
            "clone, template there": dict(clone=True, warm_template=True),
            "import per node": dict(clone=False),
        }
        seconds = {}
        for label, variant in variants.items():
            for parallel in (args.nodes, 1):
                seconds[label, parallel] = deploy_seconds(work_dir, ova, args.nodes, parallel=parallel, **variant)
                print(f"  {label:22} parallel={parallel:<3} {seconds[label, parallel]:7.1f} s")
        for label in variants:
            print(f"  {label}: parallel is {seconds[label, 1] / seconds[label, args.nodes]:.1f}x as fast as "
                  "one after another")
        for label in ("clone, first deploy", "clone, template there"):
            print(f"  {label} vs import per node, in parallel: "
                  f"{seconds['import per node', args.nodes] / seconds[label, args.nodes]:.1f}x as fast")

        print(f"List one cluster of 20 nodes among {args.vms} VMs (median of {args.repeat})")
        floor, in_process, playbook = list_benchmark(work_dir, args.vms, args.repeat)
        print(f"  bare pyVmomi RetrievePropertiesEx (floor): {floor * 1000:8.1f} ms")
        print(f"  module code in-process:                   {in_process * 1000:8.1f} ms  ({in_process / floor:.2f}x floor)")
        print(f"  node_info through ansible-playbook:       {playbook * 1000:8.1f} ms  ({playbook / floor:.1f}x floor)")


if __name__ == "__main__":
    main()
