package routeros

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Runner runs one command on the RDS and returns both streams and the exit
// status. It returns an error only when the command could not be run to
// its end (connection, deadline); what RouterOS answered is left to
// Classify. *SSH is the Runner for a real RDS.
type Runner interface {
	Run(ctx context.Context, cmd Command) (Result, error)
}

// Pinger checks that the RDS answers, by opening a session (RouterOS
// ignores SSH keepalives).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Observer is told about every command the Client runs: its verb, the
// error (nil on success; ErrorClass names it) and how long it took; and
// about every Ping, as verb PingVerb. For metrics; it must not block.
type Observer func(verb string, err error, d time.Duration)

// PingVerb is the verb Client.Ping reports to the Observer (a session
// opened and closed, no command).
const PingVerb = "ping"

// Client is the typed view of an RDS: disks, files and the pool. Every
// change is confirmed by reading the object back, because a RouterOS
// command that matched nothing may report success. Only disks whose slot
// IsOwnedSlot, and files inside a volume directory named after such a slot,
// are ever changed or removed.
type Client struct {
	run     Runner
	observe Observer
}

// NewClient returns a Client running commands on r. observe may be nil.
func NewClient(r Runner, observe Observer) *Client {
	return &Client{run: r, observe: observe}
}

// exec runs cmd and classifies the result.
func (c *Client) exec(ctx context.Context, cmd Command) (Result, error) {
	start := time.Now()
	res, err := c.run.Run(ctx, cmd)
	if err == nil {
		err = Classify(cmd, res)
	}
	if c.observe != nil {
		c.observe(cmd.verb, err, time.Since(start))
	}
	return res, err
}

func (c *Client) printDisks(ctx context.Context, cmd Command, err error) ([]Disk, error) {
	if err != nil {
		return nil, err
	}
	res, err := c.exec(ctx, cmd)
	if err != nil {
		return nil, err
	}
	disks, err := ParseDisks(res.Stdout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.line, err)
	}
	return disks, nil
}

// Disk reads the disk with this slot. It returns an error wrapping
// ErrNotFound when there is none.
func (c *Client) Disk(ctx context.Context, slot string) (Disk, error) {
	cmd, err := PrintDiskCommand(slot)
	disks, err := c.printDisks(ctx, cmd, err)
	if err != nil {
		return Disk{}, err
	}
	var found []Disk
	for _, d := range disks {
		if d.Slot == slot {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return Disk{}, fmt.Errorf("disk %s: %w", slot, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return Disk{}, fmt.Errorf("%w: %d disks with slot %s", ErrUnexpectedOutput, len(found), slot)
}

// Disks lists the disks whose slot starts with prefix ("" for all), in
// RouterOS's order.
func (c *Client) Disks(ctx context.Context, prefix string) ([]Disk, error) {
	cmd, err := PrintDisksCommand(prefix)
	disks, err := c.printDisks(ctx, cmd, err)
	if err != nil {
		return nil, err
	}
	out := disks[:0]
	for _, d := range disks {
		if strings.HasPrefix(d.Slot, prefix) {
			out = append(out, d)
		}
	}
	return out, nil
}

// DisksUsingFile lists the disks whose file-path is p.
func (c *Client) DisksUsingFile(ctx context.Context, p string) ([]Disk, error) {
	cmd, err := PrintDisksByFileCommand(p)
	disks, err := c.printDisks(ctx, cmd, err)
	if err != nil {
		return nil, err
	}
	out := disks[:0]
	for _, d := range disks {
		if d.FilePath == p {
			out = append(out, d)
		}
	}
	return out, nil
}

// Pool reads the size and free space of the pool disk mounted at
// mountPoint ("storage-pool"), in exact bytes.
func (c *Client) Pool(ctx context.Context, mountPoint string) (Pool, error) {
	cmd, err := PrintPoolCommand(mountPoint)
	disks, err := c.printDisks(ctx, cmd, err)
	if err != nil {
		return Pool{}, err
	}
	var found []Disk
	for _, d := range disks {
		if d.MountPoint == mountPoint {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		return Pool{}, fmt.Errorf("pool %s: %w", mountPoint, ErrNotFound)
	}
	if len(found) > 1 {
		return Pool{}, fmt.Errorf("%w: %d disks mounted at %s", ErrUnexpectedOutput, len(found), mountPoint)
	}
	d := found[0]
	if d.Size < 0 || d.Free < 0 {
		return Pool{}, fmt.Errorf("%w: pool %s: size or free not printed in bytes", ErrUnexpectedOutput, mountPoint)
	}
	return Pool{MountPoint: mountPoint, Size: d.Size, Free: d.Free}, nil
}

// CreateDisk creates a file-backed disk exported over NVMe/TCP and reads
// it back. The slot must be one SlotFor derives. It does not look the slot
// up first: callers do that for idempotency, and on ErrExists or
// ErrUnreachable read the slot to learn what exists. The returned disk is
// confirmed: same file, export, port and NQN, and at least the size asked
// for; otherwise the error wraps ErrUnconfirmed.
func (c *Client) CreateDisk(ctx context.Context, s DiskSpec) (Disk, error) {
	if err := checkOwnedSlot(s.Slot); err != nil {
		return Disk{}, err
	}
	cmd, err := AddDiskCommand(s)
	if err != nil {
		return Disk{}, err
	}
	if _, err := c.exec(ctx, cmd); err != nil {
		return Disk{}, err
	}
	d, err := c.Disk(ctx, s.Slot)
	if err != nil {
		return Disk{}, confirmErr("create", s.Slot, err)
	}
	if err := Matches(d, s); err != nil {
		return d, err
	}
	return d, nil
}

// Matches reports (as an error wrapping ErrUnconfirmed naming the field)
// whether d is the disk s describes: file, size at least s.Size, exported
// on that port with that NQN, never mounted by RouterOS.
func Matches(d Disk, s DiskSpec) error {
	bad := func(field, got, want string) error {
		return fmt.Errorf("%w: disk %s: %s is %q, want %s", ErrUnconfirmed, d.Slot, field, got, want)
	}
	switch {
	case d.Slot != s.Slot:
		return bad("slot", d.Slot, s.Slot)
	case d.Type != "file":
		return bad("type", d.Type, "file")
	case d.FilePath != s.FilePath:
		return bad("file-path", d.FilePath, s.FilePath)
	case d.Size < s.Size:
		return bad("size", fmt.Sprint(d.Size), fmt.Sprintf("at least %d", s.Size))
	case !d.NVMeExport:
		return bad("nvme-tcp-export", "no", "yes")
	case d.NVMePort != s.Port:
		return bad("nvme-tcp-server-port", fmt.Sprint(d.NVMePort), fmt.Sprint(s.Port))
	case d.NVMeNQN != s.NQN:
		return bad("nvme-tcp-server-nqn", d.NVMeNQN, s.NQN)
	case d.MountFilesystem:
		return bad("mount-filesystem", "yes", "no")
	}
	return nil
}

// confirmErr turns a failed re-read after a change into ErrUnconfirmed
// when the object is missing, and keeps other errors.
func confirmErr(op, slot string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %s %s: not found when read back", ErrUnconfirmed, op, slot)
	}
	return err
}

// ResizeDisk grows a disk's file to at least size bytes; it never shrinks
// (a disk already that large is returned unchanged, without a command). The
// result is read back: a size still short wraps ErrUnconfirmed.
func (c *Client) ResizeDisk(ctx context.Context, slot string, size int64) (Disk, error) {
	if err := checkOwnedSlot(slot); err != nil {
		return Disk{}, err
	}
	cmd, err := ResizeDiskCommand(slot, size)
	if err != nil {
		return Disk{}, err
	}
	d, err := c.Disk(ctx, slot)
	if err != nil {
		return Disk{}, err
	}
	if d.Size >= size {
		return d, nil
	}
	if _, err := c.exec(ctx, cmd); err != nil && !errors.Is(err, ErrNotFound) {
		return Disk{}, err
	}
	d, err = c.Disk(ctx, slot)
	if err != nil {
		return Disk{}, confirmErr("resize", slot, err)
	}
	if d.Size < size {
		return d, fmt.Errorf("%w: disk %s: size %d after resize, want at least %d", ErrUnconfirmed, slot, d.Size, size)
	}
	return d, nil
}

// ExportDisk exports a disk (a copy) over NVMe/TCP and reads it back.
func (c *Client) ExportDisk(ctx context.Context, slot string, port int, nqn string) (Disk, error) {
	if err := checkOwnedSlot(slot); err != nil {
		return Disk{}, err
	}
	cmd, err := ExportDiskCommand(slot, port, nqn)
	if err != nil {
		return Disk{}, err
	}
	if _, err := c.exec(ctx, cmd); err != nil && !errors.Is(err, ErrNotFound) {
		return Disk{}, err
	}
	d, err := c.Disk(ctx, slot)
	if err != nil {
		return Disk{}, confirmErr("export", slot, err)
	}
	if !d.NVMeExport || d.NVMePort != port || d.NVMeNQN != nqn {
		return d, fmt.Errorf("%w: disk %s: export %v port %d nqn %q after export", ErrUnconfirmed, slot, d.NVMeExport, d.NVMePort, d.NVMeNQN)
	}
	return d, nil
}

// CopyDisk copies the disk s.From into a new disk s.Slot backed by
// s.FilePath, not exported (ExportDisk exports a clone) and never mounted by
// RouterOS. The source is read first (a copy-from whose [find] matched
// nothing must never run: what RouterOS does then is unverified), and the
// copy is read back: it must exist with s.FilePath, at least the source's
// size and mount-filesystem=no, else the error wraps ErrUnconfirmed.
//
// Whether export flags may be given with copy-from, and whether a copy
// inherits its source's export, are unverified: the copy command carries no
// export flag, and a copy that comes out exported (inherited) is unexported
// by a second command (UnexportDisk) before CopyDisk returns. mount-filesystem=no
// is given with the copy (a copy mounted by RouterOS even briefly could be
// changed): an RDS that refuses it with copy-from fails the copy loudly
// (ErrInvalidArgument from its answer), it is never dropped.
//
// Callers look s.Slot up first for idempotency, and finish an interrupted
// copy (exported, or short of its size) the same way: FinishCopy.
func (c *Client) CopyDisk(ctx context.Context, s CopySpec) (Disk, error) {
	if err := checkOwnedSlot(s.Slot); err != nil {
		return Disk{}, err
	}
	cmd, err := CopyDiskCommand(s)
	if err != nil {
		return Disk{}, err
	}
	src, err := c.Disk(ctx, s.From)
	if err != nil {
		return Disk{}, fmt.Errorf("copy source: %w", err)
	}
	if _, err := c.exec(ctx, cmd); err != nil {
		return Disk{}, err
	}
	d, err := c.Disk(ctx, s.Slot)
	if err != nil {
		return Disk{}, confirmErr("copy", s.Slot, err)
	}
	if d.FilePath != s.FilePath || d.Size < src.Size {
		return d, fmt.Errorf("%w: copy %s: file-path %q size %d, want %q and at least %d", ErrUnconfirmed, s.Slot, d.FilePath, d.Size, s.FilePath, src.Size)
	}
	return c.FinishCopy(ctx, d)
}

// FinishCopy makes a copy CopyDisk created safe to keep: without a publish
// record (one inherited from its source is cleared; another comment is
// ErrNotOwned), unexported (a copy
// that inherited its source's export is unexported and read back) and not
// mounted by RouterOS (mount-filesystem=yes is ErrUnconfirmed: the copy
// command asked for no, so RouterOS did something unknown).
func (c *Client) FinishCopy(ctx context.Context, d Disk) (Disk, error) {
	if d.MountFilesystem {
		return d, fmt.Errorf("%w: copy %s: mount-filesystem is yes, want no", ErrUnconfirmed, d.Slot)
	}
	if d.Comment != "" {
		// Whether a copy takes its source's comment is unverified: a
		// copy of a published volume must not look published.
		slot := d.Slot
		var err error
		if d, err = c.SetPublished(ctx, slot, nil); err != nil {
			return d, fmt.Errorf("copy %s: clearing the comment it came with: %w", slot, err)
		}
	}
	if !d.NVMeExport {
		return d, nil
	}
	return c.UnexportDisk(ctx, d.Slot)
}

// UnexportDisk stops exporting a disk over NVMe/TCP and reads it back.
func (c *Client) UnexportDisk(ctx context.Context, slot string) (Disk, error) {
	if err := checkOwnedSlot(slot); err != nil {
		return Disk{}, err
	}
	cmd, err := UnexportDiskCommand(slot)
	if err != nil {
		return Disk{}, err
	}
	if _, err := c.exec(ctx, cmd); err != nil && !errors.Is(err, ErrNotFound) {
		return Disk{}, err
	}
	d, err := c.Disk(ctx, slot)
	if err != nil {
		return Disk{}, confirmErr("unexport", slot, err)
	}
	if d.NVMeExport {
		return d, fmt.Errorf("%w: disk %s: still exported after unexport", ErrUnconfirmed, slot)
	}
	return d, nil
}

// RemoveDisk removes a disk entry (not its file: RemoveFile does that) and
// confirms by reading the slot back. A disk already gone is success. An
// error wrapping ErrUnconfirmed means the disk is still there.
func (c *Client) RemoveDisk(ctx context.Context, slot string) error {
	if err := checkOwnedSlot(slot); err != nil {
		return err
	}
	cmd, err := RemoveDiskCommand(slot)
	if err != nil {
		return err
	}
	if _, err := c.exec(ctx, cmd); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	switch _, err := c.Disk(ctx, slot); {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("%w: disk %s still present after remove", ErrUnconfirmed, slot)
}

// IsOwnedFile reports whether p is a backing file this driver creates: a
// valid path directly inside the valid volumeDir of a form ParseBacking
// reads.
func IsOwnedFile(volumeDir, p string) bool {
	_, ok := ParseBacking(volumeDir, p)
	return ok
}

// File reads one file. It returns an error wrapping ErrNotFound when there
// is none.
func (c *Client) File(ctx context.Context, p string) (File, error) {
	cmd, err := PrintFileCommand(p)
	if err != nil {
		return File{}, err
	}
	res, err := c.exec(ctx, cmd)
	if err != nil {
		return File{}, err
	}
	files, err := ParseFiles(res.Stdout)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", cmd.line, err)
	}
	for _, f := range files {
		if f.Path == p {
			return f, nil
		}
	}
	return File{}, fmt.Errorf("file %s: %w", p, ErrNotFound)
}

// Files lists the files under dir.
func (c *Client) Files(ctx context.Context, dir string) ([]File, error) {
	cmd, err := PrintFilesCommand(dir)
	if err != nil {
		return nil, err
	}
	res, err := c.exec(ctx, cmd)
	if err != nil {
		return nil, err
	}
	files, err := ParseFiles(res.Stdout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.line, err)
	}
	out := files[:0]
	for _, f := range files {
		if strings.HasPrefix(f.Path, dir+"/") {
			out = append(out, f)
		}
	}
	return out, nil
}

// SlotFiles lists the backing files of one slot in volumeDir (ParseBacking
// forms whose slot is slot): the files an interrupted delete may have left.
func (c *Client) SlotFiles(ctx context.Context, volumeDir, slot string) ([]File, error) {
	cmd, err := PrintSlotFilesCommand(volumeDir, slot)
	if err != nil {
		return nil, err
	}
	res, err := c.exec(ctx, cmd)
	if err != nil {
		return nil, err
	}
	files, err := ParseFiles(res.Stdout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.line, err)
	}
	out := files[:0]
	for _, f := range files {
		if b, ok := ParseBacking(volumeDir, f.Path); ok && b.Slot == slot {
			out = append(out, f)
		}
	}
	return out, nil
}

// RemoveFile removes a backing file and confirms by reading it back. Only a
// file IsOwnedFile(volumeDir, p) is removed (else ErrNotOwned), and only
// when no disk uses it (else ErrInUse). A file already gone is success.
func (c *Client) RemoveFile(ctx context.Context, volumeDir, p string) error {
	if err := ValidatePath("volume-dir", volumeDir); err != nil {
		return err
	}
	if err := ValidatePath("file-path", p); err != nil {
		return err
	}
	if !IsOwnedFile(volumeDir, p) {
		return fmt.Errorf("file %s: %w: want a file in %s named %s, for slots %s", p, ErrNotOwned, volumeDir, ruleBacking, ruleOurSlot)
	}
	users, err := c.DisksUsingFile(ctx, p)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return fmt.Errorf("file %s: %w by disk %s", p, ErrInUse, users[0].Slot)
	}
	cmd, err := RemoveFileCommand(p)
	if err != nil {
		return err
	}
	if _, err := c.exec(ctx, cmd); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	switch _, err := c.File(ctx, p); {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("%w: file %s still present after remove", ErrUnconfirmed, p)
}

// Ping checks the RDS answers, if the Runner can (a *SSH opens a session).
// The Observer sees it as verb PingVerb.
func (c *Client) Ping(ctx context.Context) error {
	p, ok := c.run.(Pinger)
	if !ok {
		return nil
	}
	start := time.Now()
	err := p.Ping(ctx)
	if c.observe != nil {
		c.observe(PingVerb, err, time.Since(start))
	}
	return err
}
