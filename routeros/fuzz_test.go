package routeros

import (
	"errors"
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/routeros/rdstest"
)

// FuzzParseDetail: any input parses or fails with an error; never a panic,
// and a byte count read is only ever digits.
func FuzzParseDetail(f *testing.F) {
	for _, s := range []string{sampleDisk, sampleDiskMidToken, samplePool, legend, "", "failure: no such item\r\n",
		" 0 a=\"b\\\"\" c=1 2\n      3\n", " 0 ;;; c\n      a=b\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		es, err := ParseDetail(in)
		if err != nil {
			return
		}
		for _, e := range es {
			for _, k := range e.Keys() {
				if n, err := e.Bytes(k); err == nil && n < 0 {
					t.Fatalf("negative byte count %d", n)
				}
				if tok, _ := e.Token(k); strings.ContainsRune(tok, wrap) {
					t.Fatalf("wrap marker left in %q", tok)
				}
			}
		}
		_, _ = ParseDisks(in)
		_, _ = ParseFiles(in)
	})
}

// FuzzWrapRoundTrip: what the emulator prints, at any width, wrapped at
// spaces or mid-token, with CRLF or LF, parses back to the same values.
func FuzzWrapRoundTrip(f *testing.F) {
	f.Add("pvc-1", int64(53687091200), 80, false, false)
	f.Add("pvc-2", int64(1), 21, true, true)
	f.Add("x", int64(999999999999), 33, true, false)
	f.Fuzz(func(t *testing.T, name string, size int64, width int, mid, lf bool) {
		if name == "" || size < 0 {
			return
		}
		width = 20 + (width%200+200)%200
		slot, err := SlotFor(name)
		if err != nil {
			t.Fatal(err)
		}
		nqn, _ := NQNFor("nqn.2000-02.com.mikrotik", slot)
		path, _ := FilePathFor("/storage-pool/rds-csi", slot)
		out := rdstest.Format{Width: width, MidToken: mid, LF: lf}.Detail("Flags: B - BLOCK-DEVICE; M - MOUNTED", [][]rdstest.Pair{{
			{Key: "type", Value: "file"}, {Key: "slot", Value: slot}, {Key: "slot-default", Value: `""`},
			{Key: "size", Value: rdstest.Group(size)}, {Key: "nvme-tcp-export", Value: "yes"},
			{Key: "nvme-tcp-server-port", Value: "4420"}, {Key: "nvme-tcp-server-nqn", Value: nqn},
			{Key: "nvme-tcp-server-allow-host-name", Value: `""`}, {Key: "file-path", Value: path},
			{Key: "file-size", Value: rdstest.Human(size)}, {Key: "file-offset", Value: "0"},
		}, {
			{Key: "name", Value: strings.TrimPrefix(path, "/")}, {Key: "type", Value: ".img file"},
			{Key: "size", Value: rdstest.Group(size)}, {Key: "creation-time", Value: "2026-01-01 00:00:00"},
		}})
		es, err := ParseDetail([]byte(out))
		if err != nil || len(es) != 2 {
			t.Fatalf("%v\n%s", err, out)
		}
		d, err := diskFrom(es[0])
		want := Disk{Slot: slot, Type: "file", FilePath: path, Size: size, Free: -1, NVMeExport: true, NVMePort: 4420, NVMeNQN: nqn}
		if err != nil || d != want {
			t.Fatalf("width %d mid %v: got %+v, %v\n%s", width, mid, d, err, out)
		}
		if n, err := es[1].Bytes("size"); err != nil || n != size {
			t.Fatalf("file size %d, %v\n%s", n, err, out)
		}
		// a value with a space wrapped at that space reads back whole when
		// the wrap was at the space (not mid-token, where it is ambiguous).
		if typ, _ := es[1].Text("type"); typ != ".img file" && (!mid || strings.ReplaceAll(typ, " ", "") != ".imgfile") {
			t.Fatalf("type %q\n%s", typ, out)
		}
	})
}

// FuzzCommands: any string in any input either is refused with
// ErrInvalidArgument or gives a command of allow-listed characters with
// balanced quotes and brackets, and the same number of words as a valid one.
func FuzzCommands(f *testing.F) {
	for _, v := range hostile {
		f.Add(v, int64(1), 4420)
	}
	f.Add(testSlot, int64(1<<30), 4420)
	f.Fuzz(func(t *testing.T, v string, size int64, port int) {
		builds := []func() (Command, error){
			func() (Command, error) {
				return AddDiskCommand(DiskSpec{Slot: v, FilePath: testPath, Size: size, Port: port, NQN: testNQN})
			},
			func() (Command, error) {
				return AddDiskCommand(DiskSpec{Slot: testSlot, FilePath: v, Size: size, Port: port, NQN: testNQN})
			},
			func() (Command, error) {
				return AddDiskCommand(DiskSpec{Slot: testSlot, FilePath: testPath, Size: size, Port: port, NQN: v})
			},
			func() (Command, error) { return CopyDiskCommand(CopySpec{From: v, Slot: testSlot, FilePath: testPath}) },
			func() (Command, error) { return ExportDiskCommand(v, port, testNQN) },
			func() (Command, error) { return ResizeDiskCommand(v, size) },
			func() (Command, error) { return RemoveDiskCommand(v) },
			func() (Command, error) { return PrintDisksCommand(v) },
			func() (Command, error) { return PrintPoolCommand(v) },
			func() (Command, error) { return PrintFilesCommand(v) },
			func() (Command, error) { return RemoveFileCommand(v) },
		}
		words := []int{10, 10, 10, 8, 7, 5, 4, 5, 5, 5, 4}
		for i, b := range builds {
			cmd, err := b()
			if err != nil {
				if !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("build %d: %v", i, err)
				}
				continue
			}
			checkLine(t, cmd.String())
			if n := len(strings.Fields(cmd.String())); n != words[i] && !(i == 7 && v == "" && n == 3) {
				t.Fatalf("build %d: %d words in %q", i, n, cmd.String())
			}
		}
	})
}

// FuzzParseBacking: a name ParseBacking accepts is exactly the one
// BackingPath writes for what it read (one spelling per marker), and it is
// an owned file; nothing else is.
func FuzzParseBacking(f *testing.F) {
	vol, _ := SlotFor("pvc-1")
	snap, _ := SnapshotSlotFor("snap-1")
	for _, s := range []string{vol + ".img", vol + "." + vol + ".img", snap + "." + vol + ".1764642000.img",
		snap + ".img", vol + "..img", snap + "." + vol + ".01.img"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p := testDir + "/" + name
		b, ok := ParseBacking(testDir, p)
		if ok != IsOwnedFile(testDir, p) {
			t.Fatalf("ParseBacking and IsOwnedFile disagree on %q", p)
		}
		if !ok {
			return
		}
		back, err := BackingPath(testDir, b)
		if err != nil || back != p {
			t.Fatalf("ParseBacking(%q) = %+v, written back as %q, %v", p, b, back, err)
		}
		if !IsOwnedSlot(b.Slot) || b.Source != "" && !IsOwnedSlot(b.Source) {
			t.Fatalf("ParseBacking(%q) = %+v: not our slots", p, b)
		}
	})
}
