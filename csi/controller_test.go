package csi

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/routeros"
	"github.com/srvlab/rds-csi/routeros/rdstest"
)

const testVolumeDir = "/storage-pool/rds-csi"

func newTestController(t *testing.T) (*Controller, *rdstest.Server) {
	t.Helper()
	srv, err := rdstest.Start(rdstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return restartController(t, srv), srv
}

func ctrlMountCaps() []*csi.VolumeCapability {
	return []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}}
}

// TestCreateVolumeContextParses: the VolumeContext CreateVolume returns
// parses with the node's parser to the spec the StorageClass asked for,
// with the NQN, address and port of the disk really created.
func TestCreateVolumeContextParses(t *testing.T) {
	c, srv := newTestController(t)
	params := map[string]string{KeyRDSAddress: srv.Addr(), KeyVolumePath: testVolumeDir,
		KeyCtrlLossTmo: "-1", KeyReconnectDelay: "7", KeyKeepAliveTmo: "10",
		"csi.storage.k8s.io/pvc/name": "data"}
	resp, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-1", Parameters: params,
		VolumeCapabilities: ctrlMountCaps(), CapacityRange: &csi.CapacityRange{RequiredBytes: 10<<20 + 1}})
	if err != nil {
		t.Fatal(err)
	}
	v := resp.GetVolume()
	if v.GetCapacityBytes() != 10<<20+1 {
		t.Errorf("capacity %d, want exactly %d (never rounded down)", v.GetCapacityBytes(), 10<<20+1)
	}
	disks := srv.Disks()
	if len(disks) != 1 {
		t.Fatalf("disks %v, want one", disks)
	}
	got, err := ParseParams(v.GetVolumeContext())
	if err != nil {
		t.Fatalf("the node refuses the VolumeContext %v: %v", v.GetVolumeContext(), err)
	}
	slot, _ := routeros.SlotFor("pvc-1")
	want, err := ParseParams(map[string]string{KeyNVMeAddress: "127.0.0.1", KeyNVMePort: "4420",
		KeyNQN: "nqn.2000-02.com.mikrotik:" + slot, KeyCtrlLossTmo: "-1", KeyReconnectDelay: "7", KeyKeepAliveTmo: "10"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("VolumeContext parses to\n%+v\nwant\n%+v", got, want)
	}
	if v.GetVolumeId() != slot+"@"+srv.Addr() || disks[0].Slot != slot {
		t.Errorf("volume id %s, disk %s, want %s@%s", v.GetVolumeId(), disks[0].Slot, slot, srv.Addr())
	}
	for _, k := range []string{KeyRDSAddress, KeyVolumePath, "csi.storage.k8s.io/pvc/name"} {
		if _, ok := v.GetVolumeContext()[k]; ok {
			t.Errorf("VolumeContext carries controller-only key %s", k)
		}
	}

	// The same request again: the same volume, nothing new.
	again, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-1", Parameters: params,
		VolumeCapabilities: ctrlMountCaps(), CapacityRange: &csi.CapacityRange{RequiredBytes: 10<<20 + 1}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again.GetVolume().GetVolumeContext(), v.GetVolumeContext()) || again.GetVolume().GetVolumeId() != v.GetVolumeId() {
		t.Errorf("retry returned %v, want %v", again.GetVolume(), v)
	}
	if n := len(srv.Disks()); n != 1 {
		t.Errorf("%d disks after a retry, want 1", n)
	}
	// The same name with another size, or another port: AlreadyExists.
	for name, req := range map[string]*csi.CreateVolumeRequest{
		"bigger": {Name: "pvc-1", Parameters: params, VolumeCapabilities: ctrlMountCaps(), CapacityRange: &csi.CapacityRange{RequiredBytes: 20 << 20}},
		"port":   {Name: "pvc-1", Parameters: map[string]string{KeyNVMePort: "4421"}, VolumeCapabilities: ctrlMountCaps(), CapacityRange: &csi.CapacityRange{RequiredBytes: 10<<20 + 1}},
	} {
		if _, err := c.CreateVolume(context.Background(), req); status.Code(err) != codes.AlreadyExists {
			t.Errorf("%s: %v, want AlreadyExists", name, err)
		}
	}
}

// TestCreateVolumeBadParameter: a typo or a bad value fails at
// provisioning with InvalidArgument naming the key; nothing is created.
func TestCreateVolumeBadParameter(t *testing.T) {
	c, srv := newTestController(t)
	for key, params := range map[string]map[string]string{
		"ctrlLosTmo":      {"ctrlLosTmo": "5"},
		KeyReconnectDelay: {KeyReconnectDelay: "0"},
		KeyNQN:            {KeyNQN: "nqn.2000-02.com.example:x"},
		KeyRDSAddress:     {KeyRDSAddress: "10.0.0.1;/system reboot"},
		KeyVolumePath:     {KeyVolumePath: "/other"},
	} {
		_, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-bad", Parameters: params, VolumeCapabilities: ctrlMountCaps()})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), key) {
			t.Errorf("%v: %v, want InvalidArgument naming %s", params, err, key)
		}
	}
	if d := srv.Disks(); len(d) != 0 {
		t.Errorf("disks created from bad parameters: %v", d)
	}
}

// TestDeleteVolumeRefusesForeign: a disk this driver did not create, named
// by a volume id, is refused and left alone; an id naming nothing is
// already deleted.
func TestDeleteVolumeRefusesForeign(t *testing.T) {
	c, srv := newTestController(t)
	if _, _, st := srv.Exec(`/disk add type=file file-path="/storage-pool/other/db.img" file-size=1048576 slot="db1" mount-filesystem=no`); st != 0 {
		t.Fatal("emulator refused the foreign disk")
	}
	if _, err := c.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: "db1"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("delete of a foreign disk: %v, want FailedPrecondition", err)
	}
	if d := srv.Disks(); len(d) != 1 {
		t.Errorf("foreign disk touched: %v", d)
	}
	for _, id := range []string{"nothing-here", "Not A Slot", routeros.SlotPrefix + "0123456789abcdef01234567"} {
		if _, err := c.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Errorf("delete of %q (no such disk): %v, want success", id, err)
		}
	}
	// A volume of ours: disk and file both go, and a second delete is fine.
	resp, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-del", VolumeCapabilities: ctrlMountCaps(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: resp.GetVolume().GetVolumeId()}); err != nil {
			t.Fatal(err)
		}
	}
	if d := srv.Disks(); len(d) != 1 || d[0].Slot != "db1" {
		t.Errorf("disks after delete: %v, want only db1", d)
	}
	for f := range srv.Files() {
		if strings.HasPrefix(f, testVolumeDir+"/") {
			t.Errorf("backing file %s left after delete", f)
		}
	}
}

// TestExpandVolume: grow only; a mount volume needs node expansion, a block
// one does not.
func TestExpandVolume(t *testing.T) {
	c, _ := newTestController(t)
	resp, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-x", VolumeCapabilities: ctrlMountCaps(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: 4 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetVolume().GetVolumeId()
	x, err := c.ControllerExpandVolume(context.Background(), &csi.ControllerExpandVolumeRequest{VolumeId: id,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 8 << 20}, VolumeCapability: ctrlMountCaps()[0]})
	if err != nil {
		t.Fatal(err)
	}
	if x.GetCapacityBytes() != 8<<20 || !x.GetNodeExpansionRequired() {
		t.Errorf("expand: %v, want 8 MiB and node expansion", x)
	}
	block := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: ctrlMountCaps()[0].GetAccessMode()}
	x, err = c.ControllerExpandVolume(context.Background(), &csi.ControllerExpandVolumeRequest{VolumeId: id,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 20}, VolumeCapability: block})
	if err != nil {
		t.Fatal(err)
	}
	if x.GetCapacityBytes() != 8<<20 || x.GetNodeExpansionRequired() {
		t.Errorf("shrink request: %v, want 8 MiB kept and no node expansion for block", x)
	}
}

// TestCreateVolumeFaults: what an RDS fault becomes, and that a retry after
// a lost answer or a hang returns the one volume.
func TestCreateVolumeFaults(t *testing.T) {
	req := func(name string) *csi.CreateVolumeRequest {
		return &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: ctrlMountCaps(),
			CapacityRange: &csi.CapacityRange{RequiredBytes: 16 << 20}}
	}
	t.Run("pool full", func(t *testing.T) {
		c, srv := newTestController(t)
		srv.SetPool(1 << 20)
		if _, err := c.CreateVolume(context.Background(), req("pvc-full")); status.Code(err) != codes.ResourceExhausted {
			t.Errorf("pool full: %v, want ResourceExhausted", err)
		}
		if d := srv.Disks(); len(d) != 0 {
			t.Errorf("disks %v after a refused create", d)
		}
	})
	t.Run("answer lost", func(t *testing.T) {
		c, srv := newTestController(t)
		srv.Drop("/disk add", true) // the disk is made, its answer lost
		first, err := c.CreateVolume(context.Background(), req("pvc-lost"))
		if err != nil {
			t.Fatalf("create whose answer was lost: %v, want the volume found by the re-read", err)
		}
		again, err := c.CreateVolume(context.Background(), req("pvc-lost"))
		if err != nil || again.GetVolume().GetVolumeId() != first.GetVolume().GetVolumeId() {
			t.Errorf("retry: %v %v, want volume %s", again, err, first.GetVolume().GetVolumeId())
		}
		if d := srv.Disks(); len(d) != 1 {
			t.Errorf("disks %v, want one", d)
		}
	})
	t.Run("hang", func(t *testing.T) {
		c, srv := newTestController(t)
		srv.Hang("/disk add")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.CreateVolume(ctx, req("pvc-hang"))
		cancel()
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			t.Errorf("hung RDS: %v, want Unavailable or DeadlineExceeded", err)
		}
		srv.Hang("")
		if _, err := c.CreateVolume(context.Background(), req("pvc-hang")); err != nil {
			t.Fatalf("retry after a hang: %v", err)
		}
		if d := srv.Disks(); len(d) != 1 {
			t.Errorf("disks %v after a retry, want one", d)
		}
	})
	t.Run("auth refused", func(t *testing.T) {
		c, srv := newTestController(t)
		srv.RejectAuth(true)
		if _, err := c.CreateVolume(context.Background(), req("pvc-auth")); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("key refused: %v, want FailedPrecondition", err)
		}
	})
	t.Run("host key changed", func(t *testing.T) {
		c, srv := newTestController(t)
		if err := srv.RotateHostKey(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateVolume(context.Background(), req("pvc-hostkey")); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("host key mismatch: %v, want FailedPrecondition", err)
		}
		if d := srv.Disks(); len(d) != 0 {
			t.Errorf("disks %v created through an unverified host", d)
		}
	})
}

// TestCreateVolumeDroppedBeforeAdd: the connection drops before the add
// runs; the re-read finds nothing, and the answer is Unavailable (retry),
// not NotFound. The retry creates the volume.
func TestCreateVolumeDroppedBeforeAdd(t *testing.T) {
	c, srv := newTestController(t)
	srv.Drop("/disk add", false)
	req := &csi.CreateVolumeRequest{Name: "pvc-drop", VolumeCapabilities: ctrlMountCaps(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}}
	if _, err := c.CreateVolume(context.Background(), req); status.Code(err) != codes.Unavailable {
		t.Errorf("add dropped before it ran: %v, want Unavailable", err)
	}
	if _, err := c.CreateVolume(context.Background(), req); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if d := srv.Disks(); len(d) != 1 {
		t.Errorf("disks %v, want one", d)
	}
}

// TestControllerGetVolume: an existing volume with its size; an id that
// is not ours, or names nothing, is NotFound.
func TestControllerGetVolume(t *testing.T) {
	c, _ := newTestController(t)
	resp, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-get", VolumeCapabilities: ctrlMountCaps(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: 3 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.ControllerGetVolume(context.Background(), &csi.ControllerGetVolumeRequest{VolumeId: resp.GetVolume().GetVolumeId()})
	if err != nil || got.GetVolume().GetCapacityBytes() != 3<<20 || got.GetStatus() == nil {
		t.Errorf("get volume: %v %v, want 3 MiB and a status", got, err)
	}
	for _, id := range []string{"db1", routeros.SlotPrefix + "0123456789abcdef01234567"} {
		if _, err := c.ControllerGetVolume(context.Background(), &csi.ControllerGetVolumeRequest{VolumeId: id}); status.Code(err) != codes.NotFound {
			t.Errorf("get volume %s: %v, want NotFound", id, err)
		}
	}
	if _, err := c.ControllerGetVolume(context.Background(), &csi.ControllerGetVolumeRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("get volume without id: %v, want InvalidArgument", err)
	}
}

// TestLegacyVolumeID: a bare slot (the preview's volume id) names the
// volume on the default RDS: get, expand and delete reach it.
func TestLegacyVolumeID(t *testing.T) {
	c, srv := newTestController(t)
	resp, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-old", VolumeCapabilities: ctrlMountCaps(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	slot, _ := routeros.SlotFor("pvc-old")
	if resp.GetVolume().GetVolumeId() == slot {
		t.Fatalf("CreateVolume returned the legacy form %s", slot)
	}
	if got, err := c.ControllerGetVolume(context.Background(), &csi.ControllerGetVolumeRequest{VolumeId: slot}); err != nil || got.GetVolume().GetVolumeId() != slot {
		t.Errorf("get legacy id: %v %v", got, err)
	}
	if _, err := c.ControllerExpandVolume(context.Background(), &csi.ControllerExpandVolumeRequest{VolumeId: slot,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 4 << 20}}); err != nil {
		t.Errorf("expand legacy id: %v", err)
	}
	if _, err := c.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: slot}); err != nil {
		t.Errorf("delete legacy id: %v", err)
	}
	if d := srv.Disks(); len(d) != 0 {
		t.Errorf("disks %v after deleting by the legacy id", d)
	}
}

// TestCreateVolumeRDSAddress: rdsAddress in any accepted spelling of the
// default RDS gives the canonical id; a name needs an explicit
// nvmeAddress, since nodes connect to IP literals.
func TestCreateVolumeRDSAddress(t *testing.T) {
	c, srv := newTestController(t)
	port := strings.TrimPrefix(srv.Addr(), "127.0.0.1:")
	resp, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-a", VolumeCapabilities: ctrlMountCaps(),
		Parameters: map[string]string{KeyRDSAddress: "::ffff:127.0.0.1"}})
	// ::ffff:127.0.0.1 without a port is port 22: another RDS than the default.
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "127.0.0.1:22") {
		t.Errorf("rdsAddress on port 22: %v %v, want FailedPrecondition naming 127.0.0.1:22", resp, err)
	}
	resp, err = c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-a", VolumeCapabilities: ctrlMountCaps(),
		Parameters: map[string]string{KeyRDSAddress: "[::ffff:127.0.0.1]:" + port}})
	slot, _ := routeros.SlotFor("pvc-a")
	if err != nil || resp.GetVolume().GetVolumeId() != slot+"@"+srv.Addr() {
		t.Errorf("rdsAddress spelled as a mapped IPv6: %v %v, want id %s@%s", resp, err, slot, srv.Addr())
	}
	_, err = c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-b", VolumeCapabilities: ctrlMountCaps(),
		Parameters: map[string]string{KeyRDSAddress: "rds.example.com"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), KeyNVMeAddress) {
		t.Errorf("rdsAddress name without nvmeAddress: %v, want InvalidArgument naming %s", err, KeyNVMeAddress)
	}
	if n := len(srv.Disks()); n != 1 {
		t.Errorf("%d disks, want 1", n)
	}
}
