"""What listing a Ray cluster costs as vCenter grows, and what the provider's refresh costs at rest.

    .venv/bin/python benchmarks/scoped_reads.py [--sizes 100,1000,5000] [--nodes 50] [--repeat 15]

1. Listing scale: one cluster of 20 nodes in the Ray VM folder of vCenters
   holding --sizes VMs in all (the others outside the folder, made by vcsim's
   -vm flag). node_info's code in process (no Ansible start-up), scoped to the
   folder as the playbooks and the provider call it, next to the same code
   reading the whole vCenter (what every read did before). The vCenters run
   side by side and are measured in turn; median wall time. Goal: scoped
   5,000 / 100 <= 1.3.
2. Steady state: --nodes nodes, nothing changing. One provider refresh
   (non_terminated_nodes with the cache stale: a WaitForUpdatesEx poll) in CPU
   seconds of this process and bytes received from vCenter, next to the full
   read the provider makes on start and after a reconnect (folder lookup,
   CreatePropertyCollector, CreateFilter, the first WaitForUpdatesEx). Goal:
   a refresh costs <= 1/10 of a full read.

Bytes are counted where TLS hands them to Python (ssl.SSLSocket.recv_into
and recv): HTTP headers and SOAP bodies, as the client receives them.
"""

import argparse
import os
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pyVmomi import vim

from ray_provider import node_provider
from ray_provider.node_provider import VsphereNodeProvider
from testbed import node_identity, simulator, vsphere  # puts the checkout's collections on sys.path
from testbed.guests import make_key_pair

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import (  # noqa: E402
    _nodes, _placement, _ray_auth, _records)

CLUSTER = "bench"
POOLS = 2  # vcsim's -vm makes that many VMs in each cluster's child resource pool


class ReceivedBytes:
    """Bytes this process received over TLS since start."""

    def __init__(self):
        self.count = 0
        counter = self
        recv_into, recv = ssl.SSLSocket.recv_into, ssl.SSLSocket.recv

        def counting_recv_into(sock, buffer, nbytes=0, flags=0):
            received = recv_into(sock, buffer, nbytes, flags)
            counter.count += received
            return received

        def counting_recv(sock, buflen=1024, flags=0):
            data = recv(sock, buflen, flags)
            counter.count += len(data)
            return data
        ssl.SSLSocket.recv_into, ssl.SSLSocket.recv = counting_recv_into, counting_recv


RECEIVED = ReceivedBytes()


def make_cluster(service_instance, nodes, key_path):
    """Move `nodes` of vcsim's model VMs into the Ray folder and tag them as CLUSTER's workers with guest IPs,
    each with the identity the key at key_path makes for it (as node_deploy writes it)."""
    cluster_key = _ray_auth.ClusterKey(Path(key_path).read_text(), CLUSTER)
    folder = vsphere.find_by_name(service_instance, vim.Folder, simulator.VM_FOLDER)
    inventory = _nodes.Inventory(service_instance, paths=["name"])
    chosen = sorted(inventory.vms, key=lambda vm: vm._moId)[:nodes]
    vsphere.wait_for_task(service_instance, folder.MoveIntoFolder_Task(chosen))
    inventory.attributes.require([_records.CLUSTER_NAME, _records.NODE_KIND, _records.USER_NODE_TYPE])
    for index, vm in enumerate(chosen):
        inventory.attributes.set(vm, vm._moId, {_records.CLUSTER_NAME: CLUSTER, _records.NODE_KIND: "worker",
                                                _records.USER_NODE_TYPE: "cpu_worker"})
        node_identity.record(service_instance, vm, {"SET.guest.ipAddress": f"198.18.{index // 250}.{index % 250 + 1}"})
        node_identity.bind(service_instance, vm, cluster_key)
    return folder, len(inventory.vms)


def listing_scale(sizes, repeat):
    """All the vCenters run at once and are measured in turn, round after round: load from elsewhere on the
    machine falls on every size alike."""
    print(f"Listing one cluster of 20 nodes, node_info's code in process (median of {repeat} rounds)")
    sims, scoped, whole = {}, {}, {}
    key_path = make_key_pair(Path(tempfile.mkdtemp()) / "ray-key")
    cluster_key = _ray_auth.ClusterKey(key_path.read_text(), CLUSTER)
    try:
        for size in sizes:
            started = time.monotonic()
            sim = simulator.Vcsim(vms_per_pool=size // POOLS, start_timeout=1800)
            sim.start()
            service_instance = sim.endpoint.connect()
            folder, total = make_cluster(service_instance, 20, key_path)
            roots = _placement.vm_folders(service_instance, simulator.DATACENTER, [simulator.VM_FOLDER])
            assert roots == [folder]
            assert len(_nodes.list_nodes(service_instance, cluster_key, roots=roots)[0]) == 20
            assert len(_nodes.list_nodes(service_instance, cluster_key)[0]) == 20
            sims[size] = (sim, service_instance, roots, total, time.monotonic() - started)
            scoped[size], whole[size] = [], []
        for round_number in range(repeat):
            for size, (_, service_instance, roots, _, _) in sims.items():
                started = time.perf_counter()
                _nodes.list_nodes(service_instance, cluster_key, roots=roots)
                scoped[size].append(time.perf_counter() - started)
                if round_number < 3:  # seconds each at 5,000 VMs
                    started = time.perf_counter()
                    _nodes.list_nodes(service_instance, cluster_key)
                    whole[size].append(time.perf_counter() - started)
    finally:
        for sim, service_instance, _, _, _ in sims.values():
            vsphere.disconnect(service_instance)
            sim.stop()
    scoped = {size: statistics.median(times) * 1000 for size, times in scoped.items()}
    whole = {size: statistics.median(times) * 1000 for size, times in whole.items()}
    for size, (_, _, _, total, up) in sims.items():
        print(f"  vCenter with {total:5} VMs (vcsim up and shaped in {up:5.1f} s): scoped to the folder "
              f"{scoped[size]:6.1f} ms, whole vCenter (median of 3) {whole[size]:8.1f} ms")
    low, high = min(sizes), max(sizes)
    print(f"  {high:,} / {low:,} VMs: scoped {scoped[high] / scoped[low]:.2f} (goal <= 1.3), "
          f"whole vCenter {whole[high] / whole[low]:.2f}")


def cpu_seconds():
    return time.process_time()


def measured(function):
    """(CPU seconds, bytes received) of one call."""
    cpu, received = cpu_seconds(), RECEIVED.count
    function()
    return cpu_seconds() - cpu, RECEIVED.count - received


def steady_state(nodes, repeat, work_dir):
    print(f"Steady state at {nodes} nodes, no change (median of {repeat})")
    with simulator.Vcsim(vms_per_pool=(nodes + 1) // POOLS + 1) as sim:
        key = make_key_pair(work_dir / "ray-key")
        service_instance = sim.endpoint.connect()
        make_cluster(service_instance, nodes, key)
        vsphere.disconnect(service_instance)
        os.environ.update(sim.endpoint.environment())
        node_provider.STATE_DIR = work_dir / "state"
        node_provider.REFRESH_INTERVAL_S = 0.0
        provider = VsphereNodeProvider({
            "type": "external", "module": "ray_provider.node_provider.VsphereNodeProvider",
            "ovf": "https://images.example.com/ray.ova", "datacenter": simulator.DATACENTER,
            "cluster": simulator.CLUSTERS[0], "vm_folder": simulator.VM_FOLDER, "datastore": simulator.DATASTORES[0],
            "ssh_private_key_file": str(key), "ssh_public_key_file": f"{key}.pub"}, CLUSTER)
        assert len(provider.non_terminated_nodes({})) == nodes  # logs in and reads in full

        def full_read():
            provider.reader.watch = None  # what a reconnect or a lost filter leads to, without the login
            assert len(provider.non_terminated_nodes({})) == nodes

        def tick():
            assert len(provider.non_terminated_nodes({})) == nodes

        fulls = [measured(full_read) for _ in range(repeat)]
        updates = provider._watch.object_updates
        ticks = [measured(tick) for _ in range(repeat)]
        assert provider._watch.object_updates == updates, "nothing changed, so no update came"
        full_cpu, full_bytes = (statistics.median(values) for values in zip(*fulls))
        tick_cpu, tick_bytes = (statistics.median(values) for values in zip(*ticks))
        print(f"  full read (start, reconnect, lost filter): {full_cpu * 1000:7.2f} ms CPU, {full_bytes:9,.0f} bytes")
        print(f"  one refresh with no change:                {tick_cpu * 1000:7.2f} ms CPU, {tick_bytes:9,.0f} bytes")
        print(f"  refresh / full read: CPU {tick_cpu / full_cpu:.3f}, bytes {tick_bytes / full_bytes:.3f} "
              "(goal <= 0.1)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if min(sizes) < 20 + POOLS:
        sys.exit("--sizes: every vCenter needs room for the 20 nodes")
    with tempfile.TemporaryDirectory() as work_dir:
        steady_state(args.nodes, args.repeat, Path(work_dir))
        listing_scale(sizes, args.repeat)


if __name__ == "__main__":
    main()
