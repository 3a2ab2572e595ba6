# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Ray's node tags as vCenter custom attributes: checked, read and written.

Every Ray tag (ray-cluster-name, ray-node-type, ray-user-node-type,
ray-launch-config, ray-node-status...) is one custom attribute of the same
name, so any process on any machine that can read vCenter sees the same
cluster: the head's autoscaler, a restarted head, `ray down` elsewhere. Why
custom attributes, and who can read them: _records.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, fault_text
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _vsphere

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module

TAG_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
NODE_KINDS = ("head", "worker")


def check_tags(tags, owner="tags"):
    """Tags as {str: str}; RayVsphereError naming the first bad key or value."""
    checked = {}
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not TAG_KEY.match(key):
            raise RayVsphereError("%s: %r is not a valid tag key (letters, digits, '.', '_', '-'; at most 80)"
                                  % (owner, key))
        if isinstance(value, (dict, list)):
            raise RayVsphereError("%s: the value of %r must be a string, not %s" % (owner, key, type(value).__name__))
        checked[key] = "" if value is None else str(value)
    return checked


def name_part(value):
    """value as part of a VM name that is also the node's host name: lower-case letters, digits and '-'.

    RFC 1123 host name labels: cloud-init sets the VM name as the host name.
    'GPU_worker.large' becomes 'gpu-worker-large'.
    """
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", (value or "").lower())).strip("-")


def check_name(value, what):
    if not value or not TAG_KEY.match(value):
        raise RayVsphereError("%s %r must be 1-80 letters, digits, '.', '_' or '-'" % (what, value))
    return value


class CustomAttributes(object):
    """The VirtualMachine custom attributes of one vCenter, by name."""

    def __init__(self, service_instance, field_defs):
        self._service_instance = service_instance
        self._key_by_name = {}
        self._learn(field_defs)

    def _learn(self, field_defs):
        for field in field_defs:
            if field.managedObjectType in (None, vim.VirtualMachine):
                self._key_by_name[field.name] = field.key

    def tags(self, custom_values):
        """{tag: value} from a VM's customValue property; empty values are unset tags."""
        name_by_key = dict((key, name) for name, key in self._key_by_name.items())
        return dict((name_by_key[value.key], value.value) for value in custom_values or []
                    if value.key in name_by_key and value.value)

    def require(self, names):
        """Fail, naming them, if any of these custom attributes has no definition in vCenter.

        Definitions are made once by an administrator (playbooks/vcenter_prepare.yml):
        AddCustomFieldDef needs Global.ManageCustomFields, a global privilege
        the account that runs Ray clusters should not have. Called before
        anything is created, in check mode too.
        """
        missing = sorted(name for name in names if name not in self._key_by_name)
        if missing:  # another session may have defined them since this one read the list
            manager = self._service_instance.content.customFieldsManager
            self._learn(_vsphere.read(self._service_instance, manager, ["field"]).get("field", []))
            missing = [name for name in missing if name not in self._key_by_name]
        if missing:
            raise RayVsphereError(
                "vCenter has no custom attribute definition %s (VirtualMachine), where Ray tags are kept. An "
                "administrator creates them once with the playbook ray_vsphere.cluster.vcenter_prepare "
                "(playbooks/vcenter_prepare.yml: every Ray tag, plus tag keys of your own in "
                "vcenter_prepare_extra_tag_keys); this collection does not create them itself, as that needs the "
                "global privilege Global.ManageCustomFields" % ", ".join(missing),
                missing_definitions=missing)

    def set(self, vm, vm_name, tags):
        self.require(tags)
        manager = self._service_instance.content.customFieldsManager
        for name, value in tags.items():
            try:
                manager.SetField(entity=vm, key=self._key_by_name[name], value=value)
            except vmodl.MethodFault as error:
                raise RayVsphereError("CustomFieldsManager.SetField(%s) on VM %s failed: %s"
                                      % (name, vm_name, fault_text(error)))
