package sysfs

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Internal tests of the attribute parsers, name matchers and the scan pool.

func TestParseTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"off", -1, false},
		{"600", 600, false},
		{"0", 0, false},
		{"-1", -1, false},
		{"OFF", 0, true},
		{"", 0, true},
		{"1.5", 0, true},
		{"off ", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTimeout([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseTimeout(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseDevNum(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    DevNum
		wantErr bool
	}{
		{"245:0\n", DevNum{245, 0}, false},
		{"259:12", DevNum{259, 12}, false},
		{"4095:1048575", DevNum{4095, 1048575}, false},
		{"245", DevNum{}, true},
		{"245:", DevNum{}, true},
		{":0", DevNum{}, true},
		{"a:b", DevNum{}, true},
		{"1:2:3", DevNum{}, true},
		{"-1:0", DevNum{}, true},
		{"4294967296:0", DevNum{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDevNum(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseDevNum(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseState(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want State
	}{
		{"new\n", StateNew},
		{"live\n", StateLive},
		{"resetting\n", StateResetting},
		{"connecting\n", StateConnecting},
		{"deleting\n", StateDeleting},
		{"deleting (no IO)\n", StateDeletingNoIO},
		{"dead\n", StateDead},
		{"live", StateLive},
		{"unknown state\n", StateUnknown},
		{"unknown", StateUnknown},
		{"Live", StateUnknown},
		{"", StateUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := ParseState(tt.in); got != tt.want {
				t.Errorf("ParseState(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestDiskKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want int
	}{
		{"nvme0n1", diskPlain},
		{"nvme12n34", diskPlain},
		{"nvme0c1n1", diskPath},
		{"nvme10c20n3", diskPath},
		{"nvme0", diskNone},
		{"ng0n1", diskNone},
		{"nvme0n1p1", diskNone},
		{"nvme0c1", diskNone},
		{"nvme0n", diskNone},
		{"nvmen1", diskNone},
		{"nvme-subsys0", diskNone},
		{"hwmon0", diskNone},
		{"nvme0c1n1c2", diskNone},
		{"", diskNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := diskKind([]byte(tt.name)); got != tt.want {
				t.Errorf("diskKind(%q) = %d, want %d", tt.name, got, tt.want)
			}
		})
	}
}

func TestCompareNames(t *testing.T) {
	t.Parallel()
	got := []string{"nvme10", "nvme9", "nvme1", "nvme-subsys2", "nvme100", "nvme0", "nvme01", "nvme-subsys10"}
	sortByInstance(got)
	want := []string{"nvme-subsys2", "nvme-subsys10", "nvme0", "nvme1", "nvme01", "nvme9", "nvme10", "nvme100"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sortByInstance mismatch (-want +got):\n%s", diff)
	}
}

func TestForEach(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		n       int
		fail    []int
		wantErr string
	}{
		{name: "none", n: 0},
		{name: "serial, no failure", n: 5},
		{name: "parallel, no failure", n: 1000},
		{name: "serial, first failure wins", n: 10, fail: []int{7, 3}, wantErr: "3"},
		{name: "parallel, lowest failure wins", n: 1000, fail: []int{999, 500, 700}, wantErr: "500"},
		{name: "parallel, failure at 0", n: 1000, fail: []int{0, 1}, wantErr: "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for range 20 { // scheduling varies between runs; the result must not
				seen := make([]atomic.Int32, tt.n)
				err := forEach(tt.n, func(s *scratch, i int) error {
					if s == nil {
						return errors.New("nil scratch")
					}
					seen[i].Add(1)
					for _, f := range tt.fail {
						if i == f {
							return errors.New(strconv.Itoa(i))
						}
					}
					return nil
				})
				if tt.wantErr == "" {
					if err != nil {
						t.Fatalf("forEach: %v", err)
					}
					for i := range seen {
						if c := seen[i].Load(); c != 1 {
							t.Fatalf("index %d visited %d times", i, c)
						}
					}
					continue
				}
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("forEach error = %v, want %s", err, tt.wantErr)
				}
			}
		})
	}
}

func TestCompact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []int
		keep []bool
		want []int
	}{
		{"all", []int{1, 2, 3}, []bool{true, true, true}, []int{1, 2, 3}},
		{"some", []int{1, 2, 3, 4}, []bool{false, true, false, true}, []int{2, 4}},
		{"none", []int{1, 2}, []bool{false, false}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, compact(tt.in, tt.keep)); diff != "" {
				t.Errorf("compact mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParseState: no panic; a known state is exactly its spelling, and
// every spelling maps back to its state.
func FuzzParseState(f *testing.F) {
	for _, st := range States() {
		f.Add(st.String())
		f.Add(st.String() + "\n")
	}
	f.Add("unknown state\n")
	f.Fuzz(func(t *testing.T, s string) {
		st := ParseState(s)
		if st == StateUnknown {
			for _, known := range States()[1:] {
				if trimNewline(s) == known.String() {
					t.Fatalf("ParseState(%q) = unknown, but it spells %v", s, known)
				}
			}
			return
		}
		if st.String() != trimNewline(s) {
			t.Fatalf("ParseState(%q) = %v", s, st)
		}
		if ParseState(st.String()) != st {
			t.Fatalf("ParseState(%q) does not give back %v", st.String(), st)
		}
	})
}

// FuzzParseInt: the integer parser agrees with strconv, and what it accepts
// formats back to the same number.
func FuzzParseInt(f *testing.F) {
	for _, s := range []string{"0", "-1", "600", "+5", "007", "9223372036854775807", "9223372036854775808", "", "x", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseInt([]byte(s))
		want, werr := strconv.Atoi(s)
		if (err != nil) != (werr != nil) || got != want {
			t.Fatalf("parseInt(%q) = %d, %v; strconv.Atoi says %d, %v", s, got, err, want, werr)
		}
		if err != nil {
			return
		}
		if back, err := parseInt([]byte(strconv.Itoa(got))); err != nil || back != got {
			t.Fatalf("parseInt(Itoa(%d)) = %d, %v", got, back, err)
		}
	})
}

// FuzzParseTimeout: "off" is -1; what parses formats back (as the kernel
// would print it) to the same value; nothing panics.
func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"off", "600", "0", "-1", "OFF", "", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseTimeout([]byte(s))
		if s == "off" && (err != nil || v != -1) {
			t.Fatalf(`parseTimeout("off") = %d, %v`, v, err)
		}
		if err != nil || v < -1 {
			return
		}
		k := formatTimeout(v)
		if v == -1 && k != "off" {
			t.Fatalf("formatTimeout(-1) = %q", k)
		}
		if back, err := parseTimeout([]byte(k)); err != nil || back != v {
			t.Fatalf("parseTimeout(formatTimeout(%d) = %q) = %d, %v", v, k, back, err)
		}
	})
}

// FuzzParseDevNum: no panic; what parses round-trips through String; any
// pair of uint32 formats and parses back.
func FuzzParseDevNum(f *testing.F) {
	for _, s := range []string{"245:0\n", "259:1", "0:0", ":", "1:", "a:1", "4294967295:4294967295", "4294967296:1"} {
		f.Add(s, uint32(0), uint32(0))
	}
	f.Add("", uint32(math.MaxUint32), uint32(7))
	f.Fuzz(func(t *testing.T, s string, maj, minor uint32) {
		if d, err := ParseDevNum(s); err == nil {
			back, err := ParseDevNum(d.String())
			if err != nil || back != d {
				t.Fatalf("ParseDevNum(%q) = %v, but %q parses to %v, %v", s, d, d.String(), back, err)
			}
		}
		d := DevNum{Major: maj, Minor: minor}
		back, err := ParseDevNum(d.String() + "\n")
		if err != nil || back != d {
			t.Fatalf("ParseDevNum(%q) = %v, %v; want %v", d.String(), back, err, d)
		}
	})
}

var (
	diskName       = regexp.MustCompile(`^nvme[0-9]+(c[0-9]+)?n[0-9]+$`)
	controllerName = regexp.MustCompile(`^nvme[0-9]+$`)
	subsystemName  = regexp.MustCompile(`^nvme-subsys[0-9]+$`)
)

// FuzzNames: the hand-written name matchers agree with the regular
// expressions of the kernel's naming, and instance numbers parse.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"nvme0", "nvme12", "nvme0n1", "nvme0c1n1", "nvme-subsys3", "ng0n1", "nvme", "nvme0n1p1", "nvme-subsys", "nvme01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := []byte(s)
		if got, want := diskKind(b) != diskNone, diskName.MatchString(s); got != want {
			t.Fatalf("diskKind(%q) = %d, regexp says disk %v", s, diskKind(b), want)
		}
		if diskKind(b) == diskPath != (diskName.MatchString(s) && diskName.FindStringSubmatch(s)[1] != "") {
			t.Fatalf("diskKind(%q) = %d, per-path mismatch", s, diskKind(b))
		}
		if got, want := isControllerName(b), controllerName.MatchString(s); got != want {
			t.Fatalf("isControllerName(%q) = %v, want %v", s, got, want)
		}
		if got, want := isSubsystemName(b), subsystemName.MatchString(s); got != want {
			t.Fatalf("isSubsystemName(%q) = %v, want %v", s, got, want)
		}
		if isControllerName(b) {
			if n, ok := instanceOf(s, "nvme"); ok && fmt.Sprint(n) != trimZeros(s[len("nvme"):]) {
				t.Fatalf("instanceOf(%q) = %d", s, n)
			}
		}
	})
}

func trimZeros(s string) string {
	for len(s) > 1 && s[0] == '0' {
		s = s[1:]
	}
	return s
}

func TestControllerInstance(t *testing.T) {
	for _, tc := range []struct {
		name string
		want int
		ok   bool
	}{
		{"nvme0", 0, true},
		{"nvme12", 12, true},
		{"nvme2147483647", 2147483647, true},
		{"nvme2147483648", 0, false},
		{"nvme99999999999", 0, false},
		{"nvme01", 0, false},
		{"nvme", 0, false},
		{"nvme-1", 0, false},
		{"nvme+1", 0, false},
		{"nvme1n1", 0, false},
		{"nvme1x", 0, false},
		{"nvme-subsys1", 0, false},
		{"ng0n1", 0, false},
	} {
		n, ok := ControllerInstance(tc.name)
		if n != tc.want || ok != tc.ok {
			t.Errorf("ControllerInstance(%q) = %d, %v; want %d, %v", tc.name, n, ok, tc.want, tc.ok)
		}
	}
}

// formatTimeout is the kernel's spelling of a timeout (the oracle of
// FuzzParseTimeout): "off" for any negative value (the kernel stores every
// negative value as -1).
func formatTimeout(v int) string {
	if v < 0 {
		return "off"
	}
	return strconv.Itoa(v)
}
