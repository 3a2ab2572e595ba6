package main

// Hosts with GPUs, as ESXi hosts with NVIDIA cards report them (-gpu-hosts,
// the JSON form of testbed/gpu_hosts.yml). vcsim v0.56.0's hosts have 43
// Intel PCI devices and no passthrough, graphics or vGPU information
// (simulator/esx/host_config_info.go: PciPassthruInfo, GraphicsInfo and
// SharedPassthruGpuTypes are nil), and QueryConfigTarget lists only
// datastores and networks. Here every host named in the layout gets:
//
//   - hardware.pciDevice: the GPU (HostPciDevice, class 0x0302 "3D
//     controller") after the host's other devices;
//   - config.pciPassthruInfo: one HostPciPassthruInfo per PCI device, the
//     GPUs first, so the two lists are matched by .id, not by index (vSphere
//     API reference, HostPciPassthruInfo.id "The name ID of this PCI,
//     composed of bus:slot.function", the HostPciDevice.id). A passthrough
//     GPU is capable, enabled and active, with its hardwareLabel (the Dynamic
//     DirectPath "custom label", vSphere 7.0 U2+); a vGPU one is capable
//     but not enabled: the host's NVIDIA driver owns it;
//   - config.graphicsInfo: the vGPU GPUs (HostGraphicsInfo, graphicsType
//     "sharedDirect", vgpuMode "sameSize" as NVIDIA's time-sliced vGPUs of
//     one size per GPU) with the VMs using them (gpu_admission.go);
//   - config.sharedPassthruGpuTypes: the vGPU profiles the host offers;
//   - config.assignableHardwareBinding: which VM holds which passthrough
//     device (HostAssignableHardwareBinding, vSphere 7.0; gpu_admission.go).
//
// The cluster of the layout runs without DRS: the caller picks the host.
//
// EnvironmentBrowser.QueryConfigTarget adds to vcsim's answer, for the
// host asked about or every host of the compute resource, dynamicPassthrough
// (VirtualMachineDynamicPassthroughInfo), sharedGpuPassthroughTypes
// (VirtualMachinePciSharedGpuPassthroughInfo), vgpuDeviceInfo and
// vgpuProfileInfo (VirtualMachineVgpuProfileInfo, vSphere 7.0 U3).

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

var gpuHostsFile = flag.String("gpu-hosts", "", "JSON of the GPUs of each host (testbed/gpu_hosts.yml): hosts list them, QueryConfigTarget offers them, power-on admits and binds them (gpu.go, gpu_admission.go)")

const (
	gpuModePassthrough = "passthrough"
	gpuModeVgpu        = "vgpu"
	pciClass3D         = 0x0302
)

type gpuLayout struct {
	Cluster string               `json:"cluster"`
	Hosts   map[string][]gpuSpec `json:"hosts"`
}

type gpuSpec struct {
	Model        string        `json:"model"`
	Mode         string        `json:"mode"`
	PciID        string        `json:"pci_id"`
	VendorID     int           `json:"vendor_id"`
	DeviceID     int           `json:"device_id"`
	SubVendorID  int           `json:"sub_vendor_id"`
	SubDeviceID  int           `json:"sub_device_id"`
	VendorName   string        `json:"vendor_name"`
	DeviceName   string        `json:"device_name"`
	CustomLabel  string        `json:"custom_label"`
	MemoryGib    int64         `json:"memory_gib"`
	VgpuProfiles []vgpuProfile `json:"vgpu_profiles"`
}

type vgpuProfile struct {
	Name           string `json:"name"`
	FramebufferGib int64  `json:"framebuffer_gib"`
}

func (g *gpuSpec) profile(name string) *vgpuProfile {
	for i := range g.VgpuProfiles {
		if g.VgpuProfiles[i].Name == name {
			return &g.VgpuProfiles[i]
		}
	}
	return nil
}

func readGpuLayout(path string) (*gpuLayout, error) {
	layout := &gpuLayout{}
	if path == "" {
		return layout, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-gpu-hosts: %v", err)
	}
	if err := json.Unmarshal(data, layout); err != nil {
		return nil, fmt.Errorf("-gpu-hosts %s: %v", path, err)
	}
	for host, gpus := range layout.Hosts {
		for _, gpu := range gpus {
			if gpu.Mode != gpuModePassthrough && gpu.Mode != gpuModeVgpu {
				return nil, fmt.Errorf("-gpu-hosts: %s: %s has mode %q, not %q or %q", host, gpu.PciID, gpu.Mode, gpuModePassthrough, gpuModeVgpu)
			}
			if _, _, _, err := parsePciID(gpu.PciID); err != nil {
				return nil, fmt.Errorf("-gpu-hosts: %s: %v", host, err)
			}
		}
	}
	return layout, nil
}

// parsePciID splits "0000:3b:00.0" (domain:bus:slot.function) into its bus, slot and function.
func parsePciID(id string) (bus, slot, function uint8, err error) {
	parts := strings.FieldsFunc(id, func(r rune) bool { return r == ':' || r == '.' })
	if len(parts) != 4 {
		return 0, 0, 0, fmt.Errorf("PCI id %q is not domain:bus:slot.function", id)
	}
	var values [3]uint8
	for i, part := range parts[1:] {
		value, err := strconv.ParseUint(part, 16, 8)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("PCI id %q: %v", id, err)
		}
		values[i] = uint8(value)
	}
	return values[0], values[1], values[2], nil
}

// installGpus gives the layout's hosts their GPUs and its cluster DRS off,
// before vcsim serves anyone, and answers QueryConfigTarget and power-ons
// with them.
func installGpus(model *simulator.Model, layout *gpuLayout) error {
	registry := model.Map()
	hosts := map[string]*simulator.HostSystem{}
	for _, obj := range registry.All("HostSystem") {
		host := obj.(*simulator.HostSystem)
		hosts[host.Name] = host
	}
	gpuHosts := map[string]*simulator.HostSystem{}
	for name := range layout.Hosts {
		host, ok := hosts[name]
		if !ok {
			return fmt.Errorf("-gpu-hosts: no host %s in the model", name)
		}
		gpuHosts[name] = host
	}
	for name, host := range hosts {
		listGpus(host, layout.Hosts[name]) // every host lists its PCI devices' passthrough state, as ESXi does
	}
	if layout.Cluster != "" {
		var cluster *simulator.ClusterComputeResource
		for _, obj := range registry.All("ClusterComputeResource") {
			if obj.Entity().Name == layout.Cluster {
				cluster = obj.(*simulator.ClusterComputeResource)
			}
		}
		if cluster == nil {
			return fmt.Errorf("-gpu-hosts: no cluster %s in the model", layout.Cluster)
		}
		// vcsim's clusters have DRS on (cluster_compute_resource.go); in the GPU cluster the caller places.
		cluster.ConfigurationEx.(*types.ClusterConfigInfoEx).DrsConfig.Enabled = types.NewBool(false)
	}
	installGpuAdmission(model, newGpuLedger(layout, gpuHosts))
	return nil
}

// listGpus adds the GPUs to a host's hardware and configuration, in fresh
// slices: vcsim's hosts share the slices of esx.HostHardwareInfo and
// esx.HostConfigInfo's template (host_system.go copies them shallowly).
func listGpus(host *simulator.HostSystem, gpus []gpuSpec) {
	hardware := *host.Hardware
	hardware.PciDevice = slices.Clone(hardware.PciDevice)
	var passthru []types.BaseHostPciPassthruInfo
	var profiles []string
	for _, gpu := range gpus {
		bus, slot, function, _ := parsePciID(gpu.PciID)
		hardware.PciDevice = append(hardware.PciDevice, types.HostPciDevice{
			Id:          gpu.PciID,
			ClassId:     pciClass3D,
			Bus:         bus,
			Slot:        slot,
			Function:    function,
			VendorId:    int16(gpu.VendorID),
			SubVendorId: int16(gpu.SubVendorID),
			VendorName:  gpu.VendorName,
			DeviceId:    int16(gpu.DeviceID),
			SubDeviceId: int16(gpu.SubDeviceID),
			DeviceName:  gpu.DeviceName,
		})
		passthrough := gpu.Mode == gpuModePassthrough
		passthru = append(passthru, &types.HostPciPassthruInfo{
			Id:              gpu.PciID,
			DependentDevice: gpu.PciID,
			PassthruCapable: true,
			PassthruEnabled: passthrough,
			PassthruActive:  passthrough,
			HardwareLabel:   gpu.CustomLabel,
		})
		for _, profile := range gpu.VgpuProfiles {
			if !slices.Contains(profiles, profile.Name) {
				profiles = append(profiles, profile.Name)
			}
		}
	}
	for _, device := range host.Hardware.PciDevice {
		passthru = append(passthru, &types.HostPciPassthruInfo{Id: device.Id, DependentDevice: device.Id})
	}
	host.Hardware = &hardware
	host.Config.PciPassthruInfo = passthru
	host.Config.SharedPassthruGpuTypes = profiles
	host.Config.GraphicsInfo = graphicsInfo(gpus, nil)
	host.Config.AssignableHardwareBinding = nil
}

// graphicsInfo is the host's vGPU GPUs with the VMs using each (by PCI id).
func graphicsInfo(gpus []gpuSpec, users map[string][]types.ManagedObjectReference) []types.HostGraphicsInfo {
	var infos []types.HostGraphicsInfo
	for _, gpu := range gpus {
		if gpu.Mode != gpuModeVgpu {
			continue
		}
		infos = append(infos, types.HostGraphicsInfo{
			DeviceName:     gpu.DeviceName,
			VendorName:     gpu.VendorName,
			PciId:          gpu.PciID,
			GraphicsType:   string(types.HostGraphicsInfoGraphicsTypeSharedDirect),
			VgpuMode:       string(types.HostGraphicsInfoVgpuModeSameSize),
			MemorySizeInKB: gpu.MemoryGib * 1024 * 1024,
			Vm:             slices.Clone(users[gpu.PciID]),
		})
	}
	return infos
}

// gpuEnvironmentBrowser answers QueryConfigTarget with vcsim's answer and
// the GPUs of the hosts asked about. It is put in the calling session's
// registry, which the simulator consults before the global one
// (simulator.Service.call, Session.Get): vcsim type-asserts the global
// EnvironmentBrowser (UpgradeVM_Task, AddHost_Task), so it stays as it is.
type gpuEnvironmentBrowser struct {
	*simulator.EnvironmentBrowser
	ledger *gpuLedger
}

// Get is what the PropertyCollector reads: the browser itself.
func (b *gpuEnvironmentBrowser) Get() mo.Reference { return b.EnvironmentBrowser }

func (b *gpuEnvironmentBrowser) QueryConfigTarget(ctx *simulator.Context, req *types.QueryConfigTarget) soap.HasFault {
	body := b.EnvironmentBrowser.QueryConfigTarget(ctx, req)
	res, ok := body.(*methods.QueryConfigTargetBody)
	if !ok || res.Res == nil || res.Res.Returnval == nil {
		return body
	}
	target := *res.Res.Returnval // vcsim may hand out a stored answer: add to a copy sharing no slice
	target.DynamicPassthrough = slices.Clip(target.DynamicPassthrough)
	target.SharedGpuPassthroughTypes = slices.Clip(target.SharedGpuPassthroughTypes)
	target.VgpuDeviceInfo = slices.Clip(target.VgpuDeviceInfo)
	target.VgpuProfileInfo = slices.Clip(target.VgpuProfileInfo)
	var hosts []types.ManagedObjectReference
	if req.Host != nil {
		hosts = []types.ManagedObjectReference{*req.Host}
	} else {
		hosts = b.computeResourceHosts(ctx)
	}
	b.ledger.addConfigTarget(&target, hosts, ctx.Session)
	res.Res.Returnval = &target
	return res
}

// computeResourceHosts are the hosts of the compute resource whose browser this is.
func (b *gpuEnvironmentBrowser) computeResourceHosts(ctx *simulator.Context) []types.ManagedObjectReference {
	for _, kind := range []string{"ClusterComputeResource", "ComputeResource"} {
		for _, obj := range ctx.Map.All(kind) {
			var browser *types.ManagedObjectReference
			var hosts []types.ManagedObjectReference
			switch resource := obj.(type) {
			case *simulator.ClusterComputeResource:
				browser, hosts = resource.EnvironmentBrowser, resource.Host
			case *mo.ComputeResource:
				browser, hosts = resource.EnvironmentBrowser, resource.Host
			}
			if browser != nil && *browser == b.Self {
				return slices.Clone(hosts)
			}
		}
	}
	return nil
}

// addConfigTarget adds the GPUs of hosts to a ConfigTarget, each kind of
// device or profile once.
func (l *gpuLedger) addConfigTarget(target *types.ConfigTarget, hosts []types.ManagedObjectReference, session *simulator.Session) {
	// What each field's API version is (vSphere API reference): ConfigTarget.dynamicPassthrough 7.0,
	// vgpuDeviceInfo and vgpuProfileInfo 7.0.3.0; sharedGpuPassthroughTypes is 6.0's.
	dynamicPassthrough, vgpuInfo := apiVersions.speaks(session, "7.0"), apiVersions.speaks(session, "7.0.3.0")
	seenDevices := map[string]bool{}
	seenProfiles := map[string]bool{}
	for _, host := range hosts {
		for _, gpu := range l.layout.Hosts[l.hostNames[host]] {
			name := fmt.Sprintf("%s %s", gpu.VendorName, gpu.DeviceName)
			device := fmt.Sprintf("%s/%x/%x/%s", gpu.Mode, gpu.VendorID, gpu.DeviceID, gpu.CustomLabel)
			if !seenDevices[device] {
				seenDevices[device] = true
				switch gpu.Mode {
				case gpuModePassthrough:
					if !dynamicPassthrough {
						break
					}
					target.DynamicPassthrough = append(target.DynamicPassthrough, types.VirtualMachineDynamicPassthroughInfo{
						VirtualMachineTargetInfo: types.VirtualMachineTargetInfo{Name: name},
						VendorName:               gpu.VendorName,
						DeviceName:               gpu.DeviceName,
						CustomLabel:              gpu.CustomLabel,
						VendorId:                 int32(gpu.VendorID),
						DeviceId:                 int32(gpu.DeviceID),
					})
				case gpuModeVgpu:
					if !vgpuInfo {
						break
					}
					target.VgpuDeviceInfo = append(target.VgpuDeviceInfo, types.VirtualMachineVgpuDeviceInfo{
						VirtualMachineTargetInfo: types.VirtualMachineTargetInfo{Name: name},
						DeviceName:               gpu.DeviceName,
						DeviceVendorId:           int64(gpu.VendorID),
						MaxFbSizeInGib:           gpu.MemoryGib,
						TimeSlicedCapable:        true,
						ComputeProfileCapable:    true,
					})
				}
			}
			for _, profile := range gpu.VgpuProfiles {
				if seenProfiles[profile.Name] {
					continue
				}
				seenProfiles[profile.Name] = true
				info := types.VirtualMachineTargetInfo{Name: profile.Name}
				target.SharedGpuPassthroughTypes = append(target.SharedGpuPassthroughTypes, types.VirtualMachinePciSharedGpuPassthroughInfo{
					VirtualMachineTargetInfo: info,
					Vgpu:                     profile.Name,
				})
				if !vgpuInfo {
					continue
				}
				target.VgpuProfileInfo = append(target.VgpuProfileInfo, types.VirtualMachineVgpuProfileInfo{
					VirtualMachineTargetInfo: info,
					ProfileName:              profile.Name,
					DeviceVendorId:           int64(gpu.VendorID),
					FbSizeInGib:              profile.FramebufferGib,
					ProfileSharing:           string(types.VirtualMachineVgpuProfileInfoProfileSharingTimeSliced),
					ProfileClass:             string(types.VirtualMachineVgpuProfileInfoProfileClassCompute),
				})
			}
		}
	}
}
