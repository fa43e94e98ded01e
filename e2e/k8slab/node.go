package k8slab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/srvlab/rds-csi/e2e"
	"github.com/srvlab/rds-csi/e2e/k8slab/agentapi"
)

// NodeName is the lab node's name (kubelet's --hostname-override).
const NodeName = "rdslab-node"

// GuestAPIServer is where the node reaches the host's apiserver: QEMU's user
// network forwards it (guestfwd) to the apiserver on the host's loopback.
const GuestAPIServer = "https://10.0.2.100:6443"

// GuestAPIServerIP must be among the apiserver certificate's SANs.
var GuestAPIServerIP = net.ParseIP("10.0.2.100")

// NodeOptions describe the lab's one Kubernetes node.
type NodeOptions struct {
	Kernel     e2e.Kernel
	RunDir     string // the guest's /out
	Kubelet    string // the kubelet binary's path on the host (the node's root is the host's)
	Kubeconfig []byte // kubelet's, with server GuestAPIServer
	CACert     []byte // the cluster CA (kubelet's client CA)
	APIPort    int    // the apiserver's port on the host's 127.0.0.1
	Images     []string
	MemoryMB   int
	Console    io.Writer
}

// Node is a running lab node (a QEMU guest running containerd, kubelet and
// the agent, e2e/cmd/k8s-agent).
type Node struct {
	runDir string
	agent  string // http://127.0.0.1:PORT
	cancel context.CancelFunc
	done   chan struct{}
	res    e2e.Result
	err    error
}

// StartNode boots the node and returns once its agent answers.
func StartNode(ctx context.Context, o NodeOptions) (*Node, error) {
	if o.MemoryMB == 0 {
		o.MemoryMB = 4096
	}
	if err := os.MkdirAll(filepath.Join(o.RunDir, "images"), 0o755); err != nil {
		return nil, err
	}
	if err := e2e.BuildBinary(ctx, "./e2e/cmd/k8s-agent", filepath.Join(o.RunDir, "k8s-agent")); err != nil {
		return nil, err
	}
	for i, img := range o.Images {
		dst := filepath.Join(o.RunDir, "images", fmt.Sprintf("%02d-%s", i, filepath.Base(img)))
		if err := os.Link(img, dst); err != nil {
			if err := copyFile(img, dst, 0o644); err != nil {
				return nil, err
			}
		}
	}
	job, err := os.ReadFile(filepath.Join(e2e.ModuleRoot(), "e2e", "lab", "k8s-node.sh"))
	if err != nil {
		return nil, err
	}
	inner, err := os.ReadFile(filepath.Join(e2e.ModuleRoot(), "e2e", "lab", "k8s-node-inner.sh"))
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"k8s-node-inner.sh":   inner,
		"node.env":            []byte("KUBELET=" + o.Kubelet + "\n"),
		"kubelet.kubeconfig":  o.Kubeconfig,
		"ca.crt":              o.CACert,
		"kubelet-config.yaml": []byte(kubeletConfig),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(o.RunDir, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	_ = os.Remove(filepath.Join(o.RunDir, "stop"))
	agentPort, err := freePort()
	if err != nil {
		return nil, err
	}
	netdev := fmt.Sprintf("user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:6443-cmd:socat STDIO TCP:127.0.0.1:%d,hostfwd=tcp:127.0.0.1:%d-:9100",
		o.APIPort, agentPort)
	vm := e2e.VM{
		Kernel:    o.Kernel,
		Multipath: true,
		MemoryMB:  o.MemoryMB,
		RunDir:    o.RunDir,
		Job:       string(job),
		Console:   o.Console,
		Modules:   []string{"overlay", "bridge", "virtio_net"},
		QEMUArgs:  []string{"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"},
	}
	bctx, cancel := context.WithCancel(context.Background())
	n := &Node{runDir: o.RunDir, agent: "http://127.0.0.1:" + strconv.Itoa(agentPort), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		n.res, n.err = vm.Boot(bctx)
	}()
	// Booting, importing the images and starting the agent take minutes
	// under TCG; the agent's answer is the only sign from outside.
	err = wait.PollUntilContextTimeout(ctx, 2*time.Second, 15*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-n.done:
			return false, fmt.Errorf("the node's guest ended before its agent answered (job exit %d): %v", n.res.JobExit, n.err)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.agent+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		n.Stop(30 * time.Second)
		return nil, fmt.Errorf("node agent: %w", err)
	}
	return n, nil
}

// Stop asks the node to stop its processes and power off, and kills the
// guest if it has not within grace. It returns the job's outcome.
func (n *Node) Stop(grace time.Duration) error {
	_ = os.WriteFile(filepath.Join(n.runDir, "stop"), nil, 0o644)
	select {
	case <-n.done:
	case <-time.After(grace):
		n.cancel()
		<-n.done
		return fmt.Errorf("the node did not power off within %s (killed)", grace)
	}
	n.cancel()
	if n.err != nil {
		return n.err
	}
	if n.res.JobExit != 0 {
		return fmt.Errorf("the node's job exited %d", n.res.JobExit)
	}
	return nil
}

// Log is the tail of one of the node's logs (kubelet, containerd, agent).
func (n *Node) Log(name string, lines int) string {
	b, err := os.ReadFile(filepath.Join(n.runDir, "log", name+".log"))
	if err != nil {
		return err.Error()
	}
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// Exec runs a command on the node (in its root, as root).
func (n *Node) Exec(ctx context.Context, argv ...string) (Exec, error) {
	var e Exec
	err := n.call(ctx, http.MethodPost, "/exec", Exec{Argv: argv}, &e)
	return e, err
}

// Sh runs a shell command on the node and returns its standard output; a
// non-zero exit is an error quoting standard error.
func (n *Node) Sh(ctx context.Context, script string) (string, error) {
	e, err := n.Exec(ctx, "/bin/sh", "-c", script)
	if err != nil {
		return "", err
	}
	if e.Exit != 0 {
		return e.Stdout, fmt.Errorf("%q exited %d: %s", script, e.Exit, strings.TrimSpace(e.Stderr))
	}
	return e.Stdout, nil
}

// Emulator is the RDS emulator's credentials, as the controller's Secret
// holds them.
func (n *Node) Emulator(ctx context.Context) (Emulator, error) {
	var e Emulator
	err := n.call(ctx, http.MethodGet, "/emulator", nil, &e)
	return e, err
}

// Static makes a volume on the node's target that the emulator does not
// know of (a static PV's volume) and returns where it is.
func (n *Node) Static(ctx context.Context, name string, size int64) (Static, error) {
	var s Static
	err := n.call(ctx, http.MethodPost, "/static?"+url.Values{"name": {name}, "bytes": {strconv.FormatInt(size, 10)}}.Encode(), nil, &s)
	return s, err
}

// RDS lists the emulated RDS's disks and files.
func (n *Node) RDS(ctx context.Context) (RDS, error) {
	var r RDS
	err := n.call(ctx, http.MethodGet, "/rds", nil, &r)
	return r, err
}

// Unlink takes a subsystem off its port (the target goes away for the
// hosts connected to it); Relink puts it back.
func (n *Node) Unlink(ctx context.Context, nqn string, port int) error {
	return n.call(ctx, http.MethodPost, "/unlink?"+url.Values{"nqn": {nqn}, "port": {strconv.Itoa(port)}}.Encode(), nil, nil)
}

// Relink: see Unlink.
func (n *Node) Relink(ctx context.Context, nqn string, port int) error {
	return n.call(ctx, http.MethodPost, "/relink?"+url.Values{"nqn": {nqn}, "port": {strconv.Itoa(port)}}.Encode(), nil, nil)
}

func (n *Node) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.agent+path, body)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("node agent %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("node agent %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// The agent's API types.
type (
	Exec     = agentapi.Exec
	Emulator = agentapi.Emulator
	Static   = agentapi.Static
	RDS      = agentapi.RDS
)

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// kubeletConfig: cgroupfs on cgroup v2 (no systemd in the guest), image
// garbage collection off (the images cannot be pulled again), eviction
// thresholds low (the node's root is a tmpfs), the cluster CA for clients
// (the apiserver's kubelet client certificate).
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "16Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: /out/ca.crt
authorization:
  mode: AlwaysAllow
readOnlyPort: 0
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
localStorageCapacityIsolation: false
`
