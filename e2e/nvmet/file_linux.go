//go:build linux

package nvmet

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// FileBackend makes the emulated RDS of package rdstest real (it is an
// rdstest.Backend): every file of the emulated RouterOS filesystem is a
// real sparse file under Dir, and every exported disk is an nvmet
// subsystem (its NQN) with namespace 1 backed by that file, linked to the
// TCP port on each of its addresses (an RDS listens on all of its own):
// on the first address the nvmet port's id is the port number, on the
// others a free id counted down from 65535. Unlike the Target's other
// objects, these are removed one by one as the emulator unexports them;
// Close removes what is left.
type FileBackend struct {
	t       *Target
	dir     string
	traddrs []string

	mu      sync.Mutex
	exports map[string]int // NQN -> port
	ids     map[int][]int  // port -> nvmet port ids, one per address
	// allowed: subsystem NQN -> the hosts its allowed_hosts links (none:
	// attr_allow_any_host=1); hosts: the /hosts entries this backend made,
	// with how many subsystems link each.
	allowed map[string][]string
	hosts   map[string]int
}

// FileBackend returns a backend keeping files under dir and listening on
// the addresses traddrs (127.0.0.1 in the lab; with 127.0.0.2 too, every
// disk has two paths).
func (t *Target) FileBackend(dir string, traddrs ...string) *FileBackend {
	return &FileBackend{t: t, dir: dir, traddrs: traddrs, exports: map[string]int{}, ids: map[int][]int{},
		allowed: map[string][]string{}, hosts: map[string]int{}}
}

// Path is the real path of a /file name (no leading '/'); it refuses a
// name that would leave Dir.
func (b *FileBackend) Path(name string) (string, error) {
	clean := filepath.Clean("/" + name)
	if name == "" || clean != "/"+name {
		return "", fmt.Errorf("file name %q is not a clean relative path", name)
	}
	return filepath.Join(b.dir, clean), nil
}

// CreateFile makes a new sparse file of size bytes.
func (b *FileBackend) CreateFile(name string, size int64) error {
	p, err := b.Path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(p)
		return err
	}
	return f.Close()
}

// CopyFile copies src's data into a new file dst of the same size, keeping
// holes (only the data extents SEEK_DATA finds are read and written).
func (b *FileBackend) CopyFile(src, dst string) error {
	sp, err := b.Path(src)
	if err != nil {
		return err
	}
	dp, err := b.Path(dst)
	if err != nil {
		return err
	}
	in, err := os.Open(sp)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dp), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := copySparse(in, out, fi.Size()); err != nil {
		out.Close()
		os.Remove(dp)
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

func copySparse(in, out *os.File, size int64) error {
	if err := out.Truncate(size); err != nil {
		return err
	}
	for off := int64(0); off < size; {
		data, err := in.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return err
		}
		hole, err := in.Seek(data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.NewOffsetWriter(out, data), io.NewSectionReader(in, data, hole-data)); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// GrowFile sets a file's size (the emulator never asks to shrink).
func (b *FileBackend) GrowFile(name string, size int64) error {
	p, err := b.Path(name)
	if err != nil {
		return err
	}
	return os.Truncate(p, size)
}

// RemoveFile removes a file; one that is not there is success.
func (b *FileBackend) RemoveFile(name string) error {
	p, err := b.Path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (b *FileBackend) subsys(nqn string) string { return filepath.Join(b.t.root, "subsystems", nqn) }

func (b *FileBackend) ns(nqn string) string { return filepath.Join(b.subsys(nqn), "namespaces", "1") }

func (b *FileBackend) portDir(id int) string {
	return filepath.Join(b.t.root, "ports", strconv.Itoa(id))
}

// Export makes subsystem nqn (any host allowed) with namespace 1 backed by
// the file (buffered I/O: tmpfs has no O_DIRECT on 6.1) and links it to
// the port, creating the port with its first subsystem.
func (b *FileBackend) Export(file string, port int, nqn string) error {
	if port < 1 || port > 65535 || nqn == "" || strings.ContainsAny(nqn, "/\x00") {
		return fmt.Errorf("export of %s: port %d and NQN %q required", file, port, nqn)
	}
	p, err := b.Path(file)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.exports[nqn]; ok {
		return fmt.Errorf("subsystem %s: exported already", nqn)
	}
	var undo []func() error
	fail := func(err error) error {
		for i := len(undo) - 1; i >= 0; i-- {
			_ = undo[i]()
		}
		return err
	}
	if err := os.Mkdir(b.subsys(nqn), 0o755); err != nil {
		return fmt.Errorf("subsystem %s: %w", nqn, err)
	}
	undo = append(undo, func() error { return os.Remove(b.subsys(nqn)) })
	if err := write(filepath.Join(b.subsys(nqn), "attr_allow_any_host"), "1"); err != nil {
		return fail(err)
	}
	if err := os.Mkdir(b.ns(nqn), 0o755); err != nil {
		return fail(fmt.Errorf("namespace 1 of %s: %w", nqn, err))
	}
	undo = append(undo, func() error { return os.Remove(b.ns(nqn)) })
	for _, kv := range [][2]string{{"device_path", p}, {"buffered_io", "1"}, {"enable", "1"}} {
		if err := write(filepath.Join(b.ns(nqn), kv[0]), kv[1]); err != nil {
			return fail(err)
		}
	}
	undo = append(undo, func() error { return write(filepath.Join(b.ns(nqn), "enable"), "0") })
	if b.users(port) == 0 {
		if err := b.addPort(port); err != nil {
			return fail(err)
		}
		undo = append(undo, func() error { return b.removePort(port) })
	}
	for _, id := range b.ids[port] {
		link := filepath.Join(b.portDir(id), "subsystems", nqn)
		if err := os.Symlink(b.subsys(nqn), link); err != nil {
			return fail(fmt.Errorf("link %s to port %d: %w", nqn, port, err))
		}
		undo = append(undo, func() error { return os.Remove(link) })
	}
	b.exports[nqn] = port
	return nil
}

// users counts the subsystems exported on a port.
func (b *FileBackend) users(port int) int {
	n := 0
	for _, p := range b.exports {
		if p == port {
			n++
		}
	}
	return n
}

// addPort makes the nvmet ports of a TCP port, one per address.
func (b *FileBackend) addPort(port int) error {
	b.ids[port] = nil
	for i, traddr := range b.traddrs {
		id := port
		if i > 0 {
			id = 65535
			for ; id > 0; id-- {
				if _, err := os.Stat(b.portDir(id)); errors.Is(err, os.ErrNotExist) {
					break
				}
			}
		}
		dir := b.portDir(id)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return errors.Join(fmt.Errorf("port %d on %s: %w", port, traddr, err), b.removePort(port))
		}
		b.ids[port] = append(b.ids[port], id)
		fam := "ipv4"
		if strings.Contains(traddr, ":") {
			fam = "ipv6"
		}
		for _, kv := range [][2]string{
			{"addr_trtype", "tcp"}, {"addr_adrfam", fam}, {"addr_traddr", traddr},
			{"addr_trsvcid", strconv.Itoa(port)},
		} {
			if err := write(filepath.Join(dir, kv[0]), kv[1]); err != nil {
				return errors.Join(err, b.removePort(port))
			}
		}
	}
	return nil
}

// removePort removes the nvmet ports of a TCP port.
func (b *FileBackend) removePort(port int) error {
	var errs []error
	for _, id := range b.ids[port] {
		if err := os.Remove(b.portDir(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("port %d (id %d): %w", port, id, err))
		}
	}
	delete(b.ids, port)
	return errors.Join(errs...)
}

// Unexport unlinks the subsystem from its port (connected hosts lose it),
// disables and removes its namespace and removes the subsystem, and the
// port with its last subsystem.
func (b *FileBackend) Unexport(file string, port int, nqn string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.unexport(port, nqn)
}

func (b *FileBackend) unexport(port int, nqn string) error {
	if p, ok := b.exports[nqn]; !ok || p != port {
		return fmt.Errorf("unexport %s on port %d: not exported there", nqn, port)
	}
	for _, id := range b.ids[port] {
		link := filepath.Join(b.portDir(id), "subsystems", nqn)
		if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("unlink %s from port %d: %w", nqn, port, err)
		}
	}
	// allowed_hosts links keep the subsystem's directory from going.
	if err := b.allowHosts(nqn, nil); err != nil {
		return err
	}
	delete(b.exports, nqn)
	if b.users(port) == 0 {
		if err := b.removePort(port); err != nil {
			return err
		}
	}
	if err := write(filepath.Join(b.ns(nqn), "enable"), "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, d := range []string{b.ns(nqn), b.subsys(nqn)} {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", d, err)
		}
	}
	return nil
}

// Resized makes the target re-read the file's size (revalidate_size, on
// 6.1 and 6.12); it tells connected hosts with a namespace-changed event.
func (b *FileBackend) Resized(file string, port int, nqn string) error {
	return write(filepath.Join(b.ns(nqn), "revalidate_size"), "1")
}

// AllowHosts makes hosts the only hosts an exported subsystem lets connect
// (attr_allow_any_host=0 and a link in allowed_hosts for each, its
// /hosts entry made if missing); no host allows any host again. nvmet
// checks a host when it connects (a refused host's connect fails), so
// hosts connected already keep their controllers until they reconnect.
func (b *FileBackend) AllowHosts(file string, port int, nqn string, hosts []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.exports[nqn]; !ok || p != port {
		return fmt.Errorf("allow hosts on %s port %d: not exported there", nqn, port)
	}
	return b.allowHosts(nqn, hosts)
}

func (b *FileBackend) allowHosts(nqn string, hosts []string) error {
	for _, h := range hosts {
		if h == "" || strings.ContainsAny(h, "/\x00") || h == "." || h == ".." {
			return fmt.Errorf("allow host %q on %s: not a host NQN", h, nqn)
		}
	}
	dir := filepath.Join(b.subsys(nqn), "allowed_hosts")
	anyHost := filepath.Join(b.subsys(nqn), "attr_allow_any_host")
	old := b.allowed[nqn]
	if len(hosts) > 0 {
		// nvmet refuses a link while any host is allowed.
		if err := write(anyHost, "0"); err != nil {
			return err
		}
	}
	for _, h := range hosts {
		if slices.Contains(old, h) {
			continue
		}
		hd := filepath.Join(b.t.root, "hosts", h)
		if b.hosts[h] == 0 {
			if err := os.Mkdir(hd, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("host %s: %w", h, err)
			}
		}
		if err := os.Symlink(hd, filepath.Join(dir, h)); err != nil {
			return fmt.Errorf("allow %s on %s: %w", h, nqn, err)
		}
		b.hosts[h]++
		b.allowed[nqn] = append(b.allowed[nqn], h)
	}
	for _, h := range old {
		if slices.Contains(hosts, h) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, h)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("revoke %s on %s: %w", h, nqn, err)
		}
		b.allowed[nqn] = slices.DeleteFunc(b.allowed[nqn], func(x string) bool { return x == h })
		if b.hosts[h]--; b.hosts[h] == 0 {
			delete(b.hosts, h)
			if err := os.Remove(filepath.Join(b.t.root, "hosts", h)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("host %s: %w", h, err)
			}
		}
	}
	if len(hosts) == 0 {
		delete(b.allowed, nqn)
		if err := write(anyHost, "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Unlink and Relink take an exported subsystem off its port (on every
// address) and put it back, without the emulator knowing: the outage of a
// storage network.
func (b *FileBackend) Unlink(port int, nqn string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for _, id := range b.ids[port] {
		errs = append(errs, os.Remove(filepath.Join(b.portDir(id), "subsystems", nqn)))
	}
	return errors.Join(errs...)
}

// Relink: see Unlink.
func (b *FileBackend) Relink(port int, nqn string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for _, id := range b.ids[port] {
		errs = append(errs, os.Symlink(b.subsys(nqn), filepath.Join(b.portDir(id), "subsystems", nqn)))
	}
	return errors.Join(errs...)
}

// Exported lists the subsystems the backend has exported, sorted.
func (b *FileBackend) Exported() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.exports))
	for nqn := range b.exports {
		out = append(out, nqn)
	}
	sort.Strings(out)
	return out
}

// Close unexports every subsystem still exported (files stay, as on an
// RDS whose disks are removed). Host controllers should be gone first.
func (b *FileBackend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for nqn, port := range b.exports {
		if err := b.unexport(port, nqn); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
