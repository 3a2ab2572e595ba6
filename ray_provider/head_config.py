"""What `ray up` writes into the cluster config: bootstrap_config's checks and key, prepare_for_head_node's head config.

bootstrap_config runs on the operator's machine for every `ray` command: it
checks the config (keys, then vCenter read-only through check_config.yml),
gives the cluster its SSH key and token, and names every node type's VM
folder. prepare_for_head_node writes the config the head's autoscaler runs
with: the head's own vCenter account (its password as an Ansible Vault blob
keyed by the cluster's key), the CA, the images' paths on the head.
"""

import copy
import os
from pathlib import Path

from ray_provider.config import (DEFAULT_CLUSTER_KEY, HEAD_ACCOUNT_VARIABLES, OWN_ACCOUNT, ClusterConfigError, HeadAccount,
                                 VcenterCredentials, check_cluster_config, encrypt_secret, is_url, local_path,
                                 node_folder, node_settings)
from ray_provider import head_scope, head_wheels, ray_tls
from ray_provider.ip_policy import NODE_TYPE_IP_POLICIES, node_type_ip_policies
from ray_provider.runs import PlaybookRuns, check_failures, create_run_timeout

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import (_image_hash_cache, _ovf_package, _ray_auth,
                                                                         _ray_resources)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, VcenterClient

HEAD_PRIVATE_KEY = "~/ray_bootstrap_key.pem"
HEAD_PUBLIC_KEY = "~/ray_bootstrap_key.pub"
HEAD_IMAGES = "~/ray_vsphere_images"
# The CA that signed vCenter's certificate, for the head's autoscaler to verify it too.
HEAD_CA = "~/ray_vsphere_vcenter_ca.pem"
KEY_PATH_RECORD = "cluster-key-path"
# provider key: changes with the head's vCenter account, so that `ray up` sends the head a new password.
HEAD_ACCOUNT_FINGERPRINT = "head_account_fingerprint"
# provider key: the file mounts only the head uses, which its autoscaler does not sync to every worker it makes.
HEAD_ONLY_MOUNTS = "head_only_file_mounts"
# What a worker runs: a mount these name is a worker's too.
WORKER_COMMANDS = ("initialization_commands", "setup_commands", "worker_setup_commands", "worker_start_ray_commands")


def bootstrap_config(cluster_config, state_dir):
    """Check the config (keys, then vCenter read-only), and give it the cluster's SSH key."""
    config = copy.deepcopy(cluster_config)
    check_cluster_config(config)
    provider = config["provider"]
    credentials = VcenterCredentials(provider)
    head_account = HeadAccount(provider, credentials)
    # bootstrap_config runs for `ray down`, `ray exec` ... too, which need no head account: one not given
    # at all fails the head's launch (create_node) and prepare_for_head_node instead, before either acts.
    missing = credentials.problems() + (head_account.problems() if head_account.given_any else [])
    if missing:
        raise ClusterConfigError(missing)
    auth = config["auth"]
    private_key = Path(auth.get("ssh_private_key") or DEFAULT_CLUSTER_KEY.format(cluster_name=config["cluster_name"])).expanduser()
    if auth.get("ssh_private_key") and not private_key.is_file():
        raise ClusterConfigError([f"auth.ssh_private_key: no such file: {private_key}"])
    token_epoch = _token_epoch(provider)
    node_types = [{**node_settings(provider, node_type["node_config"]), "node_type": name}
                  for name, node_type in config["available_node_types"].items()]
    # The refresh reads the VMs under these folders only (`ray down` too): every node type's.
    provider["node_folders"] = [list(pair) for pair in sorted(set(node_folder(settings) for settings in node_types))]
    runner = PlaybookRuns(state_dir, config["cluster_name"], credentials).run(
        "check_config", {"ray_provider_cluster_name": config["cluster_name"],
                         "ray_provider_private_key": str(private_key),
                         "ray_provider_node_types": node_types}, raise_on_failure=False,
        timeout=max(create_run_timeout(node_type) for node_type in node_types))
    problems = check_failures(runner)
    if not problems and head_account.mode == OWN_ACCOUNT and head_account.given_any:
        # (a vCenter the check could not use would fail this login too)
        problems = _head_login_problems(credentials, head_account, node_types)
    if problems:
        raise ClusterConfigError(problems)
    provider[NODE_TYPE_IP_POLICIES] = node_type_ip_policies(config)
    cluster_key = _cluster_key(private_key, config["cluster_name"])
    if head_account.given_any:
        provider[HEAD_ACCOUNT_FINGERPRINT] = _head_account_fingerprint(cluster_key, head_account)
    auth["ssh_private_key"] = str(private_key)
    auth["ssh_public_key"] = f"{private_key}.pub"
    provider["ssh_private_key_file"] = str(private_key)
    provider["ssh_public_key_file"] = f"{private_key}.pub"
    _record_key_path(state_dir, config["cluster_name"], private_key)
    file_mounts = config.setdefault("file_mounts", {})
    file_mounts[HEAD_PUBLIC_KEY] = f"{private_key}.pub"
    # Every node, the workers included (the head's autoscaler mounts the same files on them).
    file_mounts[_ray_auth.TOKEN_PATH_ON_NODES] = str(_write_ray_auth_token(state_dir, cluster_key, token_epoch))
    file_mounts.update(ray_tls.tls_file_mounts(state_dir, cluster_key))  # beside the token
    if credentials.ca_path:
        file_mounts[HEAD_CA] = credentials.ca_path
    # The head's autoscaler deploys workers from the same image: an .ova, or an .ovf with its folder.
    for section in _sections_with_local_image(config):
        image = Path(local_path(section["ovf"]))
        file_mounts[_head_image(image)] = str(image.parent if image.suffix == ".ovf" else image)
    provider[HEAD_ONLY_MOUNTS] = _head_only_mounts(config)
    return config


def prepare_for_head_node(cluster_config, provider_config, credentials):
    """The config the head's autoscaler runs with: the head's own account, its password as an Ansible Vault blob.

    The blob is keyed by the cluster's private key, which the head holds
    too: it keeps the password out of logs and casual reads, not from
    code on the head. What limits a job on the head is the account: its
    own, with the autoscaler role, unless head_vcenter_account: operator.
    """
    head_account = HeadAccount(provider_config, credentials)
    problems = head_account.problems()
    if problems:
        raise ClusterConfigError(problems)
    config = copy.deepcopy(cluster_config)
    provider = config["provider"]
    provider.update(vcenter_hostname=credentials.hostname, vcenter_username=head_account.username,
                    vcenter_port=credentials.port, vcenter_validate_certs=credentials.validate_certs,
                    vcenter_request_timeout=credentials.request_timeout)
    provider["vcenter_password_vault"] = encrypt_secret(head_account.password, provider_config["ssh_private_key_file"])
    if credentials.ca_path:
        provider["vcenter_ca_path"] = HEAD_CA
    if head_account.mode == OWN_ACCOUNT:
        _pin_local_images(config)
    # The head's autoscaler syncs its config's file mounts to every worker it makes: not these (head_start
    # still hands them to the autoscaler).
    head_only = set(provider_config.get(HEAD_ONLY_MOUNTS) or [])
    config["file_mounts"] = {remote: local for remote, local in (config.get("file_mounts") or {}).items()
                             if remote not in head_only}
    provider["ssh_private_key_file"] = HEAD_PRIVATE_KEY
    provider["ssh_public_key_file"] = HEAD_PUBLIC_KEY
    config["auth"]["ssh_public_key"] = HEAD_PUBLIC_KEY  # Ray hashes it into the launch config
    for section in _sections_with_local_image(config):
        image = Path(local_path(section["ovf"]))
        section["ovf"] = f"{_head_image(image)}/{image.name}" if image.suffix == ".ovf" else _head_image(image)
    return config


def fillout_available_node_types_resources(cluster_config):
    """Fill what a node type's Ray resources miss from its node settings (the provider's under its node_config).

    CPU from cpus; GPU and accelerator_type:<model> from gpus or vgpu_profile
    (_ray_resources, which the playbooks' `ray start` options come from too).
    A resource the user set is kept: config.check_cluster_config names one that
    claims more GPUs than the node type is given.
    """
    config = copy.deepcopy(cluster_config)
    provider = config.get("provider") if isinstance(config.get("provider"), dict) else {}
    # Runs before Ray validates the config: a malformed node type is left for the checks to name.
    for node_type in (config.get("available_node_types") or {}).values():
        if not isinstance(node_type, dict):
            continue
        node_config, resources = node_type.get("node_config"), node_type.setdefault("resources", {})
        if isinstance(node_config, dict) and isinstance(resources, dict):
            for name, value in _settings_resources(node_settings(provider, node_config)).items():
                resources.setdefault(name, value)
    return config


def _settings_resources(settings):
    """The resources node settings give a node; what is malformed among them gives none (the checks name it)."""
    resources = {"CPU": settings["cpus"]} if type(settings.get("cpus")) is int else {}
    try:
        resources.update(_ray_resources.gpu_resources(settings))
    except (AttributeError, TypeError, ValueError):
        pass
    return resources


def recorded_key_path(state_dir, cluster_name):
    """Where bootstrap_config last found the cluster's key here, for the commands Ray runs without it; or None."""
    try:
        return (state_dir / cluster_name / KEY_PATH_RECORD).read_text().strip() or None
    except FileNotFoundError:
        return None


def _record_key_path(state_dir, cluster_name, private_key):
    record = state_dir / cluster_name / KEY_PATH_RECORD
    record.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    record.write_text(str(private_key))


def _pin_local_images(config):
    """Give every local image without one its ovf_sha256, so that the head's autoscaler never reads it.

    node_deploy finds the template by ovf_sha256 without opening the image,
    while a local image it opens (to hash it) it also checks against the
    placement with CreateImportSpec, which needs VApp.Import on the pool: a
    privilege the head's own account lacks. Hashed here, on the operator's
    machine, at every `ray up` (the cache node_deploy keeps spares a second
    hash of an unchanged file, not the manifest check's read), so a changed
    file is never taken for the template of the old one.
    """
    hashes = {}
    for section in _sections_with_local_image(config):
        if section.get("ovf_sha256"):
            continue
        image = local_path(section["ovf"])
        if image not in hashes:
            with _ovf_package.OvfPackage(image, hash_cache=_image_hash_cache.HashCache()) as package:
                hashes[image] = package.key()[len(_ovf_package.SHA256_KEY):]
        section["ovf_sha256"] = hashes[image]


def _head_login_problems(credentials, head_account, node_types):
    """The head's own account logs in, on the operator's machine, before anything is made for it, and reaches
    no VM beyond its folders (head_scope)."""
    client = VcenterClient(credentials.hostname, head_account.username, head_account.password, port=credentials.port,
                           validate_certs=credentials.validate_certs, request_timeout=credentials.request_timeout,
                           ca_path=credentials.ca_path, proxy_host=credentials.proxy_host,
                           proxy_port=credentials.proxy_port)
    try:
        client.connect()
    except RayVsphereError as error:
        if error.details.get("fault") == "InvalidLogin":
            return [f"{' / '.join(HEAD_ACCOUNT_VARIABLES)}: vCenter {credentials.hostname}:{credentials.port} "
                    f"rejected the login of the head's account {head_account.username!r}: wrong username or password"]
        return [f"{' / '.join(HEAD_ACCOUNT_VARIABLES)}: the head's account {head_account.username!r} could not "
                f"log in: {error}"]
    try:
        return head_scope.pool_privilege_problems(client.service_instance, head_account.username, node_types)
    finally:
        client.disconnect()


def _token_epoch(provider):
    """provider.ray_token_epoch (0 when unset), checked before anything is read or made."""
    try:
        return _ray_auth.token_epoch(provider.get("ray_token_epoch") or 0)
    except ValueError as error:
        raise ClusterConfigError([f"provider.ray_token_epoch: {error}"]) from error


def _cluster_key(private_key, cluster_name):
    try:
        return _ray_auth.ClusterKey.from_file(str(private_key), cluster_name, "auth.ssh_private_key")
    except _ray_auth.ClusterKeyError as error:
        raise ClusterConfigError([str(error)]) from error


def _head_account_fingerprint(cluster_key, head_account):
    """An HMAC of the head's account, keyed by the cluster's key (no password oracle to anyone without it).

    Ray hashes the cluster config into the head's runtime hash before it adds
    the head's bootstrap config to the file mounts, so without this a `ray up`
    that only brings a new head password finds the head up to date and never
    sends it the new Vault blob.
    """
    return _ray_auth.derive(cluster_key.secret, _ray_auth.PURPOSE_HEAD_ACCOUNT, head_account.username or "",
                            head_account.password or "")


def _write_ray_auth_token(state_dir, cluster_key, token_epoch):
    """The cluster's Ray token in a file of the provider's state (0600), for `ray up` to mount on every node.

    A new epoch gives the file new contents, so Ray's runtime hash of the
    file mounts changes: `ray up` restarts Ray on the head, whose autoscaler
    then updates every worker in place (the same VMs) with the new token.
    """
    token_file = state_dir / cluster_key.cluster_name / "ray-auth-token"
    token_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(cluster_key.ray_auth_token(token_epoch))
    return token_file


def _head_only_mounts(config):
    """The mounts no worker uses: the images the head's autoscaler deploys from, and the head's wheel folders
    (head_wheels.py's requirements.txt beside a ray-vsphere wheel) that no command a worker runs names.

    Ray's autoscaler would otherwise copy each to every worker it makes, two
    SSH round trips per mount: a multi-GiB image, and the wheels, at every
    scale-up.
    """
    worker_commands = "\n".join(command for key in WORKER_COMMANDS for command in config.get(key) or [])
    head_only = []
    for remote, local in config["file_mounts"].items():
        folder = Path(local).expanduser()
        wheels = (folder / head_wheels.REQUIREMENTS_FILE).is_file() and any(folder.glob("ray_vsphere-*.whl"))
        if remote.startswith(f"{HEAD_IMAGES}/") or (wheels and remote.rstrip("/") not in worker_commands):
            head_only.append(remote)
    return sorted(head_only)


def _sections_with_local_image(config):
    """The provider section and node_configs whose `ovf` is a local path, not a URL."""
    sections = [config["provider"]] + [t["node_config"] for t in config["available_node_types"].values()]
    return [section for section in sections if section.get("ovf") and not is_url(section["ovf"])]


def _head_image(image):
    """Where a local image is mounted on the head: the .ova, or the .ovf's folder."""
    return f"{HEAD_IMAGES}/{image.parent.name if image.suffix == '.ovf' else image.name}"
