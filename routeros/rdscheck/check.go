// Package rdscheck is `rds-csi check`: a short, read-mostly run against a
// real RDS that learns what it does where ../shared/ROUTEROS.md says
// unverified, and records every command with its raw answer so the
// transcript can become test data.
//
// What it changes on the RDS: it creates a 1 MiB file-backed disk (slot
// rds-csi-check-disk-..., exported over NVMe/TCP on the given port and
// allowed to two made-up host NQNs only), grows it to 2 MiB, copies it,
// creates one or two more 1 MiB disks with longer slots (40, then 33
// characters) to find the slot limit, and removes all of them and their
// files. Every object it creates has a slot that routeros.IsCheckSlot
// accepts and a file that routeros.IsCheckFile accepts (directly inside the
// volume directory); the routeros.Check*Command constructors refuse
// anything else, so nothing else is ever changed or removed.
//
// It leaves nothing behind: the removal runs on a context of its own (so
// it runs after an interrupt ended the probes) and removes every check disk
// and check file it finds, not only those of this run; the same sweep runs
// first, removing what an earlier, killed run left. Two checks against one
// RDS at the same time would remove each other's disks: do not run two.
package rdscheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/srvlab/rds-csi/routeros"
)

// Config says what to check and where.
type Config struct {
	Runner routeros.Runner
	// VolumeDir is the RouterOS directory the check's files go into
	// (the controller's --volume-dir).
	VolumeDir string
	Pool      string // mount point of the pool disk, only read
	Port      int    // nvme-tcp-server-port of the test disk's export
	NQNBase   string // the test disk's NQN is <NQNBase>:<slot>
	// CleanupTimeout bounds the final removal (default 2 minutes); it
	// does not depend on the context Run is given.
	CleanupTimeout time.Duration
	// Progress, if not nil, gets one line per command as it runs.
	Progress io.Writer
}

// Verdict says what a finding means for the driver.
type Verdict string

// The verdicts.
const (
	// OK: the RDS does what the driver expects, or one of the behaviours
	// the driver handles.
	OK Verdict = "ok"
	// Differs: the RDS does something the driver does not handle.
	Differs Verdict = "DIFFERS"
	// Info: recorded; the driver does not depend on it (yet).
	Info Verdict = "info"
	// NotRun: an earlier step failed or the check was interrupted.
	NotRun Verdict = "not run"
)

// Finding is what the check learned about one unverified assumption.
type Finding struct {
	Name     string  `json:"name"`
	Assumed  string  `json:"assumed"`  // what ROUTEROS.md says and the driver does
	Observed string  `json:"observed"` // what this RDS did
	Verdict  Verdict `json:"verdict"`
	Steps    []int   `json:"steps,omitempty"` // transcript steps it rests on
}

// Step is one command as sent and as answered.
type Step struct {
	N       int    `json:"n"`
	Probe   string `json:"probe"`
	Command string `json:"command"`
	Stdout  string `json:"stdout"`
	Stderr  string `json:"stderr"`
	// ExitStatus is -1 when none was received.
	ExitStatus int `json:"exit_status"`
	// Class is routeros.ErrorClass of the outcome ("" = success).
	Class string `json:"class"`
	// TransportError is set when the command did not run to its end.
	TransportError string  `json:"transport_error,omitempty"`
	Seconds        float64 `json:"seconds"`
}

// Report is the outcome of Run.
type Report struct {
	Findings []Finding `json:"findings"`
	Steps    []Step    `json:"transcript"`
	// Swept lists the check objects an earlier run left, removed first.
	Swept []string `json:"swept"`
	// LeftBehind lists check objects still on the RDS after the cleanup:
	// empty unless the cleanup failed.
	LeftBehind  []string `json:"left_behind"`
	Interrupted bool     `json:"interrupted"`
	// CleanupError is why the final removal could not finish.
	CleanupError string `json:"cleanup_error,omitempty"`
}

// Problems counts findings that differ and objects left behind.
func (r *Report) Problems() int {
	n := len(r.LeftBehind)
	if r.CleanupError != "" && n == 0 {
		n++
	}
	for _, f := range r.Findings {
		if f.Verdict == Differs {
			n++
		}
	}
	return n
}

const (
	diskSize = 1 << 20
	growSize = 2 << 20
	hostA    = "nqn.2014-08.io.srvlab.rds-csi:check-host-a"
	hostB    = "nqn.2014-08.io.srvlab.rds-csi:check-host-b"
)

// slotOf is CheckSlotPrefix, role and '-', padded with 'x' to n characters.
func slotOf(role string, n int) string {
	s := routeros.CheckSlotPrefix + role + "-"
	return s + strings.Repeat("x", max(n-len(s), 0))
}

// The check's slots: the test disk and the copy at the driver's 32
// characters, the probes of the limit at 40 and 33, and one never created.
var (
	slotDisk   = slotOf("disk", routeros.MaxSlotLen)
	slotCopy   = slotOf("copy", routeros.MaxSlotLen)
	slotLen40  = slotOf("len40", 40)
	slotLen33  = slotOf("len33", 33)
	slotAbsent = routeros.CheckSlotPrefix + "absent"
)

type checker struct {
	cfg Config
	r   *Report
	// broken is the transport error that ended the probes.
	broken error
	// srcSize is the test disk's size as last read back.
	srcSize int64
}

type outcome struct {
	res routeros.Result
	err error // Classify's error or the transport's
	n   int   // step number
}

// Run runs the check: the sweep of earlier leftovers, the probes (until
// ctx ends or the RDS cannot be reached), and the cleanup on a context of
// its own. The error is for a check that could not start (bad config, RDS
// unreachable at the first command); the Report is returned in every case.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Runner == nil {
		return nil, errors.New("rdscheck: no Runner")
	}
	if err := routeros.ValidatePath("volume-dir", cfg.VolumeDir); err != nil {
		return nil, err
	}
	if err := routeros.ValidatePool(cfg.Pool); err != nil {
		return nil, err
	}
	if err := routeros.ValidatePort(cfg.Port); err != nil {
		return nil, err
	}
	if _, err := routeros.NQNFor(cfg.NQNBase, slotDisk); err != nil {
		return nil, err
	}
	if err := routeros.ValidatePath("file-path", cfg.VolumeDir+"/"+slotLen40+".img"); err != nil {
		return nil, err
	}
	if cfg.CleanupTimeout <= 0 {
		cfg.CleanupTimeout = 2 * time.Minute
	}
	c := &checker{cfg: cfg, r: &Report{Swept: []string{}, LeftBehind: []string{}}}
	var startErr error
	swept, err := c.sweep(ctx, "sweep")
	c.r.Swept = append(c.r.Swept, swept...)
	if err != nil {
		startErr = fmt.Errorf("rdscheck: sweeping earlier leftovers: %w", err)
	} else {
		c.probes(ctx)
	}
	c.r.Interrupted = ctx.Err() != nil

	// The cleanup must run even when ctx ended: a context of its own.
	cctx, cancel := context.WithTimeout(context.Background(), cfg.CleanupTimeout)
	defer cancel()
	c.broken = nil
	if _, err := c.sweep(cctx, "cleanup"); err != nil {
		c.r.CleanupError = err.Error()
	}
	left, err := c.list(cctx, "cleanup: verify")
	if err != nil && c.r.CleanupError == "" {
		c.r.CleanupError = err.Error()
	}
	c.r.LeftBehind = append(c.r.LeftBehind, left...)
	return c.r, startErr
}

// exec runs one command and records it.
func (c *checker) exec(ctx context.Context, probe string, cmd routeros.Command) outcome {
	n := len(c.r.Steps) + 1
	if c.cfg.Progress != nil {
		fmt.Fprintf(c.cfg.Progress, "#%d %s: %s\n", n, probe, cmd)
	}
	start := time.Now()
	res, err := c.cfg.Runner.Run(ctx, cmd)
	st := Step{N: n, Probe: probe, Command: cmd.String(), Stdout: string(res.Stdout), Stderr: string(res.Stderr),
		ExitStatus: res.ExitStatus, Seconds: time.Since(start).Seconds()}
	if err != nil {
		st.TransportError = err.Error()
		if c.broken == nil {
			c.broken = err
		}
	} else {
		err = routeros.Classify(cmd, res)
	}
	st.Class = routeros.ErrorClass(err)
	c.r.Steps = append(c.r.Steps, st)
	return outcome{res: res, err: err, n: n}
}

// stopped reports whether the probes must stop: ctx ended or the RDS could
// not be reached.
func (c *checker) stopped(ctx context.Context) bool { return ctx.Err() != nil || c.broken != nil }

// list returns the check's disks and files now on the RDS.
func (c *checker) list(ctx context.Context, probe string) ([]string, error) {
	disks, err := c.disks(ctx, probe)
	if err != nil {
		return nil, err
	}
	files, err := c.files(ctx, probe)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range disks {
		out = append(out, "disk "+d)
	}
	for _, f := range files {
		out = append(out, "file "+f)
	}
	return out, nil
}

func (c *checker) disks(ctx context.Context, probe string) ([]string, error) {
	cmd, err := routeros.PrintDisksCommand(routeros.CheckSlotPrefix)
	if err != nil {
		return nil, err
	}
	o := c.exec(ctx, probe, cmd)
	if o.err != nil {
		return nil, o.err
	}
	ds, err := routeros.ParseDisks(o.res.Stdout)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range ds {
		if routeros.IsCheckSlot(d.Slot) {
			out = append(out, d.Slot)
		}
	}
	return out, nil
}

func (c *checker) files(ctx context.Context, probe string) ([]string, error) {
	cmd, err := routeros.PrintFilesCommand(c.cfg.VolumeDir)
	if err != nil {
		return nil, err
	}
	o := c.exec(ctx, probe, cmd)
	if o.err != nil {
		return nil, o.err
	}
	fs, err := routeros.ParseFiles(o.res.Stdout)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range fs {
		if routeros.IsCheckFile(c.cfg.VolumeDir, f.Path) {
			out = append(out, f.Path)
		}
	}
	return out, nil
}

// sweep removes every check disk, then every check file, and returns what
// it removed. Only check objects are touched: the constructors refuse
// anything else.
func (c *checker) sweep(ctx context.Context, probe string) ([]string, error) {
	var removed []string
	var errs []error
	disks, err := c.disks(ctx, probe)
	if err != nil {
		return nil, err
	}
	for _, d := range disks {
		cmd, err := routeros.CheckRemoveDiskCommand(d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if o := c.exec(ctx, probe, cmd); o.err != nil && !errors.Is(o.err, routeros.ErrNotFound) {
			errs = append(errs, o.err)
			continue
		}
		removed = append(removed, "disk "+d)
	}
	files, err := c.files(ctx, probe)
	if err != nil {
		return removed, errors.Join(append(errs, err)...)
	}
	for _, f := range files {
		cmd, err := routeros.CheckRemoveFileCommand(c.cfg.VolumeDir, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if o := c.exec(ctx, probe, cmd); o.err != nil && !errors.Is(o.err, routeros.ErrNotFound) {
			errs = append(errs, o.err)
			continue
		}
		removed = append(removed, "file "+f)
	}
	return removed, errors.Join(errs...)
}
