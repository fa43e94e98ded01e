package k8slab

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// newTestControlPlane writes the PKI and kubeconfigs of a control plane that
// is never started.
func newTestControlPlane(t *testing.T, extra ...net.IP) *ControlPlane {
	t.Helper()
	c, err := newControlPlane(ControlPlaneOptions{BinDir: "/nonexistent", Dir: t.TempDir(), ExtraSANs: extra, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("no PEM certificate in %q", data)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func caPool(t *testing.T, c *ControlPlane) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CACert()) {
		t.Fatal("CACert is not a PEM certificate")
	}
	return pool
}

func TestServingCertificate(t *testing.T) {
	guest := net.ParseIP("10.0.2.100")
	c := newTestControlPlane(t, guest)
	data, err := os.ReadFile(filepath.Join(c.opts.Dir, "pki", "apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cert := parseCert(t, data)
	names := []string{
		"127.0.0.1", "10.0.2.100", "10.96.0.1", "localhost", "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			_, err := cert.Verify(x509.VerifyOptions{
				DNSName:   name,
				Roots:     caPool(t, c),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				t.Errorf("serving certificate for %s: %v", name, err)
			}
		})
	}
	if err := cert.VerifyHostname("10.0.2.101"); err == nil {
		t.Error("serving certificate also names 10.0.2.101, which was not asked for")
	}
}

func TestNodeKubeconfig(t *testing.T) {
	c := newTestControlPlane(t)
	data, err := c.NodeKubeconfig("lab-node", "https://10.0.2.100:6443")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		t.Fatalf("clientcmd.Load: %v", err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		t.Fatalf("current context %q missing", cfg.CurrentContext)
	}
	cluster, user := cfg.Clusters[ctx.Cluster], cfg.AuthInfos[ctx.AuthInfo]
	if cluster == nil || user == nil {
		t.Fatalf("context %+v names a missing cluster or user", ctx)
	}
	if diff := cmp.Diff("https://10.0.2.100:6443", cluster.Server); diff != "" {
		t.Errorf("server (-want +got):\n%s", diff)
	}
	if !bytes.Equal(cluster.CertificateAuthorityData, c.CACert()) {
		t.Error("the kubeconfig's CA is not the cluster CA")
	}
	cert := parseCert(t, user.ClientCertificateData)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: caPool(t, c), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("node client certificate: %v", err)
	}
	if diff := cmp.Diff("system:node:lab-node", cert.Subject.CommonName); diff != "" {
		t.Errorf("CN (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"system:nodes"}, cert.Subject.Organization); diff != "" {
		t.Errorf("O (-want +got):\n%s", diff)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		t.Fatalf("RESTConfigFromKubeConfig: %v", err)
	}
	if rc.Host != "https://10.0.2.100:6443" {
		t.Errorf("rest config host %q", rc.Host)
	}

	for _, bad := range [][2]string{{"", "https://10.0.2.100:6443"}, {"lab-node", ""}} {
		if _, err := c.NodeKubeconfig(bad[0], bad[1]); err == nil {
			t.Errorf("NodeKubeconfig(%q, %q) succeeded", bad[0], bad[1])
		}
	}
}

func TestComponentKubeconfigs(t *testing.T) {
	c := newTestControlPlane(t)
	server := "https://127.0.0.1:" + strconv.Itoa(c.Port())
	tests := []struct {
		file string
		cn   string
		orgs []string
	}{
		{"admin.kubeconfig", "kubernetes-admin", []string{"system:masters"}},
		{"controller-manager.kubeconfig", "system:kube-controller-manager", nil},
		{"scheduler.kubeconfig", "system:kube-scheduler", nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := clientcmd.LoadFromFile(filepath.Join(c.opts.Dir, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			ctx := cfg.Contexts[cfg.CurrentContext]
			if ctx == nil {
				t.Fatalf("current context %q missing", cfg.CurrentContext)
			}
			if got := cfg.Clusters[ctx.Cluster].Server; got != server {
				t.Errorf("server %q, want %q", got, server)
			}
			cert := parseCert(t, cfg.AuthInfos[ctx.AuthInfo].ClientCertificateData)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: caPool(t, c), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("client certificate: %v", err)
			}
			if diff := cmp.Diff(tt.cn, cert.Subject.CommonName); diff != "" {
				t.Errorf("CN (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.orgs, cert.Subject.Organization); diff != "" {
				t.Errorf("O (-want +got):\n%s", diff)
			}
		})
	}
	if c.AdminKubeconfig() != filepath.Join(c.opts.Dir, "admin.kubeconfig") {
		t.Errorf("AdminKubeconfig %q", c.AdminKubeconfig())
	}
	if rc := c.RESTConfig(); rc.Host != server || len(rc.CertData) == 0 || len(rc.KeyData) == 0 || len(rc.CAData) == 0 {
		t.Errorf("RESTConfig host %q, cert %d, key %d, CA %d bytes", rc.Host, len(rc.CertData), len(rc.KeyData), len(rc.CAData))
	}
}

func TestServiceAccountKey(t *testing.T) {
	c := newTestControlPlane(t)
	pub, err := os.ReadFile(filepath.Join(c.opts.Dir, "pki", "sa.pub"))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := os.ReadFile(filepath.Join(c.opts.Dir, "pki", "sa.key"))
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := pem.Decode(pub)
	kb, _ := pem.Decode(priv)
	if pb == nil || kb == nil {
		t.Fatal("sa.pub or sa.key is not PEM")
	}
	pk, err := x509.ParsePKIXPublicKey(pb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(pk) {
		t.Error("sa.pub is not sa.key's public key")
	}
}

func TestNewControlPlaneOptions(t *testing.T) {
	for name, o := range map[string]ControlPlaneOptions{
		"no Dir":    {BinDir: "/bin"},
		"no BinDir": {Dir: t.TempDir()},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := newControlPlane(o); err == nil {
				t.Error("newControlPlane succeeded")
			}
		})
	}
}

func TestStopWithoutStart(t *testing.T) {
	var zero ControlPlane
	var nilCP *ControlPlane
	for name, c := range map[string]*ControlPlane{"zero": &zero, "nil": nilCP, "never started": newTestControlPlane(t)} {
		t.Run(name, func(t *testing.T) {
			for i := range 2 {
				if err := c.Stop(); err != nil {
					t.Errorf("Stop #%d: %v", i+1, err)
				}
			}
			if tail := c.LogTail(5); tail != "" {
				t.Errorf("LogTail of nothing started: %q", tail)
			}
		})
	}
}

// TestStopProcessGroups stops stand-in components that leave a child in
// their process group, and one that ignores SIGTERM.
func TestStopProcessGroups(t *testing.T) {
	c := newTestControlPlane(t)
	scripts := map[string]string{
		"child":    "sleep 300 & echo marker-one; wait",
		"stubborn": "trap '' TERM; sleep 300 & echo marker-two; wait",
	}
	for _, name := range []string{"child", "stubborn"} {
		if err := c.spawn("/bin/sh", name, []string{"-c", scripts[name]}); err != nil {
			t.Fatal(err)
		}
	}
	pgids := []int{c.procs[0].cmd.Process.Pid, c.procs[1].cmd.Process.Pid}
	waitForLog(t, c, "marker-one")
	waitForLog(t, c, "marker-two")

	if before := groupMembers(t, pgids); len(before) != 4 {
		t.Fatalf("before Stop: %v, want two shells and two sleeps", before)
	}

	begin := time.Now()
	if err := stopProcesses(c.procs, 500*time.Millisecond, t.Logf); err != nil {
		t.Fatal(err)
	}
	c.stopped = true
	t.Logf("stopped in %v", time.Since(begin))
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if left := groupMembers(t, pgids); len(left) > 0 {
		t.Errorf("processes left in the stopped groups: %v", left)
	}
	tail := c.LogTail(3)
	for _, want := range []string{"==> child", "marker-one", "==> stubborn", "marker-two"} {
		if !strings.Contains(tail, want) {
			t.Errorf("LogTail lacks %q:\n%s", want, tail)
		}
	}
}

// TestStartFailureQuotesLog starts a control plane whose "etcd" exits at
// once: the error quotes its log and nothing is left running.
func TestStartFailureQuotesLog(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "etcd")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'etcd: no such luck' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := StartControlPlane(ctx, ControlPlaneOptions{BinDir: "/nonexistent", Dir: t.TempDir(), Etcd: fake, Logf: t.Logf})
	if err == nil {
		c.Stop()
		t.Fatal("StartControlPlane succeeded with an etcd that exits")
	}
	for _, want := range []string{"etcd (pid", "exit status 3", "etcd: no such luck"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestTailFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		n             int
		want          string
	}{
		{"empty", "", 3, ""},
		{"fewer lines", "a\nb\n", 3, "a\nb\n"},
		{"more lines", "a\nb\nc\nd\n", 2, "c\nd\n"},
		{"no final newline", "a\nb\nc", 2, "b\nc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := tailFile(path, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := tailFile(filepath.Join(dir, "missing"), 1); err == nil {
		t.Error("tailFile of a missing file succeeded")
	}
}

func waitForLog(t *testing.T, c *ControlPlane, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.LogTail(10), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the logs:\n%s", want, c.LogTail(10))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// groupMembers lists the live members of the process groups pgids.
func groupMembers(t *testing.T, pgids []int) []string {
	t.Helper()
	var left []string
	for _, pgid := range pgids {
		live, err := liveGroupMembers(pgid)
		if err != nil {
			t.Fatal(err)
		}
		left = append(left, live...)
	}
	return left
}

// k8sBinDir is the directory of the Kubernetes binaries for TestControlPlane:
// $RDS_CSI_K8S_BINDIR, or the lab's cache once k8s-bins.sh marked it ready.
func k8sBinDir(t *testing.T) string {
	t.Helper()
	if os.Getenv("RDS_CSI_K8S") != "1" {
		t.Skip("starts Kubernetes: set RDS_CSI_K8S=1 (needs the binaries of e2e/lab/k8s-bins.sh and etcd-server)")
	}
	dir := os.Getenv("RDS_CSI_K8S_BINDIR")
	if dir == "" {
		dir = "/var/cache/rds-csi-lab/kubernetes-v1.37.2-amd64"
		if _, err := os.Stat(filepath.Join(dir, "ready")); err != nil {
			t.Fatalf("RDS_CSI_K8S=1 but the Kubernetes binaries are not ready (run e2e/lab/k8s-bins.sh or set RDS_CSI_K8S_BINDIR): %v", err)
		}
	}
	for _, bin := range []string{apiserverName, controllerName, schedulerName} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			t.Fatalf("RDS_CSI_K8S=1 but %v", err)
		}
	}
	return dir
}

func TestControlPlane(t *testing.T) {
	binDir := k8sBinDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	begin := time.Now()
	c, err := StartControlPlane(ctx, ControlPlaneOptions{
		BinDir:    binDir,
		Dir:       t.TempDir(),
		ExtraSANs: []net.IP{net.ParseIP("10.0.2.100")},
		Logf:      t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane started in %v", time.Since(begin).Round(time.Millisecond))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			c.Stop()
		}
	})
	c.mu.Lock()
	var pgids []int
	for _, p := range c.procs {
		pgids = append(pgids, p.cmd.Process.Pid)
	}
	c.mu.Unlock()
	if len(pgids) != 4 {
		t.Fatalf("%d components running, want 4", len(pgids))
	}

	admin, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "k8slab-test"}}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Data: map[string]string{"k": "v"}}
	if _, err := admin.CoreV1().ConfigMaps(ns.Name).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create configmap: %v", err)
	}
	got, err := admin.CoreV1().ConfigMaps(ns.Name).Get(ctx, "probe", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Fatalf("get configmap: %v, data %v", err, got.Data)
	}

	t.Run("node authorizer", func(t *testing.T) {
		data, err := c.NodeKubeconfig("lab-node", "https://127.0.0.1:"+strconv.Itoa(c.Port()))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := clientcmd.RESTConfigFromKubeConfig(data)
		if err != nil {
			t.Fatal(err)
		}
		node, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "lab-node"}}
		if _, err := node.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Errorf("the node cannot create its Node: %v", err)
		}
		_, err = node.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("node lists secrets: got %v, want Forbidden", err)
		}
	})

	begin = time.Now()
	if err := c.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	stopped = true
	t.Logf("stopped in %v", time.Since(begin).Round(time.Millisecond))
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	for _, pid := range pgids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("pid %d still exists after Stop", pid)
		}
	}
	if left := groupMembers(t, pgids); len(left) > 0 {
		t.Errorf("processes left in the control plane's groups: %v", left)
	}
	if t.Failed() {
		t.Logf("logs:\n%s", c.LogTail(40))
	}
}
