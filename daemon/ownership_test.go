package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// intentOfSpec is the intent a connect for s records.
func intentOfSpec(s Spec) connectIntent {
	return intentOf(s.VolumeID, keyOf(&s.Options), newClock().Now())
}

// TestConnectIntentBeforeWrite: the intent is in the state file when the
// kernel sees the connect write, and resolved (into ownership) when the
// write has returned.
func TestConnectIntentBeforeWrite(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	d := e.start()
	s := spec("pvc-1", volNQN(1), 1)
	var during stateFile
	e.conn.onConnect = func() { during = e.readState() }
	if _, err := d.Attach(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]connectIntent{intentOfSpec(s)}, during.Intents); diff != "" {
		t.Errorf("intents during the write (-want +got):\n%s", diff)
	}
	if len(during.Controllers) != 0 {
		t.Errorf("owned during the write: %v", during.Controllers)
	}
	after := e.readState()
	if len(after.Intents) != 0 || len(after.Controllers) != 1 || after.Controllers[0].Name != "nvme0" {
		t.Errorf("after the write: owned %v, intents %v; want nvme0 owned and no intent", after.Controllers, after.Intents)
	}
}

// TestConnectIntentFailedWrite: a failed write drops the intent, and a
// write whose reply did not parse (the kernel accepted it) resolves it from
// sysfs: the controller it made is owned, so orphan cleanup takes it.
func TestConnectIntentFailedWrite(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		made      bool // the kernel made the controller before the error
		wantOwned []string
	}{
		{name: "refused", err: fmt.Errorf("connect: %w: host not allowed", fabrics.ErrRejected)},
		{name: "reply did not parse", err: fmt.Errorf("connect: %w: \"garbage\"", fabrics.ErrUnexpectedReply),
			made: true, wantOwned: []string{"nvme0"}},
		{name: "reply did not parse, nothing made", err: fmt.Errorf("connect: %w: \"\"", fabrics.ErrUnexpectedReply)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, sysfstest.Spec{Multipath: true})
			d := e.start()
			e.conn.failAlways = tc.err
			if tc.made {
				e.conn.onConnect = func() {
					if err := sysfstest.Build(e.root, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{{
						Instance: 0, NQN: volNQN(1), Controllers: []sysfstest.Controller{ctrlSpec(0, "live")},
					}}}); err != nil {
						t.Error(err)
					}
				}
			}
			if _, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 1)); !errors.Is(err, tc.err) {
				t.Fatalf("Attach: %v, want %v", err, tc.err)
			}
			st := e.readState()
			if len(st.Intents) != 0 {
				t.Errorf("intents left: %v", st.Intents)
			}
			if diff := cmp.Diff(tc.wantOwned, e.ownedNames()); diff != "" {
				t.Errorf("owned (-want +got):\n%s", diff)
			}
			if !tc.made {
				return
			}
			e.clock.Advance(e.cfg.OrphanGrace / 2)
			d.cleanup(t.Context())
			e.clock.Advance(e.cfg.OrphanGrace)
			d.cleanup(t.Context())
			if diff := cmp.Diff([]string{"nvme0"}, e.conn.disconnected()); diff != "" {
				t.Errorf("disconnected by orphan cleanup (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConnectIntentNotWritten: without a durable intent there is no
// connect write.
func TestConnectIntentNotWritten(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	d := e.start()
	// A directory where the state file goes: the rename onto it fails.
	if err := os.MkdirAll(filepath.Join(e.state, stateFileName, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 1)); err == nil {
		t.Fatal("Attach succeeded without a state file")
	}
	if n := e.conn.connectCount(); n != 0 {
		t.Errorf("%d connect writes without a durable intent, want 0", n)
	}
}

// TestConnectIntentAtStart: a daemon killed between the connect write and
// the ownership record leaves an intent; the next Start owns the one
// controller with the intent's identity (so orphan cleanup removes it after
// the grace period) and drops the intent either way.
func TestConnectIntentAtStart(t *testing.T) {
	ours := spec("pvc-1", volNQN(1), 1)
	anyHost := ours
	anyHost.Options.HostNQN, anyHost.Options.HostID = "", ""
	withHost := func(inst int, hostnqn string) sysfstest.Controller {
		return sysfstest.Controller{Instance: inst, Attrs: map[string]string{"hostnqn": hostnqn}}
	}
	for _, tc := range []struct {
		name      string
		intent    Spec
		ctrls     []sysfstest.Controller // of subsystem volNQN(1) at 127.0.0.1:4420
		wantOwned []string
	}{
		{name: "the write made it", intent: ours, ctrls: []sysfstest.Controller{ctrlSpec(0, "live")}, wantOwned: []string{"nvme0"}},
		{name: "the write made it, reconnecting now", intent: ours, ctrls: []sysfstest.Controller{ctrlSpec(0, "connecting")},
			wantOwned: []string{"nvme0"}},
		{name: "killed before the write", intent: ours},
		{name: "being deleted", intent: ours, ctrls: []sysfstest.Controller{ctrlSpec(0, "deleting")}},
		{name: "another host NQN", intent: ours, ctrls: []sysfstest.Controller{withHost(0, otherNQN)}},
		{name: "default host, one candidate", intent: anyHost, ctrls: []sysfstest.Controller{withHost(0, otherNQN)},
			wantOwned: []string{"nvme0"}},
		{name: "default host, two candidates", intent: anyHost,
			ctrls: []sysfstest.Controller{withHost(0, otherNQN), withHost(1, hostNQN)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := sysfstest.Spec{Multipath: true}
			if len(tc.ctrls) > 0 {
				sp.Subsystems = []sysfstest.Subsystem{{Instance: 0, NQN: volNQN(1), Controllers: tc.ctrls}}
			}
			e := newEnv(t, sp)
			e.writeState(stateFile{Intents: []connectIntent{intentOfSpec(tc.intent)}})
			d := e.start()
			st := e.readState()
			if len(st.Intents) != 0 {
				t.Errorf("intents left after Start: %v", st.Intents)
			}
			if diff := cmp.Diff(tc.wantOwned, e.ownedNames()); diff != "" {
				t.Errorf("owned (-want +got):\n%s", diff)
			}
			e.clock.Advance(2 * e.cfg.OrphanGrace)
			d.cleanup(t.Context())
			if diff := cmp.Diff(tc.wantOwned, e.conn.disconnected()); diff != "" {
				t.Errorf("disconnected by orphan cleanup (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConnectIntentAtStartRetriedStage: the stage retried after the restart
// finds the controller the killed daemon made, owned, and its unstage
// disconnects it (the crash proof's path).
func TestConnectIntentAtStartRetriedStage(t *testing.T) {
	s := spec("pvc-1", volNQN(1), 1)
	e := newEnv(t, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{{
		Instance: 0, NQN: volNQN(1), Controllers: []sysfstest.Controller{ctrlSpec(0, "live")},
		Namespaces: []sysfstest.Namespace{{NSID: 1}},
	}}})
	e.writeState(stateFile{Intents: []connectIntent{intentOfSpec(s)}})
	d := e.start()
	a, err := d.Attach(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	if a.Controller != "nvme0" || e.conn.connectCount() != 0 || !controllerInfo(t, d, "nvme0").Owned {
		t.Fatalf("retried stage on %s after %d connects, owned %v; want nvme0, owned, no connect",
			a.Controller, e.conn.connectCount(), controllerInfo(t, d, "nvme0").Owned)
	}
	if err := d.Detach(t.Context(), "pvc-1"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"nvme0"}, e.conn.disconnected()); diff != "" {
		t.Errorf("disconnected at unstage (-want +got):\n%s", diff)
	}
}
