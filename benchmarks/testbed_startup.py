"""How fast the embedded testbed comes up: vcsim start and guest bring-up per VM.

    .venv/bin/python benchmarks/testbed_startup.py [--starts 5] [--vms 10]

vcsim start: from spawning the process to the site shaped (VM folder made).
Guest bring-up: the guest simulator's own time (netns, veth, sshd answering),
and from PowerOnVM_Task to the guest answering SSH with its IP in vcsim.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from testbed import simulator, vsphere
from testbed.appliance import build_test_ova
from testbed.guests import DEFAULT_USER, GuestSimulator, make_key_pair, ssh
from testbed.ova_import import import_ova


def summary(values):
    return f"median {statistics.median(values):.3f} s, min {min(values):.3f} s, max {max(values):.3f} s (n={len(values)})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--vms", type=int, default=10)
    args = parser.parse_args()

    starts = []
    for _ in range(args.starts):
        with simulator.Vcsim() as sim:
            starts.append(sim.startup_seconds)
    print(f"vcsim start:                        {summary(starts)}")

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
