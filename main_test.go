package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/csi"
)

func TestParseFlagsDefaults(t *testing.T) {
	o, err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), nil)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	checks := map[string][2]string{
		"endpoint":        {o.endpoint, "unix:///csi/csi.sock"},
		"node-id":         {o.nodeID, host},
		"driver-name":     {o.driverName, "rds.csi.srvlab.io"},
		"state-dir":       {o.stateDir, "/var/lib/rds-csi"},
		"sysfs-root":      {o.sysfsRoot, "/sys"},
		"fabrics-device":  {o.fabricsDevice, "/dev/nvme-fabrics"},
		"metrics-address": {o.metricsAddress, ":9809"},
		"log-format":      {o.logFormat, "json"},
		"staging-root":    {o.stagingRoot, "/var/lib/kubelet/plugins"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("--%s default %q, want %q", name, c[0], c[1])
		}
	}
	if _, err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), []string{"--node-id="}); err == nil {
		t.Error("empty --node-id accepted")
	}
	if _, err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), []string{"--driver-name=-bad_name"}); err == nil {
		t.Error("invalid --driver-name accepted")
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := parseFlags(fs, []string{"--bogus"}); err == nil {
		t.Error("unknown flag accepted")
	}
}

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct {
		format, level string
		ok            bool
	}{
		{"json", "info", true}, {"text", "debug", true}, {"json", "WARN", true},
		{"xml", "info", false}, {"json", "loud", false},
	} {
		_, err := newLogger(io.Discard, tc.format, tc.level)
		if (err == nil) != tc.ok {
			t.Errorf("newLogger(%q, %q) = %v, want ok %t", tc.format, tc.level, err, tc.ok)
		}
	}
}

func TestCheckFabricsDevice(t *testing.T) {
	err := checkFabricsDevice(filepath.Join(t.TempDir(), "nvme-fabrics"))
	if err == nil || !strings.Contains(err.Error(), "modprobe nvme-tcp") {
		t.Errorf("missing device: %v, want a hint to modprobe nvme-tcp", err)
	}
	regular := filepath.Join(t.TempDir(), "f")
	os.WriteFile(regular, nil, 0o600)
	if err := checkFabricsDevice(regular); err == nil {
		t.Error("a regular file accepted as the fabrics device")
	}
	if err := checkFabricsDevice("/dev/null"); err != nil {
		t.Errorf("/dev/null (a character device): %v", err)
	}
}

func TestCheckHostNetNS(t *testing.T) {
	mk := func(t *testing.T, same bool) string {
		root := t.TempDir()
		for _, d := range []string{"self/ns", "1/ns"} {
			os.MkdirAll(filepath.Join(root, d), 0o755)
		}
		self := filepath.Join(root, "self/ns/net")
		os.WriteFile(self, nil, 0o600)
		if same {
			if err := os.Link(self, filepath.Join(root, "1/ns/net")); err != nil {
				t.Fatal(err)
			}
		} else {
			os.WriteFile(filepath.Join(root, "1/ns/net"), nil, 0o600)
		}
		return root
	}
	if err := checkHostNetNS(mk(t, true)); err != nil {
		t.Errorf("same namespace: %v", err)
	}
	if err := checkHostNetNS(mk(t, false)); err == nil || !strings.Contains(err.Error(), "hostNetwork") {
		t.Errorf("other namespace: %v, want an error naming hostNetwork", err)
	}
	if err := checkHostNetNS(t.TempDir()); err == nil || !strings.Contains(err.Error(), "--skip-netns-check") {
		t.Errorf("unreadable: %v, want a hint to --skip-netns-check", err)
	}
}

// stuckServer's GracefulStop waits for Stop, like a server with a call
// that never finishes.
type stuckServer struct {
	stop    chan struct{}
	stopped atomic.Bool
}

func (s *stuckServer) GracefulStop() { <-s.stop }
func (s *stuckServer) Stop()         { s.stopped.Store(true); close(s.stop) }

func TestGracefulStopIsBounded(t *testing.T) {
	s := &stuckServer{stop: make(chan struct{})}
	start := time.Now()
	gracefulStop(s, 50*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !s.stopped.Load() {
		t.Error("Stop not called after the timeout")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestVersionFlag(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), version) {
		t.Errorf("--version printed %q", out.String())
	}
}

func TestRunMissingFabrics(t *testing.T) {
	err := run(context.Background(), []string{"--fabrics-device", filepath.Join(t.TempDir(), "nvme-fabrics"), "--log-level", "error"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "modprobe nvme-tcp") {
		t.Errorf("got %v, want the modprobe hint", err)
	}
}

// TestRunServes starts the binary's run loop against an empty sysfs tree:
// the CSI socket answers (mode 0660), Probe turns ready once the daemon's
// first reconcile is done, and cancelling the context stops everything.
func TestRunServes(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "csi", "csi.sock")
	os.MkdirAll(filepath.Dir(sock), 0o755)
	os.WriteFile(sock, nil, 0o600) // a stale non-socket must be refused...
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	args := []string{
		"--endpoint", "unix://" + sock,
		"--node-id", "node-1",
		"--state-dir", filepath.Join(dir, "state"),
		"--host-identity-dir", filepath.Join(dir, "etc-nvme"),
		"--sysfs-root", filepath.Join(dir, "sys"),
		"--fabrics-device", "/dev/null",
		"--staging-root", filepath.Join(dir, "plugins"),
		"--metrics-address", "127.0.0.1:0",
		"--skip-netns-check", "--no-events",
		"--log-level", "error",
	}
	if err := run(ctx, args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("stale regular file at the socket path: %v, want a refusal", err)
	}
	os.Remove(sock)

	errc := make(chan error, 1)
	var logs lockedBuffer
	go func() { errc <- run(ctx, append(args, "--log-level", "debug"), &logs, &logs) }()

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	id := csipb.NewIdentityClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := id.Probe(ctx, &csipb.ProbeRequest{})
		if err == nil && resp.GetReady().GetValue() {
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("run stopped early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %v %v", resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	info, err := id.GetPluginInfo(ctx, &csipb.GetPluginInfoRequest{})
	if err != nil || info.GetName() != csi.DefaultDriverName {
		t.Errorf("GetPluginInfo = %v, %v", info, err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != csi.SocketMode {
		t.Errorf("socket mode: %v %v, want %o", fi.Mode(), err, csi.SocketMode)
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
	checkJSONLogs(t, logs.String())
}

// checkJSONLogs: every line is one JSON object without repeated keys (a
// logger given "component" twice writes it twice, which log pipelines
// resolve differently).
func checkJSONLogs(t *testing.T, logs string) {
	t.Helper()
	lines := 0
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		dec := json.NewDecoder(strings.NewReader(line))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Errorf("log line is not a JSON object: %s", line)
			continue
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				t.Errorf("log line %s: %v", line, err)
				break
			}
			key := tok.(string)
			if seen[key] {
				t.Errorf("log line repeats key %q: %s", key, line)
			}
			seen[key] = true
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				t.Errorf("log line %s: %v", line, err)
				break
			}
		}
		lines++
	}
	if lines < 3 {
		t.Errorf("only %d log lines at debug level:\n%s", lines, logs)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
