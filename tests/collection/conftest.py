"""Run the collection's modules through real playbook runs (ansible-runner) against vcsim.

Credentials reach the modules only as VMWARE_* environment variables, as
AWX's VMware credential injects them. After every run, the run's whole data
dir (artifacts, job events, stdout) is searched for the vCenter password.
"""

import itertools
from pathlib import Path

import pytest
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import VcenterClient, argument_spec
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import DEPLOY_OPTIONS
from ray_provider.runner import task_results
from testbed import leftovers, vsphere
from testbed.guests import make_key_pair
from testbed.image_server import ImageServer, loopback_tls
from testbed.ray_cluster import run_tasks

PLACEMENT = dict(datacenter="DC0", cluster="DC0_C0", resource_pool="DC0_C0_RP1", vm_folder="ray",
                 datastore="LocalDS_0", network="VM Network")
# The modules that take the cluster's key; a play gives them the test module's key unless a task names another.
KEYED_MODULES = ("node_deploy", "node_info", "node_tags", "node_delete")


class PlayResult:
    def __init__(self, runner):
        self.runner = runner
        self.status = runner.status
        self.results = task_results(runner)

    @property
    def result(self):
        """The result of the play's last task."""
        assert self.results, f"no task ran: {self.status}\n{self.stdout()}"
        return self.results[-1]

    def stdout(self):
        return self.runner.stdout.read()


@pytest.fixture(scope="module")
def cluster_key_file(tmp_path_factory):
    """The private key of the clusters a test module makes (module_defaults of every play)."""
    return make_key_pair(tmp_path_factory.mktemp("cluster-key") / "ray-test", "ray-test")


@pytest.fixture(scope="module")
def play(vcsim, tmp_path_factory, cluster_key_file):
    """play(tasks, env=None, check=False, diff=False) -> PlayResult, credentials from the environment.

    node_deploy's hash cache of local images goes to the test module's tmp, not ~/.cache. The modules
    that take cluster_key_file get the module's cluster_key_file by module_defaults.
    """
    counter = itertools.count()
    run_root = tmp_path_factory.mktemp("plays")
    leaks = []
    key_defaults = {f"ray_vsphere.cluster.{module}": {"cluster_key_file": str(cluster_key_file)}
                    for module in KEYED_MODULES}

    def run(tasks, env=None, check=False, diff=False):
        run_dir = run_root / f"run-{next(counter)}"
        cmdline = " ".join(flag for flag, wanted in (("--check", check), ("--diff", diff)) if wanted) or None
        env = dict(env or vcsim.endpoint.environment(), XDG_CACHE_HOME=str(run_root / "cache"))
        result = PlayResult(run_tasks(tasks, run_dir, env, cmdline=cmdline, module_defaults=key_defaults))
        leaks.extend(leftovers.files_containing(vcsim.endpoint.password, run_dir))
        return result

    yield run
    assert leaks == [], f"the vCenter password is in run files: {leaks}"


@pytest.fixture
def vm_names(service_instance):
    """The names of every VM in vcsim, templates included."""
    def names():
        found = vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name"])
        return sorted(props["name"] for props in found.values())
    return names


def deploy_task(cluster_name, ova, **options):
    arguments = dict(PLACEMENT, cluster_name=cluster_name, ovf=str(ova))
    arguments.update(options)
    return {"name": "Deploy", "ray_vsphere.cluster.node_deploy": arguments}


def task(module, **arguments):
    return {"name": module, f"ray_vsphere.cluster.{module}": arguments}


@pytest.fixture(scope="module")
def ova_server(test_ova, tmp_path_factory):
    """(URL of the test OVA, CA file to trust): an https server on loopback with a certificate of a testbed CA."""
    context, ca_file = loopback_tls(tmp_path_factory.mktemp("image-tls"))
    with ImageServer(Path(test_ova).parent, context) as server:
        yield server.url(Path(test_ova).name), str(ca_file)


def module_params(vcsim, cluster_key_file, **options):
    """node_deploy's parameters as AnsibleModule gives them: the defaults, the placement, the connection (TLS
    verified against the testbed's CA, as users verify)."""
    params = dict((name, spec.get("default")) for name, spec in argument_spec(**DEPLOY_OPTIONS).items())
    endpoint = vcsim.endpoint
    params.update(PLACEMENT, hostname=endpoint.host, port=endpoint.port, username=endpoint.username,
                  password=endpoint.password, validate_certs=True, ca_path=str(endpoint.ca_path),
                  cluster_key_file=str(cluster_key_file), **options)
    return params


def in_process_client(vcsim):
    """A session as node_deploy opens it, for tests that call _build.deploy in this process."""
    endpoint = vcsim.endpoint
    return VcenterClient(endpoint.host, endpoint.username, endpoint.password, port=endpoint.port,
                         validate_certs=True, ca_path=str(endpoint.ca_path))
