"""ray_up.yml with a static IP pool (ray_ip_pool) on the testbed: a head and three workers, no DHCP for any.

The pool is exactly four addresses of the bridge's static range, which the
testbed's DHCP stand-in never leases. Each address is read inside its guest
(its network namespace, the ENI file cloud-init rendered) and at vcsim
(reported IP, recorded address, events), never from the playbooks' output
alone. A later ray_workers.yml given only the cluster's name deploys from the
pool the head recorded, and finds it full.
"""

import re

import pytest

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_IP_POOL_EXHAUSTED
from ray_provider.runner import published_stats
from static_ip_checks import (WRONG_GATEWAY, all_vm_names, assert_a_job_runs_on_every_node_at_its_address,
                              assert_records_distinct, assert_static_addresses, destroyed_before_power_on,
                              last_event_key, life_events_since, pool_addresses, static_pool, Steps, vm_events,
                              vms_at_vcsim)
from testbed import ray_cluster

pytestmark = pytest.mark.slow

NAME = "e2e-static-pb"


def test_ray_up_yml_gives_a_head_and_three_workers_static_addresses_from_ray_ip_pool_and_a_full_pool_makes_nothing(
        vcsim, guest_simulator, tmp_path):
    pool = static_pool(guest_simulator.network, 4)
    addresses = pool_addresses(pool)
    key = tmp_path / "keys" / f"ray-{NAME}"
    cluster = dict(ray_cluster.cluster_vars(NAME, key, worker_count=3), ray_ip_pool=pool)
    environment = vcsim.endpoint.environment()
    steps = Steps(NAME)

    # A gateway outside the pool's network: refused before anything is made, naming the variable's key.
    before = all_vm_names(vcsim)
    wrong = ray_cluster.run("ray_up", tmp_path / "wrong-gateway", environment,
                            dict(cluster, ray_ip_pool=dict(pool, gateway=WRONG_GATEWAY)))
    output = wrong.stdout.read()
    assert wrong.status == "failed" and re.search(
        rf"ray_ip_pool\.gateway: .*{re.escape(WRONG_GATEWAY)}.* outside .*{re.escape(pool['cidr'])}", output), \
        output[-4000:]
    assert all_vm_names(vcsim) == before, "a refused pool made a VM or a template"
    steps.done("wrong gateway refused")

    up = ray_cluster.run("ray_up", tmp_path / "up", environment, cluster)
    assert up.status == "successful", up.stdout.read()[-5000:]
    names = [f"{NAME}-head", *(f"{NAME}-worker-{index}" for index in range(3))]
    held = assert_static_addresses(vcsim, guest_simulator, key, names, pool)
    assert sorted(held.values()) == addresses, held
    assert_records_distinct(vms_at_vcsim(vcsim))
    stats = published_stats(up)
    assert (stats["ray_head_ip"], sorted(stats["ray_worker_ips"])) == (
        held[f"{NAME}-head"], sorted(held[name] for name in names[1:])), stats
    prefix = int(pool["cidr"].split("/")[1])
    assert_a_job_runs_on_every_node_at_its_address(stats["ray_head_ip"], key, addresses, prefix)
    # The head's deploy and the workers' run at once, from one pool: whichever VM was made second for an
    # address was made again (shown for the record; which one is timing's).
    steps.done("ray_up.yml, checked in the guests and by a job",
               made_again=destroyed_before_power_on(vm_events(vcsim), f"{NAME}-"))

    # ray_workers.yml given the cluster but no pool deploys from the pool the head recorded: full, so it fails
    # naming the pool, and makes nothing.
    full = {name: vm.moid for name, vm in vms_at_vcsim(vcsim).items()}
    events_before = last_event_key(vcsim)
    more = ray_cluster.run("ray_workers", tmp_path / "more", environment,
                           dict({name: value for name, value in cluster.items() if name != "ray_ip_pool"},
                                ray_worker_count=4))
    output = more.stdout.read()
    assert more.status == "failed", output[-4000:]
    assert FAILURE_IP_POOL_EXHAUSTED in output and "0 free addresses, 1 asked" in output, output[-4000:]
    assert {name: vm.moid for name, vm in vms_at_vcsim(vcsim).items()} == full, "the failed run left a VM behind"
    assert life_events_since(vcsim, events_before) == [], "the failed run made, powered on or removed a VM"
    steps.done("ray_workers.yml refused by the full pool")

    down = ray_cluster.run("ray_down", tmp_path / "down", environment,
                           {"ray_cluster_name": NAME, "ray_ssh_private_key": str(key)})
    assert down.status == "successful", down.stdout.read()[-5000:]
    assert sorted(published_stats(down)["ray_deleted_nodes"]) == names
    assert not [name for name in vms_at_vcsim(vcsim) if name.startswith(NAME)]
    steps.done("ray_down.yml")
