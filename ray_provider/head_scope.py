"""What the head's own account reaches: `ray up` refuses one that holds VirtualMachine privileges on its pool.

A VM inherits permissions along its resource pool chain as along its folder
chain (vSphere Security, "Hierarchical Inheritance of Permissions"), so an
account with VirtualMachine privileges on the pool reaches every VM in it,
whatever its folder or team: a job on the head could power off or delete
them. vcenter_prepare.yml grants the pool only Resource.AssignVMToPool; any
more (a propagating grant on the pool, its cluster or above) is refused here,
asked of vCenter itself with AuthorizationManager.HasPrivilegeOnEntities on
the head's own session. A permission on the pool itself overrides, for the
pool, what propagates from above it, though not for the VMs in it: the check
sees a grant propagating from above only where the pool has none of its own
(vcenter_prepare.yml gives it one, and above it only read-only, not
propagating).
"""

from pathlib import Path

import yaml
import ansible_collections.ray_vsphere.cluster as collection
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _placement, _privileges
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError

REQUIREMENTS = Path(list(collection.__path__)[0]) / "meta" / "vcenter_requirements.yml"
PLACEMENT_KEYS = tuple(_placement.PLACEMENT_OPTIONS)


def forbidden_on_pool(requirements=None):
    """The autoscaler role's privileges of the groups meta/vcenter_requirements.yml forbids on the pool."""
    requirements = requirements or yaml.safe_load(REQUIREMENTS.read_text())
    groups = tuple(group + "." for group in requirements["pool_forbidden_privilege_groups"])
    return sorted({grant["privilege"] for method in requirements["methods"] if "autoscaler" in method["roles"]
                   for grant in method["privileges"] if grant["privilege"].startswith(groups)})


def pool_privilege_problems(service_instance, username, node_types):
    """Problems, one per resource pool of node_types on which the logged-in account holds a forbidden privilege."""
    requirements = yaml.safe_load(REQUIREMENTS.read_text())
    privileges = forbidden_on_pool(requirements)
    pool_role = requirements["placement_roles"]["pool"]["name"]
    pools = {}
    for settings in node_types:
        params = {key: settings.get(key) for key in PLACEMENT_KEYS}
        try:
            pool = _placement.resolve(service_instance, params).resource_pool
        except RayVsphereError as error:
            return ["the head's account %r cannot find node type %s's placement: %s"
                    % (username, settings.get("node_type"), error)]
        pools.setdefault(pool._moId, (pool, params.get("resource_pool") or params.get("cluster")))
    try:
        held = _privileges.held(service_instance, [pool for pool, _ in pools.values()], privileges)
    except RayVsphereError as error:
        return ["the head's account %r: %s" % (username, error)]
    problems = []
    for moid, (_, named) in sorted(pools.items()):
        if held.get(moid):
            problems.append(
                "the head's account %r holds %s on resource pool %s (%s): a VM inherits permissions from its pool, "
                "so it reaches every VM there, of any folder. Grant the pool only the role %s, not propagating, and "
                "no role with VirtualMachine privileges on it or above it (playbooks/vcenter_prepare.yml)"
                % (username, ", ".join(held[moid]), named, moid, pool_role))
    return problems
