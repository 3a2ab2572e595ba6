"""What a scale-up costs when the node image is a big file at an https URL, once its template exists.

    .venv/bin/python benchmarks/url_image_scale_up.py [--big-mib 1024] [--small-mib 16] [--mib-per-second 100] [--repeat 3]

Two OVAs whose disks carry incompressible payloads (--big-mib and
--small-mib, testbed.appliance.build_test_ova), served from 127.0.0.1 by an
HTTPS server (a testbed CA's certificate, given as ovf_ca_path) that paces
every response body to --mib-per-second, answers Range requests (206) as
real servers do, and counts requests and the body bytes it sent: the GETs and
MiB of each phase are the server's own counts. For each image: a VsphereNodeProvider whose `ovf` is its URL,
bootstrap_config (the read-only check run), one create_node that imports the
template (the first deploy), then --repeat scale-ups of one worker, each
timed around create_node (a node_deploy run through ansible-runner, clone,
power-on, the guest's IP) and terminated after. The printed ratio is the
big image's median scale-up over the small one's: with the template found by
the URL's HEAD validators, the image's size should not count (goal <= 1.2).
Everything (OVAs, provider state, node_deploy's cache) lives in one temp folder.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from ray_provider import node_provider
from ray_provider.config import HEAD_ACCOUNT_VARIABLES
from ray_provider.node_provider import VsphereNodeProvider
from testbed import ray_cluster
from testbed.appliance import build_test_ova
from testbed.guests import make_key_pair, vcsim_with_guests
from testbed.image_server import ImageServer, loopback_tls

WORKER_TAGS = {"ray-node-type": "worker", "ray-user-node-type": "worker"}


def timed(function, *args):
    started = time.monotonic()
    result = function(*args)
    return time.monotonic() - started, result


def measure(server, ca_file, served_path, work_dir, repeat):
    """{phase: seconds or counts} for one image, its URL as the provider's `ovf`."""
    work_dir.mkdir()
    key = make_key_pair(work_dir / "ray-key")
    cluster = f"bench-{work_dir.name}"
    # No ovf_sha256: what is measured is the template found by the server's validators (HEAD). A head's own
    # account would need the image pinned, so the provider here, which plays the head, has the operator's.
    config = ray_cluster.provider_cluster_yaml(work_dir / "cluster.yaml", cluster, key,
                                               **{"provider.ovf": server.url(served_path),
                                                  "provider.ovf_ca_path": str(ca_file),
                                                  "provider.head_vcenter_account": "operator"})
    node_provider.STATE_DIR = work_dir / "state"
    figures = {}
    figures["bootstrap"], bootstrapped = timed(VsphereNodeProvider.bootstrap_config, yaml.safe_load(config.read_text()))
    figures["bootstrap GETs"] = server.count("GET", served_path)
    figures["bootstrap MiB"] = server.bytes_sent(served_path) / 2**20
    provider = VsphereNodeProvider(bootstrapped["provider"], cluster)
    figures["first deploy"], created = timed(provider.create_node, {}, WORKER_TAGS, 1)
    figures["first deploy GETs"] = server.count("GET", served_path) - figures["bootstrap GETs"]
    figures["first deploy MiB"] = server.bytes_sent(served_path) / 2**20 - figures["bootstrap MiB"]
    provider.terminate_nodes(list(created))
    before = server.count("GET", served_path)
    scale_ups = []
    for _ in range(repeat):
        seconds, created = timed(provider.create_node, {}, WORKER_TAGS, 1)
        assert len(created) == 1, created
        scale_ups.append(seconds)
        provider.terminate_nodes(list(created))
    figures["scale-up"] = statistics.median(scale_ups)
    figures["scale-ups"] = scale_ups
    figures["scale-up GETs"] = server.count("GET", served_path) - before
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small-mib", type=int, default=16)
    parser.add_argument("--mib-per-second", type=float, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ray-vsphere-bench-") as folder:
        work_dir = Path(folder)
        os.environ["XDG_CACHE_HOME"] = str(work_dir / "cache")  # node_deploy's hash cache, should it be used
        served = work_dir / "served"
        started = time.monotonic()
        images = {}
        for label, mib in (("small", args.small_mib), ("big", args.big_mib)):
            ova = build_test_ova(cache_dir=served / label, payload_mib=mib)
            images[label] = (f"{label}/{ova.name}", ova.stat().st_size / 2**20)
        print(f"OVAs built in {time.monotonic() - started:.0f} s: "
              + ", ".join(f"{label} {size:.0f} MiB" for label, (_, size) in images.items())
              + f"; served from 127.0.0.1 at {args.mib_per_second:.0f} MiB/s")
        figures = {}
        (work_dir / "tls").mkdir()
        context, ca_file = loopback_tls(work_dir / "tls")  # https: a plain-http image would need its ovf_sha256
        with ImageServer(served, context, rate=args.mib_per_second * 2**20) as server, \
                vcsim_with_guests() as (sim, _guests):
            # The operator's account only: with head_vcenter_account: operator a head account is refused.
            os.environ.update({name: value for name, value in sim.endpoint.environment().items()
                               if name not in HEAD_ACCOUNT_VARIABLES})
            for label, (served_path, size) in images.items():
                figures[label] = result = measure(server, ca_file, served_path, work_dir / label, args.repeat)
                print(f"  {label:5} ({size:5.0f} MiB): bootstrap_config {result['bootstrap']:5.1f} s "
                      f"({result['bootstrap GETs']} GET, {result['bootstrap MiB']:.2f} MiB), first deploy "
                      f"{result['first deploy']:5.1f} s ({result['first deploy GETs']} GET, "
                      f"{result['first deploy MiB']:.0f} MiB), scale-up of one worker: median "
                      f"{result['scale-up']:.2f} s of {', '.join(f'{s:.2f}' for s in result['scale-ups'])} "
                      f"({result['scale-up GETs']} GET)")
    ratio = figures["big"]["scale-up"] / figures["small"]["scale-up"]
    print(f"scale-up from the {images['big'][1]:.0f} MiB image / from the {images['small'][1]:.0f} MiB image: "
          f"{ratio:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
