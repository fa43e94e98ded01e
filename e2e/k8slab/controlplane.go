package k8slab

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// ServiceCIDR is the cluster's service IP range; ServiceIP (its first
	// address) is the ClusterIP of the "kubernetes" Service.
	ServiceCIDR = "10.96.0.0/16"
	ServiceIP   = "10.96.0.1"

	// serviceAccountIssuer is the iss of the tokens the apiserver issues.
	serviceAccountIssuer = "https://kubernetes.default.svc"

	// defaultStartTimeout bounds StartControlPlane when ctx has no deadline.
	defaultStartTimeout = 3 * time.Minute
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
	stopGrace = 10 * time.Second
	// pollInterval paces the start-up waits.
	pollInterval = 250 * time.Millisecond
	// certValidity is the lifetime of every certificate of the lab.
	certValidity = 365 * 24 * time.Hour
)

// Component names: the log of each is <Dir>/<name>.log.
const (
	etcdName       = "etcd"
	apiserverName  = "kube-apiserver"
	controllerName = "kube-controller-manager"
	schedulerName  = "kube-scheduler"
)

// ControlPlaneOptions configure StartControlPlane.
type ControlPlaneOptions struct {
	// BinDir holds kube-apiserver, kube-controller-manager and
	// kube-scheduler (the directory e2e/lab/k8s-bins.sh prints).
	BinDir string
	// Dir is the run directory: certificates, kubeconfigs, etcd's data and
	// each component's log. It must exist; the caller removes it.
	Dir string
	// Etcd is the etcd binary; empty means "etcd" on $PATH (Debian's
	// etcd-server installs /usr/bin/etcd).
	Etcd string
	// ExtraSANs are IPs the apiserver's serving certificate must also name
	// (the guest reaches the apiserver at 10.0.2.100).
	ExtraSANs []net.IP
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// ControlPlane is a running etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler on 127.0.0.1. Stop ends every process it started.
type ControlPlane struct {
	opts     ControlPlaneOptions
	ca       *authority
	port     int // apiserver secure port
	etcdPort int // etcd client port
	peerPort int // etcd peer port (a one-member cluster still listens)
	admin    string
	config   *rest.Config

	mu      sync.Mutex
	procs   []*process
	stopped bool
	stopErr error
}

// StartControlPlane starts etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler, and returns once the apiserver's /readyz is ok, the
// "default" ServiceAccount exists in namespace default and can be issued a
// token, and the kube-root-ca.crt ConfigMap is published there. Without a
// deadline in ctx the wait is bounded by 3 minutes. On failure everything it
// started is stopped and the error quotes the tail of each component's log.
func StartControlPlane(ctx context.Context, o ControlPlaneOptions) (*ControlPlane, error) {
	c, err := newControlPlane(o)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	if err := c.start(ctx); err != nil {
		tail := c.LogTail(25) // before Stop adds the shutdown's lines
		stopErr := c.Stop()
		return nil, errors.Join(fmt.Errorf("k8slab: start control plane: %w\n%s", err, tail), stopErr)
	}
	return c, nil
}

// newControlPlane validates o, picks ports and writes the certificates and
// kubeconfigs into o.Dir. It starts nothing.
func newControlPlane(o ControlPlaneOptions) (*ControlPlane, error) {
	if o.Dir == "" {
		return nil, errors.New("k8slab: ControlPlaneOptions.Dir is empty")
	}
	if o.BinDir == "" {
		return nil, errors.New("k8slab: ControlPlaneOptions.BinDir is empty")
	}
	if o.Etcd == "" {
		o.Etcd = "etcd"
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	ca, err := newAuthority()
	if err != nil {
		return nil, err
	}
	c := &ControlPlane{opts: o, ca: ca, port: ports[0], etcdPort: ports[1], peerPort: ports[2]}
	if err := c.writeFiles(); err != nil {
		return nil, err
	}
	return c, nil
}

// Port is the apiserver's secure port on 127.0.0.1.
func (c *ControlPlane) Port() int { return c.port }

// AdminKubeconfig is the path of a kubeconfig for a cluster admin
// (O=system:masters) with server https://127.0.0.1:Port().
func (c *ControlPlane) AdminKubeconfig() string { return c.admin }

// RESTConfig is a copy of the admin's client configuration.
func (c *ControlPlane) RESTConfig() *rest.Config { return rest.CopyConfig(c.config) }

// CACert is the cluster CA's certificate (PEM); it signed the apiserver's
// serving certificate and every client certificate.
func (c *ControlPlane) CACert() []byte { return bytes.Clone(c.ca.certPEM) }

// NodeKubeconfig is a kubeconfig for the kubelet of node: a client
// certificate with CN=system:node:<node>, O=system:nodes signed by the
// cluster CA, and server (e.g. https://10.0.2.100:6443, which must be one of
// the serving certificate's names).
func (c *ControlPlane) NodeKubeconfig(node, server string) ([]byte, error) {
	if node == "" || server == "" {
		return nil, fmt.Errorf("k8slab: node kubeconfig: node %q and server %q must be set", node, server)
	}
	user := "system:node:" + node
	kp, err := c.ca.issue(certSpec{commonName: user, organizations: []string{"system:nodes"}})
	if err != nil {
		return nil, err
	}
	return clientcmd.Write(kubeconfig(server, c.ca.certPEM, user, kp))
}

// writeFiles writes the PKI under Dir/pki and the kubeconfigs under Dir, and
// builds the admin's rest.Config.
func (c *ControlPlane) writeFiles() error {
	pkiDir := filepath.Join(c.opts.Dir, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return fmt.Errorf("k8slab: %w", err)
	}
	serving, err := c.ca.issue(servingSpec(c.opts.ExtraSANs))
	if err != nil {
		return err
	}
	kubeletClient, err := c.ca.issue(certSpec{commonName: "kube-apiserver-kubelet-client", organizations: []string{"system:masters"}})
	if err != nil {
		return err
	}
	saKey, saPub, err := newServiceAccountKey()
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"ca.crt":                       c.ca.certPEM,
		"ca.key":                       c.ca.keyPEM,
		"apiserver.crt":                serving.certPEM,
		"apiserver.key":                serving.keyPEM,
		"apiserver-kubelet-client.crt": kubeletClient.certPEM,
		"apiserver-kubelet-client.key": kubeletClient.keyPEM,
		"sa.key":                       saKey,
		"sa.pub":                       saPub,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(pkiDir, name), data, 0o600); err != nil {
			return fmt.Errorf("k8slab: %w", err)
		}
	}
	server := "https://127.0.0.1:" + strconv.Itoa(c.port)
	users := []struct {
		file string
		spec certSpec
	}{
		{"admin.kubeconfig", certSpec{commonName: "kubernetes-admin", organizations: []string{"system:masters"}}},
		{"controller-manager.kubeconfig", certSpec{commonName: "system:kube-controller-manager"}},
		{"scheduler.kubeconfig", certSpec{commonName: "system:kube-scheduler"}},
	}
	for _, u := range users {
		kp, err := c.ca.issue(u.spec)
		if err != nil {
			return err
		}
		if err := clientcmd.WriteToFile(kubeconfig(server, c.ca.certPEM, u.spec.commonName, kp), filepath.Join(c.opts.Dir, u.file)); err != nil {
			return fmt.Errorf("k8slab: write %s: %w", u.file, err)
		}
	}
	c.admin = filepath.Join(c.opts.Dir, "admin.kubeconfig")
	data, err := os.ReadFile(c.admin)
	if err != nil {
		return fmt.Errorf("k8slab: %w", err)
	}
	c.config, err = clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		return fmt.Errorf("k8slab: admin kubeconfig: %w", err)
	}
	return nil
}

// start runs the components in order, each after what it needs is ready.
func (c *ControlPlane) start(ctx context.Context) error {
	begin := time.Now()
	if err := c.spawn(c.opts.Etcd, etcdName, c.etcdArgs()); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "etcd /health", c.etcdHealthy); err != nil {
		return err
	}
	c.opts.Logf("k8slab: etcd healthy on 127.0.0.1:%d after %v", c.etcdPort, time.Since(begin).Round(time.Millisecond))

	if err := c.spawn(filepath.Join(c.opts.BinDir, apiserverName), apiserverName, c.apiserverArgs()); err != nil {
		return err
	}
	probe := rest.CopyConfig(c.config)
	probe.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(probe)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	readyz := func(ctx context.Context) error {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}
	if err := c.waitFor(ctx, "kube-apiserver /readyz", readyz); err != nil {
		return err
	}
	c.opts.Logf("k8slab: kube-apiserver ready on 127.0.0.1:%d after %v", c.port, time.Since(begin).Round(time.Millisecond))

	if err := c.spawn(filepath.Join(c.opts.BinDir, controllerName), controllerName, c.controllerManagerArgs()); err != nil {
		return err
	}
	if err := c.spawn(filepath.Join(c.opts.BinDir, schedulerName), schedulerName, c.schedulerArgs()); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "the default ServiceAccount and kube-root-ca.crt in namespace default", defaultAccountReady(cs)); err != nil {
		return err
	}
	c.opts.Logf("k8slab: control plane ready after %v", time.Since(begin).Round(time.Millisecond))
	return nil
}

// defaultAccountReady is nil once namespace default has the kube-root-ca.crt
// ConfigMap and a token can be issued for its "default" ServiceAccount: the
// controller-manager runs, and service-account signing works.
func defaultAccountReady(cs kubernetes.Interface) func(context.Context) error {
	return func(ctx context.Context) error {
		if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); err != nil {
			return err
		}
		expiry := int64(600)
		req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}
		tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "default", req, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if tr.Status.Token == "" {
			return errors.New("token request for default/default returned no token")
		}
		return nil
	}
}

func (c *ControlPlane) etcdArgs() []string {
	client := "http://127.0.0.1:" + strconv.Itoa(c.etcdPort)
	peer := "http://127.0.0.1:" + strconv.Itoa(c.peerPort)
	return []string{
		"--name=lab",
		"--data-dir=" + filepath.Join(c.opts.Dir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=lab=" + peer,
		"--initial-cluster-state=new",
		"--logger=zap",
		"--log-outputs=stderr",
	}
}

func (c *ControlPlane) apiserverArgs() []string {
	pki := filepath.Join(c.opts.Dir, "pki")
	return []string{
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.port),
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(c.etcdPort),
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--authorization-mode=Node,RBAC",
		"--client-ca-file=" + filepath.Join(pki, "ca.crt"),
		"--tls-cert-file=" + filepath.Join(pki, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(pki, "apiserver.key"),
		"--service-account-issuer=" + serviceAccountIssuer,
		"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
		"--kubelet-client-certificate=" + filepath.Join(pki, "apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + filepath.Join(pki, "apiserver-kubelet-client.key"),
		"--allow-privileged=true",
	}
}

func (c *ControlPlane) controllerManagerArgs() []string {
	pki := filepath.Join(c.opts.Dir, "pki")
	return []string{
		"--kubeconfig=" + filepath.Join(c.opts.Dir, "controller-manager.kubeconfig"),
		"--service-account-private-key-file=" + filepath.Join(pki, "sa.key"),
		"--root-ca-file=" + filepath.Join(pki, "ca.crt"),
		"--cluster-signing-cert-file=" + filepath.Join(pki, "ca.crt"),
		"--cluster-signing-key-file=" + filepath.Join(pki, "ca.key"),
		"--use-service-account-credentials=true",
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--controllers=*,-node-ipam-controller",
	}
}

func (c *ControlPlane) schedulerArgs() []string {
	return []string{
		"--kubeconfig=" + filepath.Join(c.opts.Dir, "scheduler.kubeconfig"),
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
	}
}

// etcdHealthy is nil once etcd's /health says so.
func (c *ControlPlane) etcdHealthy(ctx context.Context) error {
	url := "http://127.0.0.1:" + strconv.Itoa(c.etcdPort) + "/health"
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var health struct {
		Health string `json:"health"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&health); err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	if health.Health != "true" {
		return fmt.Errorf("%s: health %q", url, health.Health)
	}
	return nil
}

// waitFor polls ready until it returns nil, a component exits, or ctx ends.
// The error names what it waited for and ready's last complaint.
func (c *ControlPlane) waitFor(ctx context.Context, what string, ready func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		if p := c.exited(); p != nil {
			return false, fmt.Errorf("%s (pid %d) exited: %v", p.name, p.cmd.Process.Pid, p.err)
		}
		last = ready(ctx)
		return last == nil, nil
	})
	if err != nil && last != nil && ctx.Err() != nil {
		return fmt.Errorf("waiting for %s: %w (last: %v)", what, err, last)
	}
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// process is one component, the leader of its own process group.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when cmd.Wait returned; err is then set
	err  error
}

// spawn starts path as the component name, in its own process group, with
// stdout and stderr appended to Dir/<name>.log, killed when this process's
// thread dies (Pdeathsig).
func (c *ControlPlane) spawn(path, name string, args []string) error {
	logPath := filepath.Join(c.opts.Dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	cmd := exec.Command(path, args...)
	cmd.Dir = c.opts.Dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return fmt.Errorf("%s: control plane stopped", name)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	c.opts.Logf("k8slab: started %s (pid %d), log %s", name, cmd.Process.Pid, logPath)
	return nil
}

// exited is the first component that is no longer running, or nil.
func (c *ControlPlane) exited() *process {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		select {
		case <-p.done:
			return p
		default:
		}
	}
	return nil
}

// Stop stops the components in the reverse order of their start: SIGTERM
// to the component's process group, SIGKILL after 10 s if it is still
// running (and to whatever else is left in its group), and returns once each
// has been reaped. It is idempotent; later calls return the first call's
// result.
//
// The order matters: an apiserver whose etcd has gone does not finish its
// SIGTERM shutdown (seen: still retrying etcd 15 s later); in order all four
// exit within about a second and a half.
func (c *ControlPlane) Stop() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return c.stopErr
	}
	c.stopped = true
	c.stopErr = stopProcesses(c.procs, stopGrace, c.opts.Logf)
	return c.stopErr
}

// stopProcesses is Stop's work on procs.
func stopProcesses(procs []*process, grace time.Duration, logf func(string, ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var errs []error
	for _, p := range slices.Backward(procs) {
		if err := p.stop(grace, logf); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stop ends p's process group: SIGTERM, SIGKILL after grace, and waits for
// p to be reaped and the group to be empty.
func (p *process) stop(grace time.Duration, logf func(string, ...any)) error {
	pid := p.cmd.Process.Pid
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	if !p.waitUntil(time.Now().Add(grace)) {
		logf("k8slab: %s (pid %d) still running %v after SIGTERM; sending SIGKILL", p.name, pid, grace)
		if err := p.signal(syscall.SIGKILL); err != nil {
			return err
		}
		if !p.waitUntil(time.Now().Add(grace)) {
			return fmt.Errorf("k8slab: %s (pid %d) did not exit after SIGKILL", p.name, pid)
		}
	}
	// The leader is gone; anything left in its group goes too.
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	if !p.groupGoneBy(time.Now().Add(grace)) {
		return fmt.Errorf("k8slab: %s: process group %d still has members after SIGKILL", p.name, pid)
	}
	return nil
}

// groupGoneBy reports whether p's process group has no live member (killed
// members may linger as zombies until their new parent reaps them) before
// deadline. The members are no children of ours, so this polls /proc.
func (p *process) groupGoneBy(deadline time.Time) bool {
	for {
		left, err := liveGroupMembers(p.cmd.Process.Pid)
		if err == nil && len(left) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// liveGroupMembers lists the processes ("pid (comm)") in process group pgid
// that are not zombies, from /proc.
func liveGroupMembers(pgid int) ([]string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var live []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// "pid (comm) state ppid pgrp ...": comm may hold spaces and parens.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 3 || fields[0] == "Z" || fields[0] == "X" {
			continue
		}
		if fields[2] == strconv.Itoa(pgid) {
			live = append(live, s[:i+1])
		}
	}
	return live, nil
}

// signal sends sig to p's process group; a group that is gone is no error.
func (p *process) signal(sig syscall.Signal) error {
	err := syscall.Kill(-p.cmd.Process.Pid, sig)
	if err == nil || errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return fmt.Errorf("k8slab: %s (process group %d): %v: %w", p.name, p.cmd.Process.Pid, sig, err)
}

// waitUntil reports whether p was reaped before deadline.
func (p *process) waitUntil(deadline time.Time) bool {
	select {
	case <-p.done:
		return true
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// LogTail is the last n lines of each component's log, each under a header
// naming the component, for failure reports.
func (c *ControlPlane) LogTail(n int) string {
	if c == nil {
		return ""
	}
	c.mu.Lock()
	procs := append([]*process(nil), c.procs...)
	c.mu.Unlock()
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "==> %s (last %d lines of %s) <==\n", p.name, n, p.log)
		tail, err := tailFile(p.log, n)
		if err != nil {
			fmt.Fprintf(&b, "(%v)\n", err)
			continue
		}
		b.WriteString(tail)
		if tail != "" && !strings.HasSuffix(tail, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// tailFile is the last n lines of the file at path, reading at most its last
// 256 KiB.
func tailFile(path string, n int) (string, error) {
	const window = 256 << 10
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := max(fi.Size()-window, 0)
	data, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return "", err
	}
	lines := strings.SplitAfter(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, ""), nil
}

// freePorts returns n distinct ports free on 127.0.0.1 a moment ago (the
// listeners are held until all n are picked, then closed).
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("k8slab: pick a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// kubeconfig is a one-cluster, one-user kubeconfig with the credentials
// embedded.
func kubeconfig(server string, caPEM []byte, user string, kp keyPair) clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lab"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.certPEM, ClientKeyData: kp.keyPEM}
	cfg.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: user}
	cfg.CurrentContext = "lab"
	return *cfg
}

// authority is the cluster CA: it signs the apiserver's serving certificate
// and every client certificate.
type authority struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

// keyPair is a PEM certificate and its PEM (SEC 1) ECDSA key.
type keyPair struct {
	certPEM []byte
	keyPEM  []byte
}

// certSpec describes a leaf certificate: a client certificate unless server.
type certSpec struct {
	commonName    string
	organizations []string
	server        bool
	dnsNames      []string
	ips           []net.IP
}

// servingSpec is the apiserver's serving certificate: loopback, the
// "kubernetes" Service's ClusterIP and DNS names, and extra.
func servingSpec(extra []net.IP) certSpec {
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(ServiceIP)}
	ips = append(ips, extra...)
	return certSpec{
		commonName: "kube-apiserver",
		server:     true,
		dnsNames: []string{
			"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local",
		},
		ips: ips,
	}
}

func newAuthority() (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("k8slab: CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "rds-csi-lab-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("k8slab: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("k8slab: CA certificate: %w", err)
	}
	keyPEM, err := ecKeyPEM(key)
	if err != nil {
		return nil, err
	}
	return &authority{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  keyPEM,
	}, nil
}

// issue signs a new key for spec.
func (a *authority) issue(spec certSpec) (keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, fmt.Errorf("k8slab: key for %s: %w", spec.commonName, err)
	}
	serial, err := serialNumber()
	if err != nil {
		return keyPair{}, err
	}
	usage := x509.ExtKeyUsageClientAuth
	if spec.server {
		usage = x509.ExtKeyUsageServerAuth
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.commonName, Organization: spec.organizations},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     spec.dnsNames,
		IPAddresses:  spec.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return keyPair{}, fmt.Errorf("k8slab: certificate for %s: %w", spec.commonName, err)
	}
	keyPEM, err := ecKeyPEM(key)
	if err != nil {
		return keyPair{}, err
	}
	return keyPair{certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM: keyPEM}, nil
}

// newServiceAccountKey is the service-account signing key (PEM, SEC 1) and
// its public key (PEM, PKIX).
func newServiceAccountKey() (private, public []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("k8slab: service-account key: %w", err)
	}
	private, err = ecKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("k8slab: service-account public key: %w", err)
	}
	return private, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func ecKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("k8slab: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("k8slab: serial number: %w", err)
	}
	return n, nil
}
