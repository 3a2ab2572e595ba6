// Command vcsim runs govmomi's vCenter simulator for the project's tests.
//
// Why our own main: since govmomi v0.47 upstream's vcsim command is a separate
// Go module (github.com/vmware/govmomi/vcsim) that the module proxy here does
// not serve, while the simulator library itself (github.com/vmware/govmomi,
// pinned to v0.56.0 in go.mod) is served. This main keeps upstream's command
// line contract for the flags the project uses, so tests could run the
// upstream binary unchanged:
//   - the first stdout line is "export GOVC_URL=... GOVC_SIM_PID=...";
//   - -stdinexit stops the simulator when stdin reaches EOF (dies with parent);
//   - SIGINT/SIGTERM remove the simulator's datastore folders before exiting;
//   - -tlscert/-tlskey serve a given certificate instead of a self-signed one.
//
// Beyond upstream: -trace-methods (trace.go) records the methods served and by
// which account, -users (users.go) accepts more than one account, -nfc-host
// (nfc_host.go) serves NFC uploads as an ESXi host with a certificate of its own,
// -enforce-permissions (permissions.go, read_filter.go) checks privileges and
// filters reads as vCenter does, -latency (latency.go) puts a network between
// chosen calls and vcsim, -gpu-hosts (gpu.go, gpu_admission.go) gives hosts
// GPUs that power-ons take and give back, NICs get unique MACs as vCenter
// assigns them (mac.go), and
// the simulator behaves as vCenter does where upstream is lenient (strict.go
// and its neighbours) and reports custom attribute changes to
// PropertyCollector filters (custom_fields.go).
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"

	// The vAPI endpoints (/rest tagging, content library) register themselves.
	_ "github.com/vmware/govmomi/vapi/simulator"
)

func main() {
	model := simulator.VPX()

	flag.IntVar(&model.Datacenter, "dc", model.Datacenter, "datacenters")
	flag.IntVar(&model.Cluster, "cluster", model.Cluster, "clusters per datacenter")
	flag.IntVar(&model.ClusterHost, "host", model.ClusterHost, "hosts per cluster")
	flag.IntVar(&model.Host, "standalone-host", model.Host, "standalone hosts per datacenter")
	flag.IntVar(&model.Datastore, "ds", model.Datastore, "local datastores")
	flag.IntVar(&model.Machine, "vm", model.Machine, "virtual machines per resource pool")
	flag.IntVar(&model.Pool, "pool", model.Pool, "child resource pools per compute resource")
	flag.IntVar(&model.Portgroup, "pg", model.Portgroup, "distributed port groups")
	flag.IntVar(&model.Folder, "folder", model.Folder, "datacenter folders")
	flag.BoolVar(&model.Autostart, "autostart", model.Autostart, "power on the model's VMs")
	flag.StringVar(&model.ServiceContent.About.ApiVersion, "api-version", model.ServiceContent.About.ApiVersion, "About.apiVersion, announced in vimServiceVersions.xml; About.version and fullName follow (about.go)")
	aboutBuild := flag.String("build", "", "About.build (default: govmomi's)")
	flag.IntVar(&model.DelayConfig.Delay, "delay", 0, "delay in ms added to every method")
	methodDelay := flag.String("method-delay", "", "per-method delay in ms: 'Method:ms,Task:ms'")
	listen := flag.String("l", "127.0.0.1:8989", "listen address; port 0 picks a free port")
	username := flag.String("username", "", "the only username accepted (any when empty)")
	password := flag.String("password", "", "the only password accepted (any when empty)")
	enforcedPermissions := flag.String("enforce-permissions", "", "JSON of the privileges each method needs and where: check them for accounts given a role (permissions.go)")
	flag.StringVar(usersFile, "users", "", "a file of more accounts accepted beside -username, one 'user<TAB>password' a line (users.go)")
	stdinExit := flag.Bool("stdinexit", false, "exit when stdin reaches EOF")
	// vCenter's defaults (strict.go and its neighbours say where they come from).
	leaseTimeout := flag.Duration("lease-timeout", 300*time.Second, "an NFC lease without HttpNfcLeaseProgress for this long fails")
	sessionIdleTimeout := flag.Duration("session-idle-timeout", 30*time.Minute, "a session idle for this long ends (0: never)")
	hostCostLimit := flag.Int("host-cost-limit", 16, "provisioning cost units per host; more queue (0: no limit)")
	tlsCert := flag.String("tlscert", "", "TLS certificate (PEM, chain allowed) to serve; default self-signed")
	tlsKey := flag.String("tlskey", "", "private key (PEM) of -tlscert")
	vmExtraConfig := flag.Int("vm-extra-config", 0, "extraConfig keys of a real VM given to every VM of the model, several KiB in all (extra_config.go)")
	flag.Parse()

	if *methodDelay != "" {
		delays, err := parseMethodDelay(*methodDelay)
		if err != nil {
			log.Fatal(err)
		}
		model.DelayConfig.MethodDelay = delays
		// Task names (Clone, PowerOn, ...) are delayed through TaskDelay.
		simulator.TaskDelay.MethodDelay = delays
	}

	if err := announceVersion(&model.ServiceContent.About, *aboutBuild); err != nil {
		log.Fatal(err)
	}
	// As upstream's vcsim: clients can tell the simulator from a vCenter.
	model.ServiceContent.About.FullName += " (govmomi simulator)"

	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	seedExtraConfig(model, *vmExtraConfig)
	setSessionIdleTimeout(model, *sessionIdleTimeout)
	newStrictness(model, *leaseTimeout, *hostCostLimit).install(model)
	if err := assignMacs(model); err != nil {
		log.Fatal(err)
	}
	gpus, err := readGpuLayout(*gpuHostsFile)
	if err != nil {
		log.Fatal(err)
	}
	if err := installGpus(model, gpus); err != nil {
		log.Fatal(err)
	}
	reportCustomFieldChanges(model.Map())
	if err := acceptUsers(model, *username, *password, *usersFile); err != nil {
		log.Fatal(err)
	}
	installFaultHooks(model, *username, *password)
	installStallHook(model)
	installLatencyHook(model)
	answerPrivilegeQueries(model)
	// Last, so it runs first: a call the account may not make fails before any other hook sees it.
	if err := enforcePermissions(model, *enforcedPermissions); err != nil {
		log.Fatal(err)
	}

	serviceURL := &url.URL{Host: *listen}
	if *username != "" {
		serviceURL.User = url.UserPassword(*username, *password)
	}
	if *traceMethodsFile != "" {
		closeTrace, err := startMethodTrace(model.Map(), *traceMethodsFile)
		if err != nil {
			log.Fatal(err)
		}
		defer closeTrace()
	}

	model.Service.RegisterEndpoints = true
	model.Service.Listen = serviceURL
	model.Service.TLS = new(tls.Config) // self-signed, as a fresh vCenter
	if *tlsCert != "" {
		// As upstream's vcsim: a certificate of the testbed's own CA, as a vCenter's is of an internal CA.
		certificate, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			log.Fatal(err)
		}
		model.Service.TLS.Certificates = []tls.Certificate{certificate}
	}
	server := model.Service.NewServer()
	noteApiVersions(server) // before anyone has the URL (gpu_api_version.go)
	if err := serveNfcAsEsxiHost(model); err != nil {
		log.Fatal(err)
	}

	fmt.Printf("export GOVC_URL=%s GOVC_SIM_PID=%d\n", server.URL, os.Getpid())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	if *stdinExit {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop <- syscall.SIGTERM
		}()
	}
	<-stop

	server.Close()
	model.Remove() // deletes the govcsim-* datastore folders
}

func parseMethodDelay(spec string) (map[string]int, error) {
	delays := make(map[string]int)
	for _, item := range strings.Split(spec, ",") {
		name, ms, found := strings.Cut(strings.TrimSpace(item), ":")
		if !found {
			return nil, fmt.Errorf("-method-delay: %q is not Name:milliseconds", item)
		}
		value, err := strconv.Atoi(ms)
		if err != nil {
			return nil, fmt.Errorf("-method-delay: %q: %v", item, err)
		}
		delays[name] = value
	}
	return delays, nil
}
