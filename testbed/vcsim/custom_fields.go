package main

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// reportingCustomFields is vcsim's CustomFieldsManager with one difference:
// SetField reports the entity's new customValue to PropertyCollector filters,
// as vCenter does. v0.56.0's SetField (simulator/custom_fields_manager.go)
// changes the value in place without ctx.Update, so WaitForUpdatesEx never
// saw a custom attribute change, and a client keeping its view current from
// updates (the provider's NodeWatch) would miss tags other processes write.
type reportingCustomFields struct {
	*simulator.CustomFieldsManager
}

func (m *reportingCustomFields) SetField(ctx *simulator.Context, req *types.SetField) soap.HasFault {
	res := m.CustomFieldsManager.SetField(ctx, req)
	if res.Fault() != nil {
		return res
	}
	if obj, ok := ctx.Map.Get(req.Entity).(mo.Entity); ok {
		ctx.WithLock(obj, func() {
			entity := obj.Entity()
			ctx.Update(obj, []types.PropertyChange{
				{Name: "customValue", Val: entity.CustomValue},
				{Name: "value", Val: entity.Value},
			})
		})
	}
	return res
}

// reportCustomFieldChanges makes every session call SetField on a
// reportingCustomFields. The registry's per-call Handler hook cannot return
// it: the simulator prefers what the caller's session registry resolves the
// reference to, which falls back to the global CustomFieldsManager. So the
// hook puts the wrapper, under the manager's own reference, into the
// session's registry, where the lookup finds it first; it goes with the session.
func reportCustomFieldChanges(registry *simulator.Registry) {
	earlier := registry.Handler
	registry.Handler = func(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if method.Name == "SetField" && ctx.Session != nil {
			if _, wrapped := ctx.Session.Registry.Get(method.This).(*reportingCustomFields); !wrapped {
				if manager, ok := ctx.Map.Get(method.This).(*simulator.CustomFieldsManager); ok {
					ctx.Session.Registry.Put(&reportingCustomFields{manager})
				}
			}
		}
		if earlier != nil {
			return earlier(ctx, method)
		}
		return nil, nil
	}
}
