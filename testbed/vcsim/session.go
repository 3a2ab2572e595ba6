package main

// Sessions as vCenter's: they end when idle, and nothing but the service
// content and the login is served without one.
//
// vCenter ends a session after about 30 minutes without a call (VMware KB
// 2004663; NotAuthenticated afterwards, pyvmomi issues #349 and #953). The
// simulator already enforces an idle timeout when its OptionManager holds
// config.vmacore.soap.sessionTimeout (simulator.SessionIdleWatch), but the
// model has none by default. It checks every timeout interval, so a session
// ends between one and two timeouts after its last call.
//
// Every vSphere method but the login and the service content faults with
// NotAuthenticated without a session (vSphere API reference, "Faults" of
// each method). vcsim serves the PropertyCollector's Fetch,
// RetrieveProperties and RetrievePropertiesEx without one ("ok for now,
// TODO: authz", simulator.Service.call) and answers with objects stripped of
// their properties: a client whose session ended read empty results instead
// of an error, and never logged in again.

import (
	"reflect"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

func setSessionIdleTimeout(model *simulator.Model, timeout time.Duration) {
	if timeout <= 0 {
		return
	}
	options := model.Map().OptionManager()
	options.Setting = append(options.Setting, &types.OptionValue{
		Key:   "config.vmacore.soap.sessionTimeout",
		Value: timeout.String(),
	})
}

// withoutSession refuses a property read without a session, but for the
// objects a client reads to log in: the ServiceInstance and its SessionManager.
func withoutSession(method *simulator.Method) types.BaseMethodFault {
	var targets []types.ManagedObjectReference
	switch req := method.Body.(type) {
	case *types.RetrieveProperties:
		targets = specTargets(req.SpecSet)
	case *types.RetrievePropertiesEx:
		targets = specTargets(req.SpecSet)
	default:
		if method.Name != "Fetch" { // simulator/internal.Fetch, which pyVmomi's attribute reads use
			return nil
		}
		if this, ok := reflect.ValueOf(method.Body).Elem().FieldByName("This").Interface().(types.ManagedObjectReference); ok {
			targets = append(targets, this)
		}
	}
	for _, target := range targets {
		if target.Type != "ServiceInstance" && target.Type != "SessionManager" {
			return &types.NotAuthenticated{NoPermission: types.NoPermission{Object: &target, PrivilegeId: "System.View"}}
		}
	}
	return nil
}

func specTargets(specs []types.PropertyFilterSpec) []types.ManagedObjectReference {
	var targets []types.ManagedObjectReference
	for _, spec := range specs {
		for _, object := range spec.ObjectSet {
			targets = append(targets, object.Obj)
		}
	}
	return targets
}
