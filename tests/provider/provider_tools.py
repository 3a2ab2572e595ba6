"""What the provider tests on vcsim share: a VsphereNodeProvider on a testbed vcsim."""

from ray_provider import node_provider
from ray_provider.node_provider import VsphereNodeProvider
from testbed import simulator
from testbed.guests import make_key_pair


def make_provider(sim, test_ova, tmp_path, monkeypatch, cluster_name, **settings):
    """The provider with its defaults (ip_timeout 600 s, request timeout 60 s) but for what a test names."""
    key = make_key_pair(tmp_path / "ray-key")
    for name, value in sim.endpoint.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(node_provider, "STATE_DIR", tmp_path / "state")
    return VsphereNodeProvider({
        "type": "external", "module": "ray_provider.node_provider.VsphereNodeProvider",
        "ovf": str(test_ova), "datacenter": simulator.DATACENTER, "cluster": simulator.CLUSTERS[0],
        "resource_pool": simulator.RESOURCE_POOL, "vm_folder": simulator.VM_FOLDER,
        "datastore": simulator.DATASTORES[0], "ssh_private_key_file": str(key), "ssh_public_key_file": f"{key}.pub",
        **settings,
    }, cluster_name)
