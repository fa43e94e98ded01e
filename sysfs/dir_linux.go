package sysfs

import (
	"encoding/binary"
	"errors"
	"syscall"
)

// Linux: raw system calls. os.Open would add an fstat and, on kernfs files
// (which support poll), an epoll registration and removal per attribute; at
// thousands of attributes per scan that triples the cost.

// dirHandle is an open directory file descriptor.
type dirHandle struct {
	fd int
}

func openDirHandle(path string) (dirHandle, error) {
	fd, err := openRetry(func() (int, error) {
		return syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	})
	if err != nil {
		return dirHandle{fd: -1}, pathError("open", path, "", err)
	}
	return dirHandle{fd: fd}, nil
}

func (h dirHandle) openSub(name, path string) (dirHandle, error) {
	fd, err := openRetry(func() (int, error) {
		return syscall.Openat(h.fd, name, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	})
	if err != nil {
		return dirHandle{fd: -1}, pathError("open", path, "", err)
	}
	return dirHandle{fd: fd}, nil
}

func (h dirHandle) close() {
	if h.fd >= 0 {
		syscall.Close(h.fd)
	}
}

// read reads the file name in the directory with a single read(2).
func (h dirHandle) read(name, dirPath string, buf []byte) (int, error) {
	fd, err := openRetry(func() (int, error) {
		return syscall.Openat(h.fd, name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	})
	if err != nil {
		return 0, pathError("open", dirPath, name, err)
	}
	n, err := readRetry(fd, buf)
	syscall.Close(fd)
	if err != nil {
		return 0, pathError("read", dirPath, name, err)
	}
	return n, nil
}

// list returns the entry names for which keep is true, parsing the
// linux_dirent64 records itself so that only kept names are allocated.
func (h dirHandle) list(dirPath string, buf []byte, keep func([]byte) bool) ([]string, error) {
	var names []string
	for {
		n, err := syscall.ReadDirent(h.fd, buf)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, pathError("readdirent", dirPath, "", err)
		}
		if n <= 0 {
			return names, nil
		}
		names = parseDirents(buf[:n], keep, names)
	}
}

// parseDirents appends the kept names of a getdents64 buffer. Each record is
// d_ino (8 bytes), d_off (8), d_reclen (2), d_type (1), then the name,
// NUL-terminated and padded to d_reclen.
func parseDirents(buf []byte, keep func([]byte) bool, names []string) []string {
	const nameOff = 19
	for len(buf) >= nameOff {
		reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
		if reclen < nameOff || reclen > len(buf) {
			return names
		}
		name := buf[nameOff:reclen]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		ino := binary.NativeEndian.Uint64(buf[0:8])
		if ino != 0 && string(name) != "." && string(name) != ".." && keep(name) {
			names = append(names, string(name))
		}
		buf = buf[reclen:]
	}
	return names
}

// readFileInto reads a whole small file by path with a single read(2).
func readFileInto(path string, buf []byte) (int, error) {
	fd, err := openRetry(func() (int, error) {
		return syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	})
	if err != nil {
		return 0, pathError("open", path, "", err)
	}
	n, err := readRetry(fd, buf)
	syscall.Close(fd)
	if err != nil {
		return 0, pathError("read", path, "", err)
	}
	return n, nil
}

func openRetry(open func() (int, error)) (int, error) {
	for {
		fd, err := open()
		if !errors.Is(err, syscall.EINTR) {
			return fd, err
		}
	}
}

func readRetry(fd int, buf []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, buf)
		if !errors.Is(err, syscall.EINTR) {
			if n < 0 {
				n = 0
			}
			return n, err
		}
	}
}

// ino returns the inode number of the directory: kernfs gives each kernel
// object its own, so a reused name has a new one.
func (h dirHandle) ino() (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(h.fd, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
