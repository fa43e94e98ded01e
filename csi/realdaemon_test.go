package csi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// kernelConn is a daemon.Connector that plays the kernel on a synthetic
// sysfs tree: a connect lays out a live controller, its subsystem and the
// subsystem's namespaces 1 and 2 (multipath on), so the namespace's block
// device appears as it would after a real connect; a connect that matches
// an existing controller is adopted (EALREADY); a disconnect removes the
// controller the way the kernel does.
type kernelConn struct {
	root string

	mu          sync.Mutex
	connects    int
	disconnects []string
}

var _ daemon.Connector = (*kernelConn)(nil)

func (k *kernelConn) Connect(ctx context.Context, o fabrics.Options) (fabrics.Controller, error) {
	if err := ctx.Err(); err != nil {
		return fabrics.Controller{}, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.connects++
	ctrls, err := sysfs.NewFS(k.root).Controllers()
	if err != nil {
		return fabrics.Controller{}, err
	}
	for _, c := range ctrls {
		if c.SubsysNQN == o.NQN && c.Address.Traddr == o.Traddr &&
			c.Address.Trsvcid == strconv.Itoa(o.Trsvcid) && c.HostNQN == o.HostNQN {
			return fabrics.Controller{Name: c.Name, Instance: c.Instance, CntlID: c.CntlID, Adopted: true}, nil
		}
	}
	n := 0
	for exists(filepath.Join(k.root, "class/nvme", "nvme"+strconv.Itoa(n))) ||
		exists(filepath.Join(k.root, "class/nvme-subsystem", "nvme-subsys"+strconv.Itoa(n))) {
		n++
	}
	sub := sysfstest.Subsystem{
		Instance: n, NQN: o.NQN,
		Controllers: []sysfstest.Controller{{
			Instance: n,
			Address:  fmt.Sprintf("traddr=%s,trsvcid=%d,src_addr=127.0.0.1", o.Traddr, o.Trsvcid),
			Attrs:    map[string]string{"hostnqn": o.HostNQN, "hostid": o.HostID},
		}},
		Namespaces: []sysfstest.Namespace{{NSID: 1}, {NSID: 2}},
	}
	if err := sysfstest.Build(k.root, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{sub}}); err != nil {
		return fabrics.Controller{}, err
	}
	return fabrics.Controller{Name: "nvme" + strconv.Itoa(n), Instance: n}, nil
}

func (k *kernelConn) Disconnect(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := sysfstest.RemoveController(k.root, name); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("disconnect %s: %w: %w", name, fabrics.ErrControllerGone, err)
		}
		return err
	}
	k.disconnects = append(k.disconnects, name)
	return nil
}

func (k *kernelConn) UpdateTimeouts(name string, t fabrics.Timeouts) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for attr, v := range map[string]fabrics.OptInt{
		"reconnect_delay": t.ReconnectDelay, "ctrl_loss_tmo": t.CtrlLossTmo, "fast_io_fail_tmo": t.FastIOFailTmo,
	} {
		n, ok := v.Get()
		if !ok {
			continue
		}
		text := strconv.Itoa(n)
		if n < 0 && attr != "reconnect_delay" {
			text = "off"
		}
		if err := sysfstest.SetAttr(k.root, name, attr, text); err != nil {
			return fmt.Errorf("%w: %w", fabrics.ErrControllerGone, err)
		}
	}
	return nil
}

// connected lists the controllers in the tree.
func (k *kernelConn) connected(t testing.TB) []string {
	t.Helper()
	ctrls, err := sysfs.NewFS(k.root).Controllers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range ctrls {
		out = append(out, c.Name)
	}
	return out
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// realEnv is a Node over the real daemon (daemon.New), with the kernel
// played by kernelConn on a synthetic sysfs tree and the mount layer faked
// as in testEnv.
type realEnv struct {
	*testEnv
	d         *daemon.Daemon
	conn      *kernelConn
	root      string // the sysfs tree
	mountInfo string // the daemon's mount table
	staging   string // the daemon's StagingRoot
}

func newRealEnv(t testing.TB) *realEnv {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "sys")
	if err := sysfstest.Build(root, sysfstest.Spec{Multipath: true}); err != nil {
		t.Fatal(err)
	}
	r := &realEnv{
		conn: &kernelConn{root: root}, root: root,
		mountInfo: filepath.Join(dir, "mountinfo"), staging: filepath.Join(dir, "plugins"),
	}
	r.writeMountInfo(t)
	d, err := daemon.New(daemon.Config{
		FS:              sysfs.NewFS(root),
		Connector:       r.conn,
		StateDir:        filepath.Join(dir, "state"),
		MountInfo:       r.mountInfo,
		StagingRoot:     r.staging,
		PollInterval:    time.Hour, // nothing changes behind the daemon's back
		CleanupInterval: time.Hour,
		DeviceTimeout:   10 * time.Second,
		NoEvents:        true,
		NoKmsg:          true,
		Logger:          discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		d.Close()
	})
	r.d = d
	r.testEnv = newTestEnvWith(t, d)
	return r
}

// writeMountInfo writes the daemon's mount table: the usual root entries
// plus lines.
func (r *realEnv) writeMountInfo(t testing.TB, lines ...string) {
	t.Helper()
	base := []string{
		"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
		"23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw,size=8000k",
	}
	if err := os.WriteFile(r.mountInfo, []byte(strings.Join(append(base, lines...), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mountLine is a mount table line for disk device ("/dev/nvme0n1") mounted
// at path, with the disk's device number from the tree.
func (r *realEnv) mountLine(t testing.TB, id int, device, path string) string {
	t.Helper()
	dev, err := os.ReadFile(filepath.Join(r.root, "block", filepath.Base(device), "dev"))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d 22 %s / %s rw,relatime shared:%d - ext4 %s rw", id, strings.TrimSpace(string(dev)), path, id, device)
}
