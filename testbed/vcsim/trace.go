package main

// -trace-methods FILE: which vSphere methods vcsim serves, on which type of
// managed object, for which client and as which account. The project derives its least
// privilege list from this (meta/vcenter_requirements.yml): each method's
// "Required privileges" in the vSphere API reference, checked on that object.
//
// Upstream's -trace logs whole SOAP bodies; this keeps one JSON line per
// distinct (method, type, user agent, user), written when first seen, so a test
// session's trace stays small and is complete while vcsim still runs.

import (
	"encoding/json"
	"flag"
	"os"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

var traceMethodsFile = flag.String("trace-methods", "",
	"append one JSON line per distinct served method, managed object type, session user agent and user to this file")

type tracedMethod struct {
	Method string `json:"method"`
	// The managed object type the method was called on (its MoRef's type).
	Type string `json:"type"`
	// The User-Agent of the session's login; empty before login (Login,
	// RetrieveServiceContent), which need no privilege.
	UserAgent string `json:"user_agent"`
	// The session's user name (the login's): which account a client used,
	// e.g. a Ray head's own account rather than the operator's. Empty before login.
	User string `json:"user"`
}

type methodTrace struct {
	mu   sync.Mutex
	seen map[tracedMethod]bool
	out  *os.File
}

// startMethodTrace hooks the registry's per-call Handler, keeping any handler
// installed before it (behaviour overrides), and returns the file's closer.
func startMethodTrace(registry *simulator.Registry, path string) (func() error, error) {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	trace := &methodTrace{seen: make(map[tracedMethod]bool), out: out}
	previous := registry.Handler
	registry.Handler = func(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		trace.record(ctx, method)
		if previous != nil {
			return previous(ctx, method)
		}
		return nil, nil
	}
	return out.Close, nil
}

func (t *methodTrace) record(ctx *simulator.Context, method *simulator.Method) {
	entry := tracedMethod{Method: method.Name, Type: method.This.Type}
	if ctx.Session != nil {
		entry.UserAgent = ctx.Session.UserAgent
		entry.User = ctx.Session.UserName
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[entry] {
		return
	}
	t.seen[entry] = true
	line, _ := json.Marshal(entry)
	// One write per line, the file opened for appending: several vcsims may share a file.
	_, _ = t.out.Write(append(line, '\n'))
}
