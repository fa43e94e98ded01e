// Package agentapi holds the types of the Kubernetes lab node agent's HTTP
// API (e2e/cmd/k8s-agent serves it, e2e/k8slab calls it).
package agentapi

// Exec is a command run on the node and what it did.
type Exec struct {
	Argv   []string `json:"argv"`
	Stdout string   `json:"stdout"`
	Stderr string   `json:"stderr"`
	Exit   int      `json:"exit"`
}

// Emulator is the RDS emulator's user, the client key it accepts and a
// known_hosts line for its address as pods reach it: what the controller's
// Secret holds.
type Emulator struct {
	User         string `json:"user"`
	ClientKeyPEM []byte `json:"clientKeyPEM"`
	KnownHosts   []byte `json:"knownHosts"`
}

// Static is a volume on the node's target that the emulator does not know
// of (a static PV's volume): its subsystem and portal.
type Static struct {
	NQN     string `json:"nqn"`
	Address string `json:"address"`
	Port    int    `json:"port"`
}

// RDS is what the emulated RDS holds: its disks and its files (path ->
// size).
type RDS struct {
	Disks []Disk           `json:"disks"`
	Files map[string]int64 `json:"files"`
}

// Disk is one disk of the emulated RDS.
type Disk struct {
	Slot    string `json:"slot"`
	File    string `json:"file"`
	NQN     string `json:"nqn"`
	Comment string `json:"comment"`
}
