package main

// What testbed/vsphere_method_privileges.yml adds to permissions.go's rules:
//
// `when`: a privilege the vSphere API reference requires only if the call
// sets a field ("VirtualMachine.Config.AdvancedConfig if changing values in
// extraConfig", ReconfigVM_Task): a dotted path into the request, by the
// reference's field names ("spec.config.extraConfig"), true when the field is
// set; a path through a list holds when it holds for any element.
//
// Objects the request names only through its spec or the inventory: the
// parent of the object called (Destroy_Task: "the appropriate privilege must
// be held on the parent of the destroyed entity as well as the entity
// itself"), the network a clone's NIC backing names (Network.Assign) and the
// object a task is about (Global.CancelTask: vSphere Security, "Global
// Privileges", "Affects: inventory object related to the task").

import (
	"reflect"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// applies: whether rule.When is set in the request body (no When: always).
func (rule enforcedPrivilege) applies(body interface{}) bool {
	if rule.When == "" {
		return true
	}
	return fieldSet(reflect.ValueOf(body), strings.Split(rule.When, "."))
}

func fieldSet(value reflect.Value, path []string) bool {
	for value.Kind() == reflect.Ptr || value.Kind() == reflect.Interface {
		if value.IsNil() {
			return false
		}
		value = value.Elem()
	}
	if len(path) == 0 {
		return !value.IsZero() && !(value.Kind() == reflect.Slice && value.Len() == 0)
	}
	switch value.Kind() {
	case reflect.Slice:
		for index := 0; index < value.Len(); index++ {
			if fieldSet(value.Index(index), path) {
				return true
			}
		}
		return false
	case reflect.Struct:
		field := value.FieldByNameFunc(func(name string) bool { return strings.EqualFold(name, path[0]) })
		return field.IsValid() && fieldSet(field, path[1:])
	}
	return false
}

// contextObject is the object of the `on` values that need the inventory: "parent", "backing_network", "task_entity".
func contextObject(ctx *simulator.Context, on string, method *simulator.Method) *types.ManagedObjectReference {
	switch on {
	case "parent":
		if entity, ok := ctx.Map.Get(method.This).(mo.Entity); ok {
			return entity.Entity().Parent
		}
	case "task_entity":
		if task, ok := ctx.Map.Get(method.This).(*simulator.Task); ok {
			return task.Info.Entity
		}
	case "backing_network":
		if clone, ok := method.Body.(*types.CloneVM_Task); ok && clone.Spec.Config != nil {
			for _, change := range clone.Spec.Config.DeviceChange {
				if network := backingNetwork(ctx, change.GetVirtualDeviceConfigSpec().Device); network != nil {
					return network
				}
			}
		}
	}
	return nil
}

// backingNetwork: a NIC's standard network, or the distributed port group its port connection names.
func backingNetwork(ctx *simulator.Context, device types.BaseVirtualDevice) *types.ManagedObjectReference {
	if device == nil {
		return nil
	}
	switch backing := device.GetVirtualDevice().Backing.(type) {
	case *types.VirtualEthernetCardNetworkBackingInfo:
		return backing.Network
	case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
		for _, ref := range ctx.Map.AllReference("DistributedVirtualPortgroup") {
			if group, ok := ctx.Map.Get(ref.Reference()).(*simulator.DistributedVirtualPortgroup); ok &&
				group.Key == backing.Port.PortgroupKey {
				found := group.Self
				return &found
			}
		}
	}
	return nil
}
