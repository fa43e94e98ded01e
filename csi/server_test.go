package csi

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in, network, addr string
		ok                bool
	}{
		{"unix:///csi/csi.sock", "unix", "/csi/csi.sock", true},
		{"unix:/csi/csi.sock", "unix", "/csi/csi.sock", true},
		{"/csi/csi.sock", "unix", "/csi/csi.sock", true},
		{"tcp://127.0.0.1:10000", "tcp", "127.0.0.1:10000", true},
		{"unix://csi.sock", "", "", false},
		{"http://x", "", "", false},
		{"tcp://", "", "", false},
	}
	for _, tc := range tests {
		n, a, err := ParseEndpoint(tc.in)
		if (err == nil) != tc.ok || n != tc.network || a != tc.addr {
			t.Errorf("ParseEndpoint(%q) = %q, %q, %v; want %q, %q, ok %t", tc.in, n, a, err, tc.network, tc.addr, tc.ok)
		}
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "csi.sock")
	l1, err := Listen("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	// Simulate a crash: the socket file stays behind.
	l1.(*net.UnixListener).SetUnlinkOnClose(false)
	l1.Close()
	l2, err := Listen("unix://" + path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer l2.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != SocketMode {
		t.Errorf("socket %v %v, want a socket with mode %o", fi.Mode(), err, SocketMode)
	}

	file := filepath.Join(t.TempDir(), "not-a-socket")
	os.WriteFile(file, []byte("keep me"), 0o600)
	if _, err := Listen("unix://" + file); err == nil {
		t.Error("a regular file was replaced by the socket")
	}
}

func TestLoggingInterceptorStripsSecrets(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	req := &csi.NodeStageVolumeRequest{
		VolumeId:      "vol-1",
		Secrets:       map[string]string{SecretDHCHAP: "DHHC-1:00:topsecret:"},
		VolumeContext: validContext(),
	}
	_, err := LoggingInterceptor(log)(context.Background(), req, &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Node/NodeStageVolume"},
		func(context.Context, any) (any, error) { return &csi.NodeStageVolumeResponse{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "topsecret") {
		t.Errorf("log leaks the secret: %s", out)
	}
	if !strings.Contains(out, "vol-1") || !strings.Contains(out, "NodeStageVolume") {
		t.Errorf("log lacks the call: %s", out)
	}
}

func TestIdentity(t *testing.T) {
	ready := false
	id := NewIdentity("", "v1.2.3", func() bool { return ready })
	info, err := id.GetPluginInfo(context.Background(), &csi.GetPluginInfoRequest{})
	if err != nil || info.GetName() != DefaultDriverName || info.GetVendorVersion() != "v1.2.3" {
		t.Errorf("GetPluginInfo = %v, %v", info, err)
	}
	caps, err := id.GetPluginCapabilities(context.Background(), &csi.GetPluginCapabilitiesRequest{})
	if err != nil || len(caps.GetCapabilities()) != 0 {
		t.Errorf("GetPluginCapabilities = %v, %v; want none (node-only plugin)", caps, err)
	}
	for _, r := range []bool{false, true} {
		ready = r
		p, err := id.Probe(context.Background(), &csi.ProbeRequest{})
		if err != nil || p.GetReady().GetValue() != r {
			t.Errorf("Probe = %v, %v; want ready %t", p, err, r)
		}
	}
}
