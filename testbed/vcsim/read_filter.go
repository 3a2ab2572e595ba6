package main

// With -enforce-permissions, an account given a role somewhere reads only
// what its permissions let it read, as on vCenter, and can ask what it holds.
//
//   - Views and PropertyCollector results leave out the managed entities the
//     session may not read. Every property of a managed entity requires
//     System.Read on it (vSphere API reference, e.g. ManagedEntity's
//     properties, "Required privilege: System.Read",
//     https://developer.broadcom.com/xapis/vsphere-web-services-api/latest/vim.ManagedEntity.html;
//     a property the session may not read is a SecurityError, MissingProperty,
//     https://developer.broadcom.com/xapis/vsphere-web-services-api/latest/vmodl.query.PropertyCollector.MissingProperty.html),
//     and vCenter leaves the entities a session may not read out of what a
//     traversal or a view reaches instead of failing the whole call: a view
//     over the root folder lists what the account may see.
//     Every role carries System.Read and System.View (vCenter adds System.Anonymous, System.Read and
//     System.View to each role; vcsim's AddAuthorizationRole does too), so an
//     entity is readable exactly where a permission of the account applies
//     (permissions.go's privilegesOn) with a role other than NoAccess.
//     What is left out: objects of RetrieveProperties, RetrievePropertiesEx,
//     ContinueRetrievePropertiesEx and WaitForUpdatesEx results, the entities
//     in a ContainerView's or ListView's `view`, and an unreadable object's
//     Fetch (NoPermission, as vCenter answers a read of one object).
//   - AuthorizationManager.HasPrivilegeOnEntities and HasUserPrivilegeOnEntities answer from those
//     permissions, with or without -enforce-permissions: vcsim v0.56.0
//     answers "granted" to every question (simulator/authorization_manager.go).
//     Accounts given no role keep vcsim's answer, as an administrator's.
//
// The global PropertyCollector and those CreatePropertyCollector makes are
// replaced by readFilteringCollector, which embeds the simulator's own (vcsim
// makes each session's copy of the global one from its type, session.go).

import (
	"reflect"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// accounts reads the permissions of an account; set by answerPrivilegeQueries.
var accounts accountDirectory

// answerPrivilegeQueries puts the AuthorizationManager that answers HasPrivilegeOnEntities in the model.
// Always: vcsim's own answer ("granted") would make every account look like an administrator.
func answerPrivilegeQueries(model *simulator.Model) {
	registry := model.Map()
	manager := registry.Get(*model.ServiceContent.AuthorizationManager).(*simulator.AuthorizationManager)
	accounts = accountDirectory{manager: manager}
	registry.Put(&answeringAuthorizationManager{AuthorizationManager: manager})
}

// filterReads puts the read-filtering PropertyCollector in the model (with -enforce-permissions).
func filterReads(model *simulator.Model) {
	collector := &readFilteringCollector{}
	collector.Self = model.ServiceContent.PropertyCollector
	model.Map().Put(collector)
}

// readerOf: the session's test of what it may read, or nil where it reads everything.
func readerOf(ctx *simulator.Context) func(types.ManagedObjectReference) bool {
	if ctx.Session == nil || accounts.manager == nil {
		return nil
	}
	account := accounts.of(ctx.Session.UserName)
	if !account.enforced() {
		return nil
	}
	return func(ref types.ManagedObjectReference) bool {
		if _, entity := ctx.Map.Get(ref).(mo.Entity); !entity {
			return true // sessions' own objects (views, collectors, tasks) and managers: not inventory
		}
		return account.privilegesOn(ctx, ref)["System.Read"]
	}
}

type readFilteringCollector struct {
	simulator.PropertyCollector
}

// collectorOf is the simulator's collector in obj, wrapped or not.
func collectorOf(obj mo.Reference) (*simulator.PropertyCollector, bool) {
	switch collector := obj.(type) {
	case *simulator.PropertyCollector:
		return collector, true
	case *readFilteringCollector:
		return &collector.PropertyCollector, true
	}
	return nil, false
}

func (pc *readFilteringCollector) CreatePropertyCollector(ctx *simulator.Context, req *types.CreatePropertyCollector) soap.HasFault {
	collector := &readFilteringCollector{}
	collector.Self.Type = "PropertyCollector" // not the Go type's name, which the Registry would give it
	return &methods.CreatePropertyCollectorBody{Res: &types.CreatePropertyCollectorResponse{
		Returnval: ctx.Session.Put(collector).Reference(),
	}}
}

func (pc *readFilteringCollector) RetrievePropertiesEx(ctx *simulator.Context, req *types.RetrievePropertiesEx) soap.HasFault {
	body := pc.PropertyCollector.RetrievePropertiesEx(ctx, req)
	if result, ok := body.(*methods.RetrievePropertiesExBody); ok && result.Res != nil && result.Res.Returnval != nil {
		result.Res.Returnval.Objects = readableContents(ctx, result.Res.Returnval.Objects)
	}
	return body
}

func (pc *readFilteringCollector) ContinueRetrievePropertiesEx(ctx *simulator.Context, req *types.ContinueRetrievePropertiesEx) soap.HasFault {
	body := pc.PropertyCollector.ContinueRetrievePropertiesEx(ctx, req)
	if result, ok := body.(*methods.ContinueRetrievePropertiesExBody); ok && result.Res != nil {
		result.Res.Returnval.Objects = readableContents(ctx, result.Res.Returnval.Objects)
	}
	return body
}

// RetrieveProperties: the simulator's calls its own RetrievePropertiesEx, which filters nothing.
func (pc *readFilteringCollector) RetrieveProperties(ctx *simulator.Context, req *types.RetrieveProperties) soap.HasFault {
	body := pc.PropertyCollector.RetrieveProperties(ctx, req)
	if result, ok := body.(*methods.RetrievePropertiesBody); ok && result.Res != nil {
		result.Res.Returnval = readableContents(ctx, result.Res.Returnval)
	}
	return body
}

func (pc *readFilteringCollector) WaitForUpdatesEx(ctx *simulator.Context, req *types.WaitForUpdatesEx) soap.HasFault {
	body := pc.PropertyCollector.WaitForUpdatesEx(ctx, req)
	readable := readerOf(ctx)
	result, ok := body.(*methods.WaitForUpdatesExBody)
	if readable == nil || !ok || result.Res == nil || result.Res.Returnval == nil {
		return body
	}
	filters := result.Res.Returnval.FilterSet[:0]
	for _, update := range result.Res.Returnval.FilterSet {
		objects := update.ObjectSet[:0]
		for _, object := range update.ObjectSet {
			if readable(object.Obj) {
				for i := range object.ChangeSet {
					object.ChangeSet[i].Val = readableView(object.Obj, object.ChangeSet[i].Name, object.ChangeSet[i].Val, readable)
				}
				objects = append(objects, object)
			}
		}
		if update.ObjectSet = objects; len(objects) > 0 {
			filters = append(filters, update)
		}
	}
	result.Res.Returnval.FilterSet = filters
	return body
}

// Fetch (pyVmomi's read of one property): NoPermission on an object the session may not read. Its request
// and answer are of simulator/internal, which no other module may name: reached through reflection.
func (pc *readFilteringCollector) Fetch(ctx *simulator.Context, req interface{}) soap.HasFault {
	request := reflect.ValueOf(req).Elem()
	this := request.FieldByName("This").Interface().(types.ManagedObjectReference)
	readable := readerOf(ctx)
	if readable != nil && !readable(this) {
		return &methods.RetrievePropertiesExBody{Fault_: simulator.Fault("", &types.NoPermission{Object: &this, PrivilegeId: "System.Read"})}
	}
	fetch := reflect.ValueOf(&pc.PropertyCollector).MethodByName("Fetch")
	body := fetch.Call([]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(req)})[0].Interface().(soap.HasFault)
	if readable != nil && body.Fault() == nil {
		if answer := reflect.ValueOf(body).Elem().FieldByName("Res"); answer.IsValid() && !answer.IsNil() {
			value := answer.Elem().FieldByName("Returnval")
			filtered := readableView(this, request.FieldByName("Prop").String(), value.Interface(), readable)
			if filtered != nil {
				value.Set(reflect.ValueOf(filtered))
			}
		}
	}
	return body
}

func readableContents(ctx *simulator.Context, objects []types.ObjectContent) []types.ObjectContent {
	readable := readerOf(ctx)
	if readable == nil {
		return objects
	}
	kept := objects[:0]
	for _, object := range objects {
		if readable(object.Obj) {
			for i := range object.PropSet {
				object.PropSet[i].Val = readableView(object.Obj, object.PropSet[i].Name, object.PropSet[i].Val, readable)
			}
			kept = append(kept, object)
		}
	}
	return kept
}

// readableView is a view's `view` without the entities the session may not read; any other value as it is.
func readableView(obj types.ManagedObjectReference, name string, value types.AnyType,
	readable func(types.ManagedObjectReference) bool) types.AnyType {
	if name != "view" || !strings.HasSuffix(obj.Type, "View") {
		return value
	}
	refs, ok := value.(types.ArrayOfManagedObjectReference)
	if !ok {
		return value
	}
	kept := make([]types.ManagedObjectReference, 0, len(refs.ManagedObjectReference))
	for _, ref := range refs.ManagedObjectReference {
		if readable(ref) {
			kept = append(kept, ref)
		}
	}
	return types.ArrayOfManagedObjectReference{ManagedObjectReference: kept}
}

type answeringAuthorizationManager struct {
	*simulator.AuthorizationManager
}

// HasPrivilegeOnEntities answers for the session named (the caller's own, or another's the SessionManager lists).
func (m *answeringAuthorizationManager) HasPrivilegeOnEntities(ctx *simulator.Context, req *types.HasPrivilegeOnEntities) soap.HasFault {
	body := m.AuthorizationManager.HasPrivilegeOnEntities(req)
	if result, ok := body.(*methods.HasPrivilegeOnEntitiesBody); ok && result.Res != nil {
		answer(ctx, accounts.of(sessionUser(ctx, req.SessionId)), result.Res.Returnval)
	}
	return body
}

// HasUserPrivilegeOnEntities answers for the user named ("DOMAIN\\name" or "name@domain", as vCenter takes it).
func (m *answeringAuthorizationManager) HasUserPrivilegeOnEntities(ctx *simulator.Context, req *types.HasUserPrivilegeOnEntities) soap.HasFault {
	body := m.AuthorizationManager.HasUserPrivilegeOnEntities(req)
	if result, ok := body.(*methods.HasUserPrivilegeOnEntitiesBody); ok && result.Res != nil {
		answer(ctx, accounts.of(req.UserName), result.Res.Returnval)
	}
	return body
}

// answer sets each privilege's isGranted from the account's permissions; an account given no role keeps vcsim's.
func answer(ctx *simulator.Context, account *accountPermissions, entities []types.EntityPrivilege) {
	if !account.enforced() {
		return
	}
	for i, entity := range entities {
		held := account.privilegesOn(ctx, entity.Entity)
		for j := range entity.PrivAvailability {
			entities[i].PrivAvailability[j].IsGranted = held[entity.PrivAvailability[j].PrivId]
		}
	}
}

func sessionUser(ctx *simulator.Context, key string) string {
	if ctx.Session != nil && ctx.Session.Key == key {
		return ctx.Session.UserName
	}
	if ctx.Session != nil {
		view := ctx.Session.Get(ctx.Map.SessionManager().Reference())
		if manager, ok := view.(*simulator.SessionManager); ok {
			for _, session := range manager.SessionList {
				if session.Key == key {
					return session.UserName
				}
			}
		}
	}
	return ""
}
