package fabrics

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseReply(t *testing.T) {
	tests := []struct {
		name  string
		reply string
		want  Controller
		ok    bool
	}{
		{"newline", "instance=3,cntlid=1\n", Controller{Name: "nvme3", Instance: 3, CntlID: 1}, true},
		{"no newline", "instance=0,cntlid=0", Controller{Name: "nvme0", Instance: 0, CntlID: 0}, true},
		{"large", "instance=2147483647,cntlid=65535\n", Controller{Name: "nvme2147483647", Instance: 2147483647, CntlID: 65535}, true},
		{"empty", "", Controller{}, false},
		{"probe list", probe612, Controller{}, false},
		{"negative instance", "instance=-1,cntlid=-1\n", Controller{}, false},
		{"leading zero", "instance=03,cntlid=1\n", Controller{}, false},
		{"plus sign", "instance=+3,cntlid=1\n", Controller{}, false},
		{"cntlid too large", "instance=3,cntlid=65536\n", Controller{}, false},
		{"instance too large", "instance=2147483648,cntlid=1\n", Controller{}, false},
		{"two newlines", "instance=3,cntlid=1\n\n", Controller{}, false},
		{"swapped", "cntlid=1,instance=3\n", Controller{}, false},
		{"trailing field", "instance=3,cntlid=1,x=2\n", Controller{}, false},
		{"space", "instance=3, cntlid=1\n", Controller{}, false},
		{"missing cntlid", "instance=3\n", Controller{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseReply(tt.reply)
			if tt.ok != (err == nil) {
				t.Fatalf("ParseReply(%q) error = %v, want ok=%v", tt.reply, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrUnexpectedReply) {
				t.Errorf("error %v does not wrap ErrUnexpectedReply", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseReply (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSupported(t *testing.T) {
	common := []string{
		"ctrl_loss_tmo", "data_digest", "dhchap_ctrl_secret", "dhchap_secret", "disable_sqflow", "discovery",
		"duplicate_connect", "fast_io_fail_tmo", "hdr_digest", "host_iface", "host_traddr", "hostid", "hostnqn",
		"keep_alive_tmo", "nqn", "nr_io_queues", "nr_poll_queues", "nr_write_queues", "queue_size",
		"reconnect_delay", "tos", "traddr", "transport", "trsvcid",
	}
	tests := []struct {
		name string
		list string
		want []string // sorted; nil means an error
	}{
		{"6.12", probe612, sortedUnion(common, "keyring", "tls", "tls_key")},
		{"6.1", probe61, common},
		{"no newline", strings.TrimSuffix(probe61, "\n"), common},
		{"future option", "instance=-1,cntlid=-1,transport=%s,concat,new_thing=%u\n", []string{"concat", "new_thing", "transport"}},
		{"empty", "", nil},
		{"reply instead", "instance=3,cntlid=1\n", nil},
		{"no options", "instance=-1,cntlid=-1\n", nil},
		{"empty entry", "instance=-1,cntlid=-1,transport=%s,,tls\n", nil},
		{"bad verb", "instance=-1,cntlid=-1,transport=x\n", nil},
		{"upper case", "instance=-1,cntlid=-1,TLS\n", nil},
		{"space", "instance=-1,cntlid=-1,tls \n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := ParseSupported(tt.list)
			if tt.want == nil {
				if err == nil || !errors.Is(err, ErrUnexpectedReply) || set.Known() {
					t.Fatalf("ParseSupported() = %v, %v; want ErrUnexpectedReply and an unknown set", set.Names(), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, set.Names()); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
			if !set.Known() || !set.Has("transport") || set.Has("instance") {
				t.Errorf("Known=%v Has(transport)=%v Has(instance)=%v", set.Known(), set.Has("transport"), set.Has("instance"))
			}
		})
	}
}

func sortedUnion(a []string, more ...string) []string {
	out := slices.Concat(a, more)
	slices.Sort(out)
	return out
}

func TestUnknownOptionSet(t *testing.T) {
	var s OptionSet
	if s.Known() || s.Has("transport") || len(s.Names()) != 0 {
		t.Errorf("zero OptionSet: Known=%v Names=%v", s.Known(), s.Names())
	}
}
