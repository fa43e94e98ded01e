package metrics

import (
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// exposition returns what GET /metrics serves for g, in the text format.
func exposition(t *testing.T, g prometheus.Gatherer) string {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	Handler(g, HealthFuncs{}).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name   string
		golden string
		reg    func(t *testing.T) *prometheus.Registry
	}{
		{
			name:   "populated snapshot and observer after events",
			golden: "populated.prom",
			reg:    populatedRegistry,
		},
		{
			name:   "empty registry, nothing observed",
			golden: "empty.prom",
			reg: func(t *testing.T) *prometheus.Registry {
				return testRegistry(t, &fakeSource{snap: daemon.Snapshot{Taken: taken}}, NewObserver())
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := tt.reg(t)
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, []byte(exposition(t, reg)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := testutil.GatherAndCompare(reg, f); err != nil {
				t.Errorf("exposition differs from %s (go test -run TestGolden -update rewrites it):\n%v", path, err)
			}
		})
	}
}

func TestLint(t *testing.T) {
	problems, err := testutil.GatherAndLint(populatedRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestNamesAndLabels checks the rules the exposition must keep, over
// every family: the namespace, _total exactly on counters, and label
// values from fixed enums or the registry's controllers.
func TestNamesAndLabels(t *testing.T) {
	mfs, err := populatedRegistry(t).Gather()
	if err != nil {
		t.Fatal(err)
	}
	ctrlNames := map[string]bool{}
	for _, c := range populatedSnapshot().Controllers {
		ctrlNames[c.Name] = true
	}
	enums := map[string]map[string]bool{
		"state":  set(stateNames()...),
		"owned":  set("true", "false"),
		"result": set(results...),
		"class":  set(fabrics.ErrorClasses()...),
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "rds_csi_") {
			t.Errorf("%s: not in the rds_csi namespace", name)
		}
		isCounter := mf.GetType().String() == "COUNTER"
		if isCounter != strings.HasSuffix(name, "_total") {
			t.Errorf("%s: type %s, but _total suffix is %v", name, mf.GetType(), !isCounter)
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				switch {
				case lp.GetName() == "controller":
					if !ctrlNames[lp.GetValue()] {
						t.Errorf("%s: controller %q is not in the registry", name, lp.GetValue())
					}
				case enums[lp.GetName()] != nil:
					if !enums[lp.GetName()][lp.GetValue()] {
						t.Errorf("%s: %s=%q is not in its enum", name, lp.GetName(), lp.GetValue())
					}
				}
			}
		}
	}
}

func stateNames() []string {
	var out []string
	for _, s := range sysfs.States() {
		out = append(out, s.String())
	}
	return out
}

func set(vals ...string) map[string]bool {
	m := map[string]bool{}
	for _, v := range vals {
		m[v] = true
	}
	return m
}

// TestStateSet checks that exactly one member of the state set is 1, for
// every state and for values outside sysfs.States.
func TestStateSet(t *testing.T) {
	cases := []struct {
		name  string
		state sysfs.State
		want  string
	}{
		{"live", sysfs.StateLive, "live"},
		{"connecting", sysfs.StateConnecting, "connecting"},
		{"deleting no IO", sysfs.StateDeletingNoIO, "deleting (no IO)"},
		{"unknown", sysfs.StateUnknown, "unknown"},
		{"out of range", sysfs.State(200), "unknown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			snap := daemon.Snapshot{Taken: taken, Controllers: []daemon.ControllerInfo{{
				Name: "nvme7", Transport: "tcp", State: tc.state, Since: taken.Add(-time.Minute),
			}}}
			got := map[string]float64{}
			for _, m := range gatherFamily(t, &fakeSource{snap: snap}, "rds_csi_controller_state") {
				got[labelValue(m, "state")] = m.GetGauge().GetValue()
			}
			want := map[string]float64{}
			for _, s := range stateNames() {
				want[s] = 0
			}
			want[tc.want] = 1
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("state set (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDurations checks not_live_seconds, reconnect_attempt and
// orphaned_seconds, which depend on state, ownership and the clock.
func TestDurations(t *testing.T) {
	cases := []struct {
		name                                   string
		ci                                     daemon.ControllerInfo
		taken                                  time.Time
		wantNotLive, wantAttempt, wantOrphaned float64
	}{
		{
			name:  "live controller reports no outage and no attempt",
			ci:    daemon.ControllerInfo{State: sysfs.StateLive, Since: taken.Add(-time.Hour), Attempt: 3},
			taken: taken,
		},
		{
			name:        "connecting for 90s, attempt 9",
			ci:          daemon.ControllerInfo{State: sysfs.StateConnecting, Since: taken.Add(-90 * time.Second), Attempt: 9},
			taken:       taken,
			wantNotLive: 90, wantAttempt: 9,
		},
		{
			name:  "not live with an unknown since reports 0",
			ci:    daemon.ControllerInfo{State: sysfs.StateResetting},
			taken: taken,
		},
		{
			name:  "since in the future (clock step) reports 0",
			ci:    daemon.ControllerInfo{State: sysfs.StateConnecting, Since: taken.Add(time.Minute)},
			taken: taken,
		},
		{
			name:         "owned and unreferenced for 2m",
			ci:           daemon.ControllerInfo{State: sysfs.StateLive, Owned: true, UnreferencedSince: taken.Add(-2 * time.Minute)},
			taken:        taken,
			wantOrphaned: 120,
		},
		{
			name: "referenced controller is no orphan",
			ci:   daemon.ControllerInfo{State: sysfs.StateLive, Owned: true, Referenced: true, UnreferencedSince: taken.Add(-2 * time.Minute)},
		},
		{
			name: "foreign controller is no orphan",
			ci:   daemon.ControllerInfo{State: sysfs.StateLive, UnreferencedSince: taken.Add(-2 * time.Minute)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.ci.Name, tc.ci.Transport = "nvme5", "tcp"
			src := &fakeSource{snap: daemon.Snapshot{Taken: taken, Controllers: []daemon.ControllerInfo{tc.ci}}}
			for name, want := range map[string]float64{
				"rds_csi_controller_not_live_seconds":  tc.wantNotLive,
				"rds_csi_controller_reconnect_attempt": tc.wantAttempt,
				"rds_csi_controller_orphaned_seconds":  tc.wantOrphaned,
			} {
				ms := gatherFamily(t, src, name)
				if len(ms) != 1 {
					t.Fatalf("%s: %d series, want 1", name, len(ms))
				}
				if got := ms[0].GetGauge().GetValue(); got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
		})
	}
}

// TestNoTakenUsesClock: a snapshot without a Taken time is measured
// against the collector's clock.
func TestNoTakenUsesClock(t *testing.T) {
	c := NewCollector(&fakeSource{snap: daemon.Snapshot{Controllers: []daemon.ControllerInfo{{
		Name: "nvme1", Transport: "tcp", State: sysfs.StateConnecting, Since: taken.Add(-time.Minute),
	}}}}, "dev")
	c.now = func() time.Time { return taken }
	want := `
# HELP rds_csi_controller_not_live_seconds How long the controller has not been live (now minus the time its current state was first seen); 0 when live.
# TYPE rds_csi_controller_not_live_seconds gauge
rds_csi_controller_not_live_seconds{controller="nvme1",subsysnqn="",traddr="",trsvcid=""} 60
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "rds_csi_controller_not_live_seconds"); err != nil {
		t.Error(err)
	}
}

// TestFabricsOnlyTimeouts: PCIe controllers have no fabrics timeouts, so
// they export none (a 0 would read as "ctrl_loss_tmo expires at once").
func TestFabricsOnlyTimeouts(t *testing.T) {
	src := &fakeSource{snap: populatedSnapshot()}
	for _, name := range []string{
		"rds_csi_controller_ctrl_loss_timeout_seconds", "rds_csi_controller_reconnect_delay_seconds",
		"rds_csi_controller_keep_alive_timeout_seconds", "rds_csi_controller_fast_io_fail_timeout_seconds",
	} {
		var got []string
		for _, m := range gatherFamily(t, src, name) {
			got = append(got, labelValue(m, "controller"))
		}
		if diff := cmp.Diff([]string{"nvme0", "nvme1", "nvme2", "nvme4"}, got); diff != "" {
			t.Errorf("%s: controllers (-want +got):\n%s", name, diff)
		}
	}
}

// TestScrapeReadsSnapshotOnce: one scrape is one registry copy.
func TestScrapeReadsSnapshotOnce(t *testing.T) {
	src := &fakeSource{snap: populatedSnapshot()}
	reg := testRegistry(t, src, nil)
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if src.calls != 1 {
		t.Errorf("Snapshot called %d times for one scrape, want 1", src.calls)
	}
}

// TestSeriesFollowRegistry: a controller that leaves the registry leaves
// the exposition at the next scrape (no stale series).
func TestSeriesFollowRegistry(t *testing.T) {
	snap := populatedSnapshot()
	src := &fakeSource{snap: snap}
	reg := testRegistry(t, src, nil)
	before, err := testutil.GatherAndCount(reg, "rds_csi_controller_info")
	if err != nil {
		t.Fatal(err)
	}
	snap.Controllers = snap.Controllers[:2]
	src.set(snap)
	after, err := testutil.GatherAndCount(reg, "rds_csi_controller_info")
	if err != nil {
		t.Fatal(err)
	}
	if before != 5 || after != 2 {
		t.Errorf("rds_csi_controller_info series: %d then %d, want 5 then 2", before, after)
	}
}

// gatherFamily returns the metrics of one family for a collector on src.
func gatherFamily(t *testing.T, src Source, name string) []*dto.Metric {
	t.Helper()
	mfs, err := testRegistry(t, src, nil).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	t.Fatalf("no family %s", name)
	return nil
}

func labelValue(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// readAll reads a response body.
func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
