"""pyVmomi for the testbed: a login that verifies vcsim's certificate, and name lookups.

Reading properties and waiting for tasks is the collection's module_utils
(_vsphere, _waiter): the PropertyCollector only, since vcsim answers attribute reads of
unset properties with replies pyVmomi cannot decode.
"""

import ssl

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _records, _vsphere, _waiter

read_properties = _vsphere.read


def ssl_context(ca_path):
    """Verification against the testbed's CA only, host name included."""
    return ssl.create_default_context(cafile=str(ca_path))


def connect(host, port, username, password, ca_path):
    return SmartConnect(host=host, port=port, user=username, pwd=password, sslContext=ssl_context(ca_path))


def disconnect(service_instance):
    Disconnect(service_instance)


def objects_of_type(service_instance, managed_type, paths, root=None):
    return _vsphere.objects_in(service_instance, root or service_instance.content.rootFolder, managed_type, paths)


def powered_on_times(service_instance, max_events=1000):
    """{VM name: when vCenter powered it on (its VmPoweredOnEvent; the last one of a VM powered on again)}."""
    collector = service_instance.content.eventManager.CreateCollectorForEvents(vim.event.EventFilterSpec())
    try:
        events = collector.ReadNextEvents(max_events)
    finally:
        collector.DestroyCollector()
    return {event.vm.name: event.createdTime for event in events if isinstance(event, vim.event.VmPoweredOnEvent)}


def find_by_name(service_instance, managed_type, name):
    for obj, props in objects_of_type(service_instance, managed_type, ["name"]).items():
        if props.get("name") == name:
            return obj
    raise LookupError(f"no {managed_type.__name__} named {name!r} in the inventory")


def wait_for_task(service_instance, task, timeout=120):
    return _waiter.wait_for_task(service_instance, task, f"task {task._moId}", timeout)


def host_key_records(endpoint, instance_uuid):
    """What vCenter shows of a VM's host key, read at vcsim: (recorded public key, guestinfo.userdata, the vApp
    property user-data's values)."""
    service_instance = endpoint.connect()
    try:
        vm = service_instance.content.searchIndex.FindByUuid(None, instance_uuid, True, True)
        props = _vsphere.read(service_instance, vm, ["config.extraConfig", "config.vAppConfig.property"])
    finally:
        service_instance.content.sessionManager.Logout()
    extra = _records.extra_config(props)
    user_data = [prop.value or "" for prop in props.get("config.vAppConfig.property") or [] if prop.id == "user-data"]
    return extra.get(_records.SSH_HOST_KEY), extra.get(_records.GUESTINFO_USERDATA), user_data


def images_at(endpoint):
    """What vcsim shows of the images in use: ({VM name: the template it was cloned from}, {template name: its
    image's SHA-256}), read from every VM's and template's own extraConfig."""
    from pyVmomi import vim

    service_instance = endpoint.connect()
    try:
        found = objects_of_type(service_instance, vim.VirtualMachine, ["name", "config.template", "config.extraConfig"])
    finally:
        service_instance.content.sessionManager.Logout()
    cloned_from, images = {}, {}
    for props in found.values():
        extra = _records.extra_config(props)
        if props.get("config.template"):
            images[props["name"]] = extra.get(_records.IMAGE_SHA256)
        else:
            cloned_from[props["name"]] = extra.get(_records.CLONED_FROM)
    return cloned_from, images
