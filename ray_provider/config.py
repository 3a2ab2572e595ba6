"""The provider section of a Ray cluster YAML: its keys, their checks, and vCenter credentials.

Two vCenter accounts take part in a cluster: the operator's (VMWARE_USER,
VMWARE_PASSWORD), which `ray up` and the playbooks use on the operator's
machine, and the head's own (RAY_VSPHERE_HEAD_USER, RAY_VSPHERE_HEAD_PASSWORD,
given to `ray up` on that machine only), which the head's autoscaler logs in
with: HeadAccount. The operator's password never goes to the head, unless the
cluster YAML says `head_vcenter_account: operator`.

Ray merges no defaults into an external provider's config, so every key the
provider reads is declared here once. The node settings are node_deploy's own
options, taken from its argument spec and checked with ansible-core's
validator and the module's rules: a new node_deploy option is a setting here
without an edit. `check_cluster_config` reports every problem at once, each
naming its key, before anything exists; what only vCenter can answer (does the
datastore exist?) is checked later by the read-only check playbook.
"""

import difflib
import hashlib
import os
from pathlib import Path

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.parsing.vault import VaultLib, VaultSecret

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ray_tags
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import (
    CONNECTION_ARGUMENT_SPEC, RayVsphereError)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import (
    DEPLOY_OPTIONS, MUTUALLY_EXCLUSIVE, REQUIRED_ONE_OF, across_problems, value_problems)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._gpu import GPU_OPTIONS
from ray_provider.docker_section import docker_problems
from ray_provider.ip_pools import cluster_pool_problems
from ray_provider.node_resources import gpu_setting_problems, resource_problems
from ray_provider.request_timeout import request_timeout_problem

# node_deploy options the provider sets on every launch, so a cluster YAML may
# not: the cluster, node kind and node type come from Ray's tags, how many and
# under which names from Ray's request (a fresh request id each), the tags are
# Ray's, and nodes are powered on and waited for because Ray needs their IPs.
# deploy_settings is the playbooks' record on a head for ray_workers; Ray keeps
# its launch config in its own tags. cluster_key_file is the cluster's own key (auth.ssh_private_key).
DECIDED_BY_PROVIDER = ("cluster_name", "node_kind", "node_type", "names", "count", "request_id", "tags", "power_on",
                       "wait_for_ip", "deploy_settings", "cluster_key_file", "service_users", "ssh_host_key")
# Any of them may be set in `provider` for every node type and overridden in a node type's `node_config`.
NODE_SETTINGS = {option: spec for option, spec in DEPLOY_OPTIONS.items() if option not in DECIDED_BY_PROVIDER}

# Only in `provider`: vcenter_<option> for every connection option of the modules
# (_client.CONNECTION_ARGUMENT_SPEC, the one place their types, VMWARE_* variables and
# defaults are declared). The password is not among them: it comes from
# VMWARE_PASSWORD, since Ray caches the config in plaintext and copies it to the head.
SECRET_CONNECTION_OPTIONS = ("password",)
CONNECTION_KEYS = {f"vcenter_{option}": dict(type=spec["type"]) for option, spec in CONNECTION_ARGUMENT_SPEC.items()
                   if option not in SECRET_CONNECTION_OPTIONS}
# Which vCenter account the head's autoscaler uses: its own (HEAD_ACCOUNT_VARIABLES), or the operator's.
OWN_ACCOUNT, OPERATOR_ACCOUNT = "own", "operator"
HEAD_KEYS = {"head_vcenter_account": dict(type="str", choices=[OWN_ACCOUNT, OPERATOR_ACCOUNT])}
# The head's own account, on the operator's machine only: never a cluster YAML key (Ray caches the YAML).
HEAD_USER_VARIABLE = "RAY_VSPHERE_HEAD_USER"
HEAD_PASSWORD_VARIABLE = "RAY_VSPHERE_HEAD_PASSWORD"
HEAD_ACCOUNT_VARIABLES = (HEAD_USER_VARIABLE, HEAD_PASSWORD_VARIABLE)
# The cluster's key when auth.ssh_private_key names none, made there if missing: the same file the playbooks
# default to (ray_cfg_default_ssh_private_key, playbooks/vars/ray_defaults.yml), since the key is the cluster's
# identity (tests/unit/test_default_cluster_key_path.py compares the two).
DEFAULT_CLUSTER_KEY = "~/.ssh/ray-vsphere-{cluster_name}"
# Written by bootstrap_config and prepare_for_head_node, not by users.
MANAGED_KEYS = {"ssh_private_key_file": dict(type="str"), "ssh_public_key_file": dict(type="str"),
                "vcenter_password_vault": dict(type="str"), "head_account_fingerprint": dict(type="str"),
                "node_folders": dict(type="list"), "head_only_file_mounts": dict(type="list"),
                "node_type_ip_policies": dict(type="dict")}
RAY_KEYS = {"type": dict(type="str"), "module": dict(type="str"), **{key: dict(type="bool") for key in (
    "use_internal_ips", "cache_stopped_nodes", "disable_launch_config_check", "disable_node_updaters",
    "foreground_node_launch", "worker_liveness_check")}}
# The token's epoch (ray_vsphere.cluster.ray_auth_token): raising it and running `ray up` again rotates the token.
TOKEN_KEYS = {"ray_token_epoch": dict(type="int")}
PROVIDER_KEYS = {**RAY_KEYS, **CONNECTION_KEYS, **HEAD_KEYS, **TOKEN_KEYS, **MANAGED_KEYS, **NODE_SETTINGS}

TYPE_NAMES = {"str": "a string", "path": "a path", "int": "an integer", "bool": "true or false", "dict": "a mapping",
              "list": "a list"}
# Types whose conversion of a string is the point (a path's ~ expanded), not a sign of a mistyped value.
CONVERTED_TYPES = ("path",)


class ClusterConfigError(ValueError):
    """A cluster YAML the provider cannot work with; the message lists every problem by key."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("The ray_vsphere cluster config is not valid; nothing was created:\n"
                         + "\n".join(f"  - {problem}" for problem in self.problems))


def _expected(spec):
    if spec.get("choices"):
        return "one of " + ", ".join(str(choice) for choice in spec["choices"])
    expected = TYPE_NAMES.get(spec["type"], f"of type {spec['type']}")
    expected = f"{expected} of {spec['elements']}" if spec.get("elements") else expected
    if spec.get("options"):  # gpus: a list of mappings with keys of their own
        keys = [f"{key} ({_expected(sub)}{', required' if sub.get('required') else ''})"
                for key, sub in spec["options"].items()]
        expected += " with the keys " + ", ".join(keys)
    return expected


def _as_written(checked, value):
    """Whether the check left value as written; sub-options it only filled with their defaults do not count."""
    if isinstance(value, dict) and isinstance(checked, dict):
        return all(key in checked and _as_written(checked[key], item) for key, item in value.items())
    if isinstance(value, list) and isinstance(checked, list):
        return len(checked) == len(value) and all(map(_as_written, checked, value))
    return type(checked) is type(value) and checked == value


def _type_problem(key, spec, value):
    """Why value does not fit the option's spec, by ansible-core's own check; None if it fits.

    A value the check would only convert (5 for a string, "8" for an integer)
    is refused too: the provider reads some settings as written (ovf as a
    path, cpus for Ray's resources), and Ray hashes the YAML as written.
    """
    # Whether an option is set, or falls back to its default, is a matter of a node
    # type's merged settings, where null unsets: not of one section's value.
    spec = {rule: setting for rule, setting in spec.items() if rule not in ("required", "default")}
    result = ArgumentSpecValidator({key: spec}).validate({key: value})
    checked = result.validated_parameters.get(key)
    converted = not _as_written(checked, value)
    expanded = spec["type"] in CONVERTED_TYPES and isinstance(value, str)
    if result.error_messages or (converted and not expanded):
        return f"must be {_expected(spec)}, not {value!r}"
    return None


def _section_problems(section, known, where):
    """Unknown keys, the refused password, values of the wrong type or below their minimum."""
    problems, fitting = [], {}
    for key, value in section.items():
        if key == "vcenter_password":
            problems.append(f"{where}.vcenter_password: do not write the password into the cluster YAML "
                            "(Ray caches it in plaintext and copies it to the head); export VMWARE_PASSWORD instead")
        elif key in DECIDED_BY_PROVIDER:
            problems.append(f"{where}.{key}: set by the provider on every launch, not in the cluster YAML")
        elif key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(sorted(known))}"
            problems.append(f"{where}.{key}: unknown key{hint}")
        elif problem := _type_problem(key, known[key], value):
            problems.append(f"{where}.{key}: {problem}")
        else:
            fitting[key] = value
    # The GPU options' rules run across a node type's merged settings (node_resources.gpu_setting_problems).
    single = {key: value for key, value in fitting.items() if key not in GPU_OPTIONS}
    return problems + [f"{where}.{option}: {problem}" for option, problem in value_problems(single)]


def _settable(groups):
    return [group for group in groups if set(group) <= set(NODE_SETTINGS)]


def _joined(options):
    return ", ".join(options[:-1]) + " and " + options[-1]


def _settings_problems(settings, where):
    """node_deploy's required options and its rules across options, on one node type's merged settings."""
    problems = [f"{where}.{option}: required (set it here or in provider.{option})"
                for option, spec in NODE_SETTINGS.items() if spec.get("required") and option not in settings]
    # Rules among settable options only: names and request_id, for one, are the provider's to set.
    for group in _settable(REQUIRED_ONE_OF):
        if not set(group) & set(settings):
            problems.append(f"{where}.{group[0]}: one of {_joined(group)} is required (here or in provider)")
    for group in _settable(MUTUALLY_EXCLUSIVE):
        if len(set(group) & set(settings)) > 1:
            problems.append(f"{where}.{group[0]}: only one of {_joined(group)} may be set (here or in provider)")
    return problems


def is_url(location):
    return location.startswith(("http://", "https://"))


def local_path(location):
    """A local image path as deployed and mounted: resolved, since `ray up` would copy a symlink as a link."""
    return str(Path(location).expanduser().resolve())


def node_settings(provider, node_config):
    """The node_deploy options of one node type: the provider's under its own node_config.

    An empty or null value unsets the setting, so a node type can drop one the provider sets for all.
    """
    settings = {key: value for key, value in provider.items() if key in NODE_SETTINGS}
    settings.update({key: value for key, value in (node_config or {}).items() if key in NODE_SETTINGS})
    settings = {key: value for key, value in settings.items() if value not in (None, "")}
    if isinstance(settings.get("ovf"), str) and not is_url(settings["ovf"]):
        settings["ovf"] = local_path(settings["ovf"])
    return settings


def node_folder(settings):
    """(datacenter, VM folder path) of one node type's settings; "" is the datacenter's VM folder."""
    return (settings.get("datacenter") or "", (settings.get("vm_folder") or "").strip("/"))


# Ray's `ray start` on a worker turns token authentication on only from the
# environment (ray/scripts/scripts.py: only the head's branch looks for a
# token file), and Ray's launcher has no hook to add to a command's environment.
AUTH_MODE_SETTING = "RAY_AUTH_MODE=token"


def _start_command_problems(config):
    """The start commands that would run Ray without token authentication."""
    problems = []
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for index, command in enumerate(config.get(key) or []):
            if isinstance(command, str) and "ray start" in command and AUTH_MODE_SETTING not in command:
                problems.append(f"{key}[{index}]: runs `ray start` without token authentication: "
                                f"prefix it with {AUTH_MODE_SETTING} (every node gets the cluster's token "
                                f"at ~/.ray/auth_token)")
    return problems


def head_account_mode(provider):
    return provider.get("head_vcenter_account") or OWN_ACCOUNT


def _head_account_problems(config):
    """What the head's own account cannot do: make a template. So every node type clones the head's.

    The autoscaler role has no import privileges (meta/vcenter_requirements.yml):
    the template the head's autoscaler clones workers from is the one `ray up`
    makes, as the operator, when it deploys the head. A node type with another
    image, folder or datacenter, or none to clone from, would need another.
    """
    provider = config.get("provider") or {}
    node_types = config.get("available_node_types") or {}
    head_type = node_types.get(config.get("head_node_type"))
    if head_account_mode(provider) != OWN_ACCOUNT or not isinstance(head_type, dict) \
            or not isinstance(head_type.get("node_config"), dict):
        return []
    why = ("the head's own vCenter account clones workers only from the template `ray up` makes from the head's "
           "image (it may not import an OVF); or set provider.head_vcenter_account: operator")
    head = node_settings(provider, head_type["node_config"])
    problems = []
    for type_name, node_type in node_types.items():
        if not isinstance(node_type, dict) or not isinstance(node_type.get("node_config"), dict):
            continue  # named by check_cluster_config
        settings = node_settings(provider, node_type["node_config"])
        where = f"available_node_types.{type_name}.node_config"
        if settings.get("clone_from_template") is False:
            problems.append(f"{where}.clone_from_template: must not be false: {why}")
        for option in ("ovf", "ovf_sha256", "datacenter", "vm_folder"):
            if settings.get(option) != head.get(option):
                problems.append(f"{where}.{option}: {settings.get(option)!r} is not the head's "
                                f"{head.get(option)!r}: {why}")
    ovf = head.get("ovf")
    if isinstance(ovf, str) and is_url(ovf) and not head.get("ovf_sha256"):
        # Without it the template is found by what the server says of the image (its ETag): once that changes,
        # the head's autoscaler would need a new template, which its account may not make.
        problems.append(f"provider.ovf_sha256: required for an image URL with the head's own vCenter account, so "
                        f"that the head finds the template `ray up` made from {ovf} whatever its server says "
                        "later; or set provider.head_vcenter_account: operator")
    return problems


def check_cluster_config(config):
    """Every problem of the provider section and the node types, by key; ClusterConfigError if any."""
    provider = config.get("provider") or {}
    problems = _section_problems(provider, PROVIDER_KEYS, "provider")
    # First: the name becomes file names (the key, the runs' folders) before vCenter sees it.
    try:
        _ray_tags.check_name(config.get("cluster_name"), "cluster_name")
    except RayVsphereError as error:
        problems.append(str(error))
    problems += _start_command_problems(config)
    problems += docker_problems(config)
    problems += _head_account_problems(config)
    timeout_problem = request_timeout_problem(provider.get("vcenter_request_timeout"),
                                              "provider.vcenter_request_timeout")
    if timeout_problem:
        problems.append(timeout_problem)
    if not (config.get("auth") or {}).get("ssh_user"):
        problems.append("auth.ssh_user: required: the user the cluster's SSH key logs in as (ubuntu on Ubuntu's cloud images and the test OVA)")
    node_types = config.get("available_node_types") or {}
    if not node_types:
        problems.append("available_node_types: at least one node type is required")
    typed_settings = []
    for type_name, node_type in node_types.items():
        where = f"available_node_types.{type_name}.node_config"
        node_config = node_type.get("node_config") if isinstance(node_type, dict) else None
        if not isinstance(node_config, dict):
            problems.append(f"{where}: must be a mapping, not {node_config!r}")
            continue
        problems += _section_problems(node_config, NODE_SETTINGS, where)
        settings = node_settings(provider, node_config)
        typed_settings.append((type_name, node_config, settings))
        problems += _settings_problems(settings, where)
        # A provider-level GPU setting's problem is the same line for every node type: named once.
        gpu_problems = gpu_setting_problems(settings, provider, node_config, where)
        problems += [problem for problem in gpu_problems if problem not in problems]
        problems += resource_problems(settings, node_type.get("resources"), f"available_node_types.{type_name}")
        ovf = settings.get("ovf")
        if isinstance(ovf, str) and not is_url(ovf) and not Path(ovf).is_file():
            origin = where if "ovf" in node_config else "provider"
            problems.append(f"{origin}.ovf: no such file: {ovf}")
        if isinstance(ovf, str):  # an http image and its hash may come from either section
            problems += [f"{where if option in node_config else 'provider'}.{option}: {problem}"
                         for option, problem in across_problems(settings)]
    problems += cluster_pool_problems(typed_settings, problems)
    if problems:
        raise ClusterConfigError(problems)


def connection_variable(option):
    """The VMWARE_* variable a connection option falls back to (AWX's VMware credential sets it)."""
    return CONNECTION_ARGUMENT_SPEC[option]["fallback"][1][0]


class VcenterCredentials:
    """Where and as whom to log in: provider keys first, then the VMWARE_* environment (as AWX injects it).

    Each option is read as the modules read it: its provider key
    vcenter_<option>, else its VMWARE_* variable, else its default, all from
    _client.CONNECTION_ARGUMENT_SPEC; so `ray up` and the playbook runs it
    starts use one request timeout (60 s, the modules'; a WaitForUpdatesEx
    is held well below it, _waiter.update_wait_seconds). A value that is not
    of the option's type is a ClusterConfigError naming where it came from.
    """

    def __init__(self, provider, environ=None):
        environ = os.environ if environ is None else environ
        problems = []
        values = {}
        for option in CONNECTION_ARGUMENT_SPEC:
            if option in SECRET_CONNECTION_OPTIONS:
                continue
            try:
                values[option] = _connection_value(option, provider, environ)
            except ValueError as error:
                problems.append(str(error))
        if problems:
            raise ClusterConfigError(problems)
        self.hostname, self.username, self.port = values["hostname"], values["username"], values["port"]
        self.validate_certs, self.ca_path = values["validate_certs"], values["ca_path"]
        self.request_timeout = values["request_timeout"]
        self.proxy_host, self.proxy_port = values["proxy_host"], values["proxy_port"]
        self.password = environ.get(connection_variable("password"))
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
        if self.validate_certs and self.ca_path and not Path(self.ca_path).is_file():
            problems.append(f"provider.vcenter_ca_path (or VMWARE_CA_PATH): no such file: {self.ca_path}")
        timeout_problem = request_timeout_problem(self.request_timeout, "provider.vcenter_request_timeout (or "
                                                  "VMWARE_REQUEST_TIMEOUT)")
        if timeout_problem:
            problems.append(timeout_problem)
        return problems

    def environment(self):
        """VMWARE_* but the password, for ansible-runner; the password goes as a vaulted variable."""
        values = {"hostname": self.hostname, "username": self.username, "port": self.port,
                  "validate_certs": str(self.validate_certs).lower(), "request_timeout": self.request_timeout,
                  "ca_path": self.ca_path, "proxy_host": self.proxy_host, "proxy_port": self.proxy_port}
        return {connection_variable(option): str(value) for option, value in values.items() if value is not None}

    def secret_vars(self):
        """What playbooks/provider/*.yml pass to every module as `password` (module_defaults)."""
        return {"ray_provider_vcenter_password": self.password}


def _connection_value(option, provider, environ):
    """One connection option: provider key, else VMWARE_* variable, else default; ValueError naming a bad value."""
    spec = CONNECTION_ARGUMENT_SPEC[option]
    key, variable = f"vcenter_{option}", connection_variable(option)
    value, source = provider.get(key), f"provider.{key}"
    if value is None or value == "":
        value, source = environ.get(variable), variable
    if value is None or value == "":
        return spec.get("default")
    kind = spec["type"]
    try:
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind == "bool":
            return boolean(value, strict=True)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: must be {TYPE_NAMES[kind]}, not {value!r}") from None
    if kind == "path":
        return str(Path(value).expanduser())
    return value


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


class HeadAccount:
    """The vCenter account the head's autoscaler logs in with, as `ray up` on the operator's machine sees it.

    Its own (the default): RAY_VSPHERE_HEAD_USER and RAY_VSPHERE_HEAD_PASSWORD,
    an account with the autoscaler role on the cluster's folder and placement
    (playbooks/vcenter_prepare.yml). Or, where no second account can be had
    and the cluster YAML says `head_vcenter_account: operator`, the operator's.
    """

    def __init__(self, provider, operator, environ=None):
        environ = os.environ if environ is None else environ
        self.mode = head_account_mode(provider)
        self.given = {name: environ.get(name) for name in HEAD_ACCOUNT_VARIABLES}
        self._operator_username = operator.username
        if self.mode == OPERATOR_ACCOUNT:
            self.username, self.password = operator.username, operator.password
        else:
            self.username, self.password = self.given[HEAD_USER_VARIABLE], self.given[HEAD_PASSWORD_VARIABLE]

    @property
    def given_any(self):
        """Whether the operator named a head account, or opted in to giving the head the operator's."""
        return self.mode == OPERATOR_ACCOUNT or any(self.given.values())

    def problems(self):
        given = [name for name, value in self.given.items() if value]
        if self.mode == OPERATOR_ACCOUNT:
            if given:
                return [f"provider.head_vcenter_account: operator gives the head your own vCenter account, yet "
                        f"{' and '.join(given)} name one of its own: unset them, or drop head_vcenter_account"]
            return []
        missing = [name for name in HEAD_ACCOUNT_VARIABLES if name not in given]
        if missing:
            return [f"{' and '.join(missing)}: not set. The Ray head's autoscaler logs in to vCenter with an "
                    f"account of its own, given to `ray up` only through {HEAD_USER_VARIABLE} and "
                    f"{HEAD_PASSWORD_VARIABLE}: make one with the role ray-vsphere-autoscaler on the cluster's "
                    "VM folder and placement (playbooks/vcenter_prepare.yml; docs/security.md). Or, to give "
                    "the head your own account, which any job on the head can then use, set "
                    "provider.head_vcenter_account: operator"]
        if self.username.casefold() == (self._operator_username or "").casefold():
            return [f"{HEAD_USER_VARIABLE}: {self.username!r} is the account `ray up` runs as (VMWARE_USER): give "
                    "the head an account of its own, or set provider.head_vcenter_account: operator"]
        return []
