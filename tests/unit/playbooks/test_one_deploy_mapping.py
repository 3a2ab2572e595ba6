"""Node settings become node_deploy options in one task file, and every caller that deploys runs it.

So a new node_deploy option reaches the nodes role, the Ray provider's
playbooks and `ray up` with one edit beyond the module's spec and docs: its
line in that file, which a test here demands.
"""

import yaml

from testbed import PROJECT_ROOT

NODE_DEPLOY = {"ray_vsphere.cluster.node_deploy", "node_deploy"}
THE_TASK_FILE = "roles/nodes/tasks/deploy.yml"


def tasks_in(path):
    """Every task of a task file or playbook, those in plays and blocks included."""
    def walk(entries):
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict):
                yield entry
                for section in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"):
                    yield from walk(entry.get(section))
    return list(walk(yaml.safe_load(path.read_text())))


def test_node_deploy_is_called_in_one_task_file_of_the_roles_and_playbooks():
    task_files = [*PROJECT_ROOT.glob("roles/*/tasks/*.yml"), *PROJECT_ROOT.glob("playbooks/**/*.yml")]
    callers = [path.relative_to(PROJECT_ROOT).as_posix() for path in task_files
               if any(NODE_DEPLOY & set(task) for task in tasks_in(path))]
    assert callers == [THE_TASK_FILE]


def test_the_nodes_role_and_the_provider_playbooks_deploy_through_that_file():
    for playbook in ("playbooks/provider/create_nodes.yml", "playbooks/provider/check_config.yml"):
        included = [task["ansible.builtin.include_role"] for task in tasks_in(PROJECT_ROOT / playbook)
                    if "ansible.builtin.include_role" in task]
        assert any({"name": "ray_vsphere.cluster.nodes", "tasks_from": "deploy"}.items() <= include.items()
                   for include in included), playbook
    # The role's main entry point deploys through start.yml, which ray_up.yml also runs alone (the head's deploy).
    role_tasks = tasks_in(PROJECT_ROOT / "roles/nodes/tasks/main.yml")
    assert any(task.get("ansible.builtin.import_tasks") == "start.yml" for task in role_tasks)
    start_tasks = tasks_in(PROJECT_ROOT / "roles/nodes/tasks/start.yml")
    assert any(task.get("ansible.builtin.import_tasks") == "deploy.yml" for task in start_tasks)


def test_the_task_file_maps_every_node_deploy_option_by_its_own_name():
    """A node_deploy option added to the spec but not to the one mapping fails here, by name."""
    from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import DEPLOY_OPTIONS

    (task,) = tasks_in(PROJECT_ROOT / THE_TASK_FILE)
    mapped = task["ray_vsphere.cluster.node_deploy"]
    assert sorted(set(DEPLOY_OPTIONS) - set(mapped)) == []
    assert sorted(set(mapped) - set(DEPLOY_OPTIONS)) == []
    for option, value in mapped.items():
        assert f"item.{option}" in value, f"{option} is not taken from the item's own {option}"
