package metrics

import (
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/srvlab/rds-csi/routeros"
)

// commandBuckets span a RouterOS command (about 0.5 s on hardware per
// ROUTEROS.md) up to routeros.DefaultCommandTimeout (2 min; a copy's
// duration is unknown).
var commandBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

// RouterOS holds the controller's metrics of its RDS connections: commands
// by verb and result, their durations, SSH connections and their failures,
// waits for a session, and whether the RDS answers. Every series carries
// the label rds (the RDS's SSH address, as For was given it). It is a
// prometheus.Collector; NewControllerRegistry registers it. Safe for
// concurrent use.
type RouterOS struct {
	commands        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	connects        *prometheus.CounterVec
	connectFailures *prometheus.CounterVec
	waits           *prometheus.CounterVec
	waitSeconds     *prometheus.CounterVec
	up              *prometheus.GaugeVec

	mu   sync.Mutex
	rdss map[string]*RDS
}

// connectFailureClasses are the classes a connection attempt fails with
// (routeros.ErrorClass of SSHEvents.ConnectFailed's error).
var connectFailureClasses = []string{"unreachable", "auth", "host_key"}

// NewRouterOS returns the metrics, with no RDS yet (For adds one).
func NewRouterOS() *RouterOS {
	const sub = "routeros"
	return &RouterOS{
		rdss: map[string]*RDS{},
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "commands_total",
			Help: "RouterOS commands run on the RDS, and pings (verb=\"ping\": a session opened), by verb and result: success, or the class of the error (not_found, exists, no_space, unreachable, ...).",
		}, []string{"rds", "verb", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: sub, Name: "command_duration_seconds",
			Help:    "Duration of RouterOS commands and pings, from asking for a session to the answer (or the error), by verb.",
			Buckets: commandBuckets,
		}, []string{"rds", "verb"}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "ssh_connects_total",
			Help: "SSH connections made to the RDS (host key verified, key accepted), the first included: more than one means reconnects.",
		}, []string{"rds"}),
		connectFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "ssh_connect_failures_total",
			Help: "Failed SSH connection attempts (each retry counts), by class: unreachable (network, refused, timeout), auth (key refused), host_key (not in known_hosts, changed or revoked).",
		}, []string{"rds", "class"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "session_waits_total",
			Help: "Commands and pings that found every session of the bound (--rds-max-sessions) in use and waited for one.",
		}, []string{"rds"}),
		waitSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "session_wait_seconds_total",
			Help: "Time commands and pings spent waiting for a session of the bound.",
		}, []string{"rds"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: sub, Name: "up",
			Help: "Whether the RDS answered the last command or ping: 1, or 0 when it could not be reached (unreachable, key refused, host key not verified). Absent until the first command or ping.",
		}, []string{"rds"}),
	}
}

// RDS observes one RDS: its Command method is a routeros.Observer (for
// routeros.NewClient) and it implements routeros.SSHEvents (for
// routeros.SSHConfig.Events).
type RDS struct {
	m   *RouterOS
	rds string
}

var _ routeros.SSHEvents = (*RDS)(nil)

// For returns the observer of the RDS at addr (its SSH host:port); the
// first call for an address exports every series of it with zero values,
// so that rate() and increase() see its first event.
func (m *RouterOS) For(addr string) *RDS {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o, ok := m.rdss[addr]; ok {
		return o
	}
	for _, v := range append(routeros.Verbs(), routeros.PingVerb) {
		m.duration.WithLabelValues(addr, v)
		m.commands.WithLabelValues(addr, v, resultSuccess)
		for _, c := range routeros.ErrorClasses() {
			m.commands.WithLabelValues(addr, v, c)
		}
	}
	m.connects.WithLabelValues(addr)
	for _, c := range connectFailureClasses {
		m.connectFailures.WithLabelValues(addr, c)
	}
	m.waits.WithLabelValues(addr)
	m.waitSeconds.WithLabelValues(addr)
	o := &RDS{m: m, rds: addr}
	m.rdss[addr] = o
	return o
}

// unreachable reports whether err means the RDS was not reached.
func unreachable(err error) bool {
	return errors.Is(err, routeros.ErrUnreachable) || errors.Is(err, routeros.ErrAuth) || errors.Is(err, routeros.ErrHostKey)
}

// Command observes one command or ping (a routeros.Observer).
func (o *RDS) Command(verb string, err error, d time.Duration) {
	result := resultSuccess
	if err != nil {
		result = routeros.ErrorClass(err)
	}
	o.m.commands.WithLabelValues(o.rds, verb, result).Inc()
	o.m.duration.WithLabelValues(o.rds, verb).Observe(d.Seconds())
	up := 1.0
	if unreachable(err) {
		up = 0
	}
	o.m.up.WithLabelValues(o.rds).Set(up)
}

// Connected implements routeros.SSHEvents.
func (o *RDS) Connected(bool) { o.m.connects.WithLabelValues(o.rds).Inc() }

// ConnectFailed implements routeros.SSHEvents.
func (o *RDS) ConnectFailed(err error) {
	class := routeros.ErrorClass(err)
	if class != "auth" && class != "host_key" {
		class = "unreachable"
	}
	o.m.connectFailures.WithLabelValues(o.rds, class).Inc()
}

// SessionWait implements routeros.SSHEvents.
func (o *RDS) SessionWait(d time.Duration) {
	o.m.waits.WithLabelValues(o.rds).Inc()
	o.m.waitSeconds.WithLabelValues(o.rds).Add(d.Seconds())
}

func (m *RouterOS) vecs() []prometheus.Collector {
	return []prometheus.Collector{m.commands, m.duration, m.connects, m.connectFailures, m.waits, m.waitSeconds, m.up}
}

// Describe implements prometheus.Collector.
func (m *RouterOS) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range m.vecs() {
		v.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *RouterOS) Collect(ch chan<- prometheus.Metric) {
	for _, v := range m.vecs() {
		v.Collect(ch)
	}
}

// buildInfo exports rds_csi_build_info alone (the node's Collector exports
// it with the daemon's state).
type buildInfo struct{ version string }

func (b buildInfo) Describe(ch chan<- *prometheus.Desc) { ch <- descBuildInfo }

func (b buildInfo) Collect(ch chan<- prometheus.Metric) {
	gauge(ch, descBuildInfo, 1, b.version, runtime.Version())
}

// NewControllerRegistry returns the registry of --mode=controller: m,
// rds_csi_build_info and the Go runtime and process collectors.
func NewControllerRegistry(m *RouterOS, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, buildInfo{version},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
