//go:build linux

// Command demo-guest runs inside the QEMU lab guest for cmd/demo: it starts
// the RDS emulator (package rdstest over SSH on loopback, backed by real
// files exported by the kernel's nvmet target), the rds-csi binary as the
// controller against it and as the node daemon (both chrooted into the
// host's root, so mkfs.ext4, blkid and mount are the host's real tools),
// provisions a volume through the controller's CSI socket and drives the
// node's socket through an outage. Lines it prints start with "| ".
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/e2e/guestenv"
	"github.com/srvlab/rds-csi/e2e/nvmet"
	"github.com/srvlab/rds-csi/routeros/rdstest"
)

const (
	pvcName  = "pvc-3f2a9c1e-demo"
	port     = 4420
	metrics  = "127.0.0.1:9809"
	volDir   = "/storage-pool/rds-csi"
	volBytes = 256 << 20
	// Paths as the daemons see them (inside the chroot).
	socket     = "/run/csi/csi.sock"
	ctrlDir    = "/run/csi-controller"
	ctrlSocket = ctrlDir + "/csi.sock"
	staging    = "/run/kubelet/plugins/kubernetes.io/csi/rds.csi.srvlab.io/demo/globalmount"
	publish    = "/run/kubelet/pods/demo/volumes/kubernetes.io~csi/pvc-3f2a9c1e-demo/mount"
)

// volumeID is the id CreateVolume returned.
var volumeID string

func say(format string, a ...any) { fmt.Printf("| "+format+"\n", a...) }

func main() {
	binary := flag.String("rds-csi", "", "the rds-csi binary's path on the host (the daemon runs chrooted into /host)")
	flag.Parse()
	if err := run(*binary); err != nil {
		say("FAILED: %v", err)
		os.Exit(1)
	}
}

type summary struct {
	create, stage, detect time.Duration
	recover               time.Duration
	reason, message       string
	reconnectsBefore      string
	reconnectsAfter       string
	checksum              string
}

func run(binary string) error {
	tg, err := nvmet.Open()
	if err != nil {
		return err
	}
	defer tg.Close()
	rdsDir, err := os.MkdirTemp("", "rds-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(rdsDir)
	be := tg.FileBackend(rdsDir, "127.0.0.1")
	defer be.Close()
	rds, err := rdstest.Start(rdstest.Options{Backend: be})
	if err != nil {
		return err
	}
	defer rds.Close()
	say("RDS emulator: RouterOS over SSH on %s; disks are files under %s exported by nvmet on 127.0.0.1", rds.Addr(), rdsDir)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ctrlDaemon, err := startController(binary, rds)
	if err != nil {
		return err
	}
	defer stopDaemon(ctrlDaemon, "rds-csi controller")
	cconn, err := grpc.NewClient("unix://"+guestenv.Root+ctrlSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cconn.Close()
	if err := waitReady(ctx, csipb.NewIdentityClient(cconn)); err != nil {
		return err
	}
	ctrl := csipb.NewControllerClient(cconn)
	capability := &csipb.VolumeCapability{
		AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	params := map[string]string{"nvmePort": fmt.Sprint(port), "ctrlLossTmo": "-1", "reconnectDelay": "1"}
	say("CreateVolume %s, 256 MiB, StorageClass parameters %v", pvcName, params)
	t0 := time.Now()
	created, err := ctrl.CreateVolume(ctx, &csipb.CreateVolumeRequest{Name: pvcName, Parameters: params,
		CapacityRange: &csipb.CapacityRange{RequiredBytes: volBytes}, VolumeCapabilities: []*csipb.VolumeCapability{capability}})
	if err != nil {
		return fmt.Errorf("CreateVolume: %w", err)
	}
	createTook := time.Since(t0)
	vol := created.GetVolume()
	volumeID = vol.GetVolumeId()
	nqn := vol.GetVolumeContext()["nqn"]
	say("CreateVolume: volume %s (%d bytes) in %s; the controller ran on the RDS:", volumeID, vol.GetCapacityBytes(), createTook.Round(time.Millisecond))
	for _, c := range rds.Commands() {
		say("    %s", c)
	}
	say("  VolumeContext for the node: %v", vol.GetVolumeContext())
	say("  nvmet now exports %v", be.Exported())

	daemon, err := startDaemon(binary)
	if err != nil {
		return err
	}
	defer stopDaemon(daemon, "rds-csi")

	conn, err := grpc.NewClient("unix://"+guestenv.Root+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ident, node := csipb.NewIdentityClient(conn), csipb.NewNodeClient(conn)
	if err := waitReady(ctx, ident); err != nil {
		return err
	}
	info, err := ident.GetPluginInfo(ctx, &csipb.GetPluginInfoRequest{})
	if err != nil {
		return err
	}
	say("rds-csi %s (%s) is ready on %s", info.GetVendorVersion(), info.GetName(), socket)

	sum := summary{create: createTook}
	t0 = time.Now()
	_, err = node.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{
		VolumeId: volumeID, StagingTargetPath: staging, VolumeCapability: capability,
		VolumeContext: vol.GetVolumeContext(),
	})
	if err != nil {
		return fmt.Errorf("NodeStageVolume: %w", err)
	}
	sum.stage = time.Since(t0)
	say("NodeStageVolume with that VolumeContext: connected, formatted ext4 and mounted in %s", sum.stage.Round(time.Millisecond))
	if _, err := node.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{
		VolumeId: volumeID, StagingTargetPath: staging, TargetPath: publish, VolumeCapability: capability,
	}); err != nil {
		return fmt.Errorf("NodePublishVolume: %w", err)
	}
	say("NodePublishVolume: bind-mounted at %s", publish)

	data := make([]byte, 8<<20)
	if _, err := rand.Read(data); err != nil {
		return err
	}
	sum.checksum = fmt.Sprintf("%x", sha256.Sum256(data))
	file := guestenv.Path(publish + "/data.bin")
	if err := writeSynced(file, data); err != nil {
		return err
	}
	say("wrote 8 MiB to the volume and fsynced it (sha256 %s...)", sum.checksum[:16])
	sum.reconnectsBefore = metric("rds_csi_controller_reconnects_total", nqn)
	say("metrics before the outage: rds_csi_controller_state %s, rds_csi_controller_reconnects_total %s", controllerState(), sum.reconnectsBefore)

	say("FAULT: unlinking the target port (the listener closes)")
	if err := be.Unlink(port, nqn); err != nil {
		return err
	}
	t1 := time.Now()
	h, err := waitHealth(ctx, node, csipb.VolumeHealthErrorType_INACCESSIBLE)
	if err != nil {
		return err
	}
	sum.detect = time.Since(t1)
	sum.reason, sum.message = h.GetReason(), h.GetMessage()
	say("NodeGetVolumeHealth: INACCESSIBLE after %s: %s: %s", sum.detect.Round(time.Millisecond), sum.reason, sum.message)
	say("metrics during the outage: rds_csi_controller_state %s, rds_csi_controller_not_live_seconds %s",
		controllerState(), metric("rds_csi_controller_not_live_seconds", nqn))
	time.Sleep(3 * time.Second) // let a few reconnect attempts fail
	h, _ = waitHealth(ctx, node, csipb.VolumeHealthErrorType_INACCESSIBLE)
	say("NodeGetVolumeHealth 3s later: %s: %s", h.GetReason(), h.GetMessage())

	say("RECOVER: relinking the target port")
	if err := be.Relink(port, nqn); err != nil {
		return err
	}
	t2 := time.Now()
	if _, err := waitHealth(ctx, node, csipb.VolumeHealthErrorType_UNKNOWN_VOLUME_HEALTH_TYPE); err != nil {
		return err
	}
	sum.recover = time.Since(t2)
	say("NodeGetVolumeHealth: healthy again after %s", sum.recover.Round(time.Millisecond))
	sum.reconnectsAfter = metric("rds_csi_controller_reconnects_total", nqn)
	say("metrics after recovery: rds_csi_controller_state %s, rds_csi_controller_reconnects_total %s, rds_csi_controller_outage_duration_seconds_count %s",
		controllerState(), sum.reconnectsAfter, metric("rds_csi_controller_outage_duration_seconds_count", ""))

	got, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if fmt.Sprintf("%x", sha256.Sum256(got)) != sum.checksum {
		return errors.New("data read back after the outage differs from what was written")
	}
	say("read the 8 MiB back: checksum matches")
	if sum.reconnectsBefore != "0" || sum.reconnectsAfter != "1" {
		return fmt.Errorf("rds_csi_controller_reconnects_total went from %q to %q, want 0 to 1", sum.reconnectsBefore, sum.reconnectsAfter)
	}

	if _, err := node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: volumeID, TargetPath: publish}); err != nil {
		return fmt.Errorf("NodeUnpublishVolume: %w", err)
	}
	if _, err := node.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: volumeID, StagingTargetPath: staging}); err != nil {
		return fmt.Errorf("NodeUnstageVolume: %w", err)
	}
	left, _ := filepath.Glob("/sys/class/nvme/nvme*")
	say("unpublished and unstaged; controllers left: %d", len(left))
	if len(left) != 0 {
		return fmt.Errorf("controllers left after unstage: %v", left)
	}
	if _, err := ctrl.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: volumeID}); err != nil {
		return fmt.Errorf("DeleteVolume: %w", err)
	}
	subs, err := tg.Subsystems()
	if err != nil {
		return err
	}
	files, _ := filepath.Glob(filepath.Join(rdsDir, volDir, "*"))
	say("DeleteVolume: RDS disks left %d, RDS files left %d, files on disk %d, nvmet subsystems %d",
		len(rds.Disks()), len(rds.Files()), len(files), len(subs))
	if len(rds.Disks())+len(rds.Files())+len(files)+len(subs) != 0 {
		return fmt.Errorf("left after DeleteVolume: disks %v files %v %v subsystems %v", rds.Disks(), rds.Files(), files, subs)
	}

	say("")
	say("SUMMARY (kernel %s)", kernelRelease())
	say("  CreateVolume through the controller (SSH to the emulator, file + nvmet export): %s", sum.create.Round(time.Millisecond))
	say("  stage (connect + mkfs.ext4 + mount): %s", sum.stage.Round(time.Millisecond))
	say("  port unlink -> volume health INACCESSIBLE: %s (%s)", sum.detect.Round(time.Millisecond), sum.reason)
	say("  port relink -> healthy: %s", sum.recover.Round(time.Millisecond))
	say("  rds_csi_controller_reconnects_total: %s before the outage, %s after it", sum.reconnectsBefore, sum.reconnectsAfter)
	say("  8 MiB written before the outage read back intact after it: yes")
	return nil
}

func startDaemon(binary string) (*guestenv.Daemon, error) {
	d, err := guestenv.Start(binary,
		"--endpoint", "unix://"+socket,
		"--node-id", "lab-node",
		"--state-dir", "/run/rds-csi",
		"--staging-root", "/run/kubelet",
		"--metrics-address", metrics,
		"--log-format", "text",
	)
	if err != nil {
		return nil, err
	}
	say("started rds-csi as the node daemon (pid %d)", d.Pid())
	return d, nil
}

// startController runs the binary as the controller against the emulator,
// with the emulator's client key and host key in files on the guest's /run.
func startController(binary string, rds *rdstest.Server) (*guestenv.Daemon, error) {
	if err := guestenv.Prepare(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(guestenv.Path(ctrlDir), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(guestenv.Path(ctrlDir+"/key"), rds.ClientKeyPEM(), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(guestenv.Path(ctrlDir+"/known_hosts"), rds.KnownHosts(), 0o600); err != nil {
		return nil, err
	}
	d, err := guestenv.Start(binary, "--mode", "controller", "--endpoint", "unix://"+ctrlSocket,
		"--rds-address", rds.Addr(), "--rds-user", rds.User(), "--rds-key-file", ctrlDir+"/key",
		"--rds-known-hosts-file", ctrlDir+"/known_hosts", "--volume-dir", volDir, "--log-format", "text")
	if err != nil {
		return nil, err
	}
	say("started rds-csi as the controller (pid %d), RDS %s, known_hosts checked", d.Pid(), rds.Addr())
	return d, nil
}

func stopDaemon(d *guestenv.Daemon, name string) {
	if err := d.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
		say("%s did not stop cleanly: %v", name, err)
	}
	// The daemon's own log, for the record (the host shows it with -v).
	for _, l := range strings.Split(strings.TrimSpace(d.Logs()), "\n") {
		fmt.Println(name + ": " + l)
	}
}

func waitReady(ctx context.Context, ident csipb.IdentityClient) error {
	for {
		resp, err := ident.Probe(ctx, &csipb.ProbeRequest{})
		if err == nil && resp.GetReady().GetValue() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rds-csi never became ready: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitHealth asks NodeGetVolumeHealth until the volume reports want
// (UNKNOWN_VOLUME_HEALTH_TYPE meaning: no abnormal entry), as kubelet's
// periodic health check would, and returns the matching entry.
func waitHealth(ctx context.Context, node csipb.NodeClient, want csipb.VolumeHealthErrorType) (*csipb.VolumeHealth_VolumeHealthEntry, error) {
	for {
		resp, err := node.NodeGetVolumeHealth(ctx, &csipb.NodeGetVolumeHealthRequest{
			VolumeId: volumeID, VolumePublishPath: publish, StagingTargetPath: staging,
		})
		if err != nil {
			return nil, fmt.Errorf("NodeGetVolumeHealth: %w", err)
		}
		entries := resp.GetVolumeHealth().GetHealthStatuses()
		if want == csipb.VolumeHealthErrorType_UNKNOWN_VOLUME_HEALTH_TYPE && len(entries) == 0 {
			return nil, nil
		}
		for _, e := range entries {
			if e.GetStatus() == want {
				return e, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("volume health never became %v (last: %v)", want, entries)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func writeSynced(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// metric returns the value of the first series of a metric family whose
// labels contain match ("" when there is none), scraped from /metrics.
func metric(family, match string) string {
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		return "scrape failed: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if (strings.HasPrefix(l, family+"{") || strings.HasPrefix(l, family+" ")) && strings.Contains(l, match) {
			return l[strings.LastIndexByte(l, ' ')+1:]
		}
	}
	return ""
}

// controllerState names the state whose state-set series is 1.
func controllerState() string {
	for _, st := range []string{"live", "connecting", "resetting", "deleting", "new", "dead", "unknown"} {
		if metric("rds_csi_controller_state", `state="`+st+`"`) == "1" {
			return st
		}
	}
	return "?"
}

func kernelRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "?"
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}
