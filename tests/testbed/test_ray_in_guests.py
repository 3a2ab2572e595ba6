"""Ray runs for real in test guests: a two-node cluster, and `ray stop` stays in its guest."""

import time

import pytest

from testbed.guests import DEFAULT_USER, ssh
from testbed.ray_cluster import alive_nodes

pytestmark = pytest.mark.slow

# Small object stores: every guest shares the machine's /dev/shm and memory.
RAY_START = "ray start --disable-usage-stats --object-store-memory=200000000 --num-cpus=1"
def ray_processes(address, key):
    return set(ssh(address, key, "ps -eo comm").stdout.split()) & {"raylet", "gcs_server"}


def test_head_and_worker_guests_form_a_ray_cluster_and_ray_stop_leaves_the_head_running(
        guest_simulator, deploy_test_vm, ssh_key_pair):
    key, public = ssh_key_pair("ray")
    head = guest_simulator.wait_for_guest(deploy_test_vm("ray-head", public_key=public)._moId)
    worker = guest_simulator.wait_for_guest(deploy_test_vm("ray-worker", public_key=public)._moId)

    started = ssh(head.address, key, f"{RAY_START} --head --port=6379 --node-ip-address={head.address} "
                                     "--dashboard-host=0.0.0.0")
    assert started.returncode == 0, started.stdout + started.stderr
    joined = ssh(worker.address, key, f"{RAY_START} --address={head.address}:6379 --node-ip-address={worker.address}")
    assert joined.returncode == 0, joined.stdout + joined.stderr
    try:
        assert alive_nodes(head.address, key, user=DEFAULT_USER) == sorted([head.address, worker.address])

        stopped = ssh(worker.address, key, "ray stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert ray_processes(worker.address, key) == set()
        assert ray_processes(head.address, key) == {"raylet", "gcs_server"}
        status = ssh(head.address, key, f"ray status --address={head.address}:6379")
        assert status.returncode == 0, status.stdout + status.stderr

        deadline = time.monotonic() + 60
        while (alive := alive_nodes(head.address, key, user=DEFAULT_USER)) != [head.address]:
            assert time.monotonic() < deadline, f"the worker still counts as alive: {alive}"
            time.sleep(2)
    finally:
        ssh(head.address, key, "ray stop --force")
