"""A node's host private key leaves vCenter's records once it answered: what the one ReconfigVM changes."""

import base64
import json

from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _deploy_request, _host_key_removal, _records, _user_data

PRIVATE, PUBLIC = _deploy_request.new_host_key()  # made at run time, as node_deploy makes them
USER_DATA = base64.b64encode(_user_data.node_user_data((PRIVATE, PUBLIC)).encode()).decode()


def deployed_props(user_data=USER_DATA, keyed=True):
    """A node's properties as node_deploy left them: user-data in guestinfo and in the vApp property."""
    options = [vim.option.OptionValue(key=_records.GUESTINFO_USERDATA, value=user_data),
               vim.option.OptionValue(key=_records.GUESTINFO_USERDATA_ENCODING, value="base64")] if user_data else []
    props = {"config.vAppConfig.property": [vim.vApp.PropertyInfo(key=3, id="user-data", value=user_data or ""),
                                            vim.vApp.PropertyInfo(key=1, id="hostname", value="n-0")]}
    if keyed:
        props.update(('config.extraConfig["%s"]' % option.key, option) for option in options)
    else:
        props["config.extraConfig"] = options
    return props


def test_the_spec_removes_guestinfo_user_data_and_neutralises_the_vapp_property_only():
    for keyed in (True, False):
        spec = _host_key_removal.removal_spec(deployed_props(keyed=keyed))
        assert sorted((option.key, option.value) for option in spec.extraConfig) == [
            (_records.GUESTINFO_USERDATA, ""), (_records.GUESTINFO_USERDATA_ENCODING, "")]
        [edit] = spec.vAppConfig.property
        assert (edit.operation, edit.info.key) == ("edit", 3)
        assert "PRIVATE KEY" not in base64.b64decode(edit.info.value).decode()
        assert base64.b64decode(edit.info.value).decode().startswith("#cloud-config\n")


def test_nothing_to_remove_means_no_reconfigure():
    assert _host_key_removal.removal_spec(deployed_props(user_data=None)) is None
    removed = deployed_props(user_data=None)
    removed["config.vAppConfig.property"][0].value = _host_key_removal.REMOVED_USER_DATA
    assert _host_key_removal.removal_spec(removed) is None


def test_the_vmware_datasource_is_asked_to_redact_the_guests_view_of_the_user_data():
    extra = _deploy_request.vmware_metadata("id-1", "n-0", [], redact=["userdata"])
    metadata = json.loads(base64.b64decode(extra[_records.GUESTINFO_METADATA]))
    assert metadata["redact"] == ["userdata"]
    assert "redact" not in json.loads(base64.b64decode(
        _deploy_request.vmware_metadata("id-1", "n-0", [])[_records.GUESTINFO_METADATA]))
