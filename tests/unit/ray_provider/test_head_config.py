"""What the head's autoscaler syncs to the workers it makes: not what only the head uses."""

from pathlib import Path

from ray_provider import head_config, head_start, head_wheels
from ray_provider.node_provider import VsphereNodeProvider
from testbed.guests import make_key_pair

from conftest import HEAD_ACCOUNT, PROVIDER


def wheel_folder(path):
    path.mkdir()
    (path / "ray_vsphere-0.0.0-py3-none-any.whl").write_bytes(b"wheel")
    head_wheels.write_requirements(path)
    return path


def test_images_and_the_heads_wheels_stay_on_the_head_other_mounts_reach_the_workers(tmp_path, monkeypatch):
    wheels = wheel_folder(tmp_path / "wheels")
    shared_wheels = wheel_folder(tmp_path / "shared-wheels")
    (tmp_path / "data").mkdir()
    config = {"file_mounts": {"~/ray-vsphere-wheels": str(wheels), "~/worker-wheels": str(shared_wheels),
                              "~/data": str(tmp_path / "data"), "~/.ray/auth_token": str(tmp_path / "token"),
                              f"{head_config.HEAD_IMAGES}/node.ova": str(tmp_path / "node.ova"),
                              head_config.HEAD_PUBLIC_KEY: str(tmp_path / "key.pub"), head_config.HEAD_CA: "ca.pem"},
              "head_setup_commands": ["pip install --find-links ~/ray-vsphere-wheels -r ~/ray-vsphere-wheels/x"],
              "worker_setup_commands": ["pip install --find-links ~/worker-wheels ray-vsphere"]}
    head_only = head_config._head_only_mounts(config)
    assert head_only == ["~/ray-vsphere-wheels", f"{head_config.HEAD_IMAGES}/node.ova"]

    # The head's config (Ray gives it the mounts by their remote paths) leaves them out of its file mounts;
    # head_start still hands them to the autoscaler.
    key = make_key_pair(tmp_path / "ray-key")
    monkeypatch.setenv("VMWARE_PASSWORD", "s3cret-Passw0rd")
    for name, value in HEAD_ACCOUNT.items():
        monkeypatch.setenv(name, value)
    provider = dict(PROVIDER, ssh_private_key_file=str(key), ssh_public_key_file=f"{key}.pub",
                    **{head_config.HEAD_ONLY_MOUNTS: head_only})
    remote = VsphereNodeProvider(provider, "unit").prepare_for_head_node({
        "provider": dict(provider), "auth": {"ssh_user": "ubuntu"}, "available_node_types": {},
        "file_mounts": {path: path for path in config["file_mounts"]}})
    assert sorted(remote["file_mounts"]) == ["~/.ray/auth_token", "~/data", head_config.HEAD_PUBLIC_KEY,
                                             head_config.HEAD_CA, "~/worker-wheels"]
    assert head_start.mounted_for_autoscaler(remote) == [
        Path("ray_bootstrap_config.yaml"), Path("ray_bootstrap_key.pem"), Path("worker-wheels"), Path("data"),
        Path(".ray/auth_token"), Path("ray_bootstrap_key.pub"), Path("ray_vsphere_vcenter_ca.pem"),
        Path("ray-vsphere-wheels"), Path("ray_vsphere_images/node.ova")]
