package routeros

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/routeros/rdstest"
)

// recorder is an SSHEvents that keeps what it is told.
type recorder struct {
	mu       sync.Mutex
	connects []bool   // reconnect flags
	failures []string // ErrorClass of each failure
	waits    []time.Duration
}

func (r *recorder) Connected(reconnect bool) {
	r.mu.Lock()
	r.connects = append(r.connects, reconnect)
	r.mu.Unlock()
}

func (r *recorder) ConnectFailed(err error) {
	r.mu.Lock()
	r.failures = append(r.failures, ErrorClass(err))
	r.mu.Unlock()
}

func (r *recorder) SessionWait(d time.Duration) {
	r.mu.Lock()
	r.waits = append(r.waits, d)
	r.mu.Unlock()
}

func (r *recorder) get() ([]bool, []string, []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.connects...), append([]string(nil), r.failures...), append([]time.Duration(nil), r.waits...)
}

// TestSSHEventsConnects: the first connection is not a reconnect, the one
// after a dropped connection is; refused keys and a closed server are
// connect failures of their class; a ping reaches the Client's Observer.
func TestSSHEventsConnects(t *testing.T) {
	rec := &recorder{}
	srv, tr, _ := emulator(t, rdstest.Options{}, func(c *SSHConfig) { c.Events = rec })
	var pings []string
	c := NewClient(tr, func(verb string, err error, _ time.Duration) {
		if verb == PingVerb {
			pings = append(pings, ErrorClass(err))
		}
	})
	ctx := context.Background()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	srv.DropConnections()
	if _, err := c.Disks(ctx, ""); err != nil {
		t.Fatal(err)
	}
	connects, failures, _ := rec.get()
	if len(connects) != 2 || connects[0] || !connects[1] || len(failures) != 0 {
		t.Fatalf("connects %v failures %v, want [false true] and none", connects, failures)
	}
	srv.RejectAuth(true)
	srv.DropConnections()
	if err := c.Ping(ctx); !errors.Is(err, ErrAuth) {
		t.Fatalf("ping with a refused key: %v", err)
	}
	srv.Close()
	if err := c.Ping(ctx); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("ping of a closed server: %v", err)
	}
	connects, failures, _ = rec.get()
	// auth is not retried; unreachable is, up to Backoff.Steps (3) attempts
	want := []string{"auth", "unreachable", "unreachable", "unreachable"}
	if len(connects) != 2 || len(failures) != len(want) {
		t.Fatalf("connects %v failures %v, want 2 connects and %v", connects, failures, want)
	}
	for i := range want {
		if failures[i] != want[i] {
			t.Errorf("failure %d: %s, want %s", i, failures[i], want[i])
		}
	}
	if len(pings) != 3 || pings[0] != "" || pings[1] != "auth" || pings[2] != "unreachable" {
		t.Errorf("pings observed %v, want [ auth unreachable]", pings)
	}
}

// TestSSHEventsSessionWait: a command that finds every session in use
// reports one wait; commands that find a free session report none.
func TestSSHEventsSessionWait(t *testing.T) {
	rec := &recorder{}
	srv, _, c := emulator(t, rdstest.Options{}, func(c *SSHConfig) { c.Events = rec; c.MaxSessions = 1 })
	ctx := context.Background()
	if _, err := c.Disks(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, waits := rec.get(); len(waits) != 0 {
		t.Fatalf("waits %v with a free session", waits)
	}
	srv.Hang("/file print")
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := c.Files(hctx, testDir); done <- err }()
	for len(srv.Commands()) < 2 { // the hung command reached the server
		select {
		case err := <-done:
			t.Fatalf("hung command ended: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	wctx, wcancel := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() { _, err := c.Disks(wctx, ""); wdone <- err }()
	// The waiting command can only end by its context: end it, then free
	// the session.
	wcancel()
	if err := <-wdone; !errors.Is(err, ErrUnreachable) {
		t.Errorf("waiting command: %v, want ErrUnreachable (context ended while waiting)", err)
	}
	cancel()
	<-done
	_, _, waits := rec.get()
	if len(waits) != 1 {
		t.Errorf("waits %v, want exactly one", waits)
	}
}

// TestSessionOpenBoundByContext: on a connection whose peer no longer
// answers (session opens get no reply), a ping and a command end with their
// context instead of waiting for TCP to give up, and the connection is
// dropped so the next call makes a new one.
func TestSessionOpenBoundByContext(t *testing.T) {
	rec := &recorder{}
	srv, _, c := emulator(t, rdstest.Options{}, func(c *SSHConfig) { c.Events = rec })
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.SilentSessions(true)
	for name, call := range map[string]func(context.Context) error{
		"ping":    c.Ping,
		"command": func(ctx context.Context) error { _, err := c.Disks(ctx, ""); return err },
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		errc := make(chan error, 1)
		go func() { errc <- call(ctx) }()
		select {
		case err := <-errc:
			if !errors.Is(err, ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s on a silent connection: %v, want ErrUnreachable with the deadline", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s on a silent connection did not end with its context", name)
		}
		cancel()
	}
	srv.SilentSessions(false)
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("ping once the RDS answers again: %v", err)
	}
	if connects, _, _ := rec.get(); len(connects) < 2 || !connects[len(connects)-1] {
		t.Errorf("connects %v: want a new connection after the silent one", connects)
	}
}
