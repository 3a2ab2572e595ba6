"""ray_provider.head_start's choices that need no head: what moves to the autoscaler, what Ray and the monitor get."""

import subprocess
from pathlib import Path

import pytest

from ray_provider import head_start


def test_what_ray_up_mounted_into_the_home_moves_and_absolute_mounts_stay():
    config = {"file_mounts": {"~/ray_bootstrap_key.pub": "~/ray_bootstrap_key.pub", "~/.ray/auth_token": "x",
                              "ray-vsphere-wheels": "y", "/data/shared": "/data/shared"}}
    assert head_start.mounted_for_autoscaler(config) == [
        Path("ray_bootstrap_config.yaml"), Path("ray_bootstrap_key.pem"), Path("ray_bootstrap_key.pub"),
        Path(".ray/auth_token"), Path("ray-vsphere-wheels")]


@pytest.mark.parametrize("mount", ["~/../root/.ssh", "a/../../etc"])
def test_a_mount_that_leaves_the_home_is_refused(mount):
    with pytest.raises(head_start.HeadStartError, match="leaves the home"):
        head_start.mounted_for_autoscaler({"file_mounts": {mount: "x"}})


def test_ray_starts_without_the_monitor_and_without_the_autoscalers_config():
    options = ["--head", "--port=6379", "--autoscaling-config=~/ray_bootstrap_config.yaml", "--num-cpus=0",
               "--autoscaling-config", "other.yaml", "--disable-usage-stats"]
    assert head_start.ray_start_options(options) == ["--head", "--no-monitor", "--port=6379", "--num-cpus=0",
                                                     "--disable-usage-stats"]


def test_the_monitor_gets_the_v2_entrypoint_its_config_in_its_home_and_an_isolated_python(monkeypatch):
    autoscaler = type("User", (), {"pw_dir": "/home/ray-autoscaler"})()
    monkeypatch.setenv(head_start.ENABLE_V2, "1")
    command = head_start.monitor_command(["--port=6380", "--node-ip-address=10.0.0.5",
                                          "--autoscaling-config=~/ray_bootstrap_config.yaml"], autoscaler)
    assert command[1:5] == ["-I", "-u", "-m", "ray_provider.monitor_logging"]
    assert command[5].endswith("ray/autoscaler/v2/monitor.py")
    assert "--gcs-address=10.0.0.5:6380" in command and "--monitor-ip=10.0.0.5" in command
    assert "--autoscaling-config=/home/ray-autoscaler/ray_bootstrap_config.yaml" in command
    assert "--logs-dir=/home/ray-autoscaler/logs" in command
    monkeypatch.setenv(head_start.ENABLE_V2, "0")
    assert head_start.monitor_command(["--node-ip-address=10.0.0.5"], autoscaler)[5].endswith(
        "ray/autoscaler/_private/monitor.py")


def test_it_refuses_to_run_other_than_as_root_from_sudo(monkeypatch, capsys):
    monkeypatch.setattr(head_start.os, "geteuid", lambda: 1000)
    assert head_start.main(["ray", "start", "--head"]) == 1
    assert "run it as root, with sudo" in capsys.readouterr().err
    assert head_start.main(["--head"]) == 1
    assert "give it the head's `ray start ...` command" in capsys.readouterr().err


def test_the_ssh_users_shells_get_token_auth_first_once_and_keep_the_rest(monkeypatch, tmp_path):
    ssh_user = type("User", (), {"pw_dir": str(tmp_path)})()
    # As this test's own user: the switch to the SSH user is subprocess's, the script is what is tested.
    monkeypatch.setattr(head_start, "run_as", lambda user, argv, **options: subprocess.run(argv, **options))
    head_start.turn_on_token_auth_in_shells(ssh_user)
    assert (tmp_path / ".bashrc").read_text() == "export RAY_AUTH_MODE=token\n"
    (tmp_path / ".bashrc").write_text('[ -f "x" ] && . "x"\ncase $- in *i*) ;; *) return;; esac\n')
    for _ in range(2):
        head_start.turn_on_token_auth_in_shells(ssh_user)
    assert (tmp_path / ".bashrc").read_text() == (
        'export RAY_AUTH_MODE=token\n[ -f "x" ] && . "x"\ncase $- in *i*) ;; *) return;; esac\n')
    assert not (tmp_path / ".bashrc.new").exists()


def test_under_v2_the_outdated_workers_sweep_runs_with_the_monitors_python_and_config(monkeypatch):
    autoscaler = type("User", (), {"pw_dir": "/home/ray-autoscaler"})()
    monkeypatch.setenv(head_start.ENABLE_V2, "1")
    monitor = head_start.monitor_command(["--autoscaling-config=~/ray_bootstrap_config.yaml"], autoscaler)
    assert head_start.outdated_workers_command(monitor) == [
        monitor[0], "-I", "-m", "ray_provider.outdated_workers", "/home/ray-autoscaler/ray_bootstrap_config.yaml"]
