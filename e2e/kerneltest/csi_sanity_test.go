//go:build linux

package kerneltest

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	"github.com/onsi/gomega"

	"github.com/srvlab/rds-csi/e2e/guestenv"
	"github.com/srvlab/rds-csi/sysfs"
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

// TestCSISanityMount and TestCSISanityBlock run csi-sanity's Controller,
// snapshot, Node and Identity specs against the real binary twice over: as
// the controller (--mode=controller) driving the nvmet-backed RDS emulator
// over SSH, and as the node plugin. Every volume a spec creates is a real
// file-backed disk exported by nvmet, staged over real NVMe/TCP as ext4
// (mount access) or a raw block device (block access), expanded by growing
// its file, snapshotted and cloned by real file copies, and deleted. Ginkgo
// runs one suite per process, so the lab runs each in its own invocation of
// the test binary.
func TestCSISanityMount(t *testing.T) { runSanity(t, "mount") }

// TestCSISanityBlock: see TestCSISanityMount. Its volumes are multipath
// volumes (issue #17): the emulator exports every disk on 127.0.0.1 and
// 127.0.0.2 and the StorageClass names both in nvmeAddresses, so every
// stage connects two paths and every unstage must disconnect both.
func TestCSISanityBlock(t *testing.T) { runSanity(t, "block") }

// sanityUnitOnly are the csi-sanity specs the lab skips: Controller specs
// that stage nothing and only page, count or validate (their many
// RouterOS round trips cost the guest seconds each). They run against the
// same Controller, over SSH to the in-memory emulator, in
// csi/controllersanity; every spec that creates, publishes, stages,
// expands, snapshots, clones or deletes a volume runs here.
var sanityUnitOnly = []string{
	`ListSnapshots \[Controller Server\]`,
	`Controller Service \[Controller Server\] (ListVolumes|GetCapacity|ValidateVolumeCapabilities|ControllerGetCapabilities) `,
}

// sanityNQNBase is the controller's default --nqn-base: every volume's
// subsystem NQN starts with it and a colon.
const sanityNQNBase = "nqn.2000-02.com.mikrotik:"

func runSanity(t *testing.T, access string) {
	tg := target(t)
	multipath := access == "block" && nativeMultipath()
	var extra []string
	if multipath {
		extra = append(extra, secondAddr)
	}
	srv, be, dir := startEmulator(t, tg, extra...)
	ctrl := startControllerDaemon(t, "sanityctl-"+access, srv)
	// Orphan cleanup every second (the grace period stays 5 minutes, so it
	// disconnects nothing): its passes fall while volumes are published.
	_, endpoint := startRDSCSI(t, "sanity-"+access, "--cleanup-interval", "1s")
	cfg := sanityConfig(withControllerService(t, endpoint), ctrl, filepath.Join("/run/sanity-"+access, "paths"))
	cfg.TestVolumeAccessType = access
	cfg.TestVolumeParameters = map[string]string{
		"nvmePort": strconv.Itoa(nextPort()), "ctrlLossTmo": "-1", "reconnectDelay": "1",
	}
	if multipath {
		cfg.TestVolumeParameters["nvmeAddresses"] = "127.0.0.1," + secondAddr
	}
	var (
		passed int
		byTime []types.SpecReport
	)
	ginkgo.ReportAfterSuite("count passed specs", func(r ginkgo.Report) {
		for _, s := range r.SpecReports {
			if s.LeafNodeType == types.NodeTypeIt && s.State == types.SpecStatePassed {
				passed++
				byTime = append(byTime, s)
			}
		}
	})
	sc := sanity.GinkgoTest(&cfg)
	gomega.RegisterFailHandler(ginkgo.Fail)
	suite, reporter := ginkgo.GinkgoConfiguration()
	suite.SkipStrings = append(suite.SkipStrings, sanityUnitOnly...)
	if !ginkgo.RunSpecs(t, "rds-csi lab sanity ("+access+")", suite, reporter) {
		t.Error("csi-sanity failed")
	}
	sc.Finalize()
	t.Logf("csi-sanity (%s access, multipath %v): %d specs passed; the emulator ran %d RouterOS commands", access, multipath, passed, len(srv.Commands()))
	if passed == 0 {
		t.Fatal("csi-sanity passed no spec: the suite did not really run")
	}
	// Where the guest's time goes (the lab's budget is tight).
	slices.SortFunc(byTime, func(a, b types.SpecReport) int { return cmp.Compare(b.RunTime, a.RunTime) })
	perGroup := map[string]time.Duration{}
	for _, s := range byTime {
		if h := s.ContainerHierarchyTexts; len(h) > 0 {
			perGroup[h[0]] += s.RunTime
		}
	}
	t.Logf("time by csi-sanity group: %v", perGroup)
	for _, s := range byTime[:min(8, len(byTime))] {
		t.Logf("slow spec %s: %s", s.RunTime.Round(time.Millisecond), s.FullText())
	}
	// Every spec unstaged and deleted what it made: no controller of one
	// of the controller's subsystems may be left (an orphan cleanup pass
	// while a volume was published once took the publish bind under the
	// staging root for a recovered volume, which kept the controllers past
	// the unstage), and no disk, file or nvmet subsystem.
	cs, err := sysfs.NewFS("/sys").Controllers()
	must(t, err)
	for _, c := range cs {
		if strings.HasPrefix(c.SubsysNQN, sanityNQNBase) {
			t.Errorf("controller %s of %s left after the suite", c.Name, c.SubsysNQN)
		}
	}
	if d := srv.Disks(); len(d) != 0 {
		t.Errorf("disks left on the emulator: %+v", d)
	}
	if f := srv.Files(); len(f) != 0 {
		t.Errorf("files left on the emulator: %v", f)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, emulatorVolumeDir, "*")); len(left) != 0 {
		t.Errorf("real files left in the volume directory: %v", left)
	}
	if e := be.Exported(); len(e) != 0 {
		t.Errorf("nvmet subsystems still exported: %v", e)
	}
}

// rdsCSIBinary is the host path of the rds-csi binary the harness built (the
// daemon runs chrooted into the host root, where that path is valid).
func rdsCSIBinary(t *testing.T) string {
	t.Helper()
	requireLab(t)
	bin := os.Getenv("RDS_CSI_BINARY")
	if bin == "" {
		t.Fatal("RDS_CSI_BINARY not set: the lab harness passes the rds-csi binary's host path")
	}
	return bin
}
