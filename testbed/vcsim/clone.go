package main

// Clones as vCenter makes them.
//
//   - A linked clone (diskMoveType createNewChildDiskBacking) needs
//     spec.snapshot, the snapshot whose disks the clone's child disks grow
//     from; without one vCenter refuses it: "A specified parameter was not
//     correct: spec.snapshot" (InvalidArgument; pyvmomi issue #362). vcsim
//     ignores diskMoveType and makes a full clone.
//   - The clone keeps the source's vApp configuration (properties, products,
//     OVF environment transport): it is part of the virtual machine's
//     configuration, which a clone copies (vSphere API reference,
//     VirtualMachine.CloneVM_Task, "Creates a clone of this virtual
//     machine"; VAppConfigSpec is only the change to it; vApp properties of
//     a template deployed by cloning, govmomi issue #2201). vcsim's clone
//     drops it.
//   - The clone waits for provisioning room on its host (provisioning.go).

import (
	"slices"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// pendingClone follows one CloneVM_Task from the call to the end of its task.
type pendingClone struct {
	source  *simulator.VirtualMachine
	folder  types.ManagedObjectReference
	name    string
	release func() // gives back its provisioning cost units
	task    bool   // its task is made
}

func (s *strictness) beforeClone(ctx *simulator.Context, vm *simulator.VirtualMachine, req *types.CloneVM_Task) types.BaseMethodFault {
	linked := req.Spec.Location.DiskMoveType == string(types.VirtualMachineRelocateDiskMoveOptionsCreateNewChildDiskBacking)
	if linked && req.Spec.Snapshot == nil {
		return &types.InvalidArgument{InvalidProperty: "spec.snapshot"}
	}
	if _, ok := ctx.Map.Get(req.Folder).(*simulator.Folder); !ok {
		return nil // vcsim refuses it before making a task: nothing to wait for
	}
	cost := fullCloneCost
	if linked {
		cost = linkedCloneCost
	}
	var host types.ManagedObjectReference
	ctx.WithLock(vm, func() {
		if vm.Runtime.Host != nil {
			host = *vm.Runtime.Host
		}
	})
	if req.Spec.Location.Host != nil {
		host = *req.Spec.Location.Host
	}
	pending := &pendingClone{source: vm, folder: req.Folder, name: req.Name}
	pending.release = s.queue.acquire(host, cost)
	s.mu.Lock()
	s.clones = append(s.clones, pending)
	s.mu.Unlock()
	return nil
}

// taskMade ties a clone's task to its call, to give its cost units back
// when it ends. The task is made in the call's goroutine, right after
// beforeClone; calls on one source are serialized by the source's lock.
func (s *strictness) taskMade(task *simulator.Task) {
	if task.Info.DescriptionId != "VirtualMachine.cloneVm" || task.Info.Entity == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pending := range s.clones {
		if !pending.task && pending.source.Self == *task.Info.Entity {
			pending.task = true
			s.running[task.Self] = pending
			return
		}
	}
}

// taskEnded gives a clone the source's vApp config, under its task's lock
// as the task turns success (so no client sees the clone without it), and
// gives back the clone's cost units.
func (s *strictness) taskEnded(ctx *simulator.Context, task *mo.Task) {
	s.mu.Lock()
	pending, ok := s.running[task.Self]
	if ok {
		delete(s.running, task.Self)
		s.clones = slices.DeleteFunc(s.clones, func(other *pendingClone) bool { return other == pending })
	}
	s.mu.Unlock() // before taking VM locks: a clone call holds its source's lock while its task is made
	if !ok {
		return
	}
	defer pending.release()
	ref, ok := task.Info.Result.(types.ManagedObjectReference)
	if !ok || task.Info.State != types.TaskInfoStateSuccess {
		return
	}
	if clone, ok := ctx.Map.Get(ref).(*simulator.VirtualMachine); ok {
		var vapp *types.VmConfigInfo
		ctx.WithLock(pending.source, func() { vapp = copyVAppConfig(pending.source.Config.VAppConfig) })
		if vapp != nil {
			ctx.WithLock(clone, func() {
				ctx.Update(clone, []types.PropertyChange{{Name: "config.vAppConfig", Val: vapp}})
			})
		}
	}
}

// copyVAppConfig is a copy of a VM's vApp configuration that shares no slice with it.
func copyVAppConfig(config types.BaseVmConfigInfo) *types.VmConfigInfo {
	if config == nil {
		return nil
	}
	info := *config.GetVmConfigInfo()
	info.Product = append([]types.VAppProductInfo(nil), info.Product...)
	info.Property = append([]types.VAppPropertyInfo(nil), info.Property...)
	info.Eula = append([]string(nil), info.Eula...)
	info.OvfSection = append([]types.VAppOvfSectionInfo(nil), info.OvfSection...)
	info.OvfEnvironmentTransport = append([]string(nil), info.OvfEnvironmentTransport...)
	return &info
}

// mergePropertyEdits makes a ReconfigVM's vApp property edits change only
// the fields they set, as vCenter applies them: an "edit" VAppPropertySpec
// names the property by its key (vSphere API reference, ArrayUpdateSpec),
// and clients send the key and the new value alone. vcsim replaces the
// whole property with the edit, losing its id, type and label. Fields set to
// their zero value cannot be told from unset ones and are kept.
func mergePropertyEdits(ctx *simulator.Context, vm *simulator.VirtualMachine, req *types.ReconfigVM_Task) {
	if req.Spec.VAppConfig == nil {
		return
	}
	spec := req.Spec.VAppConfig.GetVmConfigSpec()
	ctx.WithLock(vm, func() {
		if vm.Config.VAppConfig == nil {
			return
		}
		existing := vm.Config.VAppConfig.GetVmConfigInfo().Property
		for i, edit := range spec.Property {
			if edit.Operation != types.ArrayUpdateOperationEdit || edit.Info == nil {
				continue
			}
			for _, current := range existing {
				if current.Key == edit.Info.Key {
					merged := current
					overlay(&merged.ClassId, edit.Info.ClassId)
					overlay(&merged.InstanceId, edit.Info.InstanceId)
					overlay(&merged.Id, edit.Info.Id)
					overlay(&merged.Category, edit.Info.Category)
					overlay(&merged.Label, edit.Info.Label)
					overlay(&merged.Type, edit.Info.Type)
					overlay(&merged.TypeReference, edit.Info.TypeReference)
					overlay(&merged.DefaultValue, edit.Info.DefaultValue)
					overlay(&merged.Value, edit.Info.Value)
					overlay(&merged.Description, edit.Info.Description)
					if edit.Info.UserConfigurable != nil {
						merged.UserConfigurable = edit.Info.UserConfigurable
					}
					spec.Property[i].Info = &merged
					break
				}
			}
		}
	})
}

func overlay(field *string, value string) {
	if value != "" {
		*field = value
	}
}
