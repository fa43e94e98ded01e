package csi

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func TestPhaseOf(t *testing.T) {
	for cmd, want := range map[string]string{
		"blkid": "probe", "/usr/sbin/blkid": "probe",
		"mkfs.ext4": "format", "mkfs.xfs": "format",
		"fsck": "check", "fsck.ext4": "check", "e2fsck": "check", "xfs_repair": "check",
		"resize2fs": "exec", "mount": "exec",
	} {
		if got := phaseOf(cmd); got != want {
			t.Errorf("phaseOf(%q) = %q, want %q", cmd, got, want)
		}
	}
}

// TestStageLogsTiming: the "volume staged" line splits the stage's time;
// the tools and the mount run through the timers (their phases are not
// zero exactly when they ran), and the attach's numbers come from the daemon.
func TestStageLogsTiming(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cap       *csi.VolumeCapability
		formatted bool // probe and format ran
	}{
		{name: "mount", cap: mountCap(), formatted: true},
		{name: "block", cap: blockCap()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			var buf bytes.Buffer
			e.node.log = slog.New(slog.NewJSONHandler(&buf, nil))
			if _, err := e.node.NodeStageVolume(context.Background(), stageReq(t.TempDir(), "vol-1", tc.cap, validContext())); err != nil {
				t.Fatal(err)
			}
			var timing map[string]float64
			for _, line := range bytes.Split(buf.Bytes(), []byte("\n")) {
				var rec struct {
					Msg    string             `json:"msg"`
					Timing map[string]float64 `json:"timing"`
				}
				if json.Unmarshal(line, &rec) == nil && rec.Msg == "volume staged" {
					timing = rec.Timing
				}
			}
			keys := make([]string, 0, len(timing))
			for k := range timing {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			want := []string{"backoff", "check", "connect_attempts", "connect_write", "device", "exec", "format", "mount", "overhead", "overhead_record", "overhead_state_file", "overhead_sysfs", "probe", "total"}
			if !slices.Equal(keys, want) {
				t.Fatalf("timing keys %v, want %v (log: %s)", keys, want, buf.String())
			}
			if timing["connect_attempts"] != 1 {
				t.Errorf("connect_attempts %v, want the daemon's 1", timing["connect_attempts"])
			}
			if (timing["probe"] > 0) != tc.formatted || (timing["format"] > 0) != tc.formatted {
				t.Errorf("probe %v format %v: want both non-zero exactly when the volume was formatted (%v)", timing["probe"], timing["format"], tc.formatted)
			}
			if timing["overhead_record"] <= 0 || timing["overhead_record"] > timing["overhead"] {
				t.Errorf("overhead_record %v: want the MarkStaged call, a part of the overhead %v", timing["overhead_record"], timing["overhead"])
			}
			if timing["mount"] <= 0 {
				t.Errorf("mount %v: the mount did not go through the timer", timing["mount"])
			}
			sum := timing["overhead"]
			for _, k := range []string{"connect_write", "backoff", "device", "probe", "format", "check", "mount", "exec"} {
				sum += timing[k]
			}
			if sum != timing["total"] {
				t.Errorf("phases and overhead add up to %v, total %v", sum, timing["total"])
			}
		})
	}
}
