# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: ray_nodes
short_description: The nodes of Ray clusters on vSphere as an inventory
version_added: 0.3.0
description:
  - Lists the nodes of one or more Ray clusters as Ansible hosts, as M(ray_vsphere.cluster.node_info) lists them. A
    VM is a node of a cluster only if it carries the custom attribute C(ray-cluster-name) with the cluster's name
    B(and) an identity the cluster's key (O(clusters[].cluster_key_file)) verifies in the folder it is in.
  - Reads the VMs of every cluster's VM folders and the custom attribute definitions in one PropertyCollector call,
    traversing from those folders only, so its cost is that of the clusters' folders, not of the vCenter. The folders
    themselves are looked up first, by name, as the modules look them up.
  - Puts each node in the groups C(ray_head) or C(ray_worker) (its C(ray-node-type) tag), C(ray_type_<node type>)
    (its C(ray-user-node-type) tag) and C(ray_cluster_<cluster name>), each name with every character other than
    letters, digits and C(_) replaced by C(_).
  - Sets C(ansible_host) to the address the node's guest reports that the IP rules of its node type choose, as
    M(ray_vsphere.cluster.node_deploy) and the Ray provider choose it, and C(ansible_user) to the cluster's SSH user.
    The host variables C(ray_cluster_name), C(ray_node_kind), C(ray_node_type), C(ray_tags), C(ray_uuid),
    C(ray_moid), C(ray_power_state), C(ray_ip_addresses), C(ray_ssh_host_key) and C(ray_verified) carry the rest.
  - VMs tagged with a cluster's name whose identity its key does not verify (a cluster of the same name made with
    another key, a VM someone tagged by hand, a copy of a node) are left out, or put in O(unverified_group) only.
  - The connection options and their E(VMWARE_*) variables are those of every module of the collection, so an AWX
    inventory source gets them from the same credential as the job templates.
author:
  - ray-vsphere maintainers (@ray-vsphere)
extends_documentation_fragment:
  - ray_vsphere.cluster.connection
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: The name of this plugin, which marks a file as its configuration.
    type: str
    required: true
    choices: [ray_vsphere.cluster.ray_nodes]
  hostname:
    env:
      - name: VMWARE_HOST
  username:
    env:
      - name: VMWARE_USER
  password:
    env:
      - name: VMWARE_PASSWORD
  port:
    env:
      - name: VMWARE_PORT
  validate_certs:
    env:
      - name: VMWARE_VALIDATE_CERTS
  ca_path:
    env:
      - name: VMWARE_CA_PATH
  request_timeout:
    env:
      - name: VMWARE_REQUEST_TIMEOUT
  proxy_host:
    env:
      - name: VMWARE_PROXY_HOST
  proxy_port:
    env:
      - name: VMWARE_PROXY_PORT
  clusters:
    description:
      - The Ray clusters to list, each with its key and its VM folders.
      - Their values may be templates, evaluated when the inventory is built, for example a lookup of an environment
        variable that an AWX inventory source sets from its source variables (C(awx/inventory/ray.ray_nodes.yml)).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The Ray cluster's name (its C(cluster_name)).
        type: str
        required: true
      cluster_key_file:
        description:
          - The cluster's private SSH key, a file on the machine the inventory is built on, as
            O(ray_vsphere.cluster.node_info#module:cluster_key_file) takes it. Never sent anywhere.
          - Not set means O(cluster_key_file); one of the two is required.
          - A missing or unreadable file, or one that holds no private key, fails before any vCenter call.
        type: path
      datacenter:
        description:
          - The datacenter of O(clusters[].vm_folders), as O(ray_vsphere.cluster.node_info#module:datacenter) takes it.
          - Without it every VM of the vCenter is read, for every cluster listed.
        type: str
      vm_folders:
        description:
          - The VM folders the cluster's nodes are in, as O(ray_vsphere.cluster.node_info#module:vm_folders) takes
            them; empty is the datacenter's VM folder.
        type: list
        elements: str
        aliases: [vm_folder]
      ssh_user:
        description:
          - The user C(ansible_user) names, the one the cluster's key logs in as (the Ray cluster YAML's
            C(auth.ssh_user)).
          - Not set means the C(ssh_user) the playbooks recorded on the cluster's head, if any; else no C(ansible_user).
        type: str
      preferred_cidr:
        description:
          - Prefer a node address in this network, as O(ray_vsphere.cluster.node_deploy#module:preferred_cidr) does.
          - Not set means the C(preferred_cidr) the playbooks recorded on the cluster's head, if any.
        type: str
      ignored_cidrs:
        description:
          - Networks whose addresses are used only when a node reports no other, as
            O(ray_vsphere.cluster.node_deploy#module:ignored_cidrs) takes them; not set means its default.
        type: list
        elements: str
      node_types:
        description:
          - The IP rules of single node types, each node type's name mapped to its own C(preferred_cidr) and
            C(ignored_cidrs), as a Ray cluster YAML sets them in a node type's C(node_config) over the C(provider)
            section.
          - A node type's value wins over the cluster's; an empty value unsets it.
        type: dict
        default: {}
  cluster_key_file:
    description:
      - The private SSH key of every cluster in O(clusters) that names none of its own.
      - The AWX credential type C(awx/credential_types/ray_inventory.yml) sets E(RAY_VSPHERE_CLUSTER_KEY_FILE) to the
        file of the key it holds.
    type: path
    env:
      - name: RAY_VSPHERE_CLUSTER_KEY_FILE
  unverified_group:
    description:
      - A group to put the VMs in that are tagged with a listed cluster's name but whose identity its key does not
        verify; with C(ray_verified=false), no C(ansible_user), and in no other group of this plugin.
      - Not set leaves them out.
    type: str
notes:
  - Read-only. With O(cache) on, vCenter is read only when the cache has no entry for this source or it expired.
seealso:
  - module: ray_vsphere.cluster.node_info
"""

EXAMPLES = r"""
# inventory/ray.ray_nodes.yml; vCenter from VMWARE_HOST, VMWARE_USER, VMWARE_PASSWORD, VMWARE_CA_PATH:
#   ansible-inventory -i inventory/ray.ray_nodes.yml --graph
plugin: ray_vsphere.cluster.ray_nodes
clusters:
  - name: analytics
    cluster_key_file: ~/.ssh/ray-vsphere-analytics
    datacenter: DC1
    vm_folders: [ray/analytics]
    ssh_user: ubuntu
    preferred_cidr: 10.20.0.0/16
    node_types:
      gpu_worker:
        preferred_cidr: 10.30.0.0/16
  - name: nightly
    cluster_key_file: ~/.ssh/ray-vsphere-nightly
    datacenter: DC1
    vm_folders: [ray/nightly]
unverified_group: ray_unverified
# Ansible's constructed features, over the host variables above.
compose:
  ray_status: ray_tags['ray-node-status'] | default('')
keyed_groups:
  - key: ray_power_state
    prefix: power
groups:
  ray_gpu: ray_node_type is search('gpu')
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/ray_nodes
cache_timeout: 300
"""

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _client, _node_inventory, _ray_auth

CONFIG_SUFFIXES = ("ray_nodes.yml", "ray_nodes.yaml")


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "ray_vsphere.cluster.ray_nodes"

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith(CONFIG_SUFFIXES)

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)
        clusters, keys = self._clusters()
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        hosts = None
        if use_cache:
            hosts = self._cache.get(cache_key)
        if hosts is None:
            hosts = self._read(clusters, keys)
            if self.get_option("cache"):
                self._cache[cache_key] = hosts
        self._populate(hosts)

    def _clusters(self):
        """(validated `clusters` entries, their ClusterKeys); AnsibleParserError naming the entry, before any call."""
        clusters, keys = [], []
        for index, entry in enumerate(self.get_option("clusters") or []):
            where = "clusters[%d]" % index
            if not isinstance(entry, dict):
                raise AnsibleParserError("%s: must be a mapping with name and cluster_key_file" % where)
            entry = self.templar.template(entry)  # the configuration file is the user's own, trusted as templates
            if not entry.get("cluster_key_file"):  # a null one too: the validator takes a null value as given
                entry = dict((key, value) for key, value in entry.items() if key != "cluster_key_file")
                if self.get_option("cluster_key_file"):
                    entry["cluster_key_file"] = self.get_option("cluster_key_file")
            result = ArgumentSpecValidator(_node_inventory.CLUSTER_OPTIONS,
                                           required_by=dict(vm_folders="datacenter")).validate(entry)
            if result.error_messages:
                hint = (" (give it in the entry, or cluster_key_file or RAY_VSPHERE_CLUSTER_KEY_FILE for all)"
                        if not entry.get("cluster_key_file") else "")
                raise AnsibleParserError("%s: %s%s" % (where, "; ".join(result.error_messages), hint))
            cluster = result.validated_parameters
            if not cluster["name"].strip():
                raise AnsibleParserError("%s.name is empty: name the Ray cluster to list" % where)
            try:
                _node_inventory.check_node_types(cluster, where)
                keys.append(_ray_auth.ClusterKey.from_file(cluster["cluster_key_file"], cluster["name"],
                                                           option="%s.cluster_key_file" % where))
            except (_ray_auth.ClusterKeyError, _client.RayVsphereError) as error:
                raise AnsibleParserError(str(error))
            clusters.append(cluster)
        if not clusters:
            raise AnsibleParserError("clusters: name at least one Ray cluster, with its cluster_key_file")
        return clusters, keys

    def _connection(self):
        params = dict((option, self.get_option(option)) for option in _client.CONNECTION_ARGUMENT_SPEC)
        if params["password"] is not None:
            params["password"] = str(params["password"])  # a vaulted value decrypts here
        missing = _client.missing_connection(params)
        if missing:
            raise AnsibleParserError("missing vCenter connection: set %s" % ", ".join(missing))
        if not params["validate_certs"]:
            self.display.warning(_client.UNVERIFIED_TLS_WARNING % params["hostname"])
        return params

    def _read(self, clusters, keys):
        """[{name, groups, vars}] of every cluster's hosts, read from vCenter in one session."""
        if _client.PYVMOMI_IMPORT_ERROR:
            raise AnsibleParserError("the ray_vsphere.cluster.ray_nodes inventory needs the Python package pyVmomi")
        params = self._connection()
        unverified_group = self.get_option("unverified_group")
        try:
            with _client.client_from_params(params) as client:
                found = _node_inventory.read_clusters(client.service_instance, clusters, keys)
        except _client.RayVsphereError as error:
            raise AnsibleParserError(str(error))
        except _client.vmodl.MethodFault as error:
            raise AnsibleParserError("vCenter call failed: %s" % _client.fault_text(error))
        hosts = []
        for cluster, (records, unverified) in zip(clusters, found):
            hosts.extend(_node_inventory.inventory_hosts(cluster, records, unverified, unverified_group))
        return hosts

    def _populate(self, hosts):
        strict = self.get_option("strict")
        for host in hosts:
            name = self.inventory.add_host(host["name"])
            for group in host["groups"]:
                self.inventory.add_child(self.inventory.add_group(group), name)
            for variable, value in host["vars"].items():
                self.inventory.set_variable(name, variable, value)
            host_vars = self.inventory.get_host(name).get_vars()
            self._set_composite_vars(self.get_option("compose"), host_vars, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), host_vars, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), host_vars, name, strict=strict)
