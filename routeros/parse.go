package routeros

import (
	"fmt"
	"strconv"
	"strings"
)

// wrap marks the place where a wrapped `print detail` entry continued on
// the next line. Whether a space stood there is unknown (RouterOS wraps
// between pairs, inside values with spaces, and mid-token), so the marker
// is kept in raw values and each accessor resolves it for its kind of value.
const wrap = '\x00'

// knownKeys are the keys of /disk and /file entries. They decide one
// ambiguity only: a key split by a wrap ("nvme-tcp-se" + "rver-port=") is
// joined when the joined key is known. Unknown keys are parsed all the same.
var knownKeys = map[string]bool{}

func init() {
	for _, k := range strings.Fields(`type slot slot-default parent fs model size free
		mount-point mount-filesystem mount-read-only compress sector-size raid-master
		nvme-tcp-export nvme-tcp-server-port nvme-tcp-server-nqn nvme-tcp-server-allow-host-name
		iscsi-export nfs-sharing smb-sharing media-sharing media-interface swap file-path
		file-size file-offset name creation-time last-modified contents comment label
		serial fw-version interface partition-number partition-offset partition-size`) {
		knownKeys[k] = true
	}
}

// Entry is one item of `print detail` output: its index, flag letters,
// comment, and key=value pairs in the order printed. Raw values keep the
// wrap points; use the accessors.
type Entry struct {
	Index   int
	Flags   string
	Comment string
	keys    []string
	vals    map[string]string
}

// Keys lists the keys in the order printed.
func (e Entry) Keys() []string { return append([]string(nil), e.keys...) }

// Has reports whether the entry has key (even with an empty value).
func (e Entry) Has(key string) bool { _, ok := e.vals[key]; return ok }

// Token is the value of key for values that never contain a space (slots,
// paths, NQNs, numbers, yes/no): wrap points are removed, so a value split
// mid-token is whole again.
func (e Entry) Token(key string) (string, bool) {
	v, ok := e.vals[key]
	return strings.ReplaceAll(v, string(wrap), ""), ok
}

// Text is the value of key for free text (a wrap point reads as one space,
// runs of spaces collapse): `type=.img file`.
func (e Entry) Text(key string) (string, bool) {
	v, ok := e.vals[key]
	return strings.Join(strings.Fields(strings.ReplaceAll(v, string(wrap), " ")), " "), ok
}

// Bytes is the exact byte count of key, printed with space-grouped digits
// ("53 687 091 200"), possibly wrapped. A human-readable value ("50.0GiB")
// is an error wrapping ErrUnexpectedOutput, never a rounded number.
func (e Entry) Bytes(key string) (int64, error) {
	v, ok := e.vals[key]
	if !ok {
		return 0, fmt.Errorf("%w: entry %d has no %s", ErrUnexpectedOutput, e.Index, key)
	}
	digits := strings.Map(func(r rune) rune {
		if r == ' ' || r == wrap {
			return -1
		}
		return r
	}, v)
	if digits == "" || len(digits) > 19 || strings.Trim(digits, "0123456789") != "" {
		return 0, fmt.Errorf("%w: entry %d: %s=%q is not an exact byte count", ErrUnexpectedOutput, e.Index, key, e.printable(v))
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: entry %d: %s=%q: %v", ErrUnexpectedOutput, e.Index, key, e.printable(v), err)
	}
	return n, nil
}

func (e Entry) printable(v string) string { return strings.ReplaceAll(v, string(wrap), "⏎") }

// ParseDetail parses the output of `print detail`:
//
//   - a header before the first entry: blank lines, a "Flags: ..." legend
//     and its indented continuation lines (without '=') (the legend is printed even when
//     nothing matched: then the result is empty);
//   - each entry starts on a line with its index in the first four columns,
//     then optional flag letters, an optional ";;; comment", then pairs;
//   - indented lines continue the entry (the wrap); a line ";;; text" is the
//     entry's comment; blank lines separate entries;
//   - pairs are key=value, the value either quoted ("..." with backslash
//     escapes) or running to the next key, so a key is only ever matched at
//     the start of a pair (size= is never found inside file-size=);
//   - "\r\n" and "\n" both end lines; other control characters are dropped.
//
// Anything else (a line before the first entry that is not the legend, an
// unindented line that is not an entry, text before the first key, an
// unterminated quote, a key printed twice) is an error wrapping
// ErrUnexpectedOutput: output we do not understand is never read as "no
// disks".
func ParseDetail(out []byte) ([]Entry, error) {
	text := strings.Map(func(r rune) rune {
		switch {
		case r == '\n':
			return r
		case r == '\t':
			return ' '
		case r < 0x20 || r == 0x7f:
			return -1
		}
		return r
	}, strings.ToValidUTF8(string(out), "\uFFFD"))
	var (
		entries []Entry
		body    []string // the current entry's lines
		cur     *Entry
		legend  bool
	)
	flush := func() error {
		if cur == nil {
			return nil
		}
		if err := cur.parseBody(strings.Join(body, string(wrap))); err != nil {
			return err
		}
		entries = append(entries, *cur)
		cur, body = nil, nil
		return nil
	}
	for n, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			continue
		}
		if idx, rest, ok := indexLine(line); ok {
			if err := flush(); err != nil {
				return nil, err
			}
			if len(entries) > 0 && idx <= entries[len(entries)-1].Index {
				return nil, fmt.Errorf("%w: line %d: index %d after %d", ErrUnexpectedOutput, n+1, idx, entries[len(entries)-1].Index)
			}
			cur = &Entry{Index: idx, vals: map[string]string{}}
			flags, rest := splitFlags(rest)
			cur.Flags = flags
			if c, ok := strings.CutPrefix(strings.TrimSpace(rest), ";;;"); ok {
				cur.Comment = strings.TrimSpace(c)
				rest = ""
			}
			body = append(body, rest)
			continue
		}
		indented := line[0] == ' '
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "Flags:") && len(entries) == 0:
			legend = true
		case cur == nil && legend && indented && len(entries) == 0 && !strings.Contains(trimmed, "="):
			// the legend wrapped
		case cur != nil && strings.HasPrefix(trimmed, ";;;"):
			c := strings.TrimSpace(strings.TrimPrefix(trimmed, ";;;"))
			cur.Comment = strings.TrimSpace(cur.Comment + " " + c)
		case cur != nil && indented:
			body = append(body, trimmed)
		default:
			return nil, fmt.Errorf("%w: line %d: %q", ErrUnexpectedOutput, n+1, trimmed)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return entries, nil
}

// indexLine recognises the first line of an entry: at most three spaces,
// the index, then end of line or whitespace followed by flag letters, a
// ";;;" comment or a key. A wrapped continuation line is indented deeper,
// and one starting with digits ("091 200") is followed by neither.
func indexLine(line string) (int, string, bool) {
	i := 0
	for i < len(line) && line[i] == ' ' {
		i++
	}
	if i > 3 {
		return 0, "", false
	}
	j := i
	for j < len(line) && line[j] >= '0' && line[j] <= '9' {
		j++
	}
	if j == i || j-i > 9 || (j < len(line) && line[j] != ' ') {
		return 0, "", false
	}
	rest := line[j:]
	_, after := splitFlags(rest)
	after = strings.TrimSpace(after)
	if after != "" && !strings.HasPrefix(after, ";;;") {
		if _, _, ok := matchKey(after, 0); !ok {
			return 0, "", false
		}
	}
	n, err := strconv.Atoi(line[i:j])
	if err != nil {
		return 0, "", false
	}
	return n, rest, true
}

// splitFlags takes the flag letters (letters and '*', as whole
// space-separated tokens of at most four) before the first pair.
func splitFlags(rest string) (string, string) {
	var flags string
	for {
		s := strings.TrimLeft(rest, " ")
		end := strings.IndexByte(s, ' ')
		tok := s
		if end >= 0 {
			tok = s[:end]
		}
		if tok == "" || len(tok) > 4 || strings.IndexFunc(tok, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '*')
		}) >= 0 {
			return flags, s
		}
		flags += tok
		rest = s[len(tok):]
	}
}

// matchKey matches a key and its '=' at s[i:]: [a-z][a-z0-9-]*, possibly
// split by a wrap point when the joined key is known. It returns the key and
// the index after '='.
func matchKey(s string, i int) (string, int, bool) {
	if i >= len(s) || s[i] < 'a' || s[i] > 'z' {
		return "", 0, false
	}
	var b strings.Builder
	split := false
	j := i
scan:
	for ; j < len(s); j++ {
		switch c := s[j]; {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-':
			b.WriteByte(c)
		case c == wrap:
			split = true
		default:
			break scan
		}
	}
	if j >= len(s) || s[j] != '=' {
		return "", 0, false
	}
	key := b.String()
	if split && !knownKeys[key] {
		return "", 0, false
	}
	return key, j + 1, true
}

func sep(c byte) bool { return c == ' ' || c == wrap }

// parseBody parses the pairs of one entry, lines joined by wrap markers.
func (e *Entry) parseBody(s string) error {
	i := 0
	for {
		for i < len(s) && sep(s[i]) {
			i++
		}
		if i >= len(s) {
			return nil
		}
		key, v, ok := matchKey(s, i)
		if !ok {
			return fmt.Errorf("%w: entry %d: text where a key was expected: %q", ErrUnexpectedOutput, e.Index, e.printable(s[i:]))
		}
		if _, dup := e.vals[key]; dup {
			return fmt.Errorf("%w: entry %d: key %s printed twice", ErrUnexpectedOutput, e.Index, key)
		}
		var val string
		var err error
		// a wrap right after '=': the value starts on the next line, or is
		// empty when a key follows
		w := v
		for w < len(s) && s[w] == wrap {
			w++
		}
		if _, _, next := matchKey(s, w); w > v && next {
			e.keys = append(e.keys, key)
			e.vals[key] = ""
			i = w
			continue
		}
		v = w
		if v < len(s) && s[v] == '"' {
			val, i, err = quoted(s, v)
			if err != nil {
				return fmt.Errorf("%w: entry %d: %s: %v", ErrUnexpectedOutput, e.Index, key, err)
			}
		} else {
			val, i = unquoted(s, v)
		}
		e.keys = append(e.keys, key)
		e.vals[key] = val
	}
}

// quoted reads "..." at s[v]; backslash escapes the next character.
func quoted(s string, v int) (string, int, error) {
	var b strings.Builder
	for j := v + 1; j < len(s); j++ {
		switch c := s[j]; c {
		case '\\':
			j++
			for j < len(s) && s[j] == wrap {
				j++
			}
			if j < len(s) {
				b.WriteByte(s[j])
			}
		case '"':
			if j+1 < len(s) && !sep(s[j+1]) {
				return "", 0, fmt.Errorf("text after closing quote")
			}
			return b.String(), j + 1, nil
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("unterminated quote")
}

// unquoted reads a value up to the next key that starts a pair.
func unquoted(s string, v int) (string, int) {
	for j := v; j < len(s); j++ {
		if j > v && sep(s[j-1]) {
			if _, _, ok := matchKey(s, j); ok {
				return strings.TrimRight(s[v:j], " "+string(wrap)), j
			}
		}
	}
	return strings.TrimRight(s[v:], " "+string(wrap)), len(s)
}
