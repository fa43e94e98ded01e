package fabrics

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/sysfs"
)

// TestWithSysfsFS checks the error contracts against the real sysfs.FS on
// a temporary tree of regular files.
func TestWithSysfsFS(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "class", "nvme", "nvme0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	attrs := []string{"delete_controller", "reconnect_delay", "ctrl_loss_tmo", "fast_io_fail_tmo"}
	for _, a := range attrs {
		if err := os.WriteFile(filepath.Join(dir, a), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := NewClient("", sysfs.NewFS(root))

	if err := c.UpdateTimeouts("nvme0", Timeouts{ReconnectDelay: Int(2), CtrlLossTmo: Int(-1), FastIOFailTmo: Int(5)}); err != nil {
		t.Fatal(err)
	}
	if err := c.Disconnect("nvme0"); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, a := range attrs {
		b, err := os.ReadFile(filepath.Join(dir, a))
		if err != nil {
			t.Fatal(err)
		}
		got[a] = string(b)
	}
	want := map[string]string{"delete_controller": "1", "reconnect_delay": "2", "ctrl_loss_tmo": "-1", "fast_io_fail_tmo": "5"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attributes (-want +got):\n%s", diff)
	}

	if err := c.Disconnect("nvme1"); !errors.Is(err, ErrControllerGone) {
		t.Errorf("Disconnect(gone) = %v, want ErrControllerGone", err)
	}
	if err := c.UpdateTimeouts("nvme1", Timeouts{CtrlLossTmo: Int(5)}); !errors.Is(err, ErrControllerGone) {
		t.Errorf("UpdateTimeouts(gone) = %v, want ErrControllerGone", err)
	}
}
