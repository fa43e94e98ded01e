package csi

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	utilexec "k8s.io/utils/exec"
)

func TestExecErrors(t *testing.T) {
	e := NewExec()
	out, err := e.Command("sh", "-c", "echo out; exit 2").CombinedOutput()
	var ee utilexec.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 2 || string(out) != "out\n" {
		t.Errorf("exit 2: %q, %v; want the output and a utilexec.ExitError with status 2 (blkid's \"no file system\")", out, err)
	}
	if _, err := e.Command("rds-csi-no-such-tool").Output(); !errors.Is(err, utilexec.ErrExecutableNotFound) {
		t.Errorf("missing binary: %v, want ErrExecutableNotFound", err)
	}
	if _, err := e.LookPath("rds-csi-no-such-tool"); !errors.Is(err, utilexec.ErrExecutableNotFound) {
		t.Errorf("LookPath of a missing binary: %v, want ErrExecutableNotFound", err)
	}
	if out, err := e.Command("echo", "hi").Output(); err != nil || string(out) != "hi\n" {
		t.Errorf("echo: %q, %v", out, err)
	}
}

// TestExecChildDiesWithDriver: a driver killed with SIGKILL while its tool
// runs (here sleep, standing for mkfs) takes the tool with it. The driver
// is this test binary re-executed as a helper.
func TestExecChildDiesWithDriver(t *testing.T) {
	if os.Getenv("RDS_CSI_EXEC_HELPER") == "1" {
		cmd := NewExec().Command("sh", "-c", "echo $$; exec sleep 60")
		cmd.SetStdout(os.Stdout)
		_ = cmd.Run() // blocks until killed
		return
	}
	helper := exec.Command(os.Args[0], "-test.run", "^TestExecChildDiesWithDriver$")
	helper.Env = append(os.Environ(), "RDS_CSI_EXEC_HELPER=1")
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper printed %q", line)
	}
	if !alive(child) {
		t.Fatalf("the tool (pid %d) is not running before the kill", child)
	}
	_ = helper.Process.Kill()
	_ = helper.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(child) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(child, syscall.SIGKILL)
			t.Fatalf("the tool (pid %d) outlived the killed driver", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie waiting for its reaper does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}
