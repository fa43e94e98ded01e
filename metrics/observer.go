package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/srvlab/rds-csi/daemon"
)

// Bucket upper bounds, in seconds.
var (
	// connectBuckets span a local target answering in milliseconds to a
	// silent peer that the kernel gives up on after about 10 s.
	connectBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60}
	// outageBuckets span a path blip to a target that is down for a day.
	outageBuckets = []float64{1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400}
)

// Observer implements daemon.Observer: it keeps the histograms that need
// every event (connect durations by result, outage durations). Counts the
// daemon keeps itself (reconnects, orphans, uevents, resyncs, connect errors
// by class) are exported by the Collector from the snapshot instead, so they
// are right even when no Observer is wired. Observer is a
// prometheus.Collector; register it with the Collector (NewRegistry does).
// Its methods are safe for concurrent use.
type Observer struct {
	daemon.NopObserver

	connectDuration *prometheus.HistogramVec
	outageDuration  prometheus.Histogram
}

// NewObserver returns an Observer with every series initialised.
func NewObserver() *Observer {
	o := &Observer{
		connectDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Subsystem: "connect",
			Name:      "duration_seconds",
			Help:      "Duration of connect writes to /dev/nvme-fabrics, by result (success, failure).",
			Buckets:   connectBuckets,
		}, []string{"result"}),
		outageDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace,
			Subsystem: "controller",
			Name:      "outage_duration_seconds",
			Help:      "Duration of ended controller outages: from leaving live to live again.",
			Buckets:   outageBuckets,
		}),
	}
	for _, r := range results {
		o.connectDuration.WithLabelValues(r)
	}
	return o
}

var (
	_ daemon.Observer      = (*Observer)(nil)
	_ prometheus.Collector = (*Observer)(nil)
)

// ConnectDone observes one connect write; class is "" on success.
func (o *Observer) ConnectDone(class string, d time.Duration) {
	result := resultSuccess
	if class != "" {
		result = resultFailure
	}
	o.connectDuration.WithLabelValues(result).Observe(d.Seconds())
}

// OutageEnded observes the duration of an outage of a controller.
func (o *Observer) OutageEnded(_ string, d time.Duration) {
	o.outageDuration.Observe(d.Seconds())
}

// Describe implements prometheus.Collector.
func (o *Observer) Describe(ch chan<- *prometheus.Desc) {
	o.connectDuration.Describe(ch)
	o.outageDuration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (o *Observer) Collect(ch chan<- prometheus.Metric) {
	o.connectDuration.Collect(ch)
	o.outageDuration.Collect(ch)
}
