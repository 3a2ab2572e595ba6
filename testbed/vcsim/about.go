package main

// About: what the simulator says it is agrees with the API version it announces.
//
// govmomi's model fixes ServiceContent.about at vCenter 6.5.0 (apiVersion
// "6.5"), and -api-version changes only about.apiVersion, which is also what
// /sdk/vimServiceVersions.xml announces to clients (govmomi simulator.go,
// ServiceVersions). A vCenter's about.version is its release, the first three
// parts of its apiVersion: vCenter 8.0 Update 3 answers apiVersion "8.0.3.0"
// and version "8.0.3", fullName "VMware vCenter Server 8.0.3 build-N"
// (vSphere Web Services API reference, data object AboutInfo; the
// vimServiceVersions.xml of a vCenter of that release).

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
)

var apiVersionPattern = regexp.MustCompile(`^[0-9]+(\.[0-9]+){1,3}$`)

// releaseOf is the vCenter release of an API version: "8.0.3.0" -> "8.0.3", "7.0" -> "7.0.0".
func releaseOf(apiVersion string) (string, error) {
	if !apiVersionPattern.MatchString(apiVersion) {
		return "", fmt.Errorf("-api-version %q is not a vSphere API version such as 8.0.3.0 or 7.0", apiVersion)
	}
	parts := strings.Split(apiVersion, ".")
	for len(parts) < 3 {
		parts = append(parts, "0")
	}
	return strings.Join(parts[:3], "."), nil
}

// announceVersion makes about's version, build and fullName those of the release of about.ApiVersion.
func announceVersion(about *types.AboutInfo, build string) error {
	release, err := releaseOf(about.ApiVersion)
	if err != nil {
		return err
	}
	if build != "" {
		about.Build = build
	}
	about.Version = release
	about.FullName = fmt.Sprintf("VMware vCenter Server %s build-%s", release, about.Build)
	return nil
}
