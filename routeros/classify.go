package routeros

import (
	"strings"
)

// Result is what one command produced: both streams and the exit status.
type Result struct {
	Stdout     []byte
	Stderr     []byte
	ExitStatus int
}

// errorPrefixes start a line of RouterOS error text (ROUTEROS.md; how
// RouterOS reports errors over SSH exec is unverified, so they are looked
// for on both streams).
var errorPrefixes = []string{
	"failure:", "error:", "bad command name", "expected end of command", "syntax error",
	"input does not match any value", "no such item", "invalid value", "ambiguous value",
	"missing value", "value of ", "expected ", "not enough permissions", "unknown parameter",
}

// kindRules map error text to a sentinel, the first match winning. Text
// none of them matches is ErrUnknown: an error all the same.
var kindRules = []struct {
	substr []string
	kind   error
}{
	{[]string{"not enough space", "no space", "disk full", "not enough free space"}, ErrNoSpace},
	{[]string{"not enough permissions", "permission denied", "access denied"}, ErrAuth},
	{[]string{"no such item", "not found", "no such file", "no such disk"}, ErrNotFound},
	{[]string{"already exists", "already have", "already used", "exists"}, ErrExists},
	{[]string{"busy", "in use", "try again"}, ErrBusy},
	{[]string{"bad command name", "expected end of command", "syntax error", "input does not match",
		"invalid value", "ambiguous value", "missing value", "unknown parameter", "value of ", "expected "}, ErrInvalidArgument},
}

const maxErrText = 512

// Classify turns one command's result into nil or an error wrapping exactly
// one sentinel, reading the exit status and both streams:
//
//   - error text is every non-empty stderr line, and every stdout line that
//     starts (unindented) with a known RouterOS error prefix ("failure:",
//     "bad command name", "expected end of command", "no such item", ...);
//   - a non-zero exit status, or any error text, is an error: the sentinel
//     is chosen from the text (ErrNoSpace, ErrAuth, ErrNotFound, ErrExists,
//     ErrBusy, ErrInvalidArgument), else ErrUnknown;
//   - a command that prints nothing on success (add, set, remove) may print
//     nothing or one item id ("*1A"); anything else on stdout is
//     ErrUnexpectedOutput. Print output is left to the parser.
//
// RouterOS's exit status over SSH exec is unverified: a zero status with
// error text is an error all the same. A [find] that matched nothing may be
// silent: success here then proves nothing, and the client re-reads.
func Classify(cmd Command, r Result) error {
	var text []string
	for _, l := range lines(r.Stderr) {
		text = append(text, strings.TrimSpace(l))
	}
	for _, l := range lines(r.Stdout) {
		if l[0] != ' ' && hasErrorPrefix(l) {
			text = append(text, strings.TrimSpace(l))
		}
	}
	if r.ExitStatus != 0 || len(text) > 0 {
		t := strings.Join(text, "; ")
		if len(t) > maxErrText {
			t = t[:maxErrText] + "..."
		}
		return &CommandError{Command: cmd.line, ExitStatus: r.ExitStatus, Text: t, Kind: kindOf(t)}
	}
	if cmd.print {
		return nil
	}
	if out := strings.TrimSpace(string(r.Stdout)); out != "" && !isItemID(out) {
		if len(out) > maxErrText {
			out = out[:maxErrText] + "..."
		}
		return &CommandError{Command: cmd.line, Text: out, Kind: ErrUnexpectedOutput}
	}
	return nil
}

func lines(b []byte) []string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

func hasErrorPrefix(l string) bool {
	l = strings.ToLower(strings.TrimSpace(l))
	for _, p := range errorPrefixes {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

func kindOf(text string) error {
	t := strings.ToLower(text)
	for _, r := range kindRules {
		for _, s := range r.substr {
			if strings.Contains(t, s) {
				return r.kind
			}
		}
	}
	return ErrUnknown
}

// isItemID reports whether s is a RouterOS internal id such as "*1A".
func isItemID(s string) bool {
	if len(s) < 2 || len(s) > 17 || s[0] != '*' {
		return false
	}
	return strings.Trim(s[1:], "0123456789ABCDEFabcdef") == ""
}
