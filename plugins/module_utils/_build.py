# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Deploy Ray nodes from an OVF: many in one call, in parallel, idempotent, all or nothing.

deploy() checks everything before anything is created (the request, the
placement, name clashes, the OVF against the placement), then makes each node
(a clone of the image's template, see _templates, or an import of the OVF),
tags it and powers it on, and waits for its address if asked. Every VM the
call makes is recorded in one _ledger.Ledger when the call that makes it is
sent, and whatever stops the deploy, the ledger removes them all.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import functools
import json

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_GPU_CAPACITY, RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import (
    _clone, _gpu, _gpu_placement, _guest_ip, _ip_pool, _ledger, _nfc, _nodes, _placement, _records, _templates,
    _vsphere, _waiter)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import DeployRequest

try:
    from pyVmomi import vim
except ImportError:
    pass  # reported by _client.run_module

# All a deploy reads, of the VMs in its folder only: the nodes (name clashes, existing and
# adoptable nodes), the templates of the clone fast path, by the keys they record, and the
# addresses the VMs hold from a pool (ip_pool's ledger).
READ_PATHS = _nodes.NODE_PATHS + _records.keyed_paths(_records.TEMPLATE_KEYS + (_records.IP_ADDRESS,))
# What the re-read of the folder's address records after the creates reads (the duplicate rule: _ip_pool).
ADDRESS_PATHS = ["parent"] + _records.keyed_paths((_records.IP_ADDRESS,))
# How often a node that lost its address to an older VM is made again before the deploy gives up.
MAX_ADDRESS_ROUNDS = 5


def deploy(client, params, check_mode, cluster_key):
    """node_deploy's result for params; nothing of what it made is left when it fails."""
    service_instance = client.service_instance
    request = DeployRequest(params, cluster_key)
    placement = _placement.resolve(service_instance, params)
    request.placed(placement.folder._moId, _records.vcenter_uuid(service_instance))
    inventory = _nodes.Inventory(service_instance, [placement.folder], READ_PATHS)
    refuse_name_clash(inventory, placement.folder, request)
    existing, adoptable, missing = _sort_names(inventory, placement.folder, request)
    _choose_addresses(inventory, placement.folder, request, existing, adoptable, missing)
    with _ledger.Ledger(service_instance, "deploying nodes of Ray cluster %s" % request.cluster_name) as ledger:
        with _templates.Image(service_instance, params, inventory, placement.folder, request.template_identity,
                              check_mode) as image:
            declared = image.declared_properties()
            if image.package.opened:
                # Validates the OVF against the placement (networks, disks) and the
                # property names, which are the same for every node, before anything exists.
                _nfc.import_spec(service_instance, image.package, request.names[0], placement,
                                 request.ovf_properties(declared, request.names[0]),
                                 functools.partial(request.configure, name=request.names[0]))
            else:
                # A template made from this image in this folder: it passed that
                # check when it was imported, so only the property names are checked.
                request.ovf_properties(declared, request.names[0])
            to_power_on = [name for name, (vm, props) in existing.items()
                           if params["power_on"] and props.get("runtime.powerState") != vim.VirtualMachine.PowerState.poweredOn]
            to_record = [name for name, (vm, props) in existing.items()
                         if request.deploy_settings and _records.deploy_settings(props) != request.deploy_settings]
            changed = bool(missing or adoptable or to_power_on or to_record)
            if missing or adoptable:
                # The custom attributes the nodes (and a new template) get: defined beforehand, or nothing is made.
                inventory.attributes.require(set(request.tags) | (
                    {_records.TEMPLATE_HASH} if missing and params["clone_from_template"] else set()))
            gpu_plan = None
            if request.gpu is not None and missing:
                problem = _gpu.api_problem(service_instance.content.about, request.gpu)
                if problem:
                    raise RayVsphereError(problem)
                # A host with a free device for each new node, or a failure naming the model, before anything is made.
                gpu_plan = _gpu_placement.GpuPlan(service_instance, placement, request.gpu,
                                                  lambda: [vm._moId for vm in ledger.vms().values()], _where(params))
                gpu_plan.assign(missing)
            gpu_hosts = gpu_plan.report() if gpu_plan else {}
            if check_mode:
                return dict(_predicted(inventory, request, existing, adoptable, changed), image=image.result(),
                            gpu_hosts=gpu_hosts, ip_pool_addresses=_pool_addresses(request))
            _record_deploy_settings(service_instance, request, dict((name, existing[name][0]) for name in to_record))
            builder = _NodeBuilder(client, image, placement, request, inventory, declared, ledger, gpu_plan)
            builder.create(missing, adoptable, [existing[name][0] for name in to_power_on])
        vms = dict((vm, name) for name, vm in ledger.vms().items())
        vms.update((vm, name) for name, (vm, props) in existing.items())
        if params["wait_for_ip"] and params["power_on"]:
            # A node that never gets an address is a failed node: the call is all or nothing.
            _guest_ip.wait_for_ips(service_instance, vms, request, params["ip_timeout"])
    final = _nodes.Inventory(service_instance, [placement.folder], _nodes.LIST_PATHS)
    nodes = [final.record(vm, request.preferred, request.ignored) for vm, name in sorted(vms.items(), key=lambda item: item[1])]
    return dict(changed=changed, nodes=nodes, created=sorted(missing), adopted=sorted(adoptable),
                existing=sorted(existing), image=image.result(), gpu_hosts=gpu_plan.report() if gpu_plan else {},
                ip_pool_addresses=_pool_addresses(request))


def _choose_addresses(inventory, folder, request, existing, adoptable, missing):
    """Give each new node the lowest free address of the pool, before anything is made; failing when too few are free.

    Free: not recorded by any VM of the folder, whichever cluster's. Existing
    nodes and adoptable leftovers keep the address they record; a leftover
    without one (made before the pool was asked for) takes a new one.
    """
    if request.pool is None:
        return
    records = _ip_pool.recorded(inventory.vms, folder)
    held = dict((name, vm) for name, (vm, props) in existing.items())
    held.update(adoptable)
    request.addresses.update((name, records[vm._moId]) for name, vm in held.items() if vm._moId in records)
    needing = [name for name in request.names
               if name in missing or (name in adoptable and name not in request.addresses)]
    request.addresses.update(zip(needing, request.pool.choose(len(needing), records.values())))


def _pool_addresses(request):
    return dict((name, request.addresses[name]) for name in request.names if name in request.addresses)


def _where(params):
    return "cluster %s" % params["cluster"] if params.get("cluster") else "ESXi host %s" % params["esxi_host"]


def _record_deploy_settings(service_instance, request, vms):
    """Rewrite the deploy_settings record of existing nodes {name: vm} that record other settings."""
    value = json.dumps(request.deploy_settings, sort_keys=True)

    def record(name):
        spec = vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=_records.DEPLOY_SETTINGS, value=value)])
        _waiter.run_task(service_instance, "ReconfigVM_Task (deploy settings) on VM %s" % name,
                         lambda: vms[name].ReconfigVM_Task(spec))

    errors = _nodes.in_parallel(record, sorted(vms), request.params["parallel"])
    if errors:
        raise RayVsphereError("recording the deploy settings of Ray cluster %s failed: %s"
                              % (request.cluster_name, "; ".join(errors)))


def refuse_name_clash(inventory, folder, request):
    """Fail, before anything is made, if the VM folder holds VMs of a cluster of this name made with another key.

    Such VMs carry the cluster's name (tag or creation marker) without an
    identity this key verifies. Joining them would make one "cluster" of two
    teams' VMs, each able to delete the other's. The same name in another
    folder, under another key, is another cluster, and never touched.
    """
    key = request.cluster_key
    clashing = sorted(props.get("name") or vm._moId for vm, props in inventory.vms.items()
                      if props.get("parent") == folder and not props.get("config.template")
                      and (inventory.tags(vm).get(_records.CLUSTER_NAME) == key.cluster_name
                           or _records.creation_marker(props) == key.cluster_name)
                      and not inventory.made_with_key(vm, key))
    if clashing:
        datacenter = request.params["datacenter"]
        path = (request.params.get("vm_folder") or "").strip("/")
        if path == datacenter + "/vm" or path.startswith(datacenter + "/vm/"):  # given as /DC/vm/ray
            path = path[len(datacenter) + 3:].strip("/")
        raise RayVsphereError("cluster %r already exists in %s under another key (VMs: %s): pick another cluster "
                              "name, or use that cluster's key (cluster_key_file)"
                              % (key.cluster_name, "/".join(part for part in (datacenter, "vm", path) if part),
                                 ", ".join(clashing)), unverified=clashing)


def _sort_names(inventory, folder, request):
    """Split the requested names into existing nodes, adoptable leftovers and names to create."""
    existing, adoptable, missing = {}, {}, []
    in_folder = dict((props.get("name"), (vm, props)) for vm, props in inventory.vms.items() if props.get("parent") == folder)
    for name in request.names:
        if name not in in_folder:
            missing.append(name)
            continue
        vm, props = in_folder[name]
        tags = inventory.tags(vm)
        if inventory.is_node(vm, request.cluster_key) and tags.get(_records.CLUSTER_NAME) == request.cluster_name:
            existing[name] = (vm, props)
        elif (inventory.made_with_key(vm, request.cluster_key) and not tags.get(_records.CLUSTER_NAME)
              and _records.creation_marker(props) == request.cluster_name):
            # Created by a run that stopped before tagging it: its instance UUID is the one it has.
            request.instance_uuids[name] = props.get("config.instanceUuid")
            adoptable[name] = vm
        else:
            raise RayVsphereError("a VM named %s already exists in the VM folder and is not a node of Ray cluster %s"
                                  % (name, request.cluster_name))
    return existing, adoptable, missing


def _predicted(inventory, request, existing, adoptable, changed):
    """What a run would return, made of what is there: check mode."""
    nodes = []
    for name in request.names:
        if name in existing:
            nodes.append(inventory.record(existing[name][0], request.preferred, request.ignored))
        else:
            # Its host key is made by the real run, so, like its UUID, not known yet.
            nodes.append(_records.planned_node_record(
                name, request.tags, "poweredOn" if request.params["power_on"] else "poweredOff",
                request.deploy_settings))
    created = sorted(name for name in request.names if name not in existing and name not in adoptable)
    return dict(changed=changed, nodes=nodes, created=created, adopted=sorted(adoptable), existing=sorted(existing))


class _NodeBuilder(object):
    """Creates, tags and powers on the nodes of one request, each recorded in the deploy's ledger."""

    def __init__(self, client, image, placement, request, inventory, declared, ledger, gpu_plan=None):
        self.client = client
        self.service_instance = client.service_instance
        self.image = image
        self.placement = placement
        self.request = request
        self.attributes = inventory.attributes
        self.declared = declared
        self.ledger = ledger
        self.gpu_plan = gpu_plan
        self._template = None

    def create(self, missing, adoptable, to_power_on):
        params = self.request.params
        if missing and params["clone_from_template"]:
            self._template = _templates.Template(self, self.image.template_name)
        errors = _nodes.in_parallel(self._create_node, missing, params["parallel"])
        if errors:
            raise RayVsphereError("deploying nodes of Ray cluster %s failed: %s"
                                  % (self.request.cluster_name, "; ".join(errors)))
        for name, vm in adoptable.items():
            self.ledger.take(self.placement.folder, name, vm)
            self._bind_identity(vm, name)
            self.attributes.set(vm, name, self.request.tags)
        if self.request.pool is not None and self.ledger.vms():  # a rerun that made nothing took no address
            self._settle_addresses()
        if params["power_on"]:
            targets = [(vm, name) for name, vm in self.ledger.vms().items()] + [(vm, None) for vm in to_power_on]
            errors = _nodes.in_parallel(self._power_on, targets, params["parallel"])
            if errors:
                raise RayVsphereError("powering on nodes of Ray cluster %s failed: %s"
                                      % (self.request.cluster_name, "; ".join(errors)))

    def _create_node(self, name):
        properties = self.request.ovf_properties(self.declared, name)
        placement = self._placement_of(name)
        if self._template is not None:
            vm = _clone.clone(self._template, self.request, placement, self.ledger, name, properties)
        else:
            package = self.image.package  # opened: clone_from_template is off
            spec = _nfc.import_spec(self.service_instance, package, name, placement, properties,
                                    functools.partial(self.request.configure, name=name))
            vm = _nfc.import_vm(self.client, package, spec, name, placement, self.request.params["timeout"],
                                self.ledger)
        if self.request.gpu is not None:
            _gpu.give_gpus(self.service_instance, vm, name, self.request.gpu, self.request.params["timeout"])
        self._bind_identity(vm, name)
        self.attributes.set(vm, name, self.request.tags)
        return vm

    def _settle_addresses(self, names=None):
        """Re-read the folder's address records, and make again each node of this call (of names) that lost its address.

        The duplicate rule (_ip_pool): the VM with the lower moid number keeps
        an address. A loser of ours is destroyed through the ledger and made
        anew (a new VM, moid and MAC) with the lowest address free at the
        re-read; then the records are read again. All before power-on, so no
        guest ever holds a duplicate address.
        """
        for round_ in range(MAX_ADDRESS_ROUNDS + 1):
            vms = _vsphere.vms_and_custom_fields(self.service_instance, ADDRESS_PATHS, [self.placement.folder])[0]
            records = _ip_pool.recorded(vms, self.placement.folder)
            ours = dict((vm._moId, name) for name, vm in self.ledger.vms().items() if names is None or name in names)
            lost = sorted(ours[moid] for moid in _ip_pool.duplicates(records) if moid in ours)
            if not lost:
                return
            if round_ == MAX_ADDRESS_ROUNDS:
                break
            self.request.addresses.update(zip(lost, self.request.pool.choose(len(lost), records.values())))
            for name in lost:
                self.ledger.remove(name)
            errors = _nodes.in_parallel(self._create_node, lost, self.request.params["parallel"])
            if errors:
                raise RayVsphereError("deploying nodes of Ray cluster %s again with other addresses failed: %s"
                                      % (self.request.cluster_name, "; ".join(errors)))
        raise RayVsphereError("ip_pool %s: nodes %s of Ray cluster %s still share an address with older VMs after "
                              "%d tries: other callers take this pool's addresses as fast as they free up"
                              % (self.request.pool.describe(), ", ".join(lost), self.request.cluster_name,
                                 MAX_ADDRESS_ROUNDS))

    def _placement_of(self, name):
        """The placement, on the host the GPU plan gives node `name` when it gives one."""
        host = self.gpu_plan.hosts.get(name) if self.gpu_plan is not None else None
        if host is None:
            return self.placement
        placement = copy.copy(self.placement)
        placement.host = host
        return placement

    def _bind_identity(self, vm, name):
        """Record the node's identity bound to its moid too, before its tags make it a node anyone lists.

        A copy of the VM (a clone, an import of an export, a VM made anew with
        its name and instance UUID once it is gone) has another moid, so this
        value proves nothing for it, in this folder or any other.
        """
        extra = {_records.CLUSTER_IDENTITY: self.request.node_identity(name, vm._moId)}
        spec = vim.vm.ConfigSpec()
        what = "node identity"
        if self.request.pool is not None:
            # In the same call: a VM that is a node of the cluster always has its network config.
            network, properties = _ip_pool.delivery(
                self.request, name, _vsphere.read(self.service_instance, vm, _ip_pool.DELIVERY_PATHS))
            extra.update(network)
            if properties:
                spec.vAppConfig = vim.vApp.VmConfigSpec(property=properties)
            what = "node identity and network config"
        spec.extraConfig = [vim.option.OptionValue(key=key, value=value) for key, value in sorted(extra.items())]
        _waiter.run_task(self.service_instance, "ReconfigVM_Task (%s) on VM %s" % (what, name),
                         lambda: vm.ReconfigVM_Task(spec))

    def _power_on(self, target):
        vm, name = target
        while True:
            try:
                _waiter.run_task(self.service_instance, "PowerOnVM_Task on VM %s" % (name or vm._moId), vm.PowerOnVM_Task)
                return
            except RayVsphereError as error:
                if error.details.get("fault") == "InvalidPowerState":  # already on
                    return
                if self.request.gpu is None or error.details.get("fault") not in _gpu_placement.DEVICE_TAKEN_FAULTS:
                    raise
                if self.gpu_plan is None or self.gpu_plan.drs or name not in self.gpu_plan.hosts:
                    error.details.update(failure=FAILURE_GPU_CAPACITY, gpu_model=self.request.gpu.model)
                    raise
            # Its device was taken since the hosts were read (another caller's VM powered on): made again on the
            # next host with one free. Not moved (RelocateVM_Task), which would need Resource.ColdMigrate in every role.
            self.gpu_plan.move(name)
            self.ledger.remove(name)
            vm = self._create_node(name)
            if self.request.pool is not None:
                # Its address was free while it was gone: another caller may have taken it meanwhile.
                self._settle_addresses([name])
                vm = self.ledger.vms()[name]
