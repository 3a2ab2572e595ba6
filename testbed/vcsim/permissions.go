package main

// -enforce-permissions FILE: privileges checked as vCenter checks them, for
// the accounts given a role somewhere, so a test can show that a role is
// enough for what an account does and that it is refused elsewhere.
//
// vcsim v0.56.0 keeps permissions (AuthorizationManager.SetEntityPermissions)
// but checks none. vCenter checks each privilege a method's "Required
// privileges" names on the object it names (vSphere API reference), against
// the permissions on that object and those propagated from its ancestors,
// along both a VM's folder chain and its resource pool chain (privilegesOn
// says how, with VMware's words).
// A call without a privilege fails with NoPermission naming the object and the
// privilege (the fault every such method declares).
//
// FILE is JSON, {"Method": [{"privilege": "...", "on": "this", "when": "..."}, ...]},
// written by testbed/privileges.py from testbed/vsphere_method_privileges.yml,
// VMware's "Required privileges" transcribed (`when`, `parent`,
// `backing_network`: privilege_conditions.go). Only accounts with at least one permission are checked:
// others (the administrator of -username) keep vcsim's leniency. A session's
// user "name@domain" matches a principal "DOMAIN\name" or "name@domain".
// What such an account may read is filtered too (read_filter.go).

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
	filterReads(model)
	earlier := model.Map().Handler
	model.Map().Handler = func(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if ctx.Session != nil {
			if fault := checkPrivileges(ctx, accounts.of(ctx.Session.UserName), rules[method.Name], method); fault != nil {
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

// accountPermissions is one account's permissions by entity and the privileges of every role.
type accountPermissions struct {
	byEntity map[types.ManagedObjectReference][]types.Permission
	roles    map[int32][]string
}

// enforced: the account was given a role somewhere, so vcsim checks it (others keep vcsim's leniency).
func (a *accountPermissions) enforced() bool {
	return a != nil && len(a.byEntity) > 0
}

func (a *accountPermissions) privilegesOn(ctx *simulator.Context, target types.ManagedObjectReference) map[string]bool {
	return privilegesOn(ctx, a.byEntity, a.roles, target)
}

// accountDirectory reads the AuthorizationManager's permissions and roles for one account at a time.
type accountDirectory struct {
	manager *simulator.AuthorizationManager
}

func (d accountDirectory) of(userName string) *accountPermissions {
	all := d.manager.RetrieveAllPermissions(&types.RetrieveAllPermissions{}).(*methods.RetrieveAllPermissionsBody).Res.Returnval
	user := principalKey(userName)
	account := &accountPermissions{
		byEntity: make(map[types.ManagedObjectReference][]types.Permission),
		roles:    make(map[int32][]string),
	}
	for _, permission := range all {
		if !permission.Group && principalKey(permission.Principal) == user {
			account.byEntity[permission.Entity.Reference()] = append(account.byEntity[permission.Entity.Reference()], permission)
		}
	}
	for _, role := range d.manager.RoleList {
		account.roles[role.RoleId] = role.Privilege
	}
	return account
}

func checkPrivileges(ctx *simulator.Context, account *accountPermissions, rules []enforcedPrivilege,
	method *simulator.Method) types.BaseMethodFault {
	if len(rules) == 0 || !account.enforced() {
		return nil // an account given no role anywhere: not checked
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
		if !account.privilegesOn(ctx, *target)[rule.Privilege] {
			return &types.NoPermission{Object: target, PrivilegeId: rule.Privilege}
		}
	}
	return nil
}

// privilegesOn is what the account's permissions give on target, as vCenter reckons it (vSphere Security,
// "Hierarchical Inheritance of Permissions",
// https://docs.vmware.com/en/VMware-vSphere/6.5/com.vmware.vsphere.security.doc/GUID-03B36057-B38C-479C-BD78-341CD83A0584.html,
// and "Multiple Permission Settings",
// https://docs.vmware.com/en/VMware-vSphere/6.5/com.vmware.vsphere.security.doc/GUID-72EE3449-79FD-4E7A-B164-26904958540F.html):
//   - "Virtual machines inherit permissions from both the parent virtual machine folder and the parent host,
//     cluster, or resource pool simultaneously": a VM has two chains of ancestors, its folders' and its
//     resource pools' (up through the cluster or host); every other object has one, its Parent's.
//   - On each chain the nearest object with a permission that applies decides ("Permissions applied on a child
//     object always override permissions that are applied on a parent object"); a permission above the
//     target applies only if it propagates.
//   - "If an object inherits permissions from two parent objects, the permissions on one object are added to
//     the permissions on the other object": the VM gets the union of what its two chains give.
//   - The datacenter's vm, host, datastore and network folders and a cluster's or host's root resource pool
//     take no permissions of their own ("You cannot set direct permissions on the VM, host, network, and
//     storage folders ... these folders act as containers", the vSphere 7 and 8 editions of the first page):
//     the datacenter's, or the compute resource's, own permissions are theirs.
func privilegesOn(ctx *simulator.Context, byEntity map[types.ManagedObjectReference][]types.Permission,
	roles map[int32][]string, target types.ManagedObjectReference) map[string]bool {
	target = standsFor(ctx, target)
	held := make(map[string]bool)
	grant := func(permissions []types.Permission) {
		for _, permission := range permissions {
			for _, privilege := range roles[permission.RoleId] {
				held[privilege] = true
			}
		}
	}
	if own := byEntity[target]; len(own) > 0 {
		grant(own)
		return held
	}
	for _, first := range parentsOf(ctx, target) {
		grant(nearestPropagated(ctx, byEntity, first))
	}
	return held
}

// parentsOf: a VM's folder and resource pool; any other entity's Parent.
func parentsOf(ctx *simulator.Context, ref types.ManagedObjectReference) []types.ManagedObjectReference {
	var parents []types.ManagedObjectReference
	entity, ok := ctx.Map.Get(ref).(mo.Entity)
	if !ok {
		return nil
	}
	if parent := entity.Entity().Parent; parent != nil {
		parents = append(parents, *parent)
	}
	if vm, ok := entity.(*simulator.VirtualMachine); ok && vm.ResourcePool != nil {
		parents = append(parents, *vm.ResourcePool)
	}
	return parents
}

// nearestPropagated: the propagating permissions of the first object from ref up its Parent chain that has any.
func nearestPropagated(ctx *simulator.Context, byEntity map[types.ManagedObjectReference][]types.Permission,
	ref types.ManagedObjectReference) []types.Permission {
	for current := &ref; current != nil; {
		var propagated []types.Permission
		for _, permission := range byEntity[*current] {
			if permission.Propagate {
				propagated = append(propagated, permission)
			}
		}
		if len(propagated) > 0 {
			return propagated
		}
		entity, ok := ctx.Map.Get(*current).(mo.Entity)
		if !ok {
			return nil
		}
		current = entity.Entity().Parent
	}
	return nil
}

// standsFor: the datacenter for its hidden folders, the cluster or host for its root resource pool, else ref.
func standsFor(ctx *simulator.Context, ref types.ManagedObjectReference) types.ManagedObjectReference {
	entity, ok := ctx.Map.Get(ref).(mo.Entity)
	if !ok || entity.Entity().Parent == nil {
		return ref
	}
	parent := *entity.Entity().Parent
	switch owner := ctx.Map.Get(parent).(type) {
	case *simulator.Datacenter:
		for _, folder := range []types.ManagedObjectReference{owner.VmFolder, owner.HostFolder, owner.DatastoreFolder,
			owner.NetworkFolder} {
			if folder == ref {
				return parent
			}
		}
	case *simulator.ClusterComputeResource:
		if owner.ResourcePool != nil && *owner.ResourcePool == ref {
			return parent
		}
	case *mo.ComputeResource:
		if owner.ResourcePool != nil && *owner.ResourcePool == ref {
			return parent
		}
	}
	return ref
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
