package sysfs_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/srvlab/rds-csi/sysfs"
)

func TestParseAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    sysfs.Address
		wantErr bool
	}{
		{name: "live", in: "traddr=127.0.0.1,trsvcid=4420,src_addr=127.0.0.1\n",
			want: sysfs.Address{Traddr: "127.0.0.1", Trsvcid: "4420", SrcAddr: "127.0.0.1"}},
		{name: "connecting: no src_addr", in: "traddr=127.0.0.1,trsvcid=4420\n",
			want: sysfs.Address{Traddr: "127.0.0.1", Trsvcid: "4420"}},
		{name: "IPv6", in: "traddr=::1,trsvcid=4420,src_addr=::1\n",
			want: sysfs.Address{Traddr: "::1", Trsvcid: "4420", SrcAddr: "::1"}},
		{name: "IPv6 with a zone and full form", in: "traddr=fe80::1%eth0,trsvcid=4420,src_addr=2001:db8:0:0:0:0:0:1",
			want: sysfs.Address{Traddr: "fe80::1%eth0", Trsvcid: "4420", SrcAddr: "2001:db8:0:0:0:0:0:1"}},
		{name: "host_traddr and host_iface", in: "traddr=10.0.0.5,trsvcid=4420,host_traddr=10.0.0.9,host_iface=eth1,src_addr=10.0.0.9\n",
			want: sysfs.Address{Traddr: "10.0.0.5", Trsvcid: "4420", HostTraddr: "10.0.0.9", HostIface: "eth1", SrcAddr: "10.0.0.9"}},
		{name: "any order", in: "src_addr=1.2.3.4,trsvcid=4421,traddr=5.6.7.8",
			want: sysfs.Address{Traddr: "5.6.7.8", Trsvcid: "4421", SrcAddr: "1.2.3.4"}},
		{name: "unknown keys ignored", in: "traddr=1.1.1.1,trsvcid=4420,future_key=x,other=",
			want: sysfs.Address{Traddr: "1.1.1.1", Trsvcid: "4420"}},
		{name: "fc", in: "traddr=nn-0x1000:pn-0x2000,host_traddr=nn-0x3000:pn-0x4000\n",
			want: sysfs.Address{Traddr: "nn-0x1000:pn-0x2000", HostTraddr: "nn-0x3000:pn-0x4000"}},
		{name: "value with =", in: "traddr=a=b", want: sysfs.Address{Traddr: "a=b"}},
		{name: "empty value", in: "traddr=,trsvcid=4420", want: sysfs.Address{Trsvcid: "4420"}},
		{name: "empty", in: "", want: sysfs.Address{}},
		{name: "only a newline", in: "\n", want: sysfs.Address{}},
		{name: "field without =", in: "traddr=1.1.1.1,trsvcid", wantErr: true},
		{name: "empty field", in: "traddr=1.1.1.1,,trsvcid=4420", wantErr: true},
		{name: "trailing comma", in: "traddr=1.1.1.1,", wantErr: true},
		{name: "empty key", in: "=1.1.1.1", wantErr: true},
		{name: "key given twice", in: "traddr=1.1.1.1,traddr=2.2.2.2", wantErr: true},
		{name: "key given twice, first empty", in: "traddr=,traddr=2.2.2.2", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := sysfs.ParseAddress(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Errorf("ParseAddress(%q) = %+v, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddress(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseAddress(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestAddressString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   sysfs.Address
		want string
	}{
		{"zero", sysfs.Address{}, ""},
		{"live", sysfs.Address{Traddr: "127.0.0.1", Trsvcid: "4420", SrcAddr: "127.0.0.1"}, "traddr=127.0.0.1,trsvcid=4420,src_addr=127.0.0.1"},
		{"kernel order", sysfs.Address{SrcAddr: "s", HostIface: "i", HostTraddr: "h", Trsvcid: "p", Traddr: "t"},
			"traddr=t,trsvcid=p,host_traddr=h,host_iface=i,src_addr=s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzParseAddress: any input either fails or parses to an Address that
// survives formatting and parsing again.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"traddr=127.0.0.1,trsvcid=4420,src_addr=127.0.0.1\n",
		"traddr=127.0.0.1,trsvcid=4420\n",
		"traddr=::1,trsvcid=4420,host_iface=eth0,src_addr=::1\n",
		"traddr=nn-0x1000:pn-0x2000,host_traddr=nn-0x3000:pn-0x4000\n",
		"traddr=a=b,x=y",
		"=", ",", "traddr", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := sysfs.ParseAddress(s)
		if err != nil {
			return
		}
		for _, v := range fields(a) {
			if strings.Contains(v, ",") {
				t.Fatalf("ParseAddress(%q) = %+v: a value holds a comma", s, a)
			}
		}
		if endsInNewline(a) {
			// Formatting may move such a value last, where the newline is
			// taken for the attribute's own.
			return
		}
		b, err := sysfs.ParseAddress(a.String())
		if err != nil {
			t.Fatalf("ParseAddress(%q) of String() of %+v (from %q): %v", a.String(), a, s, err)
		}
		if b != a {
			t.Fatalf("round trip of %q: %+v != %+v", s, b, a)
		}
	})
}

// FuzzAddressFields: an address attribute built from fields parses back to
// exactly those fields, whatever order or surrounding unknown keys.
func FuzzAddressFields(f *testing.F) {
	f.Add("127.0.0.1", "4420", "127.0.0.1", "", "", false)
	f.Add("::1", "4420", "", "10.0.0.1", "eth0", true)
	f.Add("nn-0x1:pn-0x2", "", "", "nn-0x3:pn-0x4", "", false)
	f.Fuzz(func(t *testing.T, traddr, trsvcid, src, hostTraddr, hostIface string, reverse bool) {
		want := sysfs.Address{Traddr: traddr, Trsvcid: trsvcid, SrcAddr: src, HostTraddr: hostTraddr, HostIface: hostIface}
		for _, v := range fields(want) {
			if strings.Contains(v, ",") {
				t.Skip("a comma cannot be in a value")
			}
		}
		if endsInNewline(want) {
			t.Skip("a trailing newline is the attribute's")
		}
		parts := []string{"unknown_key=1"}
		for _, kv := range [][2]string{
			{"traddr", traddr}, {"trsvcid", trsvcid}, {"src_addr", src},
			{"host_traddr", hostTraddr}, {"host_iface", hostIface},
		} {
			if kv[1] != "" {
				parts = append(parts, kv[0]+"="+kv[1])
			}
		}
		if reverse {
			for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
				parts[i], parts[j] = parts[j], parts[i]
			}
		}
		s := strings.Join(parts, ",") + "\n"
		got, err := sysfs.ParseAddress(s)
		if err != nil {
			t.Fatalf("ParseAddress(%q): %v", s, err)
		}
		if got != want {
			t.Fatalf("ParseAddress(%q) = %+v, want %+v", s, got, want)
		}
	})
}

func fields(a sysfs.Address) []string {
	return []string{a.Traddr, a.Trsvcid, a.SrcAddr, a.HostTraddr, a.HostIface}
}

func endsInNewline(a sysfs.Address) bool {
	for _, v := range fields(a) {
		if strings.HasSuffix(v, "\n") || strings.HasSuffix(v, "\r") {
			return true
		}
	}
	return false
}
