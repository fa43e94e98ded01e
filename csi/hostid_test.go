package csi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/srvlab/rds-csi/fabrics"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadHostIdentity(t *testing.T) {
	const (
		uuid1   = "8f6c4d2a-1b3e-4c5d-9e7f-0a1b2c3d4e5f"
		uuidNQN = "nqn.2014-08.org.nvmexpress:uuid:" + uuid1
		plain   = "nqn.2000-02.com.example:node-1"
	)
	tests := []struct {
		name       string
		hostnqn    string // "" means no file
		hostid     string
		want       HostIdentity // zero: generated (checked for form)
		wantSource string
		wantWarn   bool
	}{
		{"both", uuidNQN + "\n", "0000aaaa-1b3e-4c5d-9e7f-0a1b2c3d4e5f\n", HostIdentity{uuidNQN, "0000aaaa-1b3e-4c5d-9e7f-0a1b2c3d4e5f"}, HostIdentityFromSystem, false},
		{"uuid hostnqn only", uuidNQN + "\n", "", HostIdentity{uuidNQN, uuid1}, HostIdentityDerived, false},
		{"hostid only", "", strings.ToUpper(uuid1), HostIdentity{uuidNQN, uuid1}, HostIdentityDerived, false},
		{"plain hostnqn only", plain, "", HostIdentity{NQN: plain}, HostIdentitySystemWithStateID, false},
		{"none", "", "", HostIdentity{}, HostIdentityGenerated, false},
		{"invalid hostnqn", "not-an-nqn", "", HostIdentity{}, HostIdentityGenerated, true},
		{"invalid hostid", uuidNQN, "xyz", HostIdentity{uuidNQN, uuid1}, HostIdentityDerived, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sys, state := t.TempDir(), t.TempDir()
			if tc.hostnqn != "" {
				writeFile(t, filepath.Join(sys, "hostnqn"), tc.hostnqn)
			}
			if tc.hostid != "" {
				writeFile(t, filepath.Join(sys, "hostid"), tc.hostid)
			}
			got, src, warns, err := LoadHostIdentity(sys, state)
			if err != nil {
				t.Fatal(err)
			}
			if src != tc.wantSource {
				t.Errorf("source %q, want %q", src, tc.wantSource)
			}
			if (len(warns) > 0) != tc.wantWarn {
				t.Errorf("warnings %q, want some: %t", warns, tc.wantWarn)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("invalid identity %+v: %v", got, err)
			}
			switch {
			case tc.want.ID != "":
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("identity (-want +got):\n%s", diff)
				}
			case tc.want.NQN != "":
				if got.NQN != tc.want.NQN {
					t.Errorf("hostnqn %q, want %q", got.NQN, tc.want.NQN)
				}
			default:
				if got.NQN != fabrics.UUIDNQNPrefix+got.ID {
					t.Errorf("generated hostnqn %q does not embed hostid %q", got.NQN, got.ID)
				}
			}
			// Stable across restarts.
			again, _, _, err := LoadHostIdentity(sys, state)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("identity changed on reload (-first +second):\n%s", diff)
			}
		})
	}
}

func TestHostIdentityNewHostNQNGetsNewHostID(t *testing.T) {
	sys, state := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(sys, "hostnqn"), "nqn.2000-02.com.example:a")
	a, _, _, err := LoadHostIdentity(sys, state)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(sys, "hostnqn"), "nqn.2000-02.com.example:b")
	b, _, _, err := LoadHostIdentity(sys, state)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID {
		t.Errorf("hostid %s reused with another hostnqn (Linux 6.12 refuses that)", a.ID)
	}
}

func TestHostIdentityStateFile(t *testing.T) {
	state := t.TempDir()
	id, _, _, err := LoadHostIdentity("", state)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != hostIdentityFile {
		t.Fatalf("state dir holds %v, want only %s (no temporary files left)", entries, hostIdentityFile)
	}
	b, _ := os.ReadFile(filepath.Join(state, hostIdentityFile))
	if !strings.Contains(string(b), id.ID) {
		t.Errorf("state file %q lacks hostid %s", b, id.ID)
	}

	writeFile(t, filepath.Join(state, hostIdentityFile), "{garbage")
	if _, _, _, err := LoadHostIdentity("", state); err == nil {
		t.Error("a corrupt state file was silently replaced")
	}
}

func TestNewHostIDIsV4(t *testing.T) {
	id, err := newHostID()
	if err != nil {
		t.Fatal(err)
	}
	if !fabrics.IsUUID(id) || id[14] != '4' || !strings.ContainsRune("89ab", rune(id[19])) {
		t.Errorf("%q is not a version 4 UUID", id)
	}
}
