package main

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// -vm-extra-config gives every VM of the model the extraConfig a real VM
// carries, so that reading whole config.extraConfig costs here what it costs
// on a vCenter. vcsim's model VMs carry one key (govcsim=TRUE); a real one
// carries dozens, and a VM deployed for cloud-init several KiB more.
//
// Where the keys come from:
//   - govmomi v0.56.0 vim25/types/testdata/vminfo.json, a VirtualMachine's
//     ConfigInfo as a vCenter returned it: nvram, svga.present,
//     pciBridge0/4-7.* (present, virtualDev pcieRootPort, functions 8),
//     hpet0.present, RemoteDisplay.maxConnections,
//     sched.cpu.latencySensitivity, vmware.tools.*version, migrate.*,
//     viv.moid (24 keys);
//   - the ExtraConfig keys ovftool lists when it exports a vSphere VM
//     (every device's pciSlotNumber, scsi0.sasWWID, vmotion.checkpoint*,
//     numa.autosize.*, toolsInstallManager.*, tools.guest.desktop.autolock,
//     guestInfo.detailed.data, monitor.phys_bits_used, softPowerOff...);
//   - cloud-init's VMware datasource (cloudinit/sources/DataSourceVMware.py):
//     guestinfo.metadata, .userdata and .vendordata, base64 with their
//     .encoding keys, as Terraform, govc and our own node_deploy write them.
//
// The values are the same on every VM: vcsim's ReconfigVM replaces an
// OptionValue, never changes it in place (simulator/virtual_machine.go
// applyExtraConfig), so the VMs can share them; each VM gets its own slice.

// realisticExtraConfig is the table of keys, in the order a vmx lists them.
func realisticExtraConfig() []types.BaseOptionValue {
	pairs := []string{
		"nvram", "vm.nvram",
		"svga.present", "TRUE",
		"pciBridge0.present", "TRUE",
	}
	for bridge := 4; bridge <= 7; bridge++ {
		pairs = append(pairs,
			fmt.Sprintf("pciBridge%d.present", bridge), "TRUE",
			fmt.Sprintf("pciBridge%d.virtualDev", bridge), "pcieRootPort",
			fmt.Sprintf("pciBridge%d.functions", bridge), "8")
	}
	pairs = append(pairs,
		"hpet0.present", "TRUE",
		"RemoteDisplay.maxConnections", "-1",
		"sched.cpu.latencySensitivity", "normal",
		"disk.EnableUUID", "TRUE",
		"tools.guest.desktop.autolock", "TRUE",
		"cpuid.coresPerSocket", "2",
		"vmxstats.filename", "vm.scoreboard",
		"numa.autosize.cookie", "20012",
		"numa.autosize.vcpu.maxPerVirtualNode", "2",
		"pciBridge0.pciSlotNumber", "17",
		"pciBridge4.pciSlotNumber", "21",
		"pciBridge5.pciSlotNumber", "22",
		"pciBridge6.pciSlotNumber", "23",
		"pciBridge7.pciSlotNumber", "24",
		"scsi0.pciSlotNumber", "160",
		"ethernet0.pciSlotNumber", "192",
		"sata0.pciSlotNumber", "33",
		"scsi0.sasWWID", "50 05 05 69 a1 b2 c3 d0",
		"ethernet0.generatedAddressOffset", "0",
		"vmotion.checkpointFBSize", "4194304",
		"vmotion.checkpointSVGAPrimarySize", "4194304",
		"vmotion.svga.mobMaxSize", "4194304",
		"vmotion.svga.graphicsMemoryKB", "4096",
		"monitor.phys_bits_used", "45",
		"softPowerOff", "FALSE",
		"toolsInstallManager.updateCounter", "3",
		"toolsInstallManager.lastInstallError", "0",
		"svga.guestBackedPrimaryAware", "TRUE",
		"tools.remindInstall", "FALSE",
		"vmware.tools.internalversion", "12389",
		"vmware.tools.requiredversion", "12389",
		"migrate.hostLogState", "none",
		"migrate.migrationId", "0",
		"migrate.hostLog", "vm-5f2c1a7e.hlog",
		"viv.moid", "c5b34aa9-d962-4a74-b7d2-b83ec683ba1b:vm-28:lIgQ2t7SCVMwUAcs9sxJN5sSgCJOQ6KMAAh/4NtsWmg=",
		"guestInfo.detailed.data", "architecture='X86' bitness='64' distroName='Ubuntu' "+
			"distroVersion='22.04' familyName='Linux' kernelVersion='5.15.0-91-generic' "+
			"prettyName='Ubuntu 22.04.3 LTS'",
		"guestinfo.metadata", base64.StdEncoding.EncodeToString([]byte(cloudInitMetadata)),
		"guestinfo.metadata.encoding", "base64",
		"guestinfo.userdata", base64.StdEncoding.EncodeToString([]byte(cloudInitUserdata)),
		"guestinfo.userdata.encoding", "base64",
		"guestinfo.vendordata", base64.StdEncoding.EncodeToString([]byte("#cloud-config\nntp:\n  enabled: true\n  servers: [ntp1.corp.example, ntp2.corp.example]\n")),
		"guestinfo.vendordata.encoding", "base64",
	)
	options := make([]types.BaseOptionValue, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		options = append(options, &types.OptionValue{Key: pairs[i], Value: pairs[i+1]})
	}
	return options
}

const sshKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN0p4sVb7mJr0Qx2y8kXc3nKq9Lw5TtRzYgHfUeP1aBc"

var cloudInitMetadata = `{"instance-id": "4217c3a4-9b1e-4d6f-8a2c-0e5b7d9f1a3c", "local-hostname": "app-db-17",
"public-keys-data": "` + sshKey + ` ops@bastion\n` + sshKey + ` deploy@ci\n",
"network": {"version": 2, "ethernets": {"nics": {"match": {"name": "ens*"}, "dhcp4": false,
"addresses": ["10.20.30.17/24"], "gateway4": "10.20.30.1",
"nameservers": {"addresses": ["10.20.0.53", "10.20.1.53"], "search": ["corp.example"]}}}},
"network.encoding": ""}`

// A site's usual cloud-config: users, packages, a CA, a config file and commands; about 3 KiB, 4 KiB in base64.
var cloudInitUserdata = "#cloud-config\n" + `users:
  - name: ops
    groups: [sudo, adm]
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    ssh_authorized_keys: ["` + sshKey + ` ops@bastion"]
package_update: true
packages: [chrony, jq, nfs-common, open-vm-tools, prometheus-node-exporter, unattended-upgrades]
ca_certs:
  trusted:
    - |
      -----BEGIN CERTIFICATE-----
` + strings.Repeat("      MIIDdzCCAl+gAwIBAgIUW2n0c1Qv3xE8r9mHkJq7ZtY4aFQwDQYJKoZIhvcNAQEL\n", 18) + `      -----END CERTIFICATE-----
write_files:
  - path: /etc/app/app.yaml
    permissions: "0640"
    content: |
` + strings.Repeat("      upstream: https://app-backend.corp.example:8443/api/v2\n", 12) + `runcmd:
  - [systemctl, enable, --now, prometheus-node-exporter]
  - [sh, -c, "echo 'vm.swappiness=10' > /etc/sysctl.d/90-app.conf && sysctl --system"]
final_message: "cloud-init finished after $UPTIME seconds"
`

// seedExtraConfig appends the table's first `keys` entries (the table, then
// guestinfo.site.N keys of 64 characters, past its end) to every VM of the model.
func seedExtraConfig(model *simulator.Model, keys int) {
	if keys <= 0 {
		return
	}
	options := realisticExtraConfig()
	for index := len(options); index < keys; index++ {
		options = append(options, &types.OptionValue{
			Key: fmt.Sprintf("guestinfo.site.%d", index), Value: strings.Repeat(fmt.Sprintf("%x", index%16), 64)})
	}
	options = options[:keys]
	for _, entity := range model.Map().All("VirtualMachine") {
		vm := entity.(*simulator.VirtualMachine)
		seeded := make([]types.BaseOptionValue, 0, len(vm.Config.ExtraConfig)+len(options))
		vm.Config.ExtraConfig = append(append(seeded, vm.Config.ExtraConfig...), options...)
	}
}
