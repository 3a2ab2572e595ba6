# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Which privileges an account holds on vSphere objects, as vCenter itself reckons them.

vCenter combines an object's own permissions, those propagated down its
folder chain and, for a VM, down its resource pool chain (vSphere Security,
"Hierarchical Inheritance of Permissions"): asking it is the only answer that
follows every grant an administrator made, ours or not.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _vsphere, _waiter

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module

# The object types a check names, by their vSphere type name.
OBJECT_TYPES = ("Datacenter", "ClusterComputeResource", "ResourcePool", "Folder", "Datastore", "Network",
                "DistributedVirtualPortgroup")


def held(service_instance, entities, privilege_ids, user=None):
    """{entity's moid: sorted privileges of privilege_ids held there}: the session's own, or user's.

    The session's: AuthorizationManager.HasPrivilegeOnEntities on its own
    session key (System.Read on each entity). Another account's:
    HasUserPrivilegeOnEntities (System.View; user as "DOMAIN\\name" or
    "name@domain").
    """
    content = service_instance.content
    manager = content.authorizationManager
    call = "HasUserPrivilegeOnEntities(%s)" % user if user else "HasPrivilegeOnEntities"
    try:
        if user:
            answers = manager.HasUserPrivilegeOnEntities(entities=entities, userName=user, privId=privilege_ids)
        else:
            answers = manager.HasPrivilegeOnEntities(entity=entities, sessionId=content.sessionManager.currentSession.key,
                                                     privId=privilege_ids)
    except vmodl.MethodFault as error:
        raise _waiter.call_failed("AuthorizationManager.%s" % call, error)
    return dict((answer.entity._moId, sorted(privilege.privId for privilege in answer.privAvailability
                                             if privilege.isGranted)) for answer in answers)


def named(service_instance, type_name, name):
    """The one object of that type and name (or moid) in vCenter; an error naming every candidate otherwise."""
    managed_type = getattr(vim, type_name, None) or getattr(vim.dvs, type_name)
    found = _vsphere.objects_in(service_instance, service_instance.content.rootFolder, managed_type, ["name"])
    matches = [obj for obj, props in found.items() if obj._moId == name or props.get("name") == name]
    if len(matches) != 1:
        raise RayVsphereError("%s %r: %s" % (type_name, name, "%d objects have that name (%s): give its moid" % (
            len(matches), ", ".join(sorted(obj._moId for obj in matches))) if matches else "not found (or not readable)"))
    return matches[0]
