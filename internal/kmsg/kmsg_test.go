package kmsg

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/internal/kmsg/kmsgtest"
	"github.com/srvlab/rds-csi/sysfs"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    Record
		wantErr bool
	}{
		{name: "nvme record with dictionary (6.12)",
			in: "4,379,5921339,-;nvme nvme0: starting error recovery\n SUBSYSTEM=nvme\n DEVICE=c245:0\n",
			want: Record{Prio: 4, Seq: 379, TSUsec: 5921339, Flags: "-", Message: "nvme nvme0: starting error recovery",
				Dict: map[string]string{"SUBSYSTEM": "nvme", "DEVICE": "c245:0"}}},
		{name: "no dictionary, no trailing newline",
			in:   "14,345,3622335156,-;rds-csi probe",
			want: Record{Prio: 14, Seq: 345, TSUsec: 3622335156, Flags: "-", Message: "rds-csi probe"}},
		{name: "extra header fields are ignored",
			in:   "6,2061,5925502,-,caller=T1234,more;text; with a semicolon\n",
			want: Record{Prio: 6, Seq: 2061, TSUsec: 5925502, Flags: "-", Message: "text; with a semicolon"}},
		{name: "escapes in text and dictionary values",
			in: "6,1,2,c;a\\x5cb \\xc3\\xa9 \\xZZ \\x4 tail\\x\n K=v\\x0aw=x\n",
			want: Record{Prio: 6, Seq: 1, TSUsec: 2, Flags: "c", Message: "a\\b é \\xZZ \\x4 tail\\x",
				Dict: map[string]string{"K": "v\nw=x"}}},
		{name: "odd continuation lines are skipped",
			in: "6,1,2,-;m\nno space\n NOEQUALS\n =novalue\n\n A=\n",
			want: Record{Prio: 6, Seq: 1, TSUsec: 2, Flags: "-", Message: "m",
				Dict: map[string]string{"A": ""}}},
		{name: "largest sequence number",
			in:   "0,18446744073709551615,0,-;",
			want: Record{Seq: 1<<64 - 1, Flags: "-"}},
		{name: "no semicolon", in: "6,1,2,- text\n", wantErr: true},
		{name: "three header fields", in: "6,1,2;text\n", wantErr: true},
		{name: "negative priority", in: "-6,1,2,-;text\n", wantErr: true},
		{name: "priority too large", in: "4294967296,1,2,-;text\n", wantErr: true},
		{name: "sequence not a number", in: "6,abc,2,-;text\n", wantErr: true},
		{name: "sequence overflows", in: "6,18446744073709551616,2,-;text\n", wantErr: true},
		{name: "timestamp with a sign", in: "6,1,+2,-;text\n", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in))
			if tc.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("error %v, want ErrMalformed (record %+v)", err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDevice(t *testing.T) {
	for _, tc := range []struct {
		dev  string
		want sysfs.DevNum
		ok   bool
	}{
		{"c245:0", sysfs.DevNum{Major: 245, Minor: 0}, true},
		{"c10:1048575", sysfs.DevNum{Major: 10, Minor: 1048575}, true},
		{"b259:0", sysfs.DevNum{}, false},
		{"+pci:0000:00:01.0", sysfs.DevNum{}, false},
		{"n2", sysfs.DevNum{}, false},
		{"c245", sysfs.DevNum{}, false},
		{"c245:", sysfs.DevNum{}, false},
		{"c:0", sysfs.DevNum{}, false},
		{"c-1:0", sysfs.DevNum{}, false},
		{"c4294967296:0", sysfs.DevNum{}, false},
	} {
		got, ok := Device(&Record{Dict: map[string]string{"DEVICE": tc.dev}})
		if got != tc.want || ok != tc.ok {
			t.Errorf("Device(%q) = %v, %v; want %v, %v", tc.dev, got, ok, tc.want, tc.ok)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want Event
	}{
		{"nvme nvme0: starting error recovery", Event{Ctrl: "nvme0", Kind: ErrorRecovery}},
		{"nvme nvme12: Reconnecting in 1 seconds...", Event{Ctrl: "nvme12", Kind: Reconnecting}},
		{"nvme nvme0: Reconnecting in 10 seconds...", Event{Ctrl: "nvme0", Kind: Reconnecting}},
		{"nvme nvme0: Failed reconnect attempt 1/-1", Event{Ctrl: "nvme0", Kind: ReconnectFail, Attempt: 1}},   // 6.12
		{"nvme nvme0: Failed reconnect attempt 17/60", Event{Ctrl: "nvme0", Kind: ReconnectFail, Attempt: 17}}, // 6.12, finite ctrl_loss_tmo
		{"nvme nvme0: Failed reconnect attempt 1", Event{Ctrl: "nvme0", Kind: ReconnectFail, Attempt: 1}},      // 6.1
		// nvmf_log_connect_error for a host the allow list refuses (blktests logs).
		{"nvme nvme2: Connect for subsystem blktests-subsystem-0 is not allowed, hostnqn: nqn.2014-08.org.nvmexpress:uuid:0f01fb42-9f7f-4856-b0b3-51e60b8de349", Event{Ctrl: "nvme2", Kind: HostRejected, SubsysNQN: "blktests-subsystem-0"}},
		{"nvme nvme2: Connect for subsystem x is allowed", Event{Ctrl: "nvme2"}},
		{"nvme nvme3: Successfully reconnected (attempt 3/-1)", Event{Ctrl: "nvme3", Kind: Reconnected, Attempt: 3}},
		{"nvme nvme3: Successfully reconnected (2 attempt)", Event{Ctrl: "nvme3", Kind: Reconnected, Attempt: 2}},
		{"nvme nvme3: Successfully reconnected (2 attempts)", Event{Ctrl: "nvme3", Kind: Reconnected, Attempt: 2}},
		{"nvme nvme3: Successfully reconnected", Event{Ctrl: "nvme3", Kind: Reconnected}},
		{`nvme nvme0: new ctrl: NQN "nqn.2024-01.io.srvlab.lab:x", addr 127.0.0.1:4420, hostnqn: nqn.2014-08.org.nvmexpress:uuid:1`,
			Event{Ctrl: "nvme0", Kind: NewCtrl}},
		{"nvme nvme0: failed to connect socket: -111", Event{Ctrl: "nvme0"}},
		{"nvme nvme0: creating 2 I/O queues.", Event{Ctrl: "nvme0"}},
		{"nvme nvme0: Failed reconnect attempt 99999999999999999999", Event{Ctrl: "nvme0", Kind: ReconnectFail}},
		{"nvme nvme0: Failed reconnect attempt x", Event{Ctrl: "nvme0"}},
		{"Failed reconnect attempt 4", Event{Kind: ReconnectFail, Attempt: 4}}, // no prefix
		{"nvme0n1: I/O Cmd(0x2) @ LBA 0, 8 blocks, I/O Error (sct 0x3 / sc 0x70)", Event{}},
		{"", Event{}},
	} {
		if got := Classify(tc.msg); got != tc.want {
			t.Errorf("Classify(%q) = %+v, want %+v", tc.msg, got, tc.want)
		}
	}
}

// TestRecordings parses every recorded stream in testdata: each captured
// record (from the lab) parses, and the hand-written streams hold exactly
// their malformed reads.
func TestRecordings(t *testing.T) {
	bads := map[string]int{ // the hand-written streams and their malformed reads
		"handwritten-6.12-port-unlink.kmsg": 0,
		"handwritten-6.1-port-unlink.kmsg":  0,
		"handwritten-garbage.kmsg":          5,
	}
	files := kmsgtest.Files(t)
	for name := range bads {
		if !slices.Contains(files, filepath.Join(kmsgtest.Dir(), name)) {
			t.Errorf("testdata/%s is missing", name)
		}
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			bad := 0
			for _, r := range kmsgtest.Load(t, path) {
				if r.Err != nil {
					continue
				}
				if _, err := Parse(r.Rec); err != nil {
					bad++
					if _, hand := bads[name]; !hand {
						t.Errorf("a captured record does not parse: %v", err)
					}
				}
			}
			if want, hand := bads[name]; hand && bad != want {
				t.Errorf("%d reads do not parse, want %d", bad, want)
			}
		})
	}
}

// escape escapes as the kernel does: control characters, bytes >= 0x7f
// and the backslash become \xNN.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c >= 0x7f || c == '\\' {
			fmt.Fprintf(&b, "\\x%02x", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// format is a record as /dev/kmsg would return it (dictionary
// sorted by key).
func format(r Record) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d,%d,%d,%s;%s\n", r.Prio, r.Seq, r.TSUsec, r.Flags, escape(r.Message))
	keys := make([]string, 0, len(r.Dict))
	for k := range r.Dict {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s\n", k, escape(r.Dict[k]))
	}
	return b.Bytes()
}

// FuzzParse: the parser never panics; what it accepts formats
// back (header, escaped text, dictionary) into a record that parses to the
// same fields; the classifier never panics and its attempt is in range.
func FuzzParse(f *testing.F) {
	for _, path := range kmsgtest.Files(f) {
		for _, r := range kmsgtest.Load(f, path) {
			if r.Err == nil {
				f.Add(r.Rec)
			}
		}
	}
	f.Add([]byte("6,1,2,-;a\\x5cb\\xZZ\\x\n K=v\\x0a\n"))
	f.Add([]byte("6,1,2,-,caller=T1;x;y\n =z\n A\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := Parse(format(r))
		if err != nil {
			t.Fatalf("the formatted record %q does not parse: %v", format(r), err)
		}
		if diff := cmp.Diff(r, again); diff != "" {
			t.Fatalf("round trip of %q (-first +again):\n%s", b, diff)
		}
		if strings.ContainsAny(r.Flags, ",;\n") {
			t.Fatalf("flags %q hold a separator", r.Flags)
		}
		ev := Classify(r.Message)
		if ev.Attempt < 0 || ev.Attempt > MaxAttempt {
			t.Fatalf("attempt %d out of range for %q", ev.Attempt, r.Message)
		}
		if ev.Ctrl != "" && !strings.HasPrefix(r.Message, "nvme "+ev.Ctrl+": ") {
			t.Fatalf("controller %q is not the text's prefix in %q", ev.Ctrl, r.Message)
		}
	})
}
