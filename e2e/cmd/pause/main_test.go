package main

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A SIGCHLD reaps an exited child; SIGTERM and SIGINT end the wait.
func TestWait(t *testing.T) {
	for _, stop := range []os.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(stop.String(), func(t *testing.T) {
			sh, err := exec.LookPath("true")
			if err != nil {
				t.Skip(err)
			}
			// ForkExec, not exec.Cmd: nothing else may wait for this child.
			pid, err := syscall.ForkExec(sh, []string{"true"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			waitZombie(t, pid)

			sigs := make(chan os.Signal, 2)
			sigs <- syscall.SIGCHLD
			sigs <- stop
			if got := wait(sigs); got != stop {
				t.Errorf("wait returned %v, want %v", got, stop)
			}
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); !errors.Is(err, syscall.ECHILD) {
				t.Errorf("after SIGCHLD, wait4(%d): %v, want ECHILD (reaped)", pid, err)
			}
		})
	}
}

// waitZombie waits until pid has exited and is a zombie.
func waitZombie(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		// pid (comm) STATE ...
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("child %d did not exit", pid)
}
