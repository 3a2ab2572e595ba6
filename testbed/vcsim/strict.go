package main

// Where vcsim forgives what vCenter refuses, the testbed's vcsim is made as
// strict as vCenter, through the simulator's extension points:
//
//   - Registry.Handler, asked before every SOAP method is dispatched, with the
//     request: it may refuse the call with a fault, or act first (write the
//     OVF environment before a power-on, wait for provisioning room). The
//     object it may return instead is replaced by the session's lookup for
//     every logged-in call (simulator.Service.call), so methods cannot be
//     overridden through it.
//   - a RegisterObject on the Registry, told of every object put in it and
//     every property change, under the changed object's lock: it completes
//     what vcsim leaves out (a clone's vApp config as its task succeeds, an
//     import's OVF transport and its lease's timeout as the lease turns
//     ready) before any client can read the change.
//   - Registry.Put of a wrapper embedding the simulator's own type, for the
//     OvfManager, which no simulator code type-asserts (unlike VMs and
//     resource pools, which vcsim casts to its own types everywhere).
//
// The Go files beside this one say where each vCenter behaviour comes from.

import (
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// strictness is the vCenter behaviour switched on, with its limits and what
// it remembers between a request and the objects the request makes.
type strictness struct {
	leases *leaseWatch
	queue  *provisioningQueue
	about  types.AboutInfo

	mu      sync.Mutex
	imports []pendingImport // ImportVApp calls whose VM is not made yet
	clones  []*pendingClone // CloneVM_Task calls whose task or VM is not made yet
	running map[types.ManagedObjectReference]*pendingClone
}

func newStrictness(model *simulator.Model, leaseTimeout time.Duration, hostCostLimit int) *strictness {
	return &strictness{
		leases:  newLeaseWatch(model, leaseTimeout),
		queue:   newProvisioningQueue(hostCostLimit),
		about:   model.ServiceContent.About,
		running: make(map[types.ManagedObjectReference]*pendingClone),
	}
}

// install puts the strict behaviour in front of the model's objects.
func (s *strictness) install(model *simulator.Model) {
	registry := model.Map()
	previous := registry.Handler
	registry.Handler = func(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if fault := s.before(ctx, method); fault != nil {
			return nil, fault
		}
		if previous != nil {
			return previous(ctx, method)
		}
		return nil, nil
	}
	registry.AddHandler(&observer{strict: s})
	manager := registry.Get(*model.ServiceContent.OvfManager).(*simulator.OvfManager)
	registry.Put(&strictOvfManager{OvfManager: manager})
}

// before runs ahead of a method; a fault refuses the call.
func (s *strictness) before(ctx *simulator.Context, method *simulator.Method) types.BaseMethodFault {
	if ctx.Session == nil {
		return withoutSession(method)
	}
	switch req := method.Body.(type) {
	case *types.CloneVM_Task:
		if vm, ok := ctx.Map.Get(method.This).(*simulator.VirtualMachine); ok {
			return s.beforeClone(ctx, vm, req)
		}
	case *types.PowerOnVM_Task:
		if vm, ok := ctx.Map.Get(method.This).(*simulator.VirtualMachine); ok {
			ctx.WithLock(vm, func() {
				if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOff && !vm.Config.Template {
					publishOvfEnvironment(ctx, vm, s.about)
				}
			})
		}
	case *types.ReconfigVM_Task:
		if vm, ok := ctx.Map.Get(method.This).(*simulator.VirtualMachine); ok {
			mergePropertyEdits(ctx, vm, req)
		}
	case *types.ImportVApp:
		s.beforeImport(req)
	case *types.HttpNfcLeaseProgress, *types.HttpNfcLeaseComplete, *types.HttpNfcLeaseAbort:
		return s.leases.observe(method)
	}
	return nil
}

// observer is told of every object the registry gets and every change.
type observer struct {
	strict *strictness
}

func (o *observer) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "RayVsphereStrictness", Value: "observer"}
}

func (o *observer) PutObject(ctx *simulator.Context, obj mo.Reference) {
	if task, ok := obj.(*simulator.Task); ok {
		o.strict.taskMade(task)
	}
}

func (o *observer) UpdateObject(ctx *simulator.Context, obj mo.Reference, changes []types.PropertyChange) {
	switch obj := obj.(type) {
	case *mo.Task:
		for _, change := range changes {
			if change.Name == "info.state" && (change.Val == types.TaskInfoStateSuccess || change.Val == types.TaskInfoStateError) {
				o.strict.taskEnded(ctx, obj)
			}
		}
	case *mo.HttpNfcLease:
		for _, change := range changes {
			if change.Name == "state" && change.Val == types.HttpNfcLeaseStateReady {
				o.strict.leases.ready(ctx, obj)
				o.strict.importReady(ctx, obj)
			}
		}
	}
}

func (o *observer) RemoveObject(*simulator.Context, types.ManagedObjectReference) {}
