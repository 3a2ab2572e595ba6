"""ray_up.yml deploys the head and the workers at the same time, and a head that never gets its IP fails the run.

This module's vcsim has no guests behind its VMs, so no VM ever reports an
IP: the head's deploy and the workers' both time out and remove what they
made. vcsim's own power-on events say when each VM started, which tells a
deploy of the workers that waited for the head's (the workers then never
power on: the head fails first) from one that ran beside it.
"""

import json
from pathlib import Path

from pyVmomi import vim

from testbed import ray_cluster, vsphere

IP_TIMEOUT_S = 15


def vms_at_vcsim(service_instance):
    return sorted(props["name"] for props in vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name"]).values())


def test_a_head_without_ip_fails_the_run_beside_the_workers_deploy_and_leaves_no_vm(vcsim, service_instance, tmp_path):
    cluster = dict(ray_cluster.cluster_vars("noip", tmp_path / "keys" / "ray-noip", worker_count=2),
                   ray_ip_timeout=IP_TIMEOUT_S)
    run = ray_cluster.run("ray_up", tmp_path / "up", vcsim.endpoint.environment(), cluster, timeout=600)
    output = run.stdout.read()
    assert run.status == "failed", output[-5000:]

    # The head's own failure is what the run reports, and its deploy removed the head.
    assert "for noip-head: guest reported no address" in output, output[-5000:]
    assert "removed the VMs this call created: noip-head" in output, output[-5000:]
    assert not [name for name in vms_at_vcsim(service_instance) if name.startswith("noip-")]

    # Both deploys powered their VMs on within the same IP wait: the workers' did not wait for the head's.
    powered_on = vsphere.powered_on_times(service_instance)
    assert sorted(name for name in powered_on if name.startswith("noip-")) == [
        "noip-head", "noip-worker-0", "noip-worker-1"]
    apart = max(abs((powered_on[f"noip-worker-{index}"] - powered_on["noip-head"]).total_seconds()) for index in (0, 1))
    assert apart < IP_TIMEOUT_S, f"the workers powered on {apart} s from the head"

    # The run stopped at the failed head: no play went on to start Ray anywhere.
    plays = {event["event_data"].get("play") for event in run.events if event.get("event") == "playbook_on_play_start"}
    assert plays == {"Deploy the Ray cluster's VMs"}

    # The head's background job left no result file behind in Ansible's async directory.
    started = [event["event_data"]["res"] for event in run.events
               if event.get("event") == "runner_on_ok" and event["event_data"].get("task") == "Deploy the nodes"]
    result_files = [result["results_file"] for res in started for result in res.get("results", []) if "results_file" in result]
    assert len(result_files) == 1
    assert not Path(result_files[0]).exists()
    assert "PRIVATE KEY" not in json.dumps([event.get("event_data", {}).get("res") for event in run.events])
