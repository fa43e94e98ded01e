package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/srvlab/rds-csi/routeros"
	"github.com/srvlab/rds-csi/routeros/rdstest"
)

const testRDS = "10.0.0.1:22"

// feedRouterOS sends an RDS observer a few events of each kind.
func feedRouterOS(o *RDS) {
	o.Connected(false)
	o.Command("disk-add", nil, 400*time.Millisecond)
	o.Command("disk-print", nil, 80*time.Millisecond)
	o.Command("disk-add", fmt.Errorf("x: %w", routeros.ErrNoSpace), 300*time.Millisecond)
	o.Command(routeros.PingVerb, nil, 20*time.Millisecond)
	o.SessionWait(1500 * time.Millisecond)
	o.ConnectFailed(fmt.Errorf("x: %w", routeros.ErrUnreachable))
	o.Connected(true)
}

// populatedRouterOSRegistry is the controller's exporter (without the Go
// and process collectors) after a few events, in a pedantic registry.
func populatedRouterOSRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	m := NewRouterOS()
	feedRouterOS(m.For(testRDS))
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(m); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(buildInfo{"v1.2.3-test"}); err != nil {
		t.Fatal(err)
	}
	return reg
}

// value finds the value of the series name{labels} (a counter, a gauge, or
// a histogram's sample count) in g; ok is false when there is none.
func value(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

// TestRouterOSSeries: For exports every verb x result, the connect failure
// classes and the waits with zero values; up is absent until the first
// command.
func TestRouterOSSeries(t *testing.T) {
	m := NewRouterOS()
	m.For(testRDS)
	reg := NewControllerRegistry(m, "v1")
	want := len(append(routeros.Verbs(), routeros.PingVerb)) * (1 + len(routeros.ErrorClasses()))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "rds_csi_routeros_commands_total" && len(mf.GetMetric()) != want {
			t.Errorf("%d command series, want %d (every verb and result)", len(mf.GetMetric()), want)
		}
	}
	for _, s := range []struct {
		name   string
		labels map[string]string
	}{
		{"rds_csi_routeros_commands_total", map[string]string{"verb": "disk-copy", "result": "no_space"}},
		{"rds_csi_routeros_commands_total", map[string]string{"verb": "ping", "result": "success"}},
		{"rds_csi_routeros_command_duration_seconds", map[string]string{"verb": "file-remove"}},
		{"rds_csi_routeros_ssh_connects_total", nil},
		{"rds_csi_routeros_ssh_connect_failures_total", map[string]string{"class": "host_key"}},
		{"rds_csi_routeros_session_waits_total", nil},
		{"rds_csi_routeros_session_wait_seconds_total", nil},
		{"rds_csi_build_info", map[string]string{"version": "v1"}},
	} {
		if v, ok := value(t, reg, s.name, s.labels); !ok || (v != 0 && s.name != "rds_csi_build_info") {
			t.Errorf("%s%v = %v, %v; want a zero series", s.name, s.labels, v, ok)
		}
	}
	if _, ok := value(t, reg, "rds_csi_routeros_up", nil); ok {
		t.Error("rds_csi_routeros_up exported before any command")
	}
}

// TestRouterOSEmulated wires the metrics into a real SSH transport and
// Client against the emulated RDS, as --mode=controller does, and checks
// what they count: commands by verb and result, pings, connects and
// reconnects, connect failures by class, and up.
func TestRouterOSEmulated(t *testing.T) {
	srv, err := rdstest.Start(rdstest.Options{PoolSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	m := NewRouterOS()
	obs := m.For(srv.Addr())
	tr, err := routeros.NewSSH(routeros.SSHConfig{Address: srv.Addr(), User: srv.User(), PrivateKey: srv.ClientKeyPEM(),
		KnownHosts: srv.KnownHosts(), Events: obs,
		Backoff: wait.Backoff{Duration: time.Millisecond, Factor: 2, Steps: 2},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	c := routeros.NewClient(tr, obs.Command)
	reg := NewControllerRegistry(m, "v1")
	ctx := context.Background()
	slot, _ := routeros.SlotFor("pvc-metrics")
	spec := routeros.DiskSpec{Slot: slot, FilePath: "/storage-pool/rds-csi/" + slot + ".img", Size: 1 << 20,
		Port: 4420, NQN: "nqn.2000-02.com.mikrotik:" + slot}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateDisk(ctx, spec); err != nil {
		t.Fatal(err)
	}
	big := spec
	big.Slot, _ = routeros.SlotFor("pvc-too-big")
	big.FilePath = "/storage-pool/rds-csi/" + big.Slot + ".img"
	big.Size = 64 << 20
	if _, err := c.CreateDisk(ctx, big); !errors.Is(err, routeros.ErrNoSpace) {
		t.Fatalf("create beyond the pool: %v", err)
	}
	srv.DropConnections()
	if _, err := c.Disk(ctx, spec.Slot); err != nil {
		t.Fatal(err)
	}
	check := func(name string, labels map[string]string, want float64) {
		t.Helper()
		labels["rds"] = srv.Addr()
		if got, ok := value(t, reg, name, labels); !ok || got != want {
			t.Errorf("%s%v = %v (present %v), want %v", name, labels, got, ok, want)
		}
	}
	check("rds_csi_routeros_commands_total", map[string]string{"verb": "ping", "result": "success"}, 1)
	check("rds_csi_routeros_commands_total", map[string]string{"verb": "disk-add", "result": "success"}, 1)
	check("rds_csi_routeros_commands_total", map[string]string{"verb": "disk-add", "result": "no_space"}, 1)
	check("rds_csi_routeros_commands_total", map[string]string{"verb": "disk-print", "result": "success"}, 2)
	check("rds_csi_routeros_command_duration_seconds", map[string]string{"verb": "disk-add"}, 2)
	check("rds_csi_routeros_ssh_connects_total", map[string]string{}, 2)
	check("rds_csi_routeros_up", map[string]string{}, 1)

	srv.Close()
	if err := c.Ping(ctx); !errors.Is(err, routeros.ErrUnreachable) {
		t.Fatalf("ping of a stopped RDS: %v", err)
	}
	check("rds_csi_routeros_commands_total", map[string]string{"verb": "ping", "result": "unreachable"}, 1)
	check("rds_csi_routeros_ssh_connect_failures_total", map[string]string{"class": "unreachable"}, 2)
	check("rds_csi_routeros_up", map[string]string{}, 0)
	if text := exposition(t, reg); !strings.Contains(text, `rds_csi_routeros_up{rds="`+srv.Addr()+`"} 0`) {
		t.Errorf("exposition lacks up 0:\n%s", text)
	}
}
