package csi

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/srvlab/rds-csi/routeros"
)

// Snapshots and clones are RouterOS copies (routeros.Client.CopyDisk): a
// snapshot is a disk whose slot is routeros.SnapshotSlotFor(name), never
// exported over NVMe/TCP (it is not a volume: nothing may write to it),
// backed by <volume dir>/<slot>.<source volume slot>.<unix seconds>.img; a
// volume made from a snapshot or a volume is a volume like any other,
// backed by <volume dir>/<slot>.<source slot>.img. The file name
// (routeros.Backing) is the marker: it proves the disk is ours, a snapshot,
// and of which source, and holds the snapshot's creation time.

// now is the clock of snapshot creation times (tests replace it).
var now = time.Now

// snapshotOf reads a snapshot disk: its backing file must be one of ours
// recording this slot as a snapshot (else FailedPrecondition: never touched).
func (c *Controller) snapshotOf(d routeros.Disk) (routeros.Backing, error) {
	b, ok := routeros.ParseBacking(c.cfg.VolumeDir, d.FilePath)
	if d.Type != "file" || !ok || b.Slot != d.Slot || !routeros.IsSnapshotSlot(d.Slot) {
		return routeros.Backing{}, status.Errorf(codes.FailedPrecondition, "snapshot %s: disk type %q file %q is not a snapshot of rds-csi under %s; refusing to touch it", d.Slot, d.Type, d.FilePath, c.cfg.VolumeDir)
	}
	return b, nil
}

// snapshotMessage describes a snapshot disk on the RDS rds (canonical).
func snapshotMessage(rds string, d routeros.Disk, b routeros.Backing) (*csi.Snapshot, error) {
	sid, err := FormatSnapshotID(rds, d.Slot)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	vid, err := FormatVolumeID(rds, b.Source)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.Snapshot{
		SnapshotId:     sid,
		SourceVolumeId: vid,
		SizeBytes:      d.Size,
		CreationTime:   timestamppb.New(b.Created),
		// The copy exists: it was read back (CopyDisk, or the read that
		// found it). Whether RouterOS finishes a copy before its command
		// returns is unverified (README).
		ReadyToUse: true,
	}, nil
}

// CreateSnapshot copies a volume into a snapshot disk, or returns the
// snapshot a previous call with the same name made from the same volume.
func (c *Controller) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if req.GetSourceVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "source_volume_id is required")
	}
	for k := range req.GetParameters() {
		if !ignoredKey(k) {
			return nil, status.Errorf(codes.InvalidArgument, "invalid parameter %s: a VolumeSnapshotClass takes no parameters", safeKey(k))
		}
	}
	slot, err := routeros.SnapshotSlotFor(req.GetName())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	// The snapshot is made on the RDS of its source volume.
	vid, cl, err := c.volume("create snapshot", req.GetSourceVolumeId(), req.GetSecrets())
	if err != nil {
		return nil, err
	}
	src := vid.Slot
	sid, err := FormatSnapshotID(vid.RDS, slot)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	release, ok := c.inflight.claim(sid)
	if !ok {
		return nil, status.Errorf(codes.Aborted, "create snapshot %s: an operation on it is in progress", sid)
	}
	defer release()
	op := "create snapshot " + sid
	d, err := cl.Disk(ctx, slot)
	switch {
	case errors.Is(err, routeros.ErrNotFound):
		if _, err := c.sourceDisk(ctx, cl, "source volume", src); err != nil {
			return nil, err
		}
		file, err := routeros.BackingPath(c.cfg.VolumeDir, routeros.Backing{Slot: slot, Source: src, Created: now().UTC().Truncate(time.Second)})
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if d, err = c.copyDisk(ctx, cl, routeros.CopySpec{From: src, Slot: slot, FilePath: file}); err != nil {
			return nil, controllerStatus(op, err)
		}
	case err != nil:
		return nil, controllerStatus(op, err)
	}
	b, err := c.snapshotOf(d)
	if err != nil {
		return nil, err
	}
	if b.Source != src {
		return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists of volume slot %s, not of %s", req.GetName(), b.Source, req.GetSourceVolumeId())
	}
	// A copy interrupted before it was settled (it inherited its source's
	// export) is settled now: a snapshot is never exported.
	if d, err = cl.FinishCopy(ctx, d); err != nil {
		return nil, controllerStatus(op, err)
	}
	m, err := snapshotMessage(vid.RDS, d, b)
	if err != nil {
		return nil, err
	}
	return &csi.CreateSnapshotResponse{Snapshot: m}, nil
}

// copyDisk copies a disk. A copy whose answer was lost, or that ran
// concurrently, is found by a re-read; nothing there means it did not run
// and the copy's own error stands. A copy command RouterOS refused as
// invalid is Internal, not InvalidArgument: the request was valid, the
// copy syntax is unverified on hardware.
func (c *Controller) copyDisk(ctx context.Context, cl *routeros.Client, s routeros.CopySpec) (routeros.Disk, error) {
	d, err := cl.CopyDisk(ctx, s)
	if errors.Is(err, routeros.ErrExists) || errors.Is(err, routeros.ErrUnreachable) {
		copyErr := err
		if d, err = cl.Disk(ctx, s.Slot); errors.Is(err, routeros.ErrNotFound) {
			err = copyErr
		}
		if err == nil {
			d, err = cl.FinishCopy(ctx, d)
		}
	}
	if errors.Is(err, routeros.ErrInvalidArgument) {
		return d, status.Errorf(codes.Internal, "copy %s to %s: RouterOS refused the copy command (its syntax is unverified on hardware, see the README): %v", s.From, s.Slot, err)
	}
	return d, err
}

// sourceDisk reads the source of a copy (a volume or a snapshot slot):
// NotFound when there is none, FailedPrecondition when its disk or file is
// not ours.
func (c *Controller) sourceDisk(ctx context.Context, cl *routeros.Client, what, slot string) (routeros.Disk, error) {
	d, err := cl.Disk(ctx, slot)
	if errors.Is(err, routeros.ErrNotFound) {
		return d, status.Errorf(codes.NotFound, "%s %s not found", what, slot)
	}
	if err != nil {
		return d, controllerStatus("read "+what+" "+slot, err)
	}
	if b, ok := routeros.ParseBacking(c.cfg.VolumeDir, d.FilePath); d.Type != "file" || !ok || b.Slot != slot {
		return d, status.Errorf(codes.FailedPrecondition, "%s %s: file %q is not one of rds-csi under %s; refusing to copy it", what, slot, d.FilePath, c.cfg.VolumeDir)
	}
	return d, nil
}

// DeleteSnapshot removes a snapshot's disk and then its file, each
// confirmed by a re-read. An id that is not one of our snapshot ids, or
// names no disk, is already deleted (files an interrupted delete left are
// removed). Volumes made from the snapshot are independent copies and stay.
func (c *Controller) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot_id is required")
	}
	id, err := ParseSnapshotID(req.GetSnapshotId())
	if err != nil {
		return &csi.DeleteSnapshotResponse{}, nil // names nothing of ours
	}
	cl, err := c.rds(id.RDS, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	slot := id.Slot
	release, ok := c.inflight.claim(id.String())
	if !ok {
		return nil, status.Errorf(codes.Aborted, "delete snapshot %s: an operation on it is in progress", id)
	}
	defer release()
	op := "delete snapshot " + id.String()
	d, err := cl.Disk(ctx, slot)
	switch {
	case errors.Is(err, routeros.ErrNotFound):
		if err := c.removeSlotFiles(ctx, cl, slot); err != nil {
			return nil, controllerStatus(op, err)
		}
		return &csi.DeleteSnapshotResponse{}, nil
	case err != nil:
		return nil, controllerStatus(op, err)
	}
	if _, err := c.snapshotOf(d); err != nil {
		return nil, err
	}
	if d.NVMeExport { // an interrupted create: never remove an exported disk blindly
		if _, err := cl.UnexportDisk(ctx, slot); err != nil {
			return nil, controllerStatus(op, err)
		}
	}
	if err := cl.RemoveDisk(ctx, slot); err != nil {
		return nil, controllerStatus(op, err)
	}
	if err := cl.RemoveFile(ctx, c.cfg.VolumeDir, d.FilePath); err != nil {
		return nil, controllerStatus(op+": disk removed, file", err)
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// removeSlotFiles removes the backing files of a slot whose disk is gone
// (an interrupted delete); RemoveFile refuses any still in use.
func (c *Controller) removeSlotFiles(ctx context.Context, cl *routeros.Client, slot string) error {
	files, err := cl.SlotFiles(ctx, c.cfg.VolumeDir, slot)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := cl.RemoveFile(ctx, c.cfg.VolumeDir, f.Path); err != nil {
			return err
		}
	}
	return nil
}

// ListSnapshots lists this driver's snapshots ordered by snapshot id.
// Which RDSs it reads: the one a snapshot_id filter names, else the one a
// source_volume_id filter names, else the default RDS and every RDS of
// ControllerConfig.ListRDS (the controller knows no others: ListSnapshots
// names none, and StorageClasses are never sent to it). Each is reached
// with the request's secrets, or without them with the controller's own
// credentials; an RDS that cannot be read fails the call (a list that
// silently left one out would page wrongly). The starting_token is the
// last snapshot id of the previous page: the next page starts after it in
// the order of ids across all RDSs read, so snapshots created or deleted
// between pages, or a token whose snapshot is gone, never make a page skip
// or repeat one that stayed. A disk with a snapshot slot whose file is not
// one of our snapshot files is left out (and logged).
func (c *Controller) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "max_entries must not be negative")
	}
	tok := req.GetStartingToken()
	if tok != "" {
		if _, err := ParseSnapshotID(tok); err != nil {
			return nil, status.Errorf(codes.Aborted, "starting_token %s is not one this driver returned", quoteBounded(tok))
		}
	}
	var src ID // the source volume filter; zero for none
	if s := req.GetSourceVolumeId(); s != "" {
		id, err := ParseVolumeID(s)
		if err != nil {
			return &csi.ListSnapshotsResponse{}, nil // names no volume of ours
		}
		if id.Legacy {
			id = ID{RDS: c.cfg.RDSAddress, Slot: id.Slot}
		}
		src = id
	}
	var found []*csi.Snapshot
	if s := req.GetSnapshotId(); s != "" {
		id, err := ParseSnapshotID(s)
		if err != nil || src.RDS != "" && id.RDS != src.RDS {
			return &csi.ListSnapshotsResponse{}, nil
		}
		cl, err := c.rds(id.RDS, req.GetSecrets())
		if err != nil {
			return nil, err
		}
		d, err := cl.Disk(ctx, id.Slot)
		if errors.Is(err, routeros.ErrNotFound) {
			return &csi.ListSnapshotsResponse{}, nil
		}
		if err != nil {
			return nil, controllerStatus("list snapshots on "+id.RDS, err)
		}
		if found, err = c.snapshotsOf(id.RDS, []routeros.Disk{d}, src.Slot); err != nil {
			return nil, err
		}
	} else {
		rdss := c.listRDS()
		if src.RDS != "" {
			rdss = []string{src.RDS}
		}
		for _, rds := range rdss {
			cl, err := c.rds(rds, req.GetSecrets())
			if err != nil {
				return nil, err
			}
			disks, err := cl.Disks(ctx, routeros.SnapshotSlotPrefix)
			if err != nil {
				return nil, controllerStatus("list snapshots on "+rds, err)
			}
			more, err := c.snapshotsOf(rds, disks, src.Slot)
			if err != nil {
				return nil, err
			}
			found = append(found, more...)
		}
	}
	slices.SortFunc(found, func(a, b *csi.Snapshot) int { return strings.Compare(a.SnapshotId, b.SnapshotId) })
	start := 0
	if tok != "" {
		start, _ = slices.BinarySearchFunc(found, tok, func(s *csi.Snapshot, t string) int { return strings.Compare(s.SnapshotId, t) })
		if start < len(found) && found[start].SnapshotId == tok {
			start++
		}
	}
	out := &csi.ListSnapshotsResponse{}
	for _, s := range found[start:] {
		if req.GetMaxEntries() > 0 && len(out.Entries) == int(req.GetMaxEntries()) {
			out.NextToken = out.Entries[len(out.Entries)-1].GetSnapshot().GetSnapshotId()
			break
		}
		out.Entries = append(out.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: s})
	}
	return out, nil
}

// snapshotsOf describes the snapshot disks among disks read on the RDS rds
// (canonical), only those of the volume slot source when it is not "".
func (c *Controller) snapshotsOf(rds string, disks []routeros.Disk, source string) ([]*csi.Snapshot, error) {
	var out []*csi.Snapshot
	for _, d := range disks {
		if !routeros.IsSnapshotSlot(d.Slot) {
			continue
		}
		b, err := c.snapshotOf(d)
		if err != nil {
			c.log.Warn("list snapshots: disk left out", "rds", rds, "slot", d.Slot, "file", d.FilePath)
			continue
		}
		if source != "" && b.Source != source {
			continue
		}
		s, err := snapshotMessage(rds, d, b)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// listRDS is the RDSs an unfiltered list reads: the default, then
// ControllerConfig.ListRDS (canonical, without the default, no repeats).
func (c *Controller) listRDS() []string {
	return append([]string{c.cfg.RDSAddress}, c.cfg.ListRDS...)
}

// contentSource reads a CreateVolume's volume_content_source for a volume
// on the RDS rds: the slot of the snapshot or volume to copy ("" for none).
// An id that is not one of ours is NotFound (it cannot name anything of
// ours); a source on another RDS is InvalidArgument (a copy stays on its
// RDS); a source of no known type is InvalidArgument.
func (c *Controller) contentSource(cs *csi.VolumeContentSource, rds string) (string, error) {
	var (
		what string
		id   ID
		err  error
	)
	switch {
	case cs == nil:
		return "", nil
	case cs.GetSnapshot() != nil:
		what = "source snapshot"
		s := cs.GetSnapshot().GetSnapshotId()
		if s == "" {
			return "", status.Error(codes.InvalidArgument, "volume_content_source.snapshot.snapshot_id is required")
		}
		if id, err = ParseSnapshotID(s); err != nil {
			return "", status.Errorf(codes.NotFound, "source snapshot %s: not a snapshot id of rds-csi", quoteBounded(s))
		}
	case cs.GetVolume() != nil:
		what = "source volume"
		s := cs.GetVolume().GetVolumeId()
		if s == "" {
			return "", status.Error(codes.InvalidArgument, "volume_content_source.volume.volume_id is required")
		}
		if id, err = ParseVolumeID(s); err != nil {
			return "", status.Errorf(codes.NotFound, "source volume %s: not a volume id of rds-csi", quoteBounded(s))
		}
		if id.Legacy {
			id.RDS = c.cfg.RDSAddress
		}
	default:
		return "", status.Error(codes.InvalidArgument, "volume_content_source: neither a snapshot nor a volume")
	}
	if id.RDS != rds {
		return "", status.Errorf(codes.InvalidArgument, "%s %s is on RDS %s, the new volume on %s: a copy stays on its RDS", what, id, id.RDS, rds)
	}
	return id.Slot, nil
}

// contentSourceOf is the volume_content_source a copy's backing file on
// the RDS rds records (nil for a volume created empty).
func contentSourceOf(rds string, b routeros.Backing) (*csi.VolumeContentSource, error) {
	switch {
	case routeros.IsSnapshotSlot(b.Source):
		id, err := FormatSnapshotID(rds, b.Source)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id}}}, nil
	case routeros.IsVolumeSlot(b.Source):
		id, err := FormatVolumeID(rds, b.Source)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}}, nil
	}
	return nil, nil
}

// copySize is the size of a volume copied from a source of srcSize bytes:
// required_bytes when larger (the copy grows), else the source's size; a
// limit_bytes below the source's size is OutOfRange (a copy never shrinks).
func copySize(r *csi.CapacityRange, srcSize int64) (int64, error) {
	if lim := r.GetLimitBytes(); lim > 0 && srcSize > lim {
		return 0, status.Errorf(codes.OutOfRange, "capacity_range: the source is %d bytes, above limit_bytes %d (a volume is at least its source's size)", srcSize, lim)
	}
	return max(r.GetRequiredBytes(), srcSize), nil
}

// createCopy makes the volume spec describes as a copy of the disk src:
// copy, grow to the requested size, export.
func (c *Controller) createCopy(ctx context.Context, cl *routeros.Client, spec routeros.DiskSpec, src string, r *csi.CapacityRange) (routeros.Disk, error) {
	what := "source volume"
	if routeros.IsSnapshotSlot(src) {
		what = "source snapshot"
	}
	sd, err := c.sourceDisk(ctx, cl, what, src)
	if err != nil {
		return routeros.Disk{}, err
	}
	size, err := copySize(r, sd.Size)
	if err != nil {
		return routeros.Disk{}, err
	}
	d, err := c.copyDisk(ctx, cl, routeros.CopySpec{From: src, Slot: spec.Slot, FilePath: spec.FilePath})
	if err != nil {
		return d, controllerStatus("create volume "+spec.Slot+" from "+src, err)
	}
	out, err := c.finishClone(ctx, cl, d, spec, size)
	switch status.Code(err) {
	case codes.OK, codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		// Done, or the RDS did not answer: a retry finishes the copy.
		return out, err
	}
	// The copy cannot become the volume asked for (no room to grow it,
	// an export refused): remove it rather than leave a disk no CSI call
	// names (a CreateVolume that fails is never followed by a delete).
	if rerr := cl.RemoveDisk(ctx, spec.Slot); rerr != nil {
		c.log.Warn("create volume: removing the unfinished copy failed", "slot", spec.Slot, "err", rerr)
	} else if rerr := cl.RemoveFile(ctx, c.cfg.VolumeDir, spec.FilePath); rerr != nil {
		c.log.Warn("create volume: removing the unfinished copy's file failed", "file", spec.FilePath, "err", rerr)
	}
	return out, err
}

// finishClone grows a copied volume to size and exports it as spec says:
// the steps after the copy, also for a copy an earlier call left
// unfinished.
func (c *Controller) finishClone(ctx context.Context, cl *routeros.Client, d routeros.Disk, spec routeros.DiskSpec, size int64) (routeros.Disk, error) {
	op := "create volume " + spec.Slot
	var err error
	if d.MountFilesystem {
		return d, status.Errorf(codes.Internal, "%s: copy has mount-filesystem=yes; refusing to export it", op)
	}
	if d.Size < size {
		if d, err = cl.ResizeDisk(ctx, spec.Slot, size); err != nil {
			return d, controllerStatus(op+": grow the copy", err)
		}
	}
	if !d.NVMeExport || d.NVMePort != spec.Port || d.NVMeNQN != spec.NQN {
		if d, err = cl.ExportDisk(ctx, spec.Slot, spec.Port, spec.NQN); err != nil {
			return d, controllerStatus(op+": export the copy", err)
		}
	}
	return d, nil
}
