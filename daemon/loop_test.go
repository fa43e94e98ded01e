package daemon

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/internal/uevent"
	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// fakeUEvents is a scripted uevent source.
type fakeUEvents struct {
	ch     chan fakeRead
	closed chan struct{}
	once   sync.Once
}

type fakeRead struct {
	ev  uevent.Event
	err error
}

func newFakeUEvents() *fakeUEvents {
	return &fakeUEvents{ch: make(chan fakeRead), closed: make(chan struct{})}
}

func (f *fakeUEvents) Read() (uevent.Event, error) {
	select {
	case r := <-f.ch:
		return r.ev, r.err
	case <-f.closed:
		return uevent.Event{}, uevent.ErrClosed
	}
}

func (f *fakeUEvents) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

// send delivers one read (blocking until the daemon takes it).
func (f *fakeUEvents) send(ev uevent.Event, err error) { f.ch <- fakeRead{ev, err} }

func ctrlEvent(action, name string, env map[string]string) uevent.Event {
	return uevent.Event{Action: action, Subsystem: "nvme", DevName: name,
		DevPath: "/devices/virtual/nvme-fabrics/ctl/" + name, Env: env}
}

func connected(name string) uevent.Event {
	return ctrlEvent("change", name, map[string]string{"NVME_EVENT": "connected"})
}

// loopEnv starts a daemon whose event goroutines read from a fake source.
func loopEnv(t *testing.T, spec sysfstest.Spec) (*env, *fakeUEvents) {
	e := newEnv(t, spec)
	src := newFakeUEvents()
	e.cfg.NoEvents = false
	e.cfg.openUEvents = func() (uevent.Source, error) { return src, nil }
	e.cfg.watchNet = func(ctx context.Context, _ func()) error { <-ctx.Done(); return nil }
	e.cfg.NoKmsg = true // the host's kernel log stays out of these tests
	e.start()
	return e, src
}

func oneSubsystem(states ...string) sysfstest.Spec {
	s := sysfstest.Subsystem{Instance: 0, NQN: volNQN(0), Namespaces: []sysfstest.Namespace{{NSID: 1}}}
	for i, st := range states {
		c := ctrlSpec(i, st)
		c.Address = fmt.Sprintf("traddr=127.0.0.1,trsvcid=%d", 4420+i)
		s.Controllers = append(s.Controllers, c)
	}
	return sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{s}}
}

// TestUEventOverflowResync: ENOBUFS is counted and forces a full re-read,
// which finds the controller whose add uevent was lost.
func TestUEventOverflowResync(t *testing.T) {
	e, src := loopEnv(t, oneSubsystem("live"))
	d := e.d
	waitFor(t, "the first full re-read", func() bool { return d.Snapshot().Counters.Resyncs >= 1 })
	before := d.Snapshot().Counters.Resyncs
	if err := sysfstest.Build(e.root, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{{
		Instance: 1, NQN: volNQN(1), Controllers: []sysfstest.Controller{{Instance: 1}},
	}}}); err != nil {
		t.Fatal(err)
	}
	src.send(uevent.Event{}, uevent.ErrOverflow)
	waitFor(t, "nvme1 in the registry", func() bool {
		for _, c := range d.Snapshot().Controllers {
			if c.Name == "nvme1" {
				return true
			}
		}
		return false
	})
	c := d.Snapshot().Counters
	if c.UEventOverflows != 1 || c.Resyncs <= before {
		t.Errorf("counters after overflow: %+v (resyncs before %d)", c, before)
	}
}

// TestUEventsDriveTheLoop: an add uevent brings a new controller in, a
// remove uevent takes it out (and out of the ownership file).
func TestUEventsDriveTheLoop(t *testing.T) {
	e, src := loopEnv(t, oneSubsystem("live"))
	d := e.d
	has := func(name string) func() bool {
		return func() bool {
			for _, c := range d.Snapshot().Controllers {
				if c.Name == name {
					return true
				}
			}
			return false
		}
	}
	if err := sysfstest.Build(e.root, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{{
		Instance: 1, NQN: volNQN(1), Controllers: []sysfstest.Controller{{Instance: 1}},
	}}}); err != nil {
		t.Fatal(err)
	}
	src.send(ctrlEvent("add", "nvme1", nil), nil)
	src.send(uevent.Event{Action: "add", Subsystem: "hwmon", DevPath: "/devices/virtual/nvme-fabrics/ctl/nvme1/hwmon1"}, nil) // filtered out
	waitFor(t, "nvme1 to appear", has("nvme1"))
	if err := sysfstest.RemoveController(e.root, "nvme1"); err != nil {
		t.Fatal(err)
	}
	src.send(ctrlEvent("remove", "nvme1", nil), nil)
	waitFor(t, "nvme1 to vanish", func() bool { return !has("nvme1")() })
	if got := d.Snapshot().Counters.UEvents; got != 2 {
		t.Errorf("UEvents = %d, want 2 (the hwmon event is not NVMe)", got)
	}
}

// TestReconnectCounting: a reconnect counts once whether the loop sees the
// transition, the connected uevent, or both.
func TestReconnectCounting(t *testing.T) {
	type step struct {
		state  string // set the state file, then poll
		uevent bool   // a connected uevent, then poll
		// staleUEvent: the connected uevent is processed by a pass whose
		// re-read came before the controller went live (no poll).
		staleUEvent bool
		rescan      bool // a full re-read
		newCtrl     bool // add nvme1 to the tree (first connect)
		advance     time.Duration
		wantReco    int
	}
	for _, tc := range []struct {
		name        string
		steps       []step
		wantOutages []time.Duration
	}{
		{name: "seen connecting, then live, then the uevent", steps: []step{
			{state: "connecting"}, {advance: 3 * time.Second, state: "live", wantReco: 1}, {uevent: true, wantReco: 1},
		}, wantOutages: []time.Duration{3 * time.Second}},
		{name: "uevent before the poll sees live", steps: []step{
			{state: "connecting"}, {advance: time.Second}, {uevent: true, state: "live", wantReco: 1}, {wantReco: 1},
		}, wantOutages: []time.Duration{time.Second}},
		{name: "uevent after a re-read that still saw connecting", steps: []step{
			{state: "connecting"}, {advance: 2 * time.Second, state: "live", staleUEvent: true, wantReco: 1}, {wantReco: 1}, {uevent: true, wantReco: 2},
		}, wantOutages: []time.Duration{2 * time.Second}},
		{name: "too quick for any poll: uevent only", steps: []step{
			{uevent: true, wantReco: 1}, {uevent: true, wantReco: 2},
		}},
		{name: "poll only (uevent lost)", steps: []step{
			{state: "resetting"}, {state: "connecting"}, {advance: time.Minute, state: "live", wantReco: 1},
		}, wantOutages: []time.Duration{time.Minute}},
		{name: "first connect of a new controller is no reconnect", steps: []step{
			{newCtrl: true, rescan: true}, {uevent: true}, {state: "live"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, oneSubsystem("live"))
			obs := &recordingObserver{}
			e.cfg.Observer = obs
			d := e.start()
			d.resync(true)
			name := "nvme0"
			for i, s := range tc.steps {
				e.clock.Advance(s.advance)
				if s.newCtrl {
					name = "nvme1"
					if err := sysfstest.Build(e.root, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{{
						Instance: 1, NQN: volNQN(1), Controllers: []sysfstest.Controller{{Instance: 1}},
					}}}); err != nil {
						t.Fatal(err)
					}
				}
				if s.state != "" {
					if err := sysfstest.SetState(e.root, name, s.state); err != nil {
						t.Fatal(err)
					}
				}
				if s.uevent {
					d.handleUEvent(new(connected(name)))
				}
				if s.staleUEvent {
					var evs []event
					d.mu.Lock()
					d.pendingConnected[name]++
					d.connectedPendingLocked(&evs)
					d.mu.Unlock()
					d.emit(evs)
				} else {
					d.resync(s.rescan)
				}
				if got := controllerInfo(t, d, name).Reconnects; got != s.wantReco {
					t.Fatalf("step %d: reconnects %d, want %d", i, got, s.wantReco)
				}
			}
			if diff := cmp.Diff(tc.wantOutages, obs.outages()); diff != "" {
				t.Errorf("outages (-want +got):\n%s", diff)
			}
		})
	}
}

type recordingObserver struct {
	NopObserver
	mu   sync.Mutex
	outs []time.Duration
}

func (o *recordingObserver) OutageEnded(_ string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.outs = append(o.outs, d)
}

func (o *recordingObserver) outages() []time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.outs
}

// TestPollTransitions: the poller records transitions, with nothing done
// when nothing changed.
func TestPollTransitions(t *testing.T) {
	e := newEnv(t, oneSubsystem("live"))
	d := e.start()
	d.resync(true)
	for _, st := range []string{"live", "resetting", "connecting", "connecting", "live"} {
		if err := sysfstest.SetState(e.root, "nvme0", st); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Second)
		d.resync(false)
	}
	var got []string
	for _, tr := range controllerInfo(t, d, "nvme0").Transitions {
		got = append(got, tr.From.String()+">"+tr.To.String())
	}
	want := []string{"live>resetting", "resetting>connecting", "connecting>live"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("transitions (-want +got):\n%s", diff)
	}
}

func TestVolumeHealth(t *testing.T) {
	for _, tc := range []struct {
		name   string
		states []string // the subsystem's controllers; the volume holds nvme0
		after  string   // nvme0's state after Attach
		gone   bool     // nvme0 removed after Attach
		want   VolumeHealth
	}{
		{name: "live", states: []string{"live"}, want: VolumeHealth{Condition: Healthy, Message: "nvme0 live"}},
		{name: "connecting", states: []string{"live"}, after: "connecting", want: VolumeHealth{
			Condition: Inaccessible, Reason: "ControllerConnecting", Message: "nvme0 connecting for 42s to 127.0.0.1:4420"}},
		{name: "resetting", states: []string{"live"}, after: "resetting", want: VolumeHealth{
			Condition: Inaccessible, Reason: "ControllerResetting", Message: "nvme0 resetting for 42s to 127.0.0.1:4420"}},
		{name: "deleting", states: []string{"live"}, after: "deleting (no IO)", want: VolumeHealth{
			Condition: Inaccessible, Reason: "ControllerDeleting", Message: "nvme0 deleting (no IO) for 42s to 127.0.0.1:4420"}},
		{name: "one path of two down", states: []string{"live", "connecting"}, want: VolumeHealth{
			Condition: Degraded, Reason: "ControllerConnecting", Message: "1 of 2 paths down: nvme1 connecting for 42s to 127.0.0.1:4421"}},
		{name: "own path down, other live", states: []string{"live", "live"}, after: "connecting", want: VolumeHealth{
			Condition: Degraded, Reason: "ControllerConnecting", Message: "1 of 2 paths down: nvme0 connecting for 42s to 127.0.0.1:4420"}},
		{name: "gone", states: []string{"live"}, gone: true, want: VolumeHealth{
			Condition: Inaccessible, Reason: "ControllerGone", Message: "nvme0 (" + volNQN(0) + ") is gone: disconnected while live (not by this driver)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, oneSubsystem(tc.states...))
			d := e.start()
			s := spec("pvc-0", volNQN(0), 1)
			if _, err := d.Attach(t.Context(), s); err != nil {
				t.Fatal(err)
			}
			if tc.after != "" {
				if err := sysfstest.SetState(e.root, "nvme0", tc.after); err != nil {
					t.Fatal(err)
				}
			}
			if tc.gone {
				if err := sysfstest.RemoveController(e.root, "nvme0"); err != nil {
					t.Fatal(err)
				}
			}
			d.resync(false)
			e.clock.Advance(42 * time.Second)
			got, err := d.VolumeHealth("pvc-0")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// Gone after an outage: whether ctrl_loss_tmo (600 s in the fixture)
	// had run out decides what the message says.
	for _, tc := range []struct {
		down time.Duration
		want string
	}{
		{601 * time.Second, "nvme0 (" + volNQN(0) + ") is gone: the kernel gave it up when ctrl_loss_tmo (10m0s) ran out, after 10m1s unreachable and 3 reconnect attempts; its I/O failed: stage the volume again (restart the pod) once the target is back"},
		{30 * time.Second, "nvme0 (" + volNQN(0) + ") is gone: removed while unreachable for 30s (before its ctrl_loss_tmo ran out: deleted by hand?)"},
	} {
		t.Run("gone after "+tc.down.String()+" down", func(t *testing.T) {
			e := newEnv(t, oneSubsystem("live"))
			d := e.start()
			if _, err := d.Attach(t.Context(), spec("pvc-0", volNQN(0), 1)); err != nil {
				t.Fatal(err)
			}
			if err := sysfstest.SetState(e.root, "nvme0", "connecting"); err != nil {
				t.Fatal(err)
			}
			d.resync(false)
			d.mu.Lock()
			d.ctrls["nvme0"].attempt = 3
			d.mu.Unlock()
			e.clock.Advance(tc.down)
			if err := sysfstest.RemoveController(e.root, "nvme0"); err != nil {
				t.Fatal(err)
			}
			d.resync(false)
			got, err := d.VolumeHealth("pvc-0")
			if err != nil {
				t.Fatal(err)
			}
			if got.Reason != "ControllerGone" || got.Message != tc.want {
				t.Errorf("health %s %q, want ControllerGone %q", got.Reason, got.Message, tc.want)
			}
		})
	}
	t.Run("attempt", func(t *testing.T) {
		e := newEnv(t, oneSubsystem("live"))
		d := e.start()
		if _, err := d.Attach(t.Context(), spec("pvc-0", volNQN(0), 1)); err != nil {
			t.Fatal(err)
		}
		sysfstest.SetState(e.root, "nvme0", "connecting")
		d.resync(false)
		d.mu.Lock()
		d.ctrls["nvme0"].attempt = 9
		d.mu.Unlock()
		e.clock.Advance(42 * time.Second)
		got, _ := d.VolumeHealth("pvc-0")
		if want := "nvme0 connecting for 42s to 127.0.0.1:4420, attempt 9"; got.Message != want {
			t.Errorf("message %q, want %q", got.Message, want)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		e := newEnv(t, oneSubsystem("live"))
		d := e.start()
		if _, err := d.VolumeHealth("nope"); err == nil || !isUnknown(err) {
			t.Errorf("error %v, want ErrUnknownVolume", err)
		}
	})
}

func TestStorageHealth(t *testing.T) {
	spec := sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{
		{Instance: 0, NQN: volNQN(0), Controllers: []sysfstest.Controller{{Instance: 0}, {Instance: 1, State: "connecting"}}},
		{Instance: 1, NQN: volNQN(1), Controllers: []sysfstest.Controller{{Instance: 2, State: "connecting", Address: "traddr=10.0.0.5,trsvcid=4420"}}},
		{Instance: 2, NQN: volNQN(2), Controllers: []sysfstest.Controller{{Instance: 3, Address: "traddr=::1,trsvcid=4420,src_addr=::1"}}},
	}}
	e := newEnv(t, spec)
	d := e.start()
	e.clock.Advance(42 * time.Second)
	want := []TargetHealth{
		{Traddr: "10.0.0.5", Trsvcid: "4420", Condition: Inaccessible, Reason: "TargetUnreachable",
			Message: "no live controller: nvme2 connecting for 42s to 10.0.0.5:4420", Controllers: []string{"nvme2"}},
		{Traddr: "127.0.0.1", Trsvcid: "4420", Condition: Degraded, Reason: "PathsDown",
			Message: "1 of 2 controllers not live: nvme1 connecting for 42s to 127.0.0.1:4420", Controllers: []string{"nvme0", "nvme1"}},
		{Traddr: "::1", Trsvcid: "4420", Condition: Healthy, Message: "nvme3 live", Controllers: []string{"nvme3"}},
	}
	if diff := cmp.Diff(want, d.StorageHealth()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestLowerLossTimeout(t *testing.T) {
	spec := sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{
		{Instance: 0, NQN: volNQN(0), Controllers: []sysfstest.Controller{ctrlSpec(0, "connecting")}},
		{Instance: 1, NQN: volNQN(1), Controllers: []sysfstest.Controller{ctrlSpec(1, "live")}},
		{Instance: 2, NQN: volNQN(2), Controllers: []sysfstest.Controller{{Instance: 2, State: "connecting"}}}, // not ours
	}}
	e := newEnv(t, spec)
	e.writeState(stateFile{Controllers: []owner{ownerRec("nvme0", volNQN(0), hostNQN), ownerRec("nvme1", volNQN(1), hostNQN)}})
	d := e.start()
	got, err := d.LowerLossTimeout(time.Minute, 5)
	if err != nil || len(got) != 0 {
		t.Fatalf("too early: %v, %v", got, err)
	}
	e.clock.Advance(2 * time.Minute)
	got, err = d.LowerLossTimeout(time.Minute, 5)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"nvme0"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if c := controllerInfo(t, d, "nvme0"); c.CtrlLossTmo != 5 {
		t.Errorf("ctrl_loss_tmo %d after lowering", c.CtrlLossTmo)
	}
}

var _ = sysfs.StateLive

// TestRelevant: the loop takes nvme controllers, nvme subsystems and nvme*
// block devices, and nothing else.
func TestRelevant(t *testing.T) {
	for _, tc := range []struct {
		ev   uevent.Event
		want bool
	}{
		{uevent.Event{Subsystem: "nvme"}, true},
		{uevent.Event{Subsystem: "nvme-subsystem"}, true},
		{uevent.Event{Subsystem: "block", DevName: "nvme0n1"}, true},
		{uevent.Event{Subsystem: "block", DevName: "sda"}, false},
		{uevent.Event{Subsystem: "hwmon"}, false},
		{uevent.Event{Subsystem: "nvme-generic"}, false},
	} {
		if got := relevant(&tc.ev); got != tc.want {
			t.Errorf("relevant(%+v) = %v", tc.ev, got)
		}
	}
}
