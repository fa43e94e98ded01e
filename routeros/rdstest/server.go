package rdstest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Options configure a new Server.
type Options struct {
	Pool     string // pool mount point (default "storage-pool")
	PoolSize int64  // bytes (default 100 GiB)
	Variant  Variant
	Format   Format
	User     string // the accepted user (default "rds-csi")
	// MaxSessions > 0 refuses session channels beyond this many open on
	// one connection (resource shortage), as a loaded RDS might.
	MaxSessions int
	// Backend, when set, mirrors files and exports onto a real target
	// (e2e/nvmet's FileBackend in the lab); nil keeps the model alone.
	Backend Backend
	// ClientKeyPEM, when set, is the authorized client key (an
	// unencrypted PEM private key, e.g. another Server's ClientKeyPEM, so
	// that one key logs in to both); nil makes a new one.
	ClientKeyPEM []byte
}

// Server is an emulated RDS listening on 127.0.0.1.
type Server struct {
	ln          net.Listener
	user        string
	maxSessions int

	clientKey ssh.Signer
	keyPEM    []byte

	mu      sync.Mutex
	m       model
	hostKey ssh.Signer
	faults  faults
	conns   map[*ssh.ServerConn]bool
	log     []string
	closed  bool
	wg      sync.WaitGroup
}

type faults struct {
	hang       string
	drop       string
	dropAfter  bool
	rejectAuth bool
	// silentSessions: session channel opens get no answer at all, as on a
	// connection whose peer vanished without a reset
	silentSessions bool
}

// Start starts a server on 127.0.0.1:0 with a new host key and a new
// authorized client key (ClientKeyPEM).
func Start(o Options) (*Server, error) {
	if o.Pool == "" {
		o.Pool = "storage-pool"
	}
	if o.PoolSize == 0 {
		o.PoolSize = 100 << 30
	}
	if o.User == "" {
		o.User = "rds-csi"
	}
	host, err := newSigner()
	if err != nil {
		return nil, err
	}
	keyPEM := o.ClientKeyPEM
	if keyPEM == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			return nil, err
		}
		keyPEM = pem.EncodeToMemory(block)
	}
	client, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("rdstest: client key: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, user: o.User, maxSessions: o.MaxSessions, clientKey: client, keyPEM: append([]byte(nil), keyPEM...),
		hostKey: host, conns: map[*ssh.ServerConn]bool{},
		m: model{poolName: o.Pool, poolSize: o.PoolSize, files: map[string]int64{}, data: map[string][]byte{}, variant: o.Variant, format: o.Format, backend: o.Backend}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func newSigner() (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

// Addr is host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// User is the accepted user name.
func (s *Server) User() string { return s.user }

// ClientKeyPEM is the PEM private key the server accepts.
func (s *Server) ClientKeyPEM() []byte { return append([]byte(nil), s.keyPEM...) }

// KnownHosts is a known_hosts line for the current host key.
func (s *Server) KnownHosts() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []byte(knownhosts.Line([]string{knownhosts.Normalize(s.Addr())}, s.hostKey.PublicKey()) + "\n")
}

// KnownHostsFor is a known_hosts line naming addr (host:port) for the
// current host key: for clients that reach the server through a forwarder
// at another address.
func (s *Server) KnownHostsFor(addr string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, s.hostKey.PublicKey()) + "\n")
}

// SetVariant switches the unverified behaviours.
func (s *Server) SetVariant(v Variant) { s.mu.Lock(); s.m.variant = v; s.mu.Unlock() }

// SetFormat changes the output layout.
func (s *Server) SetFormat(f Format) { s.mu.Lock(); s.m.format = f; s.mu.Unlock() }

// SetPool sets the pool's size in bytes (a small pool is "pool full").
func (s *Server) SetPool(size int64) { s.mu.Lock(); s.m.poolSize = size; s.mu.Unlock() }

// Hang makes every command containing substr never answer until its
// connection closes ("" turns it off).
func (s *Server) Hang(substr string) { s.mu.Lock(); s.faults.hang = substr; s.mu.Unlock() }

// Drop closes the connection of the next command containing substr, once:
// before the command runs, or after it ran (its effect kept, its answer
// lost) when after is true.
func (s *Server) Drop(substr string, after bool) {
	s.mu.Lock()
	s.faults.drop, s.faults.dropAfter = substr, after
	s.mu.Unlock()
}

// RejectAuth refuses every key.
func (s *Server) RejectAuth(on bool) { s.mu.Lock(); s.faults.rejectAuth = on; s.mu.Unlock() }

// SilentSessions leaves every session the client opens unanswered (neither
// accepted nor refused) while on, on connections already made too: what a
// client sees on a connection whose peer vanished without a reset.
func (s *Server) SilentSessions(on bool) { s.mu.Lock(); s.faults.silentSessions = on; s.mu.Unlock() }

// RotateHostKey presents a new host key to new connections.
func (s *Server) RotateHostKey() error {
	k, err := newSigner()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.hostKey = k
	s.mu.Unlock()
	return nil
}

// DropConnections closes every open connection.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// Commands lists the commands received, in order.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

// Disks returns a copy of the model's disks.
func (s *Server) Disks() []Disk {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Disk, len(s.m.disks))
	for i, d := range s.m.disks {
		out[i] = *d
	}
	return out
}

// Files returns a copy of the model's files: path (with leading '/') ->
// size in bytes.
func (s *Server) Files() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.m.files))
	for n, sz := range s.m.files {
		out["/"+n] = sz
	}
	return out
}

// AddFile puts a file into the model (data that is not ours); it is not
// made on the Backend.
func (s *Server) AddFile(path string, size int64) {
	s.mu.Lock()
	s.m.files[strings.TrimPrefix(path, "/")] = size
	s.mu.Unlock()
}

// WriteData writes b at the start of an existing file of the model (path
// with its leading '/'), as a node writing through NVMe/TCP would: data a
// copy must carry. It fails if the file does not exist or is shorter than b.
func (s *Server) WriteData(path string, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := strings.TrimPrefix(path, "/")
	size, ok := s.m.files[name]
	if !ok {
		return errors.New("rdstest: no file " + path)
	}
	if int64(len(b)) > size {
		return errors.New("rdstest: data longer than file " + path)
	}
	s.m.data[name] = append([]byte(nil), b...)
	return nil
}

// Data returns what WriteData (or a copy) put at the start of a file.
func (s *Server) Data(path string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.m.data[strings.TrimPrefix(path, "/")]...)
}

// Exec runs a command line on the model as a session would, returning
// stdout, stderr and the exit status (for tests of the emulator itself).
func (s *Server) Exec(line string) (stdout, stderr string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.execLocked(line)
}

func (s *Server) execLocked(line string) (string, string, int) {
	s.log = append(s.log, line)
	out, f := s.m.exec(line)
	if f == "" {
		return out, "", 0
	}
	eol := "\r\n"
	if s.m.format.LF {
		eol = "\n"
	}
	if s.m.variant.ErrorsOnStderr {
		return "", string(f) + eol, s.m.variant.ErrorExitStatus
	}
	return string(f) + eol, "", s.m.variant.ErrorExitStatus
}

// Close stops the server and closes every connection.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
		}()
	}
}

func (s *Server) config() *ssh.ServerConfig {
	s.mu.Lock()
	host := s.hostKey
	s.mu.Unlock()
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			s.mu.Lock()
			reject := s.faults.rejectAuth
			s.mu.Unlock()
			if reject || meta.User() != s.user || string(key.Marshal()) != string(s.clientKey.PublicKey().Marshal()) {
				return nil, errors.New("key refused")
			}
			return nil, nil
		},
	}
	cfg.AddHostKey(host)
	return cfg
}

func (s *Server) serve(c net.Conn) {
	sc, chans, reqs, err := ssh.NewServerConn(c, s.config())
	if err != nil {
		c.Close()
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sc.Close()
		return
	}
	s.conns[sc] = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		sc.Wait()
		close(done)
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
	}()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	var open atomic.Int32
	for nc := range chans {
		s.mu.Lock()
		silent := s.faults.silentSessions
		s.mu.Unlock()
		if silent {
			continue // never answered
		}
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		if s.maxSessions > 0 && int(open.Load()) >= s.maxSessions {
			nc.Reject(ssh.ResourceShortage, "too many sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		open.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer open.Add(-1)
			s.session(sc, ch, creqs, done)
		}()
	}
	wg.Wait()
}

// session answers one exec request; pty, shell and env requests are refused.
func (s *Server) session(sc *ssh.ServerConn, ch ssh.Channel, reqs <-chan *ssh.Request, done <-chan struct{}) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			if req.WantReply {
				req.Reply(false, nil)
			}
			continue
		}
		var p struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			req.Reply(false, nil)
			return
		}
		req.Reply(true, nil)
		go ssh.DiscardRequests(reqs)
		s.mu.Lock()
		f := s.faults
		hang := f.hang != "" && strings.Contains(p.Command, f.hang)
		drop := f.drop != "" && strings.Contains(p.Command, f.drop)
		if drop {
			s.faults.drop = ""
		}
		if hang {
			s.log = append(s.log, p.Command)
		}
		s.mu.Unlock()
		if hang {
			<-done
			return
		}
		if drop && !f.dropAfter {
			sc.Close()
			return
		}
		stdout, stderr, status := s.Exec(p.Command)
		if drop {
			sc.Close()
			return
		}
		ch.Write([]byte(stdout))
		ch.Stderr().Write([]byte(stderr))
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
		return
	}
}
