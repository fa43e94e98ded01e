package csi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/routeros"
)

// Keys of the controller's secrets (the StorageClass's
// csi.storage.k8s.io/provisioner-secret-*, controller-expand-secret-* and
// snapshotter-secret-*): how the controller logs in to the RDS the
// StorageClass (or the volume id) names. Values are never logged and never
// quoted in an error.
const (
	SecretUsername   = "username"   // RouterOS user (default: the controller's --rds-user)
	SecretPrivateKey = "privateKey" // PEM private key, unencrypted (required in a secret)
	SecretKnownHosts = "knownHosts" // known_hosts lines for the RDS (default: the controller's file)
)

// DefaultMaxClients bounds the SSH clients the controller keeps for RDSs
// other than its default (one per address and credentials).
const DefaultMaxClients = 16

// Credentials are how the controller logs in to an RDS. PrivateKey is a
// secret: String and LogValue redact it.
type Credentials struct {
	User       string
	PrivateKey []byte
	KnownHosts []byte
}

// String describes the credentials without the key.
func (c Credentials) String() string {
	return fmt.Sprintf("user %s, key %s, %d bytes of known_hosts", c.User, redacted(c.PrivateKey), len(c.KnownHosts))
}

// LogValue logs the credentials without the key.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("user", c.User), slog.String("key", redacted(c.PrivateKey)),
		slog.Int("knownHostsBytes", len(c.KnownHosts)))
}

func redacted(b []byte) string {
	if len(b) == 0 {
		return "<none>"
	}
	return "<redacted>"
}

func (c Credentials) zero() bool {
	return c.User == "" && len(c.PrivateKey) == 0 && len(c.KnownHosts) == 0
}

func (c Credentials) equal(o Credentials) bool {
	return c.User == o.User && bytes.Equal(c.PrivateKey, o.PrivateKey) && bytes.Equal(c.KnownHosts, o.KnownHosts)
}

// secretKeys of the controller, sorted.
var controllerSecretKeys = []string{SecretKnownHosts, SecretPrivateKey, SecretUsername}

// ParseCredentials reads a request's secrets. No secrets (nil or empty) is
// the zero Credentials: the caller uses the controller's own. Otherwise
// privateKey is required, username and knownHosts fall back to def's, and
// any other key is refused (a misspelt key would otherwise be silently
// replaced by a default). Errors are InvalidArgument and name keys only.
func ParseCredentials(secrets map[string]string, def Credentials) (Credentials, error) {
	if len(secrets) == 0 {
		return Credentials{}, nil
	}
	for _, k := range slices.Sorted(maps.Keys(secrets)) {
		if !slices.Contains(controllerSecretKeys, k) {
			return Credentials{}, status.Errorf(codes.InvalidArgument, "secret: unknown key %s (want %s, %s, %s)", safeKey(k), SecretUsername, SecretPrivateKey, SecretKnownHosts)
		}
	}
	c := Credentials{User: secrets[SecretUsername], PrivateKey: []byte(secrets[SecretPrivateKey]), KnownHosts: []byte(secrets[SecretKnownHosts])}
	if len(c.PrivateKey) == 0 {
		return Credentials{}, status.Errorf(codes.InvalidArgument, "secret: key %s is missing or empty", SecretPrivateKey)
	}
	if _, ok := secrets[SecretUsername]; !ok {
		c.User = def.User
	}
	if _, ok := secrets[SecretKnownHosts]; !ok {
		c.KnownHosts = def.KnownHosts
	}
	if c.User == "" {
		return Credentials{}, status.Errorf(codes.InvalidArgument, "secret: key %s is empty (and the controller has no default user)", SecretUsername)
	}
	if len(bytes.TrimSpace(c.KnownHosts)) == 0 {
		return Credentials{}, status.Errorf(codes.InvalidArgument, "secret: key %s is empty (and the controller has no default known_hosts): host key verification is mandatory", SecretKnownHosts)
	}
	return c, nil
}

// poolKey identifies one SSH client: address and credentials, hashed so
// that the map holds no second copy of the key in its keys.
type poolKey [sha256.Size]byte

func keyOf(addr string, c Credentials) poolKey {
	h := sha256.New()
	for _, f := range [][]byte{[]byte(addr), []byte(c.User), c.PrivateKey, c.KnownHosts} {
		_ = binary.Write(h, binary.BigEndian, uint64(len(f)))
		h.Write(f)
	}
	var k poolKey
	copy(k[:], h.Sum(nil))
	return k
}

// errPoolFull: every pooled client is running a command.
var errPoolFull = errors.New("every SSH client of the controller is busy (--rds-max-clients)")

// sshPool keeps at most max SSH clients, one per (address, credentials),
// each with its own session bound. A client is evicted (closed) only while
// no command runs on it, least recently used first; a pooled
// routeros.Client stays valid after an eviction (its next command gets a
// new SSH client).
type sshPool struct {
	max  int
	conf func(addr string, c Credentials) routeros.SSHConfig

	mu      sync.Mutex
	entries map[poolKey]*pooled
	tick    uint64
	closed  bool
}

type pooled struct {
	ssh    *routeros.SSH
	active int
	last   uint64
}

func newSSHPool(max int, conf func(string, Credentials) routeros.SSHConfig) *sshPool {
	if max <= 0 {
		max = DefaultMaxClients
	}
	return &sshPool{max: max, conf: conf, entries: map[poolKey]*pooled{}}
}

// get returns the pooled SSH for addr and c, made (and its credentials
// checked) if there is none, and marks it in use when use is set.
func (p *sshPool) get(addr string, c Credentials, use bool) (*routeros.SSH, error) {
	k := keyOf(addr, c)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("%w: controller closed", routeros.ErrUnreachable)
	}
	p.tick++
	e := p.entries[k]
	if e == nil {
		if len(p.entries) >= p.max && !p.evictLocked() {
			return nil, fmt.Errorf("%w: %w", routeros.ErrBusy, errPoolFull)
		}
		s, err := routeros.NewSSH(p.conf(addr, c))
		if err != nil {
			return nil, err
		}
		e = &pooled{ssh: s}
		p.entries[k] = e
	}
	e.last = p.tick
	if use {
		e.active++
	}
	return e.ssh, nil
}

// evictLocked closes the least recently used idle client.
func (p *sshPool) evictLocked() bool {
	var victim poolKey
	var found *pooled
	for k, e := range p.entries {
		if e.active == 0 && (found == nil || e.last < found.last) {
			victim, found = k, e
		}
	}
	if found == nil {
		return false
	}
	delete(p.entries, victim)
	found.ssh.Close()
	return true
}

func (p *sshPool) done(addr string, c Credentials) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.entries[keyOf(addr, c)]; e != nil && e.active > 0 {
		e.active--
	}
}

func (p *sshPool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.entries)
}

// close closes every client; later commands fail with ErrUnreachable.
func (p *sshPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for k, e := range p.entries {
		e.ssh.Close()
		delete(p.entries, k)
	}
}

// pooledRunner runs each command on the pool's client for its address and
// credentials, holding it in use meanwhile.
type pooledRunner struct {
	pool *sshPool
	addr string
	cred Credentials
}

func (r pooledRunner) Run(ctx context.Context, cmd routeros.Command) (routeros.Result, error) {
	s, err := r.pool.get(r.addr, r.cred, true)
	if err != nil {
		return routeros.Result{ExitStatus: -1}, err
	}
	defer r.pool.done(r.addr, r.cred)
	return s.Run(ctx, cmd)
}

func (r pooledRunner) Ping(ctx context.Context) error {
	s, err := r.pool.get(r.addr, r.cred, true)
	if err != nil {
		return err
	}
	defer r.pool.done(r.addr, r.cred)
	return s.Ping(ctx)
}
