package fabrics

import (
	"strings"
	"testing"
)

func TestCanonicalIP(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.5":        "10.0.0.5",
		"fd00:0:0::5":     "fd00::5",
		"FD00::5":         "fd00::5",
		"fe80::1%eth0":    "fe80::1%eth0",
		"::ffff:10.0.0.5": "10.0.0.5",
		"target.example":  "target.example",
		"":                "",
	} {
		if got := CanonicalIP(in); got != want {
			t.Errorf("CanonicalIP(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHostPort(t *testing.T) {
	for _, tc := range []struct{ traddr, trsvcid, want string }{
		{"10.0.0.5", "4420", "10.0.0.5:4420"},
		{"fd00:0::5", "4420", "[fd00::5]:4420"},
		{"::ffff:10.0.0.5", "4420", "10.0.0.5:4420"},
		{"fe80::1%eth0", "4420", "[fe80::1%eth0]:4420"},
		{"target.example", "4420", "target.example:4420"},
	} {
		if got := HostPort(tc.traddr, tc.trsvcid); got != tc.want {
			t.Errorf("HostPort(%q, %q) = %q, want %q", tc.traddr, tc.trsvcid, got, tc.want)
		}
	}
}

// TestWrittenAddressMatches: what Options writes for traddr and trsvcid is
// what Matches looks for in sysfs.
func TestWrittenAddressMatches(t *testing.T) {
	o := minimalOptions()
	o.Traddr = "FD00:0::10"
	s, err := o.optionString()
	if err != nil {
		t.Fatal(err)
	}
	c := liveCtrl(0)
	c.Address.Traddr, c.Address.Trsvcid = "fd00::10", "4420"
	if want := "traddr=fd00::10,trsvcid=4420,"; !strings.Contains(s, want) {
		t.Fatalf("option string %q lacks %q", s, want)
	}
	if !o.Matches(&c) {
		t.Errorf("Matches(%+v) = false for the controller the option string %q makes", c.Address, s)
	}
}
