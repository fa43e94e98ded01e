// Package nvmet drives the Linux kernel's NVMe over Fabrics target through
// configfs (/sys/kernel/config/nvmet) and backs its namespaces with
// memory-backed null_blk devices (/sys/kernel/config/nullb), loop devices,
// or real files (FileBackend, the real side of the rdstest RDS emulator).
// The QEMU lab's guest tests use it to make a real NVMe/TCP target on
// loopback, and to inject faults (port unlink, namespace disable).
package nvmet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Target is the nvmet configfs tree. Everything it creates is removed by Close.
type Target struct {
	root  string // /sys/kernel/config/nvmet
	nullb string // /sys/kernel/config/nullb

	mu      sync.Mutex
	undo    []func() error // reverse order of creation
	nextIdx int
}

// Open returns the target rooted at the usual configfs mount.
func Open() (*Target, error) {
	t := &Target{root: "/sys/kernel/config/nvmet", nullb: "/sys/kernel/config/nullb", nextIdx: 10}
	if _, err := os.Stat(t.root); err != nil {
		return nil, fmt.Errorf("nvmet configfs: %w (is nvmet loaded and configfs mounted?)", err)
	}
	return t, nil
}

func write(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return nil
}

func (t *Target) pushUndo(f func() error) {
	t.mu.Lock()
	t.undo = append(t.undo, f)
	t.mu.Unlock()
}

// NullBlk makes a memory-backed null_blk disk of sizeMB and returns its /dev path.
func (t *Target) NullBlk(sizeMB int) (string, error) {
	t.mu.Lock()
	idx := t.nextIdx
	t.nextIdx++
	t.mu.Unlock()
	// Newer kernels name the disk after the configfs directory, older ones
	// after its index: make both the same.
	name := fmt.Sprintf("nullb%d", idx)
	dir := filepath.Join(t.nullb, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("nullb: %w", err)
	}
	t.pushUndo(func() error { return os.Remove(dir) })
	for _, kv := range [][2]string{
		{"size", strconv.Itoa(sizeMB)},
		{"memory_backed", "1"},
		{"index", strconv.Itoa(idx)},
		{"power", "1"},
	} {
		if err := write(filepath.Join(dir, kv[0]), kv[1]); err != nil {
			return "", err
		}
	}
	t.pushUndo(func() error { return write(filepath.Join(dir, "power"), "0") })
	dev := "/dev/" + name
	if _, err := os.Stat(dev); err != nil {
		return "", fmt.Errorf("nullb %s powered on but %w", name, err)
	}
	return dev, nil
}

// Subsystem options.
type Subsystem struct {
	NQN          string
	AllowAnyHost bool
}

// AddSubsystem creates a subsystem.
func (t *Target) AddSubsystem(s Subsystem) error {
	dir := filepath.Join(t.root, "subsystems", s.NQN)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("subsystem %s: %w", s.NQN, err)
	}
	t.pushUndo(func() error { return os.Remove(dir) })
	v := "0"
	if s.AllowAnyHost {
		v = "1"
	}
	return write(filepath.Join(dir, "attr_allow_any_host"), v)
}

// Namespace options.
type Namespace struct {
	NSID   int
	Device string // a block device path
	UUID   string // optional
}

// AddNamespace adds and enables a namespace on a subsystem.
func (t *Target) AddNamespace(nqn string, ns Namespace) error {
	dir := filepath.Join(t.root, "subsystems", nqn, "namespaces", strconv.Itoa(ns.NSID))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("namespace %d of %s: %w", ns.NSID, nqn, err)
	}
	t.pushUndo(func() error { return os.Remove(dir) })
	if err := write(filepath.Join(dir, "device_path"), ns.Device); err != nil {
		return err
	}
	if ns.UUID != "" {
		if err := write(filepath.Join(dir, "device_uuid"), ns.UUID); err != nil {
			return err
		}
	}
	if err := t.SetNamespaceEnabled(nqn, ns.NSID, true); err != nil {
		return err
	}
	t.pushUndo(func() error { return t.SetNamespaceEnabled(nqn, ns.NSID, false) })
	return nil
}

// SetNamespaceEnabled enables or disables a namespace (the host sees the disk go and come).
func (t *Target) SetNamespaceEnabled(nqn string, nsid int, on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	return write(filepath.Join(t.root, "subsystems", nqn, "namespaces", strconv.Itoa(nsid), "enable"), v)
}

// Port options.
type Port struct {
	ID      int
	Traddr  string // e.g. 127.0.0.1 or ::1
	Trsvcid int
}

// AddPort creates a TCP port. It listens only while a subsystem is linked to it.
func (t *Target) AddPort(p Port) error {
	dir := filepath.Join(t.root, "ports", strconv.Itoa(p.ID))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("port %d: %w", p.ID, err)
	}
	t.pushUndo(func() error { return os.Remove(dir) })
	fam := "ipv4"
	if strings.Contains(p.Traddr, ":") {
		fam = "ipv6"
	}
	for _, kv := range [][2]string{
		{"addr_trtype", "tcp"}, {"addr_adrfam", fam}, {"addr_traddr", p.Traddr},
		{"addr_trsvcid", strconv.Itoa(p.Trsvcid)},
	} {
		if err := write(filepath.Join(dir, kv[0]), kv[1]); err != nil {
			return err
		}
	}
	return nil
}

func (t *Target) portLink(port int, nqn string) string {
	return filepath.Join(t.root, "ports", strconv.Itoa(port), "subsystems", nqn)
}

// Link exposes a subsystem on a port (the listener opens with the first link).
func (t *Target) Link(port int, nqn string) error {
	link := t.portLink(port, nqn)
	if err := os.Symlink(filepath.Join(t.root, "subsystems", nqn), link); err != nil {
		return fmt.Errorf("link %s to port %d: %w", nqn, port, err)
	}
	t.pushUndo(func() error {
		if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	})
	return nil
}

// Unlink removes a subsystem from a port: connected hosts see their
// controllers drop to connecting (the listener closes with the last link).
func (t *Target) Unlink(port int, nqn string) error {
	if err := os.Remove(t.portLink(port, nqn)); err != nil {
		return fmt.Errorf("unlink %s from port %d: %w", nqn, port, err)
	}
	return nil
}

// Relink is Link without registering another undo step.
func (t *Target) Relink(port int, nqn string) error {
	return os.Symlink(filepath.Join(t.root, "subsystems", nqn), t.portLink(port, nqn))
}

// Host is an allowed host, optionally with DH-HMAC-CHAP keys.
type Host struct {
	NQN        string
	DHCHAPKey  string // the host's secret (DHHC-1:...)
	CtrlKey    string // the controller's secret, for bidirectional auth
	DHCHAPHash string // e.g. "hmac(sha256)"; kernel default when empty
}

// AllowHost registers a host and allows it on a subsystem (which should have
// AllowAnyHost false).
func (t *Target) AllowHost(nqn string, h Host) error {
	dir := filepath.Join(t.root, "hosts", h.NQN)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("host %s: %w", h.NQN, err)
	}
	t.pushUndo(func() error { return os.Remove(dir) })
	for _, kv := range [][2]string{{"dhchap_key", h.DHCHAPKey}, {"dhchap_ctrl_key", h.CtrlKey}, {"dhchap_hash", h.DHCHAPHash}} {
		if kv[1] == "" {
			continue
		}
		if err := write(filepath.Join(dir, kv[0]), kv[1]); err != nil {
			return err
		}
	}
	link := filepath.Join(t.root, "subsystems", nqn, "allowed_hosts", h.NQN)
	if err := os.Symlink(dir, link); err != nil {
		return fmt.Errorf("allow %s on %s: %w", h.NQN, nqn, err)
	}
	t.pushUndo(func() error { return os.Remove(link) })
	return nil
}

// Close removes everything the Target created, last first, and returns the
// errors it met. Host controllers should be disconnected first.
func (t *Target) Close() error {
	t.mu.Lock()
	undo := t.undo
	t.undo = nil
	t.mu.Unlock()
	var errs []error
	for i := len(undo) - 1; i >= 0; i-- {
		if err := undo[i](); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Subsystems lists the subsystem NQNs currently configured.
func (t *Target) Subsystems() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(t.root, "subsystems"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out, nil
}
