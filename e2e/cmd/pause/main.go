// Command pause is the Kubernetes lab's pod sandbox image (containerd's
// sandbox_image): PID 1 of every pod's sandbox. It holds the pod's namespaces
// by doing nothing until SIGTERM or SIGINT, and reaps the zombies that a
// shared PID namespace hands it. Built static (CGO_ENABLED=0).
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not PID 1")
	}
	sig := wait(sigs)
	fmt.Fprintf(os.Stderr, "pause: %v, exiting\n", sig)
}

// wait reaps exited children on each SIGCHLD and returns the first other
// signal (SIGTERM or SIGINT).
func wait(sigs <-chan os.Signal) os.Signal {
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			return sig
		}
		reap()
	}
	return nil
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
	}
}
