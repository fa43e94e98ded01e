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
	"strings"
	"time"

	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/internal/atomicfile"
)

// stateFileName is the ownership file in Config.StateDir.
const stateFileName = "ownership.json"

// stateVersion is the format of the file; a newer one is refused.
const stateVersion = 1

// stateFile is what survives a restart: the controllers this driver owns,
// the connects it is about to make (or made and has not resolved yet), and
// the volumes it staged (only their identity: no options, no secrets).
type stateFile struct {
	Version     int             `json:"version"`
	Controllers []owner         `json:"controllers"`
	Intents     []connectIntent `json:"connect_intents,omitempty"`
	Volumes     []volumeState   `json:"volumes"`
}

// connectIntent is a connect write this driver is about to make, recorded
// (durably) before the write, so that a crash between the kernel creating
// the controller and the ownership record does not leave a controller
// nobody owns. It names the connection's identity, not a controller: the
// instance name is only known once the write returns.
type connectIntent struct {
	Volume     string    `json:"volume"`
	Transport  string    `json:"transport"`
	SubsysNQN  string    `json:"subsysnqn"`
	Traddr     string    `json:"traddr"`
	Trsvcid    string    `json:"trsvcid"`
	HostNQN    string    `json:"hostnqn,omitempty"`
	HostID     string    `json:"hostid,omitempty"`
	HostTraddr string    `json:"host_traddr,omitempty"`
	HostIface  string    `json:"host_iface,omitempty"`
	Since      time.Time `json:"since"`
}

func intentOf(volume string, k connKey, now time.Time) connectIntent {
	return connectIntent{
		Volume: volume, Transport: k.transport, SubsysNQN: k.nqn, Traddr: k.traddr, Trsvcid: k.trsvcid,
		HostNQN: k.hostNQN, HostID: k.hostID, HostTraddr: k.hostTraddr, HostIface: k.hostIface, Since: now,
	}
}

// key is the connection identity of the intent (a key as keyOf makes it).
func (in connectIntent) key() connKey {
	return connKey{
		transport: cmp.Or(in.Transport, fabrics.DefaultTransport), nqn: in.SubsysNQN,
		traddr: fabrics.CanonicalIP(in.Traddr), trsvcid: in.Trsvcid,
		hostNQN: in.HostNQN, hostID: strings.ToLower(in.HostID),
		hostTraddr: fabrics.CanonicalIP(in.HostTraddr), hostIface: in.HostIface,
	}
}

// volumeState is a staged volume in the state file.
type volumeState struct {
	ID         string `json:"id"`
	SubsysNQN  string `json:"subsysnqn"`
	NSID       uint32 `json:"nsid"`
	Transport  string `json:"transport,omitempty"`
	Traddr     string `json:"traddr"`
	Trsvcid    string `json:"trsvcid"`
	HostNQN    string `json:"hostnqn,omitempty"`
	HostID     string `json:"hostid,omitempty"`
	HostTraddr string `json:"host_traddr,omitempty"`
	HostIface  string `json:"host_iface,omitempty"`
	Controller string `json:"controller,omitempty"`
	// Paths are the volume's other target addresses (Spec.Paths after
	// the first), for a multipath volume.
	Paths []pathState `json:"paths,omitempty"`
	// Connect, for a multipath volume, is what a restart needs to go on
	// connecting the paths that are not connected (resumePaths).
	Connect     *connectState `json:"connect,omitempty"`
	StagingPath string        `json:"staging_path"`
	Block       bool          `json:"block,omitempty"`
	StagedAt    time.Time     `json:"staged_at"`
}

// pathState is one more path of a staged volume.
type pathState struct {
	Traddr     string `json:"traddr"`
	HostTraddr string `json:"host_traddr,omitempty"`
	HostIface  string `json:"host_iface,omitempty"`
}

// connectState is the part of a volume's connect options that is neither
// its identity (the volume record has that) nor a secret: with it a restart
// connects a missing path as the stage would have. Secrets are never
// written; Secrets says the volume had some, and then a restart does not
// connect its missing paths (it could not authenticate them).
type connectState struct {
	CtrlLossTmo      *int `json:"ctrl_loss_tmo,omitempty"`
	ReconnectDelay   *int `json:"reconnect_delay,omitempty"`
	KeepAliveTmo     *int `json:"keep_alive_tmo,omitempty"`
	FastIOFailTmo    *int `json:"fast_io_fail_tmo,omitempty"`
	NrIOQueues       *int `json:"nr_io_queues,omitempty"`
	NrWriteQueues    *int `json:"nr_write_queues,omitempty"`
	NrPollQueues     *int `json:"nr_poll_queues,omitempty"`
	QueueSize        *int `json:"queue_size,omitempty"`
	TOS              *int `json:"tos,omitempty"`
	Keyring          *int `json:"keyring,omitempty"`
	TLSKey           *int `json:"tls_key,omitempty"`
	DuplicateConnect bool `json:"duplicate_connect,omitempty"`
	DisableSQFlow    bool `json:"disable_sqflow,omitempty"`
	HdrDigest        bool `json:"hdr_digest,omitempty"`
	DataDigest       bool `json:"data_digest,omitempty"`
	TLS              bool `json:"tls,omitempty"`
	Concat           bool `json:"concat,omitempty"`
	ReconnectSpread  int  `json:"reconnect_spread,omitempty"`
	Secrets          bool `json:"secrets,omitempty"`
}

// connectStateOf is the connectState of a spec.
func connectStateOf(s *Spec) *connectState {
	o := &s.Options
	return &connectState{
		CtrlLossTmo: optPtr(o.CtrlLossTmo), ReconnectDelay: optPtr(o.ReconnectDelay), KeepAliveTmo: optPtr(o.KeepAliveTmo),
		FastIOFailTmo: optPtr(o.FastIOFailTmo), NrIOQueues: optPtr(o.NrIOQueues), NrWriteQueues: optPtr(o.NrWriteQueues),
		NrPollQueues: optPtr(o.NrPollQueues), QueueSize: optPtr(o.QueueSize), TOS: optPtr(o.TOS),
		Keyring: optPtr(o.Keyring), TLSKey: optPtr(o.TLSKey),
		DuplicateConnect: o.DuplicateConnect, DisableSQFlow: o.DisableSQFlow, HdrDigest: o.HdrDigest, DataDigest: o.DataDigest,
		TLS: o.TLS, Concat: o.Concat, ReconnectSpread: s.ReconnectSpread,
		Secrets: o.DHCHAPSecret != "" || o.DHCHAPCtrlSecret != "",
	}
}

// apply puts the saved options into a spec rebuilt from a volume record.
func (c *connectState) apply(s *Spec) {
	o := &s.Options
	o.CtrlLossTmo, o.ReconnectDelay, o.KeepAliveTmo = ptrOpt(c.CtrlLossTmo), ptrOpt(c.ReconnectDelay), ptrOpt(c.KeepAliveTmo)
	o.FastIOFailTmo, o.NrIOQueues, o.NrWriteQueues = ptrOpt(c.FastIOFailTmo), ptrOpt(c.NrIOQueues), ptrOpt(c.NrWriteQueues)
	o.NrPollQueues, o.QueueSize, o.TOS = ptrOpt(c.NrPollQueues), ptrOpt(c.QueueSize), ptrOpt(c.TOS)
	o.Keyring, o.TLSKey = ptrOpt(c.Keyring), ptrOpt(c.TLSKey)
	o.DuplicateConnect, o.DisableSQFlow, o.HdrDigest, o.DataDigest = c.DuplicateConnect, c.DisableSQFlow, c.HdrDigest, c.DataDigest
	o.TLS, o.Concat = c.TLS, c.Concat
	s.ReconnectSpread = c.ReconnectSpread
}

func optPtr(o fabrics.OptInt) *int {
	if v, ok := o.Get(); ok {
		return &v
	}
	return nil
}

func ptrOpt(p *int) fabrics.OptInt {
	if p == nil {
		return fabrics.OptInt{}
	}
	return fabrics.Int(*p)
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
	for _, in := range d.intents {
		st.Intents = append(st.Intents, in)
	}
	slices.SortFunc(st.Intents, func(a, b connectIntent) int { return cmp.Compare(a.key().String(), b.key().String()) })
	for _, v := range d.vols {
		if v.state != VolumeStaged || v.recovered {
			continue
		}
		vs := volumeState{
			ID: v.id, SubsysNQN: v.nqn, NSID: v.nsid,
			Transport: v.key.transport, Traddr: v.key.traddr, Trsvcid: v.key.trsvcid,
			HostNQN: v.key.hostNQN, HostID: v.key.hostID, HostTraddr: v.key.hostTraddr, HostIface: v.key.hostIface,
			StagingPath: v.stagingPath, Block: v.block, StagedAt: v.stagedAt,
		}
		if len(v.controllers) > 0 {
			vs.Controller = v.controllers[0]
		}
		for _, k := range v.keys[min(1, len(v.keys)):] {
			vs.Paths = append(vs.Paths, pathState{Traddr: k.traddr, HostTraddr: k.hostTraddr, HostIface: k.hostIface})
		}
		if len(vs.Paths) > 0 {
			vs.Connect = v.connect
			if vs.Connect == nil {
				vs.Connect = connectStateOf(&v.spec)
			}
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
