package main

// Hooks the project's fault tests need, kept apart from main.go: a log line
// for every login vcsim rejects (the wrong-password test counts them), a
// fault for the clones whose name matches a pattern (one clone out of N
// fails), and one for the completion of an OVF import whose VM's name matches
// (a failure after ImportVApp made the VM).
// Both go through the simulator's Registry.Handler, which sees every method
// call before its handler does (govmomi simulator/simulator.go, Service.call).

import (
	"flag"
	"log"
	"regexp"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

var (
	logFailedLogins = flag.Bool("log-failed-logins", false,
		"log 'vcsim: rejected login of USER' to stderr for every Login with a wrong username or password")
	failClone = flag.String("fail-clone", "",
		"CloneVM_Task to a name matching this regular expression fails with a SystemError")
	failImport = flag.String("fail-import", "",
		"HttpNfcLeaseComplete of an import whose VM name matches this regular expression fails with a SystemError")
)

// installFaultHooks adds to the model's Registry.Handler for the flags given; call it after model.Create().
func installFaultHooks(model *simulator.Model, username, password string) {
	var clonePattern, importPattern *regexp.Regexp
	if *failClone != "" {
		clonePattern = regexp.MustCompile(*failClone)
	}
	if *failImport != "" {
		importPattern = regexp.MustCompile(*failImport)
	}
	if !*logFailedLogins && clonePattern == nil && importPattern == nil {
		return
	}
	// Chained: the strict behaviours and the custom field reports hook the same Handler.
	earlier := model.Map().Handler
	model.Map().Handler = func(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		switch body := method.Body.(type) {
		case *types.Login:
			// What SessionManager.Authenticate checks with -username/-password set: that pair, or -users' accounts.
			rejected := body.UserName != username || body.Password != password
			if accepts := ctx.Map.SessionManager().ValidLogin; accepts != nil {
				rejected = !accepts(body)
			}
			if *logFailedLogins && username != "" && rejected {
				log.Printf("vcsim: rejected login of %s", body.UserName)
			}
		case *types.CloneVM_Task:
			if clonePattern != nil && clonePattern.MatchString(body.Name) {
				return nil, &types.SystemError{Reason: "fault injected by vcsim -fail-clone for " + body.Name}
			}
		case *types.HttpNfcLeaseComplete:
			if importPattern != nil {
				if lease, ok := sessionObject(ctx, method.This).(*simulator.HttpNfcLease); ok && lease.Info != nil {
					if vm, ok := ctx.Map.Get(lease.Info.Entity).(*simulator.VirtualMachine); ok && importPattern.MatchString(vm.Name) {
						return nil, &types.SystemError{Reason: "fault injected by vcsim -fail-import for " + vm.Name}
					}
				}
			}
		}
		if earlier != nil {
			return earlier(ctx, method)
		}
		return nil, nil
	}
}

// sessionObject is ref as the call sees it: a lease lives in the session's registry, not in the Map.
func sessionObject(ctx *simulator.Context, ref types.ManagedObjectReference) mo.Reference {
	if ctx.Session != nil {
		if obj := ctx.Session.Get(ref); obj != nil {
			return obj
		}
	}
	return ctx.Map.Get(ref)
}
