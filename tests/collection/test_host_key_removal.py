"""node_tags' remove_host_private_keys: the host private key node_deploy handed to cloud-init leaves vCenter.

The oracle is vcsim: what the VM's extraConfig and vApp properties hold, read there.
"""

import base64

from conftest import deploy_task, task
from pyVmomi import vim

from testbed import vsphere

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _records


def held(service_instance, name):
    """(where the VM still holds a host private key, its recorded public host key), as vcsim has them."""
    vm = vsphere.find_by_name(service_instance, vim.VirtualMachine, name)
    props = vsphere.read_properties(service_instance, vm, ["config.extraConfig", "config.vAppConfig.property"])
    extra = {option.key: option.value for option in props["config.extraConfig"]}
    values = {"guestinfo.userdata": extra.get(_records.GUESTINFO_USERDATA) or ""}
    values.update((f"vApp {prop.id}", prop.value or "") for prop in props["config.vAppConfig.property"]
                  if prop.id == "user-data")
    return (sorted(where for where, value in values.items() if b"PRIVATE KEY" in base64.b64decode(value)),
            extra.get(_records.SSH_HOST_KEY))


def test_the_host_private_key_is_removed_from_guestinfo_and_the_vapp_property_in_check_mode_only_predicted(
        play, test_ova, service_instance):
    deployed = play([deploy_task("kappa", test_ova, names=["kappa-head"], power_on=False, ssh_host_key=True)]).result
    assert not deployed["failed"], deployed
    [node] = deployed["nodes"]
    before, public = held(service_instance, "kappa-head")
    assert before == ["guestinfo.userdata", "vApp user-data"] and public == node["ssh_host_key"]

    removal = task("node_tags", cluster_name="kappa", nodes=[], remove_host_private_keys=[node["uuid"]])
    predicted = play([removal], check=True).result
    assert (predicted["changed"], predicted["host_private_keys_removed"]) == (True, ["kappa-head"])
    assert held(service_instance, "kappa-head") == (before, public), "check mode changed the VM"

    removed = play([removal]).result
    assert not removed["failed"], removed
    assert (removed["changed"], removed["host_private_keys_removed"], removed["changed_nodes"]) == (
        True, ["kappa-head"], [])
    assert held(service_instance, "kappa-head") == ([], public), "the public half stays recorded, the private goes"

    again = play([removal]).result
    assert (again["changed"], again["host_private_keys_removed"]) == (False, [])
