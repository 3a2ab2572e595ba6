"""Fixtures of the embedded testbed: vcsim per test module, test guests, the test OVA.

A missing prerequisite (root, namespaces, sshd, vcsim...) fails every test
that needs the testbed with a message saying what to install: never a skip.
After the whole session, anything the testbed left behind fails the run (of a
session of tests/unit alone, only temp folders and home files count), and
so does a vSphere method the project called (every vcsim of the session
records them) that meta/vcenter_requirements.yml does not list with its
privileges, or one a Ray head's own account called that the file does not
give the autoscaler role.
"""


import os
import shutil
import tempfile
from pathlib import Path

import pytest

from testbed.ansible_state import keep_ansible_state_in

# Ansible's per-user state goes to a folder of the session's, never the
# user's home; set before anything imports ansible, which makes its local
# temp folder on import.
SESSION_ANSIBLE_HOME = keep_ansible_state_in(tempfile.mkdtemp(prefix="ray-vsphere-ansible-home-"))

from testbed import leftovers, method_trace, privileges, simulator  # noqa: E402 - after the Ansible state is placed
from testbed.appliance import build_test_ova
from testbed.guests import GuestSimulator, make_key_pair
from testbed.prereqs import PrerequisiteError, check_prerequisites

# Every vcsim the session starts, in this process or in a child (ray up, molecule's testbed), traces here.
SESSION_TRACE_DIR = tempfile.mkdtemp(prefix="ray-vsphere-vcsim-trace-")
os.environ[method_trace.TRACE_DIR_ENV] = SESSION_TRACE_DIR

_snapshot_before_session = {}
FAST_TIER = Path(__file__).parent / "unit"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item (item.rep_setup, rep_call), for fixtures that act on a failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_sessionstart(session):
    _snapshot_before_session.update(leftovers.snapshot())


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SESSION_ANSIBLE_HOME, ignore_errors=True)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    calls = method_trace.read(method_trace.session_trace_file())
    shutil.rmtree(SESSION_TRACE_DIR, ignore_errors=True)
    unlisted = privileges.unlisted(method_trace.project_calls(calls))
    if unlisted:
        reporter.write_line(f"FAILED: the project called vSphere methods that {privileges.REQUIREMENTS_FILE} does "
                            f"not list with their privileges: {', '.join(f'{t}.{m}' for m, t in unlisted)}",
                            red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    # Every vcsim's second account is the one `ray up` gives a head (simulator.AUTOSCALER_USERNAME).
    beyond_role = sorted(method_trace.project_calls(calls, user=simulator.AUTOSCALER_USERNAME)
                         - privileges.role_methods(privileges.AUTOSCALER))
    if beyond_role:
        reporter.write_line(f"FAILED: a Ray head's own account called vSphere methods that {privileges.REQUIREMENTS_FILE} "
                            f"does not give the {privileges.role_name(privileges.AUTOSCALER)} role: "
                            f"{', '.join(f'{t}.{m}' for m, t in beyond_role)}", red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    left = leftovers.left_behind(_snapshot_before_session, leftovers.snapshot())
    if _ran_the_fast_tier_only(session):
        # tests/unit starts no testbed (tests/unit/conftest.py refuses it), so namespaces, links and
        # processes appearing meanwhile are other sessions' on this machine, and so are temp folders
        # another user owns: the fast tier also runs without root, beside the full suite.
        left = {kind: items for kind, items in left.items() if kind not in leftovers.TESTBED_KINDS}
        left["temp folders"] = leftovers.owned_by(left.get("temp folders", []), os.geteuid())
        left = {kind: items for kind, items in left.items() if items}
    if left:
        reporter.write_line(f"FAILED: the test session left behind: {left}", red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _ran_the_fast_tier_only(session):
    return all(Path(str(item.path)).is_relative_to(FAST_TIER) for item in getattr(session, "items", []))


@pytest.fixture(scope="session")
def testbed_prerequisites():
    try:
        check_prerequisites()
    except PrerequisiteError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def vcsim(testbed_prerequisites):
    """A fresh vcsim for the test module, shaped like a small site."""
    with simulator.Vcsim() as sim:
        yield sim


@pytest.fixture(scope="module")
def guest_simulator(vcsim):
    with GuestSimulator(vcsim.endpoint) as guests:
        yield guests
        assert guests.errors == [], f"guest simulator errors: {guests.errors}"


@pytest.fixture
def service_instance(vcsim):
    service_instance = vcsim.endpoint.connect()
    yield service_instance
    service_instance.content.sessionManager.Logout()


@pytest.fixture(scope="session")
def test_ova(testbed_prerequisites):
    return build_test_ova()


@pytest.fixture(scope="module")
def ssh_key_pair(tmp_path_factory):
    """A factory of fresh ed25519 key pairs: (private key path, public key text)."""
    key_dir = tmp_path_factory.mktemp("keys")

    def make(name):
        path = make_key_pair(key_dir / name, name)
        return path, path.with_suffix(".pub").read_text()

    return make


@pytest.fixture
def deploy_test_vm(service_instance, test_ova):
    """Import the test OVA as a VM and power it on; the key as OVF properties or as cloud-init's guestinfo.metadata."""
    import uuid

    from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import vmware_metadata
    from testbed import vsphere
    from testbed.ova_import import import_ova

    def deploy(name, *, public_key=None, guestinfo_key=None, power_on=True, style="ubuntu"):
        instance_id = str(uuid.uuid4())
        properties = {"public-keys": public_key, "hostname": name, "instance-id": instance_id} if public_key else {}
        extra_config = vmware_metadata(instance_id, name, [guestinfo_key]) if guestinfo_key else {}
        vm = import_ova(service_instance, test_ova if style == "ubuntu" else build_test_ova(style=style), name, **simulator.default_placement(service_instance),
                        properties=properties, extra_config=extra_config)
        if power_on:
            vsphere.wait_for_task(service_instance, vm.PowerOnVM_Task())
        return vm

    return deploy
