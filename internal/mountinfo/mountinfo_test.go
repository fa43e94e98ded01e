package mountinfo

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/sysfs"
)

// TestParse: fields are read from their positions (optional fields before
// the separator are skipped), paths are decoded, and lines that do not parse
// are skipped.
func TestParse(t *testing.T) {
	in := strings.Join([]string{
		`36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue`,
		`40 22 259:3 / /var/lib/kubelet/plugins/a\040b/globalmount rw,relatime shared:9 - ext4 /dev/nvme1n1 rw`,
		`41 22 0:5 /nvme2n1 /var/lib/kubelet/plugins/blk/pvc rw shared:10 - devtmpfs udev rw`,
		`garbage`,
		`42 22 259:9 / /x rw - xfs`,
		`43 22 259:4 / /var/lib/kubelet/plugins/sp\040ace/back\134slash/new\012line/tab\011/globalmount rw,noatime shared:11 - ext4 /dev/nvme3n1 rw`,
		`44 22 0:5 /nvme4n1 /stage/a\040b/dev rw,relatime - devtmpfs udev rw`,
		`45 22 0:40 /we\134ird\040root /odd\\x\08 rw - tmpfs my\040src rw`,
	}, "\n")
	got := Parse([]byte(in))
	want := []Entry{
		{Dev: sysfs.DevNum{Major: 98}, Root: "/mnt1", MountPoint: "/mnt/parent", Options: []string{"rw", "noatime"}, FSType: "ext3", Source: "/dev/root"},
		{Dev: sysfs.DevNum{Major: 259, Minor: 3}, Root: "/", MountPoint: "/var/lib/kubelet/plugins/a b/globalmount", Options: []string{"rw", "relatime"}, FSType: "ext4", Source: "/dev/nvme1n1"},
		{Dev: sysfs.DevNum{Major: 0, Minor: 5}, Root: "/nvme2n1", MountPoint: "/var/lib/kubelet/plugins/blk/pvc", Options: []string{"rw"}, FSType: "devtmpfs", Source: "udev"},
		{Dev: sysfs.DevNum{Major: 259, Minor: 4}, Root: "/", MountPoint: "/var/lib/kubelet/plugins/sp ace/back\\slash/new\nline/tab\t/globalmount", Options: []string{"rw", "noatime"}, FSType: "ext4", Source: "/dev/nvme3n1"},
		{Dev: sysfs.DevNum{Major: 0, Minor: 5}, Root: "/nvme4n1", MountPoint: "/stage/a b/dev", Options: []string{"rw", "relatime"}, FSType: "devtmpfs", Source: "udev"},
		// A backslash that starts no three-digit octal escape is kept.
		{Dev: sysfs.DevNum{Major: 0, Minor: 40}, Root: "/we\\ird root", MountPoint: `/odd\\x\08`, Options: []string{"rw"}, FSType: "tmpfs", Source: "my src"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestDisk(t *testing.T) {
	for _, tc := range []struct {
		name     string
		e        Entry
		wantName string
		wantDev  sysfs.DevNum
	}{
		{"filesystem on a disk", Entry{Dev: sysfs.DevNum{Major: 259, Minor: 3}, Root: "/", FSType: "ext4", Source: "/dev/nvme1n1"},
			"nvme1n1", sysfs.DevNum{Major: 259, Minor: 3}},
		{"bind of a device node", Entry{Dev: sysfs.DevNum{Major: 0, Minor: 5}, Root: "/nvme2n1", FSType: "devtmpfs", Source: "udev"},
			"nvme2n1", sysfs.DevNum{}},
		{"devtmpfs itself", Entry{Dev: sysfs.DevNum{Major: 0, Minor: 5}, Root: "/", FSType: "devtmpfs", Source: "udev"},
			"", sysfs.DevNum{}},
		{"source not under /dev", Entry{Dev: sysfs.DevNum{Major: 0, Minor: 40}, Root: "/", FSType: "tmpfs", Source: "tmpfs"},
			"", sysfs.DevNum{Major: 0, Minor: 40}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, dev := tc.e.Disk()
			if name != tc.wantName || dev != tc.wantDev {
				t.Errorf("Disk() = %q, %v; want %q, %v", name, dev, tc.wantName, tc.wantDev)
			}
		})
	}
}

// escape octal-escapes a path: the kernel escapes space, tab, newline and
// backslash (fs/proc_namespace.c, mangle()); this escapes every byte that is
// not printable ASCII as well, a superset the parser decodes all the same.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '\\' || c >= 0x7f {
			fmt.Fprintf(&b, "\\%03o", c)
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// FuzzParse: the parser never panics, and the paths of an entry it
// accepts, escaped as the kernel escapes them, parse back to the same
// entry.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`40 22 259:3 / /var/lib/kubelet/plugins/a\040b/globalmount rw,relatime shared:9 - ext4 /dev/nvme1n1 rw`))
	f.Add([]byte(`41 22 0:5 /nvme2n1 /x\134y\012z rw shared:10 master:2 - devtmpfs udev rw`))
	f.Add([]byte("garbage\n42 22 259:9 / /x rw - xfs"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, e := range Parse(b) {
			line := fmt.Sprintf("1 2 %d:%d %s %s %s - %s %s rw", e.Dev.Major, e.Dev.Minor,
				escape(e.Root), escape(e.MountPoint), strings.Join(e.Options, ","), e.FSType, escape(e.Source))
			again := Parse([]byte(line))
			if len(again) != 1 {
				t.Fatalf("%q (from %+v) parses to %d entries", line, e, len(again))
			}
			if diff := cmp.Diff(e, again[0]); diff != "" {
				t.Fatalf("round trip of %q (-first +again):\n%s", line, diff)
			}
		}
	})
}
