"""`testbed up`: the embedded vCenter (vcsim) and its SSH test guests, for people.

Prints how to reach the simulated vCenter (URL, credentials, the VMWARE_*
variables AWX's VMware credential would inject), then stays up until
interrupted. With --demo it also imports a VM from the test OVA with a fresh
SSH key, powers it on and logs in to its guest.
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml
from pyVmomi import vim

from ray_provider.runner import published_stats

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ray_auth_token
from testbed import image, ray_cluster, simulator, vsphere
from testbed.appliance import build_test_ova
from testbed.guests import make_key_pair, ssh, vcsim_with_guests
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
    print(f"  URL:       {endpoint.url}")
    print(f"  TLS:       a certificate for {endpoint.host} from the testbed's own CA {endpoint.ca_path}")
    print("             trust it as an internal CA: VMWARE_CA_PATH (this collection, the Ray provider; below),")
    print(f"             SSL_CERT_FILE={endpoint.ca_path} (Python, community.vmware), "
          f"GOVC_TLS_CA_CERTS={endpoint.ca_path} (govc)")
    print(f"  user:      {endpoint.username}")
    print(f"  password:  {endpoint.password}")
    print(f"  a Ray head's own account (`ray up` reads it from RAY_VSPHERE_HEAD_USER/_PASSWORD, below): "
          f"{endpoint.head_username} / {endpoint.head_password}")
    service_instance = endpoint.connect()
    try:
        for kind, items in inventory_summary(service_instance).items():
            print(f"  {kind + ':':16} {', '.join(items)}")
    finally:
        vsphere.disconnect(service_instance)
    print("  as AWX's VMware credential injects it, and the head's account for `ray up`:")
    print("    export " + " ".join(f"{name}={value}" for name, value in endpoint.environment().items()))
    print(f"Test guests: bridge {guests.network.bridge}, {guests.network.cidr}; "
          "every powered-on VM gets an SSH guest with the key injected at deploy")
    print(f"  node image: Ray {image.image_packages(guests.image_root)['ray']} in {image.IMAGE_PYTHON_ENV} "
          "(no ray-vsphere: a head installs it)")
    print(f"  for ray up: the test OVA {build_test_ova()}, the head's wheels in {image.head_wheels()}")


def run_demo(sim, guests, work_dir):
    key = make_key_pair(Path(work_dir) / "id_ed25519", "testbed-demo")
    service_instance = sim.endpoint.connect()
    try:
        started = time.monotonic()
        vm = import_ova(
            service_instance, build_test_ova(), DEMO_VM, **simulator.default_placement(service_instance),
            properties={"public-keys": key.with_suffix(".pub").read_text(), "hostname": DEMO_VM, "instance-id": DEMO_VM},
        )
        vsphere.wait_for_task(service_instance, vm.PowerOnVM_Task())
        guest = guests.wait_for_guest(vm._moId)
        reported = vsphere.read_properties(service_instance, vm, ["guest.ipAddress"]).get("guest.ipAddress")
    finally:
        vsphere.disconnect(service_instance)
    print(f"Demo VM {DEMO_VM} ({vm._moId}): imported from the test OVA, powered on, guest up "
          f"in {time.monotonic() - started:.2f} s")
    print(f"  guest address {guest.address}; guest.ipAddress in vcsim: {reported}")
    print(f"  $ ssh -i {key} ubuntu@{guest.address} 'hostname; ray --version'")
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
        with vcsim_with_guests(loopback=args.loopback, method_delay=args.method_delay, port=args.port,
                               password=args.password) as (sim, guests):
            print_testbed(sim, guests)
            if args.ca_file:
                shutil.copyfile(sim.endpoint.ca_path, args.ca_file)
            if args.pid_file:
                Path(args.pid_file).write_text(f"{os.getpid()}\n")
            if args.demo:
                run_demo(sim, guests, work_dir)
            if guests.errors:
                raise SystemExit(f"testbed: guest simulator errors: {guests.errors}")
            sys.stdout.flush()
            if not args.exit:
                wait_until_interrupted()
    print("Testbed stopped: vcsim, guests, bridge and temp folders removed.")


def demo(args):
    """The README's main job: a Ray cluster through the playbooks, a job on it, then ray_down."""
    with tempfile.TemporaryDirectory(prefix="ray-vsphere-demo-") as work_dir:
        if os.environ.get("VMWARE_HOST"):
            if not args.vars:
                raise SystemExit("testbed demo: with VMWARE_HOST set, give your cluster's vars file: --vars FILE "
                                 "(see playbooks/vars/ray_cluster.example.yml)")
            cluster = yaml.safe_load(Path(args.vars).read_text())
            environment = {k: v for k, v in os.environ.items() if k.startswith("VMWARE_")}
            print(f"Using the vCenter at {os.environ['VMWARE_HOST']} (VMWARE_* variables)")
            run_cluster_demo(cluster, environment, Path(work_dir), args.keep)
            return
        try:
            check_prerequisites()
        except PrerequisiteError as error:
            raise SystemExit(f"testbed: {error}") from None
        signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
        with vcsim_with_guests() as (sim, guests):
            print(f"No VMWARE_HOST given: embedded vCenter simulator at {sim.endpoint.url} with SSH test guests")
            cluster = ray_cluster.cluster_vars("demo", Path(work_dir) / "ray-demo-key", worker_count=2)
            run_cluster_demo(cluster, sim.endpoint.environment(), Path(work_dir), args.keep)
            if args.keep:
                wait_until_interrupted()
                run_playbook_or_exit("ray_down", Path(work_dir), sim.endpoint.environment(), cluster)
            else:
                run_ray_up_demo(sim.endpoint, Path(work_dir) / "ray-up")
            if guests.errors:
                raise SystemExit(f"testbed: guest simulator errors: {guests.errors}")
        print("Testbed stopped: vcsim, guests, bridge and temp folders removed.")


def run_playbook_or_exit(playbook, work_dir, environment, cluster):
    started = time.monotonic()
    runner = ray_cluster.run(playbook, work_dir / playbook, environment, cluster)
    if runner.status != "successful":
        print(runner.stdout.read()[-5000:])
        raise SystemExit(f"testbed demo: ray_vsphere.cluster.{playbook} {runner.status}")
    print(f"$ ansible-playbook ray_vsphere.cluster.{playbook}: {runner.status} in {time.monotonic() - started:.1f} s")
    return published_stats(runner)


def run_cluster_demo(cluster, environment, work_dir, keep):
    stats = run_playbook_or_exit("ray_up", work_dir, environment, cluster)
    head_ip, key = stats["ray_head_ip"], cluster["ray_ssh_private_key"]
    print(f"Ray cluster {stats['ray_cluster_name']}:")
    print(f"  head     {head_ip}   dashboard {stats['ray_dashboard_url']} through: {stats['ray_dashboard_tunnel']}")
    for worker_ip in stats["ray_worker_ips"]:
        print(f"  worker   {worker_ip}")
    tasks = 2 * (1 + len(stats["ray_worker_ips"]))
    job = ray_cluster.run_spread_job(head_ip, key, tasks=tasks)
    print(f"Ray job: squares of 0..{tasks - 1} spread over the cluster")
    print(f"  sum of squares = {job['sum_of_squares']} (expected {sum(i * i for i in range(tasks))}), "
          f"ran on {', '.join(job['hosts'])}")
    token = ray_auth_token(Path(key).read_text(), stats["ray_cluster_name"])
    refused, accepted = ray_cluster.submit_job(head_ip, key, None), ray_cluster.submit_job(head_ip, key, token)
    print(f"Ray's job API: without the cluster's token HTTP {refused['http_status']}; "
          f"with it HTTP {accepted['http_status']}, job {accepted['job_state']}")
    print("$ ray status")
    for line in ray_cluster.ray_status(head_ip, key).splitlines():
        print(f"  {line}")
    if keep:
        print(f"Kept: {stats['ray_head_ssh']}")
    else:
        deleted = run_playbook_or_exit("ray_down", work_dir, environment, cluster)
        print(f"Removed: {', '.join(deleted.get('ray_deleted_nodes', []))}")


def run_ray_up_demo(endpoint, work_dir):
    """`ray up` with examples/ray-cluster.testbed.yaml: the NodeProvider, the head's autoscaler, `ray down`."""
    work_dir.mkdir()
    key = make_key_pair(work_dir / "ray-up-key", "ray-up-demo")
    config = ray_cluster.provider_cluster_yaml(work_dir / "cluster.yaml", "demo-ray-up", key)
    state = work_dir / "state"

    def ray(*arguments):
        started = time.monotonic()
        result = ray_cluster.ray_cli(endpoint, state, *arguments)
        if result.returncode != 0:
            print(result.stdout[-3000:] + result.stderr[-3000:])
            raise SystemExit(f"testbed demo: ray {arguments[0]} failed with exit code {result.returncode}")
        print(f"$ ray {' '.join(arguments[:-1])} examples/ray-cluster.testbed.yaml: done in "
              f"{time.monotonic() - started:.1f} s")
        return result

    ray("up", "-y", "--no-config-cache", str(config))
    head_ip = ray("get-head-ip", str(config)).stdout.strip().splitlines()[-1]
    print(f"  head {head_ip}, made by VsphereNodeProvider through playbooks/provider/create_nodes.yml")
    started = time.monotonic()
    try:
        alive = ray_cluster.wait_for_alive_nodes(head_ip, key, 2)
    except TimeoutError as error:
        raise SystemExit(f"testbed demo: the head's autoscaler did not bring up min_workers: {error}") from None
    print(f"  the head's autoscaler launched min_workers=1: Ray nodes {', '.join(alive)} "
          f"({time.monotonic() - started:.1f} s)")
    started = time.monotonic()
    hosts = ray_cluster.run_scale_up_job(head_ip, key, workers=2)
    print(f"Ray job needing 2 workers at once: the autoscaler added one; ran on {', '.join(hosts)} "
          f"({time.monotonic() - started:.1f} s)")
    ray("down", "-y", str(config))
    ray_cluster.close_ray_ssh_connections("demo-ray-up")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="testbed", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start vcsim and the test guests; stay up until Ctrl-C")
    up_parser.add_argument("--demo", action="store_true",
                           help="also deploy a VM from the test OVA with a fresh SSH key and log in to it")
    up_parser.add_argument("--exit", action="store_true", help="tear everything down once it is up (for scripts)")
    up_parser.add_argument("--method-delay", type=parse_method_delay, default={},
                           help="vcsim delays in ms standing in for a real vCenter, e.g. ImportVApp:500,CloneVm:800")
    up_parser.add_argument("--port", type=int, default=0, help="vcsim's port (default: a free one)")
    up_parser.add_argument("--loopback", action="store_true",
                           help="vcsim on 127.0.0.1, not on the guests' gateway (then a Ray head in a guest "
                                "cannot reach it: for playbooks only, at a fixed address)")
    up_parser.add_argument("--password", help="vcsim's password (default: a new random one)")
    up_parser.add_argument("--ca-file", help="copy the testbed CA's certificate here (for a fixed VMWARE_CA_PATH)")
    up_parser.add_argument("--pid-file", help="write this process's id here once the testbed is up (after --ca-file)")
    demo_parser = commands.add_parser(
        "demo", help="bring up a Ray cluster through the playbooks, run a job on it, then remove it")
    demo_parser.add_argument("--keep", action="store_true", help="keep the cluster (until Ctrl-C on the testbed)")
    demo_parser.add_argument("--vars", help="your cluster's vars file, for a real vCenter (VMWARE_HOST set)")
    args = parser.parse_args(argv)
    if args.command == "up":
        up(args)
    elif args.command == "demo":
        demo(args)


if __name__ == "__main__":
    main()
