"""Small pyVmomi helpers for the testbed: connect, read properties, wait.

Properties are read through the PropertyCollector only: vcsim answers an
attribute read of an unset property (``vm.snapshot``...) with a reply pyVmomi
cannot decode, while the PropertyCollector simply leaves it out.
"""

import time

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl


def connect(host, port, username, password):
    """Log in without certificate checks: vcsim's certificate is self-signed."""
    return SmartConnect(
        host=host, port=port, user=username, pwd=password, disableSslCertValidation=True
    )


def disconnect(service_instance):
    Disconnect(service_instance)


def container_view(service_instance, managed_type, root=None):
    content = service_instance.RetrieveContent()
    return content.viewManager.CreateContainerView(
        root or content.rootFolder, [managed_type], True
    )


def view_filter_spec(view, managed_type, paths):
    """A filter spec that selects `paths` of every object in a ContainerView."""
    traverse_view = vmodl.query.PropertyCollector.TraversalSpec(
        name="traverseView", path="view", skip=False, type=vim.view.ContainerView
    )
    return vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[
            vmodl.query.PropertyCollector.ObjectSpec(obj=view, skip=True, selectSet=[traverse_view])
        ],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=managed_type, pathSet=list(paths))],
    )


def retrieve(service_instance, filter_spec):
    """All objects a filter spec selects, as {managed object: {path: value}}."""
    collector = service_instance.content.propertyCollector
    result = collector.RetrievePropertiesEx([filter_spec], vmodl.query.PropertyCollector.RetrieveOptions())
    objects = {}
    while result:
        for obj in result.objects:
            objects[obj.obj] = {prop.name: prop.val for prop in obj.propSet}
        if not result.token:
            break
        result = collector.ContinueRetrievePropertiesEx(result.token)
    return objects


def objects_of_type(service_instance, managed_type, paths, root=None):
    view = container_view(service_instance, managed_type, root)
    try:
        return retrieve(service_instance, view_filter_spec(view, managed_type, paths))
    finally:
        view.Destroy()


def read_properties(service_instance, obj, paths):
    """{path: value} of one object; unset properties are absent."""
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=type(obj), pathSet=list(paths))],
    )
    return retrieve(service_instance, spec).get(obj, {})


def find_by_name(service_instance, managed_type, name):
    for obj, props in objects_of_type(service_instance, managed_type, ["name"]).items():
        if props.get("name") == name:
            return obj
    raise LookupError(f"no {managed_type.__name__} named {name!r} in the inventory")


def wait_for_task(service_instance, task, timeout=120.0):
    """Wait on task.info.state: vcsim runs some tasks synchronously, others not."""
    deadline = time.monotonic() + timeout
    while True:
        info = read_properties(service_instance, task, ["info"])["info"]
        if info.state == vim.TaskInfo.State.success:
            return info.result
        if info.state == vim.TaskInfo.State.error:
            raise info.error
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {info.descriptionId or info.key} still {info.state} after {timeout} s")
        time.sleep(0.02)
