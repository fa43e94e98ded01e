package main

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/routeros/rdstest"
)

func TestParseFlagsMode(t *testing.T) {
	o, err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), nil)
	if err != nil || o.mode != modeNode {
		t.Fatalf("default mode %q (%v), want node: today's DaemonSet passes no --mode", o.mode, err)
	}
	full := []string{"--mode=controller", "--rds-address=10.0.0.1", "--rds-key-file=/k", "--rds-known-hosts-file=/kh", "--volume-dir=/storage-pool/rds-csi"}
	if _, err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), full); err != nil {
		t.Errorf("controller flags refused: %v", err)
	}
	for i, want := range []string{"", "--rds-address", "--rds-key-file", "--rds-known-hosts-file", "--volume-dir"} {
		if i == 0 {
			continue
		}
		args := append(append([]string{}, full[:i]...), full[i+1:]...)
		if _, err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), args); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("without %s: %v, want an error naming it", want, err)
		}
	}
	for _, bad := range [][]string{{"--mode=both"}, append(full[:4:4], "--volume-dir=relative/dir"),
		append([]string{"--mode=controller", "--rds-address=10.0.0.1;/system reboot"}, full[2:]...)} {
		if _, err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	o, _ = parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), full)
	if o.metricsAddress != controllerMetricsAddress {
		t.Errorf("controller metrics address %q, want %q (not the node's %q)", o.metricsAddress, controllerMetricsAddress, ":9809")
	}
	if o2, _ := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), append(full[:len(full):len(full)], "--metrics-address=")); o2.metricsAddress != "" {
		t.Errorf("--metrics-address= with --mode=controller: %q, want it off", o2.metricsAddress)
	}
	if got := o.ctrl.sshAddress(); got != "10.0.0.1:22" {
		t.Errorf("ssh address %q, want port 22 added", got)
	}
	o, err = parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), append(full[:len(full):len(full)], "--list-rds= 10.0.0.2, [fd00::3]:2222,"))
	if err != nil || !slices.Equal(o.ctrl.listRDSAddresses(), []string{"10.0.0.2", "[fd00::3]:2222"}) {
		t.Errorf("--list-rds: %v (%v)", o.ctrl.listRDSAddresses(), err)
	}
	if _, err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), append(full[:len(full):len(full)], "--list-rds=10.0.0.2,x;/system reboot")); err == nil || !strings.Contains(err.Error(), "--list-rds") {
		t.Errorf("a bad --list-rds address: %v, want an error naming the flag", err)
	}
}

// TestRunController: --mode=controller serves Identity (advertising the
// controller service) and Controller on the endpoint, creates a volume on
// an emulated RDS, and stops on cancel.
func TestRunController(t *testing.T) {
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
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"--mode=controller", "--endpoint", "unix://" + sock, "--rds-address", srv.Addr(),
			"--rds-user", srv.User(), "--rds-key-file", key, "--rds-known-hosts-file", known,
			"--volume-dir", "/storage-pool/rds-csi", "--log-level", "error", "--metrics-address", ""}, io.Discard, io.Discard)
	}()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	id := csipb.NewIdentityClient(conn)
	var caps *csipb.GetPluginCapabilitiesResponse
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if caps, err = id.GetPluginCapabilities(ctx, &csipb.GetPluginCapabilitiesRequest{}); err == nil {
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
	if caps.GetCapabilities()[0].GetService().GetType() != csipb.PluginCapability_Service_CONTROLLER_SERVICE {
		t.Errorf("capabilities %v, want CONTROLLER_SERVICE", caps)
	}
	vol, err := csipb.NewControllerClient(conn).CreateVolume(ctx, &csipb.CreateVolumeRequest{Name: "pvc-main",
		CapacityRange: &csipb.CapacityRange{RequiredBytes: 1 << 20},
		VolumeCapabilities: []*csipb.VolumeCapability{{
			AccessType: &csipb.VolumeCapability_Block{Block: &csipb.VolumeCapability_BlockVolume{}},
			AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := vol.GetVolume().GetVolumeContext()["nvmeAddress"]; got != "127.0.0.1" {
		t.Errorf("nvmeAddress %q, want the RDS host 127.0.0.1", got)
	}
	if d := srv.Disks(); len(d) != 1 || d[0].Slot+"@"+srv.Addr() != vol.GetVolume().GetVolumeId() {
		t.Errorf("disks on the RDS %v, want the volume %s", d, vol.GetVolume().GetVolumeId())
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
}
