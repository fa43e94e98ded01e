package metrics

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/daemon"
)

func TestHandler(t *testing.T) {
	var ready atomic.Bool
	var aliveErr atomic.Pointer[error]
	h := HealthFuncs{
		Alive: func() error {
			if p := aliveErr.Load(); p != nil {
				return *p
			}
			return nil
		},
		Ready: ready.Load,
	}
	srv := httptest.NewServer(Handler(populatedRegistry(t), h))
	defer srv.Close()

	stalled := errors.New("event loop made no pass for 3m0s")
	cases := []struct {
		name       string
		setup      func()
		method     string
		path       string
		wantStatus int
		wantBody   string // a substring
	}{
		{"metrics", func() {}, http.MethodGet, "/metrics", 200, `rds_csi_controller_state{controller="nvme1",state="connecting"`},
		{"healthz alive", func() {}, http.MethodGet, "/healthz", 200, "ok"},
		{"healthz stalled", func() { aliveErr.Store(&stalled) }, http.MethodGet, "/healthz", 503, "not alive: event loop made no pass"},
		{"readyz before the first reconcile", func() {}, http.MethodGet, "/readyz", 503, "not ready"},
		{"readyz after", func() { ready.Store(true) }, http.MethodGet, "/readyz", 200, "ok"},
		{"metrics refuses POST", func() {}, http.MethodPost, "/metrics", 405, ""},
		{"unknown path", func() {}, http.MethodGet, "/debug/pprof/", 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body := readAll(t, resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, tc.wantStatus, body)
			}
			if !strings.Contains(body, tc.wantBody) {
				t.Errorf("body does not contain %q:\n%.500s", tc.wantBody, body)
			}
		})
	}
}

func TestHandlerNilFuncs(t *testing.T) {
	h := Handler(populatedRegistry(t), HealthFuncs{})
	for _, path := range []string{"/healthz", "/readyz"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s with nil func: status %d, want 200", path, rec.Code)
		}
	}
}

func TestNewServer(t *testing.T) {
	srv := NewServer("127.0.0.1:0", populatedRegistry(t), HealthFuncs{})
	if srv.Addr != "127.0.0.1:0" || srv.Handler == nil || srv.ReadHeaderTimeout == 0 {
		t.Errorf("server: addr %q, handler %v, ReadHeaderTimeout %v", srv.Addr, srv.Handler != nil, srv.ReadHeaderTimeout)
	}
}

// TestNewRegistry: the production registry gathers cleanly and carries the
// runtime collectors next to ours.
func TestNewRegistry(t *testing.T) {
	obs := NewObserver()
	feedObserver(obs)
	reg := NewRegistry(&fakeSource{snap: populatedSnapshot()}, obs, "v1.2.3")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	for _, name := range []string{"rds_csi_build_info", "rds_csi_controller_state", "rds_csi_connect_duration_seconds", "go_goroutines"} {
		if !have[name] {
			t.Errorf("registry lacks %s", name)
		}
	}
}

func TestLoopProgress(t *testing.T) {
	src := &fakeSource{}
	at := func(d time.Duration, polls, resyncs int64) {
		src.set(daemon.Snapshot{Taken: taken.Add(d), Counters: daemon.Counters{Polls: polls, Resyncs: resyncs}})
	}
	alive := LoopProgress(src, time.Minute)
	steps := []struct {
		name     string
		at       time.Duration
		polls    int64
		resyncs  int64
		wantFail bool
	}{
		{"before the first pass", 0, 0, 0, false},
		{"still starting long after", 10 * time.Minute, 0, 0, false},
		{"first pass", 11 * time.Minute, 0, 1, false},
		{"polling", 12 * time.Minute, 60, 1, false},
		{"no pass for 30s", 12*time.Minute + 30*time.Second, 60, 1, false},
		{"no pass for 61s", 13*time.Minute + time.Second, 60, 1, true},
		{"moving again", 14 * time.Minute, 61, 1, false},
		{"a full re-read counts as a pass", 15 * time.Minute, 61, 2, false},
	}
	for _, s := range steps {
		at(s.at, s.polls, s.resyncs)
		err := alive()
		if (err != nil) != s.wantFail {
			t.Errorf("%s: Alive() = %v, want failure %v", s.name, err, s.wantFail)
		}
	}
}
