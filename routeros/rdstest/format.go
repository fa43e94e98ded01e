package rdstest

import (
	"fmt"
	"strconv"
	"strings"
)

// Format says how `print detail` output is laid out.
type Format struct {
	// Width wraps lines at this many columns (0: DefaultWidth; < 0: never).
	Width int
	// MidToken wraps at exactly Width columns, splitting keys, values and
	// grouped digits anywhere (default: at the last space that fits, and
	// mid-token only for a word longer than a line).
	MidToken bool
	// LF ends lines with "\n" (default "\r\n").
	LF bool
}

// DefaultWidth is the emulated terminal width.
const DefaultWidth = 80

const (
	diskLegend = "Flags: B - BLOCK-DEVICE; M - MOUNTED; F - FORMATTING; N - NVME-TCP-EXPORTED"
	indent     = "      "
	// PoolSlot is the slot of the emulated pool disk.
	PoolSlot = "nvme1"
)

type pair struct {
	key   string
	shown string // as printed
	raw   string // as matched by where
}

type entry struct {
	flags   string
	comment string // printed after the flags as ";;; <comment>", the pairs below
	pairs   []pair
}

func (e entry) raw() map[string]string {
	m := make(map[string]string, len(e.pairs))
	for _, p := range e.pairs {
		m[p.key] = p.raw
	}
	return m
}

// Group writes n with its digits grouped by spaces: 53 687 091 200.
func Group(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Human writes n the lossy way file-size is printed: 50.0GiB.
func Human(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f, u := float64(n), 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	if u == 0 {
		return strconv.FormatInt(n, 10) + "B"
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + units[u]
}

func yn(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func str(v string) string {
	if v == "" || strings.ContainsAny(v, ` "\`) {
		return strconv.Quote(v)
	}
	return v
}

func (m *model) diskEntry(d *Disk) entry {
	size := m.files[strings.TrimPrefix(d.FilePath, "/")]
	flags := "B"
	if d.NVMeExport {
		flags += "N"
	}
	port := ""
	if d.NVMePort != 0 {
		port = strconv.Itoa(d.NVMePort)
	}
	ps := []pair{
		{"type", "file", "file"}, {"slot", str(d.Slot), d.Slot}, {"slot-default", `""`, ""},
		{"parent", `""`, ""}, {"fs", `""`, ""}, {"model", `""`, ""},
		{"size", Group(size), strconv.FormatInt(size, 10)},
		{"mount-filesystem", yn(d.MountFilesystem), ""}, {"mount-read-only", "no", ""},
		{"compress", "no", ""}, {"sector-size", "512", ""}, {"raid-master", "none", ""},
		{"nvme-tcp-export", yn(d.NVMeExport), ""}, {"nvme-tcp-server-port", port, ""},
		{"nvme-tcp-server-nqn", str(d.NVMeNQN), d.NVMeNQN},
		{"nvme-tcp-server-allow-host-name", str(d.AllowHostName), d.AllowHostName}, {"iscsi-export", "no", ""},
		{"nfs-sharing", "no", ""}, {"smb-sharing", "no", ""}, {"media-sharing", "no", ""},
		{"media-interface", "none", ""}, {"swap", "no", ""},
		{"file-path", str(d.FilePath), d.FilePath}, {"file-size", Human(size), ""},
		{"file-offset", "0", ""},
	}
	return entry{flags: flags, comment: d.Comment, pairs: ps}
}

func poolEntry(mount string, size, free int64) entry {
	return entry{flags: "BM", pairs: []pair{
		{"type", "hw", "hw"}, {"slot", PoolSlot, PoolSlot}, {"slot-default", PoolSlot, ""},
		{"parent", `""`, ""}, {"fs", "btrfs", ""}, {"model", `"Emulated NVMe"`, ""},
		{"size", Group(size), ""}, {"free", Group(free), ""},
		{"mount-point", str(mount), mount}, {"mount-filesystem", "yes", ""},
		{"mount-read-only", "no", ""}, {"compress", "no", ""}, {"sector-size", "512", ""},
		{"raid-master", "none", ""}, {"nvme-tcp-export", "no", ""},
	}}
}

func fileEntry(name string, size int64) entry {
	typ := "file"
	if strings.HasSuffix(name, ".img") {
		typ = ".img file"
	}
	return entry{pairs: []pair{
		{"name", str(name), name}, {"type", typ, typ}, {"size", Group(size), ""},
		{"creation-time", "2026-01-01 00:00:00", ""}, {"last-modified", "2026-01-01 00:00:00", ""},
	}}
}

// detail lays entries out as `print detail` does.
func (f Format) detail(legend string, entries []entry) string {
	eol := "\r\n"
	if f.LF {
		eol = "\n"
	}
	width := f.Width
	if width == 0 {
		width = DefaultWidth
	}
	var b strings.Builder
	if legend != "" {
		for _, l := range f.wrap(legend, "", width) {
			b.WriteString(l + eol)
		}
	}
	iw := len(strconv.Itoa(max(len(entries)-1, 0)))
	for i, e := range entries {
		if i > 0 {
			b.WriteString(eol)
		}
		head := fmt.Sprintf("%*d %-2s ", iw+1, i, e.flags)
		parts := make([]string, len(e.pairs))
		for j, p := range e.pairs {
			parts[j] = p.key + "=" + p.shown
		}
		if e.comment != "" {
			b.WriteString(head + ";;; " + e.comment + eol)
			head = indent
		}
		for _, l := range f.wrap(strings.Join(parts, " "), head, width) {
			b.WriteString(l + eol)
		}
	}
	return b.String()
}

// wrap lays s out after head, continuation lines after indent.
func (f Format) wrap(s, head string, width int) []string {
	prefix := head
	var out []string
	for {
		avail := width - len(prefix)
		if width < 0 || len(s) <= avail {
			return append(out, prefix+s)
		}
		if avail < 1 {
			avail = 1
		}
		cut, next := avail, avail
		if !f.MidToken {
			if p := strings.LastIndexByte(s[:avail+1], ' '); p > 0 {
				cut, next = p, p+1
			}
		}
		out = append(out, prefix+s[:cut])
		s = s[next:]
		prefix = indent
	}
}

// Pair is one key=value as printed (Value exactly as it appears).
type Pair struct{ Key, Value string }

// Detail lays entries out as `print detail` does, under legend ("" for
// none), without flags: for parser tests.
func (f Format) Detail(legend string, entries [][]Pair) string {
	es := make([]entry, len(entries))
	for i, ps := range entries {
		for _, p := range ps {
			es[i].pairs = append(es[i].pairs, pair{key: p.Key, shown: p.Value})
		}
	}
	return f.detail(legend, es)
}
