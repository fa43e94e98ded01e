//go:build linux

// Command k8s-agent runs on the Kubernetes lab's node (the QEMU guest, inside
// the node's root) beside kubelet. It is the storage side of the lab and the
// host's hands on the node:
//   - the RDS emulator (package rdstest) backed by the kernel's nvmet target,
//     its SSH port forwarded on -emulator-listen, where the controller pod
//     reaches it (the CNI bridge's gateway address);
//   - the one Service pods need without kube-proxy: the apiserver's
//     ClusterIP (kubernetes.default, -api-service) forwarded to the host's
//     apiserver (-api-upstream, QEMU's forward); the node's script puts
//     that address on the node, so pods reach it through the bridge;
//   - an HTTP API on -listen, forwarded to the host by QEMU, through which the
//     test makes static volumes, takes a volume off its port and back (an
//     outage), and runs commands on the node to check its state.
//
// It is a test harness: the API runs any command it is given, and listens
// only where QEMU's user network forwards the host's loopback to.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/srvlab/rds-csi/e2e/k8slab/agentapi"
	"github.com/srvlab/rds-csi/e2e/nvmet"
	"github.com/srvlab/rds-csi/routeros/rdstest"
)

// firstStaticPort is the NVMe/TCP port of the first volume made with
// /static; each has a port of its own, so that taking its subsystem off
// the port closes the port (connection refused: the kernel reconnects),
// where a port that still serves other subsystems would answer the
// reconnect with "invalid subsystem", a status the kernel does not retry.
// The emulator's own exports use 4420.
const firstStaticPort = 4430

// exportAddr is where the target's ports listen: the CNI bridge's address,
// the emulated RDS's host as the controller pod sees it.
const exportAddr = "10.88.0.1"

type agent struct {
	be  *nvmet.FileBackend
	srv *rdstest.Server
	// emulatorAddr is where pods reach the emulator (the forwarder).
	emulatorAddr string

	mu     sync.Mutex
	static map[string]int // nqn -> port
}

func main() {
	listen := flag.String("listen", ":9100", "the HTTP API's address")
	emuListen := flag.String("emulator-listen", ":2222", "where the emulator's SSH port is forwarded from")
	emuAddr := flag.String("emulator-address", "10.88.0.1:2222", "the emulator's address as pods reach it (for known_hosts)")
	dir := flag.String("dir", "/run/rds-lab", "the directory of the backing files (tmpfs)")
	apiService := flag.String("api-service", "10.96.0.1:443", "the kubernetes Service's ClusterIP and port, served here (empty: none)")
	apiUpstream := flag.String("api-upstream", "10.0.2.100:6443", "the apiserver as the node reaches it")
	flag.Parse()
	log.SetPrefix("k8s-agent: ")
	if *apiService != "" {
		ln, err := net.Listen("tcp", *apiService)
		if err != nil {
			log.Fatal(err)
		}
		go forward(ln, *apiUpstream)
	}
	if err := run(*listen, *emuListen, *emuAddr, *dir); err != nil {
		log.Fatal(err)
	}
}

func run(listen, emuListen, emuAddr, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tg, err := nvmet.Open()
	if err != nil {
		return err
	}
	// The exports listen on the bridge's address: the controller tells
	// the node to connect to the RDS's own host (--rds-address's), which
	// is where pods reach the emulator.
	be := tg.FileBackend(dir, exportAddr)
	srv, err := rdstest.Start(rdstest.Options{Backend: be})
	if err != nil {
		return fmt.Errorf("emulator: %w", err)
	}
	defer srv.Close()
	defer be.Close()
	a := &agent{be: be, srv: srv, emulatorAddr: emuAddr, static: map[string]int{}}

	fwd, err := net.Listen("tcp", emuListen)
	if err != nil {
		return err
	}
	go forward(fwd, srv.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /emulator", a.emulator)
	mux.HandleFunc("POST /static", a.makeStatic)
	mux.HandleFunc("POST /unlink", a.link(false))
	mux.HandleFunc("POST /relink", a.link(true))
	mux.HandleFunc("POST /exec", a.exec)
	mux.HandleFunc("GET /rds", a.rds)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	hs := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		hs.Close()
		fwd.Close()
	}()
	log.Printf("serving on %s; emulator %s forwarded from %s", listen, srv.Addr(), emuListen)
	if err := hs.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// forward copies each connection to the address to.
func forward(ln net.Listener, to string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", to)
			if err != nil {
				log.Printf("forward to %s: %v", to, err)
				return
			}
			defer u.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(u, c); done <- struct{}{} }()
			go func() { io.Copy(c, u); done <- struct{}{} }()
			<-done
		}()
	}
}

func (a *agent) emulator(w http.ResponseWriter, _ *http.Request) {
	reply(w, agentapi.Emulator{User: a.srv.User(), ClientKeyPEM: a.srv.ClientKeyPEM(), KnownHosts: a.srv.KnownHostsFor(a.emulatorAddr)})
}

func (a *agent) makeStatic(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	size, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
	if name == "" || err != nil || size <= 0 {
		http.Error(w, "name and bytes required", http.StatusBadRequest)
		return
	}
	nqn := "nqn.2026-12.io.srvlab.lab:" + name
	file := "static-" + name + ".img"
	a.mu.Lock()
	defer a.mu.Unlock()
	port, ok := a.static[nqn]
	if !ok {
		port = firstStaticPort + len(a.static)
		if err := a.be.CreateFile(file, size); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := a.be.Export(file, port, nqn); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		a.static[nqn] = port
	}
	reply(w, agentapi.Static{NQN: nqn, Address: exportAddr, Port: port})
}

// rds lists the emulated RDS's disks and files.
func (a *agent) rds(w http.ResponseWriter, _ *http.Request) {
	var r agentapi.RDS
	for _, d := range a.srv.Disks() {
		r.Disks = append(r.Disks, agentapi.Disk{Slot: d.Slot, File: d.FilePath, NQN: d.NVMeNQN, Comment: d.Comment})
	}
	r.Files = a.srv.Files()
	reply(w, r)
}

func (a *agent) link(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		nqn := r.URL.Query().Get("nqn")
		port, err := strconv.Atoi(r.URL.Query().Get("port"))
		if nqn == "" || err != nil {
			http.Error(w, "nqn and port required", http.StatusBadRequest)
			return
		}
		if on {
			err = a.be.Relink(port, nqn)
		} else {
			err = a.be.Unlink(port, nqn)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok\n")
	}
}

func (a *agent) exec(w http.ResponseWriter, r *http.Request) {
	var e agentapi.Exec
	if err := json.NewDecoder(r.Body).Decode(&e); err != nil || len(e.Argv) == 0 {
		http.Error(w, "a JSON body with argv required", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, e.Argv[0], e.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	e.Stdout, e.Stderr = out.String(), errb.String()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		e.Exit = ee.ExitCode()
	case err != nil:
		e.Exit = -1
		e.Stderr += err.Error()
	}
	reply(w, e)
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.Printf("reply: %v", err)
	}
}
