"""Stopping a testbed leaves nothing: no namespace, link, process or temp folder."""

import os
import signal

from testbed import leftovers, simulator, vsphere
from testbed.guests import GuestSimulator, ssh
from testbed.ova_import import import_ova


def test_a_testbed_with_running_guests_leaves_nothing_behind(testbed_prerequisites, test_ova, ssh_key_pair):
    key, public = ssh_key_pair("teardown")
    before = leftovers.snapshot()
    with simulator.Vcsim() as sim, GuestSimulator(sim.endpoint) as guests:
        service_instance = sim.endpoint.connect()
        for name in ("ray-teardown-1", "ray-teardown-2"):
            vm = import_ova(service_instance, test_ova, name, **simulator.default_placement(service_instance),
                            properties={"public-keys": public})
            vsphere.wait_for_task(service_instance, vm.PowerOnVM_Task())
            guest = guests.wait_for_guest(vm._moId)
            assert ssh(guest.address, key, "(sleep 600 </dev/null >/dev/null 2>&1 &)").returncode == 0
        vsphere.disconnect(service_instance)

        running = leftovers.left_behind(before, leftovers.snapshot())
        # The snapshot sees everything a testbed makes, so the check below can fail.
        assert len(running["network namespaces"]) == 2
        assert {guests.network.bridge, *(g.veth for g in guests.guests().values())} <= set(running["links"])
        commands = [entry.split(" ", 1)[1] for entry in running["processes"]]
        assert sum(c.startswith(str(simulator.VCSIM_BIN)) for c in commands) == 1
        assert sum(c.startswith("sshd") or "/sshd " in c for c in commands) >= 2
        assert len(running["temp folders"]) == 2

    assert leftovers.left_behind(before, leftovers.snapshot()) == {}


def test_a_killed_vcsim_still_has_its_datastore_folders_removed(testbed_prerequisites):
    before = leftovers.snapshot()
    sim = simulator.Vcsim()
    sim.start()
    os.kill(sim._process.pid, signal.SIGKILL)  # no chance to remove its govcsim-* folders itself
    sim._process.wait()
    sim.stop()
    assert leftovers.left_behind(before, leftovers.snapshot()) == {}
