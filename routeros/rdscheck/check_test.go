package rdscheck

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/srvlab/rds-csi/routeros"
	"github.com/srvlab/rds-csi/routeros/rdstest"
)

const (
	volDir = "/storage-pool/rds-csi"
	// not the check's: must survive every run
	notesFile   = volDir + "/rds-csi-check-notes.txt"
	otherDirImg = "/storage-pool/other/rds-csi-check-disk-xxxxxxxxxxxxx.img"
	userFile    = volDir + "/data.img"
)

// setup starts an emulated RDS with v, puts there a volume of the driver,
// files that are not the check's, and the leftovers of an earlier check
// (a disk and its file, and a lone file); it returns the server and a
// Config for it.
func setup(t *testing.T, v rdstest.Variant) (*rdstest.Server, Config) {
	t.Helper()
	srv, err := rdstest.Start(rdstest.Options{Variant: v, PoolSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tr, err := routeros.NewSSH(routeros.SSHConfig{Address: srv.Addr(), User: srv.User(), PrivateKey: srv.ClientKeyPEM(),
		KnownHosts: srv.KnownHosts(), Backoff: wait.Backoff{Duration: time.Millisecond, Factor: 2, Steps: 2},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	vol, _ := routeros.SlotFor("pvc-keep")
	p, _ := routeros.FilePathFor(volDir, vol)
	if _, err := routeros.NewClient(tr, nil).CreateDisk(context.Background(), routeros.DiskSpec{Slot: vol, FilePath: p,
		Size: 1 << 20, Port: 4420, NQN: "nqn.2000-02.com.mikrotik:" + vol}); err != nil {
		t.Fatal(err)
	}
	srv.AddFile(notesFile, 10)
	srv.AddFile(otherDirImg, 10)
	srv.AddFile(userFile, 10)
	srv.AddFile(volDir+"/rds-csi-check-lone-file.img", 10)
	if out, errOut, _ := srv.Exec(`/disk add type=file file-path="` + volDir + `/rds-csi-check-old-run.img" file-size=4096 slot="rds-csi-check-old-run"`); out+errOut != "" {
		t.Fatalf("leftover: %s%s", out, errOut)
	}
	return srv, Config{Runner: tr, VolumeDir: volDir, Pool: "storage-pool", Port: 4420, NQNBase: "nqn.2000-02.com.mikrotik"}
}

// checkClean: nothing of the check is left, everything else is.
func checkClean(t *testing.T, srv *rdstest.Server, r *Report) {
	t.Helper()
	if len(r.LeftBehind) != 0 || r.CleanupError != "" {
		t.Errorf("left behind %v (%s)", r.LeftBehind, r.CleanupError)
	}
	disks := srv.Disks()
	if len(disks) != 1 || !routeros.IsVolumeSlot(disks[0].Slot) {
		t.Errorf("disks after the check: %v, want the volume only", disks)
	}
	files := srv.Files()
	for p := range files {
		if strings.Contains(p, "rds-csi-check-") && p != notesFile && p != otherDirImg {
			t.Errorf("check file %s left", p)
		}
	}
	for _, p := range []string{notesFile, otherDirImg, userFile, disks[0].FilePath} {
		if _, ok := files[p]; !ok {
			t.Errorf("%s (not the check's) was removed", p)
		}
	}
}

func findingOf(t *testing.T, r *Report, name string) Finding {
	t.Helper()
	for _, f := range r.Findings {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no finding %q in %+v", name, r.Findings)
	return Finding{}
}

// TestCheckVariants runs the whole check against the emulator with each
// unverified behaviour switched, and checks that the report tells which
// one this RDS has, that earlier leftovers are swept, and that nothing of
// the check (and everything else) is left.
func TestCheckVariants(t *testing.T) {
	type want struct {
		name     string
		verdict  Verdict
		contains string
	}
	cases := []struct {
		name     string
		v        rdstest.Variant
		want     []want
		problems int
	}{
		{"default", rdstest.Variant{}, []want{
			{nameErrors, OK, "bad command: text on stdout, exit status 0, classified invalid_argument"},
			{nameErrors, OK, "duplicate add: text on stdout, exit status 0, classified exists"},
			{nameFind, OK, "silent"},
			{nameAdd, OK, "printed nothing; read back with size 1048576 bytes (asked 1048576)"},
			{nameParse, OK, "every print output parsed"},
			{nameGrow, OK, "size 2097152 bytes after asking 2097152"},
			{nameAllow, Info, `one host: accepted, printed as "nqn.2014-08.io.srvlab.rds-csi:check-host-a"; two hosts, comma-separated: refused`},
			{nameCopy, OK, "size 2097152 bytes (source 2097152)"},
			{nameRemove, OK, "the file is left"},
			{nameFileRm, OK, "the file is gone"},
			{nameSlotLen, Info, "32 accepted (the test disk); 40 refused"},
			{nameSlotLen, Info, "33 refused"},
			{nameSlotLen, Info, "the limit is 32"},
		}, 0},
		{"errors on stderr", rdstest.Variant{ErrorsOnStderr: true}, []want{
			{nameErrors, OK, "bad command: text on stderr, exit status 0"},
			{nameErrors, OK, "duplicate add: text on stderr, exit status 0, classified exists"},
		}, 0},
		{"error exit status", rdstest.Variant{ErrorExitStatus: 1}, []want{
			{nameErrors, OK, "duplicate add: text on stdout, exit status 1, classified exists"},
		}, 0},
		{"find no match is an error", rdstest.Variant{FindNoMatchError: true}, []want{
			{nameFind, OK, `an error: text on stdout, exit status 0, classified not_found ("failure: no such item")`},
		}, 0},
		{"remove disk removes file", rdstest.Variant{RemoveDiskRemovesFile: true}, []want{
			{nameRemove, Info, "removing the disk removed its file too"},
			{nameFileRm, NotRun, "no file left"},
		}, 0},
		{"40-character slots", rdstest.Variant{MaxSlotLen: 40}, []want{
			{nameSlotLen, Info, "40 accepted; the limit is 40 or more"},
		}, 0},
		{"35-character slots", rdstest.Variant{MaxSlotLen: 35}, []want{
			{nameSlotLen, Info, "40 refused"},
			{nameSlotLen, Info, "33 accepted; the limit is between 33 and 39"},
		}, 0},
		{"allow-host-name list", rdstest.Variant{AllowHostNameList: true}, []want{
			{nameAllow, Info, `two hosts, comma-separated: accepted, printed as "nqn.2014-08.io.srvlab.rds-csi:check-host-a,nqn.2014-08.io.srvlab.rds-csi:check-host-b"`},
		}, 0},
		{"copy inherits the export", rdstest.Variant{CopyInheritsExport: true}, []want{
			{nameCopy, OK, "exported true"},
		}, 0},
		{"copy refuses properties", rdstest.Variant{CopyRefusesProperties: true}, []want{
			{nameCopy, Differs, "the driver's copy command failed"},
		}, 1},
		{"no copy-from", rdstest.Variant{NoCopyFrom: true}, []want{
			{nameCopy, Differs, `the driver's copy command failed: text on stdout, exit status 0, classified invalid_argument ("expected end of command`},
			{nameRemove, OK, "the file is left"},
		}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, cfg := setup(t, tc.v)
			r, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				f := findingOf(t, r, w.name)
				if f.Verdict != w.verdict || !strings.Contains(f.Observed, w.contains) {
					t.Errorf("%s: [%s] %s\nwant [%s] containing %q", w.name, f.Verdict, f.Observed, w.verdict, w.contains)
				}
			}
			if r.Problems() != tc.problems {
				t.Errorf("problems %d, want %d: %+v", r.Problems(), tc.problems, r.Findings)
			}
			for _, f := range r.Findings {
				if f.Verdict == NotRun && !(tc.v.RemoveDiskRemovesFile && f.Name == nameFileRm) {
					t.Errorf("finding %q not run: %s", f.Name, f.Observed)
				}
			}
			wantSwept := []string{"disk rds-csi-check-old-run", "file " + volDir + "/rds-csi-check-lone-file.img", "file " + volDir + "/rds-csi-check-old-run.img"}
			if tc.v.RemoveDiskRemovesFile { // went with its disk
				wantSwept = wantSwept[:2]
			}
			if strings.Join(r.Swept, "|") != strings.Join(wantSwept, "|") {
				t.Errorf("swept %v, want %v", r.Swept, wantSwept)
			}
			checkClean(t, srv, r)
			// the transcript is every command the RDS received, in order,
			// after the setup's
			cmds := srv.Commands()
			got := cmds[len(cmds)-len(r.Steps):]
			for i, s := range r.Steps {
				if s.Command != got[i] {
					t.Fatalf("step %d is %q, the RDS received %q", s.N, s.Command, got[i])
				}
			}
			var text, js bytes.Buffer
			if err := r.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if testing.Verbose() && tc.name == "default" {
				t.Log(text.String())
			}
			if !strings.Contains(text.String(), "Left behind: nothing") || !strings.Contains(text.String(), `stdout: "Flags: `) {
				t.Errorf("text report:\n%s", text.String())
			}
			if err := r.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			var back Report
			if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Steps) != len(r.Steps) {
				t.Errorf("JSON round trip: %v, %d steps", err, len(back.Steps))
			}
		})
	}
}

// TestCheckInterrupted: an interrupt (the context ends) while a command
// hangs stops the probes; the cleanup, on a context of its own, still
// removes the test disk and its file.
func TestCheckInterrupted(t *testing.T) {
	srv, cfg := setup(t, rdstest.Variant{})
	srv.Hang("copy-from")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan *Report, 1)
	go func() {
		r, err := Run(ctx, cfg)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	for !hangReached(srv) {
		select {
		case r := <-done:
			t.Fatalf("the check ended before the copy: %+v", r.Findings)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if !hasCheckDisk(srv) {
		t.Fatal("no check disk exists while the copy hangs: the test proves nothing")
	}
	cancel()
	r := <-done
	if !r.Interrupted {
		t.Error("report not marked interrupted")
	}
	if f := findingOf(t, r, nameCopy); f.Verdict != NotRun {
		t.Errorf("copy finding after the interrupt: %+v", f)
	}
	checkClean(t, srv, r)
}

func hangReached(srv *rdstest.Server) bool {
	for _, c := range srv.Commands() {
		if strings.Contains(c, "copy-from") {
			return true
		}
	}
	return false
}

func hasCheckDisk(srv *rdstest.Server) bool {
	for _, d := range srv.Disks() {
		if routeros.IsCheckSlot(d.Slot) {
			return true
		}
	}
	return false
}

// TestCheckUnreachable: an RDS that cannot be reached is an error from Run,
// not a report of findings.
func TestCheckUnreachable(t *testing.T) {
	srv, cfg := setup(t, rdstest.Variant{})
	srv.Close()
	cfg.CleanupTimeout = 5 * time.Second
	r, err := Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "sweeping") {
		t.Fatalf("Run = %v, want the sweep's error", err)
	}
	if r == nil || r.CleanupError == "" {
		t.Errorf("report %+v: want the cleanup's error too", r)
	}
}
