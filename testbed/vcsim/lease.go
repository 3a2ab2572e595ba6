package main

// NFC leases that time out, as vCenter's do.
//
// vSphere API reference, HttpNfcLeaseInfo.leaseTimeout: "Number of seconds
// before the lease times out. The client extends the lease by calling
// HttpNfcLeaseProgress before the timeout has elapsed." HttpNfcLeaseProgress
// and HttpNfcLeaseComplete fault with Timedout when "the lease has timed out
// before this call", and the lease goes to state error. vcsim reports
// leaseTimeout 300 but never enforces it (simulator/http_nfc_lease.go), so a
// client that never reports progress passed every test.

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

type trackedLease struct {
	ctx     *simulator.Context // of the ImportVApp call that made it
	lease   *mo.HttpNfcLease
	renewed time.Time
	expired bool
}

type leaseWatch struct {
	model   *simulator.Model
	timeout time.Duration

	mu     sync.Mutex
	leases map[string]*trackedLease
}

func newLeaseWatch(model *simulator.Model, timeout time.Duration) *leaseWatch {
	w := &leaseWatch{model: model, timeout: timeout, leases: make(map[string]*trackedLease)}
	go w.run()
	return w
}

// ready starts the clock of a lease ImportVApp made, as it turns ready, and
// makes it state the timeout it is held to (vcsim's always says 300) and the
// ESXi host its disks go to (nfc_host.go).
func (w *leaseWatch) ready(ctx *simulator.Context, lease *mo.HttpNfcLease) {
	if lease.Info != nil {
		lease.Info.LeaseTimeout = int32(max(1, (w.timeout+time.Second-1)/time.Second))
		for i := range lease.Info.DeviceUrl {
			lease.Info.DeviceUrl[i].Url = esxiDeviceURL(lease.Info.DeviceUrl[i].Url)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.leases[lease.Self.Value] = &trackedLease{ctx: ctx, lease: lease, renewed: time.Now()}
}

// observe sees every progress, completion and abort of a lease: progress
// renews it, the end of an import forgets it, and an expired lease answers
// Timedout.
func (w *leaseWatch) observe(method *simulator.Method) types.BaseMethodFault {
	w.mu.Lock()
	defer w.mu.Unlock()
	tracked, ok := w.leases[method.This.Value]
	if !ok {
		return nil
	}
	switch method.Body.(type) {
	case *types.HttpNfcLeaseProgress:
		if tracked.expired {
			return &types.Timedout{}
		}
		tracked.renewed = time.Now()
	case *types.HttpNfcLeaseComplete:
		if tracked.expired {
			return &types.Timedout{}
		}
		delete(w.leases, method.This.Value)
	case *types.HttpNfcLeaseAbort:
		delete(w.leases, method.This.Value)
	}
	return nil
}

func (w *leaseWatch) run() {
	tick := max(min(w.timeout/10, time.Second), 50*time.Millisecond)
	for range time.Tick(tick) {
		w.expire(time.Now())
	}
}

func (w *leaseWatch) expire(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, tracked := range w.leases {
		if tracked.expired || now.Sub(tracked.renewed) <= w.timeout {
			continue
		}
		tracked.expired = true
		ctx, lease := tracked.ctx, tracked.lease
		ctx.WithLock(lease, func() {
			ctx.Update(lease, []types.PropertyChange{
				{Name: "state", Val: types.HttpNfcLeaseStateError},
				{Name: "error", Val: &types.LocalizedMethodFault{
					Fault: &types.Timedout{},
					LocalizedMessage: fmt.Sprintf("The HTTP NFC lease timed out: no HttpNfcLeaseProgress for %s",
						w.timeout),
				}},
			})
		})
		// The disk URLs of a timed-out lease take nothing more. This more
		// specific pattern wins over the simulator's "/nfc/".
		w.model.Service.ServeMux.HandleFunc("/nfc/"+id+"/", func(rw http.ResponseWriter, _ *http.Request) {
			http.Error(rw, "the HTTP NFC lease timed out", http.StatusNotFound)
		})
	}
}

// pendingImport is an ImportVApp whose VM vcsim has yet to make.
type pendingImport struct {
	folder    *types.ManagedObjectReference // nil: the datacenter's VM folder
	name      string
	transport []string
}

// beforeImport remembers the OVF environment transport of an import spec:
// vcsim's CreateVM drops it (it copies only vApp properties and products).
func (s *strictness) beforeImport(req *types.ImportVApp) {
	spec, ok := req.Spec.(*types.VirtualMachineImportSpec)
	if !ok {
		return
	}
	vapp, ok := spec.ConfigSpec.VAppConfig.(*types.VAppConfigSpec)
	if !ok || len(vapp.OvfEnvironmentTransport) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.imports = append(s.imports, pendingImport{folder: req.Folder, name: spec.ConfigSpec.Name,
		transport: append([]string(nil), vapp.OvfEnvironmentTransport...)})
}

// importReady gives the VM of a lease turning ready the transport of its
// import spec. The lease's lock is held: no client sees it ready before.
func (s *strictness) importReady(ctx *simulator.Context, lease *mo.HttpNfcLease) {
	if lease.Info == nil {
		return
	}
	vm, ok := ctx.Map.Get(lease.Info.Entity).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	var transport []string
	s.mu.Lock()
	for i, pending := range s.imports {
		if pending.name == vm.Name && (pending.folder == nil || *pending.folder == *vm.Parent) {
			s.imports = append(s.imports[:i], s.imports[i+1:]...)
			transport = pending.transport
			break
		}
	}
	s.mu.Unlock()
	if transport == nil {
		return
	}
	ctx.WithLock(vm, func() {
		info := &types.VmConfigInfo{}
		if vm.Config.VAppConfig != nil {
			info = copyVAppConfig(vm.Config.VAppConfig)
		}
		info.OvfEnvironmentTransport = transport
		ctx.Update(vm, []types.PropertyChange{{Name: "config.vAppConfig", Val: info}})
	})
}
