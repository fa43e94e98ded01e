package csi

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/internal/atomicfile"
)

// HostIdentity is the NVMe host NQN and host ID this node connects with.
// Linux 6.12 refuses a hostnqn without a hostid and a hostid already used
// with another hostnqn, so the two always travel together.
type HostIdentity struct {
	NQN string `json:"hostnqn"`
	ID  string `json:"hostid"`
}

// Validate checks the NQN syntax and the UUID form of the ID.
func (h HostIdentity) Validate() error {
	o := fabrics.Options{Traddr: "127.0.0.1", NQN: fabrics.DiscoveryNQN, HostNQN: h.NQN, HostID: h.ID}
	if h.NQN == "" || h.ID == "" {
		return errors.New("host identity: hostnqn and hostid are both required")
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("host identity: %w", err)
	}
	return nil
}

// Where a HostIdentity came from (LoadHostIdentity's second result).
const (
	HostIdentityFromSystem        = "system"             // hostnqn and hostid files
	HostIdentityDerived           = "system-derived"     // hostid derived from a uuid hostnqn, or hostnqn from hostid
	HostIdentitySystemWithStateID = "system+state"       // system hostnqn, hostid kept in the state dir
	HostIdentityFromState         = "state"              // generated earlier, kept in the state dir
	HostIdentityGenerated         = "generated"          // generated now and stored in the state dir
	hostIdentityFile              = "host-identity.json" // in the state dir
)

// LoadHostIdentity returns this node's NVMe host identity.
//
// systemDir is where nvme-cli keeps it (normally /etc/nvme, files hostnqn and
// hostid); stateDir is the plugin's state directory. In order:
//   - a valid hostnqn and hostid in systemDir are used as they are;
//   - a valid hostnqn alone: if it is a uuid NQN
//     (nqn.2014-08.org.nvmexpress:uuid:<UUID>) the hostid is that UUID; else
//     a hostid is generated once for that hostnqn and kept in the state dir;
//   - a valid hostid alone gives hostnqn nqn.2014-08.org.nvmexpress:uuid:<hostid>;
//   - otherwise the identity stored in the state dir is reused, or a new one
//     is generated (random UUID, uuid NQN) and stored there atomically.
//
// Files that exist but do not hold a valid value are skipped with a warning
// (the returned warnings); a state file that does not parse is an error
// (it may be in use by live controllers: do not silently replace it).
func LoadHostIdentity(systemDir, stateDir string) (id HostIdentity, source string, warnings []string, err error) {
	nqn, w1 := readSystemValue(systemDir, "hostnqn", func(s string) bool { return fabrics.ValidateNQN(s) == nil })
	hid, w2 := readSystemValue(systemDir, "hostid", fabrics.IsUUID)
	warnings = append(w1, w2...)

	switch {
	case nqn != "" && hid != "":
		return HostIdentity{NQN: nqn, ID: hid}, HostIdentityFromSystem, warnings, nil
	case nqn != "":
		if u, ok := strings.CutPrefix(nqn, fabrics.UUIDNQNPrefix); ok && fabrics.IsUUID(u) {
			return HostIdentity{NQN: nqn, ID: strings.ToLower(u)}, HostIdentityDerived, warnings, nil
		}
	case hid != "":
		return HostIdentity{NQN: fabrics.UUIDNQNPrefix + hid, ID: hid}, HostIdentityDerived, warnings, nil
	}

	stored, ok, err := readStoredIdentity(stateDir)
	if err != nil {
		return HostIdentity{}, "", warnings, err
	}
	if nqn != "" {
		// A system hostnqn that is not a uuid NQN: keep a hostid for it.
		if ok && stored.NQN == nqn {
			return stored, HostIdentitySystemWithStateID, warnings, nil
		}
		id, err := newHostID()
		if err != nil {
			return HostIdentity{}, "", warnings, err
		}
		h := HostIdentity{NQN: nqn, ID: id}
		if err := storeIdentity(stateDir, h); err != nil {
			return HostIdentity{}, "", warnings, err
		}
		return h, HostIdentitySystemWithStateID, warnings, nil
	}
	if ok {
		return stored, HostIdentityFromState, warnings, nil
	}
	id, err = generateIdentity()
	if err != nil {
		return HostIdentity{}, "", warnings, err
	}
	if err := storeIdentity(stateDir, id); err != nil {
		return HostIdentity{}, "", warnings, err
	}
	return id, HostIdentityGenerated, warnings, nil
}

// readSystemValue reads and trims dir/name. A missing file is "" without a
// warning; an unreadable or invalid one is "" with a warning.
func readSystemValue(dir, name string, valid func(string) bool) (string, []string) {
	if dir == "" {
		return "", nil
	}
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", []string{fmt.Sprintf("ignoring %s: %v", path, err)}
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", []string{fmt.Sprintf("ignoring %s: empty", path)}
	}
	if !valid(v) {
		return "", []string{fmt.Sprintf("ignoring %s: %q is not a valid %s", path, v, name)}
	}
	if name == "hostid" {
		v = strings.ToLower(v)
	}
	return v, nil
}

func readStoredIdentity(stateDir string) (HostIdentity, bool, error) {
	path := filepath.Join(stateDir, hostIdentityFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return HostIdentity{}, false, nil
	}
	if err != nil {
		return HostIdentity{}, false, fmt.Errorf("host identity: %w", err)
	}
	var h HostIdentity
	if err := json.Unmarshal(b, &h); err != nil {
		return HostIdentity{}, false, fmt.Errorf("host identity: parse %s: %w (remove it only if no controller uses that identity)", path, err)
	}
	if err := h.Validate(); err != nil {
		return HostIdentity{}, false, fmt.Errorf("host identity: %s: %w", path, err)
	}
	return h, true, nil
}

func generateIdentity() (HostIdentity, error) {
	id, err := newHostID()
	if err != nil {
		return HostIdentity{}, err
	}
	return HostIdentity{NQN: fabrics.UUIDNQNPrefix + id, ID: id}, nil
}

// newHostID returns a random (version 4) UUID.
func newHostID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("host identity: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// storeIdentity writes the identity atomically: a temporary file in the same
// directory, fsync, rename, fsync of the directory.
func storeIdentity(stateDir string, h HostIdentity) error {
	if stateDir == "" {
		return errors.New("host identity: no state directory to keep a generated identity in")
	}
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(stateDir, hostIdentityFile), append(b, '\n'), 0o644)
}
