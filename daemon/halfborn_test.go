package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// addHalfBorn adds controller nvme<inst> as the kernel shows it before its
// first connect completes: state connecting, no subsystem linking to it, and
// the kernel's bad-pointer text in the attributes it reads through the
// missing subsystem.
func addHalfBorn(t *testing.T, root string, inst int) {
	t.Helper()
	c := ctrlSpec(inst, "connecting")
	for _, a := range []string{"subsysnqn", "model", "serial", "firmware_rev"} {
		c.Attrs[a] = "(efault)"
	}
	c.Attrs["cntlid"] = "0"
	c.Attrs["cntrltype"] = "reserved" // as 6.1 and 6.12 show it (testdata/sysfs-halfborn)
	sub := sysfstest.Subsystem{Instance: 90 + inst, NQN: "nqn.2024-01.io.srvlab:placeholder", Controllers: []sysfstest.Controller{c}}
	if err := sysfstest.Build(root, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{sub}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"class/nvme-subsystem", "devices/virtual/nvme-subsystem"} {
		if err := os.RemoveAll(filepath.Join(root, p, "nvme-subsys"+strconv.Itoa(90+inst))); err != nil {
			t.Fatal(err)
		}
	}
}

// completeHalfBorn makes nvme<inst> what the first connect leaves: live,
// in subsystem nvme-subsys<inst> of nqn.
func completeHalfBorn(t *testing.T, root string, inst int, nqn string) {
	t.Helper()
	name := "nvme" + strconv.Itoa(inst)
	if err := sysfstest.RemoveController(root, name); err != nil {
		t.Fatal(err)
	}
	c := ctrlSpec(inst, "live")
	sub := sysfstest.Subsystem{Instance: inst, NQN: nqn, Controllers: []sysfstest.Controller{c}, Namespaces: []sysfstest.Namespace{{NSID: 1}}}
	if err := sysfstest.Build(root, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{sub}}); err != nil {
		t.Fatal(err)
	}
}

// TestHalfBornNotRecorded: a full re-read that meets a controller before
// its first connect completes records it without a subsystem NQN (not the
// kernel's "(efault)"), in the registry, the snapshot the metrics are made
// from and the log. Once it is live the registry learns its NQN and keeps
// the entry (its transitions): from the poller, which reads it again in full
// without waiting for another full re-read, or from a full re-read.
func TestHalfBornNotRecorded(t *testing.T) {
	for _, tc := range []struct {
		name string
		full bool
	}{{"poll", false}, {"full re-read", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, oneSubsystem("live"))
			logs := &syncBuffer{}
			e.cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
			d := e.start()

			addHalfBorn(t, e.root, 1)
			d.resync(true)
			c := controllerInfo(t, d, "nvme1")
			if c.SubsysNQN != "" {
				t.Errorf("half-born nvme1 recorded with subsysnqn %q, want none", c.SubsysNQN)
			}
			d.mu.Lock()
			key := keyOfController(&d.ctrls["nvme1"].ctrl).String()
			d.mu.Unlock()
			for what, s := range map[string]string{"registry key": key, "log": logs.String()} {
				if strings.Contains(s, "(efault)") {
					t.Errorf("%s holds the kernel's placeholder: %s", what, s)
				}
			}

			nqn := volNQN(1)
			completeHalfBorn(t, e.root, 1, nqn)
			e.clock.Advance(1)
			d.resync(tc.full)
			c = controllerInfo(t, d, "nvme1")
			if c.SubsysNQN != nqn || !c.State.Live() {
				t.Errorf("after the first connect completed: nvme1 subsysnqn %q state %s, want %s live", c.SubsysNQN, c.StateRaw, nqn)
			}
			if !strings.Contains(logs.String(), "msg=\"controller connected\" component=daemon controller=nvme1 state=live subsysnqn="+nqn) {
				t.Errorf("no log line names nvme1's subsysnqn once known:\n%s", logs.String())
			}
			if n := len(c.Transitions); n == 0 || c.Transitions[n-1].To.String() != "live" {
				t.Errorf("nvme1 transitions %+v: want connecting>live kept", c.Transitions)
			}
		})
	}
}
