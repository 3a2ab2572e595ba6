package main

// Hooks the project's fault tests need, kept apart from main.go: a log line
// for every login vcsim rejects (the wrong-password test counts them), and
// faults for any step of a deploy, each for the calls whose target's name
// matches a regular expression, so one vcsim serves many cases:
//
//	-fail Method=regex        the call fails with a SystemError
//	-stall Method=regex       the call is answered only after -stall-seconds (a client's request timeout)
//	-drop-reply Method=regex  the call is executed, then the connection is closed with no answer
//
// The target of a call is the VM it makes (CloneVM_Task: its name argument;
// ImportVApp: the import spec's name), the VM an NFC lease imports
// (HttpNfcLeaseComplete), the VMs a PropertyCollector's filters watch
// (WaitForUpdatesEx), or else the object called (a VM's name). A method may be
// narrowed by what its spec sets: ReconfigVM_Task+vAppConfig and
// ReconfigVM_Task+extraConfig match only reconfigurations setting that.
// -fail-clone and -fail-import are the older spellings of
// -fail CloneVM_Task=... and -fail HttpNfcLeaseComplete=....
// All go through the simulator's Registry.Handler, which sees every method
// call before its handler does (govmomi simulator/simulator.go, Service.call).

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// faultRules is a repeatable flag of Method[+field]=regex.
type faultRules []faultRule

type faultRule struct {
	method, field string
	pattern       *regexp.Regexp
}

func (rules *faultRules) String() string { return fmt.Sprint(*rules) }

func (rules *faultRules) Set(value string) error {
	method, pattern, ok := strings.Cut(value, "=")
	if !ok {
		return fmt.Errorf("%q is not Method=regex", value)
	}
	compiled, err := regexp.Compile(pattern)
	if err != nil {
		return err
	}
	method, field, _ := strings.Cut(method, "+")
	*rules = append(*rules, faultRule{method: method, field: field, pattern: compiled})
	return nil
}

// matching is the rule matching the call, if any.
func (rules faultRules) matching(ctx *simulator.Context, method *simulator.Method) *faultRule {
	for i := range rules {
		rule := &rules[i]
		if rule.method != method.Name || (rule.field != "" && !setsField(method.Body, rule.field)) {
			continue
		}
		for _, name := range targetNames(ctx, method) {
			if rule.pattern.MatchString(name) {
				return rule
			}
		}
	}
	return nil
}

var (
	logFailedLogins = flag.Bool("log-failed-logins", false,
		"log 'vcsim: rejected login of USER' to stderr for every Login with a wrong username or password")
	failRules, stallRules, dropRules faultRules
	stallSeconds                     = flag.Int("stall-seconds", 5, "how long -stall holds a call")
	failClone                        = flag.String("fail-clone", "", "-fail CloneVM_Task=this")
	failImport                       = flag.String("fail-import", "", "-fail HttpNfcLeaseComplete=this")
)

func init() {
	flag.Var(&failRules, "fail", "Method[+field]=regex: the call fails with a SystemError (repeatable)")
	flag.Var(&stallRules, "stall", "Method[+field]=regex: the call is answered after -stall-seconds (repeatable)")
	flag.Var(&dropRules, "drop-reply", "Method[+field]=regex: the call is executed and its connection closed unanswered (repeatable)")
}

// installFaultHooks adds to the model's Registry.Handler for the flags given; call it after model.Create().
func installFaultHooks(model *simulator.Model, username, password string) {
	installCancelAfterEnd(model)
	spelled := map[string]string{}
	for flagName, method := range map[string]string{"fail-clone": "CloneVM_Task", "fail-import": "HttpNfcLeaseComplete"} {
		if value := flag.Lookup(flagName).Value.String(); value != "" {
			if err := failRules.Set(method + "=" + value); err != nil {
				log.Fatalf("-%s: %v", flagName, err)
			}
			spelled[method] = flagName
		}
	}
	if !*logFailedLogins && len(failRules)+len(stallRules)+len(dropRules) == 0 {
		return
	}
	// Chained: the strict behaviours and the custom field reports hook the same Handler.
	earlier := model.Map().Handler
	model.Map().Handler = func(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if body, ok := method.Body.(*types.Login); ok {
			// What SessionManager.Authenticate checks with -username/-password set: that pair, or -users' accounts.
			rejected := body.UserName != username || body.Password != password
			if accepts := ctx.Map.SessionManager().ValidLogin; accepts != nil {
				rejected = !accepts(body)
			}
			if *logFailedLogins && username != "" && rejected {
				log.Printf("vcsim: rejected login of %s", body.UserName)
			}
		}
		if rule := failRules.matching(ctx, method); rule != nil {
			flagName := "fail " + method.Name
			if name, old := spelled[method.Name]; old {
				flagName = name
			}
			return nil, &types.SystemError{Reason: fmt.Sprintf("fault injected by vcsim -%s for %s",
				flagName, strings.Join(targetNames(ctx, method), ", "))}
		}
		if stallRules.matching(ctx, method) != nil {
			time.Sleep(time.Duration(*stallSeconds) * time.Second)
		}
		var replacement mo.Reference
		if earlier != nil {
			var fault types.BaseMethodFault
			if replacement, fault = earlier(ctx, method); fault != nil {
				return nil, fault
			}
		}
		if dropRules.matching(ctx, method) != nil {
			execute(ctx, method)
			// net/http closes the connection without a response for this panic, and logs nothing.
			panic(http.ErrAbortHandler)
		}
		return replacement, nil
	}
}

// execute dispatches the call as simulator.Service.call does, under the object's lock.
func execute(ctx *simulator.Context, method *simulator.Method) {
	handler := sessionObject(ctx, method.This)
	name := strings.ToUpper(method.Name[:1]) + method.Name[1:]
	name = strings.Replace(name, "_Task", "Task", 1)
	call := reflect.ValueOf(handler).MethodByName(name)
	if handler == nil || !call.IsValid() {
		log.Printf("vcsim -drop-reply: %s does not implement %s", method.This, method.Name)
		return
	}
	args := []reflect.Value{reflect.ValueOf(method.Body)}
	if call.Type().NumIn() == 2 {
		args = append([]reflect.Value{reflect.ValueOf(ctx)}, args...)
	}
	ctx.Map.WithLock(ctx, handler, func() { call.Call(args) })
}

// targetNames are the names a fault rule is matched against (see the top of this file).
func targetNames(ctx *simulator.Context, method *simulator.Method) []string {
	switch body := method.Body.(type) {
	case *types.CloneVM_Task:
		return []string{body.Name}
	case *types.ImportVApp:
		if spec, ok := body.Spec.(*types.VirtualMachineImportSpec); ok {
			return []string{spec.ConfigSpec.Name}
		}
	case *types.HttpNfcLeaseComplete:
		if lease, ok := sessionObject(ctx, method.This).(*simulator.HttpNfcLease); ok && lease.Info != nil {
			return []string{entityName(ctx, lease.Info.Entity)}
		}
	case *types.WaitForUpdatesEx:
		var names []string
		if collector, ok := collectorOf(sessionObject(ctx, method.This)); ok {
			for _, ref := range collector.Filter {
				if filter, ok := sessionObject(ctx, ref).(*simulator.PropertyFilter); ok {
					for _, object := range filter.Spec.ObjectSet {
						names = append(names, entityName(ctx, object.Obj))
					}
				}
			}
		}
		return names
	}
	return []string{entityName(ctx, method.This)}
}

func entityName(ctx *simulator.Context, ref types.ManagedObjectReference) string {
	if entity, ok := ctx.Map.Get(ref).(mo.Entity); ok {
		return entity.Entity().Name
	}
	return ""
}

// setsField tells whether a ReconfigVM_Task sets vAppConfig or extraConfig.
func setsField(body interface{}, field string) bool {
	reconfigure, ok := body.(*types.ReconfigVM_Task)
	if !ok {
		return false
	}
	switch field {
	case "vAppConfig":
		return reconfigure.Spec.VAppConfig != nil
	case "extraConfig":
		return len(reconfigure.Spec.ExtraConfig) > 0
	}
	return false
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
