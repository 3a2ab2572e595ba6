"""The node record: one builder, and the fields node_info's and node_deploy's RETURN document are its fields."""

import json

import pytest
import yaml
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _records
from ansible_collections.ray_vsphere.cluster.plugins.modules import node_deploy, node_info

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4rT3vTt99Ox5kndS4HmgTrKBT8SKzhK4rhGkEVGlCI"


def documented_node_fields(module):
    return list(yaml.safe_load(module.RETURN)["nodes"]["contains"])


@pytest.mark.parametrize("module", [node_info, node_deploy], ids=["node_info", "node_deploy"])
def test_return_documents_exactly_the_fields_of_the_node_record(module):
    assert documented_node_fields(module) == list(_records.NODE_RECORD_FIELDS)


def test_the_builder_fills_every_field_from_properties_read_whole_or_by_keyed_path():
    settings = {"datacenter": "DC1", "worker_cpus": 4}
    options = [vim.option.OptionValue(key=_records.DEPLOY_SETTINGS, value=json.dumps(settings)),
               vim.option.OptionValue(key=_records.SSH_HOST_KEY, value=HOST_KEY)]
    common = {"name": "analytics-head", "config.instanceUuid": "5029d4cb-5ad3-4d1c-b4b4-d3a6e6a8d5a1",
              "runtime.powerState": vim.VirtualMachine.PowerState.poweredOn}
    whole = dict(common, **{"config.extraConfig": options})
    keyed = dict(common, **{'config.extraConfig["%s"]' % option.key: option for option in options})
    tags = {_records.CLUSTER_NAME: "analytics", _records.NODE_KIND: "head"}
    expected = dict(name="analytics-head", uuid="5029d4cb-5ad3-4d1c-b4b4-d3a6e6a8d5a1", moid="vm-42",
                    power_state="poweredOn", ip="10.0.0.5", ip_addresses=["10.0.0.5", "fe80::1"], tags=tags,
                    deploy_settings=settings, ssh_host_key=HOST_KEY)
    for props in (whole, keyed):
        record = _records.node_record("vm-42", props, tags, ["10.0.0.5", "fe80::1"], "10.0.0.5")
        assert record == expected
        assert list(record) == list(_records.NODE_RECORD_FIELDS)


def test_a_node_without_records_has_empty_settings_and_no_host_key():
    props = {"name": "n", "config.extraConfig": [vim.option.OptionValue(key=_records.DEPLOY_SETTINGS, value="not json")]}
    record = _records.node_record("vm-1", props, {}, [], None)
    assert (record["deploy_settings"], record["ssh_host_key"], record["uuid"]) == ({}, None, None)


def test_a_planned_record_has_the_same_fields_and_nothing_vcenter_would_assign():
    record = _records.planned_node_record("analytics-w-0", {"ray-node-type": "worker"}, "poweredOn", {}, HOST_KEY)
    assert list(record) == list(_records.NODE_RECORD_FIELDS)
    assert (record["uuid"], record["moid"], record["ip"], record["ip_addresses"]) == (None, None, None, [])
    assert record["ssh_host_key"] == HOST_KEY
