package metrics

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/daemon"
)

// promtool returns the promtool to run: $PROMTOOL, else promtool on PATH.
// Without one the test is skipped, or fails when RDS_CSI_REQUIRE_PROMTOOL=1
// (make monitoring-check sets both: make promtool builds the pinned one).
func promtool(t *testing.T) string {
	t.Helper()
	path := os.Getenv("PROMTOOL")
	if path == "" {
		path, _ = exec.LookPath("promtool")
	}
	if path != "" {
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	msg := "promtool not found (set PROMTOOL, or run make promtool; make monitoring-check does both)"
	if os.Getenv("RDS_CSI_REQUIRE_PROMTOOL") == "1" {
		t.Fatalf("%s; RDS_CSI_REQUIRE_PROMTOOL=1", msg)
	}
	t.Skip(msg)
	return ""
}

// runPromtool runs promtool with args in dir, stdin from in, and fails the
// test with its output when it exits non-zero.
func runPromtool(t *testing.T, dir, in string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool(t), args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(in)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
}

// TestPromtoolCheckMetrics lints what GET /metrics serves with
// promtool check metrics (the same linter Prometheus users run).
func TestPromtoolCheckMetrics(t *testing.T) {
	cases := []struct {
		name string
		src  *fakeSource
	}{
		{"populated", &fakeSource{snap: populatedSnapshot()}},
		{"empty", &fakeSource{snap: daemon.Snapshot{Taken: taken}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obs := NewObserver()
			feedObserver(obs)
			runPromtool(t, ".", exposition(t, NewRegistry(tc.src, obs, "v1.2.3")), "check", "metrics")
		})
	}
}

// TestPromtoolCheckControllerMetrics lints what --mode=controller serves.
func TestPromtoolCheckControllerMetrics(t *testing.T) {
	m := NewRouterOS()
	feedRouterOS(m.For(testRDS))
	runPromtool(t, ".", exposition(t, NewControllerRegistry(m, "v1.2.3")), "check", "metrics")
}

// TestPromtoolRules checks the alert rules and runs their unit tests.
func TestPromtoolRules(t *testing.T) {
	runPromtool(t, monitoringDir, "", "check", "rules", "alerts.yaml")
	runPromtool(t, monitoringDir, "", "test", "rules", "alerts_test.yaml")
}
