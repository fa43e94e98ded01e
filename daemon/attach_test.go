package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/internal/uevent"
	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

var (
	errRefused  = fmt.Errorf("connect: %w: connection refused", fabrics.ErrUnreachable)
	errRejected = fmt.Errorf("connect: %w: input/output error", fabrics.ErrRejected)
	errAuth     = fmt.Errorf("connect: %w: key was rejected by service", fabrics.ErrAuth)
)

func TestAttachConnectsThenReuses(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	d := e.start()
	a1, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 1))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := d.Attach(t.Context(), spec("pvc-2", volNQN(1), 2))
	if err != nil {
		t.Fatal(err)
	}
	want := []Attachment{
		{Controller: "nvme0", Device: "/dev/nvme0n1", NewVolume: true},
		{Controller: "nvme0", Device: "/dev/nvme0n2", Adopted: true, NewVolume: true},
	}
	if a1.Timing.Attempts != 1 || a2.Timing.Attempts != 0 || a2.Timing.ConnectWrite != 0 ||
		a1.Timing.SysfsRead <= 0 || a1.Timing.StateFile <= 0 || a2.Timing.StateFile != 0 {
		t.Errorf("timings %+v and %+v: want one connect write, a read back and a state file write for the first, none for the reuse", a1.Timing, a2.Timing)
	}
	got := []Attachment{a1, a2}
	for i := range got {
		got[i].Namespace, got[i].Timing = sysfs.Namespace{}, AttachTiming{}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if n := e.conn.connectCount(); n != 1 {
		t.Errorf("%d connects, want 1", n)
	}
	if diff := cmp.Diff([]string{"nvme0"}, e.ownedNames()); diff != "" {
		t.Errorf("owned (-want +got):\n%s", diff)
	}
	// Attach again (kubelet retry): same answer, no connect.
	if _, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 1)); err != nil {
		t.Fatal(err)
	}
	if n := e.conn.connectCount(); n != 1 {
		t.Errorf("%d connects after a repeated Attach, want 1", n)
	}
}

// TestAttachNewVolume: NewVolume is false only for an Attach of a staged volume: an attached
// volume never marked staged, or one whose last Attach failed, is what an
// earlier failed stage left.
func TestAttachNewVolume(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	d := e.start()
	attach := func(want bool) {
		t.Helper()
		a, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 1))
		if err != nil {
			t.Fatal(err)
		}
		if a.NewVolume != want {
			t.Errorf("NewVolume %v, want %v", a.NewVolume, want)
		}
	}
	attach(true)
	attach(true) // attached, never staged
	if err := d.MarkStaged("pvc-1", e.staging+"/pvc-1", false); err != nil {
		t.Fatal(err)
	}
	attach(false) // staged
	if err := d.Detach(t.Context(), "pvc-1"); err != nil {
		t.Fatal(err)
	}
	e.conn.failAlways = errRejected
	if _, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 1)); !errors.Is(err, fabrics.ErrRejected) {
		t.Fatalf("attach: %v, want rejected", err)
	}
	if v, ok := d.Volume("pvc-1"); !ok || v.State != VolumeFailed {
		t.Fatalf("after a failed attach: %+v, want failed", v)
	}
	e.conn.failAlways = nil
	attach(true) // the failed record held nothing
}

// TestAttachExisting: a controller that exists before Start is reused but
// never owned, whatever its host NQN (one connected by hand with nvme-cli
// and /etc/nvme/hostnqn has ours): Detach leaves it connected. Differing
// timeouts are updated.
func TestAttachExisting(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hostnqn string
		attrs   map[string]string
		opts    func(*fabrics.Options)
		wantTmo bool
	}{
		{name: "our host NQN, same timeouts", hostnqn: hostNQN,
			opts: func(o *fabrics.Options) { o.CtrlLossTmo = fabrics.Int(600); o.ReconnectDelay = fabrics.Int(10) }},
		{name: "our host NQN, rounded ctrl_loss_tmo is the same", hostnqn: hostNQN,
			attrs: map[string]string{"ctrl_loss_tmo": "6", "reconnect_delay": "2"},
			opts:  func(o *fabrics.Options) { o.CtrlLossTmo = fabrics.Int(5); o.ReconnectDelay = fabrics.Int(2) }},
		{name: "our host NQN, other timeouts", hostnqn: hostNQN, wantTmo: true,
			opts: func(o *fabrics.Options) { o.CtrlLossTmo = fabrics.Int(-1); o.FastIOFailTmo = fabrics.Int(5) }},
		{name: "the spec names the controller's host NQN", hostnqn: otherNQN,
			opts: func(o *fabrics.Options) { o.HostNQN = otherNQN }},
		{name: "no host NQN in the spec", hostnqn: otherNQN,
			opts: func(o *fabrics.Options) { o.HostNQN, o.HostID = "", "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attrs := map[string]string{"hostnqn": tc.hostnqn, "hostid": hostID}
			for k, v := range tc.attrs {
				attrs[k] = v
			}
			e := newEnv(t, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{{
				Instance: 0, NQN: volNQN(1),
				Controllers: []sysfstest.Controller{{Instance: 0, Attrs: attrs}},
				Namespaces:  []sysfstest.Namespace{{NSID: 1}},
			}}})
			d := e.start()
			s := spec("pvc-1", volNQN(1), 1)
			tc.opts(&s.Options)
			a, err := d.Attach(t.Context(), s)
			if err != nil {
				t.Fatal(err)
			}
			if !a.Adopted || a.Controller != "nvme0" || a.TimeoutsUpdated != tc.wantTmo {
				t.Errorf("attachment %+v", a)
			}
			if n := e.conn.connectCount(); n != 0 {
				t.Errorf("%d connects, want 0", n)
			}
			if c := controllerInfo(t, d, "nvme0"); c.Owned {
				t.Error("a controller the driver did not create is owned")
			}
			if tc.wantTmo {
				c := controllerInfo(t, d, "nvme0")
				if c.CtrlLossTmo != -1 || c.FastIOFailTmo != 5 {
					t.Errorf("timeouts after update: ctrl_loss_tmo %d fast_io_fail_tmo %d", c.CtrlLossTmo, c.FastIOFailTmo)
				}
			}
			if err := d.MarkStaged("pvc-1", e.staging+"/pvc-1", false); err != nil {
				t.Fatal(err)
			}
			if owned := e.ownedNames(); len(owned) != 0 {
				t.Errorf("state file owns %v, want nothing", owned)
			}
			// Detach leaves a controller the driver did not create connected,
			// and so does orphan cleanup.
			if err := d.Detach(t.Context(), "pvc-1"); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(2 * e.cfg.OrphanGrace)
			d.cleanup(t.Context())
			e.clock.Advance(2 * e.cfg.OrphanGrace)
			d.cleanup(t.Context())
			if got := e.conn.disconnected(); len(got) != 0 {
				t.Errorf("disconnected %v, want nothing", got)
			}
		})
	}
}

// TestAttachAdoptedOnEALREADY: a controller the registry has not seen yet
// (connected by hand a moment ago, with our host NQN) is adopted through the
// connect's EALREADY; it serves the volume but is never owned, so neither
// Detach nor orphan cleanup disconnects it.
func TestAttachAdoptedOnEALREADY(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	d := e.start()
	// The hand connect: in sysfs, not yet in the registry.
	if err := sysfstest.Build(e.root, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{{
		Instance: 0, NQN: volNQN(1),
		Controllers: []sysfstest.Controller{{Instance: 0, Address: "traddr=127.0.0.1,trsvcid=4420", Attrs: map[string]string{"hostnqn": hostNQN, "hostid": hostID}}},
		Namespaces:  []sysfstest.Namespace{{NSID: 1}},
	}}}); err != nil {
		t.Fatal(err)
	}
	a, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 1))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Adopted || a.Controller != "nvme0" || e.conn.connectCount() != 1 {
		t.Fatalf("attachment %+v after %d connects, want nvme0 adopted through one connect", a, e.conn.connectCount())
	}
	if c := controllerInfo(t, d, "nvme0"); c.Owned {
		t.Error("a controller adopted on EALREADY is owned")
	}
	st := e.readState()
	if len(st.Controllers) != 0 || len(st.Intents) != 0 {
		t.Errorf("state file owns %v with intents %v, want neither", st.Controllers, st.Intents)
	}
	if err := d.MarkStaged("pvc-1", e.staging+"/pvc-1", false); err != nil {
		t.Fatal(err)
	}
	if h, err := d.VolumeHealth("pvc-1"); err != nil || h.Condition != Healthy {
		t.Errorf("health of a volume on a borrowed controller: %+v, %v", h, err)
	}
	if err := d.Detach(t.Context(), "pvc-1"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * e.cfg.OrphanGrace)
	d.cleanup(t.Context())
	if got := e.conn.disconnected(); len(got) != 0 {
		t.Errorf("disconnected %v, want nothing", got)
	}
}

func TestAttachRetry(t *testing.T) {
	for _, tc := range []struct {
		name       string
		errs       []error
		always     error
		wantCalls  int
		wantErr    error
		wantReason string
	}{
		{name: "retryable then success", errs: []error{errRefused, errRefused}, wantCalls: 3},
		{name: "rejected is tried three times", always: errRejected, wantCalls: 3, wantErr: fabrics.ErrRejected, wantReason: "TargetRejected"},
		{name: "rejected once (a timed-out connect) then success", errs: []error{errRejected}, wantCalls: 2},
		{name: "auth is not retried", errs: []error{errAuth}, wantCalls: 1, wantErr: fabrics.ErrAuth, wantReason: "AuthenticationFailed"},
		{name: "unreachable until the steps run out", always: errRefused, wantCalls: 5, wantErr: fabrics.ErrUnreachable, wantReason: "TargetUnreachable"},
		{name: "retryable then rejected", errs: []error{errRefused, errRejected, errRejected}, always: errRejected, wantCalls: 3, wantErr: fabrics.ErrRejected, wantReason: "TargetRejected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, sysfstest.Spec{Multipath: true})
			e.conn.errs, e.conn.failAlways = tc.errs, tc.always
			d := e.start()
			att, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 1))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Attach error %v, want %v", err, tc.wantErr)
			}
			if err == nil && att.Timing.Attempts != tc.wantCalls {
				t.Errorf("Timing.Attempts %d, want %d", att.Timing.Attempts, tc.wantCalls)
			}
			if n := e.conn.connectCount(); n != tc.wantCalls {
				t.Errorf("%d connects, want %d", n, tc.wantCalls)
			}
			h, herr := d.VolumeHealth("pvc-1")
			if herr != nil {
				t.Fatal(herr)
			}
			if tc.wantErr != nil && (h.Condition != Inaccessible || h.Reason != tc.wantReason) {
				t.Errorf("health %+v, want Inaccessible %s", h, tc.wantReason)
			}
			if tc.wantErr == nil && h.Condition != Healthy {
				t.Errorf("health %+v, want Healthy", h)
			}
			c := d.Snapshot().Counters
			if got := c.ConnectSuccesses + c.ConnectFailures; got != int64(tc.wantCalls) {
				t.Errorf("connect counters %d, want %d", got, tc.wantCalls)
			}
		})
	}
}

// TestAttachRetryBoundedByContext: a long backoff ends with the caller's
// context, and the error says both.
func TestAttachRetryBoundedByContext(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	e.conn.failAlways = errRefused
	e.cfg.backoff.Duration, e.cfg.backoff.Steps = time.Hour, 5
	ctx, cancel := context.WithCancel(t.Context())
	e.cfg.Observer = cancelOnConnect{cancel} // cancel while the backoff sleeps
	d := e.start()
	_, err := d.Attach(ctx, spec("pvc-1", volNQN(1), 1))
	if !errors.Is(err, context.Canceled) || !errors.Is(err, fabrics.ErrUnreachable) {
		t.Fatalf("error %v, want context.Canceled and ErrUnreachable", err)
	}
	if n := e.conn.connectCount(); n != 1 {
		t.Errorf("%d connects, want 1", n)
	}
}

// TestConnectConcurrencyBound: no more than MaxConcurrentConnects connect
// writes at once, and a caller waiting for a slot gives up with its context.
func TestConnectConcurrencyBound(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	e.cfg.MaxConcurrentConnects = 2
	e.conn.gate = make(chan struct{})
	e.conn.entered = make(chan struct{}, 100)
	d := e.start()
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range 5 {
		wg.Go(func() {
			_, errs[i] = d.Attach(t.Context(), spec(fmt.Sprintf("pvc-%d", i), volNQN(i), 1))
		})
	}
	<-e.conn.entered
	<-e.conn.entered
	// Both slots are taken by silent targets: a caller with a short
	// context gives up waiting.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() {
		_, err := d.Attach(ctx, spec("pvc-x", volNQN(99), 1))
		done <- err
	}()
	waitFor(t, "pvc-x to wait for a connect slot", func() bool {
		v, ok := d.Volume("pvc-x")
		return ok && v.State == VolumeAttaching
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("waiting caller: %v, want context.Canceled", err)
	}
	if h, _ := d.VolumeHealth("pvc-x"); h.Reason != "Canceled" {
		t.Errorf("health of the cancelled volume %+v", h)
	}
	close(e.conn.gate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("attach %d: %v", i, err)
		}
	}
	e.conn.mu.Lock()
	defer e.conn.mu.Unlock()
	if e.conn.maxInflight != 2 {
		t.Errorf("max concurrent connects %d, want 2", e.conn.maxInflight)
	}
}

func TestAttachDeviceTimeout(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	e.cfg.DeviceTimeout = 20 * time.Millisecond
	d := e.start()
	_, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 7)) // the target has nsid 1 and 2
	if !errors.Is(err, ErrDeviceTimeout) {
		t.Fatalf("error %v, want ErrDeviceTimeout", err)
	}
	h, _ := d.VolumeHealth("pvc-1")
	if h.Condition != Inaccessible || h.Reason != "DeviceNotFound" {
		t.Errorf("health %+v", h)
	}
	// The controller stays owned, unreferenced: cleanup's business.
	if c := controllerInfo(t, d, "nvme0"); !c.Owned || c.Referenced || c.UnreferencedSince.IsZero() {
		t.Errorf("nvme0 after the failed attach: %+v", c)
	}
}

// TestDeviceWaiter: a disk that is already there is found without a wake-up;
// one that appears later is found on the block uevent.
func TestDeviceWaiter(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{{
		Instance: 0, NQN: volNQN(0), Controllers: []sysfstest.Controller{{Instance: 0}},
		Namespaces: []sysfstest.Namespace{{NSID: 1}},
	}}})
	d := e.start()
	ns, err := d.waitDevice(t.Context(), volNQN(0), 1)
	if err != nil || ns.Name != "nvme0n1" {
		t.Fatalf("present disk: %+v, %v", ns, err)
	}

	type result struct {
		ns  sysfs.Namespace
		err error
	}
	res := make(chan result)
	go func() {
		ns, err := d.waitDevice(t.Context(), volNQN(1), 1)
		res <- result{ns, err}
	}()
	waitFor(t, "the waiter to subscribe", d.waiters.any)
	if err := sysfstest.Build(e.root, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{{
		Instance: 1, NQN: volNQN(1), Controllers: []sysfstest.Controller{{Instance: 1}},
		Namespaces: []sysfstest.Namespace{{NSID: 1}},
	}}}); err != nil {
		t.Fatal(err)
	}
	d.handleUEvent(&uevent.Event{Action: "add", Subsystem: "block", DevName: "nvme1n1", DevPath: "/devices/virtual/nvme-subsystem/nvme-subsys1/nvme1n1"})
	r := <-res
	if r.err != nil || r.ns.Name != "nvme1n1" {
		t.Fatalf("disk that appeared: %+v, %v", r.ns, r.err)
	}
}

func TestTimeoutsToUpdate(t *testing.T) {
	cur := sysfs.Controller{CtrlLossTmo: 600, ReconnectDelay: 10, FastIOFailTmo: -1}
	for _, tc := range []struct {
		name string
		opts fabrics.Options
		want fabrics.Timeouts
		ok   bool
	}{
		{name: "unset"},
		{name: "same", opts: fabrics.Options{CtrlLossTmo: fabrics.Int(600), ReconnectDelay: fabrics.Int(10), FastIOFailTmo: fabrics.Int(-1)}},
		{name: "rounded up to whole delays", opts: fabrics.Options{CtrlLossTmo: fabrics.Int(595)}},
		{name: "ctrl_loss_tmo", opts: fabrics.Options{CtrlLossTmo: fabrics.Int(-1)},
			want: fabrics.Timeouts{CtrlLossTmo: fabrics.Int(-1)}, ok: true},
		{name: "delay alone keeps ctrl_loss_tmo", opts: fabrics.Options{ReconnectDelay: fabrics.Int(2)},
			want: fabrics.Timeouts{ReconnectDelay: fabrics.Int(2), CtrlLossTmo: fabrics.Int(600)}, ok: true},
		{name: "fast_io_fail_tmo", opts: fabrics.Options{FastIOFailTmo: fabrics.Int(5)},
			want: fabrics.Timeouts{FastIOFailTmo: fabrics.Int(5)}, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := timeoutsToUpdate(&tc.opts, &cur)
			if ok != tc.ok {
				t.Fatalf("ok = %v", ok)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b fabrics.OptInt) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFailureReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("x: %w", ErrDeviceTimeout), "DeviceNotFound"},
		{errRejected, "TargetRejected"},
		{errRefused, "TargetUnreachable"},
		{errAuth, "AuthenticationFailed"},
		{fmt.Errorf("%w: %w", context.Canceled, errRefused), "TargetUnreachable"},
		{context.DeadlineExceeded, "Timeout"},
		{&fabrics.OptionError{Field: "traddr"}, "InvalidOption"},
		{errors.New("boom"), "AttachFailed"},
	} {
		if got := failureReason(tc.err); got != tc.want {
			t.Errorf("failureReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

type cancelOnConnect struct {
	cancel context.CancelFunc
}

func (c cancelOnConnect) ConnectDone(string, time.Duration) { c.cancel() }
func (cancelOnConnect) OutageEnded(string, time.Duration)   {}
func (cancelOnConnect) Reconnect(string)                    {}
func (cancelOnConnect) OrphanFound(string)                  {}
func (cancelOnConnect) OrphanDisconnected(string)           {}
func (cancelOnConnect) UEvent()                             {}
func (cancelOnConnect) UEventOverflow()                     {}
func (cancelOnConnect) Resync()                             {}
