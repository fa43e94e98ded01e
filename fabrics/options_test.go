package fabrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidate(t *testing.T) {
	long := func(n int) string { // a valid NQN of exactly n bytes
		s := "nqn.2014-08.com.example:"
		return s + strings.Repeat("x", n-len(s))
	}
	tests := []struct {
		name  string
		edit  func(o *Options)
		field string // "" means valid
	}{
		{"minimal", func(o *Options) {}, ""},
		{"full", func(o *Options) { *o = fullOptions() }, ""},

		{"transport tcp", func(o *Options) { o.Transport = "tcp" }, ""},
		{"transport rdma", func(o *Options) { o.Transport = "rdma" }, "transport"},
		{"transport upper case", func(o *Options) { o.Transport = "TCP" }, "transport"},

		{"traddr ipv6", func(o *Options) { o.Traddr = "fd00::10" }, ""},
		{"traddr ipv6 non-canonical", func(o *Options) { o.Traddr = "FD00:0::10" }, ""},
		{"traddr loopback", func(o *Options) { o.Traddr = "127.0.0.1" }, ""},
		{"traddr missing", func(o *Options) { o.Traddr = "" }, "traddr"},
		{"traddr localhost", func(o *Options) { o.Traddr = "localhost" }, "traddr"},
		{"traddr host name", func(o *Options) { o.Traddr = "rds.example.com" }, "traddr"},
		{"traddr zone", func(o *Options) { o.Traddr = "fe80::1%eth0" }, "traddr"},
		{"traddr 4in6", func(o *Options) { o.Traddr = "::ffff:192.0.2.10" }, "traddr"},
		{"traddr unspecified", func(o *Options) { o.Traddr = "0.0.0.0" }, "traddr"},
		{"traddr unspecified v6", func(o *Options) { o.Traddr = "::" }, "traddr"},
		{"traddr multicast", func(o *Options) { o.Traddr = "224.0.0.1" }, "traddr"},
		{"traddr leading zero", func(o *Options) { o.Traddr = "192.0.2.010" }, "traddr"},
		{"traddr with port", func(o *Options) { o.Traddr = "192.0.2.10:4420" }, "traddr"},
		{"traddr bracketed", func(o *Options) { o.Traddr = "[fd00::10]" }, "traddr"},

		{"trsvcid default", func(o *Options) { o.Trsvcid = 0 }, ""},
		{"trsvcid 1", func(o *Options) { o.Trsvcid = 1 }, ""},
		{"trsvcid 65535", func(o *Options) { o.Trsvcid = 65535 }, ""},
		{"trsvcid negative", func(o *Options) { o.Trsvcid = -1 }, "trsvcid"},
		{"trsvcid 65536", func(o *Options) { o.Trsvcid = 65536 }, "trsvcid"},

		{"nqn discovery", func(o *Options) { o.NQN = DiscoveryNQN }, ""},
		{"nqn uuid form", func(o *Options) { o.NQN = testHostNQN }, ""},
		{"nqn uuid upper case", func(o *Options) { o.NQN = "nqn.2014-08.org.nvmexpress:uuid:5F1E0D3C-2B4A-4C6D-8E9F-0A1B2C3D4E5F" }, ""},
		{"nqn no user part", func(o *Options) { o.NQN = "nqn.2016-06.io.spdk" }, ""},
		{"nqn several colons", func(o *Options) { o.NQN = "nqn.1992-08.com.netapp:sn.123:subsystem.a" }, ""},
		{"nqn utf-8", func(o *Options) { o.NQN = "nqn.2024-01.io.example:volumen-año" }, ""},
		{"nqn 222 bytes", func(o *Options) { o.NQN = long(222) }, ""},
		{"nqn 223 bytes", func(o *Options) { o.NQN = long(223) }, "nqn"},
		{"nqn missing", func(o *Options) { o.NQN = "" }, "nqn"},
		{"nqn iqn", func(o *Options) { o.NQN = "iqn.2014-08.org.example:a" }, "nqn"},
		{"nqn bare name", func(o *Options) { o.NQN = "blktests-subsystem-1" }, "nqn"},
		{"nqn month 13", func(o *Options) { o.NQN = "nqn.2014-13.org.example:a" }, "nqn"},
		{"nqn month 00", func(o *Options) { o.NQN = "nqn.2014-00.org.example:a" }, "nqn"},
		{"nqn short year", func(o *Options) { o.NQN = "nqn.14-08.org.example:a" }, "nqn"},
		{"nqn no domain", func(o *Options) { o.NQN = "nqn.2014-08.:a" }, "nqn"},
		{"nqn no dot after date", func(o *Options) { o.NQN = "nqn.2014-08:org.example" }, "nqn"},
		{"nqn empty label", func(o *Options) { o.NQN = "nqn.2014-08.org..example:a" }, "nqn"},
		{"nqn label hyphen", func(o *Options) { o.NQN = "nqn.2014-08.-org.example:a" }, "nqn"},
		{"nqn label underscore", func(o *Options) { o.NQN = "nqn.2014-08.org.ex_ample:a" }, "nqn"},
		{"nqn label too long", func(o *Options) { o.NQN = "nqn.2014-08.org." + strings.Repeat("a", 64) }, "nqn"},
		{"nqn empty user part", func(o *Options) { o.NQN = "nqn.2014-08.org.example:" }, "nqn"},
		{"nqn bad uuid", func(o *Options) { o.NQN = "nqn.2014-08.org.nvmexpress:uuid:not-a-uuid" }, "nqn"},
		{"nqn invalid utf-8", func(o *Options) { o.NQN = "nqn.2014-08.org.example:\xff" }, "nqn"},

		{"hostnqn", func(o *Options) { o.HostNQN = "nqn.2014-08.org.example:host1" }, ""},
		{"hostnqn bad", func(o *Options) { o.HostNQN = "host1" }, "hostnqn"},

		{"hostid", func(o *Options) { o.HostID = testHostID }, ""},
		{"hostid upper case", func(o *Options) { o.HostID = strings.ToUpper(testHostID) }, ""},
		{"hostid short", func(o *Options) { o.HostID = "1234" }, "hostid"},
		{"hostid no hyphens", func(o *Options) { o.HostID = strings.ReplaceAll(testHostID, "-", "") }, "hostid"},
		{"hostid non-hex", func(o *Options) { o.HostID = "gf1e0d3c-2b4a-4c6d-8e9f-0a1b2c3d4e5f" }, "hostid"},
		{"hostid braces", func(o *Options) { o.HostID = "{" + testHostID + "}" }, "hostid"},

		{"host_traddr", func(o *Options) { o.HostTraddr = "192.0.2.20" }, ""},
		{"host_traddr ipv6", func(o *Options) { o.HostTraddr = "fd00::20" }, ""},
		{"host_traddr name", func(o *Options) { o.HostTraddr = "localhost" }, "host_traddr"},
		{"host_traddr zone", func(o *Options) { o.HostTraddr = "fe80::1%1" }, "host_traddr"},

		{"host_iface", func(o *Options) { o.HostIface = "eth0" }, ""},
		{"host_iface 15 bytes", func(o *Options) { o.HostIface = "enp0s31f6.40001" }, ""},
		{"host_iface 16 bytes", func(o *Options) { o.HostIface = "enp0s31f6.400012" }, "host_iface"},
		{"host_iface slash", func(o *Options) { o.HostIface = "eth/0" }, "host_iface"},
		{"host_iface colon", func(o *Options) { o.HostIface = "eth0:1" }, "host_iface"},
		{"host_iface dot", func(o *Options) { o.HostIface = "." }, "host_iface"},
		{"host_iface dotdot", func(o *Options) { o.HostIface = ".." }, "host_iface"},

		{"ctrl_loss_tmo forever", func(o *Options) { o.CtrlLossTmo = Int(-1) }, ""},
		{"ctrl_loss_tmo 0", func(o *Options) { o.CtrlLossTmo = Int(0) }, ""},
		{"ctrl_loss_tmo max", func(o *Options) { o.CtrlLossTmo = Int(math.MaxInt32) }, ""},
		{"ctrl_loss_tmo -2", func(o *Options) { o.CtrlLossTmo = Int(-2) }, "ctrl_loss_tmo"},
		{"ctrl_loss_tmo overflow", func(o *Options) { o.CtrlLossTmo = Int(math.MaxInt32 + 1) }, "ctrl_loss_tmo"},

		{"reconnect_delay 1", func(o *Options) { o.ReconnectDelay = Int(1) }, ""},
		{"reconnect_delay 0", func(o *Options) { o.ReconnectDelay = Int(0) }, "reconnect_delay"},
		{"reconnect_delay negative", func(o *Options) { o.ReconnectDelay = Int(-1) }, "reconnect_delay"},
		{"reconnect_delay huge", func(o *Options) { o.ReconnectDelay = Int(maxSeconds + 1) }, "reconnect_delay"},

		{"keep_alive_tmo 0", func(o *Options) { o.KeepAliveTmo = Int(0) }, ""},
		{"keep_alive_tmo negative", func(o *Options) { o.KeepAliveTmo = Int(-1) }, "keep_alive_tmo"},

		{"fast_io_fail_tmo off", func(o *Options) { o.FastIOFailTmo = Int(-1) }, ""},
		{"fast_io_fail_tmo 0", func(o *Options) { o.FastIOFailTmo = Int(0) }, ""},
		{"fast_io_fail_tmo -2", func(o *Options) { o.FastIOFailTmo = Int(-2) }, "fast_io_fail_tmo"},
		{"fast_io_fail_tmo equals ctrl_loss_tmo", func(o *Options) { o.CtrlLossTmo, o.FastIOFailTmo = Int(20), Int(20) }, ""},
		{"fast_io_fail_tmo above ctrl_loss_tmo", func(o *Options) { o.CtrlLossTmo, o.FastIOFailTmo = Int(20), Int(30) }, "fast_io_fail_tmo"},
		{"fast_io_fail_tmo above default ctrl_loss_tmo", func(o *Options) { o.FastIOFailTmo = Int(601) }, "fast_io_fail_tmo"},
		{"fast_io_fail_tmo with forever", func(o *Options) { o.CtrlLossTmo, o.FastIOFailTmo = Int(-1), Int(3600) }, ""},

		{"nr_io_queues 1", func(o *Options) { o.NrIOQueues = Int(1) }, ""},
		{"nr_io_queues 0", func(o *Options) { o.NrIOQueues = Int(0) }, "nr_io_queues"},
		{"nr_io_queues 65536", func(o *Options) { o.NrIOQueues = Int(65536) }, "nr_io_queues"},
		{"nr_write_queues 1", func(o *Options) { o.NrWriteQueues = Int(1) }, ""},
		{"nr_write_queues 0", func(o *Options) { o.NrWriteQueues = Int(0) }, "nr_write_queues"},
		{"nr_poll_queues 1", func(o *Options) { o.NrPollQueues = Int(1) }, ""},
		{"nr_poll_queues -1", func(o *Options) { o.NrPollQueues = Int(-1) }, "nr_poll_queues"},

		{"queue_size 16", func(o *Options) { o.QueueSize = Int(16) }, ""},
		{"queue_size 1024", func(o *Options) { o.QueueSize = Int(1024) }, ""},
		{"queue_size 15", func(o *Options) { o.QueueSize = Int(15) }, "queue_size"},
		{"queue_size 1025", func(o *Options) { o.QueueSize = Int(1025) }, "queue_size"},

		{"tos 0", func(o *Options) { o.TOS = Int(0) }, ""},
		{"tos 255", func(o *Options) { o.TOS = Int(255) }, ""},
		{"tos -1", func(o *Options) { o.TOS = Int(-1) }, "tos"},
		{"tos 256", func(o *Options) { o.TOS = Int(256) }, "tos"},

		{"keyring", func(o *Options) { o.Keyring = Int(1) }, ""},
		{"keyring 0", func(o *Options) { o.Keyring = Int(0) }, "keyring"},
		{"tls_key", func(o *Options) { o.TLSKey = Int(math.MaxInt32) }, ""},
		{"tls_key 0", func(o *Options) { o.TLSKey = Int(0) }, "tls_key"},

		{"dhchap_secret 32 bytes", func(o *Options) { o.DHCHAPSecret = makeSecret(0, 32, 3) }, ""},
		{"dhchap_secret 48 bytes", func(o *Options) { o.DHCHAPSecret = makeSecret(2, 48, 3) }, ""},
		{"dhchap_secret 64 bytes", func(o *Options) { o.DHCHAPSecret = makeSecret(3, 64, 3) }, ""},
		{"dhchap_secret spec example", func(o *Options) { o.DHCHAPSecret = "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:" }, ""},
		{"dhchap_secret no prefix", func(o *Options) { o.DHCHAPSecret = "ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n" }, "dhchap_secret"},
		{"dhchap_secret hash 04", func(o *Options) { o.DHCHAPSecret = makeSecret(4, 32, 3) }, "dhchap_secret"},
		{"dhchap_secret no trailing colon", func(o *Options) { o.DHCHAPSecret = Secret(strings.TrimSuffix(string(hostSecret), ":")) }, "dhchap_secret"},
		{"dhchap_secret bad base64", func(o *Options) { o.DHCHAPSecret = "DHHC-1:00:!!!!:" }, "dhchap_secret"},
		{"dhchap_secret unpadded", func(o *Options) {
			o.DHCHAPSecret = Secret(strings.ReplaceAll(string(makeSecret(2, 48, 3)), "=", ""))
		}, "dhchap_secret"},
		{"dhchap_secret 16 bytes", func(o *Options) { o.DHCHAPSecret = makeSecret(0, 16, 3) }, "dhchap_secret"},
		{"dhchap_secret bad crc", func(o *Options) { o.DHCHAPSecret = "DHHC-1:00:Jc/My1o0qtLCWRp+sHhAVafdfaS7YQOMYhk9zSmlatobqB8C:" }, "dhchap_secret"},
		{"dhchap_ctrl_secret", func(o *Options) { o.DHCHAPSecret, o.DHCHAPCtrlSecret = hostSecret, ctrlSecret }, ""},
		{"dhchap_ctrl_secret alone", func(o *Options) { o.DHCHAPCtrlSecret = ctrlSecret }, "dhchap_ctrl_secret"},
		{"dhchap_ctrl_secret bad", func(o *Options) { o.DHCHAPSecret, o.DHCHAPCtrlSecret = hostSecret, "DHHC-1:00:x:" }, "dhchap_ctrl_secret"},

		{"concat", func(o *Options) { o.DHCHAPSecret, o.Concat = hostSecret, true }, ""},
		{"concat without secret", func(o *Options) { o.Concat = true }, "concat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := minimalOptions()
			tt.edit(&o)
			err := o.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("Validate() = %v, want ErrInvalidOption", err)
			}
			if errors.Is(err, ErrUnsupportedOption) {
				t.Errorf("Validate() = %v: validation must not claim ErrUnsupportedOption", err)
			}
			var oe *OptionError
			if !errors.As(err, &oe) {
				t.Fatalf("Validate() = %T, want *OptionError", err)
			}
			if oe.Field != tt.field {
				t.Errorf("Field = %q, want %q (%v)", oe.Field, tt.field, err)
			}
			if oe.Allowed == "" {
				t.Errorf("Allowed is empty (%v)", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("message %q does not name %s", err, tt.field)
			}
			if strings.HasPrefix(tt.field, "dhchap") && oe.Value != redacted {
				t.Errorf("secret Value = %q, want %q", oe.Value, redacted)
			}
			mustNotContainSecret(t, "error", err.Error())
		})
	}
}

func TestValidateReportsValue(t *testing.T) {
	o := minimalOptions()
	o.Traddr = "localhost"
	var oe *OptionError
	if !errors.As(o.Validate(), &oe) {
		t.Fatal("want *OptionError")
	}
	want := &OptionError{Field: "traddr", Value: "localhost", Allowed: ruleIP + " (host names such as localhost are not resolved)"}
	if diff := cmp.Diff(want, oe, cmp.AllowUnexported(OptionError{})); diff != "" {
		t.Errorf("OptionError (-want +got):\n%s", diff)
	}
	if got, want := oe.Error(), `fabrics: invalid traddr "localhost": want `+want.Allowed; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// injectable lists every string field with a valid value to corrupt.
var injectable = []struct {
	field string
	set   func(o *Options, v string)
	valid string
}{
	{"transport", func(o *Options, v string) { o.Transport = v }, "tcp"},
	{"traddr", func(o *Options, v string) { o.Traddr = v }, "192.0.2.10"},
	{"nqn", func(o *Options, v string) { o.NQN = v }, testNQN},
	{"hostnqn", func(o *Options, v string) { o.HostNQN = v }, testHostNQN},
	{"host_traddr", func(o *Options, v string) { o.HostTraddr = v }, "192.0.2.20"},
	{"host_iface", func(o *Options, v string) { o.HostIface = v }, "eth0"},
	{"hostid", func(o *Options, v string) { o.HostID = v }, testHostID},
	{"dhchap_secret", func(o *Options, v string) { o.DHCHAPSecret = Secret(v) }, string(hostSecret)},
	{"dhchap_ctrl_secret", func(o *Options, v string) {
		o.DHCHAPSecret = hostSecret
		o.DHCHAPCtrlSecret = Secret(v)
	}, string(ctrlSecret)},
}

func TestInjectionRefusedBeforeWrite(t *testing.T) {
	payloads := []struct{ name, s string }{
		{"comma", ","},
		{"equals", "="},
		{"space", " "},
		{"tab", "\t"},
		{"newline", "\n"},
		{"carriage return", "\r"},
		{"NUL", "\x00"},
		{"DEL", "\x7f"},
		{"NEL", "\u0085"},
		{"no-break space", "\u00a0"},
	}
	for _, f := range injectable {
		for _, p := range payloads {
			for _, where := range []string{"suffix", "prefix"} {
				t.Run(f.field+"/"+p.name+"/"+where, func(t *testing.T) {
					v := f.valid + p.s + "duplicate_connect"
					if where == "prefix" {
						v = "duplicate_connect" + p.s + f.valid
					}
					o := minimalOptions()
					f.set(&o, v)
					dev := newFakeDevice()
					_, err := newTestClient(dev, &fakeSys{}).Connect(t.Context(), o)
					if !errors.Is(err, ErrInvalidOption) {
						t.Fatalf("Connect() = %v, want ErrInvalidOption", err)
					}
					var oe *OptionError
					if !errors.As(err, &oe) || oe.Field != f.field {
						t.Fatalf("Connect() = %v, want an *OptionError for %s", err, f.field)
					}
					if dev.opens != 0 || len(dev.writes) != 0 {
						t.Errorf("device touched: %d opens, writes %q", dev.opens, dev.writes)
					}
					if strings.HasPrefix(f.field, "dhchap") {
						if oe.Value != redacted || strings.Contains(err.Error(), v) {
							t.Errorf("secret leaked: Value %q, message %q", oe.Value, err)
						}
					}
				})
			}
		}
	}
}

func TestSecretEqualsSignOnlyAsPadding(t *testing.T) {
	s := makeSecret(2, 48, 5) // 52 bytes: base64 ends in "=="
	if !strings.Contains(string(s), "==:") {
		t.Fatalf("test secret %q has no padding", s)
	}
	o := minimalOptions()
	o.DHCHAPSecret = s
	if err := o.Validate(); err != nil {
		t.Fatalf("padded secret refused: %v", err)
	}
	o.DHCHAPSecret = Secret(strings.Replace(string(s), "==:", "=:", 1)) // padding cut short
	if err := o.Validate(); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("Validate() = %v, want ErrInvalidOption", err)
	}
}

func TestOptionString(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{
			name: "minimal: transport and trsvcid defaults are sent",
			opts: minimalOptions(),
			want: "transport=tcp,traddr=192.0.2.10,trsvcid=4420,nqn=" + testNQN,
		},
		{
			name: "given port",
			opts: Options{Traddr: "192.0.2.10", Trsvcid: 4421, NQN: testNQN},
			want: "transport=tcp,traddr=192.0.2.10,trsvcid=4421,nqn=" + testNQN,
		},
		{
			name: "ctrl_loss_tmo -1 and fast_io_fail_tmo -1",
			opts: Options{Traddr: "192.0.2.10", NQN: testNQN, CtrlLossTmo: Int(-1), FastIOFailTmo: Int(-1)},
			want: "transport=tcp,traddr=192.0.2.10,trsvcid=4420,nqn=" + testNQN + ",ctrl_loss_tmo=-1,fast_io_fail_tmo=-1",
		},
		{
			name: "zero values that are set are sent",
			opts: Options{Traddr: "192.0.2.10", NQN: testNQN, CtrlLossTmo: Int(0), KeepAliveTmo: Int(0), TOS: Int(0)},
			want: "transport=tcp,traddr=192.0.2.10,trsvcid=4420,nqn=" + testNQN + ",ctrl_loss_tmo=0,keep_alive_tmo=0,tos=0",
		},
		{
			name: "ipv6 sent canonical",
			opts: Options{Traddr: "FD00:0:0::10", HostTraddr: "fd00:0::20", NQN: testNQN},
			want: "transport=tcp,traddr=fd00::10,trsvcid=4420,nqn=" + testNQN + ",host_traddr=fd00::20",
		},
		{
			name: "full, in kernel table order",
			opts: fullOptions(),
			want: "transport=tcp,traddr=192.0.2.10,trsvcid=4420,nqn=" + testNQN +
				",queue_size=128,nr_io_queues=4,reconnect_delay=2,ctrl_loss_tmo=-1,keep_alive_tmo=5" +
				",hostnqn=" + testHostNQN + ",host_traddr=192.0.2.20,host_iface=eth0,hostid=" + testHostID +
				",duplicate_connect,disable_sqflow,hdr_digest,data_digest,nr_write_queues=2,nr_poll_queues=1,tos=0" +
				",keyring=123456,tls_key=654321,fast_io_fail_tmo=30" +
				",dhchap_secret=" + string(hostSecret) + ",dhchap_ctrl_secret=" + string(ctrlSecret) + ",tls",
		},
		{
			name: "discovery and concat",
			opts: Options{Traddr: "192.0.2.10", Trsvcid: 8009, NQN: DiscoveryNQN, Discovery: true, DHCHAPSecret: hostSecret, Concat: true},
			want: "transport=tcp,traddr=192.0.2.10,trsvcid=8009,nqn=" + DiscoveryNQN + ",discovery,dhchap_secret=" + string(hostSecret) + ",concat",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opts.optionString()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("option string (-want +got):\n%s", diff)
			}
			for range 3 { // deterministic
				if again, _ := tt.opts.optionString(); again != got {
					t.Fatalf("second build differs: %q", again)
				}
			}
			wantRedacted := strings.NewReplacer(string(hostSecret), redacted, string(ctrlSecret), redacted).Replace(tt.want)
			if diff := cmp.Diff(wantRedacted, tt.opts.Redacted()); diff != "" {
				t.Errorf("Redacted (-want +got):\n%s", diff)
			}
			if len(got) >= 4096 {
				t.Errorf("option string is %d bytes, the kernel takes at most a page", len(got))
			}
		})
	}
}

func TestMaximalOptionsFitInAPage(t *testing.T) {
	o := fullOptions()
	o.NQN = "nqn.2014-08.com.example:" + strings.Repeat("n", MaxNQNLen-24)
	o.HostNQN = "nqn.2014-08.com.example:" + strings.Repeat("h", MaxNQNLen-24)
	o.HostIface = "abcdefghijklmno"
	o.Traddr, o.HostTraddr = "fd00:1111:2222:3333:4444:5555:6666:7777", "fd00:1111:2222:3333:4444:5555:6666:7778"
	o.DHCHAPSecret, o.DHCHAPCtrlSecret = makeSecret(3, 64, 1), makeSecret(3, 64, 2)
	o.CtrlLossTmo, o.Keyring, o.TLSKey = Int(math.MaxInt32), Int(math.MaxInt32), Int(math.MaxInt32)
	o.FastIOFailTmo = Int(maxSeconds)
	o.Discovery, o.Concat = true, true
	s, err := o.optionString()
	if err != nil {
		t.Fatal(err)
	}
	if len(s) >= 4096 {
		t.Errorf("maximal option string is %d bytes; the kernel answers ENOMEM above a page", len(s))
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	o := fullOptions()
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("connect", "opts", o, "secret", o.DHCHAPSecret)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("connect", "opts", o, "secret", o.DHCHAPSecret)
	marshalled, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{
		"String":       o.String(),
		"Redacted":     o.Redacted(),
		"%v":           fmt.Sprintf("%v", o),
		"%+v":          fmt.Sprintf("%+v", o),
		"%#v":          fmt.Sprintf("%#v", o),
		"%s secret":    fmt.Sprintf("%s|%v", o.DHCHAPSecret, o.DHCHAPSecret),
		"%#v secret":   fmt.Sprintf("%#v", o.DHCHAPSecret),
		"slog text":    text.String(),
		"slog json":    js.String(),
		"json":         string(marshalled),
		"ptr %v":       fmt.Sprintf("%v", &o),
		"struct %+v":   fmt.Sprintf("%+v", struct{ O Options }{o}),
		"struct %#v":   fmt.Sprintf("%#v", struct{ O Options }{o}),
		"secret %q":    fmt.Sprintf("%q", o.DHCHAPCtrlSecret),
		"secret %x":    fmt.Sprintf("%x", o.DHCHAPCtrlSecret),
		"secret print": fmt.Sprint(o.DHCHAPSecret),
	} {
		mustNotContainSecret(t, what, s)
		if !strings.Contains(what, "secret") && !strings.Contains(s, redacted) && what != "json" {
			t.Errorf("%s has no %s marker: %q", what, redacted, s)
		}
	}
	if got := Secret("").String(); got != "" {
		t.Errorf("empty Secret String() = %q", got)
	}
}

func TestOptInt(t *testing.T) {
	var unset OptInt
	if unset.IsSet() || unset.String() != "unset" {
		t.Errorf("zero OptInt = %v set=%v", unset, unset.IsSet())
	}
	v, ok := Int(-1).Get()
	if !ok || v != -1 || Int(-1).String() != "-1" {
		t.Errorf("Int(-1) = %d, %v", v, ok)
	}
	if Int(0).Equal(unset) || !Int(7).Equal(Int(7)) {
		t.Error("Equal is wrong")
	}
}

func TestTimeoutsValidate(t *testing.T) {
	tests := []struct {
		name  string
		t     Timeouts
		field string
	}{
		{"empty", Timeouts{}, ""},
		{"all", Timeouts{ReconnectDelay: Int(2), CtrlLossTmo: Int(-1), FastIOFailTmo: Int(5)}, ""},
		{"reconnect_delay 0", Timeouts{ReconnectDelay: Int(0)}, "reconnect_delay"},
		{"ctrl_loss_tmo -2", Timeouts{CtrlLossTmo: Int(-2)}, "ctrl_loss_tmo"},
		{"fast_io_fail_tmo -2", Timeouts{FastIOFailTmo: Int(-2)}, "fast_io_fail_tmo"},
		{"fast_io_fail_tmo above ctrl_loss_tmo", Timeouts{CtrlLossTmo: Int(10), FastIOFailTmo: Int(11)}, "fast_io_fail_tmo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.t.Validate()
			var oe *OptionError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate() = %v", err)
			case tt.field != "" && (!errors.As(err, &oe) || oe.Field != tt.field || !errors.Is(err, ErrInvalidOption)):
				t.Fatalf("Validate() = %v, want an invalid %s", err, tt.field)
			}
		})
	}
}

func TestValidateNQNExported(t *testing.T) {
	if err := ValidateNQN(testNQN); err != nil {
		t.Errorf("ValidateNQN(%q) = %v", testNQN, err)
	}
	err := ValidateNQN("nqn.2014-08.org.example:a,b")
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Field != "nqn" || !errors.Is(err, ErrInvalidOption) {
		t.Errorf("ValidateNQN(bad) = %v", err)
	}
}
