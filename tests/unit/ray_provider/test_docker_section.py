"""`docker:` in a cluster YAML: refused where Ray would run commands in a container, or fail; passed where it would not.

The oracle is Ray's own: prepare_config (which `ray up` applies before the
provider sees the config) and NodeProvider.get_command_runner, which picks
Ray's docker command runner or its plain SSH one for a node.
"""

import copy
import logging
import subprocess
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.command_runner import DockerCommandRunner, SSHCommandRunner
from ray.autoscaler._private.util import prepare_config
from ray.autoscaler.node_provider import NodeProvider

from ray_provider import config

EXAMPLE = Path(__file__).parents[3] / "examples" / "ray-cluster.vsphere.yaml"
CONTAINER = {"image": "rayproject/ray:2.60.0", "container_name": "ray_container"}
REFUSED_CONTAINER = ("docker.image, docker.container_name: a container is not supported by ray_vsphere: Ray runs on "
                     "the VM itself, from the node image's /opt/ray, with no container runtime on the nodes. Remove "
                     "the docker section (an empty one is fine), and put what the image would bring into the node "
                     "image (ovf) or into setup_commands")


def example_with(docker=None, **node_type_docker):
    cluster = yaml.safe_load(EXAMPLE.read_text())
    if docker is not None:
        cluster["docker"] = docker
    for type_name, section in node_type_docker.items():
        cluster["available_node_types"][type_name]["docker"] = section
    return cluster


def problems(cluster):
    try:
        config.check_cluster_config(copy.deepcopy(cluster))
    except config.ClusterConfigError as error:
        return error.problems
    return []


def rays_command_runner(cluster):
    """The command runner Ray's `ray up` would use on the head; an exception where Ray fails."""
    logging.getLogger("ray.autoscaler._private.util").setLevel(logging.ERROR)
    prepared = prepare_config(copy.deepcopy(cluster))
    return NodeProvider({}, prepared["cluster_name"]).get_command_runner(
        "", "head", prepared["auth"], prepared["cluster_name"], subprocess, False, docker_config=prepared.get("docker"))


@pytest.mark.parametrize("docker", [None, {}, {"container_name": ""}, {"container_name": "", "image": "",
                                                                          "pull_before_run": True}])
def test_a_docker_section_that_asks_for_no_container_passes_as_ray_runs_commands_on_the_vm(docker):
    cluster = example_with(docker)
    assert isinstance(rays_command_runner(cluster), SSHCommandRunner)
    assert problems(cluster) == []


def test_a_docker_section_that_asks_for_a_container_is_refused_naming_its_keys_and_what_is_supported():
    cluster = example_with(CONTAINER)
    assert isinstance(rays_command_runner(cluster), DockerCommandRunner), "Ray would run commands in a container"
    assert problems(cluster) == [REFUSED_CONTAINER]
    for key in ("head_image", "worker_image"):
        assert problems(example_with({key: "rayproject/ray:2.60.0", "container_name": "ray"})) == [
            REFUSED_CONTAINER.replace("docker.image, docker.container_name", f"docker.{key}, docker.container_name")]


def test_a_node_types_image_is_refused_even_without_a_docker_section_ray_would_ignore_it_silently():
    cluster = example_with(cpu_worker={"worker_image": "rayproject/ray:2.60.0-gpu"})
    assert isinstance(rays_command_runner(cluster), SSHCommandRunner)
    assert problems(cluster) == [REFUSED_CONTAINER.replace(
        "docker.image, docker.container_name", "available_node_types.cpu_worker.docker.worker_image")]


def test_options_without_a_container_name_are_refused_since_ray_fails_on_them_once_the_head_exists():
    cluster = example_with({"pull_before_run": True, "run_options": ["--ulimit nofile=65536:65536"]})
    with pytest.raises(KeyError, match="container_name"):
        rays_command_runner(cluster)
    assert problems(cluster) == [
        "docker: pull_before_run, run_options without a container_name: Ray would fail once the head exists (it reads "
        "docker.container_name to choose how to run commands). Remove the docker section, or set container_name: \"\" "
        "(commands run on the VM; a container is not supported by ray_vsphere)"]
