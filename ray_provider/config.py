"""The provider section of a Ray cluster YAML: its keys, their checks, and vCenter credentials.

Ray merges no defaults into an external provider's config, so every key the
provider reads is declared here once, with its type. `check_cluster_config`
reports every problem at once, each naming its key, before anything exists;
what only vCenter can answer (does the datastore exist?) is checked later by
the read-only check playbook.
"""

import difflib
import hashlib
import os
from pathlib import Path

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.parsing.vault import VaultLib, VaultSecret

# Where the nodes go; any of them may be set in `provider` for every node
# type and overridden in a node type's `node_config`.
PLACEMENT_KEYS = {
    "ovf": str, "datacenter": str, "cluster": str, "esxi_host": str, "resource_pool": str,
    "vm_folder": str, "datastore": str, "network": str,
}
NODE_KEYS = {
    "cpus": int, "memory_mb": int, "ovf_properties": dict, "clone_from_template": bool, "linked_clone": bool,
    "preferred_cidr": str, "ip_timeout": int, "parallel": int,
}
NODE_SETTING_KEYS = {**PLACEMENT_KEYS, **NODE_KEYS}
REQUIRED_NODE_KEYS = ("ovf", "datacenter", "datastore")
POSITIVE_KEYS = ("cpus", "memory_mb", "ip_timeout", "parallel")

# Only in `provider`. The password is not among them: it comes from
# VMWARE_PASSWORD, since Ray caches the config in plaintext and copies it to the head.
CONNECTION_KEYS = {"vcenter_hostname": str, "vcenter_port": int, "vcenter_username": str, "vcenter_validate_certs": bool}
# Written by bootstrap_config and prepare_for_head_node, not by users.
MANAGED_KEYS = {"ssh_private_key_file": str, "ssh_public_key_file": str, "vcenter_password_vault": str}
RAY_KEYS = {"type": str, "module": str, "use_internal_ips": bool, "cache_stopped_nodes": bool,
            "disable_launch_config_check": bool, "disable_node_updaters": bool, "foreground_node_launch": bool,
            "worker_liveness_check": bool}
PROVIDER_KEYS = {**RAY_KEYS, **CONNECTION_KEYS, **MANAGED_KEYS, **NODE_SETTING_KEYS}


class ClusterConfigError(ValueError):
    """A cluster YAML the provider cannot work with; the message lists every problem by key."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("The ray_vsphere cluster config is not valid; nothing was created:\n"
                         + "\n".join(f"  - {problem}" for problem in self.problems))


def _type_name(expected):
    return {str: "a string", int: "an integer", bool: "true or false", dict: "a mapping"}[expected]


def _check_keys(section, known, where, problems):
    for key, value in section.items():
        if key == "vcenter_password":
            problems.append(f"{where}.vcenter_password: do not write the password into the cluster YAML "
                            "(Ray caches it in plaintext and copies it to the head); export VMWARE_PASSWORD instead")
        elif key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(sorted(known))}"
            problems.append(f"{where}.{key}: unknown key{hint}")
        elif not _has_type(value, known[key]):
            problems.append(f"{where}.{key}: must be {_type_name(known[key])}, not {value!r}")
        elif key in POSITIVE_KEYS and value < 1:
            problems.append(f"{where}.{key}: must be at least 1, not {value}")


def _has_type(value, expected):
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def is_url(location):
    return location.startswith(("http://", "https://"))


def local_path(location):
    """A local image path as deployed and mounted: resolved, since `ray up` would copy a symlink as a link."""
    return str(Path(location).expanduser().resolve())


def node_settings(provider, node_config):
    """The settings of one node type: the provider's defaults under its own node_config."""
    settings = {key: value for key, value in provider.items() if key in NODE_SETTING_KEYS}
    settings.update({key: value for key, value in (node_config or {}).items() if key in NODE_SETTING_KEYS})
    if settings.get("ovf") and not is_url(settings["ovf"]):
        settings["ovf"] = local_path(settings["ovf"])
    return settings


def check_cluster_config(config):
    """Every problem of the provider section and the node types, by key; ClusterConfigError if any."""
    problems = []
    provider = config.get("provider") or {}
    _check_keys(provider, PROVIDER_KEYS, "provider", problems)
    if provider.get("cache_stopped_nodes"):
        problems.append("provider.cache_stopped_nodes: not supported: terminated nodes are deleted "
                        "(new ones are cloned from a template, which is as fast)")
    if not (config.get("auth") or {}).get("ssh_user"):
        problems.append("auth.ssh_user: required: the user the cluster's SSH key logs in as (root on the test OVA)")
    node_types = config.get("available_node_types") or {}
    if not node_types:
        problems.append("available_node_types: at least one node type is required")
    for type_name, node_type in node_types.items():
        where = f"available_node_types.{type_name}.node_config"
        node_config = node_type.get("node_config") if isinstance(node_type, dict) else None
        if not isinstance(node_config, dict):
            problems.append(f"{where}: must be a mapping, not {node_config!r}")
            continue
        _check_keys(node_config, NODE_SETTING_KEYS, where, problems)
        settings = node_settings(provider, node_config)
        for key in REQUIRED_NODE_KEYS:
            if not settings.get(key):
                problems.append(f"{where}.{key}: required (set it here or in provider.{key})")
        if not settings.get("cluster") and not settings.get("esxi_host"):
            problems.append(f"{where}.cluster: one of cluster and esxi_host is required (here or in provider)")
        ovf = settings.get("ovf")
        if isinstance(ovf, str) and ovf and not is_url(ovf) and not Path(ovf).is_file():
            origin = where if "ovf" in node_config else "provider"
            problems.append(f"{origin}.ovf: no such file: {ovf}")
    if problems:
        raise ClusterConfigError(problems)


class VcenterCredentials:
    """Where and as whom to log in: provider keys first, then the VMWARE_* environment (as AWX injects it)."""

    def __init__(self, provider, environ=None):
        environ = os.environ if environ is None else environ
        self.hostname = provider.get("vcenter_hostname") or environ.get("VMWARE_HOST")
        self.username = provider.get("vcenter_username") or environ.get("VMWARE_USER")
        self.port = int(provider.get("vcenter_port") or environ.get("VMWARE_PORT") or 443)
        validate = provider.get("vcenter_validate_certs")
        # Read as the modules' validate_certs option reads its VMWARE_VALIDATE_CERTS fallback.
        self.validate_certs = boolean(environ.get("VMWARE_VALIDATE_CERTS", True)) if validate is None else validate
        self.password = environ.get("VMWARE_PASSWORD")
        if not self.password and provider.get("vcenter_password_vault"):
            self.password = decrypt_secret(provider["vcenter_password_vault"], provider["ssh_private_key_file"])

    def problems(self):
        problems = []
        if not self.hostname:
            problems.append("VMWARE_HOST: not set (nor provider.vcenter_hostname): which vCenter to use")
        if not self.username:
            problems.append("VMWARE_USER: not set (nor provider.vcenter_username)")
        if not self.password:
            problems.append("VMWARE_PASSWORD: not set: the vCenter password comes only from the environment")
        return problems

    def environment(self):
        """VMWARE_* but the password, for ansible-runner; the password goes as a vaulted variable."""
        return {"VMWARE_HOST": self.hostname, "VMWARE_USER": self.username,
                "VMWARE_PORT": str(self.port), "VMWARE_VALIDATE_CERTS": str(self.validate_certs).lower()}

    def secret_vars(self):
        """What playbooks/provider/*.yml pass to every module as `password` (module_defaults)."""
        return {"ray_provider_vcenter_password": self.password}


def _vault(key_file):
    # Keyed by the cluster's private key, which the head holds anyway to reach
    # its workers: the password never sits in a file or log in clear, and
    # whoever can read it already controls the cluster's nodes.
    secret = hashlib.sha256(Path(key_file).expanduser().read_bytes()).hexdigest().encode()
    return VaultLib([("ray_vsphere", VaultSecret(secret))])


def encrypt_secret(text, key_file):
    return _vault(key_file).encrypt(text).decode()


def decrypt_secret(blob, key_file):
    return _vault(key_file).decrypt(blob.encode()).decode()
