//go:build !linux

package sysfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Elsewhere: plain os calls, so that packages built on sysfs compile and their
// tests run on fixture trees on any OS.

// dirHandle is a directory path.
type dirHandle struct {
	path string
}

func openDirHandle(path string) (dirHandle, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return dirHandle{}, err
	}
	if !fi.IsDir() {
		return dirHandle{}, pathError("open", path, "", syscall.ENOTDIR)
	}
	return dirHandle{path: path}, nil
}

func (h dirHandle) openSub(name, path string) (dirHandle, error) {
	return openDirHandle(filepath.Join(h.path, name))
}

func (h dirHandle) close() {}

func (h dirHandle) read(name, dirPath string, buf []byte) (int, error) {
	return readFileInto(filepath.Join(h.path, name), buf)
}

func (h dirHandle) list(dirPath string, buf []byte, keep func([]byte) bool) ([]string, error) {
	f, err := os.Open(h.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	all, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range all {
		if keep([]byte(n)) {
			names = append(names, n)
		}
	}
	return names, nil
}

func readFileInto(path string, buf []byte) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := f.Read(buf)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// ino is unknown elsewhere: nothing is remembered by instance.
func (h dirHandle) ino() (uint64, error) {
	return 0, errors.ErrUnsupported
}
