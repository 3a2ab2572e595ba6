package main

// A vCenter that stops answering one client in the middle of its work, the
// other clients still served: what issue 18 saw, a worker's create cut short
// by "did not answer within 30 s" while the Ray autoscaler, on its own
// session, had already adopted the new VM and ran a task on it.
//
// -stall-session-after METHOD:NAME-REGEX:MS picks the first session that calls
// METHOD on a VM whose name matches (PowerOnVM_Task: the VM exists, tagged,
// and boots). That call is served; every later call of that session waits MS
// and then faults without being served, as a call vCenter never answered:
// a client whose request timeout is shorter has given up by then, and what it
// sends afterwards (an undo's power-off and destroy) never reaches the
// inventory. Other sessions are untouched. The wait runs in the simulator's
// Registry.Handler, which sees every call before its handler and before any
// lock is taken (govmomi simulator/simulator.go, Service.call), so it holds up
// no one else.

import (
	"flag"
	"fmt"
	"log"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

var stallSessionAfter = flag.String("stall-session-after", "",
	"METHOD:VM-NAME-REGEX:MS: the first session that calls METHOD on a matching VM gets no answer to its later calls (each waits MS, then faults unserved)")

type sessionStall struct {
	method  string
	names   *regexp.Regexp
	delay   time.Duration
	mu      sync.Mutex
	session string // the stalled session's key, once one is
}

func parseSessionStall(spec string) (*sessionStall, error) {
	parts := strings.SplitN(spec, ":", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("-stall-session-after: %q is not METHOD:VM-NAME-REGEX:MS", spec)
	}
	// The regular expression may hold colons: the milliseconds are after the last one.
	method, rest := parts[0], spec[len(parts[0])+1:]
	cut := strings.LastIndex(rest, ":")
	ms, err := strconv.Atoi(rest[cut+1:])
	if err != nil {
		return nil, fmt.Errorf("-stall-session-after: %q: %v", spec, err)
	}
	names, err := regexp.Compile(rest[:cut])
	if err != nil {
		return nil, fmt.Errorf("-stall-session-after: %q: %v", spec, err)
	}
	return &sessionStall{method: method, names: names, delay: time.Duration(ms) * time.Millisecond}, nil
}

// installStallHook adds the stall to the model's Registry.Handler; call it after model.Create().
func installStallHook(model *simulator.Model) {
	if *stallSessionAfter == "" {
		return
	}
	stall, err := parseSessionStall(*stallSessionAfter)
	if err != nil {
		log.Fatal(err)
	}
	earlier := model.Map().Handler
	model.Map().Handler = func(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if fault := stall.check(ctx, method); fault != nil {
			return nil, fault
		}
		if earlier != nil {
			return earlier(ctx, method)
		}
		return nil, nil
	}
}

func (s *sessionStall) check(ctx *simulator.Context, method *simulator.Method) types.BaseMethodFault {
	if ctx.Session == nil {
		return nil
	}
	key := ctx.Session.Key
	s.mu.Lock()
	stalled := s.session != "" && s.session == key
	s.mu.Unlock()
	if stalled {
		time.Sleep(s.delay)
		return &types.RequestCanceled{RuntimeFault: types.RuntimeFault{MethodFault: types.MethodFault{
			FaultMessage: []types.LocalizableMessage{{Key: "vcsim.stall", Message: "vcsim -stall-session-after: not answered"}}}}}
	}
	if method.Name != s.method {
		return nil
	}
	if vm, ok := ctx.Map.Get(method.This).(*simulator.VirtualMachine); ok && s.names.MatchString(vm.Name) {
		s.mu.Lock()
		if s.session == "" {
			s.session = key
			log.Printf("vcsim: no answer from now on to the session of %s that called %s on %s", ctx.Session.UserName, method.Name, vm.Name)
		}
		s.mu.Unlock()
	}
	return nil
}
