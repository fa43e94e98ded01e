package routeros

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/routeros/rdstest"
)

func TestPublishedComment(t *testing.T) {
	c, err := PublishedComment([]string{"node-a", "Node_B.x"})
	if err != nil || c != "rds-csi:published:node-a/Node_B.x" {
		t.Fatalf("PublishedComment = %q, %v", c, err)
	}
	if n, err := ParsePublished(c); err != nil || len(n) != 2 || n[1] != "Node_B.x" {
		t.Errorf("ParsePublished(%q) = %v, %v", c, n, err)
	}
	if n, err := ParsePublished(""); err != nil || n != nil {
		t.Errorf("empty comment: %v, %v", n, err)
	}
	for _, bad := range [][]string{{"a", "a"}, {"a", "b", "c"}, {"a b"}, {`a"`}, {"a]"}, {"a$x"}, {"a;b"}, {"-a"}, {""}, {strings.Repeat("a", 254)}} {
		if c, err := PublishedComment(bad); err == nil {
			t.Errorf("PublishedComment(%q) = %q, want refused", bad, c)
		}
	}
	if _, err := ParsePublished("hand made"); !errors.Is(err, ErrNotOwned) {
		t.Errorf("foreign comment: %v, want ErrNotOwned", err)
	}
	for _, bad := range []string{PublishedPrefix, PublishedPrefix + "a//b", PublishedPrefix + "a/a", PublishedPrefix + "a b"} {
		if _, err := ParsePublished(bad); !errors.Is(err, ErrUnexpectedOutput) {
			t.Errorf("ParsePublished(%q): %v, want ErrUnexpectedOutput", bad, err)
		}
	}
	slot, _ := SlotFor("pvc")
	cmd, err := SetCommentCommand(slot, PublishedPrefix+"node-a")
	if err != nil || cmd.String() != `/disk set [find slot="`+slot+`"] comment="rds-csi:published:node-a"` || cmd.Verb() != "disk-set" {
		t.Errorf("SetCommentCommand = %q, %v", cmd, err)
	}
	if _, err := SetCommentCommand(slot, `x" comment="y`); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("injected comment: %v", err)
	}
}

// TestSetPublished: the record round-trips through the emulator in every
// output layout; clearing it leaves no comment; a comment that is not a
// record is never overwritten; a snapshot's disk takes no record.
func TestSetPublished(t *testing.T) {
	for _, f := range []rdstest.Format{{}, {Width: 37, MidToken: true, LF: true}} {
		srv, _, c := emulator(t, rdstest.Options{Format: f}, nil)
		ctx := context.Background()
		s := spec(t, "pvc-pub", 1<<20)
		if _, err := c.CreateDisk(ctx, s); err != nil {
			t.Fatal(err)
		}
		d, err := c.SetPublished(ctx, s.Slot, []string{"node-a", "node-b"})
		if err != nil || d.Comment != PublishedPrefix+"node-a/node-b" {
			t.Fatalf("SetPublished = %+v, %v", d, err)
		}
		if d, err := c.Disk(ctx, s.Slot); err != nil || d.Comment != PublishedPrefix+"node-a/node-b" || d.NVMeNQN != s.NQN {
			t.Errorf("Disk after SetPublished = %+v, %v", d, err)
		}
		n := len(srv.Commands())
		if _, err := c.SetPublished(ctx, s.Slot, []string{"node-a", "node-b"}); err != nil {
			t.Fatal(err)
		}
		if got := srv.Commands()[n:]; len(got) != 1 {
			t.Errorf("an unchanged record ran %q, want one print", got)
		}
		if d, err := c.SetPublished(ctx, s.Slot, nil); err != nil || d.Comment != "" {
			t.Errorf("clear = %+v, %v", d, err)
		}
		if _, _, st := srv.Exec(`/disk set [find slot="` + s.Slot + `"] comment="kept"`); st != 0 {
			t.Fatal("exec")
		}
		if _, err := c.SetPublished(ctx, s.Slot, []string{"node-a"}); !errors.Is(err, ErrNotOwned) {
			t.Errorf("over a foreign comment: %v, want ErrNotOwned", err)
		}
		if srv.Disks()[0].Comment != "kept" {
			t.Error("foreign comment overwritten")
		}
		snap, _ := SnapshotSlotFor("snap")
		if _, err := c.SetPublished(ctx, snap, []string{"node-a"}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("record on a snapshot slot: %v", err)
		}
	}
}

func TestSetAllowedHost(t *testing.T) {
	slot, _ := SlotFor("pvc")
	if cmd, err := SetAllowedHostCommand(slot, FencedHostNQN); err != nil || cmd.String() != `/disk set [find slot="`+slot+`"] nvme-tcp-server-allow-host-name="`+FencedHostNQN+`"` {
		t.Errorf("SetAllowedHostCommand = %q, %v", cmd, err)
	}
	for _, bad := range []string{"", "nqn.a,nqn.b", `nqn.x" comment="y`, "nqn.X", "nqn.a b", "nqn.$x"} {
		if _, err := SetAllowedHostCommand(slot, bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("SetAllowedHostCommand(%q): %v", bad, err)
		}
	}
	_, _, c := emulator(t, rdstest.Options{}, nil)
	ctx := context.Background()
	s := spec(t, "pvc-fence", 1<<20)
	if _, err := c.CreateDisk(ctx, s); err != nil {
		t.Fatal(err)
	}
	if d, err := c.SetAllowedHost(ctx, s.Slot, "nqn.2014-08.org.nvmexpress:uuid:a"); err != nil || d.AllowHostName != "nqn.2014-08.org.nvmexpress:uuid:a" {
		t.Errorf("SetAllowedHost = %+v, %v", d, err)
	}
	if _, err := c.SetAllowedHost(ctx, "db1", FencedHostNQN); !errors.Is(err, ErrNotOwned) {
		t.Errorf("on a disk not ours: %v", err)
	}
}
