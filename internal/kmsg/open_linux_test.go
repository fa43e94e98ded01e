//go:build linux

package kmsg

import (
	"errors"
	"io/fs"
	"os"
	"testing"
	"time"
)

// TestIntegrationKmsg opens the real kernel log: the first read returns no
// record older than the open (history is not replayed), a record read
// parses, and Close wakes a blocked Read. It skips without the device or
// without CAP_SYSLOG.
func TestIntegrationKmsg(t *testing.T) {
	// Everything logged so far, through a reader from the start.
	all, err := os.Open(DefaultPath)
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) {
		t.Skipf("kernel log unavailable here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	var last uint64
	buf := make([]byte, BufSize)
	for {
		if err := all.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			t.Skipf("the kernel log is not pollable here: %v", err)
		}
		n, err := all.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			continue // EPIPE while the buffer wraps: read on
		}
		r, err := Parse(buf[:n])
		if err != nil {
			t.Errorf("a record of this kernel does not parse: %v\n%q", err, buf[:n])
			continue
		}
		last = r.Seq
	}

	src, err := Open(DefaultPath)
	if err != nil {
		t.Fatal(err)
	}
	f := src.(*os.File)
	if err := f.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := src.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		r, err := Parse(buf[:n])
		if err != nil {
			t.Fatalf("a record of this kernel does not parse: %v\n%q", err, buf[:n])
		}
		if r.Seq <= last {
			t.Fatalf("read record %d after the open, but %d was logged before it: history replayed", r.Seq, last)
		}
	}

	if err := f.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := src.Read(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	src.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake a blocked Read")
	}
}
