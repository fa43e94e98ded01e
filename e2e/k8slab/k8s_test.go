package k8slab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/srvlab/rds-csi/e2e"
	"github.com/srvlab/rds-csi/e2e/k8slab/agentapi"
)

const driverName = "rds.csi.srvlab.io"

// lab is one Kubernetes lab: the control plane on the host, the node in a
// guest, the driver deployed from deploy/ through the lab's overlay.
type lab struct {
	cp   *ControlPlane
	node *Node
	cs   kubernetes.Interface
}

// TestKubernetes runs the driver under a real kubelet: make k8s.
func TestKubernetes(t *testing.T) {
	if os.Getenv("RDS_CSI_K8S") != "1" {
		t.Skip("the Kubernetes lab runs with RDS_CSI_K8S=1 (make k8s)")
	}
	series := os.Getenv("RDS_CSI_K8S_KERNEL")
	if series == "" {
		series = "6.12"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	l := startLab(ctx, t, series)

	t.Run("static", func(t *testing.T) { l.staticVolume(ctx, t, series) })
	t.Run("outage-and-plugin-restart", func(t *testing.T) { l.outageAndRestart(ctx, t, series) })
	t.Run("bad-parameter", func(t *testing.T) { l.badParameter(ctx, t) })
	t.Run("dynamic", func(t *testing.T) { l.dynamic(ctx, t, series) })
	t.Run("bad-storageclass", func(t *testing.T) { l.badStorageClass(ctx, t) })
}

func startLab(ctx context.Context, t *testing.T, series string) *lab {
	t.Helper()
	start := time.Now()
	bins, err := kubernetesBinaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := e2e.PrepareKernel(ctx, series)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if os.Getenv("RDS_CSI_K8S_KEEP") != "" {
		// Logs, the node's console and dmesg, kept after the run.
		if dir, err = os.MkdirTemp("", "rds-csi-k8s-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("run directory (kept): %s", dir)
	}
	cp, err := StartControlPlane(ctx, ControlPlaneOptions{
		BinDir: bins, Dir: filepath.Join(dir, "control-plane"), ExtraSANs: []net.IP{GuestAPIServerIP}, Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane logs:\n%s", cp.LogTail(30))
		}
		if err := cp.Stop(); err != nil {
			t.Errorf("control plane stop: %v", err)
		}
	})
	t.Logf("control plane up after %s", time.Since(start).Round(time.Second))
	imgs, err := BuildImages(ctx, filepath.Join(dir, "images"), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := cp.NodeKubeconfig(NodeName, GuestAPIServer)
	if err != nil {
		t.Fatal(err)
	}
	console, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close()
	node, err := StartNode(ctx, NodeOptions{
		Kernel: kernel, RunDir: filepath.Join(dir, "node"), Kubelet: filepath.Join(bins, "kubelet"),
		Kubeconfig: kc, CACert: cp.CACert(), APIPort: cp.Port(),
		Images: []string{imgs.Pause.Archive, imgs.App.Archive, imgs.Plugin.Archive,
			imgs.Attacher.Archive, imgs.Provisioner.Archive, imgs.Resizer.Archive},
		Console: console,
	})
	if err != nil {
		t.Logf("console:\n%s", consoleTail(filepath.Join(dir, "console.log"), 40))
		t.Fatal(err)
	}
	l := &lab{cp: cp, node: node}
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"kubelet", "containerd", "agent"} {
				t.Logf("node %s log:\n%s", name, node.Log(name, 40))
			}
		}
		if err := node.Stop(3 * time.Minute); err != nil {
			t.Errorf("node stop: %v\nconsole:\n%s", err, consoleTail(filepath.Join(dir, "console.log"), 30))
		}
		// kernellog: an oops on the node fails the run like in the other labs.
		if b, err := os.ReadFile(filepath.Join(dir, "node", "dmesg.txt")); err == nil {
			for _, r := range e2e.KernelTrouble(string(b), false) {
				t.Errorf("the node's kernel reported:\n%s", r)
			}
			for _, r := range e2e.KernelTrouble(string(b), true) {
				t.Logf("the node's kernel was slow:\n%s", r)
			}
		}
	})
	t.Logf("node agent up after %s", time.Since(start).Round(time.Second))
	l.cs, err = kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	l.waitFor(ctx, t, "node "+NodeName+" Ready", 10*time.Minute, func(ctx context.Context) (bool, string, error) {
		n, err := l.cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, "not registered", nil
		}
		if err != nil {
			return false, "", err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, c.Reason + ": " + c.Message, nil
			}
		}
		return false, "no Ready condition", nil
	})
	t.Logf("node Ready after %s", time.Since(start).Round(time.Second))

	emu, err := node.Emulator(ctx)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := RenderOverlay(OverlayDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, cp.RESTConfig(), objs); err != nil {
		t.Fatal(err)
	}
	if _, err := l.cs.CoreV1().Secrets("rds-csi").Create(ctx, ControllerSecret(emu.ClientKeyPEM, emu.KnownHosts), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l.waitFor(ctx, t, "the plugin registered with kubelet (CSINode)", 10*time.Minute, func(ctx context.Context) (bool, string, error) {
		n, err := l.cs.StorageV1().CSINodes().Get(ctx, NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, "no CSINode", nil
		}
		if err != nil {
			return false, "", err
		}
		for _, d := range n.Spec.Drivers {
			if d.Name == driverName {
				return true, "", nil
			}
		}
		return false, l.podsState(ctx, "rds-csi"), nil
	})
	l.waitFor(ctx, t, "the controller Deployment available", 10*time.Minute, func(ctx context.Context) (bool, string, error) {
		d, err := l.cs.AppsV1().Deployments("rds-csi").Get(ctx, "rds-csi-controller", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return d.Status.AvailableReplicas >= 1, l.podsState(ctx, "rds-csi"), nil
	})
	t.Logf("driver deployed after %s", time.Since(start).Round(time.Second))
	return l
}

// staticVolume: scenarios 1 and 4. A pod writes and fsyncs on a static PV;
// deleting it unpublishes, unstages, detaches and disconnects; a second pod
// on the same claim finds the data (no reformat).
func (l *lab) staticVolume(ctx context.Context, t *testing.T, series string) {
	st, err := l.node.Static(ctx, "static1", 256<<20)
	if err != nil {
		t.Fatal(err)
	}
	pv, pvc := staticPV("lab-static", st, map[string]string{"ctrlLossTmo": "-1", "reconnectDelay": "2"})
	l.create(ctx, t, pv, pvc)

	for i, phase := range []string{"first", "second"} {
		name := fmt.Sprintf("writer-%d", i+1)
		applied := time.Now()
		pod := writerPod(name, pvc.Name)
		if _, err := l.cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		uid := l.waitPodReady(ctx, t, name)
		running := time.Since(applied)
		mount := fmt.Sprintf("/var/lib/kubelet/pods/%s/volumes/kubernetes.io~csi/%s/mount", uid, pv.Name)
		out, err := l.node.Sh(ctx, "cat "+mount+"/first.sha; cd "+mount+" && sha256sum data.bin")
		if err != nil {
			t.Fatalf("%s pod: %v", phase, err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || strings.Fields(lines[0])[0] != strings.Fields(lines[1])[0] {
			t.Fatalf("%s pod: the data differs from what the first pod wrote (no reformat expected):\n%s", phase, out)
		}
		if !l.connected(ctx, t, st.NQN) {
			t.Fatalf("%s pod running, but no controller on the node is connected to %s", phase, st.NQN)
		}
		deleted := time.Now()
		if err := l.cs.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		l.waitFor(ctx, t, "pod "+name+" gone", 5*time.Minute, func(ctx context.Context) (bool, string, error) {
			_, err := l.cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), "", nil
		})
		l.waitFor(ctx, t, "the node's controller for "+st.NQN+" gone", 5*time.Minute, func(ctx context.Context) (bool, string, error) {
			return !l.connected(ctx, t, st.NQN), "", nil
		})
		gone := time.Since(deleted)
		l.waitFor(ctx, t, "the VolumeAttachment of "+pv.Name+" gone", 5*time.Minute, func(ctx context.Context) (bool, string, error) {
			vas, err := l.cs.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, "", err
			}
			for _, va := range vas.Items {
				if src := va.Spec.Source.PersistentVolumeName; src != nil && *src == pv.Name {
					return false, va.Name, nil
				}
			}
			return true, "", nil
		})
		if out, err := l.node.Sh(ctx, "grep -c "+pv.Name+" /proc/self/mountinfo || true"); err != nil || strings.TrimSpace(out) != "0" {
			t.Errorf("%s pod gone, but mounts of %s remain on the node (%v): %s", phase, pv.Name, err, out)
		}
		t.Logf("BENCH kernel=%s scenario=static-pv pod=%s apply-to-running=%s delete-to-controller-gone=%s",
			series, phase, running.Round(100*time.Millisecond), gone.Round(100*time.Millisecond))
	}
}

// outageAndRestart: scenarios 2 and 3 on one running pod that appends a
// sequence number and syncs every second. The target's port goes away for
// 30 s and comes back: the pod never restarts, its writes resume, the data
// is intact, and the plugin's metrics show the controller connecting, then
// live again. Then the plugin pod is deleted; the DaemonSet's new plugin
// adopts the controller (live, not orphaned) while the pod keeps writing,
// and deleting the pod still unstages and disconnects.
func (l *lab) outageAndRestart(ctx context.Context, t *testing.T, series string) {
	st, err := l.node.Static(ctx, "steady", 256<<20)
	if err != nil {
		t.Fatal(err)
	}
	pv, pvc := staticPV("lab-steady", st, map[string]string{"ctrlLossTmo": "-1", "reconnectDelay": "2"})
	l.create(ctx, t, pv, pvc)
	pod := steadyPod("steady", pvc.Name)
	applied := time.Now()
	if _, err := l.cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	uid := l.waitPodReady(ctx, t, pod.Name)
	running := time.Since(applied)
	mount := fmt.Sprintf("/var/lib/kubelet/pods/%s/volumes/kubernetes.io~csi/%s/mount", uid, pv.Name)
	l.waitProgress(ctx, t, "before the outage", l.progress(ctx, t)+2)

	// Scenario 2: the outage.
	if err := l.node.Unlink(ctx, st.NQN, st.Port); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	l.waitFor(ctx, t, "the plugin's metrics to show the controller not live", 2*time.Minute, func(ctx context.Context) (bool, string, error) {
		m := l.metrics(ctx, t, st.NQN, "rds_csi_controller_state{")
		if m == "" {
			all, _ := l.node.Sh(ctx, "/bin/busybox wget -qO- http://127.0.0.1:9809/metrics | grep '^rds_csi_controller_state'; cat /sys/class/nvme/nvme*/state")
			return false, "no metric of " + st.NQN + " among:\n" + all, nil
		}
		return hasSample(m, `state="live"`, "0"), m, nil
	})
	t.Logf("during the outage:\n%s", l.metrics(ctx, t, st.NQN, "rds_csi_controller_state{", "rds_csi_controller_reconnect_attempt{", "rds_csi_controller_not_live_seconds{"))
	// The outage lasts 30 s from the unlink (the I/O of the pod waits; with
	// ctrlLossTmo -1 the kernel reconnects forever).
	select {
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	case <-time.After(time.Until(down.Add(30 * time.Second))):
	}
	stalled := l.progress(ctx, t)
	if err := l.node.Relink(ctx, st.NQN, st.Port); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	l.waitFor(ctx, t, "the controller live again", 3*time.Minute, func(ctx context.Context) (bool, string, error) {
		m := l.metrics(ctx, t, st.NQN, "rds_csi_controller_state{")
		return hasSample(m, `state="live"`, "1"), m, nil
	})
	recovered := time.Since(up)
	l.waitProgress(ctx, t, "after the outage", stalled+3)
	t.Logf("after the outage:\n%s", l.metrics(ctx, t, st.NQN, "rds_csi_controller_reconnects_total{", "rds_csi_controller_state{"))
	l.checkSteady(ctx, t, pod.Name, mount)

	// Scenario 3: the plugin restarts under the running pod.
	plugins, err := l.cs.CoreV1().Pods("rds-csi").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=node"})
	if err != nil || len(plugins.Items) != 1 {
		t.Fatalf("the node plugin pod: %v (%d pods)", err, len(plugins.Items))
	}
	old := plugins.Items[0]
	if err := l.cs.CoreV1().Pods("rds-csi").Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	l.waitFor(ctx, t, "a new plugin pod Ready", 5*time.Minute, func(ctx context.Context) (bool, string, error) {
		ps, err := l.cs.CoreV1().Pods("rds-csi").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=node"})
		if err != nil {
			return false, "", err
		}
		for _, p := range ps.Items {
			if p.UID == old.UID {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					return true, "", nil
				}
			}
		}
		return false, l.podsState(ctx, "rds-csi"), nil
	})
	t.Logf("new plugin Ready %s after the old one was deleted", time.Since(restarted).Round(100*time.Millisecond))
	l.waitFor(ctx, t, "the new plugin to adopt the controller", 2*time.Minute, func(ctx context.Context) (bool, string, error) {
		// Live, and backing a staged volume (an orphan's clock would run).
		m := l.metrics(ctx, t, st.NQN, "rds_csi_controller_state{", "rds_csi_controller_orphaned_seconds{")
		return hasSample(m, `state="live"`, "1") && hasSample(m, "rds_csi_controller_orphaned_seconds{", "0"), m, nil
	})
	l.waitProgress(ctx, t, "after the plugin restart", l.progress(ctx, t)+3)
	l.checkSteady(ctx, t, pod.Name, mount)

	deleted := time.Now()
	if err := l.cs.CoreV1().Pods("default").Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	l.waitFor(ctx, t, "the node's controller for "+st.NQN+" gone (unstage by the new plugin)", 5*time.Minute, func(ctx context.Context) (bool, string, error) {
		return !l.connected(ctx, t, st.NQN), "", nil
	})
	t.Logf("BENCH kernel=%s scenario=outage pod=steady apply-to-running=%s outage=30s relink-to-live=%s delete-to-controller-gone=%s",
		series, running.Round(100*time.Millisecond), recovered.Round(100*time.Millisecond), time.Since(deleted).Round(100*time.Millisecond))
}

// steadyPod writes 8 MiB of random data with its checksum once, then
// appends a sequence number to seq.log and syncs, every second, keeping the
// last number written in /tmp/last (outside the volume, readable while the
// volume's I/O waits).
func steadyPod(name, claim string) *corev1.Pod {
	p := writerPod(name, claim)
	p.Spec.Containers[0].Command = []string{"/bin/sh", "-c", `set -e
# steady-writer
cd /data
dd if=/dev/urandom of=data.bin bs=1M count=8 conv=fsync 2>/dev/null
sha256sum data.bin > first.sha
sync
touch /tmp/done
trap 'exit 0' TERM
i=0
while :; do
	i=$((i+1))
	echo $i >> seq.log
	sync
	echo $i > /tmp/last
	sleep 1
done`}
	return p
}

// progress is the steady writer's last synced sequence number.
func (l *lab) progress(ctx context.Context, t *testing.T) int {
	t.Helper()
	// The writer is the container's sh whose command line names the
	// writer; the bracket keeps this shell's own command line from
	// matching.
	out, err := l.node.Sh(ctx, `for p in $(pgrep -x sh); do grep -q "steady[-]writer" /proc/$p/cmdline 2>/dev/null && cat /proc/$p/root/tmp/last && exit; done; echo 0`)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(strings.TrimSpace(out), &n)
	return n
}

func (l *lab) waitProgress(ctx context.Context, t *testing.T, when string, atLeast int) {
	t.Helper()
	l.waitFor(ctx, t, fmt.Sprintf("the pod's writes %s (sequence %d)", when, atLeast), 3*time.Minute, func(ctx context.Context) (bool, string, error) {
		n := l.progress(ctx, t)
		return n >= atLeast, fmt.Sprint("at ", n), nil
	})
}

// checkSteady: the pod never restarted; with the page cache dropped, the
// data read back from the device matches its checksum and the sequence log
// has no gap and no damaged line.
func (l *lab) checkSteady(ctx context.Context, t *testing.T, name, mount string) {
	t.Helper()
	p, err := l.cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.RestartCount != 0 {
			t.Errorf("container %s restarted %d times", c.Name, c.RestartCount)
		}
	}
	out, err := l.node.Sh(ctx, "sync; echo 3 > /proc/sys/vm/drop_caches; cd "+mount+" && sha256sum -c first.sha && awk 'NR != $1 {print \"gap or damage at line \" NR \": \" $0; bad=1} END {print NR \" lines\"; exit bad}' seq.log")
	if err != nil {
		t.Errorf("the pod's data after the outage: %v\n%s", err, out)
	}
}

// metrics returns the node plugin's metric lines for the controller of nqn
// whose names start with one of prefixes.
func (l *lab) metrics(ctx context.Context, t *testing.T, nqn string, prefixes ...string) string {
	t.Helper()
	out, err := l.node.Sh(ctx, "/bin/busybox wget -qO- http://127.0.0.1:9809/metrics")
	if err != nil {
		return "scrape: " + err.Error()
	}
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		// The state set's other states (0) say nothing.
		if !strings.Contains(line, `subsysnqn="`+nqn+`"`) ||
			strings.HasPrefix(line, "rds_csi_controller_state{") && strings.HasSuffix(line, " 0") && !strings.Contains(line, `state="live"`) {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				b.WriteString(line + "\n")
			}
		}
	}
	return b.String()
}

// dynamic: scenario 5. A StorageClass with resilience parameters, a claim,
// csi-provisioner and the controller make a disk on the emulated RDS; a pod
// runs on it, and the kernel controller's sysfs values are the
// StorageClass's; the claim grown, the filesystem the pod sees grows; the
// claim deleted, the disk and its file are gone.
func (l *lab) dynamic(ctx context.Context, t *testing.T, series string) {
	bind := storagev1.VolumeBindingWaitForFirstConsumer
	del := corev1.PersistentVolumeReclaimDelete
	expand := true
	sc := &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{Name: "lab-rds"},
		Provisioner: driverName,
		Parameters: map[string]string{
			"volumePath": "/storage-pool/rds-csi", "ctrlLossTmo": "600", "reconnectDelay": "3",
			"reconnectSpread": "0", "keepAliveTmo": "7", "fsType": "ext4",
		},
		ReclaimPolicy: &del, VolumeBindingMode: &bind, AllowVolumeExpansion: &expand,
	}
	if _, err := l.cs.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "dyn", Namespace: "default"},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &sc.Name,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("128Mi")}},
		},
	}
	if _, err := l.cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	pod := writerPod("dyn-writer", pvc.Name)
	if _, err := l.cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	uid := l.waitPodReady(ctx, t, pod.Name)
	running := time.Since(applied)
	claim, err := l.cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, pvc.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv, err := l.cs.CoreV1().PersistentVolumes().Get(ctx, claim.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nqn := pv.Spec.CSI.VolumeAttributes["nqn"]
	slot, _, _ := strings.Cut(pv.Spec.CSI.VolumeHandle, "@")
	t.Logf("provisioned %s: volume %s, nqn %s", pv.Name, pv.Spec.CSI.VolumeHandle, nqn)
	if r, err := l.node.RDS(ctx); err != nil || !slices.ContainsFunc(r.Disks, func(d agentapi.Disk) bool { return d.Slot == slot }) {
		t.Fatalf("the emulated RDS has no disk %s (%v): %+v", slot, err, r.Disks)
	}
	// The kernel's values are the StorageClass's.
	out, err := l.node.Sh(ctx, `for c in /sys/class/nvme/nvme*; do [ "$(cat $c/subsysnqn)" = "`+nqn+`" ] && echo "$(cat $c/ctrl_loss_tmo) $(cat $c/reconnect_delay) $(cat $c/kato)"; done`)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); got != "600 3 7" {
		t.Errorf("the controller of %s: ctrl_loss_tmo reconnect_delay kato = %q, want the StorageClass's \"600 3 7\"", nqn, got)
	}

	// Expansion: the claim grows, and so does the filesystem the pod sees.
	mount := fmt.Sprintf("/var/lib/kubelet/pods/%s/volumes/kubernetes.io~csi/%s/mount", uid, pv.Name)
	before := l.fsSize(ctx, t, mount)
	claim.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("256Mi")
	if _, err := l.cs.CoreV1().PersistentVolumeClaims("default").Update(ctx, claim, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	grown := time.Now()
	l.waitFor(ctx, t, "the pod's filesystem grown", 5*time.Minute, func(ctx context.Context) (bool, string, error) {
		size := l.fsSize(ctx, t, mount)
		return size > 200<<20, fmt.Sprintf("%d bytes (was %d)\n%s", size, before, l.events(ctx, pvc.Name)), nil
	})
	t.Logf("filesystem %d -> %d bytes, %s after the claim was grown", before, l.fsSize(ctx, t, mount), time.Since(grown).Round(100*time.Millisecond))

	deleted := time.Now()
	if err := l.cs.CoreV1().Pods("default").Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	l.waitFor(ctx, t, "the node's controller for "+nqn+" gone", 5*time.Minute, func(ctx context.Context) (bool, string, error) {
		return !l.connected(ctx, t, nqn), "", nil
	})
	gone := time.Since(deleted)
	if err := l.cs.CoreV1().PersistentVolumeClaims("default").Delete(ctx, pvc.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	l.waitFor(ctx, t, "PV "+pv.Name+" and disk "+slot+" gone", 5*time.Minute, func(ctx context.Context) (bool, string, error) {
		_, err := l.cs.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return false, "PV still there", nil
		}
		r, err := l.node.RDS(ctx)
		if err != nil {
			return false, "", err
		}
		for _, d := range r.Disks {
			if d.Slot == slot {
				return false, "disk still there", nil
			}
		}
		for f := range r.Files {
			if strings.Contains(f, slot) {
				return false, "file " + f + " still there", nil
			}
		}
		return true, "", nil
	})
	t.Logf("BENCH kernel=%s scenario=dynamic pod=dyn-writer apply-to-running=%s delete-to-controller-gone=%s",
		series, running.Round(100*time.Millisecond), gone.Round(100*time.Millisecond))
}

// badStorageClass: scenario 6 for the controller: a StorageClass with a
// typo'd key; the claim's events name it, and no disk is made.
func (l *lab) badStorageClass(ctx context.Context, t *testing.T) {
	bind := storagev1.VolumeBindingImmediate
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: "lab-typo"},
		Provisioner:       driverName,
		Parameters:        map[string]string{"volumePath": "/storage-pool/rds-csi", "reconectDelay": "3"},
		VolumeBindingMode: &bind,
	}
	if _, err := l.cs.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before, err := l.node.RDS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "typo", Namespace: "default"},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &sc.Name,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}},
		},
	}
	if _, err := l.cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var seen string
	l.waitFor(ctx, t, "an event of claim typo naming reconectDelay", 5*time.Minute, func(ctx context.Context) (bool, string, error) {
		evs := l.events(ctx, pvc.Name)
		for _, line := range strings.Split(evs, "\n") {
			if strings.Contains(line, "reconectDelay") {
				seen = line
				return true, "", nil
			}
		}
		return false, evs, nil
	})
	t.Logf("event: %s", seen)
	after, err := l.node.RDS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Disks) != len(before.Disks) {
		t.Errorf("disks %d before the claim, %d after", len(before.Disks), len(after.Disks))
	}
	if err := l.cs.CoreV1().PersistentVolumeClaims("default").Delete(ctx, pvc.Name, metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}
}

// fsSize is the size in bytes of the filesystem mounted at path on the
// node.
func (l *lab) fsSize(ctx context.Context, t *testing.T, path string) int64 {
	t.Helper()
	out, err := l.node.Sh(ctx, "stat -f -c '%b %S' "+path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks, size int64
	fmt.Sscan(out, &blocks, &size)
	return blocks * size
}

// hasSample tells whether one of the exposition lines in m contains label
// (e.g. `state="live"`, or a metric name) and has the value v.
func hasSample(m, label, v string) bool {
	for _, line := range strings.Split(m, "\n") {
		if i := strings.LastIndexByte(line, ' '); i > 0 && strings.Contains(line[:i], label) && line[i+1:] == v {
			return true
		}
	}
	return false
}

// badParameter: scenario 6 for a static PV: a typo'd value in the PV's
// volumeAttributes; the pod's events name the key, nothing is connected.
func (l *lab) badParameter(ctx context.Context, t *testing.T) {
	st, err := l.node.Static(ctx, "static-bad", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	pv, pvc := staticPV("lab-bad", st, map[string]string{"ctrlLossTmo": "-1", "reconnectDelay": "5s"})
	l.create(ctx, t, pv, pvc)
	pod := writerPod("bad-writer", pvc.Name)
	if _, err := l.cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var seen string
	l.waitFor(ctx, t, "an event of pod bad-writer naming reconnectDelay", 5*time.Minute, func(ctx context.Context) (bool, string, error) {
		evs, err := l.cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=bad-writer"})
		if err != nil {
			return false, "", err
		}
		var all []string
		for _, e := range evs.Items {
			all = append(all, e.Reason+": "+e.Message)
			if strings.Contains(e.Message, "reconnectDelay") {
				seen = e.Reason + ": " + e.Message
				return true, "", nil
			}
		}
		return false, strings.Join(all, "\n"), nil
	})
	t.Logf("event: %s", seen)
	if l.connected(ctx, t, st.NQN) {
		t.Errorf("a controller is connected to %s although its PV's parameters are refused", st.NQN)
	}
	if err := l.cs.CoreV1().Pods("default").Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}
}

func staticPV(name string, st Static, attrs map[string]string) (*corev1.PersistentVolume, *corev1.PersistentVolumeClaim) {
	va := map[string]string{"nvmeAddress": st.Address, "nvmePort": fmt.Sprint(st.Port), "nqn": st.NQN}
	for k, v := range attrs {
		va[k] = v
	}
	size := resource.MustParse("64Mi")
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              "",
			ClaimRef:                      &corev1.ObjectReference{Namespace: "default", Name: name},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: driverName, VolumeHandle: "static-" + name, FSType: "ext4", VolumeAttributes: va,
			}},
		},
	}
	empty := ""
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &empty,
			VolumeName:       name,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
	return pv, pvc
}

// writerPod writes 8 MiB of random data with fsync on a fresh volume and
// records its checksum in first.sha; on a volume that has them already, it
// leaves both alone. Ready once that is done.
func writerPod(name, claim string) *corev1.Pod {
	script := `set -e
cd /data
if [ ! -f first.sha ]; then
	dd if=/dev/urandom of=data.bin bs=1M count=8 conv=fsync 2>/dev/null
	sha256sum data.bin > first.sha.tmp
	mv first.sha.tmp first.sha
	sync
fi
touch /tmp/done
trap 'exit 0' TERM
while :; do sleep 1; done`
	grace := int64(2)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "app", Image: "rds-csi.lab/app:lab", ImagePullPolicy: corev1.PullNever,
				Command:      []string{"/bin/sh", "-c", script},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "test -f /tmp/done"}}},
					PeriodSeconds: 2,
				},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
			}}},
		},
	}
}

func (l *lab) create(ctx context.Context, t *testing.T, pv *corev1.PersistentVolume, pvc *corev1.PersistentVolumeClaim) {
	t.Helper()
	if _, err := l.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.cs.CoreV1().PersistentVolumeClaims(pvc.Namespace).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitPodReady waits for a pod to be Ready and returns its UID.
func (l *lab) waitPodReady(ctx context.Context, t *testing.T, name string) string {
	t.Helper()
	var uid string
	l.waitFor(ctx, t, "pod "+name+" Ready", 10*time.Minute, func(ctx context.Context) (bool, string, error) {
		p, err := l.cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		uid = string(p.UID)
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			return false, "", fmt.Errorf("pod %s %s", name, p.Status.Phase)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, "", nil
			}
		}
		return false, l.events(ctx, name), nil
	})
	return uid
}

// connected tells whether a controller on the node is connected to nqn.
func (l *lab) connected(ctx context.Context, t *testing.T, nqn string) bool {
	t.Helper()
	out, err := l.node.Sh(ctx, "cat /sys/class/nvme/nvme*/subsysnqn 2>/dev/null || true")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Fields(out) {
		if l == nqn {
			return true
		}
	}
	return false
}

// waitFor polls cond (once a second) until it holds; on timeout it fails
// the test with what cond last said. The API offers watches, but a poll of
// a handful of objects on a lab cluster is simpler and as quick to notice.
func (l *lab) waitFor(ctx context.Context, t *testing.T, what string, timeout time.Duration, cond func(context.Context) (bool, string, error)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		ok, state, err := cond(ctx)
		last = state
		return ok, err
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v; last state:\n%s", what, err, last)
	}
}

func (l *lab) events(ctx context.Context, name string) string {
	evs, err := l.cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var b bytes.Buffer
	for _, e := range evs.Items {
		fmt.Fprintf(&b, "%s %s: %s\n", e.Type, e.Reason, e.Message)
	}
	return b.String()
}

func (l *lab) podsState(ctx context.Context, ns string) string {
	pods, err := l.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b bytes.Buffer
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "%s %s", p.Name, p.Status.Phase)
		for _, c := range p.Status.ContainerStatuses {
			fmt.Fprintf(&b, " %s(ready=%v restarts=%d", c.Name, c.Ready, c.RestartCount)
			if w := c.State.Waiting; w != nil {
				fmt.Fprintf(&b, " waiting %s: %s", w.Reason, w.Message)
			}
			if c.LastTerminationState.Terminated != nil {
				fmt.Fprintf(&b, " last exit %d: %s", c.LastTerminationState.Terminated.ExitCode, c.LastTerminationState.Terminated.Message)
			}
			b.WriteString(")")
		}
		b.WriteString("\n")
		b.WriteString(l.eventsIn(ctx, ns, p.Name))
	}
	return b.String()
}

func (l *lab) eventsIn(ctx context.Context, ns, name string) string {
	evs, err := l.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var b bytes.Buffer
	for _, e := range evs.Items {
		fmt.Fprintf(&b, "  %s %s: %s\n", e.Type, e.Reason, e.Message)
	}
	return b.String()
}

// kubernetesBinaries builds or reuses the cached Kubernetes binaries.
func kubernetesBinaries(ctx context.Context) (string, error) {
	if d := os.Getenv("RDS_CSI_K8S_BINDIR"); d != "" {
		return d, nil
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(e2e.ModuleRoot(), "e2e", "lab", "k8s-bins.sh"))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("k8s-bins.sh: %w: %s", err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

func consoleTail(path string, n int) string {
	s, err := tailFile(path, n)
	if err != nil {
		return err.Error()
	}
	return s
}
