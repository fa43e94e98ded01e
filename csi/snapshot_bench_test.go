package csi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/routeros"
	"github.com/srvlab/rds-csi/routeros/rdstest"
)

// BenchmarkControllerSnapshot creates and deletes one snapshot of a 1 GiB
// volume per iteration through the Controller, over SSH to the in-memory
// emulator on loopback, split like BenchmarkControllerVolume into RouterOS
// round trips and our own time.
//
//	go test -run '^$' -bench BenchmarkControllerSnapshot -benchtime 300x ./csi/
func BenchmarkControllerSnapshot(b *testing.B) {
	srv, err := rdstest.Start(rdstest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run, err := routeros.NewSSH(routeros.SSHConfig{Address: srv.Addr(), User: srv.User(),
		PrivateKey: srv.ClientKeyPEM(), KnownHosts: srv.KnownHosts(), Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	defer run.Close()
	rt := &roundTrips{verbs: map[string]int{}}
	c, err := NewController(ControllerConfig{Client: routeros.NewClient(run, rt.observe), RDSAddress: "10.0.0.1",
		VolumeDir: testVolumeDir, NQNBase: "nqn.2000-02.com.mikrotik", Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	vol, err := c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-bench-src", VolumeCapabilities: ctrlMountCaps(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}})
	if err != nil {
		b.Fatal(err)
	}
	var create, createRT, del, delRT time.Duration
	var createN, delN int
	var createVerbs, delVerbs map[string]int
	b.ResetTimer()
	for i := range b.N {
		rt.take()
		t0 := time.Now()
		resp, err := c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: fmt.Sprintf("snap-bench-%d", i),
			SourceVolumeId: vol.GetVolume().GetVolumeId()})
		if err != nil {
			b.Fatal(err)
		}
		create += time.Since(t0)
		n, d, v := rt.take()
		createN, createRT, createVerbs = createN+n, createRT+d, v
		t1 := time.Now()
		if _, err := c.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: resp.GetSnapshot().GetSnapshotId()}); err != nil {
			b.Fatal(err)
		}
		del += time.Since(t1)
		n, d, v = rt.take()
		delN, delRT, delVerbs = delN+n, delRT+d, v
	}
	b.StopTimer()
	per := func(d time.Duration) float64 { return float64(d) / float64(b.N) / 1e6 }
	b.ReportMetric(float64(createN)/float64(b.N), "create-roundtrips/op")
	b.ReportMetric(per(create), "create-ms/op")
	b.ReportMetric(per(createRT), "create-rtt-ms/op")
	b.ReportMetric(per(create-createRT), "create-own-ms/op")
	b.ReportMetric(float64(delN)/float64(b.N), "delete-roundtrips/op")
	b.ReportMetric(per(del), "delete-ms/op")
	b.ReportMetric(per(delRT), "delete-rtt-ms/op")
	b.ReportMetric(per(del-delRT), "delete-own-ms/op")
	b.Logf("commands of the last CreateSnapshot %v, DeleteSnapshot %v", createVerbs, delVerbs)
	if len(srv.Disks()) != 1 || len(srv.Files()) != 1 {
		b.Fatalf("left behind: disks %v files %v", srv.Disks(), srv.Files())
	}
}
