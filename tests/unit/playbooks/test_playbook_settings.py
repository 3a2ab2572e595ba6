"""How the playbooks resolve their settings (playbooks/vars/ray_defaults.yml), without a vCenter.

A play loads the playbooks' vars file as ray_up.yml does and prints the
resolved ray_cfg_* values, with inputs as AWX passes them (extra vars, the
inventory, blank survey answers) and with a head's record.
"""

import json

import pytest

from testbed.playbook_settings import resolved
from testbed.guests import make_key_pair

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ray_resources
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ray_auth_token


def test_questions_left_blank_leave_the_inventory_values_and_blank_answers_the_defaults(tmp_path):
    # AWX's UI posts no blank field, and the surveys' optional questions have no
    # default to inject: the inventory's pool and folder are not overridden. An
    # answer that does reach the play blank counts as not set.
    values = resolved(tmp_path, {"ray_cluster_name": "c", "ray_ssh_user": "", "ray_setup_commands": "",
                                 "ray_start_options": "", "ray_worker_cpus": ""},
                      inventory_vars={"ray_resource_pool": "ray", "ray_vm_folder": "ray/c"})
    assert values["ray_cfg_resource_pool"] == "ray" and values["ray_cfg_vm_folder"] == "ray/c"
    assert values["ray_cfg_ssh_user"] == "ubuntu" and values["ray_cfg_worker_cpus"] == 0
    assert values["ray_cfg_setup_commands_list"] == [] and values["ray_cfg_start_options_list"] == []


def test_survey_text_becomes_commands_without_blank_lines_and_options_split_by_shell_quoting(tmp_path):
    values = resolved(tmp_path, {"ray_cluster_name": "c", "ray_setup_commands": "echo a\n\n   \necho 'b  c'\n",
                                 "ray_start_options": "--num-cpus=4 --resources='{\"GPU\": 1}' --labels=\"a b\""})
    assert values["ray_cfg_setup_commands_list"] == ["echo a", "echo 'b  c'"]
    assert values["ray_cfg_start_options_list"] == ["--num-cpus=4", '--resources={"GPU": 1}', "--labels=a b"]


def test_lists_from_a_vars_file_are_kept_and_an_explicit_zero_counts(tmp_path):
    values = resolved(tmp_path, {"ray_cluster_name": "c", "ray_setup_commands": ["echo a"],
                                 "ray_start_options": ["--num-cpus=4"], "ray_worker_count": 0, "ray_worker_cpus": 0},
                      record={"worker_cpus": 8})
    assert values["ray_cfg_setup_commands_list"] == ["echo a"]
    assert values["ray_cfg_start_options_list"] == ["--num-cpus=4"]
    assert values["ray_cfg_worker_count"] == 0 and values["ray_cfg_worker_cpus"] == 0


def test_the_heads_record_fills_in_what_is_not_set_and_given_values_win(tmp_path):
    record = {"ovf": "https://images/r.ova", "resource_pool": "recorded", "vm_folder": "ray", "ssh_user": "rocky",
              "setup_commands": ["echo recorded"], "start_options": ["--num-cpus=1"], "worker_cpus": 2}
    values = resolved(tmp_path, {"ray_cluster_name": "c", "ray_vm_folder": "elsewhere", "ray_setup_commands": ""},
                      record=record)
    assert values["ray_cfg_ovf"] == "https://images/r.ova" and values["ray_cfg_resource_pool"] == "recorded"
    assert values["ray_cfg_vm_folder"] == "elsewhere" and values["ray_cfg_ssh_user"] == "rocky"
    assert values["ray_cfg_setup_commands_list"] == ["echo recorded"], "a blank answer is not an answer"
    assert values["ray_cfg_start_options_list"] == ["--num-cpus=1"] and values["ray_cfg_worker_cpus"] == 2


def test_the_token_is_of_the_recorded_epoch_and_the_head_records_the_epoch_used(tmp_path):
    key = make_key_pair(tmp_path / "key")
    shown = ["ray_cfg_token_epoch", "ray_cfg_auth_token", "ray_cfg_deploy_settings"]
    fresh = resolved(tmp_path / "fresh", {"ray_cluster_name": "c", "ray_ssh_private_key": str(key)}, shown=shown)
    assert fresh["ray_cfg_token_epoch"] == 0 and fresh["ray_cfg_deploy_settings"]["token_epoch"] == 0
    assert fresh["ray_cfg_auth_token"] == ray_auth_token(key.read_text(), "c", 0)
    recorded = resolved(tmp_path / "recorded", {"ray_cluster_name": "c", "ray_ssh_private_key": str(key)},
                        record={"token_epoch": 3}, shown=shown)
    assert recorded["ray_cfg_auth_token"] == ray_auth_token(key.read_text(), "c", 3) != fresh["ray_cfg_auth_token"]
    assert recorded["ray_cfg_deploy_settings"]["token_epoch"] == 3, "a later ray_up keeps the epoch recorded"
    given = resolved(tmp_path / "given", {"ray_cluster_name": "c", "ray_ssh_private_key": str(key), "ray_token_epoch": 4},
                     record={"token_epoch": 3}, shown=shown)
    assert given["ray_cfg_auth_token"] == ray_auth_token(key.read_text(), "c", 4)
    assert given["ray_cfg_deploy_settings"]["token_epoch"] == 4


@pytest.mark.parametrize("ovf, recorded", [
    ("https://images.example.com/ray.ova", True),
    ("/srv/images/ray.ova", True),
    ("https://user:secret@images.example.com/ray.ova", False),
    ("https://bucket.example.com/ray.ova?X-Amz-Signature=abc", False),
])
def test_the_record_holds_no_secret(tmp_path, ovf, recorded):
    values = resolved(tmp_path, {"ray_cluster_name": "c", "ray_ovf": ovf, "ray_ssh_private_key": "/keys/c"})
    settings = values["ray_cfg_deploy_settings"]
    assert ("ovf" in settings) is recorded and settings.get("ovf", ovf) == ovf
    assert "/keys/c" not in json.dumps(settings)


def test_the_images_sha256_is_recorded_with_it_and_used_only_with_the_recorded_image(tmp_path):
    digest, other = "a" * 64, "b" * 64
    given = resolved(tmp_path, {"ray_cluster_name": "c", "ray_ovf": "http://images/r.ova", "ray_ovf_sha256": digest})
    assert given["ray_cfg_ovf_sha256"] == digest
    assert given["ray_cfg_deploy_settings"]["ovf_sha256"] == digest
    record = {"ovf": "http://images/r.ova", "ovf_sha256": digest}
    assert resolved(tmp_path, {"ray_cluster_name": "c"}, record=record)["ray_cfg_ovf_sha256"] == digest
    # Another image given: the recorded hash is the old image's, so it does not come along.
    another = resolved(tmp_path, {"ray_cluster_name": "c", "ray_ovf": "https://images/new.ova"}, record=record)
    assert another["ray_cfg_ovf_sha256"] == "" and "ovf_sha256" not in another["ray_cfg_deploy_settings"]
    both = resolved(tmp_path, {"ray_cluster_name": "c", "ray_ovf": "http://images/new.ova", "ray_ovf_sha256": other},
                    record=record)
    assert both["ray_cfg_ovf_sha256"] == other


@pytest.mark.parametrize("given", ["#cloud-config\n{\"runcmd\": [\"true\"]}\n", {"runcmd": ["true"]}],
                         ids=["survey text", "vars file mapping"])
def test_user_data_reaches_the_nodes_role_as_given_and_is_never_recorded_on_the_head(tmp_path, given):
    values = resolved(tmp_path, {"ray_cluster_name": "c", "ray_user_data": given},
                      shown=["ray_cfg_user_data", "ray_cfg_deploy_settings"])
    assert values["ray_cfg_user_data"] == given
    assert "user_data" not in json.dumps(values["ray_cfg_deploy_settings"]) and "runcmd" not in json.dumps(
        values["ray_cfg_deploy_settings"])
    assert resolved(tmp_path / "blank", {"ray_cluster_name": "c", "ray_user_data": ""},
                    shown=["ray_cfg_user_data"])["ray_cfg_user_data"] == ""


GPU_SHOWN = ["ray_cfg_worker_gpu_settings", "ray_cfg_worker_start_options_list", "ray_cfg_head_start_options_list",
             "ray_cfg_deploy_settings", "ray_cfg_worker_record"]


def test_worker_gpus_from_a_survey_become_node_deploy_settings_ray_start_options_and_the_heads_record(tmp_path):
    values = resolved(tmp_path, {"ray_cluster_name": "c", "ray_worker_gpu_model": "A100", "ray_worker_gpu_label": "a100",
                                 "ray_worker_gpu_count": "2", "ray_start_options": "--num-cpus=4"}, shown=GPU_SHOWN)
    gpus = [{"model": "A100", "label": "a100", "count": 2}]
    assert values["ray_cfg_worker_gpu_settings"] == {"gpus": gpus}
    # What the provider fills a node type's resources with, from the same settings: one derivation.
    resources = _ray_resources.gpu_resources({"gpus": gpus})
    assert resources == {"GPU": 2, "accelerator_type:A100": 1}
    assert values["ray_cfg_worker_start_options_list"] == ["--num-gpus=2", '--resources={"accelerator_type:A100": 1}',
                                                           "--num-cpus=4"]
    assert values["ray_cfg_head_start_options_list"] == ["--num-cpus=4"], "the head has no GPU unless it is given one"
    assert values["ray_cfg_deploy_settings"]["worker_gpus"] == gpus
    assert values["ray_cfg_worker_record"]["gpus"] == gpus


def test_a_vgpu_profile_replaces_the_recorded_gpus_and_without_gpu_settings_nothing_changes(tmp_path):
    record = {"worker_gpus": [{"model": "A100", "label": "a100"}], "worker_cpus": 2}
    values = resolved(tmp_path / "vgpu", {"ray_cluster_name": "c", "ray_worker_vgpu_profile": "grid_a100-20c",
                                          "ray_head_vgpu_profile": "grid_a100-10c"}, record=record, shown=GPU_SHOWN)
    assert values["ray_cfg_worker_gpu_settings"] == {"vgpu_profile": "grid_a100-20c"}
    assert values["ray_cfg_worker_start_options_list"] == values["ray_cfg_head_start_options_list"] == [
        "--num-gpus=1", '--resources={"accelerator_type:A100": 1}']
    assert "worker_gpus" not in values["ray_cfg_deploy_settings"]
    # The head's are recorded too: a run that restarts Ray on it later still tells Ray of its vGPU.
    assert values["ray_cfg_deploy_settings"]["head_vgpu_profile"] == "grid_a100-10c"
    restarted = resolved(tmp_path / "restart", {"ray_cluster_name": "c", "ray_restart": True},
                         record=values["ray_cfg_deploy_settings"], shown=GPU_SHOWN)
    assert restarted["ray_cfg_head_start_options_list"] == ["--num-gpus=1", '--resources={"accelerator_type:A100": 1}']
    recorded = resolved(tmp_path / "recorded", {"ray_cluster_name": "c"}, record=record, shown=GPU_SHOWN)
    assert recorded["ray_cfg_worker_gpu_settings"] == {"gpus": [{"model": "A100", "label": "a100"}]}
    none = resolved(tmp_path / "none", {"ray_cluster_name": "c", "ray_worker_gpus": []}, record=record, shown=GPU_SHOWN)
    assert none["ray_cfg_worker_gpu_settings"] == {} and none["ray_cfg_worker_start_options_list"] == []
    # A cluster without GPUs records and compares what it did before: its workers are not outdated by this.
    assert set(none["ray_cfg_worker_record"]) == {"node_type", "vsphere_cluster", "datastore", "resource_pool",
                                                  "network", "cpus", "memory_mb", "ovf"}
    assert not [key for key in none["ray_cfg_deploy_settings"] if "gpu" in key]


IP_POOL_SHOWN = ["ray_cfg_head_ip_pool", "ray_cfg_worker_ip_pool", "ray_cfg_ip_pool_problems", "ray_cfg_deploy_settings",
                 "ray_cfg_worker_record"]
TESTBED_POOL = {"cidr": "198.18.1.0/24", "range": "198.18.1.200-198.18.1.254", "gateway": "198.18.1.1"}


def test_one_pool_from_a_vars_file_is_the_head_and_workers_and_the_head_records_both(tmp_path):
    values = resolved(tmp_path, {"ray_cluster_name": "c", "ray_ip_pool": TESTBED_POOL}, shown=IP_POOL_SHOWN)
    assert values["ray_cfg_head_ip_pool"] == values["ray_cfg_worker_ip_pool"] == TESTBED_POOL
    assert values["ray_cfg_ip_pool_problems"] == [], "one pool, shared by both kinds"
    assert values["ray_cfg_deploy_settings"]["head_ip_pool"] == values["ray_cfg_deploy_settings"]["worker_ip_pool"] \
        == TESTBED_POOL
    assert values["ray_cfg_worker_record"]["ip_pool"] == TESTBED_POOL, "a worker of another pool is outdated"
    # ray_workers.yml given only the cluster's name: the head's record, and a kind's own override wins over it.
    recorded = resolved(tmp_path / "recorded", {"ray_cluster_name": "c"},
                        record=values["ray_cfg_deploy_settings"], shown=IP_POOL_SHOWN)
    assert recorded["ray_cfg_worker_ip_pool"] == recorded["ray_cfg_head_ip_pool"] == TESTBED_POOL
    apart = dict(TESTBED_POOL, range="198.18.1.230-198.18.1.254")
    overridden = resolved(tmp_path / "overridden", {"ray_cluster_name": "c", "ray_worker_ip_pool": apart},
                          record=values["ray_cfg_deploy_settings"], shown=IP_POOL_SHOWN)
    assert overridden["ray_cfg_worker_ip_pool"] == apart
    dhcp = resolved(tmp_path / "dhcp", {"ray_cluster_name": "c", "ray_worker_ip_pool": {}},
                    record=values["ray_cfg_deploy_settings"], shown=IP_POOL_SHOWN)
    assert dhcp["ray_cfg_worker_ip_pool"] == {} and "ip_pool" not in dhcp["ray_cfg_worker_record"]


def test_without_a_pool_nothing_is_recorded_or_compared(tmp_path):
    values = resolved(tmp_path, {"ray_cluster_name": "c"}, shown=IP_POOL_SHOWN)
    assert values["ray_cfg_head_ip_pool"] == values["ray_cfg_worker_ip_pool"] == {}
    assert not [key for key in values["ray_cfg_deploy_settings"] if "ip_pool" in key]
    assert "ip_pool" not in values["ray_cfg_worker_record"] and values["ray_cfg_ip_pool_problems"] == []


def test_overlapping_head_and_worker_pools_and_a_bad_pool_are_named_before_anything_is_made(tmp_path):
    overlapping = resolved(tmp_path, {"ray_cluster_name": "c", "ray_head_ip_pool": TESTBED_POOL,
                                      "ray_worker_ip_pool": dict(TESTBED_POOL, range="198.18.1.250-198.18.1.254")},
                           shown=IP_POOL_SHOWN)
    assert overlapping["ray_cfg_ip_pool_problems"] == [
        "ray_worker_ip_pool: overlaps ray_head_ip_pool on the same network (both hold 198.18.1.250): give the two "
        "one pool (the same ip_pool, whose addresses the nodes share), or pools without a common address"]
    # node_deploy's own check (_ip_pool.pool_problems), named by the variable.
    wrong_gateway = resolved(tmp_path / "gateway", {"ray_cluster_name": "c",
                                                    "ray_ip_pool": dict(TESTBED_POOL, gateway="198.18.2.1")},
                             shown=IP_POOL_SHOWN)
    assert wrong_gateway["ray_cfg_ip_pool_problems"] == [
        "ray_ip_pool.gateway: gateway 198.18.2.1 is outside cidr 198.18.1.0/24"]
    wrong_range = resolved(tmp_path / "range", {"ray_cluster_name": "c", "ray_ip_pool": TESTBED_POOL,
                                                "ray_worker_ip_pool": dict(TESTBED_POOL, range="198.18.1.254-198.18.1.250")},
                           shown=IP_POOL_SHOWN)
    assert wrong_range["ray_cfg_ip_pool_problems"] == [
        "ray_worker_ip_pool.range: 198.18.1.254-198.18.1.250 is reversed: its first address is after its last"]
