package main

// The VM methods that check a VM's GPUs first (gpu_admission.go says what
// vCenter does and where that comes from).
//
// vcsim dispatches a method to the object the calling session's registry
// holds under its reference before the global one (simulator.Service.call,
// Session.Get), and the PropertyCollector reads through an object's Get()
// (property_collector.go getObject): the Handler puts, in the caller's
// session, a gpuVirtualMachine embedding the VM, whose methods below check
// first. vcsim itself keeps reading the global VM.

import (
	"fmt"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// gpuVirtualMachine is a VM as the calling session's dispatch sees it.
type gpuVirtualMachine struct {
	*simulator.VirtualMachine
	ledger *gpuLedger
	// Entity hides the VM's Entity method: the session registry's Put would otherwise reset the VM's
	// status and effectiveRole (simulator.Registry.Put does so for every mo.Entity).
	Entity struct{}
}

// Get is what the PropertyCollector reads: the VM itself.
func (w *gpuVirtualMachine) Get() mo.Reference { return w.VirtualMachine }

func failedTask(ctx *simulator.Context, vm *simulator.VirtualMachine, name string, fault types.BaseMethodFault) types.ManagedObjectReference {
	return simulator.CreateTask(vm, name, func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, fault
	}).Run(ctx)
}

func (w *gpuVirtualMachine) PowerOnVMTask(ctx *simulator.Context, req *types.PowerOnVM_Task) soap.HasFault {
	if !w.Config.Template {
		if fault := w.ledger.admit(ctx, w.VirtualMachine); fault != nil {
			return &methods.PowerOnVM_TaskBody{Res: &types.PowerOnVM_TaskResponse{Returnval: failedTask(ctx, w.VirtualMachine, "powerOn", fault)}}
		}
	}
	return w.VirtualMachine.PowerOnVMTask(ctx, req)
}

func (w *gpuVirtualMachine) SuspendVMTask(ctx *simulator.Context, req *types.SuspendVM_Task) soap.HasFault {
	if hasPassthrough(w.VirtualMachine) && w.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
		fault := &types.NotSupported{RuntimeFault: types.RuntimeFault{MethodFault: types.MethodFault{
			FaultMessage: []types.LocalizableMessage{{Key: "msg.suspend.passthrough",
				Message: "The operation is not supported on the object: a virtual machine with a PCI passthrough device cannot be suspended."}},
		}}}
		return &methods.SuspendVM_TaskBody{Res: &types.SuspendVM_TaskResponse{Returnval: failedTask(ctx, w.VirtualMachine, "suspend", fault)}}
	}
	return w.VirtualMachine.SuspendVMTask(ctx, req)
}

func (w *gpuVirtualMachine) snapshotRefusal() types.BaseMethodFault {
	requests := passthroughRequests(w.VirtualMachine)
	if len(requests) == 0 {
		return nil
	}
	device := fmt.Sprintf("Device '%s' is a PCI passthrough device.", requests[0].label)
	return &types.SnapshotIncompatibleDeviceInVm{
		SnapshotFault: types.SnapshotFault{VimFault: types.VimFault{MethodFault: types.MethodFault{
			FaultMessage: []types.LocalizableMessage{{Key: "msg.snapshot.error-incompatibleDevice",
				Message: "Virtual machine is configured to use a device that prevents the snapshot operation: " + device}},
		}}},
		Fault: types.LocalizedMethodFault{Fault: &types.DeviceNotSupported{Device: requests[0].label}, LocalizedMessage: device},
	}
}

func (w *gpuVirtualMachine) CreateSnapshotTask(ctx *simulator.Context, req *types.CreateSnapshot_Task) soap.HasFault {
	if fault := w.snapshotRefusal(); fault != nil {
		return &methods.CreateSnapshot_TaskBody{Res: &types.CreateSnapshot_TaskResponse{Returnval: failedTask(ctx, w.VirtualMachine, "createSnapshot", fault)}}
	}
	return w.VirtualMachine.CreateSnapshotTask(ctx, req)
}

func (w *gpuVirtualMachine) CreateSnapshotExTask(ctx *simulator.Context, req *types.CreateSnapshotEx_Task) soap.HasFault {
	if fault := w.snapshotRefusal(); fault != nil {
		return &methods.CreateSnapshotEx_TaskBody{Res: &types.CreateSnapshotEx_TaskResponse{Returnval: failedTask(ctx, w.VirtualMachine, "createSnapshotEx", fault)}}
	}
	return w.VirtualMachine.CreateSnapshotExTask(ctx, req)
}

func (w *gpuVirtualMachine) CloneVMTask(ctx *simulator.Context, req *types.CloneVM_Task) soap.HasFault {
	linked := req.Spec.Location.DiskMoveType == string(types.VirtualMachineRelocateDiskMoveOptionsCreateNewChildDiskBacking)
	if linked {
		if fault := w.snapshotRefusal(); fault != nil {
			// "cloneVm", as vcsim's own clone task: strict.go gives the clone's provisioning units back as it ends.
			return &methods.CloneVM_TaskBody{Res: &types.CloneVM_TaskResponse{Returnval: failedTask(ctx, w.VirtualMachine, "cloneVm", fault)}}
		}
	}
	return w.VirtualMachine.CloneVMTask(ctx, req)
}

// ReconfigVMTask refuses a VirtualPCIPassthrough whose backing is the base
// VirtualDevice.DeviceBackingInfo: what pyVmomi sends for a Dynamic DirectPath
// or vGPU backing when it negotiated an API older than the backing's (7.0),
// and no passthrough vCenter knows (InvalidDeviceBacking: "the backing of a
// device is not valid", vSphere API reference). vcsim would keep it, and the
// VM would power on with no GPU.
func (w *gpuVirtualMachine) ReconfigVMTask(ctx *simulator.Context, req *types.ReconfigVM_Task) soap.HasFault {
	for index, change := range req.Spec.DeviceChange {
		spec := change.GetVirtualDeviceConfigSpec()
		passthrough, ok := spec.Device.(*types.VirtualPCIPassthrough)
		if !ok || spec.Operation == types.VirtualDeviceConfigSpecOperationRemove {
			continue
		}
		if _, base := passthrough.Backing.(*types.VirtualDeviceDeviceBackingInfo); base || passthrough.Backing == nil {
			fault := &types.InvalidDeviceBacking{InvalidDeviceSpec: types.InvalidDeviceSpec{
				InvalidVmConfig: types.InvalidVmConfig{
					VmConfigFault: types.VmConfigFault{VimFault: types.VimFault{MethodFault: types.MethodFault{
						FaultMessage: []types.LocalizableMessage{{Key: "msg.device.backing.invalid",
							Message: fmt.Sprintf("Invalid configuration for device '%d': a PCI passthrough device needs a Dynamic DirectPath, vGPU or DirectPath backing (vSphere API 7.0 or later for the first two).", index)}},
					}}},
					Property: fmt.Sprintf("spec.deviceChange[%d].device.backing", index),
				},
				DeviceIndex: int32(index),
			}}
			return &methods.ReconfigVM_TaskBody{Res: &types.ReconfigVM_TaskResponse{Returnval: failedTask(ctx, w.VirtualMachine, "reconfigVm", fault)}}
		}
	}
	return w.VirtualMachine.ReconfigVMTask(ctx, req)
}

// gpuMethods are the VM methods gpuVirtualMachine answers.
var gpuMethods = map[string]bool{
	"ReconfigVM_Task": true, "PowerOnVM_Task": true, "SuspendVM_Task": true, "CreateSnapshot_Task": true, "CreateSnapshotEx_Task": true, "CloneVM_Task": true,
}
