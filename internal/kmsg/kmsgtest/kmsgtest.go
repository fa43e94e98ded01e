// Package kmsgtest reads the recorded kernel log streams in
// internal/kmsg/testdata (their format is in its README.md), for the tests
// of package kmsg and of its readers.
package kmsgtest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// Read is one read of a kernel log source: a record or an error.
type Read struct {
	Rec []byte
	Err error
}

// Dir is the directory of the recorded streams.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata")
}

// Files returns the paths of every recorded stream (*.kmsg in Dir).
func Files(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(Dir(), "*.kmsg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no recorded kernel log streams in %s", Dir())
	}
	return files
}

// Load reads a recorded stream: one Read per record block, a Read with an
// error wrapping syscall.EPIPE for each "!EPIPE" block; comments are
// skipped.
func Load(t testing.TB, path string) []Read {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []Read
	for _, block := range strings.Split(string(b), "\n\n") {
		block = strings.Trim(block, "\n")
		switch {
		case block == "":
		case block == "!EPIPE":
			out = append(out, Read{Err: fmt.Errorf("read /dev/kmsg: %w", syscall.EPIPE)})
		case strings.HasPrefix(block, "#"):
		default:
			out = append(out, Read{Rec: []byte(block + "\n")})
		}
	}
	return out
}
