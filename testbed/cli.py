"""`testbed up`: the embedded vCenter (vcsim) and its SSH test guests, for people.

Prints how to reach the simulated vCenter (URL, credentials, the VMWARE_*
variables AWX's VMware credential would inject), then stays up until
interrupted. With --demo it also imports a VM from the test OVA with a fresh
SSH key, powers it on and logs in to its guest.
"""

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyVmomi import vim

from testbed import simulator, vsphere
from testbed.appliance import build_test_ova
from testbed.guests import GuestSimulator, ssh
from testbed.ova_import import import_ova
from testbed.prereqs import PrerequisiteError, check_prerequisites

DEMO_VM = "ray-demo-0"


def parse_method_delay(text):
    delays = {}
    for item in filter(None, text.split(",")):
        name, _, milliseconds = item.partition(":")
        if not milliseconds.isdigit():
            raise argparse.ArgumentTypeError(f"--method-delay: {item!r} is not Name:milliseconds")
        delays[name.strip()] = int(milliseconds)
    return delays


def inventory_summary(service_instance):
    def names(managed_type, condition=lambda props: True):
        found = vsphere.objects_of_type(service_instance, managed_type, ["name", "parent"])
        return sorted(props["name"] for props in found.values() if condition(props))

    clusters = vsphere.objects_of_type(service_instance, vim.ClusterComputeResource, ["name", "host"])
    return {
        "datacenters": names(vim.Datacenter),
        "clusters": sorted(f"{props['name']} ({len(props['host'])} hosts)" for props in clusters.values()),
        "resource pools": names(vim.ResourcePool, lambda props: not isinstance(props["parent"], vim.ComputeResource)),
        "datastores": names(vim.Datastore),
        "networks": names(vim.Network, lambda props: "DVUplinks" not in props["name"]),
        "VM folders": [simulator.VM_FOLDER],
    }


def print_testbed(sim, guests):
    endpoint = sim.endpoint
    print(f"vCenter simulator (vcsim, govmomi v0.56.0) up in {sim.startup_seconds:.2f} s")
    print(f"  URL:       {endpoint.url}   (self-signed certificate: validate_certs false)")
    print(f"  user:      {endpoint.username}")
    print(f"  password:  {endpoint.password}")
    service_instance = endpoint.connect()
    try:
        for kind, items in inventory_summary(service_instance).items():
            print(f"  {kind + ':':16} {', '.join(items)}")
    finally:
        vsphere.disconnect(service_instance)
    print("  as AWX's VMware credential injects it:")
    print("    export " + " ".join(f"{name}={value}" for name, value in endpoint.environment().items()))
    print(f"Test guests: bridge {guests.network.bridge}, {guests.network.cidr}; "
          "every powered-on VM gets an SSH guest with the key injected at deploy")


def run_demo(sim, guests, work_dir):
    key = Path(work_dir) / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "testbed-demo", "-f", str(key)], check=True)
    service_instance = sim.endpoint.connect()
    try:
        started = time.monotonic()
        vm = import_ova(
            service_instance, build_test_ova(), DEMO_VM, **simulator.default_placement(service_instance),
            properties={"public-keys": key.with_suffix(".pub").read_text(), "hostname": DEMO_VM},
        )
        vsphere.wait_for_task(service_instance, vm.PowerOnVM_Task())
        guest = guests.wait_for_guest(vm._moId)
        reported = vsphere.read_properties(service_instance, vm, ["guest.ipAddress"]).get("guest.ipAddress")
    finally:
        vsphere.disconnect(service_instance)
    print(f"Demo VM {DEMO_VM} ({vm._moId}): imported from the test OVA, powered on, guest up "
          f"in {time.monotonic() - started:.2f} s")
    print(f"  guest address {guest.address}; guest.ipAddress in vcsim: {reported}")
    print(f"  $ ssh -i {key} root@{guest.address} 'hostname; ray --version'")
    result = ssh(guest.address, key, "hostname; ray --version")
    for line in (result.stdout + result.stderr).splitlines():
        print(f"  {line}")
    if result.returncode != 0:
        raise SystemExit(f"testbed: SSH into the demo guest failed with exit code {result.returncode}")


def wait_until_interrupted():
    print("Testbed is up. Press Ctrl-C to stop it.", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def up(args):
    try:
        check_prerequisites()
    except PrerequisiteError as error:
        raise SystemExit(f"testbed: {error}") from None
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)  # tear down on `kill` as on Ctrl-C
    with tempfile.TemporaryDirectory(prefix="ray-vsphere-demo-") as work_dir:
        with simulator.Vcsim(method_delay=args.method_delay) as sim, GuestSimulator(sim.endpoint) as guests:
            print_testbed(sim, guests)
            if args.demo:
                run_demo(sim, guests, work_dir)
            if guests.errors:
                raise SystemExit(f"testbed: guest simulator errors: {guests.errors}")
            sys.stdout.flush()
            if not args.exit:
                wait_until_interrupted()
    print("Testbed stopped: vcsim, guests, bridge and temp folders removed.")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="testbed", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start vcsim and the test guests; stay up until Ctrl-C")
    up_parser.add_argument("--demo", action="store_true",
                           help="also deploy a VM from the test OVA with a fresh SSH key and log in to it")
    up_parser.add_argument("--exit", action="store_true", help="tear everything down once it is up (for scripts)")
    up_parser.add_argument("--method-delay", type=parse_method_delay, default={},
                           help="vcsim delays in ms standing in for a real vCenter, e.g. ImportVApp:500,Clone:800")
    args = parser.parse_args(argv)
    if args.command == "up":
        up(args)


if __name__ == "__main__":
    main()
