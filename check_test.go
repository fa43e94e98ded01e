package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/routeros"
	"github.com/srvlab/rds-csi/routeros/rdscheck"
	"github.com/srvlab/rds-csi/routeros/rdstest"
)

// checkArgs starts an emulated RDS and returns it with the check's flags.
func checkArgs(t *testing.T, v rdstest.Variant) (*rdstest.Server, []string) {
	t.Helper()
	srv, err := rdstest.Start(rdstest.Options{Variant: v})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	dir := t.TempDir()
	key, known := filepath.Join(dir, "key"), filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(key, srv.ClientKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(known, srv.KnownHosts(), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, []string{checkCommand, "--rds-address", srv.Addr(), "--rds-user", srv.User(), "--rds-key-file", key,
		"--rds-known-hosts-file", known, "--volume-dir", "/storage-pool/rds-csi"}
}

func noCheckObjects(t *testing.T, srv *rdstest.Server) {
	t.Helper()
	for _, d := range srv.Disks() {
		if routeros.IsCheckSlot(d.Slot) {
			t.Errorf("check disk %s left", d.Slot)
		}
	}
	for p := range srv.Files() {
		if routeros.IsCheckFile("/storage-pool/rds-csi", p) {
			t.Errorf("check file %s left", p)
		}
	}
}

// TestRunCheck: `rds-csi check` against the emulator prints the findings
// and the transcript, writes the JSON transcript, exits 0 when everything
// is handled, and non-zero when the RDS does something the driver does not
// handle (no copy-from); nothing is left either way.
func TestRunCheck(t *testing.T) {
	srv, args := checkArgs(t, rdstest.Variant{})
	out := filepath.Join(t.TempDir(), "transcript.json")
	var stdout, stderr lockedBuffer
	if err := run(context.Background(), append(args, "--transcript", out), &stdout, &stderr); err != nil {
		t.Fatalf("check: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{"[ok] copy syntax", "[info] slot length", "Left behind: nothing", "TRANSCRIPT (", `> /disk add type=file copy-from=[find slot="rds-csi-check-disk-`} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, stdout.String())
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r rdscheck.Report
	if err := json.Unmarshal(b, &r); err != nil || len(r.Steps) == 0 || len(r.Findings) == 0 {
		t.Errorf("transcript file: %v, %d steps, %d findings", err, len(r.Steps), len(r.Findings))
	}
	noCheckObjects(t, srv)

	srv, args = checkArgs(t, rdstest.Variant{NoCopyFrom: true})
	stdout = lockedBuffer{}
	err = run(context.Background(), args, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "1 problem") || !strings.Contains(stdout.String(), "[DIFFERS] copy syntax") {
		t.Errorf("check of an RDS without copy-from: %v\n%s", err, stdout.String())
	}
	noCheckObjects(t, srv)
}

// TestRunCheckSIGINT: a real SIGINT while a command hangs stops the check;
// it still removes the test disk and its file, and fails saying it was
// interrupted.
func TestRunCheckSIGINT(t *testing.T) {
	srv, args := checkArgs(t, rdstest.Variant{})
	srv.Hang("copy-from")
	var stdout, stderr lockedBuffer
	errc := make(chan error, 1)
	go func() { errc <- run(context.Background(), args, &stdout, &stderr) }()
	for hung := false; !hung; {
		select {
		case err := <-errc:
			t.Fatalf("the check ended before the copy: %v\n%s", err, stdout.String())
		case <-time.After(5 * time.Millisecond):
		}
		for _, c := range srv.Commands() {
			hung = hung || strings.Contains(c, "copy-from")
		}
	}
	created := false
	for _, d := range srv.Disks() {
		created = created || routeros.IsCheckSlot(d.Slot)
	}
	if !created {
		t.Fatal("no check disk while the copy hangs: the test proves nothing")
	}
	// the check's handler is installed: it is running (hung in the copy)
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "interrupted") {
			t.Errorf("check after SIGINT: %v, want interrupted", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the check did not stop after SIGINT")
	}
	if !strings.Contains(stdout.String(), "INTERRUPTED") || !strings.Contains(stdout.String(), "Left behind: nothing") {
		t.Errorf("report:\n%s", stdout.String())
	}
	noCheckObjects(t, srv)
}
