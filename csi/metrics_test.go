package csi

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/routeros"
)

// rdsEvents records, per RDS address, the verbs of the commands and the
// connections made (a routeros.Observer and routeros.SSHEvents).
type rdsEvents struct {
	mu       sync.Mutex
	verbs    map[string][]string
	connects map[string]int
}

type addrEvents struct {
	r    *rdsEvents
	addr string
}

func (a addrEvents) Connected(bool) {
	a.r.mu.Lock()
	a.r.connects[a.addr]++
	a.r.mu.Unlock()
}
func (a addrEvents) ConnectFailed(error)       {}
func (a addrEvents) SessionWait(time.Duration) {}
func (a addrEvents) command(verb string, _ error, _ time.Duration) {
	a.r.mu.Lock()
	a.r.verbs[a.addr] = append(a.r.verbs[a.addr], verb)
	a.r.mu.Unlock()
}

// TestPooledClientMetrics: the pooled client of another RDS reports its
// commands and connections to the observers ControllerConfig.Metrics gives
// for that RDS's address.
func TestPooledClientMetrics(t *testing.T) {
	a, b := startRDS(t), startRDS(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run, err := routeros.NewSSH(routeros.SSHConfig{Address: a.Addr(), User: a.User(),
		PrivateKey: a.ClientKeyPEM(), KnownHosts: a.KnownHosts(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	rec := &rdsEvents{verbs: map[string][]string{}, connects: map[string]int{}}
	c, err := NewController(ControllerConfig{Client: routeros.NewClient(run, nil), RDSAddress: a.Addr(),
		VolumeDir: testVolumeDir, NQNBase: "nqn.2000-02.com.mikrotik", Credentials: credsOf(a), Logger: log,
		Metrics: func(addr string) (routeros.Observer, routeros.SSHEvents) {
			e := addrEvents{rec, addr}
			return e.command, e
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e := &twoRDS{c: c, a: a, b: b}
	if _, err := e.create(t, "pvc-metrics", b, secretOf(b)); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	got := map[string]int{}
	for _, v := range rec.verbs[b.Addr()] {
		got[v]++
	}
	if got["disk-add"] != 1 || got["disk-print"] == 0 {
		t.Errorf("commands observed for %s: %v, want its add and prints", b.Addr(), rec.verbs[b.Addr()])
	}
	if rec.connects[b.Addr()] != 1 {
		t.Errorf("connections observed: %v, want one to %s", rec.connects, b.Addr())
	}
	if len(rec.verbs[a.Addr()]) != 0 {
		t.Errorf("commands observed for the default RDS %s through Metrics: %v (its client has its own observer)", a.Addr(), rec.verbs[a.Addr()])
	}
}
