package routeros

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	testSlot = "rds-csi-0123456789abcdef01234567"
	testNQN  = "nqn.2000-02.com.mikrotik:" + testSlot
	testDir  = "/storage-pool/rds-csi"
	testPath = testDir + "/" + testSlot + ".img"
)

func TestSlotFor(t *testing.T) {
	a, err := SlotFor("pvc-0b8a6c2e-1c1e-4a44-9d3e-2f5cf6bb1a01")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := SlotFor("pvc-0b8a6c2e-1c1e-4a44-9d3e-2f5cf6bb1a01")
	c, _ := SlotFor("pvc-0b8a6c2e-1c1e-4a44-9d3e-2f5cf6bb1a02")
	if a != b || a == c {
		t.Errorf("SlotFor not deterministic or not distinct: %q %q %q", a, b, c)
	}
	// sha256("pvc-1") starts with 4d5cd4e1... : pinned so the derivation never changes silently.
	got, _ := SlotFor("pvc-1")
	if got != "rds-csi-"+sha256hex("pvc-1")[:24] || len(got) != MaxSlotLen {
		t.Errorf("SlotFor(pvc-1) = %q", got)
	}
	for _, name := range []string{"a", strings.Repeat("x", 300), `"; /system reset`, "ünïcode", "a b"} {
		s, err := SlotFor(name)
		if err != nil || ValidateSlot(s) != nil || !IsOwnedSlot(s) || len(s) != MaxSlotLen {
			t.Errorf("SlotFor(%q) = %q, %v", name, s, err)
		}
	}
	snap, _ := SnapshotSlotFor("pvc-1")
	if snap != "rds-snap-"+sha256hex("pvc-1")[:23] || !IsSnapshotSlot(snap) || IsVolumeSlot(snap) || !IsOwnedSlot(snap) || ValidateSlot(snap) != nil {
		t.Errorf("SnapshotSlotFor(pvc-1) = %q", snap)
	}
	if !IsVolumeSlot(got) || IsSnapshotSlot(got) {
		t.Errorf("IsVolumeSlot/IsSnapshotSlot(%q)", got)
	}
	if _, err := SnapshotSlotFor(""); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("SnapshotSlotFor(\"\") = %v, want ErrInvalidArgument", err)
	}
	if _, err := SlotFor(""); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("SlotFor(\"\") = %v, want ErrInvalidArgument", err)
	}
}

func TestIsOwnedSlot(t *testing.T) {
	for slot, want := range map[string]bool{
		testSlot:                            true,
		"rds-csi-0123456789ABCDEF01234567":  false,
		"rds-csi-0123456789abcdef0123456":   false,
		"rds-csi-0123456789abcdef012345678": false,
		"rds-snap-0123456789abcdef0123456":  true,
		"rds-snap-0123456789abcdef01234567": false,
		"rds-snap-0123456789abcdef012345":   false,
		"pvc-0123":                          false,
		"nvme1":                             false,
	} {
		if got := IsOwnedSlot(slot); got != want {
			t.Errorf("IsOwnedSlot(%q) = %v, want %v", slot, got, want)
		}
	}
}

func TestRoundUp(t *testing.T) {
	for _, tc := range []struct {
		n, unit, want int64
		err           bool
	}{
		{1, 1, 1, false},
		{1, 1 << 20, 1 << 20, false},
		{1<<20 + 1, 1 << 20, 2 << 20, false},
		{1 << 30, 1 << 20, 1 << 30, false},
		{12345, 0, 12345, false},
		{MaxSize, 1 << 20, MaxSize, false},
		{MaxSize, 1000, 0, true},
		{0, 1, 0, true},
		{-5, 1, 0, true},
	} {
		got, err := RoundUp(tc.n, tc.unit)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("RoundUp(%d, %d) = %d, %v; want %d, err %v", tc.n, tc.unit, got, err, tc.want, tc.err)
		}
		if err == nil && got < tc.n {
			t.Errorf("RoundUp(%d, %d) rounded down", tc.n, tc.unit)
		}
	}
}

func TestCommands(t *testing.T) {
	spec := DiskSpec{Slot: testSlot, FilePath: testPath, Size: 53687091201, Port: 4420, NQN: testNQN}
	mk := func(c Command, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c.Verb() + ": " + c.String()
	}
	got := []string{
		mk(AddDiskCommand(spec)),
		mk(CopyDiskCommand(CopySpec{From: "rds-csi-aaaaaaaaaaaaaaaaaaaaaaaa", Slot: testSlot, FilePath: testPath})),
		mk(ExportDiskCommand(testSlot, 4420, testNQN)),
		mk(ResizeDiskCommand(testSlot, 1<<40)),
		mk(RemoveDiskCommand(testSlot)),
		mk(PrintDiskCommand(testSlot)),
		mk(PrintDisksCommand(SlotPrefix)),
		mk(PrintDisksCommand("")),
		mk(PrintDisksByFileCommand(testPath)),
		mk(PrintPoolCommand("storage-pool")),
		mk(PrintFileCommand(testPath)),
		mk(PrintFilesCommand("/storage-pool/csi.v1")),
		mk(RemoveFileCommand(testPath)),
		mk(UnexportDiskCommand(testSlot)),
		mk(PrintSlotFilesCommand("/storage-pool/csi.v1", testSlot)),
	}
	want := []string{
		`disk-add: /disk add type=file file-path="/storage-pool/rds-csi/rds-csi-0123456789abcdef01234567.img" file-size=53687091201 slot="rds-csi-0123456789abcdef01234567" mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:rds-csi-0123456789abcdef01234567"`,
		`disk-copy: /disk add type=file copy-from=[find slot="rds-csi-aaaaaaaaaaaaaaaaaaaaaaaa"] file-path="/storage-pool/rds-csi/rds-csi-0123456789abcdef01234567.img" slot="rds-csi-0123456789abcdef01234567" mount-filesystem=no`,
		`disk-set: /disk set [find slot="rds-csi-0123456789abcdef01234567"] nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:rds-csi-0123456789abcdef01234567"`,
		`disk-set: /disk set [find slot="rds-csi-0123456789abcdef01234567"] file-size=1099511627776`,
		`disk-remove: /disk remove [find slot="rds-csi-0123456789abcdef01234567"]`,
		`disk-print: /disk print detail where slot="rds-csi-0123456789abcdef01234567"`,
		`disk-print: /disk print detail where slot~"^rds-csi-"`,
		`disk-print: /disk print detail`,
		`disk-print: /disk print detail where file-path="/storage-pool/rds-csi/rds-csi-0123456789abcdef01234567.img"`,
		`disk-print: /disk print detail where mount-point="storage-pool"`,
		`file-print: /file print detail where name="storage-pool/rds-csi/rds-csi-0123456789abcdef01234567.img"`,
		`file-print: /file print detail where name~"^storage-pool/csi[.]v1/"`,
		`file-remove: /file remove [find name="storage-pool/rds-csi/rds-csi-0123456789abcdef01234567.img"]`,
		`disk-set: /disk set [find slot="rds-csi-0123456789abcdef01234567"] nvme-tcp-export=no`,
		`file-print: /file print detail where name~"^storage-pool/csi[.]v1/rds-csi-0123456789abcdef01234567[.]"`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("commands (-want +got):\n%s", d)
	}
}

// hostile values: each can end a command, start another, add an argument,
// open a [command substitution], expand a $variable or hide in unicode.
var hostile = []string{
	``, ` `, `"`, `a"b`, `a" b="c`, `'`, `;`, `a;/system reset`, `a; /file remove [find]`,
	`[`, `]`, `a]`, `[find]`, `$x`, `a$(b)`, "a\nb", "a\rb", "a\tb", "a\x00b", `a b`,
	`a=b`, `\`, `a\"`, `{`, `}`, `:put`, `a,b`, `~`, `*`, `ünïcode`, "a\u200bb", "а", // Cyrillic a
	"a\u2028b", `..`, `.`, `/`, `//`, `/a/../b`, `/a/./b`, `/a//b`, `a/b`, `/a/b/`, strings.Repeat("a", 300),
}

// TestInjection feeds every hostile value into every input of every
// command: each must be refused with ErrInvalidArgument naming the field, and
// never produce a command.
func TestInjection(t *testing.T) {
	type input struct {
		field string
		build func(v string) (Command, error)
		// suffix: v is appended to a valid value, so an allow-listed v
		// legitimately gives a command
		suffix bool
	}
	spec := DiskSpec{Slot: testSlot, FilePath: testPath, Size: 1, Port: 4420, NQN: testNQN}
	inputs := []input{
		{"slot", func(v string) (Command, error) { s := spec; s.Slot = v; return AddDiskCommand(s) }, false},
		{"file-path", func(v string) (Command, error) { s := spec; s.FilePath = v; return AddDiskCommand(s) }, false},
		{"nvme-tcp-server-nqn", func(v string) (Command, error) { s := spec; s.NQN = v; return AddDiskCommand(s) }, false},
		{"nvme-tcp-server-nqn", func(v string) (Command, error) { s := spec; s.NQN = "nqn.2000-02.x:" + v; return AddDiskCommand(s) }, true},
		{"copy-from", func(v string) (Command, error) {
			return CopyDiskCommand(CopySpec{From: v, Slot: testSlot, FilePath: testPath})
		}, false},
		{"slot", func(v string) (Command, error) {
			return CopyDiskCommand(CopySpec{From: testSlot, Slot: v, FilePath: testPath})
		}, false},
		{"file-path", func(v string) (Command, error) {
			return CopyDiskCommand(CopySpec{From: testSlot, Slot: testSlot, FilePath: v})
		}, false},
		{"slot", func(v string) (Command, error) { return ExportDiskCommand(v, 4420, testNQN) }, false},
		{"nvme-tcp-server-nqn", func(v string) (Command, error) { return ExportDiskCommand(testSlot, 4420, v) }, false},
		{"slot", func(v string) (Command, error) { return ResizeDiskCommand(v, 1) }, false},
		{"slot", func(v string) (Command, error) { return RemoveDiskCommand(v) }, false},
		{"slot", func(v string) (Command, error) { return PrintDiskCommand(v) }, false},
		{"slot", func(v string) (Command, error) { return PrintDisksCommand(v) }, false},
		{"file-path", func(v string) (Command, error) { return PrintDisksByFileCommand(v) }, false},
		{"mount-point", func(v string) (Command, error) { return PrintPoolCommand(v) }, false},
		{"file-path", func(v string) (Command, error) { return PrintFileCommand(v) }, false},
		{"volume-dir", func(v string) (Command, error) { return PrintFilesCommand(v) }, false},
		{"file-path", func(v string) (Command, error) { return RemoveFileCommand(v) }, false},
		{"slot", func(v string) (Command, error) { return UnexportDiskCommand(v) }, false},
		{"volume-dir", func(v string) (Command, error) { return PrintSlotFilesCommand(v, testSlot) }, false},
		{"slot", func(v string) (Command, error) { return PrintSlotFilesCommand(testDir, v) }, false},
		{"file-path", func(v string) (Command, error) { return RemoveFileCommand(testDir + "/" + v) }, true},
	}
	for _, in := range inputs {
		for _, v := range hostile {
			cmd, err := in.build(v)
			if in.suffix && err == nil {
				checkLine(t, cmd.String())
				continue
			}
			if v == "" && cmd.String() == "/disk print detail" {
				continue // PrintDisksCommand(""): all disks, by design
			}
			var ae *ArgError
			if !errors.As(err, &ae) || !errors.Is(err, ErrInvalidArgument) || ae.Field != in.field {
				t.Errorf("%s=%q: got command %q, err %v; want *ArgError on %s", in.field, v, cmd.String(), err, in.field)
			}
		}
	}
	for _, n := range []int64{0, -1, MaxSize + 1} {
		if _, err := ResizeDiskCommand(testSlot, n); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("size %d: %v", n, err)
		}
	}
	for _, p := range []int{0, -1, 65536} {
		s := spec
		s.Port = p
		if _, err := AddDiskCommand(s); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("port %d: %v", p, err)
		}
	}
}

// checkLine asserts a command line has only allow-listed characters, and
// quotes balanced around them.
func checkLine(t testing.TB, line string) {
	t.Helper()
	for _, r := range line {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(` ._:/-="[]~^`, r)) {
			t.Fatalf("command %q has character %q", line, r)
		}
	}
	if strings.Count(line, `"`)%2 != 0 || strings.Count(line, "[") != strings.Count(line, "]") {
		t.Fatalf("command %q: unbalanced", line)
	}
}

func TestFileHelpers(t *testing.T) {
	if p, err := FilePathFor(testDir, testSlot); err != nil || p != testPath {
		t.Errorf("FilePathFor = %q, %v", p, err)
	}
	for _, tc := range []struct {
		dir, p string
		want   bool
	}{
		{testDir, testPath, true},
		{testDir, testDir + "/other.img", false},
		{testDir, testDir + "/" + testSlot + ".raw", false},
		{testDir, "/storage-pool/" + testSlot + ".img", false},
		{testDir, testDir + "/sub/" + testSlot + ".img", false},
		{testDir, testDir + "x/" + testSlot + ".img", false},
		{testDir + "/", testPath, false},
	} {
		if got := IsOwnedFile(tc.dir, tc.p); got != tc.want {
			t.Errorf("IsOwnedFile(%q, %q) = %v", tc.dir, tc.p, got)
		}
	}
}

// TestBacking: the file name marker round-trips, and ParseBacking refuses
// every name this driver does not create (so such files are never removed).
func TestBacking(t *testing.T) {
	vol, _ := SlotFor("pvc-1")
	src, _ := SlotFor("pvc-src")
	snap, _ := SnapshotSlotFor("snap-1")
	at := time.Unix(1764642000, 0).UTC()
	for _, b := range []Backing{
		{Slot: vol},
		{Slot: vol, Source: src},
		{Slot: vol, Source: snap},
		{Slot: snap, Source: src, Created: at},
	} {
		p, err := BackingPath(testDir, b)
		if err != nil {
			t.Fatalf("BackingPath(%+v): %v", b, err)
		}
		got, ok := ParseBacking(testDir, p)
		if !ok || got != b || !IsOwnedFile(testDir, p) {
			t.Errorf("ParseBacking(%q) = %+v, %v; want %+v", p, got, ok, b)
		}
	}
	if p, _ := BackingPath(testDir, Backing{Slot: snap, Source: src, Created: at}); p != testDir+"/"+snap+"."+src+".1764642000.img" {
		t.Errorf("snapshot path %q", p)
	}
	if p, _ := BackingPath(testDir, Backing{Slot: vol}); p != testDir+"/"+vol+".img" {
		t.Errorf("volume path %q (must equal FilePathFor)", p)
	}
	for _, b := range []Backing{
		{Slot: "pvc-1"},
		{Slot: vol, Source: "pvc-0123"},
		{Slot: vol, Source: src, Created: at},   // a volume has no time
		{Slot: snap},                            // a snapshot names its source
		{Slot: snap, Source: src},               // and its time
		{Slot: snap, Source: snap, Created: at}, // of a volume
		{Slot: snap, Source: src, Created: time.Unix(0, 0)},
		{Slot: snap, Source: src, Created: time.Unix(-5, 0)},
	} {
		if p, err := BackingPath(testDir, b); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("BackingPath(%+v) = %q, %v; want ErrInvalidArgument", b, p, err)
		}
	}
	for _, name := range []string{
		snap + ".img",
		vol + "." + src + ".1.2.img",
		snap + "." + src + ".01764642000.img",
		snap + "." + src + ".+1764642000.img",
		snap + "." + src + ".1764642000.raw",
		snap + "." + src + "..img",
		vol + ".other.img",
		vol + "..img",
		"." + vol + ".img",
		vol + "." + src + ".img.img",
	} {
		if b, ok := ParseBacking(testDir, testDir+"/"+name); ok {
			t.Errorf("ParseBacking(%q) = %+v, want refused", name, b)
		}
	}
}
