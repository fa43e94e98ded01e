package metrics

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestObserverConnectDone(t *testing.T) {
	cases := []struct {
		name         string
		class        string
		took         time.Duration
		wantResult   string
		wantBucketLE string // the smallest bucket the observation falls in
	}{
		{"success", "", 40 * time.Millisecond, resultSuccess, "0.05"},
		{"unreachable is a failure", "unreachable", 10 * time.Second, resultFailure, "10"},
		{"canceled is a failure", "canceled", 2 * time.Minute, resultFailure, "+Inf"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := NewObserver()
			o.ConnectDone(tc.class, tc.took)
			for _, r := range results {
				want := 0
				if r == tc.wantResult {
					want = 1
				}
				if got := histCount(t, o, "rds_csi_connect_duration_seconds", "result", r); got != uint64(want) {
					t.Errorf("result=%s: count %d, want %d", r, got, want)
				}
			}
			if got := bucketCount(t, o, "rds_csi_connect_duration_seconds", tc.wantBucketLE); got != 1 {
				t.Errorf("bucket le=%s holds %d observations, want 1", tc.wantBucketLE, got)
			}
		})
	}
}

func TestObserverOutageEnded(t *testing.T) {
	o := NewObserver()
	o.OutageEnded("nvme1", 45*time.Second)
	o.OutageEnded("nvme2", 3*time.Hour)
	want := `
# HELP rds_csi_controller_outage_duration_seconds Duration of ended controller outages: from leaving live to live again.
# TYPE rds_csi_controller_outage_duration_seconds histogram
rds_csi_controller_outage_duration_seconds_bucket{le="1"} 0
rds_csi_controller_outage_duration_seconds_bucket{le="2"} 0
rds_csi_controller_outage_duration_seconds_bucket{le="5"} 0
rds_csi_controller_outage_duration_seconds_bucket{le="10"} 0
rds_csi_controller_outage_duration_seconds_bucket{le="30"} 0
rds_csi_controller_outage_duration_seconds_bucket{le="60"} 1
rds_csi_controller_outage_duration_seconds_bucket{le="120"} 1
rds_csi_controller_outage_duration_seconds_bucket{le="300"} 1
rds_csi_controller_outage_duration_seconds_bucket{le="600"} 1
rds_csi_controller_outage_duration_seconds_bucket{le="1800"} 1
rds_csi_controller_outage_duration_seconds_bucket{le="3600"} 1
rds_csi_controller_outage_duration_seconds_bucket{le="7200"} 1
rds_csi_controller_outage_duration_seconds_bucket{le="21600"} 2
rds_csi_controller_outage_duration_seconds_bucket{le="86400"} 2
rds_csi_controller_outage_duration_seconds_bucket{le="+Inf"} 2
rds_csi_controller_outage_duration_seconds_sum 10845
rds_csi_controller_outage_duration_seconds_count 2
`
	if err := testutil.CollectAndCompare(o, strings.NewReader(want), "rds_csi_controller_outage_duration_seconds"); err != nil {
		t.Error(err)
	}
}

// TestObserverCountEventsIgnored: the events the daemon counts itself
// (exported from the snapshot) add no series to the observer.
func TestObserverCountEventsIgnored(t *testing.T) {
	o := NewObserver()
	before := testutil.CollectAndCount(o)
	o.Reconnect("nvme1")
	o.OrphanFound("nvme2")
	o.OrphanDisconnected("nvme2")
	o.UEvent()
	o.UEventOverflow()
	o.Resync()
	if after := testutil.CollectAndCount(o); after != before {
		t.Errorf("series: %d before, %d after count-only events", before, after)
	}
	// 2 connect histograms (success, failure) and the outage histogram.
	if before != 3 {
		t.Errorf("observer exports %d series, want 3", before)
	}
}

// TestObserverConcurrent runs the observer from many goroutines while it is
// scraped (go test -race catches unsafe use).
func TestObserverConcurrent(t *testing.T) {
	o := NewObserver()
	reg := testRegistry(t, &fakeSource{snap: populatedSnapshot()}, o)
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				class := ""
				if (w+i)%3 == 0 {
					class = "unreachable"
				}
				o.ConnectDone(class, time.Duration(i)*time.Millisecond)
				o.OutageEnded("nvme1", time.Duration(i)*time.Second)
			}
		}()
	}
	for range 20 {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	total := histCount(t, o, "rds_csi_connect_duration_seconds", "result", resultSuccess) +
		histCount(t, o, "rds_csi_connect_duration_seconds", "result", resultFailure)
	if total != workers*each {
		t.Errorf("connect observations: %d, want %d", total, workers*each)
	}
	if got := histCount(t, o, "rds_csi_controller_outage_duration_seconds", "", ""); got != workers*each {
		t.Errorf("outage observations: %d, want %d", got, workers*each)
	}
}

// histCount is the sample count of the histogram series of family name
// whose label has value (any series when label is "").
func histCount(t *testing.T, o *Observer, name, label, value string) uint64 {
	t.Helper()
	reg := testRegistry(t, &fakeSource{}, o)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || labelValue(m, label) == value {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, label, value)
	return 0
}

// bucketCount is the number of observations of family name that fall in
// the bucket ending at le and in no smaller one, summed over series.
func bucketCount(t *testing.T, o *Observer, name, le string) uint64 {
	t.Helper()
	reg := testRegistry(t, &fakeSource{}, o)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			var prev uint64
			for _, b := range h.GetBucket() {
				if formatLE(b.GetUpperBound()) == le {
					n += b.GetCumulativeCount() - prev
				}
				prev = b.GetCumulativeCount()
			}
			if le == "+Inf" {
				n += h.GetSampleCount() - prev
			}
		}
	}
	return n
}
