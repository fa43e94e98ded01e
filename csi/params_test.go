package csi

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/fabrics"
)

func TestParseParamsDefaults(t *testing.T) {
	p, err := ParseParams(validContext())
	if err != nil {
		t.Fatal(err)
	}
	want := fabrics.Options{
		Traddr:         "10.0.0.5",
		NQN:            "nqn.2000-02.com.mikrotik:pvc-1",
		CtrlLossTmo:    fabrics.Int(-1),
		ReconnectDelay: fabrics.Int(5),
	}
	if diff := cmp.Diff(want.Redacted(), p.Options.Redacted()); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	if p.ReconnectSpread != DefaultReconnectSpread {
		t.Errorf("reconnect spread %d, want the default %d", p.ReconnectSpread, DefaultReconnectSpread)
	}
	if p.NSID != 1 || p.FSType != "" || p.MountOptions != nil {
		t.Errorf("got nsid %d fsType %q mountOptions %q, want 1, \"\", nil", p.NSID, p.FSType, p.MountOptions)
	}
}

func TestParseParamsAll(t *testing.T) {
	m := map[string]string{
		KeyNVMeAddress:     "fd00::5",
		KeyNVMePort:        "4421",
		KeyNQN:             "nqn.2000-02.com.mikrotik:pvc-1",
		KeyNSID:            "3",
		KeyCtrlLossTmo:     "600",
		KeyReconnectDelay:  "2",
		KeyReconnectSpread: "9",
		KeyKeepAliveTmo:    "10",
		KeyFastIOFailTmo:   "30",
		KeyNrIOQueues:      "4",
		KeyQueueSize:       "256",
		KeyHostIface:       "eth1",
		KeyDataDigest:      "true",
		KeyHeaderDigest:    "TRUE",
		KeyFSType:          "xfs",
		KeyMountOptions:    "noatime, discard,",
		// accepted and ignored
		"rdsAddress":                 "10.0.0.1",
		"volumePath":                 "/storage-pool/kubernetes-volumes",
		"csi.storage.k8s.io/pv/name": "pvc-1",
		"storage.kubernetes.io/csiProvisionerIdentity": "1700000000000-1234-rds.csi.srvlab.io",
	}
	p, err := ParseParams(m)
	if err != nil {
		t.Fatal(err)
	}
	want := fabrics.Options{
		Traddr: "fd00::5", Trsvcid: 4421, NQN: "nqn.2000-02.com.mikrotik:pvc-1",
		CtrlLossTmo: fabrics.Int(600), ReconnectDelay: fabrics.Int(2), KeepAliveTmo: fabrics.Int(10),
		FastIOFailTmo: fabrics.Int(30), NrIOQueues: fabrics.Int(4), QueueSize: fabrics.Int(256),
		HostIface: "eth1", DataDigest: true, HdrDigest: true,
	}
	if diff := cmp.Diff(want.Redacted(), p.Options.Redacted()); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"noatime", "discard"}, p.MountOptions); diff != "" {
		t.Errorf("mount options (-want +got):\n%s", diff)
	}
	if p.NSID != 3 || p.FSType != "xfs" {
		t.Errorf("nsid %d fsType %q", p.NSID, p.FSType)
	}
	if s := p.Spec("pvc-1", HostIdentity{}, Secrets{}); p.ReconnectSpread != 9 || s.ReconnectSpread != 9 {
		t.Errorf("reconnect spread %d, in the spec %d, want 9", p.ReconnectSpread, s.ReconnectSpread)
	}
}

// TestParseReconnectSpreadOff: "0" turns the spread off.
func TestParseReconnectSpreadOff(t *testing.T) {
	m := validContext()
	m[KeyReconnectSpread] = "0"
	p, err := ParseParams(m)
	if err != nil {
		t.Fatal(err)
	}
	if p.ReconnectSpread != 0 {
		t.Errorf("reconnect spread %d, want 0", p.ReconnectSpread)
	}
}

// badParams: each case sets or removes one key; the error must be
// InvalidArgument naming errKey, and nothing may reach the daemon.
var badParams = []struct {
	name   string
	key    string // set to value ("" with del removes it)
	value  string
	del    bool
	errKey string
}{
	{name: "unknown iopolicy", key: KeyIOPolicy, value: "fastest", errKey: KeyIOPolicy},
	{name: "iopolicy with an injected option", key: KeyIOPolicy, value: "numa,nr_io_queues=1", errKey: KeyIOPolicy},
	{name: "address list with a non-IP", key: KeyNVMeAddresses, value: "10.0.0.5,storage.local", errKey: KeyNVMeAddresses},
	{name: "address list with an injected option", key: KeyNVMeAddresses, value: "10.0.0.5,10.0.0.6=ctrl_loss_tmo", errKey: KeyNVMeAddresses},
	{name: "address list with a zone", key: KeyNVMeAddresses, value: "10.0.0.5,fe80::1%eth0", errKey: KeyNVMeAddresses},
	{name: "address list with an empty item", key: KeyNVMeAddresses, value: "10.0.0.5,,10.0.0.6", errKey: KeyNVMeAddresses},
	{name: "address list with a duplicate", key: KeyNVMeAddresses, value: "10.0.0.5,10.0.0.6,::ffff:10.0.0.6", errKey: KeyNVMeAddresses},
	{name: "address list with a bad interface", key: KeyNVMeAddresses, value: "10.0.0.5,10.0.0.6@a/b", errKey: KeyNVMeAddresses},
	{name: "address list with an empty interface", key: KeyNVMeAddresses, value: "10.0.0.5,10.0.0.6@", errKey: KeyNVMeAddresses},
	{name: "address list with an empty source", key: KeyNVMeAddresses, value: "10.0.0.5,10.0.0.6/", errKey: KeyNVMeAddresses},
	{name: "address list with a source name", key: KeyNVMeAddresses, value: "10.0.0.5,10.0.0.6/localhost", errKey: KeyNVMeAddresses},
	{name: "address list with a source zone", key: KeyNVMeAddresses, value: "10.0.0.5,fe80::6/fe80::1%eth0", errKey: KeyNVMeAddresses},
	{name: "address list with an unspecified source", key: KeyNVMeAddresses, value: "10.0.0.5,10.0.0.6/0.0.0.0", errKey: KeyNVMeAddresses},
	{name: "address list with a multicast source", key: KeyNVMeAddresses, value: "10.0.0.5,10.0.0.6/224.0.0.1", errKey: KeyNVMeAddresses},
	{name: "address list with a source prefix", key: KeyNVMeAddresses, value: "10.0.0.5,10.0.0.6/24", errKey: KeyNVMeAddresses},
	{name: "address list with two sources", key: KeyNVMeAddresses, value: "10.0.0.5,10.0.0.6/10.0.0.7/10.0.0.8", errKey: KeyNVMeAddresses},
	{name: "address list with a source before the interface", key: KeyNVMeAddresses, value: "10.0.0.5,10.0.0.6/10.0.0.7@eth0", errKey: KeyNVMeAddresses},
	{name: "address list with a source carrying an option", key: KeyNVMeAddresses, value: "10.0.0.5,10.0.0.6/10.0.0.7=host_iface", errKey: KeyNVMeAddresses},
	{name: "address list with a duplicate source path", key: KeyNVMeAddresses, value: "10.0.0.5/10.0.0.7,10.0.0.5/::ffff:10.0.0.7", errKey: KeyNVMeAddresses},
	{name: "address list too long", key: KeyNVMeAddresses, value: "10.0.0.5,10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.6,10.0.0.7,10.0.0.8,10.0.0.9", errKey: KeyNVMeAddresses},
	{name: "nvmeAddress not the first of the list", key: KeyNVMeAddresses, value: "10.0.0.6,10.0.0.5", errKey: KeyNVMeAddress},
	{"missing address", KeyNVMeAddress, "", true, KeyNVMeAddress},
	{"empty address", KeyNVMeAddress, "", false, KeyNVMeAddress},
	{"host name address", KeyNVMeAddress, "rds.example.com", false, KeyNVMeAddress},
	{"address with comma", KeyNVMeAddress, "10.0.0.5,nqn=evil", false, KeyNVMeAddress},
	{"address with equals", KeyNVMeAddress, "traddr=10.0.0.6", false, KeyNVMeAddress},
	{"address with zone", KeyNVMeAddress, "fe80::1%eth0", false, KeyNVMeAddress},
	{"address with newline", KeyNVMeAddress, "10.0.0.5\nhostnqn=x", false, KeyNVMeAddress},
	{"missing nqn", KeyNQN, "", true, KeyNQN},
	{"nqn with comma", KeyNQN, "nqn.2000-02.com.mikrotik:a,hostnqn=evil", false, KeyNQN},
	{"nqn with equals", KeyNQN, "nqn.2000-02.com.mikrotik:a=b", false, KeyNQN},
	{"nqn with space", KeyNQN, "nqn.2000-02.com.mikrotik:a b", false, KeyNQN},
	{"nqn without prefix", KeyNQN, "iqn.2000-02.com.mikrotik:a", false, KeyNQN},
	{"nqn too long", KeyNQN, "nqn.2000-02.com.mikrotik:" + strings.Repeat("a", 300), false, KeyNQN},
	{"port text", KeyNVMePort, "http", false, KeyNVMePort},
	{"port zero", KeyNVMePort, "0", false, KeyNVMePort},
	{"port too big", KeyNVMePort, "65536", false, KeyNVMePort},
	{"port plus sign", KeyNVMePort, "+4420", false, KeyNVMePort},
	{"port with comma", KeyNVMePort, "4420,nqn=x", false, KeyNVMePort},
	{"nsid zero", KeyNSID, "0", false, KeyNSID},
	{"nsid broadcast", KeyNSID, "4294967295", false, KeyNSID},
	{"nsid text", KeyNSID, "one", false, KeyNSID},
	{"ctrlLossTmo below -1", KeyCtrlLossTmo, "-2", false, KeyCtrlLossTmo},
	{"ctrlLossTmo float", KeyCtrlLossTmo, "1.5", false, KeyCtrlLossTmo},
	{"ctrlLossTmo hex", KeyCtrlLossTmo, "0x10", false, KeyCtrlLossTmo},
	{"ctrlLossTmo overflow", KeyCtrlLossTmo, "99999999999", false, KeyCtrlLossTmo},
	{"reconnectDelay zero", KeyReconnectDelay, "0", false, KeyReconnectDelay},
	{"reconnectSpread negative", KeyReconnectSpread, "-1", false, KeyReconnectSpread},
	{"reconnectSpread too big", KeyReconnectSpread, "601", false, KeyReconnectSpread},
	{"reconnectSpread text", KeyReconnectSpread, "2s", false, KeyReconnectSpread},
	{"reconnectDelay negative", KeyReconnectDelay, "-1", false, KeyReconnectDelay},
	{"reconnectDelay space", KeyReconnectDelay, " 5", false, KeyReconnectDelay},
	{"keepAliveTmo negative", KeyKeepAliveTmo, "-1", false, KeyKeepAliveTmo},
	{"fastIoFailTmo below -1", KeyFastIOFailTmo, "-5", false, KeyFastIOFailTmo},
	{"nrIoQueues zero", KeyNrIOQueues, "0", false, KeyNrIOQueues},
	{"queueSize too small", KeyQueueSize, "8", false, KeyQueueSize},
	{"queueSize too big", KeyQueueSize, "4096", false, KeyQueueSize},
	{"hostIface with comma", KeyHostIface, "eth0,traddr=1.2.3.4", false, KeyHostIface},
	{"hostIface with slash", KeyHostIface, "../eth0", false, KeyHostIface},
	{"hostIface too long", KeyHostIface, "abcdefghijklmnop", false, KeyHostIface},
	{"dataDigest yes", KeyDataDigest, "yes", false, KeyDataDigest},
	{"headerDigest 1", KeyHeaderDigest, "1", false, KeyHeaderDigest},
	{"fsType btrfs", KeyFSType, "btrfs", false, KeyFSType},
	{"fsType upper", KeyFSType, "EXT4", false, KeyFSType},
	{"mountOptions space", KeyMountOptions, "noatime,x y", false, KeyMountOptions},
	{"mountOptions quote", KeyMountOptions, `context="a"`, false, KeyMountOptions},
	{"typo key", "ctrlLosTmo", "5", false, "ctrlLosTmo"},
	{"unknown key", "foo", "bar", false, "foo"},
	{"secret in context", SecretDHCHAP, "DHHC-1:00:abc:", false, SecretDHCHAP},
}

func TestParseParamsBad(t *testing.T) {
	for _, tc := range badParams {
		t.Run(tc.name, func(t *testing.T) {
			m := validContext()
			if tc.del {
				delete(m, tc.key)
			} else {
				m[tc.key] = tc.value
			}
			_, err := ParseParams(m)
			var pe *ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *ParamError", err)
			}
			if pe.Key != tc.errKey {
				t.Errorf("error names key %q, want %q (%v)", pe.Key, tc.errKey, err)
			}
			if !errors.Is(err, fabrics.ErrInvalidOption) {
				t.Errorf("error does not match fabrics.ErrInvalidOption: %v", err)
			}
			if Code(err) != codes.InvalidArgument {
				t.Errorf("code %v, want InvalidArgument", Code(err))
			}
		})
	}
}

// TestStageBadParams sends each bad parameter set through NodeStageVolume:
// InvalidArgument naming the key, and no Attach.
func TestStageBadParams(t *testing.T) {
	for _, tc := range badParams {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			m := validContext()
			if tc.del {
				delete(m, tc.key)
			} else {
				m[tc.key] = tc.value
			}
			_, err := e.node.NodeStageVolume(context.Background(), stageReq(t.TempDir(), "vol-1", mountCap(), m))
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("code %v (%v), want InvalidArgument", status.Code(err), err)
			}
			if !strings.Contains(status.Convert(err).Message(), tc.errKey) {
				t.Errorf("message %q does not name %q", status.Convert(err).Message(), tc.errKey)
			}
			if n := e.vols.attachCount(); n != 0 {
				t.Errorf("%d Attach calls, want 0", n)
			}
		})
	}
}

func TestParamErrorMessages(t *testing.T) {
	tests := []struct {
		name string
		set  map[string]string
		want []string // substrings of the message
	}{
		{"unknown key lists accepted keys", map[string]string{"ctrlLosTmo": "5"},
			[]string{"ctrlLosTmo", "unknown key", KeyCtrlLossTmo, KeyNVMeAddress, KeyMountOptions}},
		{"range", map[string]string{KeyQueueSize: "8"}, []string{"queueSize", `"8"`, "16..1024"}},
		{"cross-check names our keys", map[string]string{KeyCtrlLossTmo: "10", KeyFastIOFailTmo: "20"},
			[]string{"fastIoFailTmo", `"20"`, "ctrlLossTmo (10)"}},
		{"type error gives the range", map[string]string{KeyReconnectDelay: "soon"},
			[]string{"reconnectDelay", `"soon"`, "decimal integer", "1..2147483"}},
		{"secret value never echoed", map[string]string{SecretDHCHAP: "DHHC-1:00:topsecret:"},
			[]string{SecretDHCHAP, "NodeStageVolume secrets"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := validContext()
			maps.Copy(m, tc.set)
			_, err := ParseParams(m)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "topsecret") {
				t.Errorf("message leaks the secret: %q", err)
			}
		})
	}
}

func TestFastIOFailWithForeverCtrlLoss(t *testing.T) {
	m := validContext()
	m[KeyFastIOFailTmo] = "3600" // fine: ctrlLossTmo defaults to -1
	if _, err := ParseParams(m); err != nil {
		t.Fatal(err)
	}
}

func TestStageSecrets(t *testing.T) {
	e := newTestEnv(t)
	req := stageReq(t.TempDir(), "vol-1", mountCap(), validContext())
	req.Secrets = map[string]string{SecretDHCHAP: "DHHC-1:00:not-base64-topsecret:", "unrelated": "x"}
	_, err := e.node.NodeStageVolume(context.Background(), req)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("code %v, want InvalidArgument", status.Code(err))
	}
	msg := status.Convert(err).Message()
	if !strings.Contains(msg, SecretDHCHAP) || strings.Contains(msg, "topsecret") {
		t.Errorf("message %q: want the key, never the value", msg)
	}
	if e.vols.attachCount() != 0 {
		t.Error("Attach called")
	}
}

func FuzzParseParams(f *testing.F) {
	f.Add("10.0.0.5", "nqn.2000-02.com.mikrotik:pvc-1", "4420", "-1", "5", "noatime")
	f.Add("fd00::1", "nqn.2014-08.org.nvmexpress:uuid:8f6c4d2a-1b3e-4c5d-9e7f-0a1b2c3d4e5f", "1", "0", "1", "")
	f.Add("1.2.3.4,x=y", "nqn.a", "+1", "1e3", "0", "a b")
	f.Fuzz(func(t *testing.T, addr, nqn, port, ctrlLoss, delay, mountOpts string) {
		p, err := ParseParams(map[string]string{
			KeyNVMeAddress: addr, KeyNQN: nqn, KeyNVMePort: port,
			KeyCtrlLossTmo: ctrlLoss, KeyReconnectDelay: delay, KeyMountOptions: mountOpts,
		})
		if err != nil {
			var pe *ParamError
			if !errors.As(err, &pe) || Code(err) != codes.InvalidArgument {
				t.Fatalf("error %v is not an InvalidArgument *ParamError", err)
			}
			return
		}
		if err := p.Options.Validate(); err != nil {
			t.Fatalf("accepted options do not validate: %v", err)
		}
		for _, o := range p.MountOptions {
			if o == "" || strings.ContainsAny(o, ", \t\n\"") {
				t.Fatalf("bad mount option %q accepted", o)
			}
		}
	})
}

func stageReq(staging, id string, c *csi.VolumeCapability, ctx map[string]string) *csi.NodeStageVolumeRequest {
	return &csi.NodeStageVolumeRequest{
		VolumeId:          id,
		StagingTargetPath: staging,
		VolumeCapability:  c,
		VolumeContext:     ctx,
	}
}

func mountCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func blockCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func TestParseAddresses(t *testing.T) {
	for _, tc := range []struct {
		name      string
		m         map[string]string
		wantAddr  string
		wantIface string
		wantSrc   string
		want      []daemon.Path
	}{
		{name: "list alone", m: map[string]string{KeyNQN: "nqn.2000-02.com.mikrotik:pvc-1", KeyNVMeAddresses: " 10.0.0.5 , fd00::0:6"},
			wantAddr: "10.0.0.5", want: []daemon.Path{{Traddr: "10.0.0.5"}, {Traddr: "fd00::6"}}},
		{name: "with nvmeAddress as the first", m: map[string]string{KeyNQN: "nqn.2000-02.com.mikrotik:pvc-1", KeyNVMeAddress: "10.0.0.5", KeyNVMeAddresses: "10.0.0.5,10.0.1.5"},
			wantAddr: "10.0.0.5", want: []daemon.Path{{Traddr: "10.0.0.5"}, {Traddr: "10.0.1.5"}}},
		{name: "interfaces: own, else hostIface", m: map[string]string{KeyNQN: "nqn.2000-02.com.mikrotik:pvc-1", KeyHostIface: "eth0", KeyNVMeAddresses: "10.0.0.5,10.0.1.5@eth1"},
			wantAddr: "10.0.0.5", wantIface: "eth0", want: []daemon.Path{{Traddr: "10.0.0.5", HostIface: "eth0"}, {Traddr: "10.0.1.5", HostIface: "eth1"}}},
		{name: "first path's own interface", m: map[string]string{KeyNQN: "nqn.2000-02.com.mikrotik:pvc-1", KeyNVMeAddresses: "10.0.0.5@eth1,10.0.1.5@eth2"},
			wantAddr: "10.0.0.5", wantIface: "eth1", want: []daemon.Path{{Traddr: "10.0.0.5", HostIface: "eth1"}, {Traddr: "10.0.1.5", HostIface: "eth2"}}},
		{name: "one address: an ordinary volume", m: map[string]string{KeyNQN: "nqn.2000-02.com.mikrotik:pvc-1", KeyNVMeAddresses: "10.0.0.5@eth1"},
			wantAddr: "10.0.0.5", wantIface: "eth1"},
		{name: "source addresses per path", m: map[string]string{KeyNQN: "nqn.2000-02.com.mikrotik:pvc-1", KeyHostIface: "eth0", KeyNVMeAddresses: "10.0.0.5/10.0.0.20,10.0.1.5@eth1/10.0.1.20,fd00::7/FD01:0::1,10.0.2.5"},
			wantAddr: "10.0.0.5", wantIface: "eth0", wantSrc: "10.0.0.20", want: []daemon.Path{
				{Traddr: "10.0.0.5", HostTraddr: "10.0.0.20", HostIface: "eth0"}, {Traddr: "10.0.1.5", HostTraddr: "10.0.1.20", HostIface: "eth1"},
				{Traddr: "fd00::7", HostTraddr: "fd01::1", HostIface: "eth0"}, {Traddr: "10.0.2.5", HostIface: "eth0"}}},
		{name: "one address with a source", m: map[string]string{KeyNQN: "nqn.2000-02.com.mikrotik:pvc-1", KeyNVMeAddresses: "10.0.0.5/10.0.0.20"},
			wantAddr: "10.0.0.5", wantSrc: "10.0.0.20"},
		{name: "the same address from two sources", m: map[string]string{KeyNQN: "nqn.2000-02.com.mikrotik:pvc-1", KeyNVMeAddresses: "10.0.0.5/10.0.0.20,10.0.0.5/10.0.0.21"},
			wantAddr: "10.0.0.5", wantSrc: "10.0.0.20", want: []daemon.Path{{Traddr: "10.0.0.5", HostTraddr: "10.0.0.20"}, {Traddr: "10.0.0.5", HostTraddr: "10.0.0.21"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseParams(tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if p.Options.Traddr != tc.wantAddr || p.Options.HostIface != tc.wantIface || p.Options.HostTraddr != tc.wantSrc {
				t.Errorf("first path %s@%s/%s, want %s@%s/%s", p.Options.Traddr, p.Options.HostIface, p.Options.HostTraddr, tc.wantAddr, tc.wantIface, tc.wantSrc)
			}
			if diff := cmp.Diff(tc.want, p.Paths); diff != "" {
				t.Errorf("paths (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, p.Spec("v", HostIdentity{}, Secrets{}).Paths); diff != "" {
				t.Errorf("spec paths (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseIOPolicy(t *testing.T) {
	m := validContext()
	m[KeyIOPolicy] = "queue-depth"
	p, err := ParseParams(m)
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Spec("v", HostIdentity{}, Secrets{}); s.IOPolicy != "queue-depth" {
		t.Errorf("spec iopolicy %q, want queue-depth", s.IOPolicy)
	}
}

// FuzzParseAddresses: whatever nvmeAddresses holds, it is refused with an
// InvalidArgument *ParamError, or every path it yields validates and puts
// exactly one traddr (and at most one host_iface and host_traddr) into its
// option string.
func FuzzParseAddresses(f *testing.F) {
	f.Add("10.0.0.5,10.0.1.5@eth1", "eth0")
	f.Add("fd00::1,10.0.0.5", "")
	f.Add("10.0.0.5,10.0.0.6=x,ctrl_loss_tmo=0", "")
	f.Add("10.0.0.5@a,b@c", "eth0")
	f.Add("10.0.0.5/10.0.0.20,10.0.1.5@eth1/fd00::20", "")
	f.Add("10.0.0.5/10.0.0.20/x,10.0.1.5@eth1/", "eth0")
	f.Fuzz(func(t *testing.T, addrs, iface string) {
		p, err := ParseParams(map[string]string{KeyNQN: "nqn.2000-02.com.mikrotik:pvc-1", KeyNVMeAddresses: addrs, KeyHostIface: iface})
		if err != nil {
			var pe *ParamError
			if !errors.As(err, &pe) || Code(err) != codes.InvalidArgument {
				t.Fatalf("error %v is not an InvalidArgument *ParamError", err)
			}
			return
		}
		s := p.Spec("v", HostIdentity{}, Secrets{})
		for _, path := range append([]daemon.Path{{Traddr: s.Options.Traddr, HostTraddr: s.Options.HostTraddr, HostIface: s.Options.HostIface}}, s.Paths...) {
			o := s.Options
			o.Traddr, o.HostTraddr, o.HostIface = path.Traddr, path.HostTraddr, path.HostIface
			if err := o.Validate(); err != nil {
				t.Fatalf("accepted path %+v does not validate: %v", path, err)
			}
			str := o.String()
			if n := strings.Count(str, ",traddr=") + strings.Count(str, "host_traddr="); n != 1+min(len(path.HostTraddr), 1) {
				t.Fatalf("option string %q has %d traddr and host_traddr, path %+v", str, n, path)
			}
			if n := strings.Count(str, "host_traddr="); n > 1 {
				t.Fatalf("option string %q has %d host_traddr", str, n)
			}
			if n := strings.Count(str, "host_iface="); n > 1 {
				t.Fatalf("option string %q has %d host_iface", str, n)
			}
		}
		if len(s.Paths) > daemon.MaxPaths {
			t.Fatalf("%d paths accepted", len(s.Paths))
		}
	})
}
