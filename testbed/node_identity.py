"""Tests' VMs made outside node_deploy and given a node's identity as node_deploy gives it: bound to the VM.

node_deploy writes a node's identity in two steps (the create call, then the
value bound to the new VM's moid, before it tags it: plugins' _build). A test
that makes a VM itself (a clone of a model VM, an import) records the final
value here, from what vCenter says the VM is: its name, instance UUID,
folder and moid, and vCenter's own instance UUID.
"""

from pyVmomi import vim

from testbed import vsphere  # puts the checkout's collections on sys.path

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _records  # noqa: E402


def bind(service_instance, vm, cluster_key):
    """Record on vm the identity cluster_key makes for it where it is, as node_deploy does; returns that value."""
    props = vsphere.read_properties(service_instance, vm, ["name", "config.instanceUuid", "parent"])
    folder = props["parent"]._moId
    identity = cluster_key.node_identity(props["name"], props["config.instanceUuid"], folder,
                                         _records.vcenter_uuid(service_instance), vm._moId)
    record(service_instance, vm, {_records.CLUSTER_IDENTITY: identity, _records.CREATION_FOLDER: folder})
    return identity


def record(service_instance, vm, extra_config):
    """Write {key: value} into vm's extraConfig."""
    spec = vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=key, value=value)
                                          for key, value in extra_config.items()])
    vsphere.wait_for_task(service_instance, vm.ReconfigVM_Task(spec))
