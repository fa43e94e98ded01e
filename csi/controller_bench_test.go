package csi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/routeros"
	"github.com/srvlab/rds-csi/routeros/rdstest"
)

// roundTrips sums what the routeros Observer sees: commands and the time
// each took from the client's send to its classified answer (SSH session
// and the emulator's work included).
type roundTrips struct {
	mu    sync.Mutex
	n     int
	d     time.Duration
	verbs map[string]int
}

func (r *roundTrips) observe(verb string, _ error, d time.Duration) {
	r.mu.Lock()
	r.n++
	r.d += d
	r.verbs[verb]++
	r.mu.Unlock()
}

func (r *roundTrips) take() (int, time.Duration, map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, d, v := r.n, r.d, r.verbs
	r.n, r.d, r.verbs = 0, 0, map[string]int{}
	return n, d, v
}

// BenchmarkControllerVolume creates and deletes one volume per iteration
// through the Controller, over SSH to the in-memory emulator on loopback,
// and splits each call into its RouterOS round trips (count and time, from
// the routeros Observer) and our own time (the call's wall time minus the
// round trips: validation, planning, command building, output parsing,
// confirmation logic).
//
//	go test -run '^$' -bench BenchmarkControllerVolume -benchtime 300x ./csi/
func BenchmarkControllerVolume(b *testing.B) {
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
	params := map[string]string{KeyCtrlLossTmo: "600", KeyReconnectDelay: "3"}
	var create, createRT, del, delRT time.Duration
	var createN, delN int
	var createVerbs, delVerbs map[string]int
	b.ResetTimer()
	for i := range b.N {
		rt.take()
		t0 := time.Now()
		resp, err := c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("pvc-bench-%d", i), Parameters: params,
			VolumeCapabilities: ctrlMountCaps(), CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}})
		if err != nil {
			b.Fatal(err)
		}
		create += time.Since(t0)
		n, d, v := rt.take()
		createN, createRT, createVerbs = createN+n, createRT+d, v
		t1 := time.Now()
		if _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: resp.GetVolume().GetVolumeId()}); err != nil {
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
	b.Logf("commands of the last CreateVolume %v, DeleteVolume %v", createVerbs, delVerbs)
	if len(srv.Disks()) != 0 || len(srv.Files()) != 0 {
		b.Fatalf("left behind: disks %v files %v", srv.Disks(), srv.Files())
	}
}
