#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: node_deploy
short_description: Deploy Ray nodes on vSphere from an OVF or OVA, in parallel
version_added: 0.1.0
description:
  - Deploys O(count) Ray nodes (or the VMs named in O(names)) from a local OVF or OVA file or an http(s) URL,
    in one call and in parallel with at most O(parallel) at once.
  - Each VM carries its Ray tags (cluster name, node kind, user node type and O(tags)) as vCenter custom
    attributes, so any process that reads vCenter sees the same cluster, and its identity made with
    O(cluster_key_file), which the create call itself writes into the VM's C(extraConfig).
  - Fails before anything is created when the VM folder holds VMs of a cluster named O(cluster_name) whose
    identity O(cluster_key_file) does not verify, that is, a cluster of that name made with another key.
  - With O(clone_from_template=true) the OVF is imported once into a template kept per content hash and cluster key,
    and every node is cloned from it; linked clones where the template's datastore is the target datastore. Only a
    template made with O(cluster_key_file) is cloned (see the notes).
  - Placement, OVF and property names are all checked before anything is created. If any node fails
    (getting no IP in time included), every VM made by the call is removed.
  - Idempotent. Rerunning with the same O(names) or the same O(request_id) creates nothing new and
    reports C(changed=false); powered-off nodes are powered on when O(power_on=true).
author:
  - ray-vsphere maintainers (@ray-vsphere)
extends_documentation_fragment:
  - ray_vsphere.cluster.connection
  - ray_vsphere.cluster.cluster_key
  - ray_vsphere.cluster.gpus
  - ray_vsphere.cluster.ip_pool
  - ray_vsphere.cluster.ip_selection
  - ray_vsphere.cluster.placement
  - ray_vsphere.cluster.user_data
options:
  cluster_name:
    description: The Ray cluster the nodes belong to (custom attribute C(ray-cluster-name)).
    type: str
    required: true
  node_kind:
    description: The Ray node kind (custom attribute C(ray-node-type)).
    type: str
    choices: [head, worker]
    default: worker
  node_type:
    description: The user node type of the Ray cluster YAML (custom attribute C(ray-user-node-type)).
    type: str
  names:
    description:
      - The VM names to deploy. Overrides O(count) and O(request_id).
    type: list
    elements: str
  count:
    description: How many nodes to deploy when O(names) is not given.
    type: int
    default: 1
  request_id:
    description:
      - Names the nodes C(<cluster_name>-<node_type>-<request_id>-<index>) (C(<node_kind>) without O(node_type)),
        so that a retry with the same request id finds the nodes of the first try instead of creating more.
        The node type is written in lower case with every character other than a letter, digit or C(-)
        made a C(-), and shortened so that the name fits a host name (63 characters).
      - Every VM the call makes records it in its C(extraConfig) (C(ray-vsphere.request-id)), so that
        M(ray_vsphere.cluster.node_delete) can remove what a call cut short made, with O(ray_vsphere.cluster.node_delete#module:request_ids).
      - Without O(names) or O(request_id), every run creates O(count) new nodes.
    type: str
  tags:
    description: Further Ray tags, such as C(ray-launch-config) or C(ray-node-name).
    type: dict
    default: {}
  ovf:
    description:
      - Path of a local C(.ovf) (with its files beside it) or C(.ova), or an http(s) URL to either.
      - An C(http://) URL needs O(ovf_sha256), as over plain http the image could be swapped on its way, and it
        becomes every node's system. Without it the deploy fails before anything is made; so does an https URL
        redirected through http at any hop (each hop is checked before it is requested).
      - The package's manifest (the C(.mf) beside the descriptor, as ovftool writes it; fetched beside an C(.ovf)
        URL) must list the descriptor and every file it references, with a matching SHA1, SHA256 or SHA512. It may
        name only regular files of the package (members of the OVA; files in the C(.ovf)'s folder, no symlink out
        of it). A package without a manifest is taken only with O(ovf_sha256). All checked before anything is made.
      - With O(clone_from_template=true), a deploy whose template exists neither downloads nor hashes the image,
        in check mode too. The template is found by a key that costs no read of the image; see O(ovf_sha256)
        and the notes.
      - Check mode reads the OVF descriptor only (an OVA's leading tar members, through HTTP Range requests for a
        URL; a server that ignores Range gets a whole read and a warning) and checks it against the manifest and the
        placement. The disks' digests and O(ovf_sha256) are checked by the deploy, and in check mode only for a
        local image whose hash the hash cache holds.
    type: str
    required: true
  ovf_sha256:
    description:
      - The SHA-256 of the image in hex, as C(sha256sum image.ova) prints it. For an C(.ovf), of the descriptor
        followed by the files it references, in the order of its C(References) (C(cat image.ovf image-disk1.vmdk | sha256sum)).
      - When given, it is the key the template is found by, and the image, whenever it is read (downloaded, or
        imported from a local file), must have this hash, or the deploy fails before anything is created.
      - Required for an image without a manifest (C(.mf)).
      - The RV(image.sha256) a deploy returns is this value.
    type: str
  ovf_validate_certs:
    description:
      - Whether to check the TLS certificate of an https O(ovf) URL, against O(ovf_ca_path) if given, else the
        system's CA bundle.
      - Independent of O(validate_certs), which is for vCenter only.
    type: bool
    default: true
  ovf_ca_path:
    description:
      - A PEM file of the CA certificates to trust for an https O(ovf) URL, instead of the system's; for an image
        server whose certificate an internal CA signed.
    type: path
  cpus:
    description: Virtual CPUs per node; the OVF's if not set.
    type: int
  memory_mb:
    description: Memory per node in MiB; the OVF's if not set.
    type: int
  ovf_properties:
    description:
      - Values for the OVF's ProductSection properties. Names the OVF does not declare are an error.
      - Not C(user-data), an error since 0.2.0; it reaches only cloud-init's OVF datasource, which cloud-init 25.1
        and later no longer read once they found the C(guestinfo.metadata) every node gets. Give it as O(user_data).
      - C(instance-id), C(hostname) and C(public-keys), where the OVF declares them, default to the node's
        identity (see O(ssh_public_keys)).
    type: dict
    default: {}
  ssh_public_keys:
    description:
      - SSH public keys for the image's default user, given to cloud-init both ways vCenter can present
        them, so any cloud-init image takes them whichever source it reads first.
      - In C(guestinfo.metadata) (base64, cloud-init's VMware datasource) with the node's C(instance-id)
        (its vSphere instance UUID, unique per clone) and C(local-hostname) (the VM name); this works for
        any image, including one without a ProductSection (Packer-built).
      - And as the OVF properties C(public-keys), C(instance-id) and C(hostname), for those the OVF
        declares (cloud-init's OVF datasource reads them from C(guestinfo.ovfEnv)).
      - The instance-id and hostname are set that way even when no key is given.
    type: list
    elements: str
    default: []
  guestinfo:
    description:
      - C(guestinfo.*) extraConfig entries; the prefix is added.
      - Not C(userdata) nor C(userdata.encoding), an error since 0.2.0; cloud-init before 25.1 (Debian 12, Ubuntu
        without the backport) reads the OVF environment first where the OVF declares its transport, and never reads
        C(guestinfo.userdata) then. Give it as O(user_data).
    type: dict
    default: {}
  deploy_settings:
    description:
      - Settings to keep in vCenter with the nodes, such as the placement and image a cluster was deployed with,
        so that a later run can deploy more nodes alike given only the cluster's name (the C(ray_workers) playbook
        reads them from the head with M(ray_vsphere.cluster.node_info)).
      - Written as JSON into the extraConfig key C(ray-vsphere.deploy-settings) of every node this call creates,
        and rewritten on requested nodes that exist and record other settings (which counts as a change).
        Nothing is written when empty.
      - Not a C(guestinfo.*) key, so the guest cannot read it; but anyone who may read the VM's configuration in
        vCenter can. Never put a secret here. A URL in it that carries a credential (C(user:password@) in any
        scheme, any user in http(s), where tokens go) is refused before anything is made.
    type: dict
    default: {}
  power_on:
    description: Power the nodes on.
    type: bool
    default: true
  wait_for_ip:
    description:
      - Wait until every node reports a usable IP address (see O(preferred_cidr), O(ignored_cidrs)).
      - If that times out, the VMs this call created are removed (nodes that existed before are kept).
    type: bool
    default: false
  ip_timeout:
    description: Seconds to wait for the IP addresses.
    type: int
    default: 600
  clone_from_template:
    description:
      - Import the OVF once into a template per content hash and cluster key, and clone the nodes from it.
      - With V(false) the image is read (a URL downloaded) on every run and imported for every node.
    type: bool
    default: true
  linked_clone:
    description: Make linked clones when the template's datastore is O(datastore).
    type: bool
    default: true
  ssh_host_key:
    description:
      - Give each new node a fresh ed25519 SSH host key, made here, so the node can be checked against it on the
        first connection (strict host key checking) instead of trusting whoever answers at its address.
      - The key goes in the node's cloud-init user-data, both ways vCenter can present it (the OVF property
        C(user-data) where the OVF declares it, and C(guestinfo.userdata)), with C(ssh_deletekeys) so it is the
        only host key the node offers. Its public half is recorded in the VM's extraConfig
        (C(ray-vsphere.ssh-host-key)) and returned as RV(nodes[].ssh_host_key).
      - The private half stays readable, in the VM's vApp properties or guestinfo, to vCenter users who can read
        the VM's configuration, until it is removed once the node answered SSH with its key
        (O(ray_vsphere.cluster.node_tags#module:remove_host_private_keys)). cloud-init's VMware datasource is
        asked to C(redact) the guest's view of C(guestinfo.userdata) once it has read it.
      - Combines with O(user_data), which must then leave C(ssh_keys), C(ssh_deletekeys) and C(ssh_genkeytypes) alone.
    type: bool
    default: false
  service_users:
    description:
      - OS users the node's cloud-init makes at first boot, next to the image's default user, without sudo, password
        or SSH keys, for daemons that must not run as the default user, which has sudo on cloud images.
      - The Ray provider and C(ray_up.yml) ask for C(ray) on every node (Ray and every job run as it) and
        C(ray-autoscaler) on a provider head (the autoscaler, which holds the cluster's key, runs as it).
      - Like O(ssh_host_key), they go in the node's cloud-init user-data, beside O(user_data) if given.
    type: list
    elements: str
    default: []
  parallel:
    description: How many nodes are created at once.
    type: int
    default: 4
  timeout:
    description: Seconds any one vCenter task (import, clone) may take.
    type: int
    default: 1800
notes:
  - Supports check mode and diff mode.
  - The templates of the fast path are named C(ray-template-<hash>-<key id>) (the first 12 hex digits of the image's
    SHA-256, then 8 of a value derived from O(cluster_key_file)), and stay in the VM folder for later deploys of the
    same OVF with the same key. Clusters with other keys in one folder get templates of their own.
  - "A template is cloned only if its C(extraConfig) records the template identity that O(cluster_key_file) gives for
    its name and managed object id: a VM someone else put in the folder is ignored whatever else it records. A VM
    that has the name of the template to make but not its identity fails the deploy, naming it, before anything is
    made: remove it. Templates made before identities were recorded (C(ray-template-<hash>)) are no longer used;
    remove them by hand once no VM uses them."
  - "A template records in its extraConfig the image's SHA-256 (C(ray-vsphere.image-sha256)) and the key it is
    found by (C(ray-vsphere.image-key)), so a changed image gets a new template. The key is O(ovf_sha256) when
    given. Else, for a local file, its SHA-256, which a cache keyed by path, size, inode, modification and change
    time keeps (C($XDG_CACHE_HOME/ray-vsphere/ovf-sha256.json), by default in C(~/.cache); the 64 most recently
    used hashes), so an unchanged file is read once. For a URL, the response to one HEAD request: its strong
    C(ETag), or its C(Last-Modified) with its C(Content-Length) (a file replaced within the same second by one of
    the same size is not noticed: give O(ovf_sha256) where that can happen). A server that gives neither, or
    refuses HEAD, and a URL to an C(.ovf) (whose disks are separate files) mean a download and a hash on every run,
    unless O(ovf_sha256) is given. The URL is recorded without user, password and query string (only a hash of it)."
"""

EXAMPLES = r"""
- name: Deploy three Ray workers, reusing them on retry
  ray_vsphere.cluster.node_deploy:
    cluster_name: analytics
    node_kind: worker
    node_type: cpu_worker
    cluster_key_file: ~/.ssh/ray-analytics
    count: 3
    request_id: "{{ launch_id }}"
    ovf: https://images.example.com/ray-node.ova
    ovf_sha256: 3b9f0c1d2e4a5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8
    ovf_ca_path: /etc/pki/internal-ca.pem
    datacenter: DC1
    cluster: Compute
    resource_pool: ray
    vm_folder: ray/analytics
    datastore: vsanDatastore
    network: VM Network
    ssh_public_keys:
      - "{{ lookup('ansible.builtin.file', 'ray_key.pub') }}"
    wait_for_ip: true
    preferred_cidr: 10.20.0.0/16
  register: workers

- name: Deploy the head with its name, credentials from VMWARE_* variables
  ray_vsphere.cluster.node_deploy:
    cluster_name: analytics
    node_kind: head
    cluster_key_file: ~/.ssh/ray-analytics
    names: [analytics-head]
    ovf: /srv/images/ray-node.ova
    datacenter: DC1
    cluster: Compute
    datastore: vsanDatastore
    ssh_public_keys:
      - "{{ lookup('ansible.builtin.file', 'ray_key.pub') }}"

- name: Deploy workers with user-data of your own, beside their host keys and service users
  ray_vsphere.cluster.node_deploy:
    cluster_name: analytics
    cluster_key_file: ~/.ssh/ray-analytics
    ovf: /srv/images/ray-node.ova
    datacenter: DC1
    cluster: Compute
    datastore: vsanDatastore
    ssh_host_key: true
    service_users: [ray]
    user_data: {runcmd: [[systemctl, enable, --now, chrony]]}

- name: Deploy two GPU workers, each with one A100 by Dynamic DirectPath I/O, on hosts with a free one
  ray_vsphere.cluster.node_deploy:
    cluster_name: analytics
    node_type: gpu_worker
    cluster_key_file: ~/.ssh/ray-analytics
    count: 2
    ovf: /srv/images/ray-node.ova
    datacenter: DC1
    cluster: Compute
    datastore: vsanDatastore
    gpus:
      - {model: A100, vendor_id: 0x10de, device_id: 0x20b5}
  register: gpu_workers

- name: Deploy four workers with static addresses on a network without DHCP
  ray_vsphere.cluster.node_deploy:
    cluster_name: analytics
    node_type: cpu_worker
    cluster_key_file: ~/.ssh/ray-analytics
    count: 4
    request_id: "{{ launch_id }}"
    ovf: /srv/images/ray-node.ova
    datacenter: DC1
    cluster: Compute
    vm_folder: ray/analytics
    datastore: vsanDatastore
    network: ray-static
    ip_pool:
      cidr: 10.30.0.0/24
      range: 10.30.0.100-10.30.0.199
      gateway: 10.30.0.1
      dns_servers: [10.30.0.53]
      search_domains: [lab.example.com]
  register: static_workers

- name: Deploy a worker with a vGPU of a shared A100
  ray_vsphere.cluster.node_deploy:
    cluster_name: analytics
    node_type: vgpu_worker
    cluster_key_file: ~/.ssh/ray-analytics
    ovf: /srv/images/ray-node.ova
    datacenter: DC1
    cluster: Compute
    datastore: vsanDatastore
    vgpu_profile: grid_a100-20c
"""

RETURN = r"""
nodes:
  description: One record per requested node.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The VM name.
      type: str
      sample: analytics-worker-3f2a-0
    uuid:
      description: The VM's instance UUID; null in check mode for a node not yet made.
      type: str
      sample: 5029d4cb-5ad3-4d1c-b4b4-d3a6e6a8d5a1
    moid:
      description: The VM's managed object id.
      type: str
      sample: vm-1042
    power_state:
      description: poweredOn, poweredOff or suspended.
      type: str
      sample: poweredOn
    ip:
      description: The address to reach the node on, when known.
      type: str
      sample: 10.20.1.17
    ip_addresses:
      description: Every address the guest reports.
      type: list
      elements: str
      sample: [10.20.1.17]
    tags:
      description: The node's Ray tags.
      type: dict
      sample: {ray-cluster-name: analytics, ray-node-type: worker}
    deploy_settings:
      description: The O(deploy_settings) the node records; empty when none.
      type: dict
      sample: {datacenter: DC1, vsphere_cluster: Compute, datastore: vsanDatastore}
    ssh_host_key:
      description:
        - The public SSH host key the node was given at deploy (see O(ray_vsphere.cluster.node_deploy#module:ssh_host_key)),
          as recorded in its C(ray-vsphere.ssh-host-key) extraConfig; null for a node deployed without one.
      type: str
      sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4rT3vTt99Ox5kndS4HmgTrKBT8SKzhK4rhGkEVGlCI
created:
  description: Names of the nodes this run created (would create, in check mode).
  returned: always
  type: list
  elements: str
  sample: [analytics-worker-3f2a-0]
adopted:
  description: Names of VMs of an earlier, cut-short run of this cluster that this run tagged and kept.
  returned: always
  type: list
  elements: str
  sample: []
existing:
  description: Names of requested nodes that already existed.
  returned: always
  type: list
  elements: str
  sample: []
image:
  description: The image and its template.
  returned: always
  type: dict
  contains:
    template:
      description: The name of the template the nodes are (would be, in check mode) cloned from; null with
        O(clone_from_template=false), and in check mode when the image's hash is not known without reading it.
      type: str
      sample: ray-template-3b9f0c1d2e4a-5d41402a
    sha256:
      description: The image's SHA-256, as read or as the template records it; null with O(clone_from_template=false),
        and in check mode when it is not known without reading the whole image.
      type: str
      sample: 3b9f0c1d2e4a5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8
    key:
      description: The key the template was looked up by (see the notes); null when there was none.
      type: str
      sample: "https://images.example.com/ray-node.ova etag=\"5f3a-1234\" last-modified=Tue, 03 Mar 2026 10:00:00 GMT length=1073741824"
    downloaded:
      description: Whether this run downloaded the image from the O(ovf) URL.
      type: bool
      sample: false
gpu_hosts:
  description:
    - The ESXi host each node this run created (would create, in check mode) with O(gpus) or O(vgpu_profile) was
      placed on, by name; null where DRS lets vCenter pick. Empty without GPUs.
  returned: always
  type: dict
  sample: {analytics-gpu_worker-3f2a-0: esx1.example.com, analytics-gpu_worker-3f2a-1: esx2.example.com}
ip_pool_addresses:
  description:
    - The address each requested node holds from O(ip_pool) (would take, in check mode), by node name, as recorded
      in its C(ray-vsphere.ip-address) extraConfig. Empty without O(ip_pool).
  returned: always
  type: dict
  sample: {analytics-cpu_worker-3f2a-0: 10.30.0.100, analytics-cpu_worker-3f2a-1: 10.30.0.101}
failure:
  description: What failed, when the deploy failed for a reason callers act on; C(gpu_capacity) when no host has a
    free device for a GPU node (see O(gpus)), C(ip_pool_exhausted) when O(ip_pool) has fewer free addresses than
    new nodes, C(placement), C(no_ip_address).
  returned: on failure, for those reasons
  type: str
  sample: gpu_capacity
asked:
  description: How many addresses the deploy needed, with C(failure=ip_pool_exhausted).
  returned: with failure ip_pool_exhausted
  type: int
  sample: 4
free:
  description: How many addresses of O(ip_pool) were free, with C(failure=ip_pool_exhausted).
  returned: with failure ip_pool_exhausted
  type: int
  sample: 1
gpu_model:
  description: The GPU model no host had a free device of, with C(failure=gpu_capacity).
  returned: with failure gpu_capacity
  type: str
  sample: A100
diff:
  description: The cluster's requested node names before and after.
  returned: when diff mode is on
  type: dict
  sample: {before: {nodes: []}, after: {nodes: [analytics-worker-3f2a-0]}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import argument_spec, run_module
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import cluster_key_or_fail
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import DEPLOY_OPTIONS, MUTUALLY_EXCLUSIVE, REQUIRED_ONE_OF
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._build import deploy


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(**DEPLOY_OPTIONS),
        required_one_of=REQUIRED_ONE_OF,
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    cluster_key = cluster_key_or_fail(module)

    def action(client):
        result = deploy(client, module.params, module.check_mode, cluster_key)
        if module._diff:
            result["diff"] = dict(before=dict(nodes=result["existing"]),
                                  after=dict(nodes=sorted(node["name"] for node in result["nodes"])))
        return result

    run_module(module, action)


if __name__ == "__main__":
    main()
