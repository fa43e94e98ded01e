//go:build linux

// Package guestenv prepares the QEMU lab guest for running the rds-csi binary
// the way a node runs it: chrooted into the host's root filesystem (shared
// read-only over 9p at /host), so mkfs.ext4, blkid, mount and friends are the
// host's real Debian tools, with the guest's /dev, /proc and /sys and a fresh
// tmpfs at /run for the state directory, the socket and the kubelet paths.
// The host's /tmp stays visible: binaries built there by the harness run from it.
package guestenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Root is where the host's root filesystem is mounted in the guest.
const Root = "/host"

var (
	prepareOnce sync.Once
	prepareErr  error
)

// Prepare bind-mounts /dev, /proc and /sys into Root and mounts tmpfs on
// Root/run. It runs once per guest; later calls return the first
// result.
func Prepare() error {
	prepareOnce.Do(func() {
		for _, m := range []struct{ src, dst, fstype string }{
			{"/dev", "/dev", ""}, {"/proc", "/proc", ""}, {"/sys", "/sys", ""},
			{"tmpfs", "/run", "tmpfs"},
		} {
			dst := Root + m.dst
			var err error
			if m.fstype == "" {
				err = syscall.Mount(m.src, dst, "", syscall.MS_BIND|syscall.MS_REC, "")
			} else {
				err = syscall.Mount(m.src, dst, m.fstype, 0, "mode=1777")
			}
			if err != nil {
				prepareErr = fmt.Errorf("mount %s on %s: %w", m.src, dst, err)
				return
			}
		}
	})
	return prepareErr
}

// Daemon is an rds-csi process running chrooted into Root.
type Daemon struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	err  error
}

// Start runs binary (a path valid inside Root, i.e. its host path) with args,
// chrooted into Root.
func Start(binary string, args ...string) (*Daemon, error) {
	if err := Prepare(); err != nil {
		return nil, err
	}
	d := &Daemon{logs: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(binary, args...)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: Root}
	d.cmd.Dir = "/"
	// The host's /tmp is read-only in the chroot: temporary files go to /run.
	d.cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR=/run"}
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	return d, nil
}

// Pid is the process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Logs returns what the process has printed so far.
func (d *Daemon) Logs() string { return d.logs.String() }

// Exited reports whether the process has ended.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Stop sends sig and waits up to timeout for the process to end (then kills it).
// A process that already ended (killed by the test) stops without error.
func (d *Daemon) Stop(sig syscall.Signal, timeout time.Duration) error {
	if d.Exited() {
		return nil
	}
	_ = d.cmd.Process.Signal(sig)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	select {
	case <-d.done:
	case <-ctx.Done():
		_ = d.cmd.Process.Kill()
		<-d.done
		return errors.New("did not exit in time; killed")
	}
	var exit *exec.ExitError
	if errors.As(d.err, &exit) && sig != syscall.SIGKILL {
		return d.err
	}
	return nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Path maps a path as the daemon sees it (inside Root) to the guest's view.
func Path(p string) string { return Root + p }

// Exists reports whether a path (as the daemon sees it) exists.
func Exists(p string) bool {
	_, err := os.Stat(Path(p))
	return err == nil
}
