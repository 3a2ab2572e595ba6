package main

// NFC uploads on an ESXi host's name and certificate, as vCenter hands them out.
//
// vSphere API reference, HttpNfcLeaseDeviceUrl.url: "The returned url
// contains either an IP address, a hostname or a '*'"; on a vCenter it names
// the ESXi host that holds the disk, and sslThumbprint is "for the host the
// URL refers to". That host's certificate is VMCA's by default (vSphere
// Security, "Certificate Modes for ESXi Hosts": "By default, the VMware
// Certificate Authority is used as the CA for ESXi host certificates"), also
// when vCenter's own machine SSL certificate was replaced by a company CA's
// (vSphere Authentication, "Certificate Replacement Overview", hybrid
// deployment). vcsim puts its own address in the URL and serves the upload
// with vCenter's certificate, so a client that only trusts vCenter's CA, or
// that cannot reach the hosts, passed every test.
//
// With -nfc-host, uploads go to that name, served on -nfc-listen (loopback
// addresses the name resolves to) with -nfc-tlscert, a certificate of another
// CA; vCenter's own address no longer serves /nfc/. -nfc-fault makes the host
// fail as hosts do: "refuse" (the URL's port takes no connection: a firewall,
// a host down) or "reset" (the connection is reset half-way through a disk).

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

var (
	nfcHostName = flag.String("nfc-host", "", "the ESXi host name NFC lease URLs name (default: vCenter's own address)")
	nfcListen   = flag.String("nfc-listen", "127.0.0.1:0", "comma-separated addresses -nfc-host is served on; all take the first's port")
	nfcCert     = flag.String("nfc-tlscert", "", "TLS certificate (PEM) of -nfc-host")
	nfcKey      = flag.String("nfc-tlskey", "", "private key (PEM) of -nfc-tlscert")
	nfcFault    = flag.String("nfc-fault", "", "'refuse': the URL names a port that refuses connections; 'reset': uploads are reset half-way")
)

// esxiNfc is where lease URLs point, "name:port"; empty: vcsim's own address.
var esxiNfc string

// serveNfcAsEsxiHost starts -nfc-host's server, after NewServer made vCenter's.
func serveNfcAsEsxiHost(model *simulator.Model) error {
	if *nfcHostName == "" {
		return nil
	}
	vcenter := model.Service.Listen.Hostname()
	if strings.EqualFold(*nfcHostName, vcenter) {
		return fmt.Errorf("-nfc-host %s is vCenter's own name", *nfcHostName)
	}
	certificate, err := tls.LoadX509KeyPair(*nfcCert, *nfcKey)
	if err != nil {
		return fmt.Errorf("-nfc-tlscert: %v", err)
	}
	mux := model.Service.ServeMux // its /nfc/ handlers, the timed-out leases' (lease.go) included
	// A pattern with a host wins over one without: vCenter's address serves no disk.
	mux.HandleFunc(vcenter+"/nfc/", func(rw http.ResponseWriter, _ *http.Request) {
		http.Error(rw, "NFC uploads go to the ESXi host the lease names", http.StatusNotFound)
	})
	handler := http.Handler(onlyNfc(mux))
	if *nfcFault == "reset" {
		handler = resetHalfWay(handler)
	}
	port := "0"
	for _, address := range strings.Split(*nfcListen, ",") {
		host, wanted, err := net.SplitHostPort(address)
		if err != nil {
			return fmt.Errorf("-nfc-listen %s: %v", address, err)
		}
		if port == "0" {
			port = wanted
		}
		listener, err := net.Listen("tcp", net.JoinHostPort(host, port))
		if err != nil {
			return fmt.Errorf("-nfc-listen: %v", err)
		}
		port = strconv.Itoa(listener.Addr().(*net.TCPAddr).Port)
		server := &http.Server{Handler: handler, TLSConfig: &tls.Config{Certificates: []tls.Certificate{certificate}},
			ErrorLog: log.New(io.Discard, "", 0)} // clients that reject the certificate are expected
		go func() { _ = server.ServeTLS(listener, "", "") }()
	}
	if *nfcFault == "refuse" {
		host, _, _ := net.SplitHostPort(strings.Split(*nfcListen, ",")[0])
		if port, err = refusingPort(host); err != nil {
			return err
		}
	}
	esxiNfc = net.JoinHostPort(*nfcHostName, port)
	return nil
}

// onlyNfc: an ESXi host's /nfc/ paths; its SDK is not vCenter's.
func onlyNfc(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if !strings.HasPrefix(req.URL.Path, "/nfc/") {
			http.NotFound(rw, req)
			return
		}
		mux.ServeHTTP(rw, req)
	})
}

// resetHalfWay reads half of an upload, then resets the connection (TCP RST).
func resetHalfWay(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPut && req.Method != http.MethodPost {
			next.ServeHTTP(rw, req)
			return
		}
		_, _ = io.CopyN(io.Discard, req.Body, max(req.ContentLength/2, 1))
		conn, _, err := rw.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		if tlsConn, ok := conn.(*tls.Conn); ok {
			conn = tlsConn.NetConn() // no close_notify: the TCP connection just goes
		}
		if tcp, ok := conn.(*net.TCPConn); ok {
			_ = tcp.SetLinger(0) // close sends RST, not FIN
		}
		_ = conn.Close()
	})
}

// refusingPort binds a port on host without listening, for the life of the
// process: a connection to it is refused, and no one else can take it.
func refusingPort(host string) (string, error) {
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return "", fmt.Errorf("-nfc-fault refuse needs an IPv4 -nfc-listen, not %s", host)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return "", err
	}
	address := &syscall.SockaddrInet4{}
	copy(address.Addr[:], ip)
	if err := syscall.Bind(fd, address); err != nil {
		return "", err
	}
	bound, err := syscall.Getsockname(fd)
	if err != nil {
		return "", err
	}
	return strconv.Itoa(bound.(*syscall.SockaddrInet4).Port), nil
}

// esxiDeviceURL is a lease's disk URL on -nfc-host instead of vCenter's address.
func esxiDeviceURL(raw string) string {
	if esxiNfc == "" {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Host = esxiNfc
	return u.String()
}
