package routeros

import (
	"fmt"
	"strconv"
)

// Disk is a /disk entry as this package reads it. Sizes are exact bytes from
// size= (space-grouped digits); file-size= is human readable and lossy
// ("50.0GiB") and is never read.
type Disk struct {
	Slot       string
	Type       string // "file" for a file-backed disk
	FilePath   string // file-path, for type=file
	Size       int64  // size= in bytes; -1 when not printed
	Free       int64  // free= in bytes (the pool); -1 when not printed
	MountPoint string // mount-point (the pool: "storage-pool")
	// MountFilesystem is mount-filesystem=yes.
	MountFilesystem bool
	NVMeExport      bool   // nvme-tcp-export=yes
	NVMePort        int    // nvme-tcp-server-port; 0 when not printed
	NVMeNQN         string // nvme-tcp-server-nqn
	// AllowHostName is nvme-tcp-server-allow-host-name ("" = any host).
	AllowHostName string
	Flags         string
	Comment       string
}

// File is a /file entry. Path is the name with its leading '/' restored.
type File struct {
	Path string
	Type string // "file", ".img file", "directory", ...
	// Size in bytes when printed as an exact count; -1 otherwise (a human
	// readable size is never used).
	Size int64
}

// Pool is the capacity of the pool disk, in bytes.
type Pool struct {
	MountPoint string
	Size       int64
	Free       int64
}

// ParseDisks reads `/disk print detail` output into disks. Every entry
// must have a slot and a type; sizes, ports and yes/no values that are
// printed must be well formed. Errors wrap ErrUnexpectedOutput.
func ParseDisks(out []byte) ([]Disk, error) {
	entries, err := ParseDetail(out)
	if err != nil {
		return nil, err
	}
	disks := make([]Disk, 0, len(entries))
	for _, e := range entries {
		d, err := diskFrom(e)
		if err != nil {
			return nil, err
		}
		disks = append(disks, d)
	}
	return disks, nil
}

func diskFrom(e Entry) (Disk, error) {
	d := Disk{Size: -1, Free: -1, Flags: e.Flags, Comment: e.Comment}
	var ok bool
	if d.Slot, ok = e.Token("slot"); !ok {
		return Disk{}, fmt.Errorf("%w: disk entry %d has no slot", ErrUnexpectedOutput, e.Index)
	}
	if d.Type, ok = e.Text("type"); !ok {
		return Disk{}, fmt.Errorf("%w: disk entry %d has no type", ErrUnexpectedOutput, e.Index)
	}
	d.FilePath, _ = e.Token("file-path")
	d.MountPoint, _ = e.Token("mount-point")
	d.NVMeNQN, _ = e.Token("nvme-tcp-server-nqn")
	d.AllowHostName, _ = e.Token("nvme-tcp-server-allow-host-name")
	for _, f := range []struct {
		key string
		dst *int64
	}{{"size", &d.Size}, {"free", &d.Free}} {
		if !e.Has(f.key) {
			continue
		}
		n, err := e.Bytes(f.key)
		if err != nil {
			return Disk{}, err
		}
		*f.dst = n
	}
	for _, f := range []struct {
		key string
		dst *bool
	}{{"mount-filesystem", &d.MountFilesystem}, {"nvme-tcp-export", &d.NVMeExport}} {
		v, ok := e.Token(f.key)
		if !ok {
			continue
		}
		switch v {
		case "yes":
			*f.dst = true
		case "no":
		default:
			return Disk{}, fmt.Errorf("%w: disk %s: %s=%q is not yes or no", ErrUnexpectedOutput, d.Slot, f.key, v)
		}
	}
	if v, ok := e.Token("nvme-tcp-server-port"); ok && v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 0 || p > 65535 {
			return Disk{}, fmt.Errorf("%w: disk %s: nvme-tcp-server-port=%q", ErrUnexpectedOutput, d.Slot, v)
		}
		d.NVMePort = p
	}
	return d, nil
}

// ParseFiles reads `/file print detail` output. Every entry must have a
// name. Errors wrap ErrUnexpectedOutput.
func ParseFiles(out []byte) ([]File, error) {
	entries, err := ParseDetail(out)
	if err != nil {
		return nil, err
	}
	files := make([]File, 0, len(entries))
	for _, e := range entries {
		name, ok := e.Token("name")
		if !ok || name == "" {
			return nil, fmt.Errorf("%w: file entry %d has no name", ErrUnexpectedOutput, e.Index)
		}
		f := File{Path: "/" + name, Size: -1}
		f.Type, _ = e.Text("type")
		if e.Has("size") {
			if n, err := e.Bytes("size"); err == nil {
				f.Size = n
			}
		}
		files = append(files, f)
	}
	return files, nil
}
