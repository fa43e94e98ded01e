package e2e

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// hostLog is the shape of `go test -v ./e2e/` output (indentation as the
// testing package prints a multi-line t.Error of a nested subtest).
const hostLog = `=== RUN   TestLab
=== RUN   TestLab/6.12/multipath
    lab_test.go:98: 6.12.117+deb12-amd64 (pkg): boot and run took 5m0s, job exit 1
=== RUN   TestLab/6.12/multipath/TestA
    lab_test.go:114: 
        --- PASS: TestA (0.10s)
        
=== RUN   TestLab/6.12/multipath/TestB
    lab_test.go:119: guest test failed:
            b_test.go:61: time=2026-12-02T02:00:00Z level=INFO msg="daemon ready"
            b_test.go:198: orphan removed: not within 13s (last seen: still there)
        --- FAIL: TestB (13.10s)
        
=== RUN   TestLab/6.12/multipath/TestC
    lab_test.go:119: guest test failed:
        panic: x
        
=== NAME  TestLab/6.12/multipath
    lab_test.go:128: boot: qemu exited 1; console:
        [    1.0] Kernel panic
--- FAIL: TestLab (300.00s)
    --- FAIL: TestLab/6.12/multipath (300.00s)
        --- PASS: TestLab/6.12/multipath/TestA (0.00s)
        --- FAIL: TestLab/6.12/multipath/TestB (0.00s)
FAIL
`

func TestParseLabFailures(t *testing.T) {
	got, err := ParseLabFailures(strings.NewReader(hostLog))
	if err != nil {
		t.Fatal(err)
	}
	want := []LabFailure{
		{Test: "TestLab/6.12/multipath/TestB", First: "guest test failed:", Lines: []string{
			`    b_test.go:61: time=2026-12-02T02:00:00Z level=INFO msg="daemon ready"`,
			"    b_test.go:198: orphan removed: not within 13s (last seen: still there)",
			"--- FAIL: TestB (13.10s)",
			"",
		}},
		{Test: "TestLab/6.12/multipath/TestC", First: "guest test failed:", Lines: []string{"panic: x", ""}},
		{Test: "TestLab/6.12/multipath", First: "boot: qemu exited 1; console:", Lines: []string{"[    1.0] Kernel panic"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestWriteLabFailures(t *testing.T) {
	fails, err := ParseLabFailures(strings.NewReader(hostLog))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteLabFailures(&b, fails, 1, 2, 3, 5); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		// The first failure, cut to its last 2 lines (the trailing blank one dropped).
		"-------- TestLab/6.12/multipath/TestB: guest test failed:\n[... 1 earlier lines cut ...]\n    b_test.go:198: orphan removed: not within 13s (last seen: still there)\n--- FAIL: TestB (13.10s)\n",
		"[... 2 more failure(s), listed below ...]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Last: every failure with the test's own lines, no daemon log record.
	wantEnd := "TestLab/6.12/multipath/TestB: guest test failed:\n" +
		"    b_test.go:198: orphan removed: not within 13s (last seen: still there)\n" +
		"TestLab/6.12/multipath/TestC: guest test failed:\n" +
		"TestLab/6.12/multipath: boot: qemu exited 1; console:\n"
	if !strings.HasSuffix(out, wantEnd) {
		t.Errorf("output does not end with\n%s\ngot:\n%s", wantEnd, out)
	}
	if strings.Contains(out, "Kernel panic") {
		t.Errorf("a failure past the first (full=1) was printed in full:\n%s", out)
	}
}

func TestWriteLabFailuresListBound(t *testing.T) {
	fails := []LabFailure{
		{Test: "T/a", First: "guest test failed:", Lines: []string{"    a_test.go:1: first"}},
		{Test: "T/b", First: "guest test failed:", Lines: []string{"    b_test.go:1: second"}},
		{Test: "T/c", First: "guest test failed:", Lines: []string{"    c_test.go:1: third"}},
	}
	var b strings.Builder
	if err := WriteLabFailures(&b, fails, 0, 10, 2, 1); err != nil {
		t.Fatal(err)
	}
	wantEnd := "T/a: guest test failed:\n    a_test.go:1: first\n" +
		"T/b: guest test failed:\n    b_test.go:1: second\n" +
		"[... 1 more failure(s): see the full log ...]\n"
	if out := b.String(); !strings.HasSuffix(out, wantEnd) || strings.Contains(out, "third") {
		t.Errorf("output does not end with\n%s\n(without the third failure); got:\n%s", wantEnd, out)
	}
}
