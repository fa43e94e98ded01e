package rdscheck

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/srvlab/rds-csi/routeros"
)

// The assumptions, in report order.
const (
	nameErrors    = "error report (stdout, stderr, exit status)"
	nameFind      = "[find] with no match"
	nameAdd       = "/disk add: output and exact byte size"
	nameParse     = "print detail output"
	nameGrow      = "grow (file-size in bytes)"
	nameAllow     = "nvme-tcp-server-allow-host-name: one host or a list"
	nameCopy      = "copy syntax (copy-from=[find slot=...])"
	nameRemove    = "removing a disk removes its file"
	nameFileRm    = "/file remove"
	nameSlotLen   = "slot length (32 or 40 characters)"
	assumedErrors = "unverified: text on stdout or stderr, any exit status; the driver reads both streams and the status, and a failure must never look like success"
)

// finding adds (or replaces) the finding called name.
func (c *checker) finding(name, assumed, observed string, v Verdict, steps ...int) {
	f := Finding{Name: name, Assumed: assumed, Observed: observed, Verdict: v, Steps: steps}
	for i := range c.r.Findings {
		if c.r.Findings[i].Name == name {
			c.r.Findings[i] = f
			return
		}
	}
	c.r.Findings = append(c.r.Findings, f)
}

// describe says where a failure's text was and how it was classified.
func describe(o outcome) string {
	var on []string
	if strings.TrimSpace(string(o.res.Stdout)) != "" {
		on = append(on, "stdout")
	}
	if strings.TrimSpace(string(o.res.Stderr)) != "" {
		on = append(on, "stderr")
	}
	where := "no text"
	if len(on) > 0 {
		where = "text on " + strings.Join(on, " and ")
	}
	s := fmt.Sprintf("%s, exit status %d", where, o.res.ExitStatus)
	if o.err != nil {
		s += ", classified " + routeros.ErrorClass(o.err)
	} else {
		s += ", classified success"
	}
	if t := firstLine(o); t != "" {
		s += fmt.Sprintf(" (%q)", t)
	}
	return s
}

func firstLine(o outcome) string {
	for _, b := range [][]byte{o.res.Stderr, o.res.Stdout} {
		for _, l := range strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				return l
			}
		}
	}
	return ""
}

// readDisk prints one check slot and parses it; a parse failure is noted
// for the print-detail finding.
func (c *checker) readDisk(ctx context.Context, probe, slot string) ([]routeros.Disk, outcome, bool) {
	cmd, err := routeros.CheckPrintDiskCommand(slot)
	if err != nil {
		c.broken = err
		return nil, outcome{}, false
	}
	o := c.exec(ctx, probe, cmd)
	if o.err != nil {
		return nil, o, false
	}
	ds, err := routeros.ParseDisks(o.res.Stdout)
	if err != nil {
		c.parseFailed(o.n, err)
		return nil, o, false
	}
	var out []routeros.Disk
	for _, d := range ds {
		if d.Slot == slot {
			out = append(out, d)
		}
	}
	return out, o, true
}

func (c *checker) parseFailed(step int, err error) {
	c.finding(nameParse, "the parser reads print detail as ROUTEROS.md describes it (legend, wrapped lines, grouped digits, CRLF)",
		fmt.Sprintf("step %d could not be parsed: %v", step, err), Differs, step)
}

// fileExists prints one check file.
func (c *checker) fileExists(ctx context.Context, probe, p string) (bool, outcome, bool) {
	cmd, err := routeros.PrintFileCommand(p)
	if err != nil {
		c.broken = err
		return false, outcome{}, false
	}
	o := c.exec(ctx, probe, cmd)
	if o.err != nil {
		return false, o, false
	}
	fs, err := routeros.ParseFiles(o.res.Stdout)
	if err != nil {
		c.parseFailed(o.n, err)
		return false, o, false
	}
	for _, f := range fs {
		if f.Path == p {
			return true, o, true
		}
	}
	return false, o, true
}

func (c *checker) spec(slot string) routeros.DiskSpec {
	nqn, _ := routeros.NQNFor(c.cfg.NQNBase, slot[:min(len(slot), routeros.MaxSlotLen)])
	return routeros.DiskSpec{Slot: slot, FilePath: c.cfg.VolumeDir + "/" + slot + ".img", Size: diskSize,
		Port: c.cfg.Port, NQN: nqn}
}

// probes runs every probe in turn, until one cannot go on.
func (c *checker) probes(ctx context.Context) {
	for _, name := range []string{nameErrors, nameFind, nameAdd, nameParse, nameGrow, nameAllow, nameCopy, nameRemove, nameFileRm, nameSlotLen} {
		c.finding(name, "", "", NotRun)
	}
	c.finding(nameParse, "the parser reads print detail as ROUTEROS.md describes it (legend, wrapped lines, grouped digits, CRLF)",
		"every print output parsed", OK)
	steps := []func(context.Context) bool{c.probePool, c.probeBadCommand, c.probeFind, c.probeAdd, c.probeDuplicate,
		c.probeGrow, c.probeAllowHosts, c.probeCopy, c.probeRemove, c.probeSlotLength}
	for _, step := range steps {
		if c.stopped(ctx) || !step(ctx) {
			break
		}
	}
	if c.stopped(ctx) {
		for i := range c.r.Findings {
			if c.r.Findings[i].Verdict == NotRun && c.r.Findings[i].Observed == "" {
				c.r.Findings[i].Observed = "interrupted or RDS unreachable before this probe"
			}
		}
	}
	if f := c.get(nameParse); f.Verdict == OK && c.stopped(ctx) {
		c.finding(nameParse, f.Assumed, "every print output read before the stop parsed", OK, f.Steps...)
	}
}

// probePool reads the pool (read only): its output must parse with exact
// byte counts.
func (c *checker) probePool(ctx context.Context) bool {
	cmd, err := routeros.PrintPoolCommand(c.cfg.Pool)
	if err != nil {
		c.broken = err
		return false
	}
	o := c.exec(ctx, "pool", cmd)
	if o.err != nil {
		return !c.stopped(ctx) // a pool print RouterOS refused is in the transcript
	}
	ds, err := routeros.ParseDisks(o.res.Stdout)
	if err != nil {
		c.parseFailed(o.n, err)
		return true
	}
	for _, d := range ds {
		if d.MountPoint == c.cfg.Pool && (d.Size < 0 || d.Free < 0) {
			c.parseFailed(o.n, fmt.Errorf("pool %s: size or free not printed in bytes", c.cfg.Pool))
		}
	}
	return true
}

func (c *checker) probeBadCommand(ctx context.Context) bool {
	o := c.exec(ctx, "error report: a command RouterOS does not have", routeros.CheckBadCommand())
	if c.stopped(ctx) {
		return false
	}
	v := OK
	if o.err == nil {
		v = Differs
	}
	c.finding(nameErrors, assumedErrors, "bad command: "+describe(o), v, o.n)
	return true
}

func (c *checker) probeFind(ctx context.Context) bool {
	cmd, _ := routeros.CheckRemoveDiskCommand(slotAbsent)
	o := c.exec(ctx, "[find] with no match", cmd)
	if c.stopped(ctx) {
		return false
	}
	assumed := "unverified: probably a silent no-op; the driver re-reads after every change and takes not_found as done"
	switch {
	case o.err == nil:
		c.finding(nameFind, assumed, "silent: "+describe(o), OK, o.n)
	case errors.Is(o.err, routeros.ErrNotFound):
		c.finding(nameFind, assumed, "an error: "+describe(o), OK, o.n)
	default:
		// RemoveDisk takes only not_found as "already gone"
		c.finding(nameFind, assumed, "an error the driver does not take as not found: "+describe(o), Differs, o.n)
	}
	return true
}

// probeAdd creates the test disk exactly as the driver would (a 32
// character slot) and reads it back.
func (c *checker) probeAdd(ctx context.Context) bool {
	s := c.spec(slotDisk)
	cmd, err := routeros.CheckAddDiskCommand(s)
	if err != nil {
		c.broken = err
		return false
	}
	o := c.exec(ctx, "create the test disk", cmd)
	if c.stopped(ctx) {
		return false
	}
	assumed := "prints nothing or the new item's id (\"*1A\"); file-size in exact bytes gives a disk of exactly that size"
	if o.err != nil {
		c.finding(nameAdd, assumed, "the driver's create command failed: "+describe(o), Differs, o.n)
		return false
	}
	out := "printed nothing"
	if t := strings.TrimSpace(string(o.res.Stdout)); t != "" {
		out = fmt.Sprintf("printed %q", t)
	}
	ds, ro, ok := c.readDisk(ctx, "read the test disk back", slotDisk)
	if !ok {
		if c.stopped(ctx) {
			return false
		}
		c.finding(nameAdd, assumed, out+"; the read-back failed: "+describe(ro), Differs, o.n, ro.n)
		return false
	}
	if len(ds) != 1 {
		c.finding(nameAdd, assumed, fmt.Sprintf("%s; %d disks with the slot read back", out, len(ds)), Differs, o.n, ro.n)
		return false
	}
	d := ds[0]
	c.srcSize = d.Size
	v := OK
	obs := fmt.Sprintf("%s; read back with size %d bytes (asked %d)", out, d.Size, s.Size)
	if err := routeros.Matches(d, s); err != nil {
		v, obs = Differs, obs+"; "+err.Error()
	} else if d.Size != s.Size {
		v, obs = Info, obs+": rounded up (the driver accepts a larger disk)"
	}
	c.finding(nameAdd, assumed, obs, v, o.n, ro.n)
	return true
}

// probeDuplicate sends the same add again: a runtime failure, to see how
// RouterOS reports one.
func (c *checker) probeDuplicate(ctx context.Context) bool {
	cmd, _ := routeros.CheckAddDiskCommand(c.spec(slotDisk))
	o := c.exec(ctx, "error report: the same add again", cmd)
	if c.stopped(ctx) {
		return false
	}
	prev := c.get(nameErrors)
	steps := append(prev.Steps, o.n)
	obs := prev.Observed + "; duplicate add: " + describe(o)
	v := prev.Verdict
	if o.err == nil {
		v = Differs
		ds, ro, _ := c.readDisk(ctx, "count disks with the slot", slotDisk)
		obs += fmt.Sprintf("; %d disks with the slot afterwards", len(ds))
		steps = append(steps, ro.n)
	}
	c.finding(nameErrors, assumedErrors, obs, v, steps...)
	return !c.stopped(ctx)
}

func (c *checker) get(name string) Finding {
	for _, f := range c.r.Findings {
		if f.Name == name {
			return f
		}
	}
	return Finding{Name: name}
}

func (c *checker) probeGrow(ctx context.Context) bool {
	cmd, _ := routeros.CheckResizeDiskCommand(slotDisk, growSize)
	o := c.exec(ctx, "grow the test disk", cmd)
	if c.stopped(ctx) {
		return false
	}
	assumed := "/disk set [find slot=...] file-size=<bytes> grows the file to exactly that size"
	if o.err != nil {
		c.finding(nameGrow, assumed, "failed: "+describe(o), Differs, o.n)
		return true
	}
	ds, ro, ok := c.readDisk(ctx, "read the grown disk back", slotDisk)
	if !ok || len(ds) != 1 {
		if !c.stopped(ctx) {
			c.finding(nameGrow, assumed, "the read-back failed: "+describe(ro), Differs, o.n, ro.n)
		}
		return !c.stopped(ctx)
	}
	c.srcSize = ds[0].Size
	v := OK
	if ds[0].Size < growSize {
		v = Differs
	} else if ds[0].Size != growSize {
		v = Info
	}
	c.finding(nameGrow, assumed, fmt.Sprintf("size %d bytes after asking %d", ds[0].Size, int64(growSize)), v, o.n, ro.n)
	return true
}

func (c *checker) probeAllowHosts(ctx context.Context) bool {
	assumed := "unverified: one host NQN or a list; with a StorageClass's targetFencing the driver sets one host NQN (the published node's, or " +
		routeros.FencedHostNQN + ", a host that never connects, after unpublish) and fails loudly on a value that does not read back; " +
		"not asked here (it needs an NVMe host): whether other hosts are then refused at connect, and whether hosts connected already are dropped"
	var obs []string
	var steps []int
	for _, hosts := range [][]string{{hostA}, {hostA, hostB}} {
		cmd, _ := routeros.CheckAllowHostsCommand(slotDisk, hosts)
		o := c.exec(ctx, fmt.Sprintf("allow %d host(s)", len(hosts)), cmd)
		if c.stopped(ctx) {
			return false
		}
		steps = append(steps, o.n)
		what := "one host"
		if len(hosts) > 1 {
			what = "two hosts, comma-separated"
		}
		if o.err != nil {
			obs = append(obs, what+": refused: "+describe(o))
			continue
		}
		ds, ro, ok := c.readDisk(ctx, "read the allowed hosts back", slotDisk)
		if c.stopped(ctx) {
			return false
		}
		steps = append(steps, ro.n)
		if !ok || len(ds) != 1 {
			obs = append(obs, what+": accepted; the read-back failed")
			continue
		}
		obs = append(obs, fmt.Sprintf("%s: accepted, printed as %q", what, ds[0].AllowHostName))
	}
	c.finding(nameAllow, assumed, strings.Join(obs, "; "), Info, steps...)
	return true
}

func (c *checker) probeCopy(ctx context.Context) bool {
	p := c.cfg.VolumeDir + "/" + slotCopy + ".img"
	cmd, err := routeros.CheckCopyDiskCommand(routeros.CopySpec{From: slotDisk, Slot: slotCopy, FilePath: p})
	if err != nil {
		c.broken = err
		return false
	}
	o := c.exec(ctx, "copy the test disk", cmd)
	if c.stopped(ctx) {
		return false
	}
	assumed := "unverified: /disk add type=file copy-from=[find slot=<src>] file-path=... slot=... makes a copy at least the source's size, not exported (snapshots and clones rest on it)"
	if o.err != nil {
		c.finding(nameCopy, assumed, "the driver's copy command failed: "+describe(o), Differs, o.n)
		return true
	}
	ds, ro, ok := c.readDisk(ctx, "read the copy back", slotCopy)
	if c.stopped(ctx) {
		return false
	}
	switch {
	case !ok:
		c.finding(nameCopy, assumed, "the read-back failed: "+describe(ro), Differs, o.n, ro.n)
	case len(ds) != 1:
		c.finding(nameCopy, assumed, fmt.Sprintf("the command succeeded (%s) but %d disks with the copy's slot were read back", describe(o), len(ds)), Differs, o.n, ro.n)
	default:
		d := ds[0]
		v := OK
		obs := fmt.Sprintf("copied in %.3f s: size %d bytes (source %d), file-path %s, exported %v", c.r.Steps[o.n-1].Seconds,
			d.Size, c.srcSize, d.FilePath, d.NVMeExport)
		if d.Size < c.srcSize || d.FilePath != p {
			v = Differs
		}
		c.finding(nameCopy, assumed, obs, v, o.n, ro.n)
	}
	return true
}

// probeRemove removes the test disk, looks for its file, and removes the
// file.
func (c *checker) probeRemove(ctx context.Context) bool {
	p := c.cfg.VolumeDir + "/" + slotDisk + ".img"
	cmd, _ := routeros.CheckRemoveDiskCommand(slotDisk)
	o := c.exec(ctx, "remove the test disk", cmd)
	if c.stopped(ctx) {
		return false
	}
	assumed := "ROUTEROS.md: the file is left and must be removed with /file remove; the driver removes it and takes a file already gone as done"
	if o.err != nil {
		c.finding(nameRemove, assumed, "/disk remove failed: "+describe(o), Differs, o.n)
		return true
	}
	ds, ro, ok := c.readDisk(ctx, "is the disk gone", slotDisk)
	if c.stopped(ctx) {
		return false
	}
	if !ok || len(ds) != 0 {
		c.finding(nameRemove, assumed, fmt.Sprintf("/disk remove succeeded but %d disks with the slot remain", len(ds)), Differs, o.n, ro.n)
		return true
	}
	exists, fo, ok := c.fileExists(ctx, "is its file still there", p)
	if c.stopped(ctx) || !ok {
		return !c.stopped(ctx)
	}
	if !exists {
		c.finding(nameRemove, assumed, "removing the disk removed its file too", Info, o.n, ro.n, fo.n)
		c.finding(nameFileRm, "/file remove [find name=\"<path without leading />\"] removes a file", "not run: no file left to remove", NotRun)
		return true
	}
	c.finding(nameRemove, assumed, "the file is left (as ROUTEROS.md says)", OK, o.n, ro.n, fo.n)
	rm, _ := routeros.CheckRemoveFileCommand(c.cfg.VolumeDir, p)
	ro2 := c.exec(ctx, "remove the file", rm)
	if c.stopped(ctx) {
		return false
	}
	assumedRm := "/file remove [find name=\"<path without leading />\"] removes a file"
	if ro2.err != nil {
		c.finding(nameFileRm, assumedRm, "failed: "+describe(ro2), Differs, ro2.n)
		return true
	}
	exists, fo2, ok := c.fileExists(ctx, "is the file gone", p)
	if c.stopped(ctx) || !ok {
		return !c.stopped(ctx)
	}
	if exists {
		c.finding(nameFileRm, assumedRm, "succeeded but the file is still there", Differs, ro2.n, fo2.n)
	} else {
		c.finding(nameFileRm, assumedRm, "the file is gone", OK, ro2.n, fo2.n)
	}
	return true
}

// probeSlotLength creates a disk with a 40-character slot, then (if
// refused) one with 33. The driver's 32 worked already (the test disk).
func (c *checker) probeSlotLength(ctx context.Context) bool {
	assumed := "unverified: 32 characters (RouterOS 7.24) or 40 (an older 7.x); the driver's slots have 32"
	obs := []string{fmt.Sprintf("%d accepted (the test disk)", len(slotDisk))}
	var steps []int
	for _, slot := range []string{slotLen40, slotLen33} {
		cmd, err := routeros.CheckAddDiskCommand(c.spec(slot))
		if err != nil {
			c.broken = err
			return false
		}
		o := c.exec(ctx, fmt.Sprintf("slot of %d characters", len(slot)), cmd)
		if c.stopped(ctx) {
			return false
		}
		steps = append(steps, o.n)
		if o.err != nil {
			obs = append(obs, fmt.Sprintf("%d refused: %s", len(slot), describe(o)))
			continue
		}
		ds, ro, ok := c.readDisk(ctx, "read it back", slot)
		if c.stopped(ctx) {
			return false
		}
		steps = append(steps, ro.n)
		if ok && len(ds) == 1 {
			obs = append(obs, fmt.Sprintf("%d accepted", len(slot)))
			break
		}
		// accepted but not found under its slot: truncated?
		all, _ := c.disks(ctx, "look for it under the prefix")
		if c.stopped(ctx) {
			return false
		}
		steps = append(steps, len(c.r.Steps))
		obs = append(obs, fmt.Sprintf("%d: the add succeeded but no disk has that slot; check disks now: %s", len(slot), strings.Join(all, ", ")))
		break
	}
	switch last := obs[len(obs)-1]; {
	case strings.HasPrefix(last, "40 accepted"):
		obs = append(obs, "the limit is 40 or more")
	case strings.HasPrefix(last, "33 accepted"):
		obs = append(obs, "the limit is between 33 and 39")
	case strings.HasPrefix(last, "33 refused"):
		obs = append(obs, "the limit is 32")
	}
	c.finding(nameSlotLen, assumed, strings.Join(obs, "; "), Info, steps...)
	return true
}
