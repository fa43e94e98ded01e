package sysfs

import (
	"fmt"
	iofs "io/fs"
	"os"
	"sync"
)

// Reading a sysfs directory. A scan opens each object's directory once and
// reads its attributes relative to it (openat on Linux), each with one read(2)
// into a reused buffer: sysfs returns an attribute (at most one page) whole on
// the first read.

// attrMax bounds an attribute's size: sysfs never shows more than a page.
const attrMax = 4096

// scratch is one goroutine's reusable buffers.
type scratch struct {
	attr   [attrMax]byte
	dirent [8192]byte
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// dir is one open sysfs directory.
type dir struct {
	path string
	h    dirHandle
	s    *scratch
	// missing is set when a core attribute was absent: the caller checks,
	// once it is done, whether the whole directory vanished meanwhile.
	missing bool
}

// openDir opens the directory at path (following symlinks).
func openDir(s *scratch, path string) (dir, error) {
	h, err := openDirHandle(path)
	if err != nil {
		return dir{}, err
	}
	return dir{path: path, h: h, s: s}, nil
}

// sub opens the subdirectory name of d.
func (d *dir) sub(name string) (dir, error) {
	path := d.path + "/" + name
	h, err := d.h.openSub(name, path)
	if err != nil {
		return dir{}, err
	}
	return dir{path: path, h: h, s: d.s}, nil
}

func (d *dir) close() { d.h.close() }

// attr returns the content of the attribute file name without its trailing
// newline, valid until the next read through the same scratch. ok is false
// when the attribute is absent; err is any other failure, wrapped with the
// path.
func (d *dir) attr(name string) (b []byte, ok bool, err error) {
	n, err := d.h.read(name, d.path, d.s.attr[:])
	if err != nil {
		if gone(err) {
			return nil, false, nil
		}
		return nil, false, ioError(err)
	}
	if n == len(d.s.attr) {
		return nil, false, fmt.Errorf("sysfs: %s/%s: larger than %d bytes", d.path, name, attrMax)
	}
	return trimNewlineBytes(d.s.attr[:n]), true, nil
}

// list returns the names of the entries of d for which keep is true. A
// directory removed since it was opened lists empty (getdents fails ENOENT)
// and sets d.missing.
func (d *dir) list(keep func(name []byte) bool) ([]string, error) {
	names, err := d.h.list(d.path, d.s.dirent[:], keep)
	if err != nil {
		if gone(err) {
			d.missing = true
			return nil, nil
		}
		return nil, ioError(err)
	}
	return names, nil
}

// vanished reports whether the directory is gone. It is asked after a core
// attribute turned out missing: kernfs removes a device's attributes first and
// its directory last, so that is the first sign of teardown.
func (d *dir) vanished() bool {
	_, err := os.Stat(d.path)
	return err != nil && gone(err)
}

// readAttrs fills v from the attribute table. Absent attributes leave their
// field at its zero value; an absent core attribute sets d.missing.
func readAttrs[T any](d *dir, v *T, table []attr[T]) error {
	for _, a := range table {
		b, ok, err := d.attr(a.name)
		if err != nil {
			return err
		}
		if !ok {
			d.missing = d.missing || a.core
			continue
		}
		if err := a.parse(v, b); err != nil {
			return parseError(d.path+"/"+a.name, err)
		}
	}
	return nil
}

// listDir lists the entries of the directory at path for which keep is true.
// A missing directory is an empty list.
func listDir(path string, keep func(name []byte) bool) ([]string, error) {
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	d, err := openDir(s, path)
	if err != nil {
		if gone(err) {
			return nil, nil
		}
		return nil, ioError(err)
	}
	defer d.close()
	return d.list(keep)
}

// readFile reads one small attribute file by path, without the trailing
// newline. Missing files give an error wrapping ErrNotExist.
func readFile(path string) (string, error) {
	var buf [attrMax]byte
	n, err := readFileInto(path, buf[:])
	if err != nil {
		if gone(err) {
			return "", notExist(err)
		}
		return "", ioError(err)
	}
	if n == len(buf) {
		return "", fmt.Errorf("sysfs: %s: larger than %d bytes", path, attrMax)
	}
	return string(trimNewlineBytes(buf[:n])), nil
}

// pathError builds the error of a failed system call on dirPath/name.
func pathError(op, dirPath, name string, err error) error {
	p := dirPath
	if name != "" {
		p += "/" + name
	}
	return &iofs.PathError{Op: op, Path: p, Err: err}
}

func trimNewlineBytes(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
