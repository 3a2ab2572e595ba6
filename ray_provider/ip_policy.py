"""Which of a node's addresses Ray reaches it on: one policy per node type, at create and at every refresh.

A node type's `preferred_cidr` and `ignored_cidrs` (node_deploy's options,
set in `provider` or in the node type's `node_config`) pick the address
node_deploy waits for at create. The refresh must pick by the same rules, or
a multi-NIC node's internal_ip changes two seconds after its creation. The
provider's constructor gets only the provider section, so bootstrap_config
writes every node type's rules into it (NODE_TYPE_IP_POLICIES), which
prepare_for_head_node hands on to the head.
"""

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._records import USER_NODE_TYPE

from ray_provider.config import node_settings

NODE_TYPE_IP_POLICIES = "node_type_ip_policies"
IP_SETTINGS = tuple(_nodes.IP_OPTIONS)


def ip_settings(provider, node_config):
    """The IP options of one node type: node_deploy's defaults under the provider's under the node type's."""
    settings = node_settings(provider, node_config)
    merged = {option: spec.get("default") for option, spec in _nodes.IP_OPTIONS.items()}
    merged.update({option: settings[option] for option in IP_SETTINGS if option in settings})
    return merged


def node_type_ip_policies(config):
    """{node type: IP options} of a whole cluster config, for the provider section."""
    provider = config["provider"]
    return {name: ip_settings(provider, node_type.get("node_config"))
            for name, node_type in (config.get("available_node_types") or {}).items()}


class IpPolicies:
    """(preferred, ignored) networks by node type; a node of an unknown type gets the provider-wide rules."""

    def __init__(self, provider_config):
        self._provider = provider_config
        self._default = _nodes.ip_choice(ip_settings(provider_config, {}))
        self._by_type = {name: _nodes.ip_choice(settings)
                         for name, settings in (provider_config.get(NODE_TYPE_IP_POLICIES) or {}).items()}

    def learn(self, node_type, node_config):
        """The rules a create used for node_type, should the provider section not have them."""
        if node_type:
            self._by_type[node_type] = _nodes.ip_choice(ip_settings(self._provider, node_config))

    def choice(self, node_type):
        return self._by_type.get(node_type, self._default)

    def address(self, record):
        """The address to reach the node of a node_info-style record on, by its node type's rules."""
        addresses = record.get("ip_addresses")
        if addresses is None:  # a record that carries only its chosen address
            return record.get("ip")
        preferred, ignored = self.choice((record.get("tags") or {}).get(USER_NODE_TYPE))
        return _nodes.choose_ip(addresses, preferred, ignored)
