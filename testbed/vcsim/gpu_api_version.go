package main

// The vSphere API version each session speaks, so that QueryConfigTarget
// leaves out what that version does not have, as vCenter answers every
// client in the version it negotiated: a pyVmomi session of API 6.5 cannot
// read a VirtualMachineDynamicPassthroughInfo (vSphere 7.0) or a
// VirtualMachineVgpuProfileInfo (7.0 U3) and fails on the whole answer.
// Clients name their version in every request's SOAPAction
// ("urn:vim25/8.0.3.0"); vcsim's Context does not keep the HTTP request, so
// the server's handler notes it by session cookie.

import (
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
)

type sessionVersions struct {
	mu        sync.Mutex
	bySession map[string]string
}

var apiVersions = &sessionVersions{bySession: map[string]string{}}

// noteApiVersions puts the note-taking in front of the server's handler; before any client has its URL.
func noteApiVersions(server *simulator.Server) {
	next := server.Config.Handler
	server.Config.Handler = http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if version, ok := strings.CutPrefix(strings.Trim(req.Header.Get("SOAPAction"), `"`), "urn:vim25/"); ok {
			if cookie, err := req.Cookie(soap.SessionCookieName); err == nil {
				apiVersions.mu.Lock()
				apiVersions.bySession[cookie.Value] = version
				apiVersions.mu.Unlock()
			}
		}
		next.ServeHTTP(rw, req)
	})
}

// speaks: whether the session's API is at least minimum ("7.0.3.0"); true when it named none.
func (v *sessionVersions) speaks(session *simulator.Session, minimum string) bool {
	if session == nil {
		return true
	}
	v.mu.Lock()
	version, ok := v.bySession[session.Key]
	v.mu.Unlock()
	return !ok || compareVersions(version, minimum) >= 0
}

// compareVersions orders dotted versions numerically ("6.5" < "7.0" < "7.0.3.0"); a part that is no number counts 0.
func compareVersions(a, b string) int {
	left, right := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(left) || i < len(right); i++ {
		var x, y int
		if i < len(left) {
			x, _ = strconv.Atoi(left[i])
		}
		if i < len(right) {
			y, _ = strconv.Atoi(right[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
