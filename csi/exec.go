package csi

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	utilexec "k8s.io/utils/exec"
)

// NewExec returns the runner for the node's tools (blkid, mkfs, fsck,
// resize2fs): k8s.io/utils/exec's behaviour, except that on Linux each
// child gets SIGKILL from the kernel when the driver dies. Without that, a
// driver killed in the middle of a stage leaves its mkfs running, and the
// retried stage of the restarted driver, seeing no file system yet, starts
// a second mkfs on the same disk.
//
// The kernel sends the signal when the thread that started the child ends
// (not the process), so Run, Output and CombinedOutput hold their OS thread
// until the child has exited; a child started with Start has no such
// guarantee if the runtime retires that thread.
func NewExec() utilexec.Interface { return childExec{} }

type childExec struct{}

func (childExec) Command(name string, args ...string) utilexec.Cmd {
	return newChildCmd(exec.Command(name, args...))
}

func (childExec) CommandContext(ctx context.Context, name string, args ...string) utilexec.Cmd {
	return newChildCmd(exec.CommandContext(ctx, name, args...))
}

func (childExec) LookPath(file string) (string, error) {
	p, err := exec.LookPath(file)
	if errors.Is(err, exec.ErrDot) {
		err = nil
	}
	return p, execError(err)
}

func newChildCmd(c *exec.Cmd) *childCmd {
	if errors.Is(c.Err, exec.ErrDot) {
		c.Err = nil
	}
	c.SysProcAttr = dieWithParent()
	return &childCmd{c}
}

// childCmd is a utilexec.Cmd over os/exec.
type childCmd struct{ c *exec.Cmd }

func (c *childCmd) SetDir(dir string)       { c.c.Dir = dir }
func (c *childCmd) SetStdin(in io.Reader)   { c.c.Stdin = in }
func (c *childCmd) SetStdout(out io.Writer) { c.c.Stdout = out }
func (c *childCmd) SetStderr(out io.Writer) { c.c.Stderr = out }
func (c *childCmd) SetEnv(env []string)     { c.c.Env = env }

func (c *childCmd) StdoutPipe() (io.ReadCloser, error) {
	r, err := c.c.StdoutPipe()
	return r, execError(err)
}

func (c *childCmd) StderrPipe() (io.ReadCloser, error) {
	r, err := c.c.StderrPipe()
	return r, execError(err)
}

func (c *childCmd) Start() error { return execError(c.c.Start()) }
func (c *childCmd) Wait() error  { return execError(c.c.Wait()) }

func (c *childCmd) Run() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return execError(c.c.Run())
}

func (c *childCmd) CombinedOutput() ([]byte, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	out, err := c.c.CombinedOutput()
	return out, execError(err)
}

func (c *childCmd) Output() ([]byte, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	out, err := c.c.Output()
	return out, execError(err)
}

// Stop asks the child to end (SIGTERM) and kills it 10 s later if it has
// not.
func (c *childCmd) Stop() {
	p := c.c.Process
	if p == nil {
		return
	}
	_ = p.Signal(syscall.SIGTERM)
	time.AfterFunc(10*time.Second, func() { _ = p.Signal(syscall.SIGKILL) })
}

// execError gives errors the types mount-utils looks for: an exit status
// as utilexec.ExitError (blkid's 2 means "no file system"), a missing
// binary as utilexec.ErrExecutableNotFound.
func execError(err error) error {
	var exitErr *exec.ExitError
	var pathErr *fs.PathError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exitErr):
		return &utilexec.ExitErrorWrapper{ExitError: exitErr}
	case errors.Is(err, exec.ErrNotFound), errors.As(err, &pathErr) && errors.Is(pathErr.Err, fs.ErrNotExist):
		return utilexec.ErrExecutableNotFound
	}
	return err
}
