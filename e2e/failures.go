package e2e

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// LabFailure is one failure message of the host's lab test (TestLab) in its
// `go test -v` output: a guest test's output ("guest test failed:") or a
// boot's console tail.
type LabFailure struct {
	Test  string   // the host test it belongs to, e.g. TestLab/6.12/multipath/TestX
	First string   // the message's first line, e.g. "guest test failed:"
	Lines []string // the lines after it, without the message indentation
}

// failureStart matches the first line of a lab failure message in the host's
// -v output: a guest test's output or a boot failure with a console tail
// (the t.Error and t.Fatal calls of lab_test.go).
var failureStart = regexp.MustCompile(`^    \S+\.go:\d+: (guest test failed:|the guest kernel reported trouble:|.*; console:)$`)

// testHeader matches the lines naming the test whose output follows.
var testHeader = regexp.MustCompile(`^=== (RUN|NAME|CONT) +(\S+)`)

// ParseLabFailures reads the host's `go test -v ./e2e/` output (e2e.log)
// and returns the failure messages it holds, in order.
func ParseLabFailures(r io.Reader) ([]LabFailure, error) {
	var (
		out  []LabFailure
		cur  *LabFailure
		test string
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if cur != nil {
			if rest, ok := strings.CutPrefix(line, "        "); ok {
				cur.Lines = append(cur.Lines, rest)
				continue
			}
			out = append(out, *cur)
			cur = nil
		}
		if m := testHeader.FindStringSubmatch(line); m != nil {
			test = m[2]
			continue
		}
		if m := failureStart.FindStringSubmatch(line); m != nil {
			cur = &LabFailure{Test: test, First: m[1]}
		}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out, sc.Err()
}

// ownLine matches a line a guest test printed itself (t.Log, t.Error,
// t.Fatal: "name_test.go:123: ..."), not a daemon log record it relayed.
var ownLine = regexp.MustCompile(`^\s*\S+_test\.go:\d+: `)

func isOwnLine(l string) bool {
	return ownLine.MatchString(l) && !strings.Contains(l, " level=")
}

// WriteLabFailures prints failures for the end of a CI log: at most maxFull
// of them with their last perFailure lines each, then, last, a short list
// of the failed tests (the first maxListed) with at most perTestOwn of the
// lines the guest test printed itself (daemon log records left out), so
// that even a short tail of the log names what failed and why.
func WriteLabFailures(w io.Writer, fails []LabFailure, maxFull, perFailure, maxListed, perTestOwn int) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "\n======== lab: %d failure(s); the output of each (its last %d lines; all of it is in the full log) ========\n", len(fails), perFailure)
	for i, f := range fails {
		if i == maxFull {
			fmt.Fprintf(bw, "\n[... %d more failure(s), listed below ...]\n", len(fails)-maxFull)
			break
		}
		lines := trimBlank(f.Lines)
		fmt.Fprintf(bw, "\n-------- %s: %s\n", f.Test, f.First)
		if cut := len(lines) - perFailure; cut > 0 {
			fmt.Fprintf(bw, "[... %d earlier lines cut ...]\n", cut)
			lines = lines[cut:]
		}
		for _, l := range lines {
			fmt.Fprintln(bw, l)
		}
	}
	fmt.Fprintf(bw, "\n======== lab: failed (the guest tests' own messages, at most %d lines each) ========\n", perTestOwn)
	for i, f := range fails {
		if i == maxListed {
			fmt.Fprintf(bw, "[... %d more failure(s): see the full log ...]\n", len(fails)-maxListed)
			break
		}
		fmt.Fprintf(bw, "%s: %s\n", f.Test, f.First)
		var own []string
		for _, l := range f.Lines {
			if isOwnLine(l) {
				own = append(own, strings.TrimSpace(l))
			}
		}
		if cut := len(own) - perTestOwn; cut > 0 {
			fmt.Fprintf(bw, "    [... %d earlier lines cut ...]\n", cut)
			own = own[cut:]
		}
		for _, l := range own {
			fmt.Fprintln(bw, "    "+l)
		}
	}
	return bw.Flush()
}

func trimBlank(lines []string) []string {
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}
