package main

// -enforce-permissions FILE: privileges checked as vCenter checks them, for
// the accounts given a role somewhere, so a test can show that a role is
// enough for what an account does and that it is refused elsewhere.
//
// vcsim v0.56.0 keeps permissions (AuthorizationManager.SetEntityPermissions)
// but checks none. vCenter checks each privilege a method's "Required
// privileges" names on the object it names (vSphere API reference), against
// the permissions on that object and those propagated from its ancestors; a
// permission on an object overrides what is propagated from above it
// (vSphere Security, "Hierarchical Inheritance of Permissions" and "Multiple
// Permission Settings": https://docs.vmware.com/en/VMware-vSphere/7.0/com.vmware.vsphere.security.doc/GUID-03B36057-B38C-479C-BD78-341CD83A0584.html).
// A call without a privilege fails with NoPermission naming the object and the
// privilege (the fault every such method declares).
//
// FILE is JSON, {"Method": [{"privilege": "...", "on": "this", "when": "..."}, ...]},
// written by testbed/privileges.py from testbed/vsphere_method_privileges.yml,
// VMware's "Required privileges" transcribed (`when`, `parent`,
// `backing_network`: privilege_conditions.go). Only accounts with at least one permission are checked:
// others (the administrator of -username) keep vcsim's leniency. A session's
// user "name@domain" matches a principal "DOMAIN\name" or "name@domain".
// Property reads are not filtered (vCenter leaves out what an account cannot read).

import (
	"encoding/json"
	"os"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

type enforcedPrivilege struct {
	Privilege string `json:"privilege"`
	On        string `json:"on"`
	When      string `json:"when,omitempty"`
}

func enforcePermissions(model *simulator.Model, path string) error {
	if path == "" {
		return nil
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	rules := make(map[string][]enforcedPrivilege)
	if err := json.Unmarshal(text, &rules); err != nil {
		return err
	}
	authorization := *model.ServiceContent.AuthorizationManager
	earlier := model.Map().Handler
	model.Map().Handler = func(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if ctx.Session != nil {
			if fault := checkPrivileges(ctx, authorization, rules[method.Name], method); fault != nil {
				return nil, fault
			}
		}
		if earlier != nil {
			return earlier(ctx, method)
		}
		return nil, nil
	}
	return nil
}

// principalKey is "name@domain", lower case, for "DOMAIN\name" and "name@domain" alike.
func principalKey(principal string) string {
	principal = strings.ToLower(principal)
	if domain, name, found := strings.Cut(principal, `\`); found {
		return name + "@" + domain
	}
	return principal
}

func checkPrivileges(ctx *simulator.Context, authorization types.ManagedObjectReference, rules []enforcedPrivilege,
	method *simulator.Method) types.BaseMethodFault {
	if len(rules) == 0 {
		return nil
	}
	manager := ctx.Map.Get(authorization).(*simulator.AuthorizationManager)
	all := manager.RetrieveAllPermissions(&types.RetrieveAllPermissions{}).(*methods.RetrieveAllPermissionsBody).Res.Returnval
	user := principalKey(ctx.Session.UserName)
	byEntity := make(map[types.ManagedObjectReference][]types.Permission)
	for _, permission := range all {
		if !permission.Group && principalKey(permission.Principal) == user {
			byEntity[permission.Entity.Reference()] = append(byEntity[permission.Entity.Reference()], permission)
		}
	}
	if len(byEntity) == 0 {
		return nil // an account given no role anywhere: not checked
	}
	roles := make(map[int32][]string)
	for _, role := range manager.RoleList {
		roles[role.RoleId] = role.Privilege
	}
	for _, rule := range rules {
		if !rule.applies(method.Body) {
			continue
		}
		target := enforcedObject(rule.On, method)
		if target == nil {
			target = contextObject(ctx, rule.On, method)
		}
		if target == nil {
			continue
		}
		if !holds(ctx, byEntity, roles, *target, rule.Privilege) {
			return &types.NoPermission{Object: target, PrivilegeId: rule.Privilege}
		}
	}
	return nil
}

// holds: the nearest object from target up whose permissions apply to it decides, by the union of their roles.
func holds(ctx *simulator.Context, byEntity map[types.ManagedObjectReference][]types.Permission,
	roles map[int32][]string, target types.ManagedObjectReference, privilege string) bool {
	for ref := &target; ref != nil; {
		var applying []types.Permission
		for _, permission := range byEntity[*ref] {
			if *ref == target || permission.Propagate {
				applying = append(applying, permission)
			}
		}
		if len(applying) > 0 {
			for _, permission := range applying {
				for _, held := range roles[permission.RoleId] {
					if held == privilege {
						return true
					}
				}
			}
			return false
		}
		entity, ok := ctx.Map.Get(*ref).(mo.Entity)
		if !ok {
			return false
		}
		ref = entity.Entity().Parent
	}
	return false
}

// enforcedObject is the object a rule's privilege is checked on in this call, or nil where the call names none.
func enforcedObject(on string, method *simulator.Method) *types.ManagedObjectReference {
	this := method.This
	switch body := method.Body.(type) {
	case *types.CloneVM_Task:
		switch on {
		case "folder_argument":
			return &body.Folder
		case "clone_pool":
			return body.Spec.Location.Pool
		case "clone_datastore":
			return body.Spec.Location.Datastore
		}
	case *types.ImportVApp:
		if on == "folder_argument" {
			return body.Folder
		}
	case *types.CreateImportSpec:
		switch on {
		case "pool_argument":
			return &body.ResourcePool
		case "datastore_argument":
			return &body.Datastore
		}
	case *types.SetField:
		if on == "entity_argument" {
			return &body.Entity
		}
	}
	if on == "this" {
		return &this
	}
	return nil
}
