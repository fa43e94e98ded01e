package routeros

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The samples below are ours, written after ROUTEROS.md's description of
// real RouterOS output (legend line, index, wrapping, grouped digits, CRLF);
// none was captured from hardware.

const legend = "Flags: B - BLOCK-DEVICE; M - MOUNTED; F - FORMATTING; N - NVME-TCP-EXPORTED\r\n"

// wrapped at spaces, CRLF, grouped digits, lossy file-size.
const sampleDisk = legend +
	" 0 BN type=file slot=rds-csi-0123456789abcdef01234567 slot-default=\"\" parent=\"\"\r\n" +
	"      fs=\"\" model=\"\" size=53 687 091 200 mount-filesystem=no mount-read-only=no\r\n" +
	"      compress=no sector-size=512 raid-master=none nvme-tcp-export=yes\r\n" +
	"      nvme-tcp-server-port=4420\r\n" +
	"      nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:rds-csi-0123456789abcdef01234567\r\n" +
	"      nvme-tcp-server-allow-host-name=\"\" iscsi-export=no nfs-sharing=no smb-sharing=no\r\n" +
	"      media-sharing=no media-interface=none swap=no\r\n" +
	"      file-path=/storage-pool/rds-csi/rds-csi-0123456789abcdef01234567.img\r\n" +
	"      file-size=50.0GiB file-offset=0\r\n"

// the same disk wrapped mid-token: inside a key (nvme-tcp-se|rver-port),
// inside grouped digits with a group starting a line (53 687| 091 200),
// inside a path and an NQN, inside an empty quoted value.
const sampleDiskMidToken = legend +
	" 0 BN type=file slot=rds-csi-0123456789abcdef0123\n" +
	"      4567 slot-default=\"\" parent=\"\" fs=\"\" model=\"\" size=53 687\n" +
	"      091 200 mount-filesystem=no mount-read-only=no compress=no sector-siz\n" +
	"      e=512 raid-master=none nvme-tcp-export=yes nvme-tcp-se\n" +
	"      rver-port=4420 nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:rds-csi\n" +
	"      -0123456789abcdef01234567 nvme-tcp-server-allow-host-name=\"\n" +
	"      \" swap=no file-path=/storage-pool/rds-csi/rds-csi-0123456789abc\n" +
	"      def01234567.img file-size=50.0G\n" +
	"      iB file-offset=0\n"

var wantDisk = Disk{
	Slot: "rds-csi-0123456789abcdef01234567", Type: "file",
	FilePath: "/storage-pool/rds-csi/rds-csi-0123456789abcdef01234567.img",
	Size:     53687091200, Free: -1, NVMeExport: true, NVMePort: 4420,
	NVMeNQN: "nqn.2000-02.com.mikrotik:rds-csi-0123456789abcdef01234567", Flags: "BN",
}

const samplePool = legend +
	" 0 BM type=hw slot=nvme1 slot-default=nvme1 parent=\"\" fs=btrfs model=\"Samsung SSD 990 PRO 4TB\"\r\n" +
	"      size=4 000 787 030 016 free=3 221 225 472 000 mount-point=storage-pool\r\n" +
	"      mount-filesystem=yes\r\n" +
	"\r\n" +
	" 1 BN type=file slot=rds-csi-0123456789abcdef01234567 file-size=1.0GiB\r\n" +
	"      file-path=/storage-pool/rds-csi/rds-csi-0123456789abcdef01234567.img\r\n"

func TestParseDisks(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []Disk
	}{
		{"legend only (empty result)", legend, []Disk{}},
		{"legend only, LF", strings.ReplaceAll(legend, "\r\n", "\n"), []Disk{}},
		{"wrapped legend only", "Flags: B - BLOCK-DEVICE; M - MOUNTED; F - FORM\r\n      ATTING\r\n", []Disk{}},
		{"nothing at all", "", []Disk{}},
		{"blank lines", "\r\n\r\n", []Disk{}},
		{"wrapped at spaces, CRLF", sampleDisk, []Disk{wantDisk}},
		{"wrapped at spaces, LF", strings.ReplaceAll(sampleDisk, "\r\n", "\n"), []Disk{wantDisk}},
		{"wrapped mid-token", sampleDiskMidToken, []Disk{wantDisk}},
		{"pool and a disk whose size is only human readable", samplePool, []Disk{
			{Slot: "nvme1", Type: "hw", Size: 4000787030016, Free: 3221225472000, MountPoint: "storage-pool", MountFilesystem: true, Flags: "BM"},
			// file-size=1.0GiB is never read as a size: Size stays unknown.
			{Slot: wantDisk.Slot, Type: "file", FilePath: wantDisk.FilePath, Size: -1, Free: -1, Flags: "BN"},
		}},
		{"file-size before size: size= anchored", legend +
			" 0 type=file file-size=9.9GiB slot=a size=1 024 file-path=/p/a.img\r\n",
			[]Disk{{Slot: "a", Type: "file", FilePath: "/p/a.img", Size: 1024, Free: -1}}},
		{"no flags, comment line", legend +
			" 0 ;;; made by hand\r\n" +
			"      type=file slot=other size=512\r\n",
			[]Disk{{Slot: "other", Type: "file", Size: 512, Free: -1, Comment: "made by hand"}}},
		{"several entries, two-digit index", legend + func() string {
			var b strings.Builder
			for i := 0; i < 11; i++ {
				b.WriteString(strings.Repeat(" ", 3-len(itoa(i))) + itoa(i) + "  type=file slot=s" + itoa(i) + " size=1 000\r\n\r\n")
			}
			return b.String()
		}(), func() []Disk {
			var d []Disk
			for i := 0; i < 11; i++ {
				d = append(d, Disk{Slot: "s" + itoa(i), Type: "file", Size: 1000, Free: -1})
			}
			return d
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDisks([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func itoa(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }

func TestParseDetailErrors(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"error text instead of output", "failure: no such item\r\n"},
		{"error after the legend", legend + "bad command name prnt (line 1 column 7)\r\n"},
		{"text after entries", legend + " 0 type=file slot=a\r\nsomething else\r\n"},
		{"text before the first key", legend + " 0 B\r\n      oops type=file slot=a\r\n"},
		{"a word before the first key", legend + " 0 B  oops-x type=file slot=a\r\n"},
		{"unterminated quote", legend + " 0 type=file slot=\"a\r\n"},
		{"text after a closing quote", legend + " 0 type=file slot=\"a\"b\r\n"},
		{"key printed twice", legend + " 0 type=file slot=a slot=b\r\n"},
		{"index going backwards", legend + " 1 type=file slot=a\r\n 0 type=file slot=b\r\n"},
		{"continuation without an entry", legend + "      type=file slot=a\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDetail([]byte(tc.in))
			if !errors.Is(err, ErrUnexpectedOutput) {
				t.Errorf("ParseDetail = %v, %v; want ErrUnexpectedOutput", got, err)
			}
		})
	}
	for _, tc := range []struct{ name, in string }{
		{"human size in size=", legend + " 0 type=file slot=a size=50.0GiB\r\n"},
		{"no slot", legend + " 0 type=file size=1\r\n"},
		{"no type", legend + " 0 slot=a\r\n"},
		{"bad yes/no", legend + " 0 type=file slot=a nvme-tcp-export=maybe\r\n"},
		{"bad port", legend + " 0 type=file slot=a nvme-tcp-server-port=70000\r\n"},
		{"size overflows", legend + " 0 type=file slot=a size=99 999 999 999 999 999 999\r\n"},
		{"negative size", legend + " 0 type=file slot=a size=-1\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDisks([]byte(tc.in))
			if !errors.Is(err, ErrUnexpectedOutput) {
				t.Errorf("ParseDisks = %v, %v; want ErrUnexpectedOutput", got, err)
			}
		})
	}
}

func TestParseFiles(t *testing.T) {
	in := " 0   name=storage-pool/rds-csi/rds-csi-0123456789abcdef01234567.img type=.img\r\n" +
		"      file size=53 687 091 200 creation-time=2026-01-01 00:00:00\r\n" +
		"\r\n" +
		" 1   name=storage-pool/rds-csi type=directory creation-time=2026-01-01 00:00:00\r\n" +
		"\r\n" +
		" 2   name=storage-pool/notes.txt type=file size=1.2KiB\r\n"
	got, err := ParseFiles([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []File{
		{Path: testPath, Type: ".img file", Size: 53687091200},
		{Path: "/storage-pool/rds-csi", Type: "directory", Size: -1},
		{Path: "/storage-pool/notes.txt", Type: "file", Size: -1},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := ParseFiles([]byte(" 0   type=file size=1\r\n")); !errors.Is(err, ErrUnexpectedOutput) {
		t.Errorf("file without name: %v", err)
	}
}

func TestEntryAccessors(t *testing.T) {
	es, err := ParseDetail([]byte(" 0 a=x b=\"q \\\" q\" c=1 2\n      3 d=\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := es[0]
	if d := cmp.Diff([]string{"a", "b", "c", "d"}, e.Keys()); d != "" {
		t.Errorf("keys (-want +got):\n%s", d)
	}
	if v, _ := e.Text("b"); v != `q " q` {
		t.Errorf("b = %q", v)
	}
	if n, err := e.Bytes("c"); err != nil || n != 123 {
		t.Errorf("c = %d, %v", n, err)
	}
	if v, ok := e.Token("d"); !ok || v != "" {
		t.Errorf("d = %q, %v", v, ok)
	}
	if _, err := e.Bytes("zz"); !errors.Is(err, ErrUnexpectedOutput) {
		t.Errorf("missing key: %v", err)
	}
}
