"""`ray up` with a static IP pool (provider.ip_pool) on the testbed, autoscaler v2: no DHCP for any node.

One cluster for every step. The pool is five addresses of the bridge's
static range, which the testbed's DHCP stand-in never leases: the head and
three workers the autoscaler adds for a resource request; a worker it
removes, whose address the next one takes again; an operator's deploy racing
the autoscaler for that very address; then a full pool, where a launch fails
as a capacity error and leaves nothing. Every address is read inside its
guest (its network namespace, its ENI file) and at vcsim (reported IP,
recorded address, events), never from the provider's or the deploy's own
bookkeeping.

The race is made real: vcsim holds every worker clone for CLONE_STALL_S
before making it (testbed/vcsim/faults.go), so both callers read the folder's
records before either's VM exists and both pick the lowest free address; the
test then finds, in vcsim's events, the VM that was made with it and
destroyed before its power-on, and its name made again. The operator deploys
a worker under another cluster name with the same key, pool and VM folder:
the head's provider shows Ray only its own cluster's nodes (a VM of its own
cluster made by hand would be adopted by autoscaler v2 as an unmanaged cloud
instance), so what the race changes is the ledger's doing alone.
"""

import json
import re

import pytest
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_IP_POOL_EXHAUSTED
from ray_provider.runner import task_results
from ray_provider.runs import LAUNCH_CATEGORIES
from static_ip_checks import (WRONG_GATEWAY, all_vm_names, assert_a_job_runs_on_every_node_at_its_address,
                              assert_no_guest_shares_an_address, assert_records_distinct, assert_static_addresses,
                              destroyed_before_power_on, guest_views, last_event_key, life_events_since,
                              pool_addresses, static_pool, Steps, vm_events, vms_at_vcsim)
from testbed import PROJECT_ROOT, ray_cluster, simulator, vsphere
from testbed.appliance import build_test_ova
from testbed.guests import vcsim_with_guests
from test_ray_up_end_to_end import (a_failure_stays_one, cluster_key, head_monitor_log, ray_ssh_of,  # noqa: F401
                                    wait_for, wait_for_launch_failures)  # fixtures among them

pytestmark = pytest.mark.slow

STATIC_IP_EXAMPLE = PROJECT_ROOT / "examples" / "ray-cluster.static-ip.yaml"
NAME = "e2e-static"
OPERATOR_CLUSTER = f"{NAME}-ops"
POOL_SIZE = 5
# Wider than the spread between the two callers' folder reads: each is an ansible-runner start and a login (the
# head's in a guest), begun within a second of each other; the test fails, saying so, if the race was not met.
CLONE_STALL_S = 12
AUTOSCALER_V2 = {"RAY_UP_enable_autoscaler_v2": "1"}
CAPACITY_CATEGORY = "InsufficientCapacity"

REQUEST_WORKERS = """
import json, sys, ray
from ray.autoscaler.sdk import request_resources
ray.init(address="auto", logging_level="ERROR")
request_resources(bundles=[{"CPU": 1}] * int(sys.argv[1]))
print("RESULT " + json.dumps(int(sys.argv[1])))
"""


@pytest.fixture(scope="module")
def testbed(testbed_prerequisites):
    # Worker clones of both clusters are held before vcsim makes them: the race's window (see the docstring).
    stall = ("stall", "CloneVM_Task", rf"^{re.escape(NAME)}(-ops)?-worker-")
    with vcsim_with_guests(enforce_permissions=True, faults=[stall], stall_seconds=CLONE_STALL_S) as (sim, guests):
        yield sim, guests
        assert guests.errors == [], f"guest simulator errors: {guests.errors}"


def static_ip_cluster_yaml(path, key, pool):
    """examples/ray-cluster.static-ip.yaml with this testbed's pool; no minimum of workers: a resource request
    decides how many, and an idle one goes after 6 s."""
    return ray_cluster.provider_cluster_yaml(path, NAME, key, example=STATIC_IP_EXAMPLE, idle_timeout_minutes=0.1,
                                             max_workers=POOL_SIZE - 1, **{
        "provider.ip_pool": pool,
        "available_node_types.worker.min_workers": 0,
        "available_node_types.worker.max_workers": POOL_SIZE - 1,
    })



def operator_deploy(sim, run_dir, key, pool):
    """The operator's node_deploy of one worker from the pool into the cluster's VM folder; its task result."""
    task = {"name": "Deploy a worker from the pool", "ray_vsphere.cluster.node_deploy": {
        "cluster_name": OPERATOR_CLUSTER, "node_type": "worker", "cluster_key_file": str(key), "request_id": "race",
        "ovf": str(build_test_ova()), "datacenter": simulator.DATACENTER, "cluster": simulator.CLUSTERS[0],
        "resource_pool": simulator.RESOURCE_POOL, "vm_folder": simulator.VM_FOLDER,
        "datastore": simulator.DATASTORES[0], "network": simulator.NETWORK,
        "ssh_public_keys": [key.with_suffix(".pub").read_text().strip()],
        "ip_pool": pool, "wait_for_ip": True, "ip_timeout": 180}}
    return task_results(ray_cluster.run_tasks([task], run_dir, sim.endpoint.environment()))[-1]


def destroy(sim, vm_moids):
    """The operator's cleanup of its VMs: power off, delete."""
    service_instance = sim.endpoint.connect()
    try:
        for moid in vm_moids:
            vm = vim.VirtualMachine(moid, service_instance._stub)
            vsphere.wait_for_task(service_instance, vm.PowerOffVM_Task())
            vsphere.wait_for_task(service_instance, vm.Destroy_Task())
    finally:
        service_instance.content.sessionManager.Logout()


def test_ray_up_gives_every_node_a_static_address_from_the_pool_reuses_freed_ones_survives_a_race_and_a_full_pool(
        testbed, cluster_key, tmp_path, ray_ssh_of):
    sim, guests = testbed
    ray_ssh_of(NAME)
    pool = static_pool(guests.network, POOL_SIZE)
    addresses = pool_addresses(pool)
    prefix = int(pool["cidr"].split("/")[1])
    state_dir = tmp_path / "state"
    steps = Steps(NAME)

    def ray_up(config):
        return ray_cluster.ray_cli(sim.endpoint, state_dir, "up", "-y", "--no-config-cache", str(config),
                                   extra_env=AUTOSCALER_V2)

    # A gateway outside the pool's network: refused by the config check, naming the key, before anything is made.
    before = all_vm_names(sim)
    wrong = ray_up(static_ip_cluster_yaml(tmp_path / "wrong-gateway.yaml", cluster_key,
                                          dict(pool, gateway=WRONG_GATEWAY)))
    output = wrong.stdout + wrong.stderr
    assert wrong.returncode != 0 and re.search(
        rf"provider\.ip_pool\.gateway: .*{re.escape(WRONG_GATEWAY)}.* outside .*{re.escape(pool['cidr'])}", output), \
        output[-3000:]
    assert all_vm_names(sim) == before, "a refused config made a VM or a template"
    steps.done("wrong gateway refused")

    config = static_ip_cluster_yaml(tmp_path / "cluster.yaml", cluster_key, pool)
    up = ray_up(config)
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]

    def cluster_vms():
        return {name: vm for name, vm in vms_at_vcsim(sim).items() if name.startswith(f"{NAME}-")}

    def running(kind):
        return {name: vm for name, vm in cluster_vms().items()
                if name.startswith(f"{NAME}-{kind}-") and vm.powered_on and vm.reported_ip}

    (head_name, head), = running("head").items()
    head_ip = head.reported_ip
    assert head_ip == addresses[0], f"the head took {head_ip}, not the pool's lowest address {addresses[0]}"
    steps.done("ray up")

    monitor_log = head_monitor_log(head_ip, cluster_key)

    def launches():
        launched = re.findall(r"Launching (\d+) nodes of type worker\.", monitor_log("Launching"))
        return sum(int(count) for count in launched)

    def request_workers(count):
        ray_cluster.run_driver(head_ip, cluster_key, REQUEST_WORKERS, [str(count)], timeout=120)

    def workers_up(count):
        def running_workers():
            workers = running("worker")
            return workers if len(workers) == count else None

        try:
            workers = wait_for(f"{count} running workers", running_workers, timeout=300, interval=2)
        except AssertionError as error:
            shown = monitor_log("ray_vsphere|aunch|erminat")[-4000:]
            raise AssertionError(f"{error}: {cluster_vms()}\n{shown}") from error
        ray_cluster.wait_for_alive_nodes(head_ip, cluster_key, count + 1, timeout=240)
        return workers

    # 1 head + 3 workers: each guest holds its pool address from cloud-init's rendering, as vcsim reports and the
    # VM records it; a job with a task on every node finds them at those addresses.
    request_workers(3)
    workers = workers_up(3)
    held = assert_static_addresses(sim, guests, cluster_key, [head_name, *workers], pool)
    assert sorted(held.values()) == addresses[:4], held
    assert_a_job_runs_on_every_node_at_its_address(head_ip, cluster_key, list(held.values()), prefix)
    steps.done("3 workers up, checked in the guests and by a job")

    # One worker fewer: the autoscaler removes an idle one (6 s) and its address is free again.
    request_workers(2)
    wait_for("an idle worker's removal", lambda: len(cluster_vms()) == 3, timeout=180, interval=2)
    (removed,) = set(workers) - set(cluster_vms())
    freed, removed_moid = held[removed], workers[removed].moid
    steps.done("an idle worker removed", freed=freed)

    # The autoscaler and the operator deploy a worker at once: both read the freed address as the lowest free
    # one; the VM made second loses it, is destroyed before its power-on and made again with the next free one.
    events_before_race = last_event_key(sim)
    launched = launches()
    request_workers(3)
    wait_for("the autoscaler's launch", lambda: launches() > launched or None, timeout=60, interval=0.5)
    deployed = operator_deploy(sim, tmp_path / "operator", cluster_key, pool)
    assert not deployed["failed"], json.dumps(deployed)[-3000:]

    def racers_running():
        racing = {name: vm for name, vm in cluster_vms().items()
                  if (name.startswith(f"{OPERATOR_CLUSTER}-worker-") or
                      (name.startswith(f"{NAME}-worker-") and name not in held)) and vm.powered_on and vm.reported_ip}
        return racing if len(racing) == 2 else None

    racers = wait_for("the autoscaler's and the operator's workers to run", racers_running, timeout=240, interval=2)
    # No two guests' own `ip addr` show one address, and no two VMs record one.
    assert_no_guest_shares_an_address(guest_views(guests, cluster_key))
    assert_records_distinct(vms_at_vcsim(sim))
    # The race was met: one racer's VM was made with the address the other's VM already recorded, destroyed
    # before its power-on, and made again under its name with the next free address.
    race_events = [event for event in vm_events(sim) if event.key > events_before_race]
    (loser,) = [vm for prefix_ in (f"{NAME}-worker-", f"{OPERATOR_CLUSTER}-worker-")
                for vm in destroyed_before_power_on(race_events, prefix_)] or [None]
    assert loser is not None, (
        "the race was not met: no worker VM was destroyed before its power-on "
        f"({[(event.kind, event.name, event.moid) for event in race_events]})")
    loser_name, loser_moid = loser
    assert loser_name in racers and racers[loser_name].moid != loser_moid, "the loser's name made again, as a new VM"
    (winner,) = [vm for vm in racers.values() if vm.recorded_ip == freed]
    assert winner.moid_number < int(loser_moid.rsplit("-", 1)[-1]), "the VM made first keeps the address"
    assert winner.name != loser_name and racers[loser_name].recorded_ip == addresses[4], racers
    assert winner.moid != removed_moid, "the freed address went to a later VM"
    steps.done("the race", kept=f"{winner.name} ({winner.moid}) {freed}",
               made_again=f"{loser_name} ({loser_moid} destroyed, now {racers[loser_name].moid}) {addresses[4]}")

    workers_up(3)
    every = assert_static_addresses(sim, guests, cluster_key, sorted(cluster_vms()), pool)
    assert sorted(every.values()) == addresses, every
    assert_a_job_runs_on_every_node_at_its_address(
        head_ip, cluster_key, [address for name, address in every.items() if not name.startswith(OPERATOR_CLUSTER)],
        prefix)
    steps.done("every address checked in the guests and by a job")

    # The pool is full: the autoscaler's next launch fails as a capacity error Ray understands, and leaves nothing.
    full = {name: vm.moid for name, vm in vms_at_vcsim(sim).items()}
    events_before_full = last_event_key(sim)
    request_workers(4)
    category = LAUNCH_CATEGORIES[FAILURE_IP_POOL_EXHAUSTED]
    assert category == CAPACITY_CATEGORY
    failed = wait_for_launch_failures(monitor_log, "the launch into a full pool to fail", "of type worker",
                                      CAPACITY_CATEGORY, timeout=120, interval=2)
    assert pool["range"] in failed[0] or pool["cidr"] in failed[0], failed
    assert {name: vm.moid for name, vm in vms_at_vcsim(sim).items()} == full, "the failed launch left a VM behind"
    assert life_events_since(sim, events_before_full) == [], "the failed launch made, powered on or removed a VM"
    assert_no_guest_shares_an_address(guest_views(guests, cluster_key))
    steps.done("a launch into the full pool failed", line=failed[0][-300:])

    down = ray_cluster.ray_cli(sim.endpoint, state_dir, "down", "-y", str(config), extra_env=AUTOSCALER_V2)
    assert down.returncode == 0, down.stdout[-4000:] + down.stderr[-4000:]
    destroy(sim, [vm.moid for name, vm in racers.items() if name.startswith(OPERATOR_CLUSTER)])
    assert {name for name in vms_at_vcsim(sim) if name.startswith(NAME)} == set()
    wait_for("every guest to stop", lambda: guests.guests() == {}, timeout=30, interval=0.5)
    steps.done("ray down")
