package main

// MAC addresses as vCenter assigns them.
//
//   - vCenter allocates each virtual NIC's MAC itself, by default with
//     "VMware OUI allocation": 00:50:56:XX:YY:ZZ where XX is 0x80 + the
//     vCenter Server instance ID (0-63) and YY:ZZ are random, so the
//     addresses of all vCenters lie in 00:50:56:80:00:00-00:50:56:BF:FF:FF
//     and one vCenter assigns up to 64000 unique ones (vSphere Networking,
//     "VMware OUI Allocation",
//     https://docs.vmware.com/en/VMware-vSphere/7.0/com.vmware.vsphere.networking.doc/GUID-1B6A280E-0C77-4775-8F84-4B3F40673178.html;
//     "MAC Address Assignment from vCenter Server", GUID-290AE852-1894-4FB4-A8CA-35E3F7D2ECDF:
//     "Each virtual network adapter in a virtual machine is assigned its own
//     unique MAC address" and it "does not change unless the virtual
//     machine's MAC address conflicts with that of another registered
//     virtual machine"). Such a NIC's addressType is "assigned" ("A MAC
//     address assigned by VirtualCenter", VirtualEthernetCardMacType), and
//     a MAC address of type "manual" is the user's and kept as given.
//     NonVmwareOuiMacNotSupportedHost names the same range: "VPX assigned
//     prefix ... 00:50:56:[80-BF]".
//   - A clone is a new virtual machine: its NICs get new MACs (a NIC keeps
//     its MAC only within its own VM), unless their type is manual.
//
// vcsim v0.56.0 instead derives a NIC's MAC from three characters of the VM's
// UUID (generateMAC: 4096 values, so clones collide) with the host's OUI
// 00:0c:29, and a clone deep-copies its source's NICs with their MACs: every
// clone of a template shares the template's MAC. Here every NIC a VM gets
// (CreateVM, ImportVApp, CloneVM, a ReconfigVM that adds one, the model's
// own VMs) that is not manual gets a unique MAC of this vCenter's range as
// its VM's device list changes, under that change's lock, before any client
// can read it; guest.net follows. An edit of a NIC keeps its assigned MAC.

import (
	"crypto/rand"
	"fmt"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// macAssigner hands out this vCenter's MACs and remembers which NIC has which.
type macAssigner struct {
	instanceOctet byte // 0x80 + the vCenter instance ID

	mu       sync.Mutex
	owner    map[string]types.ManagedObjectReference           // MAC (lower case) -> its VM
	assigned map[types.ManagedObjectReference]map[int32]string // VM -> NIC device key -> MAC
}

// assignMacs gives every NIC of the model a vCenter MAC, and every NIC made later.
func assignMacs(model *simulator.Model) error {
	id := make([]byte, 1)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("vCenter instance ID: %v", err)
	}
	assigner := &macAssigner{
		instanceOctet: 0x80 + id[0]%64, // a fresh vCenter's random instance ID
		owner:         make(map[string]types.ManagedObjectReference),
		assigned:      make(map[types.ManagedObjectReference]map[int32]string),
	}
	registry := model.Map()
	ctx := &simulator.Context{Map: registry}
	for _, ref := range registry.All("VirtualMachine") {
		if vm, ok := registry.Get(ref.Reference()).(*simulator.VirtualMachine); ok {
			ctx.WithLock(vm, func() { assigner.assign(ctx, &vm.VirtualMachine) })
		}
	}
	registry.AddHandler(assigner)
	return nil
}

func (a *macAssigner) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "RayVsphereMacAssigner", Value: "macs"}
}

func (a *macAssigner) PutObject(*simulator.Context, mo.Reference) {}

// UpdateObject runs as a VM's device list changes: vcsim has just given its
// new NICs their MACs; this replaces them before the change is read.
func (a *macAssigner) UpdateObject(ctx *simulator.Context, obj mo.Reference, changes []types.PropertyChange) {
	vm, ok := obj.(*mo.VirtualMachine)
	if !ok {
		return
	}
	for _, change := range changes {
		if change.Name == "config.hardware.device" {
			a.assign(ctx, vm)
			return
		}
	}
}

// RemoveObject frees a destroyed VM's MACs.
func (a *macAssigner) RemoveObject(_ *simulator.Context, ref types.ManagedObjectReference) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, mac := range a.assigned[ref] {
		delete(a.owner, mac)
	}
	delete(a.assigned, ref)
}

// assign gives the VM's NICs their MACs: a manual one as set, an assigned
// one kept, any other a new one; guest.net shows each NIC's.
func (a *macAssigner) assign(ctx *simulator.Context, vm *mo.VirtualMachine) {
	if vm.Config == nil {
		return
	}
	a.mu.Lock()
	known := a.assigned[vm.Self]
	current := make(map[int32]string)
	for _, device := range vm.Config.Hardware.Device {
		card, ok := device.(types.BaseVirtualEthernetCard)
		if !ok {
			continue
		}
		nic := card.GetVirtualEthernetCard()
		mac, kept := known[nic.Key]
		if nic.AddressType == string(types.VirtualEthernetCardMacTypeManual) {
			mac = strings.ToLower(nic.MacAddress)
		} else if !kept {
			mac = a.newMac()
		}
		if !kept || mac != known[nic.Key] {
			delete(a.owner, known[nic.Key])
		}
		a.owner[mac] = vm.Self
		current[nic.Key] = mac
		if nic.AddressType != string(types.VirtualEthernetCardMacTypeManual) {
			nic.AddressType = string(types.VirtualEthernetCardMacTypeAssigned)
			nic.MacAddress = mac
		}
	}
	for key, mac := range known {
		if _, ok := current[key]; !ok && a.owner[mac] == vm.Self {
			delete(a.owner, mac) // the NIC was removed
		}
	}
	a.assigned[vm.Self] = current
	a.mu.Unlock()

	if vm.Guest == nil {
		return
	}
	changed := false
	for i := range vm.Guest.Net {
		if mac, ok := current[vm.Guest.Net[i].DeviceConfigId]; ok && vm.Guest.Net[i].MacAddress != mac {
			vm.Guest.Net[i].MacAddress = mac // lower case, as in a guest
			changed = true
		}
	}
	if changed {
		ctx.Update(vm, []types.PropertyChange{{Name: "guest.net", Val: vm.Guest.Net}})
	}
}

// newMac is a MAC of this vCenter's range that no NIC has. Called with a.mu held.
func (a *macAssigner) newMac() string {
	random := make([]byte, 2)
	for {
		if _, err := rand.Read(random); err != nil {
			panic(err) // crypto/rand does not fail on Linux
		}
		mac := fmt.Sprintf("00:50:56:%02x:%02x:%02x", a.instanceOctet, random[0], random[1])
		if _, taken := a.owner[mac]; !taken {
			return mac
		}
	}
}
