//go:build linux

package kerneltest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/e2e/guestenv"
	"github.com/srvlab/rds-csi/e2e/nvmet"
)

// TestProofCrashConsistency (issue #7, reliability item 2): the real binary
// is killed with SIGKILL at 20 or more random points while three workers
// drive stage, publish, unpublish and unstage sequences of 10 volumes (ten
// subsystems on one nvmet port, six ext4 mount and four block volumes) the
// way kubelet does: every call is retried until it succeeds, against a new
// instance started on the same --state-dir after each kill. Volumes 0-4 go
// stage, publish, unpublish, unstage, stage, publish (they end staged and
// published, on a new controller; should the sequences end before 24
// kills were made, as on a fast machine, they go round unpublish, unstage,
// stage, publish again, up to 6 stages); volumes 5-9 go stage, publish,
// unpublish, unstage (they end with nothing).
//
// It fails when
//   - fewer than 20 kills were made, or fewer than 10 of them interrupted a
//     call in flight (the test would not test what it claims);
//   - a call does not succeed within 2 minutes of retries;
//   - an in-use controller (from the moment NodeStageVolume succeeded until
//     NodeUnstageVolume starts) was ever disconnected or replaced: a monitor
//     stats its sysfs directory every 5 ms (a new controller, even one that
//     reuses the instance name, has a new kernfs inode), and the controller is
//     compared again at unstage start and at the end;
//   - a stage ends with other than exactly one controller for the volume;
//   - data written after each publish (a file on ext4, a 4 KiB pattern on a
//     block volume) cannot be read back before unpublish, after the next
//     stage and publish of volumes 0-4 (the file system was not re-created),
//     and at the end;
//   - the end state differs: volumes 0-4 staging path and target path
//     mounted with exactly their one controller, volumes 5-9 without mount
//     and, within the orphan grace period plus two cleanup intervals (plus
//     slack), without controller; no new controller of any other subsystem;
//     the ownership file lists exactly volumes 0-4 and their controllers;
//   - the in-use controllers change during one more grace period;
//   - the final unstage of volumes 0-4 leaves a controller.
//
// The kill plan comes from a seeded random source (logged; RDS_CSI_CRASH_SEED
// in the guest's environment repeats it, as far as the scheduling of the
// workers allows): after a call starts, the killer picks it if a kill is due
// (the kills keep pace with the progress of the sequences; publish,
// unpublish and retried calls are picked less often), then waits a
// uniformly random delay between 0 and 1.25 times the median duration of
// uninterrupted calls of that kind (stage of an ext4 volume, unstage of a
// block volume, ...), so the kills land in every phase of the call: the
// connect write, the wait for the disk, blkid/mkfs/fsck, mount, bind mounts,
// unmount and disconnect. Right before each kill the test records where the
// picked call was (the daemon's child processes, whether the controller, the
// disk and the mounts exist).
func TestProofCrashConsistency(t *testing.T) {
	testStart := time.Now()
	tg := target(t)
	must(t, guestenv.Prepare())

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RDS_CSI_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RDS_CSI_CRASH_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("crash seed %d (RDS_CSI_CRASH_SEED=%d repeats the random choices)", seed, seed)

	before, err := crashControllers()
	must(t, err)
	preexisting := map[crashCtrl]bool{}
	for _, ids := range before {
		for _, id := range ids {
			preexisting[id] = true
		}
	}

	// Ten subsystems, each a memory-backed 32 MiB null_blk disk, on one port.
	port := nextPort()
	must(t, tg.AddPort(nvmet.Port{ID: port, Traddr: "127.0.0.1", Trsvcid: port}))
	r := &crashRun{t: t, seed: seed, inUse: map[int]crashCtrl{}, typical: map[string][]time.Duration{},
		interrupted: map[string]int{}, interruptingGens: map[int]bool{}, opsDone: map[string]int{}, cycles: map[int]int{},
		starts: make(chan crashStart, 64)}
	for i := range crashVolumes {
		nqn := uniqueNQN(fmt.Sprintf("crash-v%d", i))
		dev, err := tg.NullBlk(32)
		must(t, err)
		must(t, tg.AddSubsystem(nvmet.Subsystem{NQN: nqn, AllowAnyHost: true}))
		must(t, tg.AddNamespace(nqn, nvmet.Namespace{NSID: 1, Device: dev}))
		must(t, tg.Link(port, nqn))
		v := &crashVol{
			i: i, id: fmt.Sprintf("vol-crash-%d", i), nqn: nqn, port: port,
			block: i%5 >= 3, keep: i < crashKeep,
			// kubelet's layout: staging paths under the plugins directory
			// (--staging-root), target paths under the pods directory.
			staging: fmt.Sprintf("/run/crash/kubernetes.io/csi/rds/%d/globalmount", i),
			target:  fmt.Sprintf("/run/crash-pods/pod-%d/volumes/vol-crash-%d/mount", i, i),
		}
		must(t, os.MkdirAll(guestenv.Path(v.staging), 0o750))
		must(t, os.MkdirAll(filepath.Dir(guestenv.Path(v.target)), 0o750))
		r.vols = append(r.vols, v)
		r.totalOps += len(v.ops())
	}
	// Whatever happens, nothing stays mounted on the target's disks and no
	// controller stays connected to them when the target goes (runs after
	// the daemons' stop and before the target's cleanup).
	t.Cleanup(func() {
		for _, v := range r.vols {
			for _, p := range []string{v.target, filepath.Join(v.staging, crashBlockFile), v.staging} {
				_ = syscall.Unmount(guestenv.Path(p), syscall.MNT_DETACH)
			}
		}
		ctrls, _ := crashControllers()
		for _, v := range r.vols {
			for _, c := range ctrls[v.nqn] {
				t.Logf("cleanup: deleting controller %s of %s", c.name, v.id)
				_ = rawDelete(c.name)
			}
		}
	})

	flags := []string{"--orphan-grace", crashGrace.String(), "--cleanup-interval", crashCleanupEvery.String()}
	ctx, cancel := context.WithCancel(context.Background())
	r.ctx = ctx
	r.fleet = newCrashFleet()
	var workers sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		r.fleet.close()
		workers.Wait()
	})
	d, ep := startRDSCSI(t, "crash", flags...)
	r.fleet.live(d, nodeClient(t, ep))

	// The monitor of in-use controllers.
	monDone := make(chan struct{})
	monStop := make(chan struct{})
	go func() { defer close(monDone); r.monitor(monStop) }()

	// Workers take volumes in turn, alternating kept and dropped ones.
	queue := make(chan *crashVol, crashVolumes)
	for i := range crashKeep {
		queue <- r.vols[i]
		queue <- r.vols[crashKeep+i]
	}
	close(queue)
	allDone := make(chan struct{})
	for range crashWorkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for v := range queue {
				r.runVolume(v)
			}
		}()
	}
	go func() { workers.Wait(); close(allDone) }()

	r.killer(allDone, flags)
	opsDone := time.Now()
	t.Logf("all sequences done after %s: %d kills", opsDone.Sub(testStart).Round(time.Millisecond), len(r.kills))

	// Dropped volumes: any controller left (a kill between unmount and
	// disconnect leaves an owned, unreferenced one) goes within the grace
	// period plus the cleanup interval; the bound adds slack for TCG.
	leftAtEnd := 0
	now, err := crashControllers()
	must(t, err)
	for _, v := range r.vols[crashKeep:] {
		leftAtEnd += len(now[v.nqn])
	}
	lastStart := r.fleet.startedAt()
	dropBound := crashGrace + 2*crashCleanupEvery + 20*time.Second
	var dropGone time.Duration
	dropDeadline := time.Now().Add(dropBound)
	for {
		now, err := crashControllers()
		must(t, err)
		var left []string
		for _, v := range r.vols[crashKeep:] {
			for _, c := range now[v.nqn] {
				left = append(left, v.id+":"+c.name)
			}
		}
		if len(left) == 0 {
			dropGone = time.Since(opsDone)
			break
		}
		if time.Now().After(dropDeadline) {
			t.Errorf("controllers of unstaged volumes left %s after the last operation (orphan grace %s, cleanup every %s): %v",
				dropBound, crashGrace, crashCleanupEvery, left)
			dropGone = -1
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	// One more grace period (counted from the last start, whose grace clock
	// runs for every unreferenced owned controller): cleanup must not take
	// an in-use controller. The monitor keeps watching meanwhile.
	if wait := time.Until(lastStart.Add(crashGrace + 3*crashCleanupEvery)); wait > 0 {
		time.Sleep(wait)
	}
	if wait := time.Until(opsDone.Add(crashGrace + 3*crashCleanupEvery)); wait > 0 {
		time.Sleep(wait)
	}
	checks := r.checkEndState(preexisting)
	close(monStop)
	<-monDone

	// The ownership file lists the kept volumes and their controllers only
	// (cleanup persists right after its disconnects).
	stateOK := r.checkStateFile()
	if stateOK {
		checks = append(checks, "ownership.json: exactly volumes 0-4 and their 5 controllers")
	}

	r.mu.Lock()
	violations := slices.Clone(r.violations)
	r.mu.Unlock()
	for _, s := range violations {
		t.Errorf("in-use controller: %s", s)
	}
	interrupting := len(r.interruptingGens)
	if len(r.kills) < crashKillMin {
		t.Errorf("only %d kills were made, want at least %d", len(r.kills), crashKillMin)
	}
	if interrupting < crashInterruptMin {
		t.Errorf("only %d of %d kills interrupted a call in flight, want at least %d: the kills did not hit the work",
			interrupting, len(r.kills), crashInterruptMin)
	}

	// Clean up through the driver: unpublish and unstage the kept volumes;
	// their controllers go with the unstage.
	client := r.fleet.client()
	for _, v := range r.vols[:crashKeep] {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		if err := r.call(cctx, client, v, "unpublish"); err != nil {
			t.Errorf("final unpublish %s: %v", v.id, err)
		}
		if err := r.call(cctx, client, v, "unstage"); err != nil {
			t.Errorf("final unstage %s: %v", v.id, err)
		}
		ccancel()
	}
	finalLeft := ""
	deadline := time.Now().Add(15 * time.Second)
	for {
		now, err := crashControllers()
		must(t, err)
		var left []string
		for _, v := range r.vols {
			for _, c := range now[v.nqn] {
				left = append(left, v.id+":"+c.name)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			finalLeft = strings.Join(left, ", ")
			t.Errorf("controllers left after the final unstage: %s", finalLeft)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if finalLeft == "" {
		checks = append(checks, "final unstage of volumes 0-4: no controller of the 10 subsystems left")
	}

	r.writeTable(t, tableInput{
		testStart: testStart, leftAtEnd: leftAtEnd, dropGone: dropGone, dropBound: dropBound,
		checks: checks, violations: len(violations),
	})
}

const (
	crashVolumes      = 10
	crashKeep         = 5 // volumes 0..4 end staged and published
	crashWorkers      = 3
	crashKillTarget   = 24
	crashKillMax      = 30
	crashMaxCycles    = 6 // stages of a kept volume at most (2 + extra rounds)
	crashKillMin      = 20
	crashInterruptMin = 10
	crashGrace        = 5 * time.Second
	crashCleanupEvery = time.Second
	crashOpBound      = 2 * time.Minute // a call must succeed within this, retries included
	crashCallTimeout  = time.Minute
	crashMonitorEvery = 5 * time.Millisecond
	crashBlockFile    = "rds-csi-device" // csi.BlockDeviceFile
)

// crashVol is one volume of the run.
type crashVol struct {
	i               int
	id, nqn         string
	port            int
	block, keep     bool
	staging, target string // as the daemon sees them
}

func (v *crashVol) ops() []string {
	if v.keep {
		return []string{"stage", "publish", "unpublish", "unstage", "stage", "publish"}
	}
	return []string{"stage", "publish", "unpublish", "unstage"}
}

func (v *crashVol) access() string {
	if v.block {
		return "block"
	}
	return "ext4"
}

func (v *crashVol) capability() *csipb.VolumeCapability {
	if v.block {
		return blockCap()
	}
	return mountCap("ext4")
}

// crashCtrl identifies a controller instance: the kernel reuses instance
// names, not kernfs inodes.
type crashCtrl struct {
	name string
	ino  uint64
}

func (c crashCtrl) String() string { return fmt.Sprintf("%s (inode %d)", c.name, c.ino) }

// crashControllers reads /sys/class/nvme directly (not through the code
// under test): subsystem NQN -> controller instances.
func crashControllers() (map[string][]crashCtrl, error) {
	ents, err := os.ReadDir("/sys/class/nvme")
	if err != nil {
		return nil, err
	}
	out := map[string][]crashCtrl{}
	for _, e := range ents {
		dir := filepath.Join("/sys/class/nvme", e.Name())
		nqn, err := os.ReadFile(filepath.Join(dir, "subsysnqn"))
		if err != nil {
			continue // going away
		}
		id, err := crashIdent(e.Name())
		if err != nil {
			continue
		}
		k := strings.TrimSpace(string(nqn))
		out[k] = append(out[k], id)
	}
	return out, nil
}

func crashIdent(name string) (crashCtrl, error) {
	fi, err := os.Stat(filepath.Join("/sys/class/nvme", name))
	if err != nil {
		return crashCtrl{}, err
	}
	return crashCtrl{name: name, ino: fi.Sys().(*syscall.Stat_t).Ino}, nil
}

// crashFleet is the current daemon instance (generation) and its client.
type crashFleet struct {
	mu       sync.Mutex
	cond     *sync.Cond
	gen      int
	up       bool
	closed   bool
	d        *guestenv.Daemon
	c        csipb.NodeClient
	started  time.Time
	killedAt map[int]time.Time
}

func newCrashFleet() *crashFleet {
	f := &crashFleet{killedAt: map[int]time.Time{}}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// live makes a started instance the current one.
func (f *crashFleet) live(d *guestenv.Daemon, c csipb.NodeClient) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.d != nil {
		f.gen++
	}
	f.d, f.c, f.up, f.started = d, c, true, time.Now()
	f.cond.Broadcast()
}

// current waits for a live instance; ok is false once the fleet is closed.
func (f *crashFleet) current() (gen int, c csipb.NodeClient, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for !f.up && !f.closed {
		f.cond.Wait()
	}
	return f.gen, f.c, !f.closed
}

func (f *crashFleet) client() csipb.NodeClient {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.c
}

func (f *crashFleet) pid() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.d.Pid()
}

func (f *crashFleet) startedAt() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.started
}

// kill marks the current instance dead (before the signal, so every call
// it breaks is attributed to the kill) and kills it with SIGKILL.
func (f *crashFleet) kill() (gen int, at time.Time, d *guestenv.Daemon) {
	f.mu.Lock()
	gen, d, at = f.gen, f.d, time.Now()
	f.up = false
	f.killedAt[gen] = at
	f.mu.Unlock()
	_ = syscall.Kill(d.Pid(), syscall.SIGKILL)
	return gen, at, d
}

// killed returns when instance gen was killed (zero if it was not).
func (f *crashFleet) killed(gen int) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.killedAt[gen]
}

func (f *crashFleet) close() {
	f.mu.Lock()
	f.closed = true
	f.cond.Broadcast()
	f.mu.Unlock()
}

// crashStart is an attempt of an operation, as the killer sees it.
type crashStart struct {
	v       *crashVol
	kind    string
	attempt int
	gen     int
	at      time.Time
	done    *atomic.Bool
}

// crashKill is one SIGKILL.
type crashKill struct {
	gen      int
	op       string // the picked call, "stage vol-crash-3 (ext4) attempt 1"
	delay    time.Duration
	phase    string
	children []string
	restart  time.Duration // SIGKILL to the new instance's socket
}

// crashRun is the shared state of the run.
type crashRun struct {
	t        *testing.T
	ctx      context.Context
	seed     uint64
	vols     []*crashVol
	fleet    *crashFleet
	totalOps int
	starts   chan crashStart
	firsts   atomic.Int64 // first attempts started so far

	mu               sync.Mutex
	inUse            map[int]crashCtrl // volume index -> its controller, stage success to unstage start
	violations       []string
	monitorSamples   int
	monitorSpan      time.Duration
	typical          map[string][]time.Duration // "stage/ext4" -> uninterrupted call durations
	interrupted      map[string]int             // op kind -> calls a kill broke
	interruptingGens map[int]bool
	recoveries       []time.Duration // kill -> the broken call's retry succeeded
	otherErrors      []string        // failed calls no kill explains
	opsDone          map[string]int
	kills            []crashKill
	cycles           map[int]int // volume index -> stages made
	extraCycles      int
}

// runVolume drives one volume's sequence, kubelet-like.
func (r *crashRun) runVolume(v *crashVol) {
	cycle := 0
	ops := v.ops()
	for idx := 0; idx < len(ops); idx++ {
		kind := ops[idx]
		switch kind {
		case "stage":
			cycle++
		case "unpublish":
			r.checkData(v, cycle, "before unpublish")
		case "unstage":
			r.endInUse(v)
		}
		if !r.do(v, kind) {
			return
		}
		switch kind {
		case "stage":
			r.beginInUse(v)
		case "publish":
			r.checkData(v, cycle-1, fmt.Sprintf("after publish of stage %d", cycle))
			r.writeData(v, cycle)
		}
		// On a fast machine the sequences can end before the kills are
		// made: a kept volume then goes round once more (its end state
		// stays staged and published).
		if idx == len(ops)-1 && v.keep && cycle < crashMaxCycles && r.killCount() < crashKillTarget {
			ops = append(ops, "unpublish", "unstage", "stage", "publish")
			r.mu.Lock()
			r.extraCycles++
			r.mu.Unlock()
		}
	}
	r.mu.Lock()
	r.cycles[v.i] = cycle
	r.mu.Unlock()
}

func (r *crashRun) killCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.kills)
}

// do retries one operation until it succeeds (false: it did not within
// crashOpBound, or the test is ending).
func (r *crashRun) do(v *crashVol, kind string) bool {
	first := time.Now()
	var lastKill time.Time
	var lastErr error
	for attempt := 1; ; attempt++ {
		if time.Since(first) > crashOpBound {
			r.t.Errorf("%s %s did not succeed within %s (%d attempts); last error: %v", kind, v.id, crashOpBound, attempt-1, lastErr)
			return false
		}
		gen, c, ok := r.fleet.current()
		if !ok || r.ctx.Err() != nil {
			return false
		}
		done := &atomic.Bool{}
		if attempt == 1 {
			r.firsts.Add(1)
		}
		start := time.Now()
		select {
		case r.starts <- crashStart{v: v, kind: kind, attempt: attempt, gen: gen, at: start, done: done}:
		default:
		}
		ctx, cancel := context.WithTimeout(r.ctx, crashCallTimeout)
		err := r.call(ctx, c, v, kind)
		cancel()
		done.Store(true)
		took := time.Since(start)
		if err == nil {
			r.mu.Lock()
			if attempt == 1 || lastKill.IsZero() {
				k := kind + "/" + v.access()
				r.typical[k] = append(r.typical[k], took)
			}
			if !lastKill.IsZero() {
				rec := time.Since(lastKill)
				r.recoveries = append(r.recoveries, rec)
				r.t.Logf("%s %s succeeded at attempt %d, %s after the kill that broke attempt %d (this call took %s)",
					kind, v.id, attempt, rec.Round(time.Millisecond), attempt-1, took.Round(time.Millisecond))
			}
			r.opsDone[kind]++
			r.mu.Unlock()
			return true
		}
		lastErr = err
		if r.ctx.Err() != nil {
			return false
		}
		if at := r.fleet.killed(gen); !at.IsZero() {
			r.mu.Lock()
			r.interrupted[kind]++
			r.interruptingGens[gen] = true
			r.mu.Unlock()
			lastKill = at
			continue // current() waits for the next instance
		}
		r.mu.Lock()
		r.otherErrors = append(r.otherErrors, fmt.Sprintf("%s %s attempt %d (instance %d): %v", kind, v.id, attempt, gen, err))
		r.mu.Unlock()
		r.t.Logf("%s %s attempt %d failed without a kill: %v", kind, v.id, attempt, err)
		time.Sleep(200 * time.Millisecond)
	}
}

// call makes one CSI call of kind for v.
func (r *crashRun) call(ctx context.Context, c csipb.NodeClient, v *crashVol, kind string) error {
	var err error
	switch kind {
	case "stage":
		_, err = c.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{
			VolumeId: v.id, StagingTargetPath: v.staging, VolumeCapability: v.capability(),
			VolumeContext: volumeContext(v.nqn, v.port),
		})
	case "publish":
		_, err = c.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{
			VolumeId: v.id, StagingTargetPath: v.staging, TargetPath: v.target, VolumeCapability: v.capability(),
		})
	case "unpublish":
		_, err = c.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: v.id, TargetPath: v.target})
	case "unstage":
		_, err = c.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.staging})
	default:
		err = fmt.Errorf("unknown op %q", kind)
	}
	return err
}

// beginInUse records the volume's controller once its stage succeeded:
// there must be exactly one.
func (r *crashRun) beginInUse(v *crashVol) {
	ctrls, err := crashControllers()
	if err != nil {
		r.t.Errorf("read controllers: %v", err)
		return
	}
	ids := ctrls[v.nqn]
	if len(ids) != 1 {
		r.t.Errorf("after the stage of %s succeeded its subsystem has controllers %v, want exactly one", v.id, ids)
	}
	if len(ids) == 0 {
		return
	}
	r.mu.Lock()
	r.inUse[v.i] = ids[0]
	r.mu.Unlock()
}

// endInUse compares the controller with the one recorded at stage success
// and stops watching it: the unstage may disconnect it.
func (r *crashRun) endInUse(v *crashVol) {
	r.mu.Lock()
	defer r.mu.Unlock()
	want, ok := r.inUse[v.i]
	if !ok {
		return
	}
	delete(r.inUse, v.i)
	if got, err := crashIdent(want.name); err != nil || got != want {
		r.violations = append(r.violations, fmt.Sprintf("%s: at unstage start its controller is %v (error %v), at stage success it was %v", v.id, got, err, want))
	}
}

// monitor stats every in-use controller every crashMonitorEvery. It holds
// the lock during a pass, so a volume leaves the set (unstage start) only
// between passes.
func (r *crashRun) monitor(stop <-chan struct{}) {
	tk := time.NewTicker(crashMonitorEvery)
	defer tk.Stop()
	start := time.Now()
	for {
		select {
		case <-stop:
			r.mu.Lock()
			r.monitorSpan = time.Since(start)
			r.mu.Unlock()
			return
		case <-tk.C:
		}
		r.mu.Lock()
		r.monitorSamples++
		for i, want := range r.inUse {
			got, err := crashIdent(want.name)
			if err == nil && got == want {
				continue
			}
			seen := "gone"
			if err == nil {
				seen = "replaced by " + got.String()
			}
			r.violations = append(r.violations, fmt.Sprintf("%s: its controller %v was %s at %s while in use (staged)",
				r.vols[i].id, want, seen, time.Now().Format("15:04:05.000")))
			delete(r.inUse, i) // reported once
		}
		r.mu.Unlock()
	}
}

// canary data: a file per stage cycle on ext4 volumes, a 4 KiB pattern per
// cycle (at cycle MiB) on block volumes, written through the target path.
func (r *crashRun) canary(v *crashVol, cycle int) []byte {
	line := fmt.Sprintf("%s stage %d seed %d\n", v.id, cycle, r.seed)
	if !v.block {
		return []byte(line)
	}
	return bytes.Repeat([]byte(line), 4096/len(line)+1)[:4096]
}

func (r *crashRun) writeData(v *crashVol, cycle int) {
	want := r.canary(v, cycle)
	p := guestenv.Path(v.target)
	err := func() error {
		if v.block {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := f.WriteAt(want, int64(cycle)<<20); err != nil {
				return err
			}
			return f.Sync()
		}
		f, err := os.OpenFile(filepath.Join(p, fmt.Sprintf("canary-%d", cycle)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.Write(want); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		dir, err := os.Open(p)
		if err != nil {
			return err
		}
		defer dir.Close()
		return dir.Sync()
	}()
	if err != nil {
		r.t.Errorf("%s: write data of stage %d through %s: %v", v.id, cycle, p, err)
	}
}

// checkData reads back the data of cycles 1..upto through the target path.
func (r *crashRun) checkData(v *crashVol, upto int, when string) bool {
	ok := true
	p := guestenv.Path(v.target)
	for cycle := 1; cycle <= upto; cycle++ {
		want := r.canary(v, cycle)
		got := make([]byte, len(want))
		var err error
		if v.block {
			var f *os.File
			if f, err = os.Open(p); err == nil {
				_, err = f.ReadAt(got, int64(cycle)<<20)
				f.Close()
			}
		} else {
			got, err = os.ReadFile(filepath.Join(p, fmt.Sprintf("canary-%d", cycle)))
		}
		if err != nil || !bytes.Equal(got, want) {
			r.t.Errorf("%s %s: data of stage %d not readable through %s: err %v, got %q, want %q",
				v.id, when, cycle, p, err, crashHead(got), crashHead(want))
			ok = false
		}
	}
	return ok
}

func crashHead(b []byte) []byte {
	if len(b) > 48 {
		return b[:48]
	}
	return b
}

// killer picks calls to break until every sequence is done, restarting
// the binary after each kill.
func (r *crashRun) killer(allDone <-chan struct{}, flags []string) {
	t := r.t
	rng := rand.New(rand.NewPCG(r.seed, r.seed^0x9e3779b97f4a7c15))
	defaults := map[string]time.Duration{
		"stage/ext4": 2 * time.Second, "stage/block": 600 * time.Millisecond,
		"publish/ext4": 150 * time.Millisecond, "publish/block": 150 * time.Millisecond,
		"unpublish/ext4": 150 * time.Millisecond, "unpublish/block": 150 * time.Millisecond,
		"unstage/ext4": 500 * time.Millisecond, "unstage/block": 400 * time.Millisecond,
	}
	for {
		var ev crashStart
		select {
		case <-allDone:
			return
		case ev = <-r.starts:
		}
		n := len(r.kills)
		cur, _, _ := r.fleet.current()
		if n >= crashKillMax || ev.gen != cur || ev.done.Load() {
			continue
		}
		// Keep the kills in step with the progress of the sequences (the
		// target is due at about 70 % of the calls): a call is picked
		// only while kills are due. Stage and unstage have the most steps
		// (connect, disk wait, blkid/mkfs/fsck, mount; unmount,
		// disconnect), so publish and unpublish are picked less often,
		// and retried calls less often than first attempts.
		progress := float64(r.firsts.Load()) / float64(r.totalOps)
		due := int(math.Ceil(crashKillTarget * min(1, progress*1.4)))
		if due-n <= 0 {
			continue
		}
		p := 1.0
		if ev.kind == "publish" || ev.kind == "unpublish" {
			p = 0.35
		}
		if ev.attempt > 1 {
			p *= 0.5
		}
		if due-n >= 2 {
			p = 1 // fallen behind
		}
		if rng.Float64() >= p {
			continue
		}
		k := ev.kind + "/" + ev.v.access()
		typ := defaults[k]
		r.mu.Lock()
		if ds := r.typical[k]; len(ds) > 0 {
			typ = percentile(ds, 50)
		}
		r.mu.Unlock()
		delay := time.Duration(rng.Float64() * 1.25 * float64(typ))
		time.Sleep(time.Until(ev.at.Add(delay)))

		kill := crashKill{op: fmt.Sprintf("%s %s (%s) attempt %d", ev.kind, ev.v.id, ev.v.access(), ev.attempt), delay: delay}
		kill.children = crashChildren(r.fleet.pid())
		kill.phase = crashPhase(ev, kill.children)
		gen, at, old := r.fleet.kill()
		kill.gen = gen
		if err := old.Stop(syscall.SIGKILL, 10*time.Second); err != nil {
			t.Errorf("killed instance %d: %v", gen, err)
		}
		nd, ep := startRDSCSI(t, "crash", flags...)
		r.fleet.live(nd, nodeClient(t, ep))
		kill.restart = time.Since(at)
		r.mu.Lock()
		r.kills = append(r.kills, kill)
		r.mu.Unlock()
		t.Logf("kill %d: instance %d during %s, %s after its start; phase %s; children %v; restarted in %s",
			len(r.kills), gen, kill.op, delay.Round(time.Millisecond), kill.phase, kill.children, kill.restart.Round(time.Millisecond))
	}
}

// crashChildren lists the command names of pid's child processes.
func crashChildren(pid int) []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil && ppid == pid {
			out = append(out, s[open+1:end])
		}
	}
	slices.Sort(out)
	return out
}

// crashPhase says where the picked call was when the kill came, from what
// is visible outside the daemon.
func crashPhase(ev crashStart, children []string) string {
	if ev.done.Load() {
		return ev.kind + ": call already returned"
	}
	if len(children) > 0 {
		return ev.kind + ": " + strings.Join(children, "+")
	}
	v := ev.v
	mounts := crashMounts()
	stagedAt := guestenv.Path(v.staging)
	if v.block {
		stagedAt = guestenv.Path(filepath.Join(v.staging, crashBlockFile))
	}
	ctrls, _ := crashControllers()
	hasCtrl := len(ctrls[v.nqn]) > 0
	switch ev.kind {
	case "stage":
		switch {
		case mounts[stagedAt]:
			return "stage: mounted, before the reply"
		case !hasCtrl:
			return "stage: connect (no controller yet)"
		case !crashDiskVisible(v.nqn):
			return "stage: device wait (controller, no disk)"
		}
		return "stage: disk there, before format/mount"
	case "unstage":
		switch {
		case mounts[stagedAt]:
			return "unstage: before unmount"
		case hasCtrl:
			return "unstage: unmounted, before/in disconnect"
		}
		return "unstage: disconnected, before the reply"
	case "publish":
		if mounts[guestenv.Path(v.target)] {
			return "publish: bind-mounted, before the reply"
		}
		return "publish: before bind mount"
	case "unpublish":
		if mounts[guestenv.Path(v.target)] {
			return "unpublish: before unmount"
		}
		return "unpublish: unmounted, before the reply"
	}
	return ev.kind
}

// crashDiskVisible reports whether a block disk of the subsystem exists
// (the multipath head, or a controller's disk without multipath).
func crashDiskVisible(nqn string) bool {
	for _, class := range []string{"/sys/class/nvme-subsystem", "/sys/class/nvme"} {
		ents, _ := os.ReadDir(class)
		for _, e := range ents {
			dir := filepath.Join(class, e.Name())
			b, err := os.ReadFile(filepath.Join(dir, "subsysnqn"))
			if err != nil || strings.TrimSpace(string(b)) != nqn {
				continue
			}
			disks, _ := filepath.Glob(filepath.Join(dir, "nvme*n*"))
			for _, d := range disks {
				if !strings.Contains(strings.TrimPrefix(filepath.Base(d), "nvme"), "c") {
					return true
				}
			}
		}
	}
	return false
}

// crashMounts returns the guest's mount points.
func crashMounts() map[string]bool {
	out := map[string]bool{}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 4 {
			out[f[4]] = true
		}
	}
	return out
}

// checkEndState checks mounts, controllers and data; it returns what
// passed, for the table.
func (r *crashRun) checkEndState(preexisting map[crashCtrl]bool) []string {
	t := r.t
	mounts := crashMounts()
	ctrls, err := crashControllers()
	must(t, err)
	ok := true
	fail := func(format string, args ...any) {
		ok = false
		t.Errorf(format, args...)
	}
	keepNQN := map[string]bool{}
	r.mu.Lock()
	inUse := maps.Clone(r.inUse)
	r.mu.Unlock()
	dataOK := true
	for _, v := range r.vols {
		stagedAt := guestenv.Path(v.staging)
		if v.block {
			stagedAt = guestenv.Path(filepath.Join(v.staging, crashBlockFile))
		}
		target := guestenv.Path(v.target)
		if v.keep {
			keepNQN[v.nqn] = true
			if !mounts[stagedAt] {
				fail("%s: staging %s not mounted at the end", v.id, stagedAt)
			}
			if !mounts[target] {
				fail("%s: target %s not mounted at the end", v.id, target)
			}
			want, watched := inUse[v.i]
			switch {
			case !watched:
				fail("%s: no controller under watch at the end (see the errors above)", v.id)
			case len(ctrls[v.nqn]) != 1 || ctrls[v.nqn][0] != want:
				fail("%s: controllers %v at the end, want exactly %v (recorded at stage success)", v.id, ctrls[v.nqn], want)
			}
			r.mu.Lock()
			cycles := r.cycles[v.i]
			r.mu.Unlock()
			dataOK = r.checkData(v, cycles, "at the end") && dataOK
			continue
		}
		for _, p := range []string{guestenv.Path(v.staging), guestenv.Path(filepath.Join(v.staging, crashBlockFile)), target} {
			if mounts[p] {
				fail("%s: %s still mounted at the end", v.id, p)
			}
		}
		if len(ctrls[v.nqn]) > 0 {
			fail("%s: controllers %v left at the end", v.id, ctrls[v.nqn])
		}
	}
	for nqn, ids := range ctrls {
		for _, id := range ids {
			if !keepNQN[nqn] && !preexisting[id] {
				fail("controller %v of %s appeared and is left at the end", id, nqn)
			}
		}
	}
	var passed []string
	if ok {
		passed = append(passed,
			"volumes 0-4: staging and target mounted, exactly the controller recorded at stage success",
			"volumes 5-9: no mount, no controller; no new controller of another subsystem")
	}
	if dataOK {
		passed = append(passed, "data of every stage of volumes 0-4 read back through the target paths")
	}
	return passed
}

// checkStateFile compares the daemon's ownership file with the end state.
func (r *crashRun) checkStateFile() bool {
	t := r.t
	type entry struct{ id, nqn, path, ctrl string }
	r.mu.Lock()
	var want []entry
	var wantCtrls []string
	for _, v := range r.vols[:crashKeep] {
		c := r.inUse[v.i]
		want = append(want, entry{v.id, v.nqn, v.staging, c.name})
		wantCtrls = append(wantCtrls, c.name+" "+v.nqn)
	}
	r.mu.Unlock()
	slices.SortFunc(want, func(a, b entry) int { return strings.Compare(a.id, b.id) })
	slices.Sort(wantCtrls)
	path := guestenv.Path("/run/crash/state/ownership.json")
	var last string
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st struct {
			Controllers []struct {
				Name      string `json:"name"`
				SubsysNQN string `json:"subsysnqn"`
			} `json:"controllers"`
			Volumes []struct {
				ID          string `json:"id"`
				SubsysNQN   string `json:"subsysnqn"`
				StagingPath string `json:"staging_path"`
				Controller  string `json:"controller"`
			} `json:"volumes"`
		}
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		if err == nil {
			var got []entry
			for _, v := range st.Volumes {
				got = append(got, entry{v.ID, v.SubsysNQN, v.StagingPath, v.Controller})
			}
			var gotCtrls []string
			for _, c := range st.Controllers {
				gotCtrls = append(gotCtrls, c.Name+" "+c.SubsysNQN)
			}
			slices.Sort(gotCtrls)
			if slices.Equal(got, want) && slices.Equal(gotCtrls, wantCtrls) {
				return true
			}
			last = fmt.Sprintf("volumes %v, controllers %v; want volumes %v, controllers %v", got, gotCtrls, want, wantCtrls)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Errorf("ownership file %s: %s\n%s", path, last, b)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type tableInput struct {
	testStart  time.Time
	leftAtEnd  int
	dropGone   time.Duration
	dropBound  time.Duration
	checks     []string
	violations int
}

func (r *crashRun) writeTable(t *testing.T, in tableInput) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	b.WriteString("| What | Value |\n|---|---|\n")
	row("seed (RDS_CSI_CRASH_SEED)", strconv.FormatUint(r.seed, 10))
	row("volumes", fmt.Sprintf("%d (6 ext4 mount, 4 block; 32 MiB memory-backed null_blk each, one subsystem each, one nvmet port), %d workers", crashVolumes, crashWorkers))
	row("sequences", "volumes 0-4: stage, publish, unpublish, unstage, stage, publish (then more unpublish, unstage, stage, publish rounds, up to 6 stages, while fewer than 24 kills were made); volumes 5-9: stage, publish, unpublish, unstage; every call retried until it succeeds")
	row("calls that succeeded", fmt.Sprintf("stage %d, publish %d, unpublish %d, unstage %d (15, 15, 10, 10 plus %d extra rounds of unpublish, unstage, stage, publish of volumes 0-4, made while kills were still due)",
		r.opsDone["stage"], r.opsDone["publish"], r.opsDone["unpublish"], r.opsDone["unstage"], r.extraCycles))
	row("SIGKILLs (= restarts on the same --state-dir)", strconv.Itoa(len(r.kills)))
	row("kills that broke at least one call in flight", strconv.Itoa(len(r.interruptingGens)))
	row("calls broken by a kill, by kind", fmt.Sprintf("stage %d, publish %d, unpublish %d, unstage %d",
		r.interrupted["stage"], r.interrupted["publish"], r.interrupted["unpublish"], r.interrupted["unstage"]))
	phases := map[string]int{}
	children := map[string]int{}
	var restarts []time.Duration
	for _, k := range r.kills {
		phases[k.phase]++
		for _, c := range k.children {
			children[c]++
		}
		restarts = append(restarts, k.restart)
	}
	row("where the picked call was at the kill (daemon children, controller, disk, mounts seen just before)", crashCounts(phases))
	row("daemon child processes alive just before a kill (blkid, mkfs, fsck die with it: Pdeathsig; mount, umount, systemd-run are started by mount-utils itself and may finish)", cmp.Or(crashCounts(children), "none"))
	row("failed calls no kill explains (retried)", fmt.Sprintf("%d%s", len(r.otherErrors), crashList(r.otherErrors)))
	row("restart: SIGKILL to the new instance's socket, p50 / p95 / max", dist(restarts))
	row("kill to the broken call's successful retry, p50 / p95 / max", dist(r.recoveries))
	every := time.Duration(0)
	if r.monitorSamples > 0 {
		every = r.monitorSpan / time.Duration(r.monitorSamples)
	}
	row("in-use controllers watched (stage success to unstage start)", fmt.Sprintf("sysfs stat of each every %s (ticker), %d passes in %s (one per %s); disconnected or replaced: %d",
		crashMonitorEvery, r.monitorSamples, fmtDur(r.monitorSpan), fmtDur(every), in.violations))
	var typ []string
	for _, k := range slices.Sorted(maps.Keys(r.typical)) {
		typ = append(typ, k+" "+dist(r.typical[k]))
	}
	row("uninterrupted call durations, p50 / p95 / max", strings.Join(typ, "; "))
	gone := "never (failed)"
	if in.dropGone >= 0 {
		gone = fmtDur(in.dropGone)
	}
	row("controllers of volumes 5-9 left when the last call returned", fmt.Sprintf("%d; all gone %s later (bound: grace %s + 2 x cleanup %s + 20 s)", in.leftAtEnd, gone, crashGrace, crashCleanupEvery))
	row("end-state checks passed", cmp.Or(strings.Join(in.checks, "; "), "none"))
	row("lab time of the test", fmtDur(time.Since(in.testStart)))
	b.WriteString("\nDelays: uniform in [0, 1.25 x median uninterrupted duration of the call's kind], measured from the call's start. " +
		"A kill \"broke\" a call when the call, made to the killed instance, returned an error. " +
		"Controller identity is the kernfs inode of /sys/class/nvme/<name> (a reconnect under the same name has a new one).\n")
	writeResult(t, "crash-consistency", b.String())
}

func crashCounts(m map[string]int) string {
	keys := slices.Sorted(maps.Keys(m))
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, "; ")
}

func crashList(s []string) string {
	if len(s) == 0 {
		return ""
	}
	const most = 5
	more := ""
	if len(s) > most {
		more = fmt.Sprintf("; %d more in the log", len(s)-most)
		s = s[:most]
	}
	return ": " + strings.ReplaceAll(strings.Join(s, "; "), "|", "\\|") + more
}
