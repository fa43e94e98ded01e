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
	if p.NSID != 1 || p.FSType != "" || p.MountOptions != nil {
		t.Errorf("got nsid %d fsType %q mountOptions %q, want 1, \"\", nil", p.NSID, p.FSType, p.MountOptions)
	}
}

func TestParseParamsAll(t *testing.T) {
	m := map[string]string{
		KeyNVMeAddress:    "fd00::5",
		KeyNVMePort:       "4421",
		KeyNQN:            "nqn.2000-02.com.mikrotik:pvc-1",
		KeyNSID:           "3",
		KeyCtrlLossTmo:    "600",
		KeyReconnectDelay: "2",
		KeyKeepAliveTmo:   "10",
		KeyFastIOFailTmo:  "30",
		KeyNrIOQueues:     "4",
		KeyQueueSize:      "256",
		KeyHostIface:      "eth1",
		KeyDataDigest:     "true",
		KeyHeaderDigest:   "TRUE",
		KeyFSType:         "xfs",
		KeyMountOptions:   "noatime, discard,",
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
