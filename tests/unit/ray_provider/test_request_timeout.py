"""The request timeout a cluster YAML or VMWARE_REQUEST_TIMEOUT may set, and what is refused, naming its source."""

import pytest

from ray_provider.config import ClusterConfigError, VcenterCredentials, check_cluster_config
from ray_provider.request_timeout import MAX_REQUEST_TIMEOUT_S, request_timeout_problem
from ray_provider.runs import CREATE_RUN_MARGIN_S

PROVIDER = {"type": "external", "module": "ray_provider.node_provider.VsphereNodeProvider", "vcenter_hostname": "vc",
            "vcenter_username": "u", "datacenter": "DC0"}


def config(**provider):
    return {"cluster_name": "c", "provider": dict(PROVIDER, **provider), "auth": {"ssh_user": "ubuntu"},
            "available_node_types": {"w": {"node_config": {}}}}


def test_the_range_leaves_a_create_run_room_for_several_unanswered_calls():
    assert MAX_REQUEST_TIMEOUT_S * 4 <= CREATE_RUN_MARGIN_S
    assert request_timeout_problem(60, "x") is None  # the default
    assert request_timeout_problem(1, "x") is None


def test_a_request_timeout_beyond_the_create_runs_margin_is_refused_naming_the_key():
    with pytest.raises(ClusterConfigError) as raised:
        check_cluster_config(config(vcenter_request_timeout=MAX_REQUEST_TIMEOUT_S + 1))
    problem = [p for p in raised.value.problems if "vcenter_request_timeout" in p]
    assert problem and f"more than {MAX_REQUEST_TIMEOUT_S} s" in problem[0], raised.value.problems


def test_the_same_check_applies_to_vmware_request_timeout():
    credentials = VcenterCredentials(PROVIDER, environ={"VMWARE_PASSWORD": "x", "VMWARE_REQUEST_TIMEOUT": "3600"})
    assert any("VMWARE_REQUEST_TIMEOUT" in problem and "3600 s is more than" in problem
               for problem in credentials.problems()), credentials.problems()
    fine = VcenterCredentials(PROVIDER, environ={"VMWARE_PASSWORD": "x", "VMWARE_REQUEST_TIMEOUT": "30"})
    assert fine.problems() == []
