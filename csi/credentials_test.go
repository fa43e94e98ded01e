package csi

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/routeros"
	"github.com/srvlab/rds-csi/routeros/rdstest"
)

// twoRDS is a controller whose default is the emulated RDS a (with a's
// credentials as its own), and a second emulated RDS b, each on loopback
// with its own host key and client key. Everything the controller logs
// goes to logs.
type twoRDS struct {
	c    *Controller
	a, b *rdstest.Server
	logs *bytes.Buffer
}

func startRDS(t *testing.T) *rdstest.Server {
	t.Helper()
	s, err := rdstest.Start(rdstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func credsOf(s *rdstest.Server) Credentials {
	return Credentials{User: s.User(), PrivateKey: s.ClientKeyPEM(), KnownHosts: s.KnownHosts()}
}

func secretOf(s *rdstest.Server) map[string]string {
	return map[string]string{SecretUsername: s.User(), SecretPrivateKey: string(s.ClientKeyPEM()), SecretKnownHosts: string(s.KnownHosts())}
}

func newTwoRDS(t *testing.T, maxClients int) *twoRDS {
	t.Helper()
	a, b := startRDS(t), startRDS(t)
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	run, err := routeros.NewSSH(routeros.SSHConfig{Address: a.Addr(), User: a.User(),
		PrivateKey: a.ClientKeyPEM(), KnownHosts: a.KnownHosts(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Close() })
	c, err := NewController(ControllerConfig{Client: routeros.NewClient(run, nil), RDSAddress: a.Addr(),
		VolumeDir: testVolumeDir, NQNBase: "nqn.2000-02.com.mikrotik", Credentials: credsOf(a),
		MaxClients: maxClients, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &twoRDS{c: c, a: a, b: b, logs: logs}
}

func (e *twoRDS) create(t *testing.T, name string, rds *rdstest.Server, secrets map[string]string) (*csi.Volume, error) {
	t.Helper()
	resp, err := e.c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: ctrlMountCaps(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20},
		Parameters:    map[string]string{KeyRDSAddress: rds.Addr()}, Secrets: secrets})
	return resp.GetVolume(), err
}

func slots(s *rdstest.Server) []string {
	var out []string
	for _, d := range s.Disks() {
		out = append(out, d.Slot)
	}
	return out
}

// TestTwoRDS: a StorageClass per RDS; each volume is created on the RDS its
// StorageClass names, with that RDS's secret, and its id alone (with the
// secret) routes get, expand and delete to that RDS and no other.
func TestTwoRDS(t *testing.T) {
	e := newTwoRDS(t, 0)
	va, err := e.create(t, "pvc-a", e.a, nil)
	if err != nil {
		t.Fatal(err)
	}
	vb, err := e.create(t, "pvc-b", e.b, secretOf(e.b))
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := routeros.SlotFor("pvc-a")
	sb, _ := routeros.SlotFor("pvc-b")
	if va.GetVolumeId() != sa+"@"+e.a.Addr() || vb.GetVolumeId() != sb+"@"+e.b.Addr() {
		t.Errorf("ids %s, %s; want %s@%s, %s@%s", va.GetVolumeId(), vb.GetVolumeId(), sa, e.a.Addr(), sb, e.b.Addr())
	}
	if got := slots(e.a); len(got) != 1 || got[0] != sa {
		t.Errorf("RDS a holds %v, want [%s]", got, sa)
	}
	if got := slots(e.b); len(got) != 1 || got[0] != sb {
		t.Errorf("RDS b holds %v, want [%s]", got, sb)
	}
	// A retry against b, same secret: the same volume.
	if again, err := e.create(t, "pvc-b", e.b, secretOf(e.b)); err != nil || again.GetVolumeId() != vb.GetVolumeId() {
		t.Errorf("retry on b: %v %v", again, err)
	}
	// The expander secret routes the expansion to b.
	x, err := e.c.ControllerExpandVolume(context.Background(), &csi.ControllerExpandVolumeRequest{VolumeId: vb.GetVolumeId(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: 4 << 20}, Secrets: secretOf(e.b)})
	if err != nil || x.GetCapacityBytes() != 4<<20 {
		t.Fatalf("expand on b: %v %v", x, err)
	}
	if f := e.b.Files(); f[e.b.Disks()[0].FilePath] != 4<<20 {
		t.Errorf("b's files %v after the expansion, want %d bytes", f, 4<<20)
	}
	if f := e.a.Files(); f[e.a.Disks()[0].FilePath] != 1<<20 {
		t.Errorf("a's files %v changed by b's expansion", f)
	}
	// Delete b's volume: only b's disk goes.
	if _, err := e.c.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: vb.GetVolumeId(), Secrets: secretOf(e.b)}); err != nil {
		t.Fatal(err)
	}
	if got := slots(e.b); len(got) != 0 {
		t.Errorf("RDS b holds %v after the delete", got)
	}
	if got := slots(e.a); len(got) != 1 {
		t.Errorf("RDS a holds %v, want its volume untouched", got)
	}
	// a's id with a's secret (the controller's own credentials): the
	// default client.
	if _, err := e.c.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: va.GetVolumeId(), Secrets: secretOf(e.a)}); err != nil {
		t.Fatal(err)
	}
	if got := slots(e.a); len(got) != 0 {
		t.Errorf("RDS a holds %v after the delete", got)
	}
	if n := e.c.pool.len(); n != 1 {
		t.Errorf("%d pooled clients, want 1 (b's; a is the default client)", n)
	}
}

// TestWrongSecret: what a wrong or malformed secret answers; nothing is
// created, and no key material reaches an error or the log.
func TestWrongSecret(t *testing.T) {
	e := newTwoRDS(t, 0)
	mixed := secretOf(e.b)
	mixed[SecretPrivateKey] = string(e.a.ClientKeyPEM()) // b's known_hosts, a's key: b refuses it
	noKnown := secretOf(e.b)
	delete(noKnown, SecretKnownHosts) // falls back to the controller's known_hosts, which lacks b
	badKey := secretOf(e.b)
	badKey[SecretPrivateKey] = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END OPENSSH PRIVATE KEY-----\n"
	noKey := secretOf(e.b)
	delete(noKey, SecretPrivateKey)
	typo := secretOf(e.b)
	typo["privatekey"] = typo[SecretPrivateKey]
	badKnown := secretOf(e.b)
	badKnown[SecretKnownHosts] = "not a known_hosts line"
	for _, c := range []struct {
		name    string
		secrets map[string]string
		code    codes.Code
		mention string
	}{
		{"a's key on b", mixed, codes.FailedPrecondition, "secret"},
		{"no knownHosts for b", noKnown, codes.FailedPrecondition, "known_hosts"},
		{"no secrets for b", nil, codes.FailedPrecondition, "known_hosts"},
		{"malformed key", badKey, codes.InvalidArgument, "private key"},
		{"no privateKey", noKey, codes.InvalidArgument, SecretPrivateKey},
		{"misspelt key", typo, codes.InvalidArgument, "privatekey"},
		{"bad known_hosts", badKnown, codes.InvalidArgument, "known_hosts"},
	} {
		_, err := e.create(t, "pvc-wrong", e.b, c.secrets)
		if status.Code(err) != c.code || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("%s: %v, want %v mentioning %q", c.name, err, c.code, c.mention)
		}
		if body := strings.Split(c.secrets[SecretPrivateKey], "\n"); len(body) > 1 && strings.Contains(err.Error(), body[1]) {
			t.Errorf("%s: the error quotes the private key: %v", c.name, err)
		}
	}
	if got := slots(e.b); len(got) != 0 {
		t.Errorf("RDS b holds %v after refused requests", got)
	}
	for _, k := range [][]byte{e.a.ClientKeyPEM(), e.b.ClientKeyPEM(), []byte("c2VjcmV0LWJ5dGVz")} {
		if body := bytes.Split(k, []byte("\n")); len(body) > 1 && bytes.Contains(e.logs.Bytes(), body[1]) {
			t.Errorf("the log holds key material: %s", e.logs.String())
		}
	}
}

// TestSecretPool: at most MaxClients pooled clients; a full pool closes the
// least recently used idle one, and its routeros.Client keeps working.
func TestSecretPool(t *testing.T) {
	e := newTwoRDS(t, 1)
	third := startRDS(t)
	vb, err := e.create(t, "pvc-b", e.b, secretOf(e.b))
	if err != nil {
		t.Fatal(err)
	}
	cb, err := e.c.rds(e.b.Addr(), secretOf(e.b))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.create(t, "pvc-c", third, secretOf(third)); err != nil {
		t.Fatal(err)
	}
	if n := e.c.pool.len(); n != 1 {
		t.Errorf("%d pooled clients, want at most 1", n)
	}
	// b's client was closed by the eviction; its handle reconnects.
	sb, _ := routeros.SlotFor("pvc-b")
	if d, err := cb.Disk(context.Background(), sb); err != nil || d.Slot != sb {
		t.Errorf("b's client after eviction: %v %v", d, err)
	}
	if _, err := e.c.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: vb.GetVolumeId(), Secrets: secretOf(e.b)}); err != nil {
		t.Fatal(err)
	}
	if n := e.c.pool.len(); n != 1 {
		t.Errorf("%d pooled clients, want at most 1", n)
	}
	if got := slots(third); len(got) != 1 {
		t.Errorf("third RDS holds %v, want its volume", got)
	}
}

// TestSecretPoolFull: when every pooled client is running a command, a new
// address or secret is Unavailable (retry), not a new connection.
func TestSecretPoolFull(t *testing.T) {
	e := newTwoRDS(t, 1)
	third := startRDS(t)
	e.b.Hang("/disk print")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := e.c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-hang", VolumeCapabilities: ctrlMountCaps(),
			Parameters: map[string]string{KeyRDSAddress: e.b.Addr()}, Secrets: secretOf(e.b)})
		done <- err
	}()
	// Wait until b's command is running: the emulator logs it (it has no
	// event to wait on).
	for !hasCommand(e.b, "/disk print") {
		select {
		case err := <-done:
			t.Fatalf("the hung create ended: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	_, err := e.create(t, "pvc-c", third, secretOf(third))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("pool full of busy clients: %v, want Unavailable", err)
	}
	cancel()
	<-done
	e.b.Hang("")
	if _, err := e.create(t, "pvc-c", third, secretOf(third)); err != nil {
		t.Errorf("after the busy client finished: %v", err)
	}
}

func hasCommand(s *rdstest.Server, prefix string) bool {
	for _, c := range s.Commands() {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

// TestRDSAddressInjection: nothing in rdsAddress or a secret's username
// reaches the RDS: each is InvalidArgument before any command or
// connection.
func TestRDSAddressInjection(t *testing.T) {
	e := newTwoRDS(t, 0)
	for _, addr := range []string{e.b.Addr() + ";/system reboot", e.b.Addr() + "\n/system reboot", e.b.Addr() + " ", "$(reboot)",
		`127.0.0.1" /system reboot "`, "-oProxyCommand=reboot", "user@" + e.b.Addr(), "127.0.0.1:22/../x", "127.0.0.1:0"} {
		_, err := e.c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-inj", VolumeCapabilities: ctrlMountCaps(),
			Parameters: map[string]string{KeyRDSAddress: addr}, Secrets: secretOf(e.b)})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), KeyRDSAddress) {
			t.Errorf("rdsAddress %q: %v, want InvalidArgument naming %s", addr, err, KeyRDSAddress)
		}
	}
	for _, user := range []string{"rds-csi /system reboot", "rds-csi\n/system reboot", "rds-csi\x00", " "} {
		s := secretOf(e.b)
		s[SecretUsername] = user
		if _, err := e.create(t, "pvc-inj", e.b, s); status.Code(err) != codes.InvalidArgument {
			t.Errorf("username %q: %v, want InvalidArgument", user, err)
		}
	}
	if c := e.b.Commands(); len(c) != 0 {
		t.Errorf("commands reached b: %q", c)
	}
}

// TestSecretsNotLogged: the gRPC log line of a call with secrets (success
// and failure) holds no key material; the controller's own log neither.
func TestSecretsNotLogged(t *testing.T) {
	e := newTwoRDS(t, 0)
	logged := &bytes.Buffer{}
	intercept := LoggingInterceptor(slog.New(slog.NewTextHandler(logged, &slog.HandlerOptions{Level: slog.LevelDebug})))
	info := &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Controller/CreateVolume"}
	handler := func(ctx context.Context, req any) (any, error) {
		return e.c.CreateVolume(ctx, req.(*csi.CreateVolumeRequest))
	}
	wrongUser := secretOf(e.b)
	wrongUser[SecretUsername] = "nobody"
	for name, secrets := range map[string]map[string]string{"ok": secretOf(e.b), "refused": wrongUser} {
		req := &csi.CreateVolumeRequest{Name: "pvc-log-" + name, VolumeCapabilities: ctrlMountCaps(),
			Parameters: map[string]string{KeyRDSAddress: e.b.Addr()}, Secrets: secrets}
		if _, err := intercept(context.Background(), req, info, handler); (err == nil) != (name == "ok") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if !strings.Contains(logged.String(), "pvc-log-ok") || !strings.Contains(logged.String(), "pvc-log-refused") {
		t.Fatalf("the calls were not logged: %s", logged)
	}
	body := strings.Split(string(e.b.ClientKeyPEM()), "\n")[1]
	for what, log := range map[string]string{"gRPC log": logged.String(), "controller log": e.logs.String()} {
		if strings.Contains(log, body) || strings.Contains(log, "PRIVATE KEY") {
			t.Errorf("the %s holds key material:\n%s", what, log)
		}
	}
}
