"""The head's phase of `ray up`, with the `ansible` package in its wheel folder (before) and without (after).

    .venv/bin/python benchmarks/head_phase.py [--rounds 1]

Side by side on one testbed: each round runs `ray up` of a head-only cluster
(examples/ray-cluster.testbed.yaml, min_workers 0) once with each wheel
folder, on a fresh head each time (`ray down` between), in alternating order.

- after: the folder `testbed up` makes (image.head_wheels(): this checkout's
  wheel and the dependency wheels the node image lacks), what
  `pip install ray-vsphere` needs today;
- before: the same folder plus the `ansible` wheel at constraints.txt's pin,
  hashed into its requirements.txt the same way: what the head installed
  while the wheel depended on `ansible`.

The head phase runs from the head answering SSH (Ray's updater logs
"[2/7] Processing file mounts" next) to `ray up` finishing with Ray running
on the head: the file mounts (the wheel folder among them), the head's pip
install, and Ray's start. It is read from the timestamps of Ray's own log
lines (`ray up --log-style record`). The installed size is what the install
added on the head: the files (and bytes) that pip recorded for every
distribution the folder's requirements.txt names.
"""

import argparse
import datetime
import json
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ray_provider.head_wheels import REQUIREMENTS_FILE, write_requirements
from testbed import image, ray_cluster
from testbed.guests import make_key_pair, ssh, vcsim_with_guests

RECORD_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\s")
HEAD_REACHABLE = "[2/7] Processing file mounts"

INSTALLED = """
import importlib.metadata, json, os, sys
sizes = []
for name in sys.argv[1:]:
    distribution = importlib.metadata.distribution(name)
    for file in distribution.files or []:
        path = distribution.locate_file(file)
        if os.path.isfile(path):
            sizes.append(os.path.getsize(path))
print("INSTALLED " + json.dumps({"files": len(sizes), "bytes": sum(sizes)}))
"""


def own_head_wheels(work_dir):
    """image.head_wheels() built in a cache of this run's (whose image is the shared cache's, linked).

    The shared cache's folder is rebuilt by whichever checkout's tests run
    next, which may be one whose wheel still depends on `ansible`.
    """
    shared_image = image.image_root().parent
    (work_dir / "cache").mkdir()
    (work_dir / "cache" / shared_image.name).symlink_to(shared_image)
    folder = image.head_wheels(work_dir / "cache")
    # provider_cluster_yaml fills the mount from the shared cache before the benchmark's changes replace it.
    image.head_wheels = lambda cache_dir=None: folder
    return folder


def before_folder(after, folder):
    """A copy of the folder with the `ansible` wheel added, at constraints.txt's pin, and hashed anew."""
    shutil.copytree(after, folder)
    downloaded = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary",
                                 ":all:", "-c", str(image.CONSTRAINTS), "--dest", str(folder), "ansible"],
                                capture_output=True, text=True, timeout=1800)
    if downloaded.returncode != 0:
        raise SystemExit(f"head_phase: pip download ansible failed: {downloaded.stderr[-2000:]}")
    write_requirements(folder)
    return folder


def pinned_names(folder):
    return [line.split("==")[0] for line in (folder / REQUIREMENTS_FILE).read_text().splitlines()
            if "==" in line and not line.startswith("#")]


def record_seconds(line):
    found = RECORD_TIME.match(line)
    return datetime.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() if found else None


def head_phase(sim, work_dir, label, folder, key):
    """(seconds of the head phase, {'files', 'bytes'} the install added) for one `ray up` with this folder."""
    name = f"bench-head-{label}"
    config = ray_cluster.provider_cluster_yaml(
        work_dir / f"{label}.yaml", name, key,
        **{f"file_mounts.{ray_cluster.HEAD_WHEELS_MOUNT}": str(folder), "available_node_types.worker.min_workers": 0})
    state = work_dir / f"state-{label}"
    try:
        up = ray_cluster.ray_cli(sim.endpoint, state, "up", "-y", "--no-config-cache", "--log-style", "record",
                                 str(config), timeout=1200)
        finished = datetime.datetime.now().timestamp()
        if up.returncode != 0:
            raise SystemExit(f"head_phase: ray up ({label}) failed: {up.stdout[-3000:]}{up.stderr[-3000:]}")
        output = (up.stdout + up.stderr).splitlines()
        reachable = [record_seconds(line) for line in output if HEAD_REACHABLE in line]
        if not reachable or reachable[0] is None:
            raise SystemExit(f"head_phase: no timed '{HEAD_REACHABLE}' line in ray up's output:\n"
                             + "\n".join(output[-60:]))
        head_ip = ray_cluster.ray_cli(sim.endpoint, state, "get-head-ip", str(config)).stdout.strip().splitlines()[-1]
        measured = ssh(head_ip, key, shlex.join(["python", "-c", INSTALLED, *pinned_names(folder)]))
        if "INSTALLED " not in measured.stdout:
            raise SystemExit(f"head_phase: no size from the head: {measured.stdout[-2000:]}{measured.stderr[-2000:]}")
        installed = json.loads(measured.stdout.split("INSTALLED ", 1)[1].splitlines()[0])
        return finished - reachable[0], installed
    finally:
        ray_cluster.ray_cli(sim.endpoint, state, "down", "-y", str(config))
        ray_cluster.close_ray_ssh_connections(name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ray-vsphere-bench-") as temp, vcsim_with_guests() as (sim, _guests):
        work_dir = Path(temp)
        after = own_head_wheels(work_dir)
        if "ansible" in pinned_names(after):
            raise SystemExit(f"head_phase: {after} carries ansible: build it from a checkout whose wheel does not")
        folders = {"before": before_folder(after, work_dir / "wheels-before"), "after": after}
        key = make_key_pair(work_dir / "ray-key")
        seconds = {label: [] for label in folders}
        installed = {}
        for round_index in range(args.rounds):
            order = ["before", "after"] if round_index % 2 == 0 else ["after", "before"]
            for label in order:
                took, installed[label] = head_phase(sim, work_dir, f"{label}-{round_index}", folders[label], key)
                seconds[label].append(took)
                print(f"round {round_index + 1} {label:6}: head phase {took:6.1f} s", flush=True)
        folder_mib = {label: sum(path.stat().st_size for path in folder.glob("*.whl")) / 2**20
                      for label, folder in folders.items()}
        wheel_counts = {label: len(list(folder.glob("*.whl"))) for label, folder in folders.items()}
    before, after_s = statistics.median(seconds["before"]), statistics.median(seconds["after"])
    print(f"head phase of ray up (median of {args.rounds}): before (with ansible) {before:.1f} s, "
          f"after {after_s:.1f} s: {before / after_s:.2f}x faster")
    for label in folders:
        print(f"{label:6}: wheel folder {folder_mib[label]:6.1f} MiB ({wheel_counts[label]} wheels); "
              f"the head's install adds {installed[label]['bytes'] / 2**20:6.1f} MiB in {installed[label]['files']:,} files")


if __name__ == "__main__":
    main()
