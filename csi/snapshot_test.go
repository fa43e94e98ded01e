package csi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/routeros"
	"github.com/srvlab/rds-csi/routeros/rdstest"
)

func volReq(name string, size int64) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: ctrlMountCaps(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: size}}
}

func fromSnapshot(r *csi.CreateVolumeRequest, id string) *csi.CreateVolumeRequest {
	r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id}}}
	return r
}

func fromVolume(r *csi.CreateVolumeRequest, id string) *csi.CreateVolumeRequest {
	r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}}
	return r
}

// mustVolume creates a volume and writes data into its file on the emulator.
func mustVolume(t *testing.T, c *Controller, srv *rdstest.Server, name string, size int64, data string) *csi.Volume {
	t.Helper()
	resp, err := c.CreateVolume(context.Background(), volReq(name, size))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := routeros.FilePathFor(testVolumeDir, slotOf(resp.GetVolume().GetVolumeId()))
	if err := srv.WriteData(p, []byte(data)); err != nil {
		t.Fatal(err)
	}
	return resp.GetVolume()
}

// slotOf is the slot of a volume or snapshot id.
func slotOf(id string) string {
	slot, _, _ := strings.Cut(id, "@")
	return slot
}

// diskOf finds the disk of a volume or snapshot id on the emulator.
func diskOf(srv *rdstest.Server, id string) (rdstest.Disk, bool) {
	slot := slotOf(id)
	for _, d := range srv.Disks() {
		if d.Slot == slot {
			return d, true
		}
	}
	return rdstest.Disk{}, false
}

// TestCreateSnapshotIdempotent: the same name and source give the same
// snapshot (one disk, same id, size and creation time); the same name from
// another volume is AlreadyExists; the snapshot is a copy of the volume's
// data, never exported; bad requests are refused before any command.
func TestCreateSnapshotIdempotent(t *testing.T) {
	c, srv := newTestController(t)
	ctx := context.Background()
	defer func(f func() time.Time) { now = f }(now)
	now = func() time.Time { return time.Unix(1764642000, 123) }
	v := mustVolume(t, c, srv, "pvc-a", 10<<20+1, "volume a")
	other := mustVolume(t, c, srv, "pvc-b", 1<<20, "volume b")
	req := &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: v.GetVolumeId(),
		Parameters: map[string]string{"csi.storage.k8s.io/volumesnapshot/name": "s"}}
	first, err := c.CreateSnapshot(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	s := first.GetSnapshot()
	slot, _ := routeros.SnapshotSlotFor("snap-1")
	if s.GetSnapshotId() != slot+"@"+srv.Addr() || s.GetSourceVolumeId() != v.GetVolumeId() || s.GetSizeBytes() != 10<<20+1 ||
		!s.GetReadyToUse() || s.GetCreationTime().AsTime() != time.Unix(1764642000, 0).UTC() {
		t.Errorf("snapshot %v", s)
	}
	d, ok := diskOf(srv, s.GetSnapshotId())
	if !ok || d.NVMeExport || d.MountFilesystem {
		t.Errorf("snapshot disk %+v (found %v): want present, not exported, not mounted", d, ok)
	}
	if got := string(srv.Data(d.FilePath)); got != "volume a" {
		t.Errorf("snapshot data %q", got)
	}
	now = func() time.Time { return time.Unix(1764643000, 0) }
	before := len(srv.Disks())
	again, err := c.CreateSnapshot(ctx, req)
	if err != nil || again.GetSnapshot().String() != s.String() {
		t.Errorf("retry: %v, %v; want %v", again, err, s)
	}
	if len(srv.Disks()) != before {
		t.Errorf("a retry made a disk: %v", srv.Disks())
	}
	req.SourceVolumeId = other.GetVolumeId()
	if _, err := c.CreateSnapshot(ctx, req); status.Code(err) != codes.AlreadyExists {
		t.Errorf("same name, other source: %v, want AlreadyExists", err)
	}
	vslot, _ := routeros.SlotFor("pvc-gone")
	vslot += "@" + srv.Addr()
	for name, tc := range map[string]struct {
		req  *csi.CreateSnapshotRequest
		code codes.Code
	}{
		"no name":         {&csi.CreateSnapshotRequest{SourceVolumeId: v.GetVolumeId()}, codes.InvalidArgument},
		"no source":       {&csi.CreateSnapshotRequest{Name: "x"}, codes.InvalidArgument},
		"parameter":       {&csi.CreateSnapshotRequest{Name: "x", SourceVolumeId: v.GetVolumeId(), Parameters: map[string]string{"pool": "a"}}, codes.InvalidArgument},
		"foreign source":  {&csi.CreateSnapshotRequest{Name: "x", SourceVolumeId: "pvc-0123"}, codes.NotFound},
		"snapshot source": {&csi.CreateSnapshotRequest{Name: "x", SourceVolumeId: s.GetSnapshotId()}, codes.NotFound},
		"other RDS":       {&csi.CreateSnapshotRequest{Name: "x", SourceVolumeId: slotOf(v.GetVolumeId()) + "@10.9.9.9:22"}, codes.FailedPrecondition},
		"missing source":  {&csi.CreateSnapshotRequest{Name: "x", SourceVolumeId: vslot}, codes.NotFound},
	} {
		if _, err := c.CreateSnapshot(ctx, tc.req); status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %v", name, err, tc.code)
		}
	}
	if len(srv.Disks()) != before {
		t.Errorf("refused requests made disks: %v", srv.Disks())
	}
}

// TestRestoreSize: a volume restored from a snapshot (or cloned from a
// volume) is a copy of its data, at least the source's size, grown when
// more is asked, OutOfRange when the limit is below the source's size; it
// reports its content source; a retry returns it, another source under the
// same name is AlreadyExists; a source that does not exist is NotFound.
func TestRestoreSize(t *testing.T) {
	c, srv := newTestController(t)
	ctx := context.Background()
	v := mustVolume(t, c, srv, "pvc-src", 10<<20+1, "source data")
	snap, err := c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-r", SourceVolumeId: v.GetVolumeId()})
	if err != nil {
		t.Fatal(err)
	}
	sid := snap.GetSnapshot().GetSnapshotId()
	// The source changes after the snapshot: the restore has the old data.
	p, _ := routeros.FilePathFor(testVolumeDir, slotOf(v.GetVolumeId()))
	srv.WriteData(p, []byte("changed"))
	for _, tc := range []struct {
		name     string
		req      *csi.CreateVolumeRequest
		size     int64
		data     string
		snapshot bool
	}{
		{"no range", fromSnapshot(&csi.CreateVolumeRequest{Name: "r1", VolumeCapabilities: ctrlMountCaps()}, sid), 10<<20 + 1, "source data", true},
		{"smaller", fromSnapshot(volReq("r2", 1<<20), sid), 10<<20 + 1, "source data", true},
		{"larger", fromSnapshot(volReq("r3", 20<<20), sid), 20 << 20, "source data", true},
		{"clone", fromVolume(volReq("r4", 0), v.GetVolumeId()), 10<<20 + 1, "changed", false},
	} {
		resp, err := c.CreateVolume(ctx, tc.req)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		got := resp.GetVolume()
		if got.GetCapacityBytes() != tc.size {
			t.Errorf("%s: %d bytes, want %d", tc.name, got.GetCapacityBytes(), tc.size)
		}
		if tc.snapshot && got.GetContentSource().GetSnapshot().GetSnapshotId() != sid ||
			!tc.snapshot && got.GetContentSource().GetVolume().GetVolumeId() != v.GetVolumeId() {
			t.Errorf("%s: content source %v", tc.name, got.GetContentSource())
		}
		d, _ := diskOf(srv, got.GetVolumeId())
		if !d.NVMeExport || d.MountFilesystem || d.NVMeNQN != got.GetVolumeContext()[KeyNQN] || srv.Files()[d.FilePath] != tc.size {
			t.Errorf("%s: disk %+v, files %v", tc.name, d, srv.Files())
		}
		if data := string(srv.Data(d.FilePath)); data != tc.data {
			t.Errorf("%s: data %q, want %q", tc.name, data, tc.data)
		}
		again, err := c.CreateVolume(ctx, tc.req)
		if err != nil || again.GetVolume().String() != got.String() {
			t.Errorf("%s: retry %v, %v; want %v", tc.name, again, err, got)
		}
	}
	n := len(srv.Disks())
	gone, _ := routeros.SnapshotSlotFor("gone")
	gone += "@" + srv.Addr()
	for name, tc := range map[string]struct {
		req  *csi.CreateVolumeRequest
		code codes.Code
	}{
		"limit below":      {fromSnapshot(&csi.CreateVolumeRequest{Name: "x1", VolumeCapabilities: ctrlMountCaps(), CapacityRange: &csi.CapacityRange{LimitBytes: 1 << 20}}, sid), codes.OutOfRange},
		"missing snapshot": {fromSnapshot(volReq("x2", 0), gone), codes.NotFound},
		"foreign snapshot": {fromSnapshot(volReq("x3", 0), "non-existing-snapshot-id"), codes.NotFound},
		"volume as snap":   {fromSnapshot(volReq("x4", 0), v.GetVolumeId()), codes.NotFound},
		"foreign volume":   {fromVolume(volReq("x5", 0), "vol-1"), codes.NotFound},
		"other RDS":        {fromSnapshot(volReq("x7", 0), slotOf(sid)+"@10.9.9.9:22"), codes.InvalidArgument},
		"legacy volume id": {fromVolume(volReq("x8", 1<<40), slotOf(v.GetVolumeId())), codes.ResourceExhausted},
		"empty snapshot":   {fromSnapshot(volReq("x6", 0), ""), codes.InvalidArgument},
		"other source":     {fromVolume(volReq("r1", 0), v.GetVolumeId()), codes.AlreadyExists},
		"was empty":        {fromSnapshot(volReq("pvc-src", 0), sid), codes.AlreadyExists},
		"now empty":        {volReq("r1", 10<<20+1), codes.AlreadyExists},
	} {
		if _, err := c.CreateVolume(ctx, tc.req); status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %v", name, err, tc.code)
		}
	}
	if len(srv.Disks()) != n {
		t.Errorf("refused requests made disks: %v", srv.Disks())
	}
}

// TestSnapshotsOutliveTheirVolume: copies are independent files, so a
// volume with snapshots may be deleted; its snapshots stay listed and
// restorable, and deleting them afterwards leaves nothing.
func TestSnapshotsOutliveTheirVolume(t *testing.T) {
	c, srv := newTestController(t)
	ctx := context.Background()
	v := mustVolume(t, c, srv, "pvc-del", 1<<20, "keep me")
	snap, err := c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-del", SourceVolumeId: v.GetVolumeId()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.GetVolumeId()}); err != nil {
		t.Fatalf("delete a volume with a snapshot: %v", err)
	}
	list, err := c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: v.GetVolumeId()})
	if err != nil || len(list.GetEntries()) != 1 || list.GetEntries()[0].GetSnapshot().GetSnapshotId() != snap.GetSnapshot().GetSnapshotId() {
		t.Fatalf("ListSnapshots of the deleted volume: %v, %v", list, err)
	}
	r, err := c.CreateVolume(ctx, fromSnapshot(volReq("pvc-back", 0), snap.GetSnapshot().GetSnapshotId()))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := diskOf(srv, r.GetVolume().GetVolumeId())
	if got := string(srv.Data(d.FilePath)); got != "keep me" {
		t.Errorf("restored data %q", got)
	}
	for i := 0; i < 2; i++ {
		if _, err := c.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshot().GetSnapshotId()}); err != nil {
			t.Fatalf("DeleteSnapshot #%d: %v", i+1, err)
		}
	}
	if _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: r.GetVolume().GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	if len(srv.Disks()) != 0 || len(srv.Files()) != 0 {
		t.Errorf("left: disks %v files %v", srv.Disks(), srv.Files())
	}
}

// TestSnapshotOwnership: a disk with a snapshot slot whose file is not one
// of our snapshot files (or is another slot's), and a volume whose file is
// another volume's, are never removed, reused or listed.
func TestSnapshotOwnership(t *testing.T) {
	c, srv := newTestController(t)
	ctx := context.Background()
	v := mustVolume(t, c, srv, "pvc-own", 1<<20, "x")
	foreign, _ := routeros.SnapshotSlotFor("foreign")
	victim, _ := routeros.SnapshotSlotFor("victim")
	vb := routeros.Backing{Slot: victim, Source: slotOf(v.GetVolumeId()), Created: time.Unix(1764642000, 0)}
	victimFile, _ := routeros.BackingPath(testVolumeDir, vb)
	other, _ := routeros.SlotFor("pvc-other")
	for _, line := range []string{
		`/disk add type=file file-path="/storage-pool/user/data.img" file-size=1024 slot="` + foreign + `"`,
		`/disk add type=file file-path="` + victimFile + `" file-size=1024 slot="` + other + `"`,
	} {
		if out, _, _ := srv.Exec(line); out != "" {
			t.Fatal(out)
		}
	}
	disks, files := len(srv.Disks()), len(srv.Files())
	if _, err := c.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: foreign + "@" + srv.Addr()}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("DeleteSnapshot of a foreign disk: %v, want FailedPrecondition", err)
	}
	if _, err := c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "foreign", SourceVolumeId: v.GetVolumeId()}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("CreateSnapshot onto a foreign disk: %v, want FailedPrecondition", err)
	}
	if _, err := c.CreateVolume(ctx, fromSnapshot(volReq("x", 0), foreign+"@"+srv.Addr())); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("restore of a foreign disk: %v, want FailedPrecondition", err)
	}
	// A volume disk whose file is named for another slot: refused (before,
	// DeleteVolume removed the disk and then that file).
	if _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: other + "@" + srv.Addr()}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("DeleteVolume of a disk on another slot's file: %v, want FailedPrecondition", err)
	}
	if list, err := c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{}); err != nil || len(list.GetEntries()) != 0 {
		t.Errorf("ListSnapshots = %v, %v; want none", list, err)
	}
	if len(srv.Disks()) != disks || len(srv.Files()) != files {
		t.Errorf("changed: disks %v files %v", srv.Disks(), srv.Files())
	}
}

// TestSnapshotInterrupted: a snapshot copy that inherited its source's
// export and whose answer was lost is found, unexported and returned by the
// retry; a delete interrupted after the disk went removes the file left.
func TestSnapshotInterrupted(t *testing.T) {
	c, srv := newTestController(t)
	srv.SetVariant(rdstest.Variant{CopyInheritsExport: true})
	ctx := context.Background()
	v := mustVolume(t, c, srv, "pvc-int", 1<<20, "x")
	srv.Drop("copy-from", true)
	req := &csi.CreateSnapshotRequest{Name: "snap-int", SourceVolumeId: v.GetVolumeId()}
	s, err := c.CreateSnapshot(ctx, req)
	if err != nil {
		t.Fatalf("CreateSnapshot whose answer was lost: %v", err)
	}
	d, ok := diskOf(srv, s.GetSnapshot().GetSnapshotId())
	if !ok || d.NVMeExport {
		t.Fatalf("snapshot disk %+v (found %v): want not exported", d, ok)
	}
	// A clone of it must come out exported with its own NQN, not the
	// source's.
	r, err := c.CreateVolume(ctx, fromSnapshot(volReq("pvc-int2", 0), s.GetSnapshot().GetSnapshotId()))
	if err != nil {
		t.Fatal(err)
	}
	rd, _ := diskOf(srv, r.GetVolume().GetVolumeId())
	if !rd.NVMeExport || rd.NVMeNQN != r.GetVolume().GetVolumeContext()[KeyNQN] {
		t.Errorf("clone disk %+v", rd)
	}
	if out, _, _ := srv.Exec(`/disk remove [find slot="` + d.Slot + `"]`); out != "" {
		t.Fatal(out)
	}
	if _, err := c.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: s.GetSnapshot().GetSnapshotId()}); err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.Files()[d.FilePath]; ok {
		t.Errorf("file %s left after DeleteSnapshot", d.FilePath)
	}
}

// TestCopyRefused: an RDS that refuses mount-filesystem=no with copy-from
// fails snapshots and clones loudly (Internal, naming the copy command),
// and nothing is created.
func TestCopyRefused(t *testing.T) {
	c, srv := newTestController(t)
	srv.SetVariant(rdstest.Variant{CopyRefusesProperties: true})
	ctx := context.Background()
	v := mustVolume(t, c, srv, "pvc-ref", 1<<20, "x")
	_, err := c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-ref", SourceVolumeId: v.GetVolumeId()})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "copy command") {
		t.Errorf("CreateSnapshot: %v, want Internal naming the copy command", err)
	}
	_, err = c.CreateVolume(ctx, fromVolume(volReq("pvc-ref2", 0), v.GetVolumeId()))
	if status.Code(err) != codes.Internal {
		t.Errorf("clone: %v, want Internal", err)
	}
	if len(srv.Disks()) != 1 {
		t.Errorf("disks %v", srv.Disks())
	}
}

// TestListSnapshotsPages: pages by snapshot id; a token not ours is
// Aborted; filters that name nothing of ours answer empty.
func TestListSnapshotsPages(t *testing.T) {
	c, srv := newTestController(t)
	ctx := context.Background()
	v := mustVolume(t, c, srv, "pvc-l", 1<<20, "x")
	var ids []string
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		s, err := c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: n, SourceVolumeId: v.GetVolumeId()})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.GetSnapshot().GetSnapshotId())
	}
	var got []string
	tok := ""
	for i := 0; i < 10; i++ {
		resp, err := c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{MaxEntries: 2, StartingToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.GetEntries() {
			got = append(got, e.GetSnapshot().GetSnapshotId())
		}
		if tok = resp.GetNextToken(); tok == "" {
			break
		}
	}
	if len(got) != len(ids) {
		t.Errorf("pages gave %v, want the %d snapshots %v", got, len(ids), ids)
	}
	if _, err := c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{StartingToken: "x"}); status.Code(err) != codes.Aborted {
		t.Errorf("foreign token: %v, want Aborted", err)
	}
	for _, r := range []*csi.ListSnapshotsRequest{{SnapshotId: "x"}, {SourceVolumeId: ids[0]}, {SnapshotId: v.GetVolumeId()}} {
		if resp, err := c.ListSnapshots(ctx, r); err != nil || len(resp.GetEntries()) != 0 {
			t.Errorf("ListSnapshots(%v) = %v, %v; want empty", r, resp, err)
		}
	}
	if resp, err := c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: ids[2], SourceVolumeId: v.GetVolumeId()}); err != nil || len(resp.GetEntries()) != 1 {
		t.Errorf("ListSnapshots by id and source = %v, %v", resp, err)
	}
}

// TestSnapshotInjection: nothing a user writes in a snapshot name, a
// source id, a content source or a list filter reaches a RouterOS command:
// every command sent holds only allow-listed characters and none holds the
// hostile value.
func TestSnapshotInjection(t *testing.T) {
	c, srv := newTestController(t)
	ctx := context.Background()
	v := mustVolume(t, c, srv, "pvc-inj", 1<<20, "x")
	allowed := regexp.MustCompile(`^[A-Za-z0-9 ._:/="\[\]~^-]*$`)
	for _, h := range []string{`"; /system reset`, `a" file-path="/etc`, `[/file remove [find]]`, `$x`, "a\nb",
		`rds-snap-0123456789abcdef0123456"`, `rds-csi-0123456789abcdef01234567 slot=x`, `../../x`} {
		before := len(srv.Commands())
		c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: h, SourceVolumeId: v.GetVolumeId()})
		c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "n", SourceVolumeId: h})
		c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "n", SourceVolumeId: v.GetVolumeId(), Parameters: map[string]string{h: h}})
		c.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: h})
		c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: h})
		c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: h})
		c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{StartingToken: h})
		c.CreateVolume(ctx, fromSnapshot(volReq("r", 0), h))
		c.CreateVolume(ctx, fromVolume(volReq("r", 0), h))
		for _, line := range srv.Commands()[before:] {
			if !allowed.MatchString(line) || strings.Contains(line, h) {
				t.Errorf("hostile %q reached RouterOS: %q", h, line)
			}
		}
	}
}

// TestSnapshotOnItsVolumesRDS: a snapshot is made on the RDS of its source
// volume (reached with the snapshotter secret), its id names that RDS, a
// restore from it lands there too, and a restore onto another RDS is
// refused (a copy stays on its RDS).
func TestSnapshotOnItsVolumesRDS(t *testing.T) {
	e := newTwoRDS(t, 0)
	ctx := context.Background()
	vb, err := e.create(t, "pvc-b", e.b, secretOf(e.b))
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-b", SourceVolumeId: vb.GetVolumeId(), Secrets: secretOf(e.b)})
	if err != nil {
		t.Fatal(err)
	}
	sid := s.GetSnapshot().GetSnapshotId()
	if !strings.HasSuffix(sid, "@"+e.b.Addr()) || s.GetSnapshot().GetSourceVolumeId() != vb.GetVolumeId() {
		t.Errorf("snapshot %v, want it on %s", s.GetSnapshot(), e.b.Addr())
	}
	if _, ok := diskOf(e.b, sid); !ok {
		t.Errorf("snapshot disk not on RDS b: %v", slots(e.b))
	}
	if len(e.a.Disks()) != 0 {
		t.Errorf("RDS a has disks %v", slots(e.a))
	}
	r, err := e.c.CreateVolume(ctx, fromSnapshot(&csi.CreateVolumeRequest{Name: "pvc-rb", VolumeCapabilities: ctrlMountCaps(),
		Parameters: map[string]string{KeyRDSAddress: e.b.Addr()}, Secrets: secretOf(e.b)}, sid))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := diskOf(e.b, r.GetVolume().GetVolumeId()); !ok || r.GetVolume().GetContentSource().GetSnapshot().GetSnapshotId() != sid {
		t.Errorf("restore %v not on RDS b (%v)", r.GetVolume(), slots(e.b))
	}
	if _, err := e.c.CreateVolume(ctx, fromSnapshot(volReq("pvc-ra", 0), sid)); status.Code(err) != codes.InvalidArgument {
		t.Errorf("restore onto RDS a: %v, want InvalidArgument", err)
	}
	if _, err := e.c.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: sid, Secrets: secretOf(e.b)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := diskOf(e.b, sid); ok {
		t.Error("snapshot still on RDS b")
	}
}

// twoRDSs starts two emulated RDSs that both accept the same client key,
// and returns them with a constructor of controllers whose default RDS is a
// and whose ListRDS is list, reaching both with their own credentials.
func twoRDSs(t *testing.T) (a, b *rdstest.Server, newCtrl func(list []string) *Controller) {
	t.Helper()
	a = startRDS(t)
	b, err := rdstest.Start(rdstest.Options{ClientKeyPEM: a.ClientKeyPEM()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	own := Credentials{User: a.User(), PrivateKey: a.ClientKeyPEM(), KnownHosts: append(a.KnownHosts(), b.KnownHosts()...)}
	run, err := routeros.NewSSH(routeros.SSHConfig{Address: a.Addr(), User: own.User, PrivateKey: own.PrivateKey, KnownHosts: own.KnownHosts, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Close() })
	newCtrl = func(list []string) *Controller {
		c, err := NewController(ControllerConfig{Client: routeros.NewClient(run, nil), RDSAddress: a.Addr(), ListRDS: list,
			VolumeDir: testVolumeDir, NQNBase: "nqn.2000-02.com.mikrotik", Credentials: own, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	return a, b, newCtrl
}

// TestListSnapshotsAcrossRDSs: with a second RDS in ListRDS (reached with
// the controller's own key, which both accept), an unfiltered list pages
// through the snapshots of both in snapshot id order; a snapshot created
// and the token's own snapshot deleted between pages neither make a page
// repeat nor skip one that stayed; the snapshot_id and source_volume_id
// filters read the RDS their id names; a listed RDS that does not answer
// fails the list (Unavailable), never a silently shorter one. Without
// ListRDS only the default RDS is read.
func TestListSnapshotsAcrossRDSs(t *testing.T) {
	a, b, newCtrl := twoRDSs(t)
	// The default and a repeat are dropped.
	c := newCtrl([]string{b.Addr(), a.Addr(), b.Addr()})
	if !slices.Equal(c.cfg.ListRDS, []string{b.Addr()}) {
		t.Fatalf("ListRDS kept as %v, want only %s", c.cfg.ListRDS, b.Addr())
	}
	ctx := context.Background()
	vol := func(name string, rds *rdstest.Server) *csi.Volume {
		r, err := c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: ctrlMountCaps(),
			CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}, Parameters: map[string]string{KeyRDSAddress: rds.Addr()}})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetVolume()
	}
	snap := func(name string, v *csi.Volume) string {
		s, err := c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: v.GetVolumeId()})
		if err != nil {
			t.Fatal(err)
		}
		return s.GetSnapshot().GetSnapshotId()
	}
	va, vb := vol("pvc-la", a), vol("pvc-lb", b)
	source := map[string]string{} // snapshot id -> source volume id
	for i := range 3 {
		source[snap(fmt.Sprintf("sa%d", i), va)] = va.GetVolumeId()
		source[snap(fmt.Sprintf("sb%d", i), vb)] = vb.GetVolumeId()
	}
	if len(a.Disks()) != 4 || len(b.Disks()) != 4 {
		t.Fatalf("disks: a %v, b %v; want a volume and 3 snapshots on each", slots(a), slots(b))
	}
	list := func(r *csi.ListSnapshotsRequest) []string {
		t.Helper()
		resp, err := c.ListSnapshots(ctx, r)
		if err != nil {
			t.Fatalf("ListSnapshots(%v): %v", r, err)
		}
		var ids []string
		for _, e := range resp.GetEntries() {
			s := e.GetSnapshot()
			if source[s.GetSnapshotId()] != s.GetSourceVolumeId() || !s.GetReadyToUse() {
				t.Errorf("entry %v: want source %s, ready", s, source[s.GetSnapshotId()])
			}
			ids = append(ids, s.GetSnapshotId())
		}
		if resp.GetNextToken() != "" {
			ids = append(ids, "next:"+resp.GetNextToken())
		}
		return ids
	}
	all := slices.Sorted(maps.Keys(source))
	if got := list(&csi.ListSnapshotsRequest{}); !slices.Equal(got, all) {
		t.Errorf("unfiltered list %v, want both RDSs' %v", got, all)
	}

	// Page by 2; between the first and the second page the token's own
	// snapshot is deleted and a new one created.
	deleted, added := checkPagingAcrossChange(t, all, func(max int32, tok string) []string {
		return list(&csi.ListSnapshotsRequest{MaxEntries: max, StartingToken: tok})
	}, func(tok string) string {
		if _, err := c.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: tok}); err != nil {
			t.Fatal(err)
		}
		delete(source, tok)
		added := snap("sb-new", vb)
		source[added] = vb.GetVolumeId()
		return added
	})

	// Filters read the RDS their id names.
	var sb, sa string
	for id, src := range source {
		if src == vb.GetVolumeId() && id != added {
			sb = id
		}
		if src == va.GetVolumeId() && id != deleted {
			sa = id
		}
	}
	if got := list(&csi.ListSnapshotsRequest{SnapshotId: sb}); !slices.Equal(got, []string{sb}) {
		t.Errorf("by snapshot id on b: %v, want %s", got, sb)
	}
	var ofB []string
	for id, src := range source {
		if src == vb.GetVolumeId() {
			ofB = append(ofB, id)
		}
	}
	slices.Sort(ofB)
	if got := list(&csi.ListSnapshotsRequest{SourceVolumeId: vb.GetVolumeId()}); !slices.Equal(got, ofB) {
		t.Errorf("by source volume on b: %v, want %v", got, ofB)
	}
	if got := list(&csi.ListSnapshotsRequest{SourceVolumeId: vb.GetVolumeId(), SnapshotId: sa}); len(got) != 0 {
		t.Errorf("snapshot of a with source volume of b: %v, want none", got)
	}
	var after []string
	for _, id := range ofB {
		if id > sa {
			after = append(after, id)
		}
	}
	if got := list(&csi.ListSnapshotsRequest{SourceVolumeId: vb.GetVolumeId(), StartingToken: sa}); !slices.Equal(got, after) {
		t.Errorf("b's snapshots after a token of RDS a: %v, want %v", got, after)
	}

	// Without ListRDS: the default RDS only.
	var ofA []string
	for id, src := range source {
		if src == va.GetVolumeId() {
			ofA = append(ofA, id)
		}
	}
	slices.Sort(ofA)
	c = newCtrl(nil)
	if got := list(&csi.ListSnapshotsRequest{}); !slices.Equal(got, ofA) {
		t.Errorf("without ListRDS: %v, want a's %v", got, ofA)
	}

	// A listed RDS that does not answer fails the list.
	c = newCtrl([]string{b.Addr()})
	b.Close()
	if _, err := c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("list with RDS b down: %v, want Unavailable", err)
	}
}
