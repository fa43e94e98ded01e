//go:build linux

package kerneltest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/metrics"
)

// TestMetricsOutage scrapes /metrics while the target port is unlinked and
// relinked: the state series moves live -> connecting -> live, the reconnect
// counter goes 0 -> 1 and one outage duration is observed.
func TestMetricsOutage(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "metrics")
	obs := metrics.NewObserver()
	d, _ := startDaemon(t, t.TempDir(), func(c *daemon.Config) { c.Observer = obs })
	srv := httptest.NewServer(metrics.Handler(metrics.NewRegistry(d, obs, "lab"), metrics.HealthFuncs{Ready: d.Ready}))
	defer srv.Close()
	scrape := func() string {
		resp, err := http.Get(srv.URL + "/metrics")
		must(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		must(t, err)
		return string(b)
	}
	value := func(expo, family, match string) string {
		for _, l := range strings.Split(expo, "\n") {
			if (strings.HasPrefix(l, family+"{") || strings.HasPrefix(l, family+" ")) && strings.Contains(l, match) {
				return l[strings.LastIndexByte(l, ' ')+1:]
			}
		}
		return ""
	}
	state := func(expo, st string) string {
		return value(expo, "rds_csi_controller_state", `state="`+st+`",subsysnqn="`+nqn+`"`)
	}

	att, err := d.Attach(context.Background(), volumeSpec("vol-metrics", nqn, port))
	must(t, err)
	must(t, d.MarkStaged("vol-metrics", "/staging/vol-metrics", true))
	before := scrape()
	if state(before, "live") != "1" || value(before, "rds_csi_controller_reconnects_total", nqn) != "0" {
		t.Fatalf("before the outage: live=%q reconnects=%q", state(before, "live"), value(before, "rds_csi_controller_reconnects_total", nqn))
	}
	if value(before, "rds_csi_volumes_staged", "") != "1" {
		t.Errorf("rds_csi_volumes_staged = %q, want 1", value(before, "rds_csi_volumes_staged", ""))
	}

	must(t, tg.Unlink(port, nqn))
	eventually(t, 5*time.Second, "state series connecting", func() (bool, string) {
		e := scrape()
		return state(e, "connecting") == "1" && state(e, "live") == "0", "connecting=" + state(e, "connecting")
	})
	must(t, tg.Relink(port, nqn))
	eventually(t, 10*time.Second, "live again, one reconnect, one outage observed", func() (bool, string) {
		e := scrape()
		r := value(e, "rds_csi_controller_reconnects_total", nqn)
		n := value(e, "rds_csi_controller_outage_duration_seconds_count", "")
		return state(e, "live") == "1" && r == "1" && n == "1", "reconnects=" + r + " outages=" + n
	})
	t.Logf("controller %s: state and reconnect series moved as expected", att.Controller)
	must(t, d.Detach(context.Background(), "vol-metrics"))
}
