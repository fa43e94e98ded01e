package sysfs_test

import (
	"fmt"
	"testing"

	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// BenchmarkScan1000 reads a node with 1000 controllers (native multipath,
// one subsystem per volume, every tenth volume over two paths, one discovery
// controller; sysfstest.Generate): "full" is Controllers then Subsystems, the
// device scan the daemon does at start; "ControllerConnections" is its full
// re-read (at start, after lost uevents or a kernel log gap).
//
// The tree is built once, in b.TempDir; creating its ~90k files takes a
// while on a slow disk (TMPDIR=/dev/shm makes that quick).
func BenchmarkScan1000(b *testing.B) {
	root := b.TempDir()
	spec := sysfstest.Generate(1000, true)
	if err := sysfstest.Build(root, spec); err != nil {
		b.Fatal(err)
	}
	fs := sysfs.NewFS(root)
	wantSubs := len(spec.Subsystems)
	// Write the new tree back and warm the caches, as on a node whose sysfs
	// has been there all along.
	syncFS()
	for range 3 {
		if _, err := fs.Controllers(); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			ctrls, err := fs.Controllers()
			if err != nil {
				b.Fatal(err)
			}
			subs, err := fs.Subsystems()
			if err != nil {
				b.Fatal(err)
			}
			if len(ctrls) != 1000 || len(subs) != wantSubs {
				b.Fatalf("got %d controllers, %d subsystems", len(ctrls), len(subs))
			}
		}
	})
	b.Run("Controllers", func(b *testing.B) {
		for b.Loop() {
			if _, err := fs.Controllers(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ControllerConnections", func(b *testing.B) {
		for b.Loop() {
			ctrls, err := fs.ControllerConnections()
			if err != nil {
				b.Fatal(err)
			}
			if len(ctrls) != 1000 {
				b.Fatalf("got %d controllers", len(ctrls))
			}
		}
	})
	b.Run("Subsystems", func(b *testing.B) {
		for b.Loop() {
			if _, err := fs.Subsystems(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ControllerState", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, _, err := fs.ControllerState(fmt.Sprintf("nvme%d", i%1000)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("FindNamespace", func(b *testing.B) {
		nqn := spec.Subsystems[len(spec.Subsystems)/2].NQN
		for b.Loop() {
			if _, err := fs.FindNamespace(nqn, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}
