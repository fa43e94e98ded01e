package daemon

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCleanup(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dryRun  bool
		advance []time.Duration // clock steps, a cleanup pass after each
		want    []string        // disconnected controllers
		owned   []string        // state file afterwards
	}{
		{name: "restart never disconnects at once", advance: []time.Duration{0}, owned: []string{"nvme0", "nvme1", "nvme2"}},
		{name: "inside the grace period", advance: []time.Duration{4 * time.Minute}, owned: []string{"nvme0", "nvme1", "nvme2"}},
		{name: "after the grace period", advance: []time.Duration{5 * time.Minute}, want: []string{"nvme2"}, owned: []string{"nvme0", "nvme1"}},
		{name: "dry run", dryRun: true, advance: []time.Duration{time.Hour, time.Hour}, owned: []string{"nvme0", "nvme1", "nvme2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, rebuildSpec(true))
			stage0 := filepath.Join(e.staging, "v0")
			e.writeMounts(fsMount(40, devOf(t, e.root, 0).Dev.String(), stage0))
			e.writeState(stateFile{Controllers: []owner{
				ownerRec("nvme0", volNQN(0), hostNQN), // referenced through a recovered mount
				ownerRec("nvme1", volNQN(1), hostNQN), // attached below
				ownerRec("nvme2", volNQN(2), hostNQN), // orphan
			}})
			e.cfg.CleanupDryRun = tc.dryRun
			d := e.start()
			if _, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 1)); err != nil {
				t.Fatal(err)
			}
			var acts []CleanupAction
			for _, step := range tc.advance {
				e.clock.Advance(step)
				acts = d.cleanup(t.Context())
			}
			if diff := cmp.Diff(tc.want, e.conn.disconnected()); diff != "" {
				t.Errorf("disconnected (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.owned, e.ownedNames()); diff != "" {
				t.Errorf("owned (-want +got):\n%s", diff)
			}
			if tc.dryRun {
				if len(acts) != 1 || acts[0].Action != "would-disconnect" || acts[0].Controller != "nvme2" {
					t.Errorf("dry run actions %+v", acts)
				}
			}
			// nvme1 and nvme2 at Start (nvme1 before its Attach).
			if got := d.Snapshot().Counters.OrphansFound; got != 2 {
				t.Errorf("OrphansFound = %d, want 2", got)
			}
		})
	}
}

// TestCleanupNeverTouchesUnowned: controllers with another host NQN, or not
// in the state file, stay whatever happens.
func TestCleanupNeverTouchesUnowned(t *testing.T) {
	e := newEnv(t, rebuildSpec(true))
	d := e.start()
	e.clock.Advance(24 * time.Hour)
	d.cleanup(t.Context())
	e.clock.Advance(24 * time.Hour)
	d.cleanup(t.Context())
	if got := e.conn.disconnected(); len(got) != 0 {
		t.Errorf("disconnected %v", got)
	}
}

// TestCleanupSparesMounted: a mount that appears after Start (for
// example csi mounted between Attach and MarkStaged, then crashed) keeps
// the controller.
func TestCleanupSparesMounted(t *testing.T) {
	e := newEnv(t, rebuildSpec(true))
	e.writeState(stateFile{Controllers: []owner{ownerRec("nvme2", volNQN(2), hostNQN)}})
	d := e.start()
	e.writeMounts(blockMount(40, devOf(t, e.root, 2).Name, filepath.Join(e.staging, "x", "pvc")))
	e.clock.Advance(time.Hour)
	d.cleanup(t.Context())
	if got := e.conn.disconnected(); len(got) != 0 {
		t.Errorf("disconnected %v under a mount", got)
	}
	// Unmounted: the grace clock starts afresh.
	e.writeMounts()
	d.cleanup(t.Context())
	e.clock.Advance(4 * time.Minute)
	d.cleanup(t.Context())
	if got := e.conn.disconnected(); len(got) != 0 {
		t.Errorf("disconnected %v inside the grace period", got)
	}
	e.clock.Advance(time.Minute)
	d.cleanup(t.Context())
	if diff := cmp.Diff([]string{"nvme2"}, e.conn.disconnected()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
