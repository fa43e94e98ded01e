package sysfs

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
)

// DefaultRoot is where the kernel mounts sysfs.
const DefaultRoot = "/sys"

// FS is a sysfs tree rooted at a mount point: /sys on a node, a fixture or a
// synthetic tree in tests. The zero value reads /sys. An FS holds no open
// files and no cache: every method reads the tree afresh, and FS values are
// safe for concurrent use.
type FS struct {
	root string
}

// NewFS returns an FS rooted at root; "" means DefaultRoot.
func NewFS(root string) FS {
	if root == "" {
		root = DefaultRoot
	}
	return FS{root: filepath.Clean(root)}
}

// Root is the mount point the FS reads.
func (fs FS) Root() string {
	if fs.root == "" {
		return DefaultRoot
	}
	return fs.root
}

// path joins relative path elements onto the root.
func (fs FS) path(elem ...string) string {
	return filepath.Join(append([]string{fs.Root()}, elem...)...)
}

// gone reports whether err says that a sysfs object is not (or no longer)
// there. kernfs answers ENOENT once a directory or attribute is removed, and
// ENODEV to a read or write on a file opened before its removal.
func gone(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENODEV)
}

// notExist wraps err (which names the path) so that it matches ErrNotExist
// and still unwraps to the underlying *fs.PathError and errno.
func notExist(err error) error {
	return fmt.Errorf("%w: %w", ErrNotExist, err)
}

// notExistPath is notExist for a path that was found missing without an
// underlying error (for example a directory whose required attribute is gone).
func notExistPath(what, path string) error {
	return fmt.Errorf("%w: %s %s", ErrNotExist, what, path)
}

// parseError names the attribute file whose content did not parse.
func parseError(path string, err error) error {
	return fmt.Errorf("sysfs: parse %s: %w", path, err)
}

// ioError wraps an I/O error (already a *fs.PathError naming the path).
func ioError(err error) error {
	return fmt.Errorf("sysfs: %w", err)
}
