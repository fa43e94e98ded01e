package daemon

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/srvlab/rds-csi/internal/atomicfile"
)

// stateFileName is the ownership file in Config.StateDir.
const stateFileName = "ownership.json"

// stateVersion is the format of the file; a newer one is refused.
const stateVersion = 1

// stateFile is what survives a restart: the controllers this driver owns and
// the volumes it staged (only their identity: no options, no secrets).
type stateFile struct {
	Version     int           `json:"version"`
	Controllers []owner       `json:"controllers"`
	Volumes     []volumeState `json:"volumes"`
}

// volumeState is a staged volume in the state file.
type volumeState struct {
	ID          string    `json:"id"`
	SubsysNQN   string    `json:"subsysnqn"`
	NSID        uint32    `json:"nsid"`
	Transport   string    `json:"transport,omitempty"`
	Traddr      string    `json:"traddr"`
	Trsvcid     string    `json:"trsvcid"`
	HostNQN     string    `json:"hostnqn,omitempty"`
	HostTraddr  string    `json:"host_traddr,omitempty"`
	HostIface   string    `json:"host_iface,omitempty"`
	Controller  string    `json:"controller,omitempty"`
	StagingPath string    `json:"staging_path"`
	Block       bool      `json:"block,omitempty"`
	StagedAt    time.Time `json:"staged_at"`
}

func (d *Daemon) statePath() string { return filepath.Join(d.cfg.StateDir, stateFileName) }

// loadState reads the state file; a missing file is an empty state. A file
// that does not parse is moved aside (name.corrupt-<unix time>) and an empty
// state is used: without ownership records nothing is ever disconnected, so
// that is the safe side.
func (d *Daemon) loadState() (stateFile, error) {
	path := d.statePath()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return stateFile{Version: stateVersion}, nil
	}
	if err != nil {
		return stateFile{}, fmt.Errorf("daemon: read state file: %w", err)
	}
	var st stateFile
	err = json.Unmarshal(b, &st)
	if err == nil && st.Version > stateVersion {
		return stateFile{}, fmt.Errorf("daemon: state file %s has version %d, this daemon knows %d", path, st.Version, stateVersion)
	}
	if err != nil {
		aside := fmt.Sprintf("%s.corrupt-%d", path, d.now().Unix())
		d.log.Error("state file does not parse; moving it aside and starting with no ownership records",
			"path", path, "moved_to", aside, "error", err)
		if rerr := os.Rename(path, aside); rerr != nil {
			return stateFile{}, fmt.Errorf("daemon: state file %s does not parse (%w) and cannot be moved aside: %w", path, err, rerr)
		}
		return stateFile{Version: stateVersion}, nil
	}
	return st, nil
}

// stateLocked builds the state file content from the registry.
func (d *Daemon) stateLocked() stateFile {
	st := stateFile{Version: stateVersion, Controllers: []owner{}, Volumes: []volumeState{}}
	for _, o := range d.owned {
		st.Controllers = append(st.Controllers, o)
	}
	slices.SortFunc(st.Controllers, func(a, b owner) int { return cmp.Compare(a.Name, b.Name) })
	for _, v := range d.vols {
		if v.state != VolumeStaged || v.recovered {
			continue
		}
		vs := volumeState{
			ID: v.id, SubsysNQN: v.nqn, NSID: v.nsid,
			Transport: v.key.transport, Traddr: v.key.traddr, Trsvcid: v.key.trsvcid,
			HostNQN: v.key.hostNQN, HostTraddr: v.key.hostTraddr, HostIface: v.key.hostIface,
			StagingPath: v.stagingPath, Block: v.block, StagedAt: v.stagedAt,
		}
		if len(v.controllers) > 0 {
			vs.Controller = v.controllers[0]
		}
		st.Volumes = append(st.Volumes, vs)
	}
	slices.SortFunc(st.Volumes, func(a, b volumeState) int { return cmp.Compare(a.ID, b.ID) })
	return st
}

// persist writes the registry's ownership and staged volumes to the state
// file. Writers are serialised and each takes its snapshot after the
// previous write, so the file never goes back to an older state.
func (d *Daemon) persist() error {
	d.persistMu.Lock()
	defer d.persistMu.Unlock()
	d.mu.Lock()
	st := d.stateLocked()
	d.mu.Unlock()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("daemon: encode state: %w", err)
	}
	if err := atomicfile.WriteFile(d.statePath(), append(b, '\n'), 0o600); err != nil {
		d.counters.stateWriteErrors.Add(1)
		return fmt.Errorf("daemon: write state file: %w", err)
	}
	return nil
}
