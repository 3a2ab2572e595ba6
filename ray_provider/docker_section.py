"""The cluster YAML's `docker:` section: refused when it asks for a container, since nodes run Ray on the VM.

With a container, Ray's command runner (ray/autoscaler/_private/command_runner.py,
DockerCommandRunner) would run every setup and start command in a container
it starts with docker or podman on the node. This provider's nodes run Ray
on the VM itself, from the node image's /opt/ray, and the head's autoscaler
as its own OS user (ray_provider.head_start): no node image here has a
container runtime, and no head keeps its autoscaler in a container. So a
section that asks for one is refused at `ray up`, before anything is made,
rather than silently run on the VM.

Ray fills no docker defaults for an external provider (its schema's defaults
are documentation; validate_config does not apply them), and runs commands
on the VM unless the section names a container: an absent or empty section,
or one whose container_name is "" (Ray's documented way to turn docker off),
passes. A section of other options alone (pull_before_run, run_options) is
refused too: Ray's command runner reads its container_name without a default
(NodeProvider.get_command_runner), so `ray up` would fail with a KeyError
once the head exists.
"""

# The keys that ask for a container: the image to run (ray-schema.json: image, head_image and worker_image,
# a node type's worker_image) and the container's name, which makes Ray's command runner a docker one.
CONTAINER_KEYS = ("image", "head_image", "worker_image", "container_name")
SUPPORTED = ("not supported by ray_vsphere: Ray runs on the VM itself, from the node image's /opt/ray, with no "
             "container runtime on the nodes. Remove the docker section (an empty one is fine), and put what the "
             "image would bring into the node image (ovf) or into setup_commands")


def _asked(section, where):
    if not isinstance(section, dict):
        return []  # Ray's schema refuses a section that is not a mapping
    return [f"{where}.{key}" for key in CONTAINER_KEYS if section.get(key)]


def docker_problems(config):
    """The docker settings of a cluster YAML that ask for a container, or that Ray cannot run, as one problem; [] if none."""
    asked = _asked(config.get("docker"), "docker")
    for type_name, node_type in (config.get("available_node_types") or {}).items():
        if isinstance(node_type, dict):
            asked += _asked(node_type.get("docker"), f"available_node_types.{type_name}.docker")
    if asked:
        return [f"{', '.join(asked)}: a container is {SUPPORTED}"]
    docker = config.get("docker")
    if isinstance(docker, dict) and docker and "container_name" not in docker:
        return [f"docker: {', '.join(sorted(docker))} without a container_name: Ray would fail once the head exists "
                "(it reads docker.container_name to choose how to run commands). Remove the docker section, or set "
                "container_name: \"\" (commands run on the VM; a container is not supported by ray_vsphere)"]
    return []
