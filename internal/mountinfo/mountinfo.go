package mountinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/srvlab/rds-csi/sysfs"
)

// SelfPath is the mount table of the calling process's mount namespace.
const SelfPath = "/proc/self/mountinfo"

// Entry is one line of a mountinfo file.
type Entry struct {
	Dev        sysfs.DevNum // field 3: st_dev of the mounted file system
	Root       string       // field 4: the mounted subtree ("/nvme0n1" for a bind of a devtmpfs node)
	MountPoint string       // field 5
	Options    []string     // field 6: the per-mount options ("rw" or "ro", "noatime", ...)
	FSType     string       // the first field after the "-" separator
	Source     string       // the second field after the "-" separator
}

// Disk names the block device a mount serves, as far as the entry says:
// a bind mount of a device node (from devtmpfs, root "/nvme0n1") gives
// its name and no number; any other mount gives the device number of its
// file system (the disk's, when a disk backs it) and, when its source is
// "/dev/<name>", that name. Callers match the number first, then the name:
// this is the one rule for "which disk is mounted here".
func (e Entry) Disk() (name string, dev sysfs.DevNum) {
	if e.FSType == "devtmpfs" {
		return strings.TrimPrefix(e.Root, "/"), sysfs.DevNum{}
	}
	name, _ = strings.CutPrefix(e.Source, "/dev/")
	if name == e.Source {
		name = ""
	}
	return name, e.Dev
}

// Read parses a mountinfo file. Lines that do not parse are skipped: the
// file is the kernel's, and one odd line must not hide the others.
func Read(path string) ([]Entry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mountinfo: read mount table: %w", err)
	}
	return Parse(b), nil
}

// Parse parses the content of a mountinfo file, skipping lines that do not
// parse.
func Parse(b []byte) []Entry {
	var out []Entry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if m, ok := parseLine(sc.Text()); ok {
			out = append(out, m)
		}
	}
	return out
}

func parseLine(line string) (Entry, bool) {
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || len(f) < sep+3 {
		return Entry{}, false
	}
	dev, err := sysfs.ParseDevNum(f[2])
	if err != nil {
		return Entry{}, false
	}
	return Entry{
		Dev:        dev,
		Root:       unescape(f[3]),
		MountPoint: unescape(f[4]),
		Options:    strings.Split(f[5], ","),
		FSType:     f[sep+1],
		Source:     unescape(f[sep+2]),
	}, true
}

// unescape undoes the kernel's octal escapes (\040 for a space, \011,
// \012, \134).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 4
				continue
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}
