package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// drainCommand is the subcommand that asks the running plugin to lower
// ctrl_loss_tmo on controllers whose target has been unreachable long
// enough (what SIGUSR1 does; see serve). The image has no kill binary, so
// the README's recipe runs this instead:
//
//	kubectl exec <pod> -c rds-csi -- rds-csi drain-dead-targets
const drainCommand = "drain-dead-targets"

// runDrain is the drain-dead-targets subcommand: it finds the plugin in this
// PID namespace (findPlugin) and sends it SIGUSR1.
func runDrain(args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("rds-csi "+drainCommand, flag.ContinueOnError)
	fset.SetOutput(stderr)
	procRoot := fset.String("proc-root", "/proc", "procfs of the plugin's PID namespace (the container's own /proc, not the host's)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments: %v", drainCommand, fset.Args())
	}
	pid, err := findPlugin(*procRoot)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return fmt.Errorf("%s: signal the plugin (pid %d): %w", drainCommand, pid, err)
	}
	fmt.Fprintf(stdout, "sent SIGUSR1 to the rds-csi plugin (pid %d); its log names the controllers whose ctrl_loss_tmo it lowered\n", pid)
	return nil
}

// findPlugin returns the pid of the one rds-csi plugin process under
// procRoot: a process other than this one whose executable is the same file
// as this process's (/proc/<pid>/exe, compared by device and inode, so a
// process that merely shares the name does not count) and that is not
// itself running a subcommand. In the plugin's container (no hostPID) that
// is PID 1; found this way, the call also works with a shared PID namespace
// and never signals an unrelated PID 1 (the host's init under hostPID).
// None, or more than one, is an error naming what was found.
func findPlugin(procRoot string) (int, error) {
	selfLink, err := os.Readlink(filepath.Join(procRoot, "self"))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", drainCommand, err)
	}
	selfPID, err := strconv.Atoi(selfLink)
	if err != nil {
		return 0, fmt.Errorf("%s: %s/self is %q, not a pid", drainCommand, procRoot, selfLink)
	}
	self, err := os.Stat(filepath.Join(procRoot, "self", "exe"))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", drainCommand, err)
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", drainCommand, err)
	}
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 || pid == selfPID {
			continue // not a process, or this one
		}
		dir := filepath.Join(procRoot, e.Name())
		fi, err := os.Stat(filepath.Join(dir, "exe"))
		if err != nil || !os.SameFile(fi, self) {
			continue // gone, a kernel thread, not ours to read, or another program
		}
		cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil {
			continue // gone meanwhile
		}
		if args := strings.Split(string(cmdline), "\x00"); len(args) > 1 && (args[1] == drainCommand || args[1] == checkCommand) {
			continue // another admin call, not the plugin
		}
		found = append(found, pid)
	}
	slices.Sort(found)
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("%s: no running rds-csi plugin in this PID namespace (%s); run it in the plugin's container: kubectl exec <pod> -c rds-csi -- rds-csi %s", drainCommand, procRoot, drainCommand)
	case 1:
		return found[0], nil
	}
	return 0, errors.New(drainCommand + ": more than one rds-csi process, refusing to guess: pids " + strings.Trim(fmt.Sprint(found), "[]"))
}
