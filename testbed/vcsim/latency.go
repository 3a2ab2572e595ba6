package main

// Network latency between a client and vCenter, for chosen methods:
//
//	-latency WaitForUpdatesEx=50ms   every WaitForUpdatesEx reaches its handler 50 ms after vcsim got it
//
// On loopback vcsim answers a WaitForUpdatesEx whose maxWaitSeconds equals the
// client's socket timeout a millisecond before the client gives up; across a
// network (a vCenter in another site, a VPN, a loaded vCenter's queue) the
// answer comes that much later, after the timeout. Issue 19 measured exactly
// that race: maxWaitSeconds 30 against a 30 s request timeout. The wait runs
// in the simulator's Registry.Handler, which sees every call before its
// handler and before any lock is taken (govmomi simulator/simulator.go,
// Service.call), so a delayed call holds up no one else and the client sees
// its answer maxWaitSeconds plus the latency after sending it.

import (
	"flag"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// methodLatencies is a repeatable flag of Method=duration.
type methodLatencies map[string]time.Duration

var latencies = methodLatencies{}

func (l methodLatencies) String() string { return fmt.Sprint(map[string]time.Duration(l)) }

func (l methodLatencies) Set(value string) error {
	method, text, ok := strings.Cut(value, "=")
	if !ok || method == "" {
		return fmt.Errorf("%q is not Method=duration (e.g. WaitForUpdatesEx=50ms)", value)
	}
	latency, err := time.ParseDuration(text)
	if err != nil || latency < 0 {
		return fmt.Errorf("%q: %q is not a duration (e.g. 50ms)", value, text)
	}
	l[method] = latency
	return nil
}

func init() {
	flag.Var(latencies, "latency", "Method=duration: each call of Method reaches vcsim that late, as across a network (repeatable)")
}

// installLatencyHook adds the latencies to the model's Registry.Handler; call it after model.Create().
func installLatencyHook(model *simulator.Model) {
	if len(latencies) == 0 {
		return
	}
	log.Printf("vcsim: latency %v", latencies)
	earlier := model.Map().Handler
	model.Map().Handler = func(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if latency, ok := latencies[method.Name]; ok {
			time.Sleep(latency)
		}
		if earlier != nil {
			return earlier(ctx, method)
		}
		return nil, nil
	}
}
