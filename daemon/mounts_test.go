package daemon

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/sysfs"
)

// A volume staged at a path the kernel's mount table escapes (space,
// backslash, newline: \040, \134, \012) is restored by id after a restart,
// and its controller is under a mount for Detach's check.
func TestRebuildEscapedStagingPath(t *testing.T) {
	e := newEnv(t, rebuildSpec(true))
	d := e.start()
	if _, err := d.Attach(t.Context(), spec("pvc-a", volNQN(8), 1)); err != nil {
		t.Fatal(err)
	}
	stage := filepath.Join(e.staging, "sp ace", `back\slash`, "new\nline", "globalmount")
	if err := d.MarkStaged("pvc-a", stage, false); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	ns, err := sysfs.NewFS(e.root).FindNamespace(volNQN(8), 1)
	if err != nil {
		t.Fatal(err)
	}
	escaped := strings.NewReplacer(" ", `\040`, `\`, `\134`, "\n", `\012`).Replace(stage)
	e.writeMounts(fsMount(50, ns.Dev.String(), escaped))
	d2 := e.start()
	v, ok := d2.Volume("pvc-a")
	if !ok || v.State != VolumeStaged || v.Recovered || v.StagingPath != stage {
		t.Fatalf("after restart: %+v (known %v), want pvc-a staged at %q", v, ok, stage)
	}
	mounted, err := d2.mountedDisks(v.Controllers)
	if err != nil {
		t.Fatal(err)
	}
	if got := mounted[v.Controllers[0]]; len(got) != 1 || got[0] != stage {
		t.Errorf("mounts of %s's disks: %q, want [%q]", v.Controllers[0], got, stage)
	}
}
