package daemon

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// logBuffer is a log destination safe for the daemon's goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRereadAfterChangeLogsFailure: when the re-read of a controller whose
// timeouts the daemon has just lowered fails (here a malformed attribute),
// the failure is logged with the controller and the error, not swallowed.
func TestRereadAfterChangeLogsFailure(t *testing.T) {
	spec := sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{
		{Instance: 0, NQN: volNQN(0), Controllers: []sysfstest.Controller{ctrlSpec(0, "connecting")}},
	}}
	e := newEnv(t, spec)
	var logs logBuffer
	e.cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	e.writeState(stateFile{Controllers: []owner{ownerRec("nvme0", volNQN(0), hostNQN)}})
	d := e.start()
	if err := sysfstest.SetAttr(e.root, "nvme0", "cntlid", "not-a-number"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute)
	got, err := d.LowerLossTimeout(time.Minute, 5)
	if err != nil || len(got) != 1 {
		t.Fatalf("LowerLossTimeout = %v, %v; want nvme0 changed", got, err)
	}
	out := logs.String()
	if !strings.Contains(out, "not re-read after a change") || !strings.Contains(out, "controller=nvme0") || !strings.Contains(out, "cntlid") {
		t.Errorf("the failed re-read is not logged with the controller and the error:\n%s", out)
	}
}

// TestRestoreBadPortLogged: a volume record whose port is not a decimal
// number is restored, and the daemon says so (it used to be read as port 0
// without a word).
func TestRestoreBadPortLogged(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	var logs logBuffer
	e.cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	d, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	v := d.restoredVolumeLocked(volumeState{ID: "vol-1", SubsysNQN: volNQN(0), NSID: 1, Traddr: "10.0.0.5", Trsvcid: "44x20"}, stagedMount{})
	d.mu.Unlock()
	if v.id != "vol-1" || v.spec.Options.Trsvcid != 0 {
		t.Errorf("restored %q with port %d, want vol-1 without a port", v.id, v.spec.Options.Trsvcid)
	}
	if out := logs.String(); !strings.Contains(out, "not a decimal number") || !strings.Contains(out, "44x20") {
		t.Errorf("the bad port is not logged:\n%s", out)
	}
	good := d.restoredVolumeLocked(volumeState{ID: "vol-2", SubsysNQN: volNQN(0), NSID: 1, Traddr: "10.0.0.5", Trsvcid: "4420"}, stagedMount{})
	if good.spec.Options.Trsvcid != 4420 {
		t.Errorf("port %d, want 4420", good.spec.Options.Trsvcid)
	}
}
