package csi

import (
	"errors"
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/routeros"
)

func TestParseRDSAddress(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":               "10.0.0.1:22",
		"10.0.0.1:2222":          "10.0.0.1:2222",
		"fd00::1":                "[fd00::1]:22",
		"FD00:0::0001":           "[fd00::1]:22",
		"[fd00::1]:22":           "[fd00::1]:22",
		"::ffff:10.0.0.1":        "10.0.0.1:22",
		"RDS.Example.com.":       "rds.example.com:22",
		"rds-1.lab:22":           "rds-1.lab:22",
		"rds":                    "rds:22",
		"2rds.example.com:65535": "2rds.example.com:65535",
	} {
		got, err := ParseRDSAddress(in)
		if err != nil || got != want {
			t.Errorf("ParseRDSAddress(%q) = %q, %v; want %q", in, got, err, want)
			continue
		}
		if again, err := ParseRDSAddress(got); err != nil || again != got {
			t.Errorf("canonical %q parses to %q, %v: not a fixpoint", got, again, err)
		}
	}
	for _, in := range []string{
		"", " ", "10.0.0.1 ", " 10.0.0.1", "10.0.0.1:", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:022", "10.0.0.1:+22",
		"10.0.0.1:ssh", "10.0.0.256", "1.2.3", "01.2.3.4", "fe80::1%eth0", "[fe80::1%eth0]:22", "[fd00::1]",
		"rds-.example.com", "-rds", "rds..example", ".rds", "rds_1", "user@rds", "rds/22", "rds:22:22",
		"10.0.0.1;/system reboot", "10.0.0.1\n/system reboot", "rds\x00", "rds\"", "$(reboot)", "-oProxyCommand=x",
		"rds.example.com:22 -p 23", "ドメイン.jp", strings.Repeat("a", 64) + ".com", strings.Repeat("a.", 46) + "com",
	} {
		got, err := ParseRDSAddress(in)
		var pe *ParamError
		if err == nil || !errors.As(err, &pe) || pe.Key != KeyRDSAddress || !errors.Is(err, fabrics.ErrInvalidOption) {
			t.Errorf("ParseRDSAddress(%q) = %q, %v; want a ParamError naming %s", in, got, err, KeyRDSAddress)
		}
	}
}

func TestVolumeID(t *testing.T) {
	slot, _ := routeros.SlotFor("pvc-1")
	snap, _ := routeros.SnapshotSlotFor("snap-1")
	host := strings.Repeat("a", 40) + "." + strings.Repeat("b", 40) + "."
	longest := host + strings.Repeat("c", MaxRDSAddressBytes-len(host)-len(":65535")) + ":65535"
	if _, err := ParseRDSAddress(longest); err != nil {
		t.Fatalf("the longest address is refused: %v", err)
	}
	for _, rds := range []string{"10.0.0.1:22", "[fd00::1]:2222", "rds.example.com:22", longest} {
		id, err := FormatVolumeID(rds, slot)
		if err != nil {
			t.Fatal(err)
		}
		if len(id) > MaxIDBytes {
			t.Errorf("id %q: %d bytes, over %d", id, len(id), MaxIDBytes)
		}
		got, err := ParseVolumeID(id)
		if err != nil || got != (ID{RDS: rds, Slot: slot}) || got.String() != id {
			t.Errorf("ParseVolumeID(%q) = %+v, %v", id, got, err)
		}
		if _, err := ParseSnapshotID(id); err == nil {
			t.Errorf("volume id %q parses as a snapshot id", id)
		}
		sid, err := FormatSnapshotID(rds, snap)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ParseSnapshotID(sid); err != nil || got != (ID{RDS: rds, Slot: snap}) {
			t.Errorf("ParseSnapshotID(%q) = %+v, %v", sid, got, err)
		}
		if _, err := ParseVolumeID(sid); err == nil {
			t.Errorf("snapshot id %q parses as a volume id", sid)
		}
	}
	// The preview's bare slot: a legacy volume id on the default RDS; no
	// legacy snapshot id.
	if got, err := ParseVolumeID(slot); err != nil || got != (ID{Slot: slot, Legacy: true}) || got.String() != slot {
		t.Errorf("ParseVolumeID(bare slot) = %+v, %v; want Legacy", got, err)
	}
	if _, err := ParseSnapshotID(snap); err == nil {
		t.Error("a bare snapshot slot parses as a snapshot id")
	}
	// Non-canonical or malformed: refused, never guessed.
	for _, bad := range []string{
		"", "@10.0.0.1:22", slot + "@", slot + "@10.0.0.1", slot + "@RDS:22", slot + "@[fd00::0001]:22", slot + "@fd00::1:22",
		slot + "@10.0.0.1:22@10.0.0.2:22", slot + "@10.0.0.1:22 ", " " + slot + "@10.0.0.1:22", "db1@10.0.0.1:22", "db1",
		strings.ToUpper(slot) + "@10.0.0.1:22", slot[:len(slot)-1] + "@10.0.0.1:22", slot + "0@10.0.0.1:22",
		"fake-vol-id", slot + "@10.0.0.1:22;/system reboot", slot + "@" + longest + "0",
	} {
		if got, err := ParseVolumeID(bad); err == nil {
			t.Errorf("ParseVolumeID(%q) = %+v, want an error", bad, got)
		}
	}
	for _, c := range []struct{ rds, slot string }{{"10.0.0.1", slot}, {"RDS:22", slot}, {"10.0.0.1:22", "db1"}, {"10.0.0.1:22", snap}} {
		if id, err := FormatVolumeID(c.rds, c.slot); err == nil {
			t.Errorf("FormatVolumeID(%q, %q) = %q, want an error", c.rds, c.slot, id)
		}
	}
}

// FuzzParseVolumeID: an id that parses formats back to itself (one string
// per volume), its address is canonical, and its slot is a volume slot.
func FuzzParseVolumeID(f *testing.F) {
	slot, _ := routeros.SlotFor("pvc-1")
	for _, s := range []string{slot, slot + "@10.0.0.1:22", slot + "@[fd00::1]:22", slot + "@rds.example.com:2222", "db1@x:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseVolumeID(s)
		if err != nil {
			return
		}
		if id.String() != s || len(s) > MaxIDBytes || !routeros.IsVolumeSlot(id.Slot) {
			t.Fatalf("ParseVolumeID(%q) = %+v", s, id)
		}
		if id.Legacy {
			return
		}
		if c, err := ParseRDSAddress(id.RDS); err != nil || c != id.RDS {
			t.Fatalf("ParseVolumeID(%q): address %q not canonical (%q, %v)", s, id.RDS, c, err)
		}
	})
}
