package csi

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/srvlab/rds-csi/daemon"
)

// A repeat stage of a staged volume whose staging mount cannot be checked
// (a stale mount: ENOTCONN) fails, and its rollback must leave the volume
// as the earlier stage left it: staged in the daemon, its health known,
// its controller connected.
func TestRepeatStageFailureKeepsStagedVolume(t *testing.T) {
	r := newRealEnv(t)
	ctx := context.Background()
	staging := filepath.Join(r.staging, "pv", "vol-1", "globalmount")
	_, err := r.node.NodeStageVolume(ctx, stageReq(staging, "vol-1", mountCap(), validContext()))
	mustOK(t, err)
	v, ok := r.d.Volume("vol-1")
	if !ok || v.State != daemon.VolumeStaged {
		t.Fatalf("after the first stage: %+v, want staged", v)
	}
	r.writeMountInfo(t, r.mountLine(t, 30, v.Device, staging))

	r.mounter.MountCheckErrors = map[string]error{staging: syscall.ENOTCONN}
	_, err = r.node.NodeStageVolume(ctx, stageReq(staging, "vol-1", mountCap(), validContext()))
	wantCode(t, err, codes.Internal)

	if got, ok := r.d.Volume("vol-1"); !ok || got.State != daemon.VolumeStaged || got.StagingPath != staging {
		t.Errorf("after the failed repeat stage: %+v (known %v), want staged at %s", got, ok, staging)
	}
	if _, err := r.node.vols.VolumeHealth("vol-1"); err != nil {
		t.Errorf("volume health after the failed repeat stage: %v, want an answer", err)
	}
	if got := r.conn.connected(t); !slices.Contains(got, v.Controllers[0]) {
		t.Errorf("controllers %v, want %s still connected", got, v.Controllers[0])
	}
}

// A volume staged at a path the kernel's mount table escapes (space,
// backslash, newline) is found there again: a repeat stage succeeds and
// leaves it staged with its controller connected. (It answered
// AlreadyExists: csi read the table through mount-utils, which leaves the
// escapes in.)
func TestRepeatStageAtEscapedPath(t *testing.T) {
	for _, c := range []struct {
		name string
		cap  *csi.VolumeCapability
	}{{"filesystem", mountCap()}, {"block", blockCap()}} {
		block := c.name == "block"
		t.Run(c.name, func(t *testing.T) {
			r := newRealEnv(t)
			ctx := context.Background()
			staging := filepath.Join(r.staging, "pv", "sp ace", `back\slash`, "new\nline", "globalmount")
			_, err := r.node.NodeStageVolume(ctx, stageReq(staging, "vol-1", c.cap, validContext()))
			mustOK(t, err)
			v, ok := r.d.Volume("vol-1")
			if !ok || v.State != daemon.VolumeStaged {
				t.Fatalf("after the first stage: %+v, want staged", v)
			}
			line := r.mountLine(t, 30, v.Device, escapeMountPath(staging))
			if block { // the device node bound from devtmpfs
				line = fmt.Sprintf("30 23 0:5 /%s %s rw,relatime shared:2 - devtmpfs udev rw",
					filepath.Base(v.Device), escapeMountPath(filepath.Join(staging, BlockDeviceFile)))
			}
			r.writeMountInfo(t, line)

			_, err = r.node.NodeStageVolume(ctx, stageReq(staging, "vol-1", c.cap, validContext()))
			mustOK(t, err)
			if got, ok := r.d.Volume("vol-1"); !ok || got.State != daemon.VolumeStaged || got.StagingPath != staging || got.Block != block {
				t.Errorf("after the repeat stage: %+v (known %v), want staged at %q", got, ok, staging)
			}
			if got := r.conn.connected(t); !slices.Contains(got, v.Controllers[0]) {
				t.Errorf("controllers %v, want %s still connected", got, v.Controllers[0])
			}
		})
	}
}
