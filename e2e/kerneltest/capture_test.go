//go:build linux

package kerneltest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// The fixture trees in testdata/sysfs are copies of the parts of /sys the
// sysfs package reads, symlinks kept as the kernel has them.

var nsDir = regexp.MustCompile(`^nvme[0-9]+(c[0-9]+)?n[0-9]+$`)

// captureSysfs copies the NVMe parts of sysfs (rooted at src, normally /sys)
// to dst.
func captureSysfs(src, dst string) error {
	// Class and block directories: only their symlinks.
	for _, rel := range []string{"class/nvme", "class/nvme-subsystem", "block"} {
		ents, err := os.ReadDir(filepath.Join(src, rel))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dst, rel), 0o755); err != nil {
			return err
		}
		for _, e := range ents {
			if rel == "block" && !strings.HasPrefix(e.Name(), "nvme") {
				continue
			}
			if err := copyEntry(filepath.Join(src, rel, e.Name()), filepath.Join(dst, rel, e.Name()), false); err != nil {
				return err
			}
		}
	}
	// Device directories: attributes, symlinks, and the namespace disks under them.
	for _, rel := range []string{"devices/virtual/nvme-fabrics/ctl", "devices/virtual/nvme-subsystem"} {
		ents, err := os.ReadDir(filepath.Join(src, rel))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range ents {
			if !e.IsDir() || !strings.HasPrefix(e.Name(), "nvme") {
				continue
			}
			if err := copyDir(filepath.Join(src, rel, e.Name()), filepath.Join(dst, rel, e.Name()), true); err != nil {
				return err
			}
		}
	}
	return copyDir(filepath.Join(src, "module/nvme_core/parameters"), filepath.Join(dst, "module/nvme_core/parameters"), false)
}

// copyDir copies the attribute files and symlinks of one sysfs directory,
// and, when withNamespaces, the namespace disk directories below it.
func copyDir(src, dst string, withNamespaces bool) error {
	ents, err := os.ReadDir(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // vanished meanwhile
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range ents {
		s, d := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		if e.IsDir() {
			if withNamespaces && nsDir.MatchString(e.Name()) {
				if err := copyDir(s, d, false); err != nil {
					return err
				}
			}
			continue
		}
		if err := copyEntry(s, d, true); err != nil {
			return err
		}
	}
	return nil
}

// copyEntry copies a symlink as a symlink and a regular attribute as a file
// with its content (empty when it cannot be read, like delete_controller).
func copyEntry(src, dst string, files bool) error {
	fi, err := os.Lstat(src)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if name := filepath.Base(src); name == "subsystem" || name == "bdi" || name == "driver" {
			return nil // links out of the captured area
		}
		return os.Symlink(target, dst)
	}
	if !files || !fi.Mode().IsRegular() {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		b = nil // write-only (delete_controller) or refusing attribute
	}
	if len(b) > 4096 {
		return fmt.Errorf("%s: unexpectedly large attribute", src)
	}
	return os.WriteFile(dst, b, fi.Mode().Perm())
}

// captureController copies one controller (its class/nvme link and its device
// directory, namespace disks included) and the nvme_core parameters from src
// to dst: a tree with that controller alone.
func captureController(src, dst, name string) error {
	if err := os.MkdirAll(filepath.Join(dst, "class/nvme"), 0o755); err != nil {
		return err
	}
	if err := copyEntry(filepath.Join(src, "class/nvme", name), filepath.Join(dst, "class/nvme", name), false); err != nil {
		return err
	}
	rel := "devices/virtual/nvme-fabrics/ctl/" + name
	if err := copyDir(filepath.Join(src, rel), filepath.Join(dst, rel), true); err != nil {
		return err
	}
	return copyDir(filepath.Join(src, "module/nvme_core/parameters"), filepath.Join(dst, "module/nvme_core/parameters"), false)
}
