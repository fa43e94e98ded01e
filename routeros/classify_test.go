package routeros

import (
	"errors"
	"testing"
)

// TestClassify: the same RouterOS error text is classified the same
// whether it comes on stdout or stderr, with exit status 0 or not; unknown
// text and unknown status are errors, never success.
func TestClassify(t *testing.T) {
	add, _ := AddDiskCommand(DiskSpec{Slot: testSlot, FilePath: testPath, Size: 1, Port: 4420, NQN: testNQN})
	print, _ := PrintDiskCommand(testSlot)
	for _, tc := range []struct {
		name string
		text string
		want error
	}{
		{"no space", "failure: not enough space", ErrNoSpace},
		{"no such item", "failure: no such item", ErrNotFound},
		{"exists", "failure: disk with such slot already exists", ErrExists},
		{"busy", "failure: file is in use", ErrBusy},
		{"permissions", "failure: not enough permissions (9)", ErrAuth},
		{"bad command", "bad command name ad (line 1 column 7)", ErrInvalidArgument},
		{"end of command", "expected end of command (line 1 column 40)", ErrInvalidArgument},
		{"no value", "input does not match any value of value-name", ErrInvalidArgument},
		{"syntax", "syntax error (line 1 column 3)", ErrInvalidArgument},
		{"unknown failure", "failure: the flux capacitor is cold", ErrUnknown},
	} {
		for _, stream := range []string{"stdout", "stderr"} {
			for _, status := range []int{0, 1} {
				for _, cmd := range []Command{add, print} {
					r := Result{ExitStatus: status}
					if stream == "stdout" {
						r.Stdout = []byte(tc.text + "\r\n")
					} else {
						r.Stderr = []byte(tc.text + "\n")
					}
					err := Classify(cmd, r)
					if !errors.Is(err, tc.want) {
						t.Errorf("%s on %s, status %d, %s: %v; want %v", tc.text, stream, status, cmd.Verb(), err, tc.want)
					}
					var ce *CommandError
					if !errors.As(err, &ce) || ce.Text != tc.text {
						t.Errorf("%s on %s: error %#v does not carry the text", tc.text, stream, err)
					}
				}
			}
		}
	}
	for _, tc := range []struct {
		name string
		cmd  Command
		r    Result
		want error // nil: success
	}{
		{"add: silent success", add, Result{}, nil},
		{"add: blank lines", add, Result{Stdout: []byte("\r\n")}, nil},
		{"add: an item id", add, Result{Stdout: []byte("*1A\r\n")}, nil},
		{"add: unknown text", add, Result{Stdout: []byte("hello\r\n")}, ErrUnexpectedOutput},
		{"add: non-zero status, no text", add, Result{ExitStatus: 2}, ErrUnknown},
		{"add: stderr text of any kind", add, Result{Stderr: []byte("something odd\n")}, ErrUnknown},
		{"print: output", print, Result{Stdout: []byte(sampleDisk)}, nil},
		{"print: non-zero status with output", print, Result{Stdout: []byte(sampleDisk), ExitStatus: 1}, ErrUnknown},
		{"print: indented text mentioning failure is data", print, Result{Stdout: []byte(legend + " 0 type=file slot=a\r\n      comment=failure: x\r\n")}, nil},
	} {
		err := Classify(tc.cmd, tc.r)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v; want %v", tc.name, err, tc.want)
		}
	}
}

func TestErrorClass(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range ErrorClasses() {
		if seen[c] {
			t.Errorf("class %q twice", c)
		}
		seen[c] = true
	}
	for _, s := range classOrder {
		if c := ErrorClass(&CommandError{Command: "x", Kind: s}); !seen[c] || c == "other" {
			t.Errorf("ErrorClass(%v) = %q", s, c)
		}
	}
	if ErrorClass(nil) != "" || ErrorClass(errors.New("x")) != "other" {
		t.Error("ErrorClass of nil or a foreign error")
	}
	if !Retryable(&CommandError{Kind: ErrUnreachable}) || Retryable(&CommandError{Kind: ErrNoSpace}) {
		t.Error("Retryable")
	}
}
