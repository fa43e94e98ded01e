package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// Kernel is a stock kernel prepared for the lab by lab/kernel.sh.
type Kernel struct {
	Series  string // "6.1" or "6.12"
	Dir     string // holds vmlinuz, kver, lib/modules
	Version string // uname -r, e.g. "6.12.117+deb12-amd64"
	Package string // the Debian package it came from
}

// Series are the kernels the lab proves the node side on.
var Series = []string{"6.1", "6.12"}

// labDir is e2e/lab, found from this source file so the harness works from
// any working directory inside the module.
func labDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "lab")
}

// ModuleRoot is the repository root (the directory holding go.mod).
func ModuleRoot() string { return filepath.Dir(filepath.Dir(labDir())) }

var kernelMu sync.Mutex

// PrepareKernel fetches (once, cached) and unpacks the newest kernel of a series.
func PrepareKernel(ctx context.Context, series string) (Kernel, error) {
	kernelMu.Lock()
	defer kernelMu.Unlock()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(labDir(), "kernel.sh"), series)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Kernel{}, fmt.Errorf("prepare kernel %s: %w: %s", series, err, stderr.String())
	}
	dir := strings.TrimSpace(string(out))
	k := Kernel{Series: series, Dir: dir}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"kver", &k.Version}, {"package", &k.Package}} {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			return Kernel{}, fmt.Errorf("prepare kernel %s: %w", series, err)
		}
		*f.dst = strings.TrimSpace(string(b))
	}
	return k, nil
}

// VM describes one boot of the lab.
type VM struct {
	Kernel    Kernel
	Multipath bool   // nvme_core.multipath (native multipath); the kernel default is on
	MemoryMB  int    // default 1024
	RunDir    string // read-write in the guest at /out; the job's files live here
	// Job is the shell script the guest's init runs (as /out/job.sh).
	Job string
	// Console receives the guest's serial console as it comes.
	Console io.Writer
	// Modules are kernel modules to load beyond the lab's own (with their
	// dependencies), e.g. the Kubernetes node's overlay and bridge.
	Modules []string
	// QEMUArgs are added to QEMU's command line (e.g. a network device).
	QEMUArgs []string
}

// Result is what a boot left behind.
type Result struct {
	JobExit int // the job script's exit status; -1 when the guest never recorded one
}

// Boot builds the initramfs, boots the guest, runs the job and waits for the
// guest to power off (or ctx to end, which kills QEMU).
func (vm VM) Boot(ctx context.Context) (Result, error) {
	if vm.MemoryMB == 0 {
		vm.MemoryMB = 1024
	}
	if err := os.MkdirAll(vm.RunDir, 0o755); err != nil {
		return Result{}, err
	}
	initrd := filepath.Join(vm.RunDir, "initramfs.cpio")
	var stderr bytes.Buffer
	mk := exec.CommandContext(ctx, "bash", filepath.Join(labDir(), "initramfs.sh"), vm.Kernel.Dir, initrd, strings.Join(vm.Modules, " "))
	mk.Stderr = &stderr
	if err := mk.Run(); err != nil {
		return Result{}, fmt.Errorf("initramfs: %w: %s", err, stderr.String())
	}
	rcFile := filepath.Join(vm.RunDir, "job.rc")
	_ = os.Remove(rcFile)
	if err := os.WriteFile(filepath.Join(vm.RunDir, "job.sh"), []byte(vm.Job), 0o755); err != nil {
		return Result{}, err
	}
	mp := "Y"
	if !vm.Multipath {
		mp = "N"
	}
	// init_on_alloc=0: Debian's kernels zero every page they allocate. Under
	// TCG that made the multipath proof's read-back (page cache dropped,
	// then about 100 MB read through readahead) take 178-238 s on 6.12, with
	// soft lockups in clear_page_erms under page_cache_ra_unbounded; without
	// it, 45 s (2026-12-02, the same proofs in one boot). It changes nothing
	// the driver sees. RDS_CSI_LAB_APPEND adds a developer's own arguments.
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-machine", "q35", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2",
		"-m", strconv.Itoa(vm.MemoryMB),
		"-kernel", filepath.Join(vm.Kernel.Dir, "vmlinuz"),
		"-initrd", initrd,
		"-append", strings.TrimSpace("console=ttyS0 quiet panic=-1 init_on_alloc=0 rdslab.multipath=" + mp + " " + os.Getenv("RDS_CSI_LAB_APPEND")),
		"-serial", "stdio",
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
		"-virtfs", "local,path=" + vm.RunDir + ",mount_tag=out,security_model=none,multidevs=remap",
	}
	args = append(args, vm.QEMUArgs...)
	qemu := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	console := vm.Console
	if console == nil {
		console = io.Discard
	}
	qemu.Stdout = console
	qemu.Stderr = console
	qemu.Stdin = nil
	if err := qemu.Run(); err != nil {
		return Result{JobExit: -1}, fmt.Errorf("qemu (%s): %w", vm.Kernel.Version, err)
	}
	b, err := os.ReadFile(rcFile)
	if err != nil {
		return Result{JobExit: -1}, fmt.Errorf("the guest recorded no job exit status (see the console): %w", err)
	}
	rc, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return Result{JobExit: -1}, fmt.Errorf("job.rc: %w", err)
	}
	return Result{JobExit: rc}, nil
}

// BuildTestBinary compiles the tests of a package of this module into a
// static binary (no cgo, so it runs on the guest's bare initramfs).
func BuildTestBinary(ctx context.Context, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", out, pkg)
	cmd.Dir = ModuleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go test -c %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// BuildBinary compiles a command of this module statically.
func BuildBinary(ctx context.Context, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = ModuleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// TestEvent is one top-level test's outcome in a guest test binary's -test.v output.
type TestEvent struct {
	Name   string
	Action string // "PASS", "FAIL" or "SKIP"
	Output string // the lines the test printed, its subtests' included
}

// ParseVerbose splits `go test -v` output into top-level test outcomes, in
// order. A test that started but has no outcome line (the binary crashed or
// was killed) is reported as FAIL with the output it had.
func ParseVerbose(r io.Reader) ([]TestEvent, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var (
		events  []TestEvent
		cur     *TestEvent
		pending strings.Builder
	)
	flush := func(action string) {
		if cur == nil {
			return
		}
		cur.Action = action
		cur.Output = pending.String()
		events = append(events, *cur)
		cur = nil
		pending.Reset()
	}
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "=== RUN   ") && !strings.Contains(line[len("=== RUN   "):], "/"):
			flush("FAIL") // a previous test without an outcome line
			cur = &TestEvent{Name: strings.TrimSpace(line[len("=== RUN   "):])}
		case strings.HasPrefix(line, "--- PASS: "), strings.HasPrefix(line, "--- FAIL: "), strings.HasPrefix(line, "--- SKIP: "):
			// Top-level outcome lines start at column 0; subtests' are indented.
			fields := strings.Fields(line)
			if len(fields) >= 3 && cur != nil && fields[2] == cur.Name {
				pending.WriteString(line + "\n")
				flush(strings.TrimSuffix(fields[1], ":"))
				continue
			}
			pending.WriteString(line + "\n")
		default:
			if cur != nil {
				pending.WriteString(line + "\n")
			}
		}
	}
	flush("FAIL")
	if len(events) == 0 {
		return nil, errors.New("no test ran in the guest")
	}
	return events, nil
}
