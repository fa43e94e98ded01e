package csi

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"

	"github.com/srvlab/rds-csi/daemon"
)

// stageClock collects where one NodeStageVolume spent its time: the
// daemon's attach (connect writes, backoff, waiting for the disk), the
// tools mount-utils runs (blkid, mkfs, fsck) and the mount itself. The rest
// is this driver's own overhead. The stage's log line carries the split.
type stageClock struct {
	start  time.Time
	attach daemon.AttachTiming

	mu     sync.Mutex
	phases map[string]time.Duration // probe, format, check, mount, exec
}

func newStageClock() *stageClock {
	return &stageClock{start: time.Now(), phases: map[string]time.Duration{}}
}

func (c *stageClock) since(phase string, start time.Time) {
	d := time.Since(start)
	c.mu.Lock()
	c.phases[phase] += d
	c.mu.Unlock()
}

// attr is the log attribute: every phase in nanoseconds (JSON) or as a
// duration (text), and overhead = total - the phases.
func (c *stageClock) attr() slog.Attr {
	total := time.Since(c.start)
	c.mu.Lock()
	defer c.mu.Unlock()
	known := c.attach.ConnectWrite + c.attach.Backoff + c.attach.Device
	attrs := []any{
		slog.Duration("total", total),
		slog.Duration("connect_write", c.attach.ConnectWrite),
		slog.Int("connect_attempts", c.attach.Attempts),
		slog.Duration("backoff", c.attach.Backoff),
		slog.Duration("device", c.attach.Device),
	}
	for _, p := range []string{"probe", "format", "check", "mount", "exec"} {
		attrs = append(attrs, slog.Duration(p, c.phases[p]))
		known += c.phases[p]
	}
	// Parts of the overhead: what the daemon spent reading sysfs and
	// writing its state file, and recording the staged volume (MarkStaged,
	// which writes the state file again).
	attrs = append(attrs, slog.Duration("overhead", total-known),
		slog.Duration("overhead_sysfs", c.attach.SysfsRead),
		slog.Duration("overhead_state_file", c.attach.StateFile),
		slog.Duration("overhead_record", c.phases["record"]))
	return slog.Group("timing", attrs...)
}

// phaseOf names the phase a tool mount-utils runs belongs to.
func phaseOf(cmd string) string {
	switch base := filepath.Base(cmd); {
	case base == "blkid":
		return "probe"
	case strings.HasPrefix(base, "mkfs"):
		return "format"
	case strings.HasPrefix(base, "fsck"), base == "e2fsck", base == "xfs_repair":
		return "check"
	}
	return "exec"
}

// timedMounter is a SafeFormatAndMount whose commands and mounts are
// timed into clk.
func timedMounter(m mount.Interface, e utilexec.Interface, clk *stageClock) *mount.SafeFormatAndMount {
	return mount.NewSafeFormatAndMount(mountTimer{m, clk}, execTimer{e, clk})
}

type mountTimer struct {
	mount.Interface
	clk *stageClock
}

func (m mountTimer) Mount(source, target, fstype string, options []string) error {
	defer m.clk.since("mount", time.Now())
	return m.Interface.Mount(source, target, fstype, options)
}

func (m mountTimer) MountSensitive(source, target, fstype string, options, sensitive []string) error {
	defer m.clk.since("mount", time.Now())
	return m.Interface.MountSensitive(source, target, fstype, options, sensitive)
}

func (m mountTimer) MountSensitiveWithoutSystemd(source, target, fstype string, options, sensitive []string) error {
	defer m.clk.since("mount", time.Now())
	return m.Interface.MountSensitiveWithoutSystemd(source, target, fstype, options, sensitive)
}

func (m mountTimer) MountSensitiveWithoutSystemdWithMountFlags(source, target, fstype string, options, sensitive, flags []string) error {
	defer m.clk.since("mount", time.Now())
	return m.Interface.MountSensitiveWithoutSystemdWithMountFlags(source, target, fstype, options, sensitive, flags)
}

type execTimer struct {
	utilexec.Interface
	clk *stageClock
}

func (e execTimer) Command(cmd string, args ...string) utilexec.Cmd {
	return cmdTimer{e.Interface.Command(cmd, args...), e.clk, phaseOf(cmd)}
}

func (e execTimer) CommandContext(ctx context.Context, cmd string, args ...string) utilexec.Cmd {
	return cmdTimer{e.Interface.CommandContext(ctx, cmd, args...), e.clk, phaseOf(cmd)}
}

type cmdTimer struct {
	utilexec.Cmd
	clk   *stageClock
	phase string
}

func (c cmdTimer) Run() error {
	defer c.clk.since(c.phase, time.Now())
	return c.Cmd.Run()
}

func (c cmdTimer) CombinedOutput() ([]byte, error) {
	defer c.clk.since(c.phase, time.Now())
	return c.Cmd.CombinedOutput()
}

func (c cmdTimer) Output() ([]byte, error) {
	defer c.clk.since(c.phase, time.Now())
	return c.Cmd.Output()
}
