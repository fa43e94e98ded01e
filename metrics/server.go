package metrics

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with a Collector for src, obs (nil for
// none) and the Go runtime and process collectors.
func NewRegistry(src Source, obs *Observer, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(src, version),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if obs != nil {
		reg.MustRegister(obs)
	}
	return reg
}

// HealthFuncs answer the probes.
type HealthFuncs struct {
	// Alive answers /healthz: nil while the plugin is alive (the event loop
	// makes progress, see LoopProgress; main adds that its sockets answer).
	// A nil func means always alive.
	Alive func() error
	// Ready answers /readyz: true once the first reconcile has finished
	// ((*daemon.Daemon).Ready). A nil func means always ready.
	Ready func() bool
}

// Handler serves GET /metrics from g, /healthz and /readyz.
func Handler(g prometheus.Gatherer, h HealthFuncs) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if h.Alive != nil {
			if err := h.Alive(); err != nil {
				http.Error(w, "not alive: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if h.Ready != nil && !h.Ready() {
			http.Error(w, "not ready: the first reconcile is running", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

// NewServer returns an HTTP server for addr with Handler(g, h); the caller
// starts it (ListenAndServe, or Serve on its own listener) and shuts it down.
func NewServer(addr string, g prometheus.Gatherer, h HealthFuncs) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           Handler(g, h),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}

// LoopProgress returns an Alive func for HealthFuncs: it fails when the
// daemon's event loop has finished no pass (poll or full re-read, counted in
// the snapshot) for longer than maxStall, measured on the snapshot's clock.
// The poller asks for a pass every Config.PollInterval, so a live loop moves
// the count every second or so; maxStall should be many poll intervals
// (a full re-read on a busy node can take a while). Before the loop's first
// pass it reports alive: start-up is what readiness is for.
func LoopProgress(src Source, maxStall time.Duration) func() error {
	var (
		mu     sync.Mutex
		last   int64
		seenAt time.Time
	)
	return func() error {
		s := src.Snapshot()
		passes := s.Counters.Polls + s.Counters.Resyncs
		now := s.Taken
		if now.IsZero() {
			now = time.Now()
		}
		mu.Lock()
		defer mu.Unlock()
		if passes != last || seenAt.IsZero() {
			last, seenAt = passes, now
			return nil
		}
		if passes == 0 {
			return nil
		}
		if stalled := now.Sub(seenAt); stalled > maxStall {
			return fmt.Errorf("event loop made no pass for %s (%d passes so far)", stalled.Truncate(time.Second), passes)
		}
		return nil
	}
}
