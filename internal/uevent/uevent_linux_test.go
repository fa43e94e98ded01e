//go:build linux

package uevent

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  string
		want Event
		ok   bool
	}{
		{name: "controller connected", ok: true,
			msg: "change@/devices/virtual/nvme-fabrics/ctl/nvme0\x00ACTION=change\x00DEVPATH=/devices/virtual/nvme-fabrics/ctl/nvme0\x00SUBSYSTEM=nvme\x00NVME_EVENT=connected\x00DEVNAME=nvme0\x00SEQNUM=2190\x00",
			want: Event{Action: "change", DevPath: "/devices/virtual/nvme-fabrics/ctl/nvme0", Subsystem: "nvme", DevName: "nvme0",
				Env: map[string]string{"ACTION": "change", "DEVPATH": "/devices/virtual/nvme-fabrics/ctl/nvme0", "SUBSYSTEM": "nvme",
					"NVME_EVENT": "connected", "DEVNAME": "nvme0", "SEQNUM": "2190"}}},
		{name: "value with =", ok: true,
			msg: "add@/devices/x\x00SUBSYSTEM=block\x00DEVNAME=nvme1n1\x00WEIRD=a=b\x00",
			want: Event{Action: "add", DevPath: "/devices/x", Subsystem: "block", DevName: "nvme1n1",
				Env: map[string]string{"SUBSYSTEM": "block", "DEVNAME": "nvme1n1", "WEIRD": "a=b"}}},
		{name: "no header", msg: "garbage\x00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Parse([]byte(tc.msg))
			if ok != tc.ok {
				t.Fatalf("ok = %v", ok)
			}
			if diff := cmp.Diff(tc.want, got); ok && diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestIntegrationUEventSocket opens the real kernel uevent socket and checks
// that Close wakes a blocked Read. Kernel uevent sockets need no privilege
// on most systems; where they are refused the test skips.
func TestIntegrationUEventSocket(t *testing.T) {
	src, err := Open()
	if err != nil {
		if strings.Contains(err.Error(), "permission") || strings.Contains(err.Error(), "protocol") ||
			strings.Contains(err.Error(), "not supported") {
			t.Skipf("uevent socket unavailable here: %v", err)
		}
		t.Skipf("uevent socket: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		for {
			_, err := src.Read()
			if err != nil {
				done <- err
				return
			}
		}
	}()
	src.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v, want ErrClosed", err)
	}
}
