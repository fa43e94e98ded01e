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
	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// kmsgRead is one read of a kernel log source: a record or an error.
type kmsgRead struct {
	rec []byte
	err error
}

// loadKmsgStream reads a testdata/kmsg file (format in its README.md).
func loadKmsgStream(t testing.TB, path string) []kmsgRead {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []kmsgRead
	for _, block := range strings.Split(string(b), "\n\n") {
		block = strings.Trim(block, "\n")
		switch {
		case block == "":
		case block == "!EPIPE":
			out = append(out, kmsgRead{err: fmt.Errorf("read /dev/kmsg: %w", syscall.EPIPE)})
		case strings.HasPrefix(block, "#"):
		default:
			out = append(out, kmsgRead{rec: []byte(block + "\n")})
		}
	}
	return out
}

// sliceKmsg returns its reads in order, then io.EOF; before, when set, is
// called ahead of read i (so it sees the effect of read i-1).
type sliceKmsg struct {
	reads  []kmsgRead
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
	if r.err != nil {
		return 0, r.err
	}
	return copy(p, r.rec), nil
}

// chanKmsg is a kernel log source fed by the test: each Read returns one
// sent record or error, until Close.
type chanKmsg struct {
	ch     chan kmsgRead
	closed chan struct{}
	once   sync.Once
}

func newChanKmsg() *chanKmsg {
	return &chanKmsg{ch: make(chan kmsgRead), closed: make(chan struct{})}
}

func (c *chanKmsg) Read(p []byte) (int, error) {
	select {
	case r := <-c.ch:
		if r.err != nil {
			return 0, r.err
		}
		return copy(p, r.rec), nil
	case <-c.closed:
		return 0, fmt.Errorf("read /dev/kmsg: %w", os.ErrClosed)
	}
}

func (c *chanKmsg) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// send delivers one record (blocking until the reader takes it).
func (c *chanKmsg) send(rec string) { c.ch <- kmsgRead{rec: []byte(rec)} }

func (c *chanKmsg) fail(err error) { c.ch <- kmsgRead{err: err} }

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
	e.cfg.openUEvents = func() (ueventSource, error) { return silent, nil }
	e.cfg.watchNet = func(ctx context.Context, _ func()) error { <-ctx.Done(); return nil }
	e.cfg.openKmsg = open
}

func TestParseKmsgRecord(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    kmsgRecord
		wantErr bool
	}{
		{name: "nvme record with dictionary (6.12)",
			in: "4,379,5921339,-;nvme nvme0: starting error recovery\n SUBSYSTEM=nvme\n DEVICE=c245:0\n",
			want: kmsgRecord{Prio: 4, Seq: 379, TSUsec: 5921339, Flags: "-", Message: "nvme nvme0: starting error recovery",
				Dict: map[string]string{"SUBSYSTEM": "nvme", "DEVICE": "c245:0"}}},
		{name: "no dictionary, no trailing newline",
			in:   "14,345,3622335156,-;rds-csi probe",
			want: kmsgRecord{Prio: 14, Seq: 345, TSUsec: 3622335156, Flags: "-", Message: "rds-csi probe"}},
		{name: "extra header fields are ignored",
			in:   "6,2061,5925502,-,caller=T1234,more;text; with a semicolon\n",
			want: kmsgRecord{Prio: 6, Seq: 2061, TSUsec: 5925502, Flags: "-", Message: "text; with a semicolon"}},
		{name: "escapes in text and dictionary values",
			in: "6,1,2,c;a\\x5cb \\xc3\\xa9 \\xZZ \\x4 tail\\x\n K=v\\x0aw=x\n",
			want: kmsgRecord{Prio: 6, Seq: 1, TSUsec: 2, Flags: "c", Message: "a\\b é \\xZZ \\x4 tail\\x",
				Dict: map[string]string{"K": "v\nw=x"}}},
		{name: "odd continuation lines are skipped",
			in: "6,1,2,-;m\nno space\n NOEQUALS\n =novalue\n\n A=\n",
			want: kmsgRecord{Prio: 6, Seq: 1, TSUsec: 2, Flags: "-", Message: "m",
				Dict: map[string]string{"A": ""}}},
		{name: "largest sequence number",
			in:   "0,18446744073709551615,0,-;",
			want: kmsgRecord{Seq: 1<<64 - 1, Flags: "-"}},
		{name: "no semicolon", in: "6,1,2,- text\n", wantErr: true},
		{name: "three header fields", in: "6,1,2;text\n", wantErr: true},
		{name: "negative priority", in: "-6,1,2,-;text\n", wantErr: true},
		{name: "priority too large", in: "4294967296,1,2,-;text\n", wantErr: true},
		{name: "sequence not a number", in: "6,abc,2,-;text\n", wantErr: true},
		{name: "sequence overflows", in: "6,18446744073709551616,2,-;text\n", wantErr: true},
		{name: "timestamp with a sign", in: "6,1,+2,-;text\n", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseKmsgRecord([]byte(tc.in))
			if tc.wantErr {
				if !errors.Is(err, errKmsgRecord) {
					t.Fatalf("error %v, want errKmsgRecord (record %+v)", err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestKmsgDevice(t *testing.T) {
	for _, tc := range []struct {
		dev  string
		want sysfs.DevNum
		ok   bool
	}{
		{"c245:0", sysfs.DevNum{Major: 245, Minor: 0}, true},
		{"c10:1048575", sysfs.DevNum{Major: 10, Minor: 1048575}, true},
		{"b259:0", sysfs.DevNum{}, false},
		{"+pci:0000:00:01.0", sysfs.DevNum{}, false},
		{"n2", sysfs.DevNum{}, false},
		{"c245", sysfs.DevNum{}, false},
		{"c245:", sysfs.DevNum{}, false},
		{"c:0", sysfs.DevNum{}, false},
		{"c-1:0", sysfs.DevNum{}, false},
		{"c4294967296:0", sysfs.DevNum{}, false},
	} {
		got, ok := kmsgDevice(&kmsgRecord{Dict: map[string]string{"DEVICE": tc.dev}})
		if got != tc.want || ok != tc.ok {
			t.Errorf("kmsgDevice(%q) = %v, %v; want %v, %v", tc.dev, got, ok, tc.want, tc.ok)
		}
	}
}

func TestClassifyNVMe(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want kmsgEvent
	}{
		{"nvme nvme0: starting error recovery", kmsgEvent{Ctrl: "nvme0", Kind: kmsgErrorRecovery}},
		{"nvme nvme12: Reconnecting in 1 seconds...", kmsgEvent{Ctrl: "nvme12", Kind: kmsgReconnecting}},
		{"nvme nvme0: Reconnecting in 10 seconds...", kmsgEvent{Ctrl: "nvme0", Kind: kmsgReconnecting}},
		{"nvme nvme0: Failed reconnect attempt 1/-1", kmsgEvent{Ctrl: "nvme0", Kind: kmsgReconnectFail, Attempt: 1}},   // 6.12
		{"nvme nvme0: Failed reconnect attempt 17/60", kmsgEvent{Ctrl: "nvme0", Kind: kmsgReconnectFail, Attempt: 17}}, // 6.12, finite ctrl_loss_tmo
		{"nvme nvme0: Failed reconnect attempt 1", kmsgEvent{Ctrl: "nvme0", Kind: kmsgReconnectFail, Attempt: 1}},      // 6.1
		{"nvme nvme3: Successfully reconnected (attempt 3/-1)", kmsgEvent{Ctrl: "nvme3", Kind: kmsgReconnected, Attempt: 3}},
		{"nvme nvme3: Successfully reconnected (2 attempt)", kmsgEvent{Ctrl: "nvme3", Kind: kmsgReconnected, Attempt: 2}},
		{"nvme nvme3: Successfully reconnected (2 attempts)", kmsgEvent{Ctrl: "nvme3", Kind: kmsgReconnected, Attempt: 2}},
		{"nvme nvme3: Successfully reconnected", kmsgEvent{Ctrl: "nvme3", Kind: kmsgReconnected}},
		{`nvme nvme0: new ctrl: NQN "nqn.2024-01.io.srvlab.lab:x", addr 127.0.0.1:4420, hostnqn: nqn.2014-08.org.nvmexpress:uuid:1`,
			kmsgEvent{Ctrl: "nvme0", Kind: kmsgNewCtrl}},
		{"nvme nvme0: failed to connect socket: -111", kmsgEvent{Ctrl: "nvme0"}},
		{"nvme nvme0: creating 2 I/O queues.", kmsgEvent{Ctrl: "nvme0"}},
		{"nvme nvme0: Failed reconnect attempt 99999999999999999999", kmsgEvent{Ctrl: "nvme0", Kind: kmsgReconnectFail}},
		{"nvme nvme0: Failed reconnect attempt x", kmsgEvent{Ctrl: "nvme0"}},
		{"Failed reconnect attempt 4", kmsgEvent{Kind: kmsgReconnectFail, Attempt: 4}}, // no prefix
		{"nvme0n1: I/O Cmd(0x2) @ LBA 0, 8 blocks, I/O Error (sct 0x3 / sc 0x70)", kmsgEvent{}},
		{"", kmsgEvent{}},
	} {
		if got := classifyNVMe(tc.msg); got != tc.want {
			t.Errorf("classifyNVMe(%q) = %+v, want %+v", tc.msg, got, tc.want)
		}
	}
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

// TestKmsgRecordings runs every recorded stream in testdata/kmsg through
// the reader: the hand-written ones against what they contain, captured
// ones (from the lab) for parsing only.
func TestKmsgRecordings(t *testing.T) {
	type want struct {
		records  int64            // records about nvme0 or nvme1
		gaps     int64            // EPIPE and sequence jumps
		bad      int              // reads that do not parse
		attempts map[string][]int // each controller's attempt, every time it changed
	}
	wants := map[string]want{
		"handwritten-6.12-port-unlink.kmsg": {records: 16, gaps: 2, attempts: map[string][]int{"nvme0": {1, 2, 3, 0}}},
		"handwritten-6.1-port-unlink.kmsg":  {records: 16, attempts: map[string][]int{"nvme0": {1, 2, 0, 1}}},
		"handwritten-garbage.kmsg":          {records: 3, bad: 5, attempts: map[string][]int{"nvme0": {5}}},
	}
	files, err := filepath.Glob(filepath.Join("testdata", "kmsg", "*.kmsg"))
	if err != nil {
		t.Fatal(err)
	}
	for name := range wants {
		if !slices.Contains(files, filepath.Join("testdata", "kmsg", name)) {
			t.Errorf("testdata/kmsg/%s is missing", name)
		}
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			reads := loadKmsgStream(t, path)
			bad := 0
			for _, r := range reads {
				if r.err != nil {
					continue
				}
				if _, err := parseKmsgRecord(r.rec); err != nil {
					bad++
					if _, hand := wants[name]; !hand {
						t.Errorf("a captured record does not parse: %v", err)
					}
				}
			}
			w, hand := wants[name]
			if !hand {
				return
			}
			if bad != w.bad {
				t.Errorf("%d reads do not parse, want %d", bad, w.bad)
			}
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
		{name: "unsupported platform", err: errUnsupported, wantLog: "not supported on this platform"},
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

// escapeKmsg escapes as the kernel does: control characters, bytes >= 0x7f
// and the backslash become \xNN.
func escapeKmsg(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c >= 0x7f || c == '\\' {
			fmt.Fprintf(&b, "\\x%02x", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// formatKmsgRecord is a record as /dev/kmsg would return it (dictionary
// sorted by key).
func formatKmsgRecord(r kmsgRecord) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d,%d,%d,%s;%s\n", r.Prio, r.Seq, r.TSUsec, r.Flags, escapeKmsg(r.Message))
	keys := make([]string, 0, len(r.Dict))
	for k := range r.Dict {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s\n", k, escapeKmsg(r.Dict[k]))
	}
	return b.Bytes()
}

// FuzzParseKmsgRecord: the parser never panics; what it accepts formats
// back (header, escaped text, dictionary) into a record that parses to the
// same fields; the classifier never panics and its attempt is in range.
func FuzzParseKmsgRecord(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "kmsg", "*.kmsg"))
	for _, path := range files {
		for _, r := range loadKmsgStream(f, path) {
			if r.err == nil {
				f.Add(r.rec)
			}
		}
	}
	f.Add([]byte("6,1,2,-;a\\x5cb\\xZZ\\x\n K=v\\x0a\n"))
	f.Add([]byte("6,1,2,-,caller=T1;x;y\n =z\n A\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseKmsgRecord(b)
		if err != nil {
			if !errors.Is(err, errKmsgRecord) {
				t.Fatalf("error %v does not wrap errKmsgRecord", err)
			}
			return
		}
		again, err := parseKmsgRecord(formatKmsgRecord(r))
		if err != nil {
			t.Fatalf("the formatted record %q does not parse: %v", formatKmsgRecord(r), err)
		}
		if diff := cmp.Diff(r, again); diff != "" {
			t.Fatalf("round trip of %q (-first +again):\n%s", b, diff)
		}
		if strings.ContainsAny(r.Flags, ",;\n") {
			t.Fatalf("flags %q hold a separator", r.Flags)
		}
		ev := classifyNVMe(r.Message)
		if ev.Attempt < 0 || ev.Attempt > maxAttempt {
			t.Fatalf("attempt %d out of range for %q", ev.Attempt, r.Message)
		}
		if ev.Ctrl != "" && !strings.HasPrefix(r.Message, "nvme "+ev.Ctrl+": ") {
			t.Fatalf("controller %q is not the text's prefix in %q", ev.Ctrl, r.Message)
		}
	})
}
