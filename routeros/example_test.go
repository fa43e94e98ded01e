package routeros_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/srvlab/rds-csi/routeros"
	"github.com/srvlab/rds-csi/routeros/rdstest"
)

// Example shows the calls a CreateVolume and DeleteVolume make, against
// the emulator: derive slot, file and NQN from the CSI name, look the slot
// up (idempotency), create, and later remove the disk and then its file.
func Example() {
	srv, err := rdstest.Start(rdstest.Options{})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	tr, err := routeros.NewSSH(routeros.SSHConfig{
		Address: srv.Addr(), User: srv.User(),
		PrivateKey: srv.ClientKeyPEM(), // from the Secret
		KnownHosts: srv.KnownHosts(),   // from the Secret too
	})
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	c := routeros.NewClient(tr, nil)
	ctx := context.Background()

	slot, _ := routeros.SlotFor("pvc-0b8a6c2e-1c1e-4a44-9d3e-2f5cf6bb1a01")
	file, _ := routeros.FilePathFor("/storage-pool/rds-csi", slot)
	nqn, _ := routeros.NQNFor("nqn.2000-02.com.mikrotik", slot)
	size, _ := routeros.RoundUp(10<<30+1, 1<<20) // never down
	spec := routeros.DiskSpec{Slot: slot, FilePath: file, Size: size, Port: 4420, NQN: nqn}

	d, err := c.Disk(ctx, slot)
	switch {
	case errors.Is(err, routeros.ErrNotFound):
		d, err = c.CreateDisk(ctx, spec)
	case err == nil:
		err = routeros.Matches(d, spec) // same name, other parameters: AlreadyExists above
	}
	if err != nil {
		panic(err)
	}
	fmt.Println(d.Slot, d.Size, d.NVMeNQN)

	if err := c.RemoveDisk(ctx, slot); err != nil {
		panic(err)
	}
	if err := c.RemoveFile(ctx, "/storage-pool/rds-csi", file); err != nil {
		panic(err)
	}
	_, err = c.Disk(ctx, slot)
	fmt.Println(errors.Is(err, routeros.ErrNotFound), len(srv.Files()))
	// Output:
	// rds-csi-b812f7f6a547e2282edf5457 10738466816 nqn.2000-02.com.mikrotik:rds-csi-b812f7f6a547e2282edf5457
	// true 0
}
