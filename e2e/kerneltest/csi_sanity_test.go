//go:build linux

package kerneltest

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"

	"github.com/srvlab/rds-csi/e2e/guestenv"
)

// startRDSCSI runs the real rds-csi binary as the node daemon (chrooted into
// the host root, so mkfs and mount are the host's real tools) and returns its
// endpoint as the guest sees it.
func startRDSCSI(t *testing.T, name string, extra ...string) (*guestenv.Daemon, string) {
	t.Helper()
	bin := rdsCSIBinary(t)
	sock := "/run/" + name + "/csi.sock"
	args := append([]string{
		"--endpoint", "unix://" + sock,
		"--node-id", "lab-node",
		"--state-dir", "/run/" + name + "/state",
		"--staging-root", "/run/" + name,
		"--metrics-address", "127.0.0.1:0",
		"--log-format", "text",
		"--log-level", "debug",
	}, extra...)
	// A socket left by a killed predecessor must not look like readiness.
	_ = os.Remove(guestenv.Path(sock))
	d, err := guestenv.Start(bin, args...)
	must(t, err)
	t.Cleanup(func() {
		if err := d.Stop(syscall.SIGTERM, 15*time.Second); err != nil {
			t.Errorf("rds-csi stop: %v", err)
		}
		if t.Failed() {
			t.Logf("rds-csi log:\n%s", d.Logs())
		}
	})
	eventually(t, 20*time.Second, "rds-csi socket", func() (bool, string) {
		if d.Exited() {
			t.Fatalf("rds-csi exited:\n%s", d.Logs())
		}
		return guestenv.Exists(sock), sock
	})
	return d, "unix://" + guestenv.Path(sock)
}

// sanityConfig points csi-sanity at the daemon. Paths are the daemon's view
// (inside the chroot); csi-sanity's own file operations go through the guest's
// view of the same directories.
func sanityConfig(endpoint, controller, root string) sanity.TestConfig {
	cfg := sanity.NewTestConfig()
	cfg.Address = endpoint
	cfg.ControllerAddress = controller
	cfg.TargetPath = root + "/target"
	cfg.StagingPath = root + "/staging"
	cfg.TestVolumeSize = 64 << 20
	cfg.TestVolumeExpandSize = 96 << 20
	cfg.IdempotentCount = 2
	mk := func(p string) (string, error) { return p, os.MkdirAll(guestenv.Path(p), 0o750) }
	rm := func(p string) error { return os.RemoveAll(guestenv.Path(p)) }
	cfg.CreateTargetDir, cfg.CreateStagingDir = mk, mk
	cfg.RemoveTargetPath, cfg.RemoveStagingPath = rm, rm
	cfg.CheckPath = func(p string) (sanity.PathKind, error) {
		fi, err := os.Stat(guestenv.Path(p))
		switch {
		case os.IsNotExist(err):
			return sanity.PathIsNotFound, nil
		case err != nil:
			return sanity.PathIsOther, err
		case fi.IsDir():
			return sanity.PathIsDir, nil
		case fi.Mode().IsRegular():
			return sanity.PathIsFile, nil
		}
		return sanity.PathIsOther, nil
	}
	return cfg
}

// TestCSISanityMount and TestCSISanityBlock run csi-sanity's node specs
// against the real binary, the real nvmet target and real ext4 mounts (mount
// access) or raw block devices (block access). Ginkgo runs one suite per
// process, so the lab runs each in its own invocation of the test binary.
func TestCSISanityMount(t *testing.T) { runSanity(t, "mount") }

// TestCSISanityBlock: see TestCSISanityMount.
func TestCSISanityBlock(t *testing.T) { runSanity(t, "block") }

func runSanity(t *testing.T, access string) {
	tg := target(t)
	ctrl := startLabController(t, tg)
	_, endpoint := startRDSCSI(t, "sanity-"+access)
	cfg := sanityConfig(withControllerService(t, endpoint), ctrl, filepath.Join("/run/sanity-"+access, "paths"))
	cfg.TestVolumeAccessType = access
	var passed int
	ginkgo.ReportAfterSuite("count passed specs", func(r ginkgo.Report) {
		for _, s := range r.SpecReports {
			if s.LeafNodeType == types.NodeTypeIt && s.State == types.SpecStatePassed {
				passed++
			}
		}
	})
	sanity.Test(t, cfg)
	t.Logf("csi-sanity (%s access): %d specs passed", access, passed)
	if passed == 0 {
		t.Fatal("csi-sanity passed no spec: the suite did not really run")
	}
}
