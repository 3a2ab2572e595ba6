package main

// The OVF environment vCenter hands a guest, and the transport an OVF asks for.
//
// DMTF DSP0243 (OVF 2.1.1) section 11 "OVF Environment": the deployment
// platform gives the guest an Environment document (namespace
// http://schemas.dmtf.org/ovf/environment/1) with a PlatformSection and a
// PropertySection of the vApp properties' values, through the transport the
// OVF's VirtualHardwareSection names (ovf:transport). With
// com.vmware.guestInfo, vCenter puts it in the VM's guestinfo.ovfEnv at
// power-on, where VMware Tools answers `vmware-rpctool "info-get
// guestinfo.ovfEnv"` (vSphere API reference, VmConfigInfo.ovfEnvironmentTransport;
// what cloud-init's OVF datasource reads, canonical/cloud-init
// DataSourceOVF.py). vCenter adds VMware's ve:vCenterId and
// ve:EthernetAdapterSection. vcsim never writes it, and drops the transport
// both in CreateImportSpec and when it creates the VM.

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"

	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	guestInfoTransport = "com.vmware.guestInfo"
	ovfEnvKey          = "guestinfo.ovfEnv"
)

// publishOvfEnvironment writes guestinfo.ovfEnv of a VM about to power on,
// when its transport is com.vmware.guestInfo. The caller holds vm's lock.
// vCenter writes it on every power-on, from the properties' current values.
func publishOvfEnvironment(ctx *simulator.Context, vm *simulator.VirtualMachine, about types.AboutInfo) {
	if vm.Config.VAppConfig == nil {
		return
	}
	vapp := vm.Config.VAppConfig.GetVmConfigInfo()
	if !slices.Contains(vapp.OvfEnvironmentTransport, guestInfoTransport) {
		return
	}
	document := ovfEnvironment(ctx, vm, vapp, about)
	extra := make([]types.BaseOptionValue, 0, len(vm.Config.ExtraConfig)+1)
	for _, option := range vm.Config.ExtraConfig {
		if option.GetOptionValue().Key != ovfEnvKey {
			extra = append(extra, option)
		}
	}
	extra = append(extra, &types.OptionValue{Key: ovfEnvKey, Value: document})
	ctx.Update(vm, []types.PropertyChange{{Name: "config.extraConfig", Val: extra}})
}

func ovfEnvironment(ctx *simulator.Context, vm *simulator.VirtualMachine, vapp *types.VmConfigInfo, about types.AboutInfo) string {
	var doc bytes.Buffer
	attr := func(value string) string {
		var escaped bytes.Buffer
		_ = xml.EscapeText(&escaped, []byte(value))
		return `"` + escaped.String() + `"`
	}
	fmt.Fprintf(&doc, `<?xml version="1.0" encoding="UTF-8"?>
<Environment
     xmlns="http://schemas.dmtf.org/ovf/environment/1"
     xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
     xmlns:oe="http://schemas.dmtf.org/ovf/environment/1"
     xmlns:ve="http://www.vmware.com/schema/ovfenv"
     oe:id=""
     ve:vCenterId=%s>
   <PlatformSection>
      <Kind>VMware ESXi</Kind>
      <Version>%s</Version>
      <Vendor>VMware, Inc.</Vendor>
      <Locale>en</Locale>
   </PlatformSection>
   <PropertySection>
`, attr(vm.Self.Value), about.Version)
	for _, prop := range vapp.Property {
		value := prop.Value
		if value == "" {
			value = prop.DefaultValue
		}
		fmt.Fprintf(&doc, "         <Property oe:key=%s oe:value=%s/>\n", attr(propertyKey(prop)), attr(value))
	}
	doc.WriteString("   </PropertySection>\n")
	var adapters []string
	for _, device := range vm.Config.Hardware.Device {
		card, ok := device.(types.BaseVirtualEthernetCard)
		if !ok {
			continue
		}
		nic := card.GetVirtualEthernetCard()
		unit := int32(0)
		if nic.UnitNumber != nil {
			unit = *nic.UnitNumber
		}
		adapters = append(adapters, fmt.Sprintf(`      <ve:Adapter ve:mac=%s ve:network=%s ve:unitNumber="%d"/>`,
			attr(nic.MacAddress), attr(networkName(ctx, nic.Backing)), unit))
	}
	if len(adapters) > 0 {
		fmt.Fprintf(&doc, "   <ve:EthernetAdapterSection>\n%s\n   </ve:EthernetAdapterSection>\n", strings.Join(adapters, "\n"))
	}
	doc.WriteString("</Environment>\n")
	return doc.String()
}

// propertyKey is a property's key in the environment: DSP0243 9.5.1,
// [class "."] key ["." instance], as govmomi's ovf.ProductSection.Key.
func propertyKey(prop types.VAppPropertyInfo) string {
	key := prop.Id
	if prop.ClassId != "" {
		key = prop.ClassId + "." + key
	}
	if prop.InstanceId != "" {
		key = key + "." + prop.InstanceId
	}
	return key
}

func networkName(ctx *simulator.Context, backing types.BaseVirtualDeviceBackingInfo) string {
	switch b := backing.(type) {
	case *types.VirtualEthernetCardNetworkBackingInfo:
		return b.DeviceName
	case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
		ref := types.ManagedObjectReference{Type: "DistributedVirtualPortgroup", Value: b.Port.PortgroupKey}
		if pg, ok := ctx.Map.Get(ref).(*simulator.DistributedVirtualPortgroup); ok {
			return pg.Name
		}
	}
	return ""
}

// strictOvfManager keeps the OVF's environment transport in the import spec.
type strictOvfManager struct {
	*simulator.OvfManager
}

// CreateImportSpec: vCenter's import spec carries the transport of the OVF's
// VirtualHardwareSection (ovf:transport, DSP0243 section 9.8, a
// space-separated list) as vAppConfig.ovfEnvironmentTransport.
func (m *strictOvfManager) CreateImportSpec(ctx *simulator.Context, req *types.CreateImportSpec) soap.HasFault {
	body := m.OvfManager.CreateImportSpec(ctx, req)
	res, ok := body.(*methods.CreateImportSpecBody)
	if !ok || res.Res == nil {
		return body
	}
	spec, ok := res.Res.Returnval.ImportSpec.(*types.VirtualMachineImportSpec)
	if !ok {
		return body
	}
	envelope, err := ovf.Unmarshal(strings.NewReader(req.OvfDescriptor))
	if err != nil || envelope.VirtualSystem == nil || len(envelope.VirtualSystem.VirtualHardware) == 0 {
		return body
	}
	transport := envelope.VirtualSystem.VirtualHardware[0].Transport
	if transport == nil || strings.TrimSpace(*transport) == "" {
		return body
	}
	if vapp, ok := spec.ConfigSpec.VAppConfig.(*types.VAppConfigSpec); ok {
		vapp.OvfEnvironmentTransport = strings.Fields(*transport)
	}
	return body
}
