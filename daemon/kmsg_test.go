package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/internal/kmsg/kmsgtest"
	"github.com/srvlab/rds-csi/internal/uevent"
	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// sliceKmsg returns its reads in order, then io.EOF; before, when set, is
// called ahead of read i (so it sees the effect of read i-1).
type sliceKmsg struct {
	reads  []kmsgtest.Read
	i      int
	before func(i int)
}

func (s *sliceKmsg) Read(p []byte) (int, error) {
	if s.before != nil {
		s.before(s.i)
	}
	if s.i >= len(s.reads) {
		return 0, io.EOF
	}
	r := s.reads[s.i]
	s.i++
	if r.Err != nil {
		return 0, r.Err
	}
	return copy(p, r.Rec), nil
}

// chanKmsg is a kernel log source fed by the test: each Read returns one
// sent record or error, until Close.
type chanKmsg struct {
	ch     chan kmsgtest.Read
	closed chan struct{}
	once   sync.Once
}

func newChanKmsg() *chanKmsg {
	return &chanKmsg{ch: make(chan kmsgtest.Read), closed: make(chan struct{})}
}

func (c *chanKmsg) Read(p []byte) (int, error) {
	select {
	case r := <-c.ch:
		if r.Err != nil {
			return 0, r.Err
		}
		return copy(p, r.Rec), nil
	case <-c.closed:
		return 0, fmt.Errorf("read /dev/kmsg: %w", os.ErrClosed)
	}
}

func (c *chanKmsg) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// send delivers one record (blocking until the reader takes it).
func (c *chanKmsg) send(rec string) { c.ch <- kmsgtest.Read{Rec: []byte(rec)} }

func (c *chanKmsg) fail(err error) { c.ch <- kmsgtest.Read{Err: err} }

// nvmeRecord is a record as dev_printk logs it for controller nvme<minor>.
func nvmeRecord(seq, minor int, text string) string {
	return fmt.Sprintf("6,%d,%d,-;nvme nvme%d: %s\n SUBSYSTEM=nvme\n DEVICE=c245:%d\n", seq, 5900000+seq, minor, text, minor)
}

// kmsgEnv starts a daemon whose kernel log is src (and whose uevent and
// netlink sources never say anything). The poller and cleanup run hourly:
// only the test's records and calls drive the loop.
func kmsgEnv(t *testing.T, spec sysfstest.Spec, src io.ReadCloser) *env {
	t.Helper()
	e := newEnv(t, spec)
	withKmsg(e, func(path string) (io.ReadCloser, error) {
		if path != DefaultKmsgPath {
			t.Errorf("kernel log opened at %q, want the default %q", path, DefaultKmsgPath)
		}
		return src, nil
	})
	e.start()
	return e
}

// withKmsg turns the event sources on, with open as the kernel log and
// silent uevent and netlink sources.
func withKmsg(e *env, open func(string) (io.ReadCloser, error)) {
	e.cfg.NoEvents = false
	silent := newFakeUEvents()
	e.cfg.openUEvents = func() (uevent.Source, error) { return silent, nil }
	e.cfg.watchNet = func(ctx context.Context, _ func()) error { <-ctx.Done(); return nil }
	e.cfg.openKmsg = open
}

// kmsgTree has nvme0 (dev 245:0) and nvme1 (dev 245:1), live, one subsystem
// each.
func kmsgTree() sysfstest.Spec {
	var subs []sysfstest.Subsystem
	for i := range 2 {
		c := ctrlSpec(i, "live")
		c.Address = fmt.Sprintf("traddr=127.0.0.1,trsvcid=%d", 4420+i)
		subs = append(subs, sysfstest.Subsystem{Instance: i, NQN: volNQN(i), Namespaces: []sysfstest.Namespace{{NSID: 1}},
			Controllers: []sysfstest.Controller{c}})
	}
	return sysfstest.Spec{Multipath: true, Subsystems: subs}
}

// TestKmsgRecordings runs the hand-written recorded streams (package
// kmsg's testdata) through the reader and checks what they contain: the
// records counted, the gaps, and each controller's attempt number.
func TestKmsgRecordings(t *testing.T) {
	type want struct {
		records  int64            // records about nvme0 or nvme1
		gaps     int64            // EPIPE and sequence jumps
		attempts map[string][]int // each controller's attempt, every time it changed
	}
	for name, w := range map[string]want{
		"handwritten-6.12-port-unlink.kmsg": {records: 16, gaps: 2, attempts: map[string][]int{"nvme0": {1, 2, 3, 0}}},
		"handwritten-6.1-port-unlink.kmsg":  {records: 16, attempts: map[string][]int{"nvme0": {1, 2, 0, 1}}},
		"handwritten-garbage.kmsg":          {records: 3, attempts: map[string][]int{"nvme0": {5}}},
	} {
		t.Run(name, func(t *testing.T) {
			reads := kmsgtest.Load(t, filepath.Join(kmsgtest.Dir(), name))
			e := newEnv(t, kmsgTree())
			d := e.start()
			attempts := map[string][]int{}
			last := map[string]int{}
			src := &sliceKmsg{reads: reads, before: func(int) {
				d.mu.Lock()
				defer d.mu.Unlock()
				for name, c := range d.ctrls {
					if c.attempt != last[name] {
						attempts[name] = append(attempts[name], c.attempt)
						last[name] = c.attempt
					}
				}
			}}
			d.readKmsg(t.Context(), src)
			c := d.Snapshot().Counters
			if c.KmsgRecords != w.records || c.KmsgGaps != w.gaps {
				t.Errorf("records %d gaps %d, want %d and %d", c.KmsgRecords, c.KmsgGaps, w.records, w.gaps)
			}
			if diff := cmp.Diff(w.attempts, attempts); diff != "" {
				t.Errorf("attempts (-want +got):\n%s", diff)
			}
		})
	}
}

// TestKmsgTriggersStateRead: a record naming a known controller's device
// makes the loop re-read that controller's state at once (the poller runs
// hourly here), and only that controller's; a record for a device the
// registry does not know, or for another subsystem, changes nothing.
func TestKmsgTriggersStateRead(t *testing.T) {
	src := newChanKmsg()
	e := kmsgEnv(t, kmsgTree(), src)
	d := e.d
	if !d.Snapshot().Counters.KmsgActive {
		t.Fatal("KmsgActive false with a working kernel log")
	}
	for _, name := range []string{"nvme0", "nvme1"} {
		if err := sysfstest.SetState(e.root, name, "connecting"); err != nil {
			t.Fatal(err)
		}
	}
	polls := d.Snapshot().Counters.Polls
	src.send(nvmeRecord(10, 7, "starting error recovery"))                            // unknown controller
	src.send("6,11,5900011,-;nvme0n1: I/O error\n SUBSYSTEM=block\n DEVICE=b259:0\n") // a disk
	src.send("6,12,5900012,-;ttyS0: same numbers\n SUBSYSTEM=tty\n DEVICE=c245:0\n")  // another subsystem
	src.send("6,13,5900013,-;nvme nvme9: not in the registry, no dictionary\n")       // unknown by name
	src.send("14,14,5900014,-;nvme nvme0: starting error recovery\n")                 // written from user space
	src.send(nvmeRecord(15, 0, "starting error recovery"))                            // nvme0
	waitFor(t, "nvme0 connecting in the registry", func() bool {
		return controllerInfo(t, d, "nvme0").State == sysfs.StateConnecting
	})
	c := d.Snapshot().Counters
	if c.KmsgRecords != 1 || c.KmsgGaps != 0 {
		t.Errorf("records %d gaps %d, want 1 and 0: only the nvme0 record is about a known controller", c.KmsgRecords, c.KmsgGaps)
	}
	if c.Polls != polls+1 {
		t.Errorf("%d state passes, want 1 (for nvme0 only)", c.Polls-polls)
	}
	if got := controllerInfo(t, d, "nvme1").State; got != sysfs.StateLive {
		t.Errorf("nvme1 is %v in the registry: it was re-read, but no record named it", got)
	}
	// The dictionary-less form of an old kernel names the controller in
	// the text.
	src.send("6,16,5900016,-;nvme nvme1: starting error recovery\n")
	waitFor(t, "nvme1 connecting in the registry", func() bool {
		return controllerInfo(t, d, "nvme1").State == sysfs.StateConnecting
	})
}

// TestKmsgFollowsControllers: the device map follows controllers that come
// and go (a new controller's records count once a pass has seen it; a
// removed one's do not).
func TestKmsgFollowsControllers(t *testing.T) {
	src := newChanKmsg()
	e := kmsgEnv(t, kmsgTree(), src)
	d := e.d
	if err := sysfstest.Build(e.root, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{{
		Instance: 2, NQN: volNQN(2), Controllers: []sysfstest.Controller{ctrlSpec(2, "live")},
	}}}); err != nil {
		t.Fatal(err)
	}
	src.send(nvmeRecord(1, 2, "new ctrl: NQN \"x\", addr 127.0.0.1:4420"))
	src.send(nvmeRecord(2, 0, "creating 2 I/O queues.")) // a known one, to wait on
	waitFor(t, "the nvme0 record", func() bool { return d.Snapshot().Counters.KmsgRecords == 1 })
	d.resync(true) // the add uevent's pass
	if err := sysfstest.SetState(e.root, "nvme2", "resetting"); err != nil {
		t.Fatal(err)
	}
	src.send(nvmeRecord(3, 2, "resetting controller"))
	waitFor(t, "nvme2 resetting in the registry", func() bool {
		return controllerInfo(t, d, "nvme2").State == sysfs.StateResetting
	})
	if err := sysfstest.RemoveController(e.root, "nvme2"); err != nil {
		t.Fatal(err)
	}
	d.resync(true) // the remove uevent's pass
	d.mu.Lock()
	_, stale := d.byDev[sysfs.DevNum{Major: 245, Minor: 2}]
	d.mu.Unlock()
	if stale {
		t.Error("the device map still names the removed nvme2")
	}
	before := d.Snapshot().Counters.KmsgRecords
	src.send(nvmeRecord(4, 2, "Removing ctrl: NQN \"x\""))
	src.send(nvmeRecord(5, 0, "creating 2 I/O queues."))
	waitFor(t, "the nvme0 record", func() bool { return d.Snapshot().Counters.KmsgRecords == before+1 })
}

// TestKmsgGapResync: a jump in the sequence numbers, or EPIPE, counts a gap
// and forces a full re-read (which finds a controller whose records were
// lost); the first record after EPIPE is no second gap.
func TestKmsgGapResync(t *testing.T) {
	src := newChanKmsg()
	e := kmsgEnv(t, kmsgTree(), src)
	d := e.d
	src.send(nvmeRecord(100, 0, "creating 2 I/O queues."))
	src.send(nvmeRecord(101, 0, "mapped 2/0/0 default/read/poll queues."))
	waitFor(t, "two records", func() bool { return d.Snapshot().Counters.KmsgRecords == 2 })
	if g := d.Snapshot().Counters.KmsgGaps; g != 0 {
		t.Fatalf("gaps %d after consecutive records", g)
	}
	if err := sysfstest.Build(e.root, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{{
		Instance: 2, NQN: volNQN(2), Controllers: []sysfstest.Controller{ctrlSpec(2, "live")},
	}}}); err != nil {
		t.Fatal(err)
	}
	resyncs := d.Snapshot().Counters.Resyncs
	src.send(nvmeRecord(105, 7, "new ctrl: NQN \"x\", addr 127.0.0.1:4420")) // 102-104 lost
	waitFor(t, "a full re-read that finds nvme2", func() bool {
		s := d.Snapshot()
		return s.Counters.KmsgGaps == 1 && s.Counters.Resyncs > resyncs && slices.ContainsFunc(s.Controllers,
			func(c ControllerInfo) bool { return c.Name == "nvme2" })
	})

	resyncs = d.Snapshot().Counters.Resyncs
	src.fail(fmt.Errorf("read /dev/kmsg: %w", syscall.EPIPE))
	waitFor(t, "a full re-read after EPIPE", func() bool {
		c := d.Snapshot().Counters
		return c.KmsgGaps == 2 && c.Resyncs > resyncs
	})
	src.send(nvmeRecord(200, 0, "creating 2 I/O queues.")) // the first record after the overwritten ones
	src.send(nvmeRecord(201, 0, "mapped 2/0/0 default/read/poll queues."))
	waitFor(t, "records after EPIPE", func() bool { return d.Snapshot().Counters.KmsgRecords == 4 })
	if c := d.Snapshot().Counters; c.KmsgGaps != 2 || !c.KmsgActive {
		t.Errorf("gaps %d active %v, want 2 and true: EPIPE is one gap, and the reader goes on", c.KmsgGaps, c.KmsgActive)
	}
}

// TestKmsgAttempt: reconnect attempts from either kernel's texts reach
// ControllerInfo.Attempt and the volume health message, and are reset when
// the controller is live again; the reconnect is counted once (from the
// transition, not from the text).
func TestKmsgAttempt(t *testing.T) {
	for _, tc := range []struct {
		kernel              string
		failed, reconnected func(n int) string
	}{
		{"6.12",
			func(n int) string { return fmt.Sprintf("Failed reconnect attempt %d/-1", n) },
			func(n int) string { return fmt.Sprintf("Successfully reconnected (attempt %d/-1)", n) }},
		{"6.1",
			func(n int) string { return fmt.Sprintf("Failed reconnect attempt %d", n) },
			func(n int) string { return fmt.Sprintf("Successfully reconnected (%d attempt)", n) }},
	} {
		t.Run(tc.kernel, func(t *testing.T) {
			src := newChanKmsg()
			e := kmsgEnv(t, oneSubsystem("live"), src)
			d := e.d
			if _, err := d.Attach(t.Context(), spec("pvc-0", volNQN(0), 1)); err != nil {
				t.Fatal(err)
			}
			attempt := func() int { return controllerInfo(t, d, "nvme0").Attempt }

			// The record comes before the state file says anything.
			src.send(nvmeRecord(1, 0, "starting error recovery"))
			if err := sysfstest.SetState(e.root, "nvme0", "connecting"); err != nil {
				t.Fatal(err)
			}
			src.send(nvmeRecord(2, 0, "Reconnecting in 1 seconds..."))
			src.send(nvmeRecord(3, 0, "failed to connect socket: -111"))
			src.send(nvmeRecord(4, 0, tc.failed(1)))
			src.send(nvmeRecord(5, 0, tc.failed(2)))
			waitFor(t, "connecting, attempt 2", func() bool {
				c := controllerInfo(t, d, "nvme0")
				return c.State == sysfs.StateConnecting && c.Attempt == 2
			})
			e.clock.Advance(42 * time.Second)
			h, err := d.VolumeHealth("pvc-0")
			if err != nil {
				t.Fatal(err)
			}
			want := VolumeHealth{Condition: Inaccessible, Reason: "ControllerConnecting",
				Message: "nvme0 connecting for 42s to 127.0.0.1:4420, attempt 2"}
			if diff := cmp.Diff(want, h); diff != "" {
				t.Errorf("volume health (-want +got):\n%s", diff)
			}

			if err := sysfstest.SetState(e.root, "nvme0", "live"); err != nil {
				t.Fatal(err)
			}
			src.send(nvmeRecord(6, 0, tc.reconnected(3)))
			waitFor(t, "live, attempt 0", func() bool {
				c := controllerInfo(t, d, "nvme0")
				return c.State == sysfs.StateLive && c.Attempt == 0
			})
			if h, _ := d.VolumeHealth("pvc-0"); h.Condition != Healthy {
				t.Errorf("volume health after the reconnect: %+v", h)
			}
			if c := controllerInfo(t, d, "nvme0"); c.Reconnects != 1 {
				t.Errorf("reconnects %d, want 1", c.Reconnects)
			}

			// A new outage counts afresh.
			src.send(nvmeRecord(7, 0, tc.failed(1)))
			src.send(nvmeRecord(8, 0, "starting error recovery"))
			waitFor(t, "attempt reset by a new outage", func() bool {
				return d.Snapshot().Counters.KmsgRecords == 8 && attempt() == 0
			})
		})
	}
}

// syncBuffer is a log destination safe for the daemon's goroutines.
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

// TestKmsgFallback: without the kernel log (no CAP_SYSLOG, no device,
// disabled) the daemon says so once, KmsgActive is false, and polling
// still finds faults. A reader that fails later stops, says so once, and
// KmsgActive turns false.
func TestKmsgFallback(t *testing.T) {
	for _, tc := range []struct {
		name    string
		path    string // Config.KmsgPath; the default when empty
		err     error  // from the open
		noKmsg  bool
		wantLog string
	}{
		{name: "no CAP_SYSLOG", err: &fs.PathError{Op: "open", Path: DefaultKmsgPath, Err: syscall.EPERM},
			wantLog: "no permission (needs CAP_SYSLOG)"},
		{name: "no device", path: "/host/dev/kmsg", err: &fs.PathError{Op: "open", Path: "/host/dev/kmsg", Err: syscall.ENOENT},
			wantLog: "device absent"},
		{name: "unsupported platform", err: fmt.Errorf("kmsg: %w", errors.ErrUnsupported), wantLog: "not supported on this platform"},
		{name: "disabled", noKmsg: true, wantLog: "detected by uevents and polling"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, oneSubsystem("live"))
			var log syncBuffer
			e.cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
			e.cfg.NoKmsg = tc.noKmsg
			e.cfg.KmsgPath = tc.path
			opens := 0
			withKmsg(e, func(path string) (io.ReadCloser, error) {
				opens++
				want := tc.path
				if want == "" {
					want = DefaultKmsgPath
				}
				if path != want {
					t.Errorf("opened %q, want %q", path, want)
				}
				return nil, tc.err
			})
			d := e.start()
			if tc.noKmsg && opens != 0 {
				t.Errorf("the kernel log was opened %d times although disabled", opens)
			}
			if d.Snapshot().Counters.KmsgActive {
				t.Error("KmsgActive true without a kernel log")
			}
			msg := "kernel log unavailable; falling back to polling"
			if tc.noKmsg {
				msg = "kernel log trigger disabled"
			}
			if n := strings.Count(log.String(), msg); n != 1 || !strings.Contains(log.String(), tc.wantLog) {
				t.Errorf("%q logged %d times, want once, with %q; log:\n%s", msg, n, tc.wantLog, log.String())
			}
			if err := sysfstest.SetState(e.root, "nvme0", "connecting"); err != nil {
				t.Fatal(err)
			}
			d.kick(false) // the poller's tick
			waitFor(t, "the poller to see connecting", func() bool {
				return controllerInfo(t, d, "nvme0").State == sysfs.StateConnecting
			})
		})
	}
	t.Run("reader fails", func(t *testing.T) {
		src := newChanKmsg()
		e := newEnv(t, oneSubsystem("live"))
		var log syncBuffer
		e.cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
		withKmsg(e, func(string) (io.ReadCloser, error) { return src, nil })
		d := e.start()
		if !d.Snapshot().Counters.KmsgActive {
			t.Fatal("KmsgActive false with a working kernel log")
		}
		src.fail(fmt.Errorf("read /dev/kmsg: %w", syscall.EIO))
		waitFor(t, "KmsgActive false", func() bool { return !d.Snapshot().Counters.KmsgActive })
		if n := strings.Count(log.String(), "kernel log read failed"); n != 1 {
			t.Errorf("read failure logged %d times, want once; log:\n%s", n, log.String())
		}
	})
	t.Run("close stops the reader quietly", func(t *testing.T) {
		src := newChanKmsg()
		e := newEnv(t, oneSubsystem("live"))
		var log syncBuffer
		e.cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
		withKmsg(e, func(string) (io.ReadCloser, error) { return src, nil })
		d := e.start()
		d.Close()
		if d.Snapshot().Counters.KmsgActive {
			t.Error("KmsgActive true after Close")
		}
		if strings.Contains(log.String(), "kernel log read failed") {
			t.Errorf("Close logged a read failure:\n%s", log.String())
		}
	})
}

// TestKmsgTargetRejected: the kernel's report that the target refuses this
// host makes the volume's health TargetRejected with the kernel's message,
// counts it, and ends with the outage; a controller the kernel then removes
// leaves the volume TargetRejected (not ControllerGone) with the message.
func TestKmsgTargetRejected(t *testing.T) {
	src := newChanKmsg()
	e := kmsgEnv(t, oneSubsystem("live"), src)
	d := e.d
	if _, err := d.Attach(t.Context(), spec("pvc-0", volNQN(0), 1)); err != nil {
		t.Fatal(err)
	}
	msg := "Connect for subsystem " + volNQN(0) + " is not allowed, hostnqn: nqn.2014-08.org.nvmexpress:uuid:0a"
	src.send(nvmeRecord(1, 0, "starting error recovery"))
	if err := sysfstest.SetState(e.root, "nvme0", "connecting"); err != nil {
		t.Fatal(err)
	}
	src.send(nvmeRecord(2, 0, msg))
	src.send(nvmeRecord(3, 0, "Failed reconnect attempt 1"))
	waitFor(t, "the refusal counted", func() bool {
		c := controllerInfo(t, d, "nvme0")
		return d.Snapshot().Counters.TargetRejected == 1 && c.Attempt == 1 && c.State == sysfs.StateConnecting
	})
	h, err := d.VolumeHealth("pvc-0")
	if err != nil {
		t.Fatal(err)
	}
	if h.Condition != Inaccessible || h.Reason != "TargetRejected" || !strings.Contains(h.Message, "the target refuses this host: nvme nvme0: "+msg) {
		t.Errorf("health %+v, want Inaccessible TargetRejected with the kernel's message", h)
	}
	// The kernel gives the controller up (later kernels do at once: DNR).
	if err := sysfstest.RemoveController(e.root, "nvme0"); err != nil {
		t.Fatal(err)
	}
	src.send(nvmeRecord(4, 0, "Removing controller (16772)..."))
	waitFor(t, "the controller gone", func() bool {
		h, _ := d.VolumeHealth("pvc-0")
		return strings.Contains(h.Message, "is gone")
	})
	h, _ = d.VolumeHealth("pvc-0")
	if h.Reason != "TargetRejected" || !strings.Contains(h.Message, msg) {
		t.Errorf("health after the removal %+v, want TargetRejected naming the refusal", h)
	}
}

// TestKmsgTargetRejectedAfterRemoval: the refusal read after the kernel
// removed the controller still makes the volume TargetRejected.
func TestKmsgTargetRejectedAfterRemoval(t *testing.T) {
	src := newChanKmsg()
	e := kmsgEnv(t, oneSubsystem("live"), src)
	d := e.d
	if _, err := d.Attach(t.Context(), spec("pvc-0", volNQN(0), 1)); err != nil {
		t.Fatal(err)
	}
	if err := sysfstest.RemoveController(e.root, "nvme0"); err != nil {
		t.Fatal(err)
	}
	src.send(nvmeRecord(1, 0, "Removing controller (16772)..."))
	waitFor(t, "the controller gone", func() bool {
		h, _ := d.VolumeHealth("pvc-0")
		return h.Reason == "ControllerGone"
	})
	msg := "Connect for subsystem " + volNQN(0) + " is not allowed, hostnqn: nqn.2014-08.org.nvmexpress:uuid:0a"
	src.send(nvmeRecord(2, 0, msg))
	waitFor(t, "TargetRejected", func() bool {
		h, _ := d.VolumeHealth("pvc-0")
		return h.Reason == "TargetRejected" && strings.Contains(h.Message, msg)
	})
	if n := d.Snapshot().Counters.TargetRejected; n != 1 {
		t.Errorf("TargetRejected counter %d, want 1", n)
	}
}
