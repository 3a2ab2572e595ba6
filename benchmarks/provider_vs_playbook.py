"""Head plus N workers from zero: `ray up` and its autoscaler next to `ray_up.yml`, back to back on the testbed.

    .venv/bin/python benchmarks/provider_vs_playbook.py [--workers 8] [--rounds 1]

The provider path: `ray up` (min_workers = max_workers = N), its output
timestamped line by line to split it into Ray's phases (bootstrap_config's
checks, the head's launch, SSH, file mounts, setup commands, ray start);
then the head's autoscaler until Ray counts N + 1 alive nodes, split by the
monitor's log (first launch, each create_nodes run, workers joining). The
playbook path: `ray_up.yml` with ray_worker_count N, until Ray counts N + 1
alive nodes. Each round runs both, in alternating order; each prints its
phases, and the ratio is given with and without the head's install (its
setup commands), which the light head shrinks on its own.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from ray_provider.runner import published_stats
from testbed import ray_cluster
from testbed.guests import make_key_pair, ssh, vcsim_with_guests

# Lines of `ray up` (Ray 2.60's commands.py and updater.py) that start a phase, in order.
RAY_UP_PHASES = [
    ("checks and bootstrap_config", None),
    ("head launch (create_nodes)", re.compile(r"Launched a new head node|Acquiring an up-to-date head node")),
    ("wait for SSH", re.compile(r"\[1/7\] Waiting for SSH")),
    ("file mounts", re.compile(r"\[2/7\] Processing file mounts")),
    ("runner and init", re.compile(r"\[3/7\]")),
    ("head setup (install)", re.compile(r"\[6/7\] Running setup commands")),
    ("ray start", re.compile(r"\[7/7\] Starting the Ray runtime")),
]
HEAD_INSTALL = "head setup (install)"
MONITOR_LOG = "~ray-autoscaler/logs/monitor.log"
COLOUR = re.compile(r"\x1b\[[0-9;]*m")
MONITOR_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")


def timed_ray_up(endpoint, state_dir, config):
    """`ray up` as ray_cluster.ray_cli runs it, each output line with its monotonic time; (lines, seconds)."""
    temp_dir = Path(state_dir) / "tmp"
    temp_dir.mkdir(parents=True, exist_ok=True)
    # Unbuffered: each line is timed when Ray prints it.
    environment = {**os.environ, **endpoint.environment(), "RAY_VSPHERE_STATE_DIR": str(state_dir),
                   "PYTHONUNBUFFERED": "1", "TMPDIR": str(temp_dir),
                   "PATH": f"{ray_cluster.RAY_CLI.parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.monotonic()
    process = subprocess.Popen([str(ray_cluster.RAY_CLI), "up", "-y", "--no-config-cache", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    lines = [(time.monotonic() - started, COLOUR.sub("", line.rstrip())) for line in process.stdout]
    (Path(state_dir) / "ray-up.log").write_text("".join(f"{at:7.1f} {line}\n" for at, line in lines))
    if process.wait() != 0:
        raise SystemExit("benchmark: ray up failed:\n" + "\n".join(line for _, line in lines[-60:]))
    return lines, time.monotonic() - started


def split_phases(lines, total):
    """Seconds per phase of RAY_UP_PHASES, by the first line that starts each."""
    starts = [0.0]
    for _, pattern in RAY_UP_PHASES[1:]:
        starts.append(next((at for at, line in lines if pattern.search(line)), starts[-1]))
    ends = starts[1:] + [total]
    return {name: end - start for (name, _), start, end in zip(RAY_UP_PHASES, starts, ends)}


def monitor_events(head_ip, key, since, keep_in):
    """What the head's monitor logged about launches, as (seconds after `since` (wall clock), line); the whole
    log goes to keep_in/monitor.log."""
    text = ssh(head_ip, key, f"sudo cat {MONITOR_LOG}").stdout
    (keep_in / "monitor.log").write_text(text)
    log = text.splitlines()
    wanted = re.compile(r"ray_vsphere: (created|launching)|Launching \d+ nodes|StandardAutoscaler: Queue \d+ new"
                        r"|Adding \d+ node|launch_new_node|create_node|Launching new node", re.IGNORECASE)
    events = []
    for line in log:
        stamp = MONITOR_TIME.match(line)
        if stamp and wanted.search(line):
            at = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - since
            events.append((at, line[stamp.end():].strip()[:160]))
    return events


def through_provider(sim, work_dir, workers):
    key = make_key_pair(work_dir / "ray-key")
    config = ray_cluster.provider_cluster_yaml(work_dir / "cluster.yaml", "bench-up", key, **{
        "max_workers": workers, "available_node_types.worker.min_workers": workers,
        "available_node_types.worker.max_workers": workers})
    state = work_dir / "state"
    started_wall, started = time.time(), time.monotonic()
    try:
        lines, up_seconds = timed_ray_up(sim.endpoint, state, config)
        head_ip = ray_cluster.ray_cli(sim.endpoint, state, "get-head-ip", str(config)).stdout.strip().splitlines()[-1]
        ray_cluster.wait_for_alive_nodes(head_ip, key, workers + 1, timeout=600, interval=0.5)
        total = time.monotonic() - started
        events = monitor_events(head_ip, key, started_wall, state)
    finally:
        ray_cluster.ray_cli(sim.endpoint, state, "down", "-y", str(config))
        ray_cluster.close_ray_ssh_connections("bench-up")
    phases = split_phases(lines, up_seconds)
    phases["autoscaler: workers joined"] = total - up_seconds
    return dict(total=total, phases=phases, events=events)


def through_playbook(sim, work_dir, workers):
    key = work_dir / "keys" / "ray-key"
    cluster = ray_cluster.cluster_vars("bench-pb", key, worker_count=workers)
    environment = sim.endpoint.environment()
    started = time.monotonic()
    up = ray_cluster.run("ray_up", work_dir / "up", environment, cluster)
    up_seconds = time.monotonic() - started
    try:
        assert up.status == "successful", up.stdout.read()[-3000:]
        head_ip = published_stats(up)["ray_head_ip"]
        ray_cluster.wait_for_alive_nodes(head_ip, key, workers + 1, timeout=600, interval=0.5)
        total = time.monotonic() - started
    finally:
        ray_cluster.run("ray_down", work_dir / "down", environment, cluster)
    return dict(total=total, phases={"ray_up.yml": up_seconds, "workers alive after it": total - up_seconds})


def report(name, result):
    print(f"  {name}: {result['total']:.1f} s")
    for phase, seconds in result["phases"].items():
        print(f"    {phase:<32} {seconds:6.1f} s")
    for at, line in result.get("events", []):
        print(f"    monitor +{at:6.1f} s  {line}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="a folder to keep the runs in (ray up's timed output, the "
                                                   "monitor's log), instead of a temporary one")
    args = parser.parse_args()
    # `timeout` and kill stop it with SIGTERM: the testbed's guests and vcsim go as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="ray-vsphere-bench-") as temporary, vcsim_with_guests() as (sim, _guests):
        folder = args.keep or temporary
        for round_index in range(args.rounds):
            work_dir = Path(folder) / f"round-{round_index}"
            runs = [("ray up + autoscaler", through_provider), ("ray_up.yml", through_playbook)]
            results = {}
            for name, run in runs if round_index % 2 == 0 else runs[::-1]:
                (work_dir / name.split()[0]).mkdir(parents=True)
                results[name] = run(sim, work_dir / name.split()[0], args.workers)
            provider, playbook = results["ray up + autoscaler"], results["ray_up.yml"]
            print(f"round {round_index + 1}: head + {args.workers} workers from zero until Ray counts them alive")
            for name, result in results.items():
                report(name, result)
            without_install = provider["total"] - provider["phases"][HEAD_INSTALL]
            print(f"  ratio provider / playbook: {provider['total'] / playbook['total']:.2f} "
                  f"(goal <= 1.3); without the head's install phase "
                  f"({provider['phases'][HEAD_INSTALL]:.1f} s): {without_install / playbook['total']:.2f}")


if __name__ == "__main__":
    main()
