"""pyVmomi for the testbed: a login without certificate checks and name lookups.

Reading properties and waiting for tasks is the collection's module_utils
(_vsphere): the PropertyCollector only, since vcsim answers attribute reads of
unset properties with replies pyVmomi cannot decode.
"""

from pyVim.connect import Disconnect, SmartConnect

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _vsphere

read_properties = _vsphere.read


def connect(host, port, username, password):
    """Log in without certificate checks: vcsim's certificate is self-signed."""
    return SmartConnect(
        host=host, port=port, user=username, pwd=password, disableSslCertValidation=True
    )


def disconnect(service_instance):
    Disconnect(service_instance)


def objects_of_type(service_instance, managed_type, paths, root=None):
    return _vsphere.objects_in(service_instance, root or service_instance.content.rootFolder, managed_type, paths)


def find_by_name(service_instance, managed_type, name):
    for obj, props in objects_of_type(service_instance, managed_type, ["name"]).items():
        if props.get("name") == name:
            return obj
    raise LookupError(f"no {managed_type.__name__} named {name!r} in the inventory")


def wait_for_task(service_instance, task, timeout=120):
    return _vsphere.wait_for_task(service_instance, task, f"task {task._moId}", timeout)
