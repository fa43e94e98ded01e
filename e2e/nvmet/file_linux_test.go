//go:build linux

package nvmet

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestFileBackendFiles: the file side of the backend, which needs no
// configfs: names stay under the directory, files are sparse and of the
// exact size, a copy has the source's bytes and size, growth keeps data.
func TestFileBackendFiles(t *testing.T) {
	dir := t.TempDir()
	b := (&Target{}).FileBackend(dir, "127.0.0.1")
	for _, bad := range []string{"", "../x", "a/../../x", "/abs", "a//b", "a/"} {
		if _, err := b.Path(bad); err == nil {
			t.Errorf("Path(%q) accepted", bad)
		}
	}
	const size = 8<<20 + 512
	if err := b.CreateFile("pool/v/a.img", size); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateFile("pool/v/a.img", size); err == nil {
		t.Error("CreateFile over an existing file succeeded")
	}
	a := filepath.Join(dir, "pool/v/a.img")
	data := bytes.Repeat([]byte("rds-csi!"), 4096)
	f, err := os.OpenFile(a, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 5 << 20, size - int64(len(data))} {
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if err := b.CopyFile("pool/v/a.img", "pool/w/b.img"); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(a)
	got, err := os.ReadFile(filepath.Join(dir, "pool/w/b.img"))
	if err != nil || !bytes.Equal(got, want) || len(got) != size {
		t.Fatalf("copy: %d bytes (err %v), equal %v; want %d", len(got), err, bytes.Equal(got, want), size)
	}
	if err := b.GrowFile("pool/w/b.img", 2*size); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(filepath.Join(dir, "pool/w/b.img"))
	if len(got) != 2*size || !bytes.Equal(got[:size], want) {
		t.Errorf("grown copy: %d bytes, data kept %v", len(got), bytes.Equal(got[:min(len(got), size)], want))
	}
	for _, n := range []string{"pool/w/b.img", "pool/w/b.img"} {
		if err := b.RemoveFile(n); err != nil {
			t.Errorf("RemoveFile(%s): %v", n, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pool/w/b.img")); !os.IsNotExist(err) {
		t.Errorf("removed file: %v", err)
	}
}
