package csi

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// shortTempDir returns a temporary directory with a path short enough for a
// unix socket (t.TempDir's can exceed the 108-byte limit).
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "reg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// serveRegistration serves reg on a fresh socket at path and returns a
// client for it, as kubelet's plugin watcher dials it.
func serveRegistration(t *testing.T, path string, reg *Registration) (registerapi.RegistrationClient, net.Listener) {
	t.Helper()
	l, err := ListenAtomic(path, RegistrationSocketMode)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, reg)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return registerapi.NewRegistrationClient(conn), l
}

func TestRegistrationPlaysKubelet(t *testing.T) {
	dir := shortTempDir(t)
	var logs bytes.Buffer
	reg, err := NewRegistration("rds.csi.srvlab.io", "/var/lib/kubelet/plugins/rds.csi.srvlab.io/csi.sock", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rds.csi.srvlab.io-reg.sock")
	client, _ := serveRegistration(t, path, reg)
	ctx := context.Background()

	info, err := client.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetType() != registerapi.CSIPlugin || info.GetName() != "rds.csi.srvlab.io" ||
		info.GetEndpoint() != "/var/lib/kubelet/plugins/rds.csi.srvlab.io/csi.sock" ||
		!slices.Equal(info.GetSupportedVersions(), []string{"1.0.0"}) {
		t.Errorf("GetInfo = %v", info)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != RegistrationSocketMode || fi.Mode().Type() != fs.ModeSocket {
		t.Errorf("registration socket: %v %v, want a socket with mode %o", fi.Mode(), err, RegistrationSocketMode)
	}
	if _, err := os.Lstat(filepath.Join(dir, ".rds.csi.srvlab.io-reg.sock.new")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the temporary name is still there: %v", err)
	}

	if reg.Registered() {
		t.Error("registered before kubelet said so")
	}
	// kubelet refuses: the health status says so, with kubelet's reason.
	if _, err := client.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: false, Error: "highest supported version is 0.3"}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Status(); err == nil || !strings.Contains(err.Error(), "highest supported version is 0.3") || reg.Registered() {
		t.Errorf("Status after a refusal = %v (registered %v), want kubelet's reason", err, reg.Registered())
	}
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("the refusal was not logged at error level:\n%s", logs.String())
	}
	// kubelet retries and succeeds: healthy again.
	if _, err := client.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Status(); err != nil || !reg.Registered() {
		t.Errorf("Status after a success = %v (registered %v)", err, reg.Registered())
	}
}

func TestNewRegistrationRefuses(t *testing.T) {
	if _, err := NewRegistration("", "/x/csi.sock", nil); err == nil {
		t.Error("empty driver name accepted")
	}
	if _, err := NewRegistration("d", "csi.sock", nil); err == nil {
		t.Error("relative endpoint accepted")
	}
}

// A stale socket of an earlier run is replaced; the listener's Close removes
// the socket it created, and only that one.
func TestListenAtomicStaleSocket(t *testing.T) {
	dir := shortTempDir(t)
	path := filepath.Join(dir, "d-reg.sock")
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close() // the file stays, as after a crash
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("no stale socket to start with: %v", err)
	}
	// A stale temporary socket from a crash between listen and rename.
	tmpStale, err := net.Listen("unix", filepath.Join(dir, ".d-reg.sock.new"))
	if err != nil {
		t.Fatal(err)
	}
	tmpStale.(*net.UnixListener).SetUnlinkOnClose(false)
	tmpStale.Close()

	l, err := ListenAtomic(path, RegistrationSocketMode)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	// The socket at path is the new listener's.
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the new socket: %v", err)
	}
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil || b[0] != 'x' {
		t.Errorf("read from the new socket: %q %v", b, err)
	}
	c.Close()
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}

	// A newer instance took the path over: Close leaves its socket alone.
	l1, err := ListenAtomic(path, RegistrationSocketMode)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := ListenAtomic(path, RegistrationSocketMode)
	if err != nil {
		t.Fatal(err)
	}
	l1.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Errorf("the older listener's Close removed the newer socket: %v", err)
	}
	l2.Close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after the newer listener's Close: %v", err)
	}
}

// Anything that is not a socket, at the path or at the temporary name, is
// refused and left as it was.
func TestListenAtomicRefusesNonSocket(t *testing.T) {
	dir := shortTempDir(t)
	path := filepath.Join(dir, "d-reg.sock")
	for _, tc := range []struct {
		name   string
		victim string
		make   func(string) error
	}{
		{"regular file", path, func(p string) error { return os.WriteFile(p, []byte("keep me"), 0o600) }},
		{"directory", path, func(p string) error { return os.Mkdir(p, 0o700) }},
		{"symlink to a socket", path, func(p string) error { return os.Symlink(filepath.Join(dir, "elsewhere.sock"), p) }},
		{"regular file at the temporary name", filepath.Join(dir, ".d-reg.sock.new"), func(p string) error { return os.WriteFile(p, []byte("keep me"), 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.make(tc.victim); err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(tc.victim)
			before, err := os.Lstat(tc.victim)
			if err != nil {
				t.Fatal(err)
			}
			l, err := ListenAtomic(path, RegistrationSocketMode)
			if !errors.Is(err, ErrNotSocket) {
				if l != nil {
					l.Close()
				}
				t.Fatalf("ListenAtomic = %v, want ErrNotSocket", err)
			}
			after, err := os.Lstat(tc.victim)
			if err != nil || !os.SameFile(before, after) || before.ModTime() != after.ModTime() {
				t.Errorf("%s was changed: %v", tc.victim, err)
			}
			if before.Mode().IsRegular() {
				if b, _ := os.ReadFile(tc.victim); string(b) != "keep me" {
					t.Errorf("content changed: %q", b)
				}
			}
		})
	}
	// Nothing was left behind by the refusals.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("left in the directory: %v", ents)
	}
}

func TestListenAtomicRefusesBadPaths(t *testing.T) {
	dir := shortTempDir(t)
	for _, p := range []string{"reg.sock", filepath.Join(dir, ".hidden.sock"), filepath.Join(dir, "missing", "reg.sock"), dir + "/"} {
		if l, err := ListenAtomic(p, RegistrationSocketMode); err == nil {
			l.Close()
			t.Errorf("ListenAtomic(%q) accepted", p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing directory was created: %v", err)
	}
}
