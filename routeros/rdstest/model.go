package rdstest

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Disk is a disk of the model.
type Disk struct {
	Slot            string
	FilePath        string
	NVMeExport      bool
	NVMePort        int
	NVMeNQN         string
	MountFilesystem bool
	AllowHostName   string // nvme-tcp-server-allow-host-name as set
	Comment         string // comment, printed as ";;; <comment>"
	id              int
}

// Variant selects the unverified RouterOS behaviours.
type Variant struct {
	ErrorsOnStderr   bool
	ErrorExitStatus  int
	FindNoMatchError bool
	// RemoveDiskRemovesFile: /disk remove deletes the backing file too
	// (ROUTEROS.md says it is left; the controller's check asks).
	RemoveDiskRemovesFile bool
	// CopyInheritsExport: a copy (copy-from) takes its source's
	// nvme-tcp-export, port and NQN unless the command sets them (default:
	// a copy is not exported).
	CopyInheritsExport bool
	// CopyRefusesProperties: copy-from is refused with any property but
	// type, file-path and slot ("expected end of command"; default: the
	// properties are applied).
	CopyRefusesProperties bool
	// MaxSlotLen is the longest slot accepted (0: MaxSlotLen, 32; one
	// report has 40-character slots on an older RouterOS 7).
	MaxSlotLen int
	// AllowHostNameList: nvme-tcp-server-allow-host-name takes a
	// comma-separated list (default: one host NQN; a comma is refused).
	AllowHostNameList bool
	// NoCopyFrom: /disk add knows no copy-from argument (the copy syntax
	// is unverified).
	NoCopyFrom bool
}

// MaxSlotLen is the slot limit the emulator enforces (reported for
// RouterOS 7.24, unverified).
const MaxSlotLen = 32

// model is the state of the emulated RDS. Its methods hold no lock: Server
// serialises them.
type model struct {
	poolName string
	poolSize int64
	disks    []*Disk
	files    map[string]int64  // /file names (no leading '/') -> size in bytes
	data     map[string][]byte // /file names -> what tests wrote at the start
	nextID   int
	variant  Variant
	format   Format
	backend  Backend // nil: the model alone
}

func (m *model) used() int64 {
	var n int64
	for _, s := range m.files {
		n += s
	}
	return n
}

func (m *model) free() int64 { return max(m.poolSize-m.used(), 0) }

// failure is a command's error: text printed per the variant.
type failure string

// exec runs one command line and returns its stdout or a failure.
func (m *model) exec(line string) (string, failure) {
	toks, err := tokenize(line)
	if err != "" {
		return "", err
	}
	if len(toks) < 2 {
		return "", failure("bad command name " + line + " (line 1 column 1)")
	}
	switch toks[0] + " " + toks[1] {
	case "/disk add":
		return "", m.diskAdd(toks[2:])
	case "/disk set":
		return "", m.diskSet(toks[2:])
	case "/disk remove":
		return "", m.diskRemove(toks[2:])
	case "/disk print":
		return m.diskPrint(toks[2:])
	case "/file print":
		return m.filePrint(toks[2:])
	case "/file remove":
		return "", m.fileRemove(toks[2:])
	}
	return "", failure("bad command name " + toks[0] + " " + toks[1] + " (line 1 column 1)")
}

// tokenize splits a command line into words; a quoted string or a [...]
// group is part of its word.
func tokenize(line string) ([]string, failure) {
	var toks []string
	var cur strings.Builder
	inQuote, depth := false, 0
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inQuote && c == '\\' && i+1 < len(line):
			cur.WriteByte(c)
			i++
			cur.WriteByte(line[i])
		case inQuote && c == '$':
			return nil, failure(fmt.Sprintf("syntax error: variable in string (line 1 column %d)", i+1))
		case c == '"':
			inQuote = !inQuote
			cur.WriteByte(c)
		case inQuote:
			cur.WriteByte(c)
		case c == '[':
			depth++
			cur.WriteByte(c)
		case c == ']':
			if depth == 0 {
				return nil, failure(fmt.Sprintf("syntax error (line 1 column %d)", i+1))
			}
			depth--
			cur.WriteByte(c)
		case c == ' ' && depth == 0:
			if cur.Len() > 0 {
				toks = append(toks, cur.String())
				cur.Reset()
			}
		case c == ';' || c == '\n' || c == '\r' || c == '$' || c == '{' || c == '}':
			return nil, failure(fmt.Sprintf("syntax error (line 1 column %d)", i+1))
		default:
			cur.WriteByte(c)
		}
	}
	if inQuote || depth != 0 {
		return nil, failure("syntax error (line 1 column " + strconv.Itoa(len(line)) + ")")
	}
	if cur.Len() > 0 {
		toks = append(toks, cur.String())
	}
	return toks, ""
}

// unquote reads a RouterOS value: "..." with backslash escapes, or a bare
// word.
func unquote(v string) (string, failure) {
	if !strings.HasPrefix(v, `"`) {
		if strings.ContainsAny(v, `"\`) {
			return "", failure("syntax error: " + v)
		}
		return v, ""
	}
	if len(v) < 2 || !strings.HasSuffix(v, `"`) {
		return "", failure("syntax error: " + v)
	}
	var b strings.Builder
	in := v[1 : len(v)-1]
	for i := 0; i < len(in); i++ {
		if in[i] == '\\' && i+1 < len(in) {
			i++
		} else if in[i] == '"' {
			return "", failure("syntax error: " + v)
		}
		b.WriteByte(in[i])
	}
	return b.String(), ""
}

// args parses key=value words, allowing only the given keys.
func args(toks []string, allowed ...string) (map[string]string, failure) {
	out := map[string]string{}
	for _, t := range toks {
		k, v, ok := strings.Cut(t, "=")
		if !ok || !contains(allowed, k) {
			return nil, failure("expected end of command (line 1 column 1): " + t)
		}
		if _, dup := out[k]; dup {
			return nil, failure("expected end of command: " + k + " given twice")
		}
		if !strings.HasPrefix(v, "[") {
			var f failure
			if v, f = unquote(v); f != "" {
				return nil, f
			}
		}
		out[k] = v
	}
	return out, ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// find evaluates "[find slot=..]" or "[find name=..]"; it returns the
// matching value of key and whether the [find] was well formed.
func findArg(tok, key string) (string, failure) {
	inner, ok := strings.CutPrefix(tok, "[find ")
	if !ok || !strings.HasSuffix(inner, "]") {
		return "", failure("expected end of command: " + tok)
	}
	k, v, ok := strings.Cut(strings.TrimSuffix(inner, "]"), "=")
	if !ok || k != key {
		return "", failure("expected end of command: " + tok)
	}
	return unquote(v)
}

func (m *model) disk(slot string) *Disk {
	for _, d := range m.disks {
		if d.Slot == slot {
			return d
		}
	}
	return nil
}

func (m *model) noMatch() failure {
	if m.variant.FindNoMatchError {
		return "failure: no such item"
	}
	return ""
}

func parseSize(v string) (int64, failure) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, failure("invalid value for argument file-size: " + v)
	}
	return n, ""
}

func yesNo(v string) (bool, failure) {
	switch v {
	case "yes":
		return true, ""
	case "no":
		return false, ""
	}
	return false, failure("input does not match any value of value-name: " + v)
}

var diskArgs = []string{"type", "file-path", "file-size", "slot", "mount-filesystem", "nvme-tcp-export",
	"nvme-tcp-server-port", "nvme-tcp-server-nqn", "nvme-tcp-server-allow-host-name", "copy-from"}

func (m *model) diskAdd(toks []string) failure {
	a, f := args(toks, diskArgs...)
	if f != "" {
		return f
	}
	if a["type"] != "file" {
		return "failure: only type=file is emulated"
	}
	slot, path := a["slot"], a["file-path"]
	if slot == "" || path == "" || !strings.HasPrefix(path, "/") {
		return "failure: slot and file-path required"
	}
	maxSlot := MaxSlotLen
	if m.variant.MaxSlotLen > 0 {
		maxSlot = m.variant.MaxSlotLen
	}
	if len(slot) > maxSlot {
		return "failure: slot name too long"
	}
	var size int64
	if _, ok := a["copy-from"]; ok && m.variant.NoCopyFrom {
		return "expected end of command (line 1 column 21)"
	}
	if f := m.allowHosts(a); f != "" {
		return f
	}
	var from *Disk
	if src, ok := a["copy-from"]; ok {
		if _, has := a["file-size"]; has {
			return "expected end of command: file-size with copy-from"
		}
		if m.variant.CopyRefusesProperties {
			for k := range a {
				if !contains([]string{"type", "copy-from", "file-path", "slot"}, k) {
					return failure("expected end of command: " + k + " with copy-from")
				}
			}
		}
		fromSlot, f := findArg(src, "slot")
		if f != "" {
			return f
		}
		if from = m.disk(fromSlot); from == nil {
			return m.noMatch()
		}
		size = m.files[strings.TrimPrefix(from.FilePath, "/")]
	} else {
		if size, f = parseSize(a["file-size"]); f != "" {
			return f
		}
	}
	if m.disk(slot) != nil {
		return "failure: disk with such slot already exists"
	}
	name := strings.TrimPrefix(path, "/")
	if _, ok := m.files[name]; ok {
		return "failure: file already exists"
	}
	if size > m.free() {
		return "failure: not enough space"
	}
	d := &Disk{Slot: slot, FilePath: path, MountFilesystem: true, id: m.nextID}
	if from != nil && m.variant.CopyInheritsExport {
		d.NVMeExport, d.NVMePort, d.NVMeNQN = from.NVMeExport, from.NVMePort, from.NVMeNQN
	}
	if err := d.apply(a); err != "" {
		return err
	}
	if f := m.addOnBackend(d, from, size); f != "" {
		return f
	}
	m.nextID++
	m.files[name] = size
	if from != nil {
		if b, ok := m.data[strings.TrimPrefix(from.FilePath, "/")]; ok {
			m.data[name] = append([]byte(nil), b...)
		}
	}
	m.disks = append(m.disks, d)
	return ""
}

// addOnBackend makes a new disk's file (a copy of from's when from is not
// nil) and its export on the backend; on error it undoes what it made.
func (m *model) addOnBackend(d, from *Disk, size int64) failure {
	if m.backend == nil {
		return ""
	}
	var err error
	if from != nil {
		err = m.backend.CopyFile(from.fileName(), d.fileName())
	} else {
		err = m.backend.CreateFile(d.fileName(), size)
	}
	if err != nil {
		return backendFailure(err)
	}
	if e, on := d.export(); on {
		if err := m.backend.Export(e.file, e.port, e.nqn); err != nil {
			_ = m.backend.RemoveFile(d.fileName())
			return backendFailure(err)
		}
		if d.AllowHostName != "" {
			if err := m.backend.AllowHosts(e.file, e.port, e.nqn, allowed(d.AllowHostName)); err != nil {
				_ = m.backend.Unexport(e.file, e.port, e.nqn)
				_ = m.backend.RemoveFile(d.fileName())
				return backendFailure(err)
			}
		}
	}
	return ""
}

// apply sets the export and mount fields given in a.
func (d *Disk) apply(a map[string]string) failure {
	var f failure
	if v, ok := a["mount-filesystem"]; ok {
		if d.MountFilesystem, f = yesNo(v); f != "" {
			return f
		}
	}
	if v, ok := a["nvme-tcp-export"]; ok {
		if d.NVMeExport, f = yesNo(v); f != "" {
			return f
		}
	}
	if v, ok := a["nvme-tcp-server-port"]; ok {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return failure("value of nvme-tcp-server-port out of range (1..65535)")
		}
		d.NVMePort = p
	}
	if v, ok := a["nvme-tcp-server-nqn"]; ok {
		d.NVMeNQN = v
	}
	if v, ok := a["nvme-tcp-server-allow-host-name"]; ok {
		d.AllowHostName = v
	}
	if v, ok := a["comment"]; ok {
		d.Comment = v
	}
	return ""
}

// allowHosts refuses a list of allowed hosts unless the variant takes one.
func (m *model) allowHosts(a map[string]string) failure {
	if v := a["nvme-tcp-server-allow-host-name"]; strings.Contains(v, ",") && !m.variant.AllowHostNameList {
		return "failure: invalid value for argument nvme-tcp-server-allow-host-name"
	}
	return ""
}

func (m *model) diskSet(toks []string) failure {
	if len(toks) < 1 {
		return "expected end of command"
	}
	slot, f := findArg(toks[0], "slot")
	if f != "" {
		return f
	}
	a, f := args(toks[1:], "file-size", "mount-filesystem", "nvme-tcp-export", "nvme-tcp-server-port", "nvme-tcp-server-nqn",
		"nvme-tcp-server-allow-host-name", "comment")
	if f != "" {
		return f
	}
	if f := m.allowHosts(a); f != "" {
		return f
	}
	d := m.disk(slot)
	if d == nil {
		return m.noMatch()
	}
	name := d.fileName()
	size := m.files[name]
	if v, ok := a["file-size"]; ok {
		n, f := parseSize(v)
		if f != "" {
			return f
		}
		if n < size {
			return "failure: cannot shrink file"
		}
		if n-size > m.free() {
			return "failure: not enough space"
		}
		size = n
	}
	nd := *d
	if f := nd.apply(a); f != "" {
		return f
	}
	if f := m.setOnBackend(d, &nd, size); f != "" {
		return f
	}
	*d = nd
	m.files[name] = size
	return ""
}

// setOnBackend grows the file and moves the export of a disk from old to
// new on the backend.
func (m *model) setOnBackend(old, nd *Disk, size int64) failure {
	if m.backend == nil {
		return ""
	}
	grown := size > m.files[old.fileName()]
	if grown {
		if err := m.backend.GrowFile(old.fileName(), size); err != nil {
			return backendFailure(err)
		}
	}
	oe, wasOn := old.export()
	ne, on := nd.export()
	switch {
	case wasOn && on && oe == ne:
		if grown {
			if err := m.backend.Resized(ne.file, ne.port, ne.nqn); err != nil {
				return backendFailure(err)
			}
		}
		if old.AllowHostName != nd.AllowHostName {
			if err := m.backend.AllowHosts(ne.file, ne.port, ne.nqn, allowed(nd.AllowHostName)); err != nil {
				return backendFailure(err)
			}
		}
		return ""
	case wasOn:
		if err := m.backend.Unexport(oe.file, oe.port, oe.nqn); err != nil {
			return backendFailure(err)
		}
	}
	if on {
		if err := m.backend.Export(ne.file, ne.port, ne.nqn); err != nil {
			return backendFailure(err)
		}
		if nd.AllowHostName != "" {
			if err := m.backend.AllowHosts(ne.file, ne.port, ne.nqn, allowed(nd.AllowHostName)); err != nil {
				return backendFailure(err)
			}
		}
	}
	return ""
}

func (m *model) diskRemove(toks []string) failure {
	if len(toks) != 1 {
		return "expected end of command"
	}
	slot, f := findArg(toks[0], "slot")
	if f != "" {
		return f
	}
	for i, d := range m.disks {
		if d.Slot == slot {
			if m.backend != nil {
				if e, on := d.export(); on {
					if err := m.backend.Unexport(e.file, e.port, e.nqn); err != nil {
						return backendFailure(err)
					}
				}
				if m.variant.RemoveDiskRemovesFile {
					if err := m.backend.RemoveFile(d.fileName()); err != nil {
						return backendFailure(err)
					}
				}
			}
			m.disks = append(m.disks[:i], m.disks[i+1:]...)
			if m.variant.RemoveDiskRemovesFile {
				delete(m.files, d.fileName())
				delete(m.data, d.fileName())
			}
			return ""
		}
	}
	return m.noMatch()
}

func (m *model) fileRemove(toks []string) failure {
	if len(toks) != 1 {
		return "expected end of command"
	}
	name, f := findArg(toks[0], "name")
	if f != "" {
		return f
	}
	if _, ok := m.files[name]; !ok {
		return m.noMatch()
	}
	for _, d := range m.disks {
		if strings.TrimPrefix(d.FilePath, "/") == name {
			return "failure: file is in use"
		}
	}
	if m.backend != nil {
		if err := m.backend.RemoveFile(name); err != nil {
			return backendFailure(err)
		}
	}
	delete(m.files, name)
	delete(m.data, name)
	return ""
}

// where parses "detail [where key=value|key~regex]" and returns a match
// function over an entry's raw values.
func where(toks []string, keys ...string) (func(map[string]string) bool, failure) {
	if len(toks) == 0 || toks[0] != "detail" {
		return nil, "expected end of command: only print detail is emulated"
	}
	toks = toks[1:]
	if len(toks) == 0 {
		return func(map[string]string) bool { return true }, ""
	}
	if len(toks) != 2 || toks[0] != "where" {
		return nil, "expected end of command"
	}
	i := strings.IndexAny(toks[1], "=~")
	if i < 0 || !contains(keys, toks[1][:i]) {
		return nil, failure("expected end of command: " + toks[1])
	}
	key, op := toks[1][:i], toks[1][i]
	v, f := unquote(toks[1][i+1:])
	if f != "" {
		return nil, f
	}
	if op == '=' {
		return func(e map[string]string) bool { return e[key] == v }, ""
	}
	re, err := regexp.Compile(v)
	if err != nil {
		return nil, failure("invalid regular expression: " + v)
	}
	return func(e map[string]string) bool { return re.MatchString(e[key]) }, ""
}

func (m *model) diskPrint(toks []string) (string, failure) {
	match, f := where(toks, "slot", "file-path", "mount-point")
	if f != "" {
		return "", f
	}
	var out []entry
	pool := poolEntry(m.poolName, m.poolSize, m.free())
	if match(pool.raw()) {
		out = append(out, pool)
	}
	for _, d := range m.disks {
		e := m.diskEntry(d)
		if match(e.raw()) {
			out = append(out, e)
		}
	}
	return m.format.detail(diskLegend, out), ""
}

func (m *model) filePrint(toks []string) (string, failure) {
	match, f := where(toks, "name")
	if f != "" {
		return "", f
	}
	names := make([]string, 0, len(m.files))
	for n := range m.files {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []entry
	for _, n := range names {
		e := fileEntry(n, m.files[n])
		if match(e.raw()) {
			out = append(out, e)
		}
	}
	return m.format.detail("", out), ""
}
