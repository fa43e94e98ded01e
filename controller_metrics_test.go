package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/routeros/rdstest"
)

// TestRunControllerMetrics: --mode=controller serves /metrics on
// --metrics-address with the RDS's commands (a CreateVolume's add and
// re-read), the start-up ping and up=1; /healthz answers.
func TestRunControllerMetrics(t *testing.T) {
	srv, err := rdstest.Start(rdstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	key, known := filepath.Join(dir, "key"), filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(key, srv.ClientKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(known, srv.KnownHosts(), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ctrl.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs lockedBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"--mode=controller", "--endpoint", "unix://" + sock, "--rds-address", srv.Addr(),
			"--rds-user", srv.User(), "--rds-key-file", key, "--rds-known-hosts-file", known,
			"--volume-dir", "/storage-pool/rds-csi", "--metrics-address", "127.0.0.1:0", "--log-level", "info"}, io.Discard, &logs)
	}()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := &csipb.CreateVolumeRequest{Name: "pvc-metrics",
		CapacityRange: &csipb.CapacityRange{RequiredBytes: 1 << 20},
		VolumeCapabilities: []*csipb.VolumeCapability{{
			AccessType: &csipb.VolumeCapability_Block{Block: &csipb.VolumeCapability_BlockVolume{}},
			AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}}}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err = csipb.NewControllerClient(conn).CreateVolume(ctx, req); err == nil {
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("run stopped early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("controller never answered: %v", err)
		}
	}
	// the address the metrics server listens on, from its log line
	var addr string
	for _, line := range strings.Split(logs.String(), "\n") {
		var l struct{ Msg, Address string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving metrics and health endpoints" {
			addr = l.Address
		}
	}
	if addr == "" {
		t.Fatalf("no metrics address logged:\n%s", logs.String())
	}
	get := func(path string) string {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s\n%s", path, resp.Status, b)
		}
		return string(b)
	}
	rds := `rds="` + srv.Addr() + `"`
	// the start-up ping runs beside the gRPC server: wait for it
	body := get("/metrics")
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(body, `verb="ping"} 1`); body = get("/metrics") {
		if time.Now().After(deadline) {
			t.Fatalf("no ping counted:\n%s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{
		`rds_csi_routeros_commands_total{` + rds + `,result="success",verb="disk-add"} 1`,
		`rds_csi_routeros_commands_total{` + rds + `,result="success",verb="ping"} 1`,
		`rds_csi_routeros_up{` + rds + `} 1`,
		`rds_csi_routeros_ssh_connects_total{` + rds + `} 1`,
		`rds_csi_build_info{`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	get("/healthz")
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
