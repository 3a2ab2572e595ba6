"""node_deploy's ip_pool on vcsim: the address recorded by the create, the network config matched by the VM's MAC,
exhaustion and bad pools leaving vcsim as it was, a freed address reused, and two callers at once on one pool.

Every oracle is read at vcsim: each VM's extraConfig, vApp properties and NIC (config.hardware.device), the VM list
and its events; never node_deploy's own result or ledger.
"""

import base64
import json
import threading
import uuid

import pytest
from conftest import deploy_task, in_process_client, module_params, task
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _build
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_IP_POOL_EXHAUSTED
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ClusterKey
from testbed import simulator, vsphere
from testbed.ova_import import import_ova

CIDR = "198.18.5.0/24"
GATEWAY = "198.18.5.1"


def pool(first=200, last=254, **more):
    return dict(cidr=CIDR, range=f"198.18.5.{first}-198.18.5.{last}", gateway=GATEWAY, **more)


def read_vms(service_instance):
    """{name: {"moid", "extra", "mac", "properties"}} of every VM (templates included), read at vcsim."""
    found = {}
    for vm, props in vsphere.objects_of_type(service_instance, vim.VirtualMachine, [
            "name", "config.extraConfig", "config.hardware.device", "config.vAppConfig.property"]).items():
        nics = [device for device in props.get("config.hardware.device") or []
                if isinstance(device, vim.vm.device.VirtualEthernetCard)]
        found[props["name"]] = dict(
            moid=vm._moId, extra={option.key: option.value for option in props.get("config.extraConfig") or []},
            mac=nics[0].macAddress if nics else None,
            properties={prop.id: prop.value for prop in props.get("config.vAppConfig.property") or []})
    return found


def addresses(service_instance):
    """{name: recorded address} of every VM that records one."""
    return {name: vm["extra"]["ray-vsphere.ip-address"] for name, vm in read_vms(service_instance).items()
            if vm["extra"].get("ray-vsphere.ip-address")}


def presented_networks(vm):
    """(guestinfo.metadata's network, the network-config property's network) of a VM read by read_vms."""
    metadata = json.loads(base64.b64decode(vm["extra"]["guestinfo.metadata"]))
    ovf = vm["properties"].get("network-config")
    return metadata.get("network"), json.loads(base64.b64decode(ovf))["network"] if ovf else None


def vm_events(service_instance):
    """Every VM event vcsim logged, as (type name, VM name)."""
    collector = service_instance.content.eventManager.CreateCollectorForEvents(vim.event.EventFilterSpec())
    try:
        events = collector.ReadNextEvents(1000)
    finally:
        collector.DestroyCollector()
    return [(type(event).__name__.split(".")[-1], event.vm.name if event.vm else None) for event in events
            if isinstance(event, vim.event.VmEvent)]


def pool_deploy(cluster, ova, ip_pool, **options):
    return deploy_task(cluster, ova, ip_pool=ip_pool, power_on=False, **options)


@pytest.mark.parametrize("clone_from_template", [True, False])
def test_the_create_records_the_address_and_both_datasources_get_the_network_of_the_nics_mac(
        vcsim, test_ova, cluster_key_file, service_instance, monkeypatch, clone_from_template):
    cluster = f"static-{'clone' if clone_from_template else 'import'}"
    at_creation = {}
    bind = _build._NodeBuilder._bind_identity

    def bind_after_reading_what_the_create_made(builder, vm, name):
        # The first moment after the create: what vcsim holds now, the create call itself wrote.
        at_creation[name] = read_vms(service_instance)[name]["extra"].get("ray-vsphere.ip-address")
        bind(builder, vm, name)

    monkeypatch.setattr(_build._NodeBuilder, "_bind_identity", bind_after_reading_what_the_create_made)
    params = module_params(vcsim, cluster_key_file, cluster_name=cluster, ovf=str(test_ova), count=2,
                           request_id="r1", power_on=False, clone_from_template=clone_from_template,
                           ip_pool=pool(dns_servers=["198.18.5.53"], search_domains=["lab.example.com"]))
    before = addresses(service_instance)
    with in_process_client(vcsim) as client:
        _build.deploy(client, params, False, ClusterKey.from_file(str(cluster_key_file), cluster))
    vms = read_vms(service_instance)
    names = sorted(name for name in vms if name.startswith(cluster + "-"))
    assert len(names) == 2
    free = [f"198.18.5.{host}" for host in range(200, 255) if f"198.18.5.{host}" not in before.values()]
    assert at_creation == {names[0]: free[0], names[1]: free[1]}, "the lowest free ones, in the create spec"
    for name in names:
        vm = vms[name]
        address = vm["extra"]["ray-vsphere.ip-address"]
        assert vm["mac"] and vm["mac"].startswith("00:50:56:")
        expected = {"version": 2, "ethernets": {"id0": {
            "match": {"macaddress": vm["mac"].lower()}, "set-name": "eth0", "addresses": [f"{address}/24"],
            "gateway4": GATEWAY, "nameservers": {"addresses": ["198.18.5.53"], "search": ["lab.example.com"]}}}}
        assert presented_networks(vm) == (expected, expected)
    assert vms[names[0]]["mac"] != vms[names[1]]["mac"]


def test_a_pool_without_enough_free_addresses_fails_before_anything_is_made(play, test_ova, service_instance):
    small = pool(first=210, last=212)
    first = play([pool_deploy("tight", test_ova, small, request_id="t1")]).result
    assert first.get("failed") is not True, first.get("msg")
    names_before, events_before = sorted(read_vms(service_instance)), vm_events(service_instance)
    for clone_from_template in (True, False):
        full = play([pool_deploy("tight", test_ova, small, request_id="t2", count=3,
                                 clone_from_template=clone_from_template)]).result
        assert full.get("failed") is True and full["failure"] == FAILURE_IP_POOL_EXHAUSTED, full
        assert (full["asked"], full["free"]) == (3, 2)
        assert "198.18.5.0/24 (198.18.5.210-198.18.5.212) has 2 free addresses, 3 asked" in full["msg"]
        assert sorted(read_vms(service_instance)) == names_before
    assert vm_events(service_instance) == events_before, "nothing made, nothing removed"
    play([task("node_delete", cluster_name="tight", all_nodes=True)])


@pytest.mark.parametrize("bad, words", [
    (dict(pool(), gateway="198.18.6.1"), "ip_pool.gateway gateway 198.18.6.1 is outside cidr 198.18.5.0/24"),
    (dict(pool(), range="198.18.5.250-198.18.5.200"), "ip_pool.range 198.18.5.250-198.18.5.200 is reversed"),
])
def test_a_bad_pool_is_refused_before_anything_is_created(play, test_ova, service_instance, bad, words):
    names_before, events_before = sorted(read_vms(service_instance)), vm_events(service_instance)
    refused = play([pool_deploy("badpool", test_ova, bad, count=2)]).result
    assert refused.get("failed") is True and words in refused["msg"], refused.get("msg")
    assert sorted(read_vms(service_instance)) == names_before
    assert vm_events(service_instance) == events_before


def test_check_mode_predicts_the_addresses_and_a_deleted_nodes_address_is_taken_again(play, test_ova, service_instance):
    range_ = pool(first=220, last=229)
    planned = play([pool_deploy("reuse", test_ova, range_, request_id="a", count=2)], check=True).result
    assert planned.get("failed") is not True, planned.get("msg")
    assert not any(name.startswith("reuse-") for name in read_vms(service_instance))
    made = play([pool_deploy("reuse", test_ova, range_, request_id="a", count=2)]).result
    recorded = {name: address for name, address in addresses(service_instance).items() if name.startswith("reuse-")}
    assert planned["ip_pool_addresses"] == recorded == {"reuse-worker-a-0": "198.18.5.220",
                                                        "reuse-worker-a-1": "198.18.5.221"}
    assert made["ip_pool_addresses"] == recorded
    again = play([pool_deploy("reuse", test_ova, range_, request_id="a", count=2)]).result
    assert again["changed"] is False and again["ip_pool_addresses"] == recorded, "a retry keeps its addresses"

    play([task("node_delete", cluster_name="reuse", names=["reuse-worker-a-0"])])
    play([pool_deploy("reuse", test_ova, range_, request_id="b")])
    assert {name: address for name, address in addresses(service_instance).items() if name.startswith("reuse-")} == {
        "reuse-worker-a-1": "198.18.5.221", "reuse-worker-b-0": "198.18.5.220"}
    play([task("node_delete", cluster_name="reuse", all_nodes=True)])


def test_an_adopted_leftover_keeps_the_address_its_create_recorded(play, test_ova, service_instance,
                                                                  cluster_key_file):
    instance_uuid = str(uuid.uuid4())
    placement = simulator.default_placement(service_instance)
    identity = ClusterKey(cluster_key_file.read_text(), "leftover").node_identity(
        "leftover-0", instance_uuid, placement["folder"]._moId, service_instance.content.about.instanceUuid)
    import_ova(service_instance, test_ova, "leftover-0", **placement, instance_uuid=instance_uuid, extra_config={
        "ray-vsphere.cluster-name": "leftover", "ray-vsphere.cluster-identity": identity,
        "ray-vsphere.ip-address": "198.18.5.233"})
    result = play([pool_deploy("leftover", test_ova, pool(first=230, last=239), names=["leftover-0", "leftover-1"])]).result
    assert result["adopted"] == ["leftover-0"], result.get("msg")
    vms = read_vms(service_instance)
    assert addresses(service_instance)["leftover-0"] == "198.18.5.233"
    assert addresses(service_instance)["leftover-1"] == "198.18.5.230"
    network, _ = presented_networks(vms["leftover-0"])
    assert network["ethernets"]["id0"]["addresses"] == ["198.18.5.233/24"]
    assert network["ethernets"]["id0"]["match"]["macaddress"] == vms["leftover-0"]["mac"].lower()
    play([task("node_delete", cluster_name="leftover", all_nodes=True)])


def test_two_callers_at_once_on_one_pool_end_with_distinct_addresses_the_later_vm_made_again(
        vcsim, play, test_ova, cluster_key_file, service_instance, monkeypatch):
    range_ = pool(first=240, last=249)
    # The template exists first, so the two callers race for addresses only.
    play([pool_deploy("race", test_ova, range_, names=["race-warmup"])])
    play([task("node_delete", cluster_name="race", names=["race-warmup"])])
    both_read = threading.Barrier(2, timeout=120)
    choose = _build._choose_addresses

    def choose_then_wait_for_the_other(*args):
        choose(*args)  # both read the folder before either creates: both take .240 and .241
        both_read.wait()

    monkeypatch.setattr(_build, "_choose_addresses", choose_then_wait_for_the_other)
    events_before = len(vm_events(service_instance))
    results, errors = {}, []

    def deploy(request_id):
        try:
            params = module_params(vcsim, cluster_key_file, cluster_name="race", ovf=str(test_ova), count=2,
                                   request_id=request_id, power_on=False, ip_pool=range_, clone_from_template=True)
            with in_process_client(vcsim) as client:  # a session of its own, as another process has
                results[request_id] = _build.deploy(client, params, False,
                                                    ClusterKey.from_file(str(cluster_key_file), "race"))
        except Exception as error:  # reported below, with the thread's error
            errors.append(error)

    threads = [threading.Thread(target=deploy, args=(request_id,)) for request_id in ("operator", "head")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert errors == []
    vms = read_vms(service_instance)
    ours = {name: vm for name, vm in vms.items() if name.startswith("race-worker-")}
    assert len(ours) == 4
    recorded = sorted(vm["extra"]["ray-vsphere.ip-address"] for vm in ours.values())
    assert recorded == ["198.18.5.240", "198.18.5.241", "198.18.5.242", "198.18.5.243"], "distinct, lowest first"
    for name, vm in ours.items():
        network, ovf = presented_networks(vm)
        assert network == ovf and network["ethernets"]["id0"]["match"]["macaddress"] == vm["mac"].lower()
        assert network["ethernets"]["id0"]["addresses"] == [vm["extra"]["ray-vsphere.ip-address"] + "/24"]
    # The losers were destroyed and made again: VMs of these names were removed, and the ones there now are new.
    removed = [name for kind, name in vm_events(service_instance)[events_before:] if kind == "VmRemovedEvent"]
    assert removed and set(removed) <= set(ours), vm_events(service_instance)[events_before:]
    assert len(set(vm["mac"] for vm in ours.values())) == 4
    play([task("node_delete", cluster_name="race", all_nodes=True)])


def test_a_node_that_keeps_losing_its_address_is_made_again_five_times_then_the_deploy_fails_leaving_nothing(
        vcsim, test_ova, cluster_key_file, service_instance, monkeypatch):
    from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ip_pool
    # Another caller that always holds an older VM with the address this node just took: every re-read, it loses.
    monkeypatch.setattr(_ip_pool, "duplicates", lambda records: dict(records))
    names_before, events_before = sorted(read_vms(service_instance)), len(vm_events(service_instance))
    params = module_params(vcsim, cluster_key_file, cluster_name="loser", ovf=str(test_ova), names=["loser-0"],
                           ip_pool=pool(first=250, last=254), clone_from_template=True)
    with in_process_client(vcsim) as client:
        with pytest.raises(Exception, match=r"still share an address with older VMs after 5 tries") as raised:
            _build.deploy(client, params, False, ClusterKey.from_file(str(cluster_key_file), "loser"))
    assert "removed the VMs this call created: loser-0" in str(raised.value)
    # The image's template stays for later deploys, as after any failed deploy; no node does.
    assert [name for name in read_vms(service_instance)
            if name not in names_before and not name.startswith("ray-template-")] == []
    events = vm_events(service_instance)[events_before:]
    assert [name for kind, name in events if kind == "VmClonedEvent"] == ["loser-0"] * 6, "made, then again 5 times"
    assert not [name for kind, name in events if kind == "VmPoweredOnEvent"], "never powered on"
