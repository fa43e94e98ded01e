package routeros

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Defaults of SSHConfig.
const (
	DefaultMaxSessions = 2
	DefaultDialTimeout = 10 * time.Second
	DefaultMaxOutput   = 1 << 20
	// DefaultCommandTimeout bounds a command whose context has no deadline.
	// Generous because a copy's duration on hardware is unknown.
	DefaultCommandTimeout = 2 * time.Minute
)

// DefaultBackoff is the reconnect backoff: 200 ms doubling with 50 %
// jitter, at most 4 attempts per call, capped at 5 s.
var DefaultBackoff = wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 4, Cap: 5 * time.Second}

// SSHConfig says how to reach one RDS. PrivateKey is a secret: it never
// appears in errors or logs (String and LogValue redact it).
type SSHConfig struct {
	Address    string // host:port of the RDS's SSH service (management address)
	User       string
	PrivateKey []byte // PEM private key (unencrypted), as read from a Secret
	// KnownHosts is known_hosts content with the RDS's host key under
	// Address as written ("host", or "[host]:port" for a port other than
	// 22); there is no trust on first use.
	KnownHosts []byte
	// MaxSessions bounds concurrent sessions (DefaultMaxSessions if 0): a
	// real RDS stalled under many.
	MaxSessions int
	DialTimeout time.Duration // per connection attempt (DefaultDialTimeout if 0)
	Backoff     wait.Backoff  // between connection attempts (DefaultBackoff if Steps is 0)
	MaxOutput   int           // bytes per stream (DefaultMaxOutput if 0)
	// CommandTimeout bounds a command (including the wait for a session and
	// the connection) whose context has no deadline
	// (DefaultCommandTimeout if 0); a context's own deadline always wins.
	CommandTimeout time.Duration
	Logger         *slog.Logger // nil: slog.Default()
	// Events, if not nil, is told about connections and session waits
	// (for metrics).
	Events SSHEvents
}

// SSHEvents is told what an SSH transport does, for metrics. Its methods
// are called synchronously and must not block.
type SSHEvents interface {
	// Connected: a connection was made (host key verified, key
	// accepted); reconnect is false for the transport's first one.
	Connected(reconnect bool)
	// ConnectFailed: one connection attempt failed; err wraps
	// ErrUnreachable, ErrAuth or ErrHostKey (ErrorClass names it).
	ConnectFailed(err error)
	// SessionWait: a command or ping found all MaxSessions sessions in
	// use and waited d for one (d covers a wait its context ended too).
	SessionWait(d time.Duration)
}

// String describes the config without the key.
func (c SSHConfig) String() string {
	return fmt.Sprintf("ssh://%s@%s (key %s)", c.User, c.Address, redactedKey(c.PrivateKey))
}

// LogValue logs the config without the key.
func (c SSHConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("address", c.Address), slog.String("user", c.User),
		slog.String("key", redactedKey(c.PrivateKey)), slog.Int("maxSessions", c.MaxSessions))
}

func redactedKey(k []byte) string {
	if len(k) == 0 {
		return "<none>"
	}
	return "<redacted>"
}

// SSH runs commands on one RDS over SSH: one exec session per command (no
// PTY), at most MaxSessions at a time, on one connection made on first use
// and remade, with backoff and jitter, when it breaks. Each command is bound
// by its context: when the context ends the session and the connection are
// closed, so a hung RDS cannot hang the caller, and the next command
// reconnects. A command is never retried once sent (it may have run);
// opening a session on a broken connection is retried once on a new one.
type SSH struct {
	cfg     SSHConfig
	client  *ssh.ClientConfig
	hostCB  ssh.HostKeyCallback
	log     *slog.Logger
	sem     chan struct{}
	dialing chan struct{}

	mu     sync.Mutex
	conn   *ssh.Client
	closed bool

	connected  atomic.Bool
	reconnects atomic.Uint64
}

// NewSSH checks the config, parses the key and known_hosts, and returns a
// transport that connects on first use. Errors wrap ErrInvalidArgument and
// never contain the key.
func NewSSH(cfg SSHConfig) (*SSH, error) {
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, invalid("address", cfg.Address, "host:port")
	}
	if cfg.User == "" || strings.ContainsAny(cfg.User, " \t\r\n\x00") {
		return nil, invalid("user", cfg.User, "a user name without whitespace")
	}
	signer, err := ssh.ParsePrivateKey(cfg.PrivateKey)
	if err != nil {
		// the parser's message names the format problem, never key bytes
		return nil, &ArgError{Field: "private key", Value: redactedKey(cfg.PrivateKey), Allowed: "an unencrypted PEM private key (" + err.Error() + ")"}
	}
	hostCB, err := knownHostsCallback(cfg.KnownHosts)
	if err != nil {
		return nil, err
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.Backoff.Steps <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.MaxOutput <= 0 {
		cfg.MaxOutput = DefaultMaxOutput
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &SSH{cfg: cfg, hostCB: hostCB, log: log,
		sem: make(chan struct{}, cfg.MaxSessions), dialing: make(chan struct{}, 1)}
	s.client = &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyAlgorithms: hostKeyAlgorithms(hostCB, cfg.Address),
		Timeout:           cfg.DialTimeout,
	}
	return s, nil
}

// knownHostsCallback parses known_hosts content (knownhosts reads files
// only, so it goes through a private temporary file removed at once).
func knownHostsCallback(content []byte) (ssh.HostKeyCallback, error) {
	if len(strings.TrimSpace(string(content))) == 0 {
		return nil, invalid("known_hosts", "", "known_hosts lines naming the RDS (host key verification is mandatory)")
	}
	f, err := os.CreateTemp("", "rds-csi-known-hosts-*")
	if err != nil {
		return nil, fmt.Errorf("routeros: known_hosts: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("routeros: known_hosts: %w", err)
	}
	cb, err := knownhosts.New(f.Name())
	if err != nil {
		return nil, &ArgError{Field: "known_hosts", Value: "<content>", Allowed: "known_hosts syntax (" + strings.ReplaceAll(err.Error(), f.Name(), "known_hosts") + ")"}
	}
	return cb, nil
}

// hostKeyAlgorithms asks the known_hosts callback which key types it holds
// for addr (by offering a throw-away key), so the server is asked for a key
// we can verify rather than its first preference.
func hostKeyAlgorithms(cb ssh.HostKeyCallback, addr string) []string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	// no name resolution here: an IP literal is matched as the remote
	// address too, a host name by its known_hosts lines only
	remote := &net.TCPAddr{}
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil {
			p, _ := strconv.Atoi(port)
			remote = net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(p)))
		}
	}
	if !errors.As(cb(addr, remote, probe), &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			algos = append(algos, a)
		}
	}
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512)
			add(ssh.KeyAlgoRSASHA256)
			add(t)
		default:
			add(t)
		}
	}
	return algos
}

// Reconnects counts connections made after the first (for metrics).
func (s *SSH) Reconnects() uint64 { return s.reconnects.Load() }

// Close closes the connection; later calls fail with ErrUnreachable.
func (s *SSH) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn != nil {
		err := s.conn.Close()
		s.conn = nil
		return err
	}
	return nil
}

func (s *SSH) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	default:
	}
	start := time.Now()
	defer func() {
		if s.cfg.Events != nil {
			s.cfg.Events.SessionWait(time.Since(start))
		}
	}()
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *SSH) release() { <-s.sem }

// drop forgets and closes conn if it is the current connection.
func (s *SSH) drop(conn *ssh.Client) {
	s.mu.Lock()
	if s.conn == conn {
		s.conn = nil
	}
	s.mu.Unlock()
	conn.Close()
}

// connection returns the current connection or makes one, with backoff.
func (s *SSH) connection(ctx context.Context) (*ssh.Client, error) {
	s.mu.Lock()
	conn, closed := s.conn, s.closed
	s.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("%w: transport closed", ErrUnreachable)
	}
	if conn != nil {
		return conn, nil
	}
	select {
	case s.dialing <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting to connect to %s: %w", ErrUnreachable, s.cfg.Address, ctx.Err())
	}
	defer func() { <-s.dialing }()
	s.mu.Lock()
	conn = s.conn
	s.mu.Unlock()
	if conn != nil {
		return conn, nil
	}
	b := s.cfg.Backoff
	for {
		conn, err := s.dial(ctx)
		if err != nil && s.cfg.Events != nil {
			s.cfg.Events.ConnectFailed(err)
		}
		if err == nil {
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				conn.Close()
				return nil, fmt.Errorf("%w: transport closed", ErrUnreachable)
			}
			s.conn = conn
			s.mu.Unlock()
			reconnect := s.connected.Swap(true)
			if reconnect {
				s.reconnects.Add(1)
			}
			if s.cfg.Events != nil {
				s.cfg.Events.Connected(reconnect)
			}
			s.log.Info("routeros: connected", "address", s.cfg.Address, "user", s.cfg.User)
			return conn, nil
		}
		if errors.Is(err, ErrHostKey) || errors.Is(err, ErrAuth) || ctx.Err() != nil || b.Steps <= 1 {
			return nil, err
		}
		d := b.Step()
		s.log.Warn("routeros: connect failed, retrying", "address", s.cfg.Address, "in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w: %w", err, ctx.Err())
		}
	}
}

// dial makes one connection: TCP, handshake with host key verification,
// key authentication, all bounded by ctx and DialTimeout.
func (s *SSH) dial(ctx context.Context) (*ssh.Client, error) {
	d := net.Dialer{Timeout: s.cfg.DialTimeout}
	raw, err := d.DialContext(ctx, "tcp", s.cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, s.cfg.Address, err)
	}
	deadline := time.Now().Add(s.cfg.DialTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = raw.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	var hostErr error
	cfg := *s.client
	cfg.HostKeyCallback = func(host string, remote net.Addr, key ssh.PublicKey) error {
		if err := s.hostCB(host, remote, key); err != nil {
			hostErr = err
			return err
		}
		return nil
	}
	c, chans, reqs, err := ssh.NewClientConn(raw, s.cfg.Address, &cfg)
	if err != nil {
		raw.Close()
		switch {
		case hostErr != nil:
			return nil, fmt.Errorf("%w: %s presented %s", ErrHostKey, s.cfg.Address, describeHostKeyErr(hostErr))
		case strings.Contains(err.Error(), "unable to authenticate"):
			// x/crypto/ssh has no typed client-side auth error
			return nil, fmt.Errorf("%w: %s refused the key of user %s: %w", ErrAuth, s.cfg.Address, s.cfg.User, err)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, s.cfg.Address, ctx.Err())
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, s.cfg.Address, err)
	}
	_ = raw.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

func describeHostKeyErr(err error) string {
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		return "a revoked host key"
	case errors.As(err, &ke) && len(ke.Want) == 0:
		return "a host key, and known_hosts has no key for it"
	case errors.As(err, &ke):
		return "a host key that does not match known_hosts"
	}
	return "a host key that could not be verified: " + err.Error()
}

// session opens a session, on a new connection if the current one is broken
// (nothing was sent yet, so this retry is safe). A session the server
// refuses (a channel rejection) is ErrBusy and keeps the connection. The
// open is bound by ctx: when ctx ends first the connection is dropped.
func (s *SSH) session(ctx context.Context) (*ssh.Client, *ssh.Session, error) {
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		conn, err := s.connection(ctx)
		if err != nil {
			return nil, nil, err
		}
		// A peer that vanished without a reset never answers the open:
		// closing the connection when ctx ends is what unblocks it.
		stop := context.AfterFunc(ctx, func() { s.drop(conn) })
		sess, err := conn.NewSession()
		if !stop() {
			if err == nil {
				sess.Close()
			}
			s.drop(conn)
			return nil, nil, fmt.Errorf("%w: %s: opening a session: %w", ErrUnreachable, s.cfg.Address, ctx.Err())
		}
		if err == nil {
			return conn, sess, nil
		}
		var refused *ssh.OpenChannelError
		if errors.As(err, &refused) {
			// the server answered: the connection is fine, it wants no
			// more sessions now (commands running on it go on)
			return nil, nil, fmt.Errorf("%w: %s refused a session: %w", ErrBusy, s.cfg.Address, err)
		}
		s.drop(conn)
		lastErr = err
	}
	return nil, nil, fmt.Errorf("%w: %s: opening a session: %w", ErrUnreachable, s.cfg.Address, lastErr)
}

// Ping opens a session and closes it: RouterOS ignores keepalives, so this
// is the liveness check.
func (s *SSH) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.acquire(ctx); err != nil {
		return fmt.Errorf("%w: waiting for a session: %w", ErrUnreachable, err)
	}
	defer s.release()
	_, sess, err := s.session(ctx)
	if err != nil {
		return err
	}
	return ignoreEOF(sess.Close())
}

func ignoreEOF(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, err)
}

// Run runs one command in its own session and returns both streams and the
// exit status. Errors (all *CommandError) wrap ErrUnreachable when the
// command could not run to its end (then it may or may not have taken
// effect), with the context's error when the context ended it; ErrBusy when
// the RDS refused to open a session (the command was not sent); and
// ErrUnexpectedOutput when a stream exceeded MaxOutput.
func (s *SSH) Run(ctx context.Context, cmd Command) (Result, error) {
	fail := func(kind, err error) (Result, error) {
		return Result{ExitStatus: -1}, &CommandError{Command: cmd.line, ExitStatus: -1, Kind: kind, Err: err}
	}
	if cmd.line == "" {
		return fail(ErrInvalidArgument, errors.New("empty command"))
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.acquire(ctx); err != nil {
		return fail(ErrUnreachable, fmt.Errorf("waiting for a session: %w", err))
	}
	defer s.release()
	conn, sess, err := s.session(ctx)
	if errors.Is(err, ErrBusy) {
		return fail(ErrBusy, err)
	}
	if err != nil {
		return fail(ErrUnreachable, err)
	}
	defer sess.Close()
	stdout := &limitBuffer{max: s.cfg.MaxOutput}
	stderr := &limitBuffer{max: s.cfg.MaxOutput}
	sess.Stdout, sess.Stderr = stdout, stderr
	// A hung RDS may ignore a closed channel: close the whole connection.
	stop := context.AfterFunc(ctx, func() {
		sess.Close()
		s.drop(conn)
	})
	err = sess.Run(cmd.line)
	stop()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var exitErr *ssh.ExitError
	switch {
	case ctx.Err() != nil:
		// the AfterFunc may still be running: drop here too, so the next
		// command never picks up the connection being closed
		s.drop(conn)
		return fail(ErrUnreachable, ctx.Err())
	case stdout.over || stderr.over:
		return fail(ErrUnexpectedOutput, fmt.Errorf("output longer than %d bytes", s.cfg.MaxOutput))
	case err == nil:
		return res, nil
	case errors.As(err, &exitErr):
		res.ExitStatus = exitErr.ExitStatus()
		return res, nil
	}
	s.drop(conn)
	return fail(ErrUnreachable, err)
}

// bound gives a context without a deadline the CommandTimeout.
func (s *SSH) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.cfg.CommandTimeout)
}

// limitBuffer keeps at most max bytes and then fails writes.
type limitBuffer struct {
	mu   sync.Mutex
	buf  []byte
	max  int
	over bool
}

func (b *limitBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf)+len(p) > b.max {
		b.over = true
		return 0, errors.New("output too long")
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *limitBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}
