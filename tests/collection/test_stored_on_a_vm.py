"""_records is the whole page of what we store on a VM: every extraConfig key a deploy writes is named there.

The oracle is vcsim: the keys a node and its template carry, less those a VM
imported from the same OVA without us carries.
"""

from conftest import deploy_task
from pyVmomi import vim

from testbed import simulator, vsphere
from testbed.ova_import import import_ova

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _records

NAMED_ON_THE_PAGE = {value for name, value in vars(_records).items() if name.isupper() and isinstance(value, str)}


def extra_config_keys(service_instance, vm):
    return {option.key for option in vsphere.read_properties(service_instance, vm, ["config.extraConfig"])[
        "config.extraConfig"]}


def test_every_extra_config_key_a_deploy_writes_is_named_in_records(play, test_ova, service_instance):
    bare = import_ova(service_instance, test_ova, "bare-import", **simulator.default_placement(service_instance))
    of_the_image = extra_config_keys(service_instance, bare)

    result = play([deploy_task("eta", test_ova, names=["eta-head"], power_on=False, ssh_host_key=True,
                               deploy_settings={"datacenter": "DC0"}, clone_from_template=True)]).result
    assert not result["failed"], result
    node = vsphere.find_by_name(service_instance, vim.VirtualMachine, "eta-head")
    template = vsphere.find_by_name(service_instance, vim.VirtualMachine, result["image"]["template"])

    ours_on_node = extra_config_keys(service_instance, node) - of_the_image
    ours_on_template = extra_config_keys(service_instance, template) - of_the_image
    assert ours_on_node - NAMED_ON_THE_PAGE == set()
    assert ours_on_template - NAMED_ON_THE_PAGE == set()
    # And the page's node keys are what a node carries: none is a name nothing writes.
    assert {_records.CREATION_MARKER, _records.CLUSTER_IDENTITY, _records.DEPLOY_SETTINGS, _records.SSH_HOST_KEY,
            _records.CLONED_FROM, _records.GUESTINFO_METADATA, _records.GUESTINFO_METADATA_ENCODING,
            _records.GUESTINFO_USERDATA, _records.GUESTINFO_USERDATA_ENCODING} <= ours_on_node
    assert {_records.TEMPLATE_IDENTITY, _records.IMAGE_SHA256, _records.IMAGE_KEY} <= ours_on_template
