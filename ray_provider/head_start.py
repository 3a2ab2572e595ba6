"""Start Ray on a `ray up` head as two OS users: Ray as `ray`, its autoscaler as `ray-autoscaler`.

    RAY_AUTH_MODE=token sudo -E "$(command -v python)" -m ray_provider.head_start \
        ray start --head --autoscaling-config=~/ray_bootstrap_config.yaml [ray start's options]

A job runs on the head as the user Ray's daemons run as (Ray's job manager
starts entrypoints there). So Ray runs as `ray`, without sudo, and the
autoscaler (Ray's monitor, which loads this provider and runs ansible-runner
with the cluster's key and the head's vCenter password) runs on its own as
`ray-autoscaler`, as KubeRay runs it in a container of its own:
`ray start --head --no-monitor`, then the v1 or v2 monitor started here with
the arguments Ray's node.py gives it. The node's cloud-init made both users
(node_deploy's service_users); the SSH user keeps its sudo for setup.

What `ray up` mounted into the SSH user's home for the autoscaler (its key,
its config, and every file mount the config names, which its updaters sync
to workers from the same `~` paths) moves into the autoscaler's home (0700).
Ray's user gets only the token. Running it again (a second `ray up`)
stops Ray and the monitor, moves what was mounted anew, and starts both.

Nothing Ray's user can write reaches the autoscaler: it runs the image's
root-owned Python with -I (no PYTHON* variables, no user site-packages, no
script folder on sys.path), in its own home (its ~/.ansible, ansible.cfg
lookup and state dir), with an environment built here, and its SSH control
folder in /tmp made here before Ray's user could make it.
"""

import grp
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from ray_provider.head_config import HEAD_ONLY_MOUNTS

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ray_tls
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import TOKEN_PATH_ON_NODES

RAY_USER = "ray"
AUTOSCALER_USER = "ray-autoscaler"
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
BOOTSTRAP_KEY = "~/ray_bootstrap_key.pem"
# The monitor's logs, in the autoscaler's home: a folder Ray's user could
# write (the session's logs) would let it point the monitor's files elsewhere.
MONITOR_LOGS = "logs"
DEFAULT_GCS_PORT = 6379
ENABLE_V2 = "RAY_enable_autoscaler_v2"
LAUNCH_BATCH = "AUTOSCALER_MAX_LAUNCH_BATCH"
# What the playbooks' ray_node role writes first in the SSH user's ~/.bashrc, before Ubuntu's early return for
# non-interactive shells: Ray's CLI and drivers use the token only when told to (`ray status`, `ray exec ...`).
SHELL_STARTUP = ".bashrc"
TOKEN_AUTH_EXPORT = "export RAY_AUTH_MODE=token"


class HeadStartError(Exception):
    pass


def home_relative(path):
    """The path under a home that a `~/`-path or relative path names; None for an absolute one."""
    if path.startswith("~/"):
        path = path[2:]
    elif path.startswith(("~", "/")):
        return None
    parts = Path(path).parts
    if not parts or ".." in parts:
        raise HeadStartError(f"{path}: a file mount that leaves the home")
    return Path(*parts)


def mounted_for_autoscaler(config):
    """The home-relative paths `ray up` mounted for the autoscaler: its key and config, the config's file mounts,
    and those it keeps from the workers (head_config.HEAD_ONLY_MOUNTS)."""
    config = config or {}
    head_only = (config.get("provider") or {}).get(HEAD_ONLY_MOUNTS) or []
    paths = [BOOTSTRAP_CONFIG, BOOTSTRAP_KEY] + list(config.get("file_mounts") or {}) + list(head_only)
    return [relative for relative in (home_relative(path) for path in paths) if relative is not None]


def chown_tree(path, user):
    for folder, dirs, files in os.walk(path):
        for name in [folder] + [os.path.join(folder, entry) for entry in dirs + files]:
            os.lchown(name, user.pw_uid, user.pw_gid)
    os.lchown(path, user.pw_uid, user.pw_gid)


def remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def hand_over(ssh_home, autoscaler):
    """Move what `ray up` mounted into the SSH user's home into the autoscaler's; what is under ~/.ray (the token,
    the TLS CA), copy: the SSH user's Ray CLI needs it too."""
    autoscaler_home = Path(autoscaler.pw_dir)
    config_file = home_relative(BOOTSTRAP_CONFIG)
    newest = ssh_home / config_file if (ssh_home / config_file).exists() else autoscaler_home / config_file
    if not newest.exists():
        raise HeadStartError(f"no {BOOTSTRAP_CONFIG} in {ssh_home} or {autoscaler_home}: run it from `ray up`")
    for relative in mounted_for_autoscaler(yaml.safe_load(newest.read_text())):
        source, target = ssh_home / relative, autoscaler_home / relative
        if not (source.exists() or source.is_symlink()):
            continue  # moved by an earlier run, and not mounted again since
        remove(target)
        for parent in reversed(relative.parents[:-1]):
            if not (autoscaler_home / parent).is_dir():
                (autoscaler_home / parent).mkdir(mode=0o700)
                os.lchown(autoscaler_home / parent, autoscaler.pw_uid, autoscaler.pw_gid)
        if relative.parts[0] == home_relative(TOKEN_PATH_ON_NODES).parts[0]:
            shutil.copy2(source, target, follow_symlinks=False)
        else:
            shutil.move(source, target)
        chown_tree(target, autoscaler)


def users():
    """The SSH user (who ran sudo), Ray's and the autoscaler's: pwd entries."""
    if os.geteuid() != 0:
        raise HeadStartError("run it as root, with sudo, from the SSH user's head_start_ray_commands")
    found = {}
    for role, name in (("ssh", os.environ.get("SUDO_USER", "")), ("ray", RAY_USER), ("autoscaler", AUTOSCALER_USER)):
        try:
            found[role] = pwd.getpwnam(name)
        except KeyError:
            raise HeadStartError(f"the head has no user {name!r}: the provider's node_deploy makes {RAY_USER} and "
                                 f"{AUTOSCALER_USER} through cloud-init (service_users); was this head made by "
                                 "an older ray-vsphere?" if role != "ssh" else
                                 "run it with sudo as the SSH user (no SUDO_USER)") from None
    return found["ssh"], found["ray"], found["autoscaler"]


def environment(user):
    """What Ray's daemons and the monitor run with: a login's basics, the image's Python first, and the RAY_* settings."""
    env = {"HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name, "SHELL": "/bin/bash",
           "LANG": "C.UTF-8", "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
           "RAY_AUTH_MODE": "token"}
    # The operator's Ray settings from the start command (ray up exports RAY_enable_autoscaler_v2).
    env.update((key, value) for key, value in os.environ.items() if key.startswith("RAY_"))
    return env


def monitor_environment(autoscaler):
    """The autoscaler's environment, launching every node of a type it launches at once in one create_node call,
    and under v1 choosing other types before one that just found no capacity (capacity_backoff.py; v2 reads no
    scorer), unless the operator named a scorer of their own.

    Ray splits a launch into calls of AUTOSCALER_MAX_LAUNCH_BATCH (5) nodes,
    run side by side: for this provider each is a create_nodes playbook run,
    whose start (ansible-core, the login, the template lookup) costs seconds
    of the head's CPU. One run deploys its nodes in parallel anyway.
    """
    from ray.autoscaler._private.constants import AUTOSCALER_MAX_CONCURRENT_LAUNCHES, AUTOSCALER_UTILIZATION_SCORER_KEY

    from ray_provider.capacity_backoff import SCORER

    env = environment(autoscaler)
    env[LAUNCH_BATCH] = os.environ.get(LAUNCH_BATCH) or str(AUTOSCALER_MAX_CONCURRENT_LAUNCHES)
    env[AUTOSCALER_UTILIZATION_SCORER_KEY] = env.get(AUTOSCALER_UTILIZATION_SCORER_KEY) or SCORER
    return env


def runs_as(*accounts):
    """Whether any process runs as one of these users."""
    return subprocess.run(["pgrep", "-u", ",".join(str(user.pw_uid) for user in accounts)],
                          stdout=subprocess.DEVNULL).returncode == 0


def run_as(user, argv, **options):
    return subprocess.run(argv, user=user.pw_uid, group=user.pw_gid, extra_groups=[], env=environment(user),
                          cwd=user.pw_dir, **options)


def share_tls(ray_user):
    """Ray's TLS for Ray's user and the monitor: the certificate the SSH user made (its RAY_TLS_* variables, from
    ~/.ray/tls/environment), copied where both read it (_ray_tls.install_for_service); none when TLS is off."""
    certificate = os.environ.get("RAY_TLS_SERVER_CERT")
    if not certificate:
        return
    _ray_tls.install_for_service(os.path.dirname(certificate), grp.getgrgid(ray_user.pw_gid).gr_name)
    os.environ.update(_ray_tls.environment(_ray_tls.SERVICE_TLS_DIR))


def give_token(ssh_home, ray_user):
    """The cluster's token at Ray's user's ~/.ray/auth_token, written as that user (its home is its own to plant in)."""
    token = (ssh_home / home_relative(TOKEN_PATH_ON_NODES)).read_bytes()
    run_as(ray_user, ["sh", "-c", 'umask 077 && mkdir -p "$HOME/.ray" && cat >"$HOME/.ray/auth_token.new" && '
                                  'mv -f "$HOME/.ray/auth_token.new" "$HOME/.ray/auth_token"'], input=token, check=True)


def turn_on_token_auth_in_shells(ssh_user):
    """TOKEN_AUTH_EXPORT first in the SSH user's SHELL_STARTUP, written as that user (who holds the token already,
    at ~/.ray/auth_token); left alone when it is there."""
    run_as(ssh_user, ["sh", "-c", 'grep -qxF "$1" "$2" 2>/dev/null && exit 0; '
                                  '{ printf "%s\\n" "$1"; cat "$2" 2>/dev/null || true; } >"$2.new" && '
                                  'mv -f "$2.new" "$2"',
                      "sh", TOKEN_AUTH_EXPORT, str(Path(ssh_user.pw_dir) / SHELL_STARTUP)], check=True)


def claim_ssh_control_folder(autoscaler):
    """Ray's SSH runner keeps its master connections in /tmp/ray_ssh_<hash of the user>: the autoscaler's, made here."""
    from ray.autoscaler._private.command_runner import HASH_MAX_LENGTH

    folder = Path("/tmp") / f"ray_ssh_{hashlib.sha256(autoscaler.pw_name.encode()).hexdigest()[:HASH_MAX_LENGTH]}"
    stat = os.lstat(folder) if folder.exists() or folder.is_symlink() else None
    if stat is not None and (folder.is_symlink() or not folder.is_dir() or stat.st_uid != autoscaler.pw_uid
                             or stat.st_mode & 0o077):
        remove(folder)
        stat = None
    if stat is None:
        folder.mkdir(mode=0o700)  # fails if someone made it meanwhile: the next run removes it
        os.chown(folder, autoscaler.pw_uid, autoscaler.pw_gid)


def option_value(options, name):
    """The value of `--name=value` or `--name value` in ray start's options, or None."""
    for index, option in enumerate(options):
        if option.startswith(f"{name}="):
            return option.split("=", 1)[1]
        if option == name and index + 1 < len(options):
            return options[index + 1]
    return None


def autoscaler_v2():
    return os.environ.get(ENABLE_V2, "").lower() in ("1", "true")


def outdated_workers_command(monitor):
    """Under v2, which keeps outdated workers, what terminates them first with the monitor's Python and config."""
    config = next(argument for argument in monitor if argument.startswith("--autoscaling-config="))
    return [monitor[0], "-I", "-m", "ray_provider.outdated_workers", config.split("=", 1)[1]]


def monitor_command(options, autoscaler):
    """The monitor as Ray's node.py starts it (services.start_monitor), with the image's Python isolated (-I)."""
    from ray._common.ray_constants import LOGGING_ROTATE_BACKUP_COUNT, LOGGING_ROTATE_BYTES
    from ray._private.services import get_node_ip_address
    import ray

    ip = option_value(options, "--node-ip-address") or get_node_ip_address()
    port = option_value(options, "--port") or DEFAULT_GCS_PORT
    config = option_value(options, "--autoscaling-config") or BOOTSTRAP_CONFIG
    config = Path(autoscaler.pw_dir) / home_relative(config) if home_relative(config) else Path(config)
    v2 = autoscaler_v2()
    entrypoint = Path(ray.__file__).parent / "autoscaler" / ("v2" if v2 else "_private") / "monitor.py"
    logs = Path(autoscaler.pw_dir) / MONITOR_LOGS
    # ray_provider.monitor_logging runs it: Ray v2 logs its config, the Vault blob of the vCenter password among it.
    return [sys.executable, "-I", "-u", "-m", "ray_provider.monitor_logging", str(entrypoint), f"--logs-dir={logs}",
            f"--logging-rotate-bytes={LOGGING_ROTATE_BYTES}", f"--logging-rotate-backup-count={LOGGING_ROTATE_BACKUP_COUNT}",
            f"--gcs-address={ip}:{port}", f"--stdout-filepath={logs}/monitor.out",
            f"--stderr-filepath={logs}/monitor.err", f"--autoscaling-config={config}", f"--monitor-ip={ip}"]


def ray_start_options(options):
    """ray start's options for Ray's user: the autoscaling config is the monitor's, which Ray's user cannot read."""
    kept, skip = [], False
    for option in options:
        if skip:
            skip = False
        elif option == "--autoscaling-config":
            skip = True
        elif not option.startswith("--autoscaling-config="):
            kept.append(option)
    return ["--head", "--no-monitor"] + [option for option in kept if option not in ("--head", "--no-monitor")]


def main(argv=None):
    command = list(sys.argv[1:] if argv is None else argv)
    try:
        if command[:2] != ["ray", "start"]:
            raise HeadStartError("give it the head's `ray start ...` command: "
                                 "python -m ray_provider.head_start ray start --head ...")
        options = command[2:]
        ssh_user, ray_user, autoscaler = users()
        ray = str(Path(sys.executable).parent / "ray")
        # As root: Ray's processes (Ray's user's) and the monitor (the autoscaler's) alike; on a new head (no
        # process of either user) it would only cost a Ray CLI start.
        if runs_as(ray_user, autoscaler):
            subprocess.run([ray, "stop", "--force"], check=True, stdout=subprocess.DEVNULL)
        ssh_home = Path(ssh_user.pw_dir)
        # What `ray up` mounts lands here before this runs: nobody else reads it meanwhile.
        ssh_home.chmod(ssh_home.stat().st_mode & 0o700)
        hand_over(ssh_home, autoscaler)
        for home in (autoscaler.pw_dir, ray_user.pw_dir):
            os.chmod(home, 0o700)
        give_token(ssh_home, ray_user)
        turn_on_token_auth_in_shells(ssh_user)
        share_tls(ray_user)
        claim_ssh_control_folder(autoscaler)
        logs = Path(autoscaler.pw_dir) / MONITOR_LOGS
        run_as(autoscaler, ["mkdir", "-p", "-m", "700", str(logs)], check=True)
        started = run_as(ray_user, [ray, "start"] + ray_start_options(options), start_new_session=True)
        if started.returncode != 0:
            raise HeadStartError(f"ray start as {RAY_USER} failed with exit code {started.returncode}")
        monitor = monitor_command(options, autoscaler)
        if autoscaler_v2():  # v1's monitor replaces outdated workers itself (ray_provider.outdated_workers)
            swept = subprocess.run(outdated_workers_command(monitor), user=autoscaler.pw_uid, group=autoscaler.pw_gid,
                                   extra_groups=[ray_user.pw_gid], env=monitor_environment(autoscaler),
                                   cwd=autoscaler.pw_dir)
            if swept.returncode != 0:  # the autoscaler still starts: the next `ray up` sweeps again
                print("ray_provider.head_start: outdated workers were not terminated (see the output above)",
                      file=sys.stderr)
        with open(os.devnull, "rb") as nothing:
            # Ray's group, for the node's TLS key only: the monitor is a client of the GCS.
            subprocess.Popen(monitor, user=autoscaler.pw_uid, group=autoscaler.pw_gid, extra_groups=[ray_user.pw_gid],
                             env=monitor_environment(autoscaler), cwd=autoscaler.pw_dir, stdin=nothing,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        print(f"Ray runs as {RAY_USER}; its autoscaler ({Path(monitor[3]).parent.name} monitor) as {AUTOSCALER_USER}, "
              f"logging to {logs}")
    except (HeadStartError, subprocess.CalledProcessError, OSError) as error:
        print(f"ray_provider.head_start: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
