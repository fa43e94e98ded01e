package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/srvlab/rds-csi/csi"
)

func TestParseFlagsRegistration(t *testing.T) {
	parse := func(args ...string) (options, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		return parseFlags(fs, args)
	}
	o, err := parse()
	if err != nil || o.registrationPath != "" || o.registrationEndpoint != "" {
		t.Fatalf("default: %+v %v, want registration off", o, err)
	}
	// The kubelet endpoint defaults to the --endpoint path.
	o, err = parse("--kubelet-registration-path=/var/lib/kubelet/plugins_registry/d-reg.sock",
		"--endpoint=unix:///var/lib/kubelet/plugins/d/csi.sock")
	if err != nil || o.registrationEndpoint != "/var/lib/kubelet/plugins/d/csi.sock" {
		t.Errorf("derived endpoint: %q %v", o.registrationEndpoint, err)
	}
	o, err = parse("--kubelet-registration-path=/r/d-reg.sock", "--kubelet-registration-endpoint=unix:///host/d/csi.sock")
	if err != nil || o.registrationEndpoint != "/host/d/csi.sock" {
		t.Errorf("explicit endpoint: %q %v", o.registrationEndpoint, err)
	}
	for _, args := range [][]string{
		{"--kubelet-registration-endpoint=/host/d/csi.sock"}, // without a registration path
		{"--kubelet-registration-path=r/d-reg.sock"},
		{"--kubelet-registration-path=/r/.d-reg.sock"},
		{"--kubelet-registration-path=/r/d-reg.sock", "--endpoint=tcp://127.0.0.1:10000"},
		{"--kubelet-registration-path=/r/d-reg.sock", "--kubelet-registration-endpoint=host/csi.sock"},
		{"--kubelet-registration-path=/r/d-reg.sock", "--kubelet-registration-endpoint=tcp://127.0.0.1:1"},
		{"--kubelet-registration-path=/csi/csi.sock"}, // the CSI socket itself
		{"--kubelet-registration-path=/r/d-reg.sock", "--mode=controller", "--rds-address=192.0.2.1", "--rds-user=u",
			"--rds-key-file=/k", "--rds-known-hosts-file=/h", "--volume-dir=/v"},
	} {
		if _, err := parse(args...); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

func TestServingCheckBeforeStart(t *testing.T) {
	var s servingCheck
	if err := s.check(); err == nil {
		t.Error("healthy before the servers run")
	}
	s.set([]func(context.Context) error{
		func(context.Context) error { return nil },
		func(context.Context) error { return errors.New("second check") },
	})
	if err := s.check(); err == nil || !strings.Contains(err.Error(), "second check") {
		t.Errorf("check = %v, want the failing check's error", err)
	}
}

// metricsAddress finds the address the metrics server listens on in the
// JSON logs (the test asks for port 0).
func metricsAddress(logs string) string {
	for _, line := range strings.Split(logs, "\n") {
		var l struct{ Msg, Address string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving metrics and health endpoints" {
			return l.Address
		}
	}
	return ""
}

func healthz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRunRegistersWithKubelet plays kubelet's plugin watcher against the
// binary's run loop: it dials the registration socket, calls GetInfo, dials
// the endpoint it names and finds the driver there, reports the outcome;
// /healthz follows the registration and the sockets; on shutdown the
// registration socket is removed.
func TestRunRegistersWithKubelet(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "plugins", "d", "csi.sock")
	regDir := filepath.Join(dir, "plugins_registry")
	if err := os.MkdirAll(regDir, 0o750); err != nil {
		t.Fatal(err)
	}
	regSock := filepath.Join(regDir, csi.DefaultDriverName+"-reg.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	args := []string{
		"--endpoint", "unix://" + sock,
		"--kubelet-registration-path", regSock,
		"--node-id", "node-1",
		"--state-dir", filepath.Join(dir, "state"),
		"--host-identity-dir", filepath.Join(dir, "etc-nvme"),
		"--sysfs-root", filepath.Join(dir, "sys"),
		"--fabrics-device", "/dev/null",
		"--staging-root", filepath.Join(dir, "plugins"),
		"--metrics-address", "127.0.0.1:0",
		"--skip-netns-check", "--no-events",
		"--log-level", "info",
	}
	errc := make(chan error, 1)
	var logs lockedBuffer
	go func() { errc <- run(ctx, args, &logs, &logs) }()

	conn, err := grpc.NewClient("unix://"+regSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kubelet := registerapi.NewRegistrationClient(conn)
	var info *registerapi.PluginInfo
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err = kubelet.GetInfo(ctx, &registerapi.InfoRequest{})
		if err == nil {
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("run stopped early: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registration socket never answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if info.GetType() != registerapi.CSIPlugin || info.GetName() != csi.DefaultDriverName ||
		info.GetEndpoint() != sock || len(info.GetSupportedVersions()) != 1 || info.GetSupportedVersions()[0] != "1.0.0" {
		t.Errorf("GetInfo = %v", info)
	}
	// The endpoint it names serves this driver, and is ready.
	csiConn, err := grpc.NewClient("unix://"+info.GetEndpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer csiConn.Close()
	id := csipb.NewIdentityClient(csiConn)
	if pi, err := id.GetPluginInfo(ctx, &csipb.GetPluginInfoRequest{}); err != nil || pi.GetName() != info.GetName() {
		t.Errorf("GetPluginInfo on the registered endpoint = %v, %v", pi, err)
	}
	if p, err := id.Probe(ctx, &csipb.ProbeRequest{}); err != nil || !p.GetReady().GetValue() {
		t.Errorf("Probe on the registered endpoint = %v, %v", p, err)
	}
	if _, err := kubelet.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatal(err)
	}

	addr := metricsAddress(logs.String())
	if addr == "" {
		t.Fatalf("no metrics address in the logs:\n%s", logs.String())
	}
	if code, body := healthz(t, addr); code != http.StatusOK {
		t.Errorf("/healthz after registration: %d %s", code, body)
	}
	// kubelet refuses the driver: /healthz fails with kubelet's reason, and
	// recovers when kubelet's retry succeeds.
	if _, err := kubelet.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{Error: "no such version"}); err != nil {
		t.Fatal(err)
	}
	if code, body := healthz(t, addr); code != http.StatusServiceUnavailable || !strings.Contains(body, "no such version") {
		t.Errorf("/healthz after a refused registration: %d %s", code, body)
	}
	if _, err := kubelet.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatal(err)
	}
	if code, body := healthz(t, addr); code != http.StatusOK {
		t.Errorf("/healthz after kubelet's retry: %d %s", code, body)
	}
	// The CSI socket file is gone (kubelet could not reach the plugin):
	// /healthz fails.
	if err := os.Rename(sock, sock+".moved"); err != nil {
		t.Fatal(err)
	}
	if code, body := healthz(t, addr); code != http.StatusServiceUnavailable || !strings.Contains(body, "CSI Probe") {
		t.Errorf("/healthz without the CSI socket: %d %s", code, body)
	}
	if err := os.Rename(sock+".moved", sock); err != nil {
		t.Fatal(err)
	}
	if code, body := healthz(t, addr); code != http.StatusOK {
		t.Errorf("/healthz with the CSI socket back: %d %s", code, body)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop")
	}
	if _, err := os.Lstat(regSock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("registration socket left after shutdown: %v", err)
	}
	checkJSONLogs(t, logs.String())
}

// A file that is not a socket at the registration path stops the start and
// is left alone.
func TestRunRefusesNonSocketRegistrationPath(t *testing.T) {
	dir := t.TempDir()
	regSock := filepath.Join(dir, "reg.sock")
	if err := os.WriteFile(regSock, []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--endpoint", "unix://" + filepath.Join(dir, "csi", "csi.sock"),
		"--kubelet-registration-path", regSock,
		"--node-id", "node-1",
		"--state-dir", filepath.Join(dir, "state"),
		"--host-identity-dir", filepath.Join(dir, "etc-nvme"),
		"--sysfs-root", filepath.Join(dir, "sys"),
		"--fabrics-device", "/dev/null",
		"--staging-root", filepath.Join(dir, "plugins"),
		"--metrics-address", "",
		"--skip-netns-check", "--no-events",
		"--log-level", "error",
	}
	err := run(context.Background(), args, io.Discard, io.Discard)
	if !errors.Is(err, csi.ErrNotSocket) {
		t.Errorf("run = %v, want ErrNotSocket", err)
	}
	if b, err := os.ReadFile(regSock); err != nil || string(b) != "not ours" {
		t.Errorf("the file at the registration path changed: %q %v", b, err)
	}
}

func TestWarnIfUnregistered(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	reg, err := csi.NewRegistration(csi.DefaultDriverName, "/var/lib/kubelet/plugins/d/csi.sock", log)
	if err != nil {
		t.Fatal(err)
	}
	warnIfUnregistered(reg, "/var/lib/kubelet/plugins_registry/d-reg.sock", log)
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "plugins_registry/d-reg.sock") {
		t.Errorf("no warning naming the socket before kubelet registered the driver:\n%s", logs.String())
	}
	if _, err := reg.NotifyRegistrationStatus(context.Background(), &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	warnIfUnregistered(reg, "/var/lib/kubelet/plugins_registry/d-reg.sock", log)
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("a warning after kubelet registered the driver:\n%s", logs.String())
	}
}
