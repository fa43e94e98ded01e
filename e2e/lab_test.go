package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// requireLab skips unless the lab was asked for (make e2e sets RDS_CSI_E2E=1)
// and fails, rather than skips, when it was asked for but cannot run.
func requireLab(t *testing.T) {
	t.Helper()
	if os.Getenv("RDS_CSI_E2E") != "1" {
		t.Skip("the QEMU lab runs only with RDS_CSI_E2E=1 (make e2e)")
	}
	for _, tool := range []string{"qemu-system-x86_64", "cpio", "depmod", "apt-get", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("lab tool %s missing: %v (apt-get install qemu-system-x86 busybox-static kmod cpio xz-utils)", tool, err)
		}
	}
}

// proofTimeout bounds each proof's guest process. The longest proof took
// 320 s in the 2026-12-02 CI run (TestProofMultipathFailover, before it was
// trimmed); twice that leaves room for a slower machine.
const proofTimeout = "600s"

// labRun is one boot that runs the kerneltest binary.
type labRun struct {
	series    string
	multipath bool
	run       string // -test.run pattern; empty runs all but the proofs
	env       []string
	rdsCSI    string // host path of the rds-csi binary
	proof     bool   // the #7 proofs (TestProof*): a boot of their own
}

func (r labRun) name() string {
	mp := "multipath"
	if !r.multipath {
		mp = "nomultipath"
	}
	if r.proof {
		mp = "proof"
	}
	return r.series + "/" + mp
}

// bootAndReport boots the lab and turns each guest test into a host subtest.
func bootAndReport(ctx context.Context, t *testing.T, r labRun, bin string) {
	t.Helper()
	k, err := PrepareKernel(ctx, r.series)
	if err != nil {
		t.Fatal(err)
	}
	runDir := t.TempDir()
	if err := os.Link(bin, filepath.Join(runDir, "kerneltest.test")); err != nil {
		if err := copyFile(bin, filepath.Join(runDir, "kerneltest.test")); err != nil {
			t.Fatal(err)
		}
	}
	mp := "N"
	if r.multipath {
		mp = "Y"
	}
	var job strings.Builder
	fmt.Fprintf(&job, "cd /out\nexport RDS_CSI_LAB=1 RDS_CSI_LAB_KERNEL=%s RDS_CSI_LAB_MULTIPATH=%s\n", r.series, mp)
	for _, e := range r.env {
		fmt.Fprintf(&job, "export %s\n", e)
	}
	// Ginkgo (csi-sanity) runs one suite per process: each sanity test gets
	// an invocation of its own; everything else runs in the first.
	invocations := []string{"-test.skip '^(TestCSISanity|TestProof)'", "-test.run '^TestCSISanityMount$'", "-test.run '^TestCSISanityBlock$'"}
	if r.run != "" {
		invocations = []string{fmt.Sprintf("-test.run '%s' -test.skip '^TestCSISanity'", r.run)}
	}
	only := os.Getenv("RDS_CSI_LAB_RUN")
	if only != "" {
		// A developer's filter (one csi-sanity test at most per run).
		invocations = []string{fmt.Sprintf("-test.run '%s'", only)}
	}
	// A developer's knob for a measurement's sample count goes through.
	if n := os.Getenv("RDS_CSI_KMSG_OUTAGES"); n != "" {
		if _, err := strconv.Atoi(n); err != nil {
			t.Fatalf("RDS_CSI_KMSG_OUTAGES=%q: not a number", n)
		}
		fmt.Fprintf(&job, "export RDS_CSI_KMSG_OUTAGES=%s\n", n)
	}
	fmt.Fprintf(&job, "export RDS_CSI_BINARY=%s\nrc=0\n: > /out/kerneltest.log\n", r.rdsCSI)
	if r.proof && only == "" {
		// Each proof runs in a process of its own with its own deadline:
		// together they take about 14 minutes under TCG, and one deadline
		// for all of them failed every proof still running when a slower
		// machine went past it.
		fmt.Fprintf(&job, "for p in $(./kerneltest.test -test.list '^TestProof'); do\n"+
			"  ./kerneltest.test -test.v -test.timeout=%s -test.run \"^$p\\$\" >> /out/kerneltest.log 2>&1 || rc=1\n"+
			"done\n", proofTimeout)
		invocations = nil
	}
	for _, inv := range invocations {
		fmt.Fprintf(&job, "./kerneltest.test -test.v -test.timeout=900s %s >> /out/kerneltest.log 2>&1 || rc=1\n", inv)
	}
	job.WriteString("dmesg > /out/dmesg.txt 2>&1\ntail -n 3 /out/kerneltest.log\nexit $rc\n")

	console, err := os.Create(filepath.Join(runDir, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close()
	start := time.Now()
	vm := VM{Kernel: k, Multipath: r.multipath, RunDir: runDir, Job: job.String(), Console: console}
	res, bootErr := vm.Boot(ctx)
	t.Logf("%s (%s): boot and run took %s, job exit %d", k.Version, k.Package, time.Since(start).Round(time.Millisecond), res.JobExit)

	logf, err := os.Open(filepath.Join(runDir, "kerneltest.log"))
	if err != nil {
		t.Fatalf("no guest test log (boot error: %v); console:\n%s", bootErr, tail(filepath.Join(runDir, "console.log"), 60))
	}
	defer logf.Close()
	events, err := ParseVerbose(logf)
	if err != nil {
		t.Fatalf("%v; console:\n%s", err, tail(filepath.Join(runDir, "console.log"), 60))
	}
	for _, ev := range events {
		t.Run(ev.Name, func(t *testing.T) {
			switch ev.Action {
			case "PASS":
				if testing.Verbose() {
					t.Log("\n" + ev.Output)
				}
			case "SKIP":
				t.Skip("\n" + ev.Output)
			default:
				t.Error("guest test failed:\n" + ev.Output)
			}
		})
	}
	checkKernelLog(t, runDir)
	if bootErr != nil {
		t.Fatalf("boot: %v; console:\n%s", bootErr, tail(filepath.Join(runDir, "console.log"), 60))
	}
	if res.JobExit != 0 && !t.Failed() {
		t.Fatalf("guest test binary exited %d though no test failed; console:\n%s", res.JobExit, tail(filepath.Join(runDir, "console.log"), 60))
	}
	reportResults(t, r, filepath.Join(runDir, "results"))
	if dst := os.Getenv("RDS_CSI_CAPTURE_DIR"); dst != "" {
		for src, to := range map[string]string{
			filepath.Join(runDir, "fixtures"):          dst,                                                    // sysfs trees
			filepath.Join(runDir, "kmsg"):              filepath.Join(ModuleRoot(), "internal/kmsg/testdata"),  // kernel log records
			filepath.Join(runDir, "fixtures-halfborn"): filepath.Join(ModuleRoot(), "testdata/sysfs-halfborn"), // a controller before its first connect
		} {
			if _, err := os.Stat(src); err == nil {
				out, err := exec.Command("cp", "-a", src+"/.", to).CombinedOutput()
				if err != nil {
					t.Fatalf("copy captures: %v: %s", err, out)
				}
			}
		}
	}
}

// checkKernelLog fails the boot when the guest kernel reported an oops, a
// BUG or a general protection fault (in its dmesg, written by the job, or on
// the console, which has it when the job never finished), quoting the
// report; logs its soft lockups and hung tasks; and logs the end of the
// guest's dmesg when the boot failed.
func checkKernelLog(t *testing.T, runDir string) {
	t.Helper()
	var logs []string
	for _, f := range []string{"dmesg.txt", "console.log"} {
		if b, err := os.ReadFile(filepath.Join(runDir, f)); err == nil {
			logs = append(logs, string(b))
		}
	}
	for _, log := range logs {
		if reports := KernelTrouble(log, false); len(reports) > 0 {
			t.Errorf("the guest kernel reported trouble:\n%s", strings.Join(reports, "\n\n"))
			break
		}
	}
	for _, log := range logs {
		if reports := KernelTrouble(log, true); len(reports) > 0 {
			t.Logf("the guest kernel reported slowness (not a failure under TCG):\n%s", strings.Join(reports, "\n\n"))
			break
		}
	}
	if t.Failed() {
		t.Logf("guest dmesg, last 80 lines:\n%s", tail(filepath.Join(runDir, "dmesg.txt"), 80))
	}
}

// reportResults logs the measurement tables the guest's proofs wrote (one
// Markdown file per test in /out/results) and, with RDS_CSI_RESULTS_DIR
// set, copies them to <dir>/<series>/ for RELIABILITY.md and BENCHMARKS.md.
func reportResults(t *testing.T, r labRun, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.md"))
	dst := os.Getenv("RDS_CSI_RESULTS_DIR")
	if dst != "" && len(files) > 0 {
		dst = filepath.Join(dst, r.series)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("results %s (%s):\n%s", filepath.Base(f), r.name(), b)
		if dst != "" {
			if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// prepareNvmeCLI unpacks Debian's nvme-cli into the lab cache (for the
// scan comparison proof) and returns the directory, a host path the guest
// sees through its chroot.
func prepareNvmeCLI(ctx context.Context) (string, error) {
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(labDir(), "nvme-cli.sh"))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("nvme-cli for the lab: %w: %s", err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestLab runs the real-kernel tests of e2e/kerneltest on every kernel series,
// with native multipath on (the full suite) and off (the layout tests).
func TestLab(t *testing.T) {
	requireLab(t)
	// Below make e2e's go test -timeout (60m), so that a boot that runs out
	// of time still reports its guest tests. The lab took 30 min in the
	// last clean-clone CI run.
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, rdsCSI := filepath.Join(dir, "kerneltest.test"), filepath.Join(dir, "rds-csi")
	if err := BuildTestBinary(ctx, "./e2e/kerneltest", bin); err != nil {
		t.Fatal(err)
	}
	if err := BuildBinary(ctx, ".", rdsCSI); err != nil {
		t.Fatal(err)
	}
	capture := os.Getenv("RDS_CSI_CAPTURE_DIR") != ""
	var runs []labRun
	for _, s := range Series {
		runs = append(runs,
			labRun{series: s, multipath: true},
			labRun{series: s, multipath: false, run: "^(TestLayout|TestMultipathOff)"},
			labRun{series: s, multipath: true, proof: true},
		)
	}
	nvmeCLI := ""
	for _, r := range runs {
		r.rdsCSI = rdsCSI
		if r.proof && !capture && nvmeCLI == "" {
			dir, err := prepareNvmeCLI(ctx)
			if err != nil {
				t.Fatal(err)
			}
			nvmeCLI = dir
		}
		if r.proof {
			r.env = append(r.env, "RDS_CSI_NVME_CLI="+nvmeCLI)
			if seed := os.Getenv("RDS_CSI_CRASH_SEED"); seed != "" { // replay a crash-consistency run
				r.env = append(r.env, "RDS_CSI_CRASH_SEED="+seed)
			}
		}
		if capture {
			if r.proof {
				continue
			}
			r.run = "^(TestLayout|TestKmsgCapture)"
			r.env = append(r.env, "RDS_CSI_CAPTURE=1")
		}
		t.Run(r.name(), func(t *testing.T) { bootAndReport(ctx, t, r, bin) })
	}
}
