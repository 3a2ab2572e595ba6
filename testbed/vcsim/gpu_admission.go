package main

// Power-on admission and device bindings for VMs with GPUs, as vCenter and
// ESXi do them for a cluster without DRS (the caller picked the host):
//
//   - A VirtualPCIPassthrough with a VirtualPCIPassthroughDynamicBackingInfo
//     (Dynamic DirectPath I/O, vSphere 7.0) takes, at power-on, a free
//     passthrough device of its host matching one allowedDevice (vendorId,
//     deviceId, and subVendorId/subDeviceId when set) and its customLabel
//     when set (the host's hardwareLabel). One with a
//     VirtualPCIPassthroughVmiopBackingInfo (NVIDIA vGPU) takes room on a
//     shared-direct GPU of its host offering its profile: time-sliced vGPUs
//     on one physical GPU are all of one profile, and the GPU holds
//     framebuffer / profile framebuffer of them (NVIDIA Virtual GPU Software
//     User Guide, "Homogeneous time-sliced vGPUs"; A100 40GB: grid_a100-20c,
//     2 per GPU). The bindings show in the host's
//     config.assignableHardwareBinding (passthrough) and config.graphicsInfo
//     (vGPU) and are given back when the VM is powered off or destroyed.
//   - When nothing is free, the power-on task fails with
//     InsufficientResourcesFault (Dynamic DirectPath) or its subclass
//     InsufficientGraphicsResourcesFault ("Graphics resources admission
//     control failed", vSphere API reference; vGPU), with the message
//     vCenter gives: "Insufficient resources. One or more devices
//     (pciPassthru0) required by VM ... are not available on host ...".
//   - A passthrough VM needs all its memory reserved; without it the
//     power-on fails with "Invalid memory setting: memory reservation
//     (sched.mem.min) should be equal to memsize(N)", the message ESXi
//     gives since 6.5 (GenericVmConfigFault, a message from the virtual
//     machine). memoryReservationLockedToMax or a reservation of all the
//     memory satisfy it.
//   - Dynamic DirectPath needs virtual hardware 17 (vSphere 7.0): below it
//     the power-on fails with DeviceUnsupportedForVmVersion
//     (currentVersion, expectedVersion "vmx-17"; vSphere API reference:
//     "thrown if a specific device is not supported for a given version of
//     the virtual machine").
//   - Snapshots of a passthrough VM (CreateSnapshot_Task,
//     CreateSnapshotEx_Task) and linked clones of one (CloneVM_Task with
//     diskMoveType createNewChildDiskBacking, which grows child disks
//     from a snapshot) fail with SnapshotIncompatibleDeviceInVm ("a snapshot
//     operation cannot be performed on account of an incompatible device",
//     vSphere API reference), its fault a DeviceNotSupported naming the
//     device; vSphere's DirectPath I/O documentation lists snapshots,
//     suspend and resume, and vMotion as unavailable with passthrough.
//   - Suspending one (SuspendVM_Task) fails with NotSupported.
//
// Every refusal is the error of the method's task, as vCenter reports
// power-on and snapshot failures (task.info.error), not a fault of the call.
//
// vcsim dispatches a method to the object the calling session's registry
// holds under its reference before the global one (simulator.Service.call,
// Session.Get), and the PropertyCollector reads through an object's Get()
// (property_collector.go getObject): the Handler puts, in the caller's
// session, a gpuVirtualMachine embedding the VM, whose methods above check
// first. vcsim itself keeps reading the global VM.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// dynamicDirectPathHardwareVersion is the first virtual hardware version with Dynamic DirectPath I/O (vSphere 7.0).
const dynamicDirectPathHardwareVersion = 17

// gpuDevice is one physical GPU of a host and the VMs using it.
type gpuDevice struct {
	host    types.ManagedObjectReference
	spec    *gpuSpec
	users   []types.ManagedObjectReference // passthrough: at most one
	profile string                         // vGPU: the profile its users have
}

func (d *gpuDevice) capacity(profile *vgpuProfile) int {
	if profile.FramebufferGib <= 0 {
		return 0
	}
	return int(d.spec.MemoryGib / profile.FramebufferGib)
}

// gpuLedger knows every host's GPUs and who holds them.
type gpuLedger struct {
	layout    *gpuLayout
	hostNames map[types.ManagedObjectReference]string

	mu       sync.Mutex
	devices  map[types.ManagedObjectReference][]*gpuDevice // by host
	held     map[types.ManagedObjectReference][]*gpuDevice // by VM, one entry per device it holds
	sessions map[types.ManagedObjectReference][]*simulator.Session
}

func newGpuLedger(layout *gpuLayout, hosts map[string]*simulator.HostSystem) *gpuLedger {
	ledger := &gpuLedger{
		layout:    layout,
		hostNames: map[types.ManagedObjectReference]string{},
		devices:   map[types.ManagedObjectReference][]*gpuDevice{},
		held:      map[types.ManagedObjectReference][]*gpuDevice{},
		sessions:  map[types.ManagedObjectReference][]*simulator.Session{},
	}
	for name, host := range hosts {
		ledger.hostNames[host.Self] = name
		for i := range layout.Hosts[name] {
			ledger.devices[host.Self] = append(ledger.devices[host.Self], &gpuDevice{host: host.Self, spec: &layout.Hosts[name][i]})
		}
	}
	return ledger
}

// passthroughRequest is one VirtualPCIPassthrough of a VM that needs a GPU.
type passthroughRequest struct {
	index   int // in config.hardware.device
	label   string
	dynamic *types.VirtualPCIPassthroughDynamicBackingInfo
	vgpu    string
}

func passthroughRequests(vm *simulator.VirtualMachine) []passthroughRequest {
	var requests []passthroughRequest
	for i, device := range vm.Config.Hardware.Device {
		passthrough, ok := device.(*types.VirtualPCIPassthrough)
		if !ok {
			continue
		}
		request := passthroughRequest{index: i, label: deviceLabel(passthrough, len(requests))}
		switch backing := passthrough.Backing.(type) {
		case *types.VirtualPCIPassthroughDynamicBackingInfo:
			request.dynamic = backing
		case *types.VirtualPCIPassthroughVmiopBackingInfo:
			request.vgpu = backing.Vgpu
		default:
			continue
		}
		requests = append(requests, request)
	}
	return requests
}

func deviceLabel(device *types.VirtualPCIPassthrough, ordinal int) string {
	if info := device.DeviceInfo; info != nil && info.GetDescription().Label != "" {
		return info.GetDescription().Label
	}
	return fmt.Sprintf("PCI device %d", ordinal)
}

func hasPassthrough(vm *simulator.VirtualMachine) bool {
	return len(passthroughRequests(vm)) > 0
}

// admit binds the GPUs a VM's power-on needs, or says why it cannot have
// them. The caller holds the VM's lock.
func (l *gpuLedger) admit(ctx *simulator.Context, vm *simulator.VirtualMachine) types.BaseMethodFault {
	requests := passthroughRequests(vm)
	if len(requests) == 0 || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff || vm.Runtime.Host == nil {
		return nil // vcsim answers the rest (InvalidPowerState)
	}
	if fault := memoryNotReserved(vm); fault != nil {
		return fault
	}
	for _, request := range requests {
		if request.dynamic == nil {
			continue
		}
		if version := hardwareVersion(vm.Config.Version); version < dynamicDirectPathHardwareVersion {
			return &types.DeviceUnsupportedForVmVersion{
				InvalidDeviceSpec: types.InvalidDeviceSpec{
					InvalidVmConfig: types.InvalidVmConfig{Property: "virtualHardware.device"},
					DeviceIndex:     int32(request.index),
				},
				CurrentVersion:  vm.Config.Version,
				ExpectedVersion: fmt.Sprintf("vmx-%d", dynamicDirectPathHardwareVersion),
			}
		}
	}
	host := *vm.Runtime.Host

	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.held[vm.Self]) > 0 {
		return nil // a power-on of this VM already holds them
	}
	var chosen []*gpuDevice
	for ordinal, request := range requests {
		device := l.freeDevice(host, request, chosen)
		if device == nil {
			return l.noDevice(vm, host, ordinal, request)
		}
		chosen = append(chosen, device)
	}
	for i, device := range chosen {
		device.users = append(device.users, vm.Self)
		if requests[i].vgpu != "" {
			device.profile = requests[i].vgpu
		}
	}
	l.held[vm.Self] = chosen
	l.publish(ctx, host)
	return nil
}

// freeDevice is a device of host the request may have, beside those already chosen for the same VM
// (each of its passthrough devices and vGPUs on a physical GPU of its own).
func (l *gpuLedger) freeDevice(host types.ManagedObjectReference, request passthroughRequest, chosen []*gpuDevice) *gpuDevice {
	for _, device := range l.devices[host] {
		if slices.Contains(chosen, device) {
			continue
		}
		spec, taken := device.spec, len(device.users)
		if request.dynamic != nil {
			if spec.Mode == gpuModePassthrough && taken == 0 && allows(request.dynamic, spec) {
				return device
			}
			continue
		}
		profile := spec.profile(request.vgpu)
		if spec.Mode != gpuModeVgpu || profile == nil || (taken > 0 && device.profile != request.vgpu) {
			continue
		}
		if taken < device.capacity(profile) {
			return device
		}
	}
	return nil
}

func allows(backing *types.VirtualPCIPassthroughDynamicBackingInfo, spec *gpuSpec) bool {
	if backing.CustomLabel != "" && backing.CustomLabel != spec.CustomLabel {
		return false
	}
	if len(backing.AllowedDevice) == 0 {
		return backing.CustomLabel != ""
	}
	for _, allowed := range backing.AllowedDevice {
		if int(uint16(allowed.VendorId)) != spec.VendorID || int(uint16(allowed.DeviceId)) != spec.DeviceID {
			continue
		}
		if allowed.SubVendorId != 0 && int(uint16(allowed.SubVendorId)) != spec.SubVendorID {
			continue
		}
		if allowed.SubDeviceId != 0 && int(uint16(allowed.SubDeviceId)) != spec.SubDeviceID {
			continue
		}
		return true
	}
	return false
}

func (l *gpuLedger) noDevice(vm *simulator.VirtualMachine, host types.ManagedObjectReference, ordinal int, request passthroughRequest) types.BaseMethodFault {
	message := fmt.Sprintf("Insufficient resources. One or more devices (pciPassthru%d) required by VM %s are not available on host %s.",
		ordinal, vm.Name, l.hostNames[host])
	fault := types.MethodFault{FaultMessage: []types.LocalizableMessage{{Key: "msg.passthrough.device.unavailable", Message: message}}}
	if request.vgpu != "" {
		return &types.InsufficientGraphicsResourcesFault{
			InsufficientResourcesFault: types.InsufficientResourcesFault{VimFault: types.VimFault{MethodFault: fault}},
		}
	}
	return &types.InsufficientResourcesFault{VimFault: types.VimFault{MethodFault: fault}}
}

func memoryNotReserved(vm *simulator.VirtualMachine) types.BaseMethodFault {
	if locked := vm.Config.MemoryReservationLockedToMax; locked != nil && *locked {
		return nil
	}
	memory := int64(vm.Config.Hardware.MemoryMB)
	if allocation := vm.Config.MemoryAllocation; allocation != nil && allocation.Reservation != nil && *allocation.Reservation >= memory {
		return nil
	}
	message := fmt.Sprintf("Invalid memory setting: memory reservation (sched.mem.min) should be equal to memsize(%d).", memory)
	return &types.GenericVmConfigFault{
		VmConfigFault: types.VmConfigFault{VimFault: types.VimFault{MethodFault: types.MethodFault{
			FaultMessage: []types.LocalizableMessage{{Key: "msg.vmx.pciPassthru.memReservation", Message: message}},
		}}},
		Reason: message,
	}
}

// hardwareVersion is 13 for "vmx-13", 0 when unknown.
func hardwareVersion(version string) int {
	number, err := strconv.Atoi(strings.TrimPrefix(version, "vmx-"))
	if err != nil {
		return 0
	}
	return number
}

// release gives back what a VM holds.
func (l *gpuLedger) release(ctx *simulator.Context, vm types.ManagedObjectReference) {
	l.mu.Lock()
	defer l.mu.Unlock()
	held := l.held[vm]
	if len(held) == 0 {
		return
	}
	delete(l.held, vm)
	hosts := map[types.ManagedObjectReference]bool{}
	for _, device := range held {
		if i := slices.Index(device.users, vm); i >= 0 {
			device.users = slices.Delete(device.users, i, i+1)
		}
		if len(device.users) == 0 {
			device.profile = ""
		}
		hosts[device.host] = true
	}
	for host := range hosts {
		l.publish(ctx, host)
	}
}

// publish shows a host's bindings in its configuration. The caller holds l.mu.
func (l *gpuLedger) publish(ctx *simulator.Context, host types.ManagedObjectReference) {
	var bindings []types.HostAssignableHardwareBinding
	users := map[string][]types.ManagedObjectReference{}
	var specs []gpuSpec
	for _, device := range l.devices[host] {
		specs = append(specs, *device.spec)
		switch device.spec.Mode {
		case gpuModePassthrough:
			for _, vm := range device.users {
				bindings = append(bindings, types.HostAssignableHardwareBinding{InstanceId: device.spec.PciID, Vm: vm})
			}
		case gpuModeVgpu:
			users[device.spec.PciID] = slices.Clone(device.users)
		}
	}
	hostSystem, ok := ctx.Map.Get(host).(*simulator.HostSystem)
	if !ok {
		return
	}
	ctx.WithLock(hostSystem, func() {
		ctx.Update(hostSystem, []types.PropertyChange{
			{Name: "config.assignableHardwareBinding", Val: bindings},
			{Name: "config.graphicsInfo", Val: graphicsInfo(specs, users)},
		})
	})
}

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

// installGpuAdmission puts the session's views of VMs and environment
// browsers in front of the calls they answer, and follows power states.
func installGpuAdmission(model *simulator.Model, ledger *gpuLedger) {
	registry := model.Map()
	previous := registry.Handler
	registry.Handler = func(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if ctx.Session != nil {
			ledger.wrap(ctx, method)
		}
		if previous != nil {
			return previous(ctx, method)
		}
		return nil, nil
	}
	registry.AddHandler(&gpuObserver{ledger: ledger})
}

func (l *gpuLedger) wrap(ctx *simulator.Context, method *simulator.Method) {
	var wrapper mo.Reference
	switch obj := ctx.Map.Get(method.This).(type) {
	case *simulator.VirtualMachine:
		if !gpuMethods[method.Name] {
			return
		}
		wrapper = &gpuVirtualMachine{VirtualMachine: obj, ledger: l}
	case *simulator.EnvironmentBrowser:
		if method.Name != "QueryConfigTarget" {
			return
		}
		wrapper = &gpuEnvironmentBrowser{EnvironmentBrowser: obj, ledger: l}
	default:
		return
	}
	if _, done := ctx.Session.Registry.Get(method.This).(interface{ Get() mo.Reference }); done {
		return
	}
	ctx.Session.Registry.Put(wrapper)
	l.mu.Lock()
	l.sessions[method.This] = append(l.sessions[method.This], ctx.Session)
	l.mu.Unlock()
}

// gpuObserver gives devices back as VMs stop or go, and drops the session
// views of objects that are gone (else a session would still reach them).
type gpuObserver struct {
	ledger *gpuLedger
}

func (o *gpuObserver) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "RayVsphereGpus", Value: "observer"}
}

func (o *gpuObserver) PutObject(*simulator.Context, mo.Reference) {}

func (o *gpuObserver) UpdateObject(ctx *simulator.Context, obj mo.Reference, changes []types.PropertyChange) {
	switch obj := obj.(type) {
	case *mo.VirtualMachine: // the registry reports the mo object inside vcsim's
		for _, change := range changes {
			if change.Name == "runtime.powerState" && change.Val == types.VirtualMachinePowerStatePoweredOff {
				o.ledger.release(ctx, obj.Self)
			}
		}
	case *mo.Task:
		for _, change := range changes {
			if change.Name == "info.state" && change.Val == types.TaskInfoStateError {
				withMessage(obj)
			}
		}
		// A power-on admitted but failed after (vcsim's own checks) gives its devices back.
		for _, change := range changes {
			if change.Name == "info.state" && change.Val == types.TaskInfoStateError && obj.Info.DescriptionId == "VirtualMachine.powerOn" && obj.Info.Entity != nil {
				if vm, ok := ctx.Map.Get(*obj.Info.Entity).(*simulator.VirtualMachine); ok {
					var off bool
					ctx.WithLock(vm, func() { off = vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOff })
					if off {
						o.ledger.release(ctx, vm.Self)
					}
				}
			}
		}
	}
}

// withMessage gives a failed task's error the message of its fault, as
// vCenter's localizedMessage, where vcsim gives the fault's Go type
// (simulator/task.go). Called under the task's lock, as its state turns.
func withMessage(task *mo.Task) {
	failure := task.Info.Error
	if failure == nil || failure.Fault == nil || !strings.HasPrefix(failure.LocalizedMessage, "*types.") {
		return
	}
	if messages := failure.Fault.GetMethodFault().FaultMessage; len(messages) > 0 {
		failure.LocalizedMessage = messages[0].Message
	}
}

func (o *gpuObserver) RemoveObject(ctx *simulator.Context, ref types.ManagedObjectReference) {
	if ref.Type == "VirtualMachine" {
		o.ledger.release(ctx, ref)
	}
	o.ledger.mu.Lock()
	sessions := o.ledger.sessions[ref]
	delete(o.ledger.sessions, ref)
	o.ledger.mu.Unlock()
	for _, session := range sessions {
		session.Registry.Remove(ctx, ref)
	}
}
