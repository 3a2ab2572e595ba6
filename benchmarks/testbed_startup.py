"""How fast the embedded testbed comes up: vcsim start and guest bring-up per VM.

    .venv/bin/python benchmarks/testbed_startup.py [--starts 5] [--vms 10] [--prepare-runs 1]

vcsim start: from spawning the process to the site shaped (VM folder made, and
what playbooks/vcenter_prepare.yml made replayed from its kept record), and
unprepared. The playbook's own run (testbed/prepare.py: once per content of
the playbook and what it reads, on a vcsim of its own): timed into a fresh
record folder, as the first vcsim after a change pays it.
Guest bring-up: the guest simulator's own time (netns, veth, sshd answering),
and from PowerOnVM_Task to the guest answering SSH with its IP in vcsim.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from testbed import prepare, simulator, vsphere
from testbed.appliance import build_test_ova
from testbed.guests import DEFAULT_USER, GuestSimulator, make_key_pair, ssh
from testbed.ova_import import import_ova


def summary(values):
    return f"median {statistics.median(values):.3f} s, min {min(values):.3f} s, max {max(values):.3f} s (n={len(values)})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--vms", type=int, default=10)
    parser.add_argument("--prepare-runs", type=int, default=1)
    args = parser.parse_args()

    cold = []
    for _ in range(args.prepare_runs):
        with tempfile.TemporaryDirectory() as records:
            started = time.monotonic()
            prepare.prepared_record(lambda: simulator.Vcsim(prepared=False), extravars=simulator.PREPARE_VARIABLES,
                                    record_dir=records)
            cold.append(time.monotonic() - started)
            prepare.forget_records()
    starts, unprepared = [], []
    for _ in range(args.starts):
        with simulator.Vcsim() as sim:
            starts.append(sim.startup_seconds)
        with simulator.Vcsim(prepared=False) as sim:
            unprepared.append(sim.startup_seconds)
    if cold:
        print(f"vcenter_prepare.yml run and record: {summary(cold)}")
    print(f"vcsim start, prepared:              {summary(starts)}")
    print(f"vcsim start, unprepared:            {summary(unprepared)}")
    if not args.vms:
        return

    with tempfile.TemporaryDirectory() as cache, simulator.Vcsim() as sim, GuestSimulator(sim.endpoint) as guests:
        ova = build_test_ova(cache)
        service_instance = sim.endpoint.connect()
        placement = simulator.default_placement(service_instance)
        key = make_key_pair(Path(cache) / "bench-key")
        power_on_to_ssh = []
        for index in range(args.vms):
            vm = import_ova(service_instance, ova, f"ray-bench-{index}", **placement,
                            properties={"public-keys": key.with_suffix(".pub").read_text(),
                                        "instance-id": f"bench-{index}", "hostname": f"ray-bench-{index}"})
            started = time.monotonic()
            vsphere.wait_for_task(service_instance, vm.PowerOnVM_Task())
            guest = guests.wait_for_guest(vm._moId)
            login = ssh(guest.address, key, "id -un")  # as the user cloud-init made, with the deployed key
            power_on_to_ssh.append(time.monotonic() - started)
            assert login.stdout.strip() == DEFAULT_USER, login.stderr
        bring_up = [guest.bring_up_seconds for guest in guests.guests().values()]
        vsphere.disconnect(service_instance)
    print(f"guest boot (namespaces, cloud-init, sshd):      {summary(bring_up)}")
    print(f"power-on to an SSH login as {DEFAULT_USER} (cloud-init): {summary(power_on_to_ssh)}")


if __name__ == "__main__":
    main()
