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
//     InsufficientGraphicsResourcesFault, "Graphics resources admission
//     control failed" (vSphere API reference, since 6.0; vGPU). The message,
//     "Insufficient resources. One or more devices (pciPassthru0) required
//     by VM ... are not available on host ...", follows vCenter's admission
//     messages; no public page in reach quotes it word for word, so clients
//     must go by the fault type, never the text.
//   - A passthrough VM needs all its memory reserved; without it the
//     power-on fails with "Invalid memory setting: memory reservation
//     (sched.mem.min) should be equal to memsize(N)", the message ESXi
//     gives since 6.5 (as reported, e.g. serverdevworker.com/14037ed7e2;
//     a GenericVmConfigFault, vCenter's fault for a message from the
//     virtual machine). memoryReservationLockedToMax or a reservation of all
//     the memory satisfy it.
//   - Dynamic DirectPath needs virtual hardware 17 (vSphere 7.0): below it
//     the power-on fails with DeviceUnsupportedForVmVersion
//     (currentVersion, expectedVersion "vmx-17"; vSphere API reference:
//     "thrown if a specific device is not supported for a given version of
//     the virtual machine").
//   - "When PCI vSphere DirectPath I/O devices are made available to a
//     virtual machine, you cannot perform certain operations on the virtual
//     machine. These operations include suspending, migration with vMotion,
//     and taking or restoring snapshots" (Broadcom KB 401437). Snapshots
//     (CreateSnapshot_Task, CreateSnapshotEx_Task) and linked clones
//     (CloneVM_Task with diskMoveType createNewChildDiskBacking, whose child
//     disks grow from a snapshot) fail with SnapshotIncompatibleDeviceInVm
//     ("a snapshot operation cannot be performed on account of an
//     incompatible device", vSphere API reference), its fault a
//     DeviceNotSupported naming the device, in vCenter's words for such
//     devices ("Virtual machine is configured to use a device that prevents
//     the snapshot operation: Device '...' is ..."). Suspending
//     (SuspendVM_Task) fails with NotSupported. The issue treats vGPU VMs
//     the same way; recent vSphere suspends and snapshots some vGPU VMs
//     (HostSharedGpuCapabilities.suspendSupported), a host capability this
//     testbed does not model.
//
// Every refusal is the error of the method's task, as vCenter reports
// power-on and snapshot failures (task.info.error), not a fault of the call.
//
// gpu_vm.go says how the VM's methods are answered first.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
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
	assigned := map[int]string{}
	for i, request := range requests {
		if request.dynamic != nil {
			assigned[request.index] = chosen[i].spec.PciID
		}
	}
	assignDevices(ctx, &vm.VirtualMachine, assigned)
	return nil
}

// assignDevices sets each Dynamic DirectPath device's backing.assignedId to
// the host device it got (none: cleared), as vCenter reports it while the VM
// runs ("The id of the device assigned when the VM is powered on", vSphere
// API reference, VirtualPCIPassthroughDynamicBackingInfo). The caller holds
// the VM's lock.
func assignDevices(ctx *simulator.Context, vm *mo.VirtualMachine, assigned map[int]string) {
	devices := slices.Clone(vm.Config.Hardware.Device)
	changed := false
	for index, device := range devices {
		passthrough, ok := device.(*types.VirtualPCIPassthrough)
		if !ok {
			continue
		}
		backing, ok := passthrough.Backing.(*types.VirtualPCIPassthroughDynamicBackingInfo)
		if !ok || backing.AssignedId == assigned[index] {
			continue
		}
		withBacking, newBacking := *passthrough, *backing
		newBacking.AssignedId = assigned[index]
		withBacking.Backing = &newBacking
		devices[index] = &withBacking
		changed = true
	}
	if changed {
		ctx.Update(vm, []types.PropertyChange{{Name: "config.hardware.device", Val: devices}})
	}
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
				assignDevices(ctx, obj, nil)
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
					ctx.WithLock(vm, func() {
						if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOff {
							o.ledger.release(ctx, vm.Self)
							assignDevices(ctx, &vm.VirtualMachine, nil)
						}
					})
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
