"""vcsim as the testbed runs it: a site's shape, real logins, clean stop."""

import os
import urllib.request
from pathlib import Path
from xml.etree import ElementTree

import pytest
from pyVmomi import vim

from testbed import method_trace, simulator, vsphere


def names(service_instance, managed_type):
    return {props["name"] for props in vsphere.objects_of_type(service_instance, managed_type, ["name"]).values()}


def test_pyvmomi_sees_a_site_shaped_inventory(service_instance):
    clusters = vsphere.objects_of_type(service_instance, vim.ClusterComputeResource, ["name", "host", "resourcePool"])
    assert sorted(props["name"] for props in clusters.values()) == ["DC0_C0", "DC0_C1"]
    assert all(len(props["host"]) == 3 for props in clusters.values())

    pools = vsphere.objects_of_type(service_instance, vim.ResourcePool, ["name", "parent"])
    child_pools = {props["name"] for props in pools.values() if isinstance(props["parent"], vim.ResourcePool)}
    assert child_pools == {"DC0_C0_RP1", "DC0_C1_RP1"}

    assert names(service_instance, vim.Datastore) == {"LocalDS_0", "LocalDS_1"}
    assert {"VM Network", "DC0_DVPG0"} <= names(service_instance, vim.Network)
    assert vim.dvs.DistributedVirtualPortgroup in {type(n) for n in
                                                   vsphere.objects_of_type(service_instance, vim.Network, ["name"])}
    folder = vsphere.find_by_name(service_instance, vim.Folder, simulator.VM_FOLDER)
    assert vsphere.read_properties(service_instance, folder, ["parent"])["parent"] == \
        vsphere.find_by_name(service_instance, vim.Datacenter, "DC0").vmFolder


def test_inventory_holds_vms_that_are_nobodys_ray_nodes_all_powered_off(service_instance):
    vms = vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name", "runtime.powerState"])
    foreign = {props["name"]: props["runtime.powerState"] for props in vms.values()
               if not props["name"].startswith("ray")}
    assert len(foreign) >= 2
    assert set(foreign.values()) == {vim.VirtualMachine.PowerState.poweredOff}


def test_only_the_configured_password_logs_in(vcsim):
    endpoint = vcsim.endpoint
    with pytest.raises(vim.fault.InvalidLogin):
        vsphere.connect(endpoint.host, endpoint.port, endpoint.username, endpoint.password + "-wrong", endpoint.ca_path)


def test_two_accounts_log_in_each_with_its_own_password_and_the_trace_names_the_user(testbed_prerequisites, tmp_path):
    """The operator and the account a Ray head gets (testbed/vcsim/users.go); the trace says who called what."""
    trace = tmp_path / "methods.jsonl"
    with simulator.Vcsim(trace_methods=trace, log_failed_logins=True) as sim:
        endpoint = sim.endpoint
        assert (endpoint.head_username, endpoint.head_password) == (sim.autoscaler_username, sim.autoscaler_password)
        assert endpoint.environment()["RAY_VSPHERE_HEAD_USER"] == simulator.AUTOSCALER_USERNAME
        for user, password in ((endpoint.username, endpoint.password), (sim.autoscaler_username, sim.autoscaler_password)):
            service_instance = vsphere.connect(endpoint.host, endpoint.port, user, password, endpoint.ca_path)
            assert service_instance.content.sessionManager.currentSession.userName == user
            vsphere.disconnect(service_instance)
        for user, password in ((sim.autoscaler_username, endpoint.password),  # another account's password
                               ("nobody@vsphere.local", sim.autoscaler_password)):
            with pytest.raises(vim.fault.InvalidLogin):
                vsphere.connect(endpoint.host, endpoint.port, user, password, endpoint.ca_path)
        assert sim.failed_logins() == [sim.autoscaler_username, "nobody@vsphere.local"]
    users = {call.user for call in method_trace.read(trace) if call.method == "Logout"}
    assert users == {endpoint.username, sim.autoscaler_username}


def test_a_changed_password_logs_in_and_the_old_one_is_refused_while_vcsim_runs(testbed_prerequisites):
    """An administrator's password change of the head's account (testbed/vcsim/users.go), for the rotation test."""
    with simulator.Vcsim(log_failed_logins=True) as sim:
        endpoint, old = sim.endpoint, sim.autoscaler_password
        open_session = vsphere.connect(endpoint.host, endpoint.port, sim.autoscaler_username, old, endpoint.ca_path)
        sim.change_autoscaler_password("N3w-head-passw0rd")
        assert sim.endpoint.head_password == sim.endpoint.environment()["RAY_VSPHERE_HEAD_PASSWORD"] == "N3w-head-passw0rd"
        with pytest.raises(vim.fault.InvalidLogin):
            vsphere.connect(endpoint.host, endpoint.port, sim.autoscaler_username, old, endpoint.ca_path)
        service_instance = vsphere.connect(endpoint.host, endpoint.port, sim.autoscaler_username, "N3w-head-passw0rd",
                                           endpoint.ca_path)
        assert service_instance.content.sessionManager.currentSession.userName == sim.autoscaler_username
        vsphere.disconnect(service_instance)
        # As in vCenter, a session opened before the change stays; the operator's account is untouched.
        assert open_session.content.sessionManager.currentSession.userName == sim.autoscaler_username
        vsphere.disconnect(open_session)
        vsphere.disconnect(endpoint.connect())
        assert sim.failed_logins() == [sim.autoscaler_username]


def test_each_vcsim_listens_on_its_own_free_port_and_stop_removes_its_process_and_folders(testbed_prerequisites):
    with simulator.Vcsim() as first, simulator.Vcsim() as second:
        assert first.endpoint.port != second.endpoint.port
        pid, temp_dir = first._process.pid, Path(first._temp_dir)
        datastore_dirs = list(temp_dir.glob("govcsim-*"))
        assert datastore_dirs, "vcsim keeps its datastores in its own TMPDIR"
    assert not temp_dir.exists()
    assert not any(d.exists() for d in datastore_dirs)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def announced_api_version(endpoint):
    """The version vcsim announces to clients, as pyVmomi negotiates it: /sdk/vimServiceVersions.xml."""
    url = f"https://{endpoint.host}:{endpoint.port}/sdk/vimServiceVersions.xml"
    with urllib.request.urlopen(url, context=vsphere.ssl_context(endpoint.ca_path), timeout=30) as response:
        document = ElementTree.fromstring(response.read())
    return document.findtext("namespace/version")


@pytest.mark.parametrize(("api_version", "release"), [(None, "6.5.0"), ("8.0.3.0", "8.0.3"), ("7.0.0.0", "7.0.0")])
def test_about_names_the_release_of_the_api_version_vcsim_announces(testbed_prerequisites, api_version, release):
    """As a vCenter of that release answers: about.apiVersion is what it announces, about.version its release."""
    with simulator.Vcsim(api_version=api_version) as sim:
        endpoint = sim.endpoint
        announced = announced_api_version(endpoint)
        assert announced == (api_version or "6.5")
        service_instance = vsphere.connect(endpoint.host, endpoint.port, endpoint.username, endpoint.password,
                                           endpoint.ca_path)
        try:
            about = service_instance.content.about
            assert (about.apiVersion, about.version) == (announced, release)
            assert about.fullName.startswith(f"VMware vCenter Server {release} build-{about.build}")
            assert service_instance._stub.versionId.endswith(f"/{announced}\"")
        finally:
            vsphere.disconnect(service_instance)


def test_an_api_version_that_is_not_one_stops_vcsim_with_a_clear_error(testbed_prerequisites):
    with pytest.raises(simulator.VcsimError, match="-api-version \"eight\" is not a vSphere API version"):
        with simulator.Vcsim(api_version="eight"):
            pass
