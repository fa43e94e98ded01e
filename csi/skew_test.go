package csi

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestStageNewerControllerKey: a VolumeContext a (newer) controller wrote,
// carrying the marker and one key this node does not know, stages; the key
// is ignored and logged once at warning level by name, never its value.
func TestStageNewerControllerKey(t *testing.T) {
	e := newTestEnv(t)
	var buf bytes.Buffer
	e.node.log = slog.New(slog.NewTextHandler(&buf, nil))
	m := validContext()
	m[KeyContextVersion] = ContextVersion
	m["futureKnob"] = "secret-looking-value"
	if _, err := e.node.NodeStageVolume(context.Background(), stageReq(t.TempDir(), "vol-1", mountCap(), m)); err != nil {
		t.Fatalf("stage of a newer controller's context: %v", err)
	}
	if n := e.vols.attachCount(); n != 1 {
		t.Errorf("%d Attach calls, want 1", n)
	}
	out := buf.String()
	if strings.Count(out, "futureKnob") != 1 || !strings.Contains(out, "level=WARN") {
		t.Errorf("log does not name the unknown key once at warning level:\n%s", out)
	}
	if strings.Contains(out, "secret-looking-value") {
		t.Errorf("log carries the unknown key's value:\n%s", out)
	}
}

// TestStaticPVTypo: without the marker (a hand-written static PV) an
// unknown key is still InvalidArgument naming it, and nothing is attached.
func TestStaticPVTypo(t *testing.T) {
	e := newTestEnv(t)
	m := validContext()
	m["ctrlLosTmo"] = "5"
	_, err := e.node.NodeStageVolume(context.Background(), stageReq(t.TempDir(), "vol-1", mountCap(), m))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "ctrlLosTmo") {
		t.Fatalf("%v, want InvalidArgument naming ctrlLosTmo", err)
	}
	if n := e.vols.attachCount(); n != 0 {
		t.Errorf("%d Attach calls, want 0", n)
	}
}

// TestContextVersionStrict: with the marker, known keys, secrets and the
// marker's own value are still checked strictly.
func TestContextVersionStrict(t *testing.T) {
	for name, tc := range map[string]struct{ key, value, errKey string }{
		"bad known value":  {KeyReconnectDelay, "0", KeyReconnectDelay},
		"bad known int":    {KeyNVMePort, "44x", KeyNVMePort},
		"secret":           {SecretDHCHAP, "DHHC-1:00:x:", SecretDHCHAP},
		"future version":   {KeyContextVersion, "2", KeyContextVersion},
		"empty version":    {KeyContextVersion, "", KeyContextVersion},
		"garbage version":  {KeyContextVersion, "1,x=y", KeyContextVersion},
		"leading zero":     {KeyContextVersion, "01", KeyContextVersion},
		"injection in key": {"a,traddr=1.2.3.4", "x", ""},
	} {
		t.Run(name, func(t *testing.T) {
			m := validContext()
			m[KeyContextVersion] = ContextVersion
			m[tc.key] = tc.value
			p, err := ParseParams(m)
			if tc.errKey == "" { // an unknown key: ignored, never used
				if err != nil {
					t.Fatalf("%v, want the unknown key ignored", err)
				}
				if p.Options.Traddr != "10.0.0.5" || !slices.Equal(p.UnknownKeys, []string{safeKey(tc.key)}) {
					t.Errorf("traddr %q, unknown %q", p.Options.Traddr, p.UnknownKeys)
				}
				return
			}
			if Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.errKey) {
				t.Fatalf("%v, want InvalidArgument naming %s", err, tc.errKey)
			}
		})
	}
}

// TestParseUnknownKeysSorted: the unknown keys are reported sorted; none
// without the marker means none reported.
func TestParseUnknownKeysSorted(t *testing.T) {
	m := validContext()
	m[KeyContextVersion] = ContextVersion
	m["zeta"], m["alpha"] = "1", "2"
	p, err := ParseParams(m)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.UnknownKeys, []string{"alpha", "zeta"}) {
		t.Errorf("unknown keys %q", p.UnknownKeys)
	}
	p, err = ParseParams(validContext())
	if err != nil || p.UnknownKeys != nil {
		t.Errorf("plain context: %v, unknown %q", err, p.UnknownKeys)
	}
}

// TestCreateVolumeContextVersion: every VolumeContext the controller
// returns carries the marker and round-trips through the node's parser;
// a StorageClass setting the marker itself is refused.
func TestCreateVolumeContextVersion(t *testing.T) {
	c, srv := newTestController(t)
	resp, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-v", Parameters: map[string]string{KeyKeepAliveTmo: "10"},
		VolumeCapabilities: ctrlMountCaps()})
	if err != nil {
		t.Fatal(err)
	}
	vc := resp.GetVolume().GetVolumeContext()
	if vc[KeyContextVersion] != ContextVersion {
		t.Errorf("VolumeContext %v lacks %s=%s", vc, KeyContextVersion, ContextVersion)
	}
	p, err := ParseParams(vc)
	if err != nil || p.UnknownKeys != nil {
		t.Errorf("the node's parser: %v, unknown %q", err, p.UnknownKeys)
	}
	_, err = c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-m",
		Parameters: map[string]string{KeyContextVersion: ContextVersion, "ctrlLosTmo": "5"}, VolumeCapabilities: ctrlMountCaps()})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), KeyContextVersion) {
		t.Errorf("StorageClass with the marker: %v, want InvalidArgument naming %s", err, KeyContextVersion)
	}
	if n := len(srv.Disks()); n != 1 {
		t.Errorf("%d disks, want 1", n)
	}
}

// FuzzParseParamsVersioned: with any marker value and any extra key, the
// parser either refuses with an InvalidArgument *ParamError or accepts; an
// accepted unknown key changes nothing but UnknownKeys (it is never used).
func FuzzParseParamsVersioned(f *testing.F) {
	f.Add("1", "futureKnob", "x")
	f.Add("2", "ctrlLosTmo", "5")
	f.Add("1", "a,traddr=1.2.3.4", "nqn=evil")
	f.Add("1", KeyReconnectDelay, "0")
	f.Add("", SecretDHCHAP, "DHHC-1:00:x:")
	f.Fuzz(func(t *testing.T, version, key, value string) {
		m := validContext()
		m[KeyContextVersion] = version
		m[key] = value
		p, err := ParseParams(m)
		if err != nil {
			var pe *ParamError
			if !errors.As(err, &pe) || Code(err) != codes.InvalidArgument {
				t.Fatalf("error %v is not an InvalidArgument *ParamError", err)
			}
			return
		}
		if version != ContextVersion {
			t.Fatalf("marker %q accepted", version)
		}
		if err := p.Options.Validate(); err != nil {
			t.Fatalf("accepted options do not validate: %v", err)
		}
		if lookupParam(key) != nil || ignoredKey(key) || key == KeyContextVersion {
			return
		}
		base := validContext()
		base[KeyContextVersion] = ContextVersion
		want, err := ParseParams(base)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(p.UnknownKeys, []string{safeKey(key)}) {
			t.Fatalf("unknown keys %q, want [%s]", p.UnknownKeys, safeKey(key))
		}
		p.UnknownKeys = nil
		if !reflect.DeepEqual(p, want) {
			t.Fatalf("unknown key %q changed the result:\n%+v\nwant\n%+v", key, p, want)
		}
	})
}
