package deploy_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/srvlab/rds-csi/csi"
)

// Container names in the node DaemonSet.
const (
	pluginName    = "rds-csi"
	registrarName = "node-driver-registrar"
	probeName     = "livenessprobe"
)

// nodeSet is the node DaemonSet of one variant and its containers.
type nodeSet struct {
	variant string
	ds      *appsv1.DaemonSet
	spec    *corev1.PodSpec
	plugin  *corev1.Container
	// The sidecars; nil in the builtin-registration variant.
	registrar, probes *corev1.Container
}

// sidecars returns the containers other than the plugin.
func (n nodeSet) sidecars() []*corev1.Container {
	if n.registrar == nil {
		return nil
	}
	return []*corev1.Container{n.registrar, n.probes}
}

// builtin tells the builtin-registration variant.
func (n nodeSet) builtin() bool { return n.registrar == nil }

// The two variants of the node DaemonSet.
const (
	sidecarVariant = "sidecars"
	builtinVariant = "builtin-registration"
)

// loadNodeSet returns the node DaemonSet of the base (with the registrar and
// livenessprobe sidecars).
func loadNodeSet(t *testing.T) nodeSet {
	t.Helper()
	return nodeSetOf(t, sidecarVariant, loadDir(t, baseDir))
}

// loadNodeSets returns both variants: the base, and the overlay with the
// builtin-registration component applied.
func loadNodeSets(t *testing.T) []nodeSet {
	t.Helper()
	return []nodeSet{loadNodeSet(t), nodeSetOf(t, builtinVariant, build(t, builtinOverlayDir))}
}

func nodeSetOf(t *testing.T, variant string, objs []object) nodeSet {
	t.Helper()
	ds := only[*appsv1.DaemonSet](t, objs)
	spec := &ds.Spec.Template.Spec
	n := nodeSet{variant: variant, ds: ds, spec: spec}
	switch variant {
	case sidecarVariant:
		if len(spec.Containers) != 3 {
			t.Fatalf("DaemonSet %s: want 3 containers (%s, %s, %s), have %d", ds.Name, pluginName, registrarName, probeName, len(spec.Containers))
		}
		n.registrar = container(t, spec, registrarName)
		n.probes = container(t, spec, probeName)
	case builtinVariant:
		if len(spec.Containers) != 1 {
			t.Fatalf("DaemonSet %s (%s): want 1 container (%s), have %d", ds.Name, variant, pluginName, len(spec.Containers))
		}
	}
	n.plugin = container(t, spec, pluginName)
	return n
}

// eachNodeSet runs f on each variant in a subtest.
func eachNodeSet(t *testing.T, f func(t *testing.T, n nodeSet)) {
	t.Helper()
	for _, n := range loadNodeSets(t) {
		t.Run(n.variant, func(t *testing.T) { f(t, n) })
	}
}

func TestManifestsDecodeStrictly(t *testing.T) {
	dirs := map[string][]object{}
	for _, dir := range manifestDirs {
		dirs[dir] = nil
	}
	dirs[builtinOverlayDir] = nil
	for dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			var objs []object
			if dir == builtinOverlayDir {
				objs = build(t, dir) // patches applied, each result decoded strictly
			} else {
				objs = loadDir(t, dir) // fails on unknown fields, kinds, duplicate keys
			}
			for _, o := range objs {
				name, ns := objectName(o)
				if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
					t.Errorf("%s: name %q: %v", o, name, errs)
				}
				if ns != "" {
					if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
						t.Errorf("%s: namespace %q: %v", o, ns, errs)
					}
				}
			}
		})
	}
}

// objectName returns the name and namespace of a decoded object.
func objectName(o object) (name, namespace string) {
	type named interface {
		GetName() string
		GetNamespace() string
	}
	if n, ok := o.obj.(named); ok {
		return n.GetName(), n.GetNamespace()
	}
	return "", ""
}

// Every directory of manifests is a kustomization, and its kustomization.yaml
// names exactly the manifests in it: a new file that is not listed would
// silently not be deployed.
func TestKustomizationsListEveryManifest(t *testing.T) {
	err := filepath.WalkDir(baseDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if len(yamlFiles(t, p)) > 0 && !slices.Contains(manifestDirs, filepath.ToSlash(p)) {
			t.Errorf("%s holds manifests but is not one of the checked directories %v", p, manifestDirs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checked := append(slices.Clone(manifestDirs), builtinComponentDir, builtinOverlayDir)
	for _, top := range []string{"components", "overlays"} {
		dirs, err := filepath.Glob(filepath.Join(top, "*"))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dirs {
			if !slices.Contains(checked, filepath.ToSlash(d)) {
				t.Errorf("%s is not one of the checked directories %v", d, checked)
			}
		}
	}
	for _, dir := range checked {
		t.Run(dir, func(t *testing.T) {
			k := only[*kustomization](t, loadFile(t, filepath.Join(dir, "kustomization.yaml")))
			var want []string
			for _, f := range yamlFiles(t, dir) {
				if b := filepath.Base(f); b != "kustomization.yaml" {
					want = append(want, b)
				}
			}
			var got []string
			for _, r := range k.Resources {
				if fi, err := os.Stat(filepath.Join(dir, r)); err != nil {
					t.Errorf("resource %s: %v", r, err)
				} else if !fi.IsDir() {
					got = append(got, r)
				}
			}
			for _, p := range k.Patches {
				got = append(got, p.Path)
			}
			slices.Sort(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s/kustomization.yaml resources differ from the manifests in the directory (-files +listed):\n%s", dir, diff)
			}
		})
	}
}

// The driver name is the same in the code, the CSIDriver, the plugin's flags,
// the socket directory, the registration path and the examples.
func TestDriverNameAgrees(t *testing.T) {
	name := csi.DefaultDriverName
	base := loadDir(t, baseDir)
	if got := only[*storagev1.CSIDriver](t, base).Name; got != name {
		t.Errorf("CSIDriver name %q, the plugin's default driver name is %q", got, name)
	}
	eachNodeSet(t, func(t *testing.T, n nodeSet) {
		if v, ok := flagValue(n.plugin.Args, "driver-name"); ok && v != name {
			t.Errorf("--driver-name=%s, want %s", v, name)
		}
		sock := hostPath(t, n.spec, volumeMount(t, n.plugin, socketVolume(t, n)).Name).Path
		if path.Base(sock) != name {
			t.Errorf("socket directory %s is not named for the driver %s", sock, name)
		}
		if n.builtin() {
			if ep := mustFlag(t, n.plugin, "kubelet-registration-endpoint"); path.Base(path.Dir(ep)) != name {
				t.Errorf("--kubelet-registration-endpoint=%s is not in the driver's directory %s", ep, name)
			}
			// kubelet's plugin watcher: <plugin name>[-<suffix>].sock.
			if reg := mustFlag(t, n.plugin, "kubelet-registration-path"); path.Base(reg) != name+"-reg.sock" {
				t.Errorf("--kubelet-registration-path=%s, want the name %s-reg.sock", reg, name)
			}
			return
		}
		if reg := mustFlag(t, n.registrar, "kubelet-registration-path"); path.Base(path.Dir(reg)) != name {
			t.Errorf("--kubelet-registration-path=%s is not in the driver's directory %s", reg, name)
		}
	})
	ex := loadDir(t, examplesDir)
	for _, sc := range each[*storagev1.StorageClass](ex) {
		if sc.Provisioner != name {
			t.Errorf("StorageClass %s: provisioner %q, want %q", sc.Name, sc.Provisioner, name)
		}
	}
	pvs := each[*corev1.PersistentVolume](ex)
	if len(pvs) == 0 {
		t.Fatal("no example PersistentVolume")
	}
	for _, pv := range pvs {
		if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != name {
			t.Errorf("PersistentVolume %s: csi.driver is not %q", pv.Name, name)
		}
	}
}

// socketVolume returns the name of the volume the plugin's --endpoint socket
// lives in.
func socketVolume(t *testing.T, n nodeSet) string {
	t.Helper()
	ep := mustFlag(t, n.plugin, "endpoint")
	sock, ok := strings.CutPrefix(ep, "unix://")
	if !ok || !path.IsAbs(sock) {
		t.Fatalf("--endpoint=%s: want unix:///absolute/path", ep)
	}
	return mountAt(t, n.plugin, path.Dir(sock)).Name
}

// kubelet, the registrar, livenessprobe and the plugin all name the same
// socket, each in its own view of the file system.
func TestSocketPathsAgree(t *testing.T) { eachNodeSet(t, testSocketPathsAgree) }

func testSocketPathsAgree(t *testing.T, n nodeSet) {
	sock := strings.TrimPrefix(mustFlag(t, n.plugin, "endpoint"), "unix://")
	vol := socketVolume(t, n)
	hp := hostPath(t, n.spec, vol)
	if hp.Type == nil || *hp.Type != corev1.HostPathDirectoryOrCreate {
		t.Errorf("socket directory volume %q: type %s, want DirectoryOrCreate (the plugin creates the socket in it)", vol, deref(hp.Type))
	}
	hostSock := path.Join(hp.Path, path.Base(sock))
	kubelet := kubeletDir(t, n)
	if !strings.HasPrefix(hp.Path, path.Join(kubelet, "plugins")+"/") {
		t.Errorf("socket directory %s is not under kubelet's plugins directory", hp.Path)
	}
	// Every pod volume is mounted somewhere (the variant drops the
	// registrar's).
	for _, v := range n.spec.Volumes {
		if !slices.ContainsFunc(n.spec.Containers, func(c corev1.Container) bool {
			return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == v.Name })
		}) {
			t.Errorf("volume %s is mounted by no container", v.Name)
		}
	}

	if n.builtin() {
		// The plugin tells kubelet where its socket is on the host, and
		// serves the registration socket in kubelet's plugins_registry,
		// which it reaches through its kubelet directory mount (the same
		// path as on the host).
		if got := mustFlag(t, n.plugin, "kubelet-registration-endpoint"); got != hostSock {
			t.Errorf("--kubelet-registration-endpoint=%s, the plugin's socket on the host is %s", got, hostSock)
		}
		if got, want := path.Dir(mustFlag(t, n.plugin, "kubelet-registration-path")), path.Join(kubelet, "plugins_registry"); got != want {
			t.Errorf("--kubelet-registration-path is in %s, want %s", got, want)
		}
		return
	}
	if got := mustFlag(t, n.registrar, "kubelet-registration-path"); got != hostSock {
		t.Errorf("registrar --kubelet-registration-path=%s, the plugin's socket on the host is %s", got, hostSock)
	}
	for _, c := range n.sidecars() {
		m := volumeMount(t, c, vol)
		if got, want := mustFlag(t, c, "csi-address"), path.Join(m.MountPath, path.Base(sock)); got != want {
			t.Errorf("%s --csi-address=%s, the plugin's socket is %s in this container", c.Name, got, want)
		}
	}

	// The registrar announces the plugin in kubelet's plugins_registry.
	reg := mountAt(t, n.registrar, "/registration")
	if got, want := hostPath(t, n.spec, reg.Name).Path, path.Join(kubelet, "plugins_registry"); got != want {
		t.Errorf("registration directory is %s, want %s", got, want)
	}
}

// kubeletDir checks the plugin's mount of kubelet's root directory and
// returns its path (the same on the host and in the container: kubelet hands
// the plugin host paths).
func kubeletDir(t *testing.T, n nodeSet) string {
	t.Helper()
	stagingRoot := mustFlag(t, n.plugin, "staging-root")
	dir := path.Dir(stagingRoot)
	if path.Base(stagingRoot) != "plugins" {
		t.Fatalf("--staging-root=%s: want kubelet's plugins directory", stagingRoot)
	}
	m := mountAt(t, n.plugin, dir)
	if got := hostPath(t, n.spec, m.Name).Path; got != dir {
		t.Errorf("kubelet directory: host path %s mounted at %s; the two must be equal", got, dir)
	}
	return dir
}

func TestKubeletDirIsBidirectional(t *testing.T) { eachNodeSet(t, testKubeletDirIsBidirectional) }

func testKubeletDirIsBidirectional(t *testing.T, n nodeSet) {
	m := mountAt(t, n.plugin, kubeletDir(t, n))
	if m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationBidirectional {
		t.Errorf("kubelet directory mount: propagation %s, want Bidirectional (staging and publish mounts must reach the host)", deref(m.MountPropagation))
	}
	if m.ReadOnly {
		t.Error("kubelet directory mount is read-only")
	}
	for _, c := range n.sidecars() {
		for _, m := range c.VolumeMounts {
			if m.MountPropagation != nil && *m.MountPropagation != corev1.MountPropagationNone {
				t.Errorf("%s: mount %s has propagation %s; only the plugin needs it", c.Name, m.MountPath, *m.MountPropagation)
			}
		}
	}
}

// The plugin sees the host's kernel interfaces where its flags say.
func TestHostMounts(t *testing.T) { eachNodeSet(t, testHostMounts) }

func testHostMounts(t *testing.T, n nodeSet) {
	for _, tc := range []struct {
		mountPath, hostPath string
		readOnly            bool
		flag                string // a flag whose value must lie at or under mountPath
	}{
		{"/dev", "/dev", false, "fabrics-device"},
		{"/sys", "/sys", false, "sysfs-root"},
		{"/host/proc", "/proc", true, "proc-root"},
		{"/etc/nvme", "/etc/nvme", true, "host-identity-dir"},
		{"/var/lib/rds-csi", "/var/lib/rds-csi", false, "state-dir"},
	} {
		t.Run(tc.mountPath, func(t *testing.T) {
			m := mountAt(t, n.plugin, tc.mountPath)
			if got := hostPath(t, n.spec, m.Name).Path; got != tc.hostPath {
				t.Errorf("%s is host path %s, want %s", tc.mountPath, got, tc.hostPath)
			}
			if m.ReadOnly != tc.readOnly {
				t.Errorf("%s: readOnly %v, want %v", tc.mountPath, m.ReadOnly, tc.readOnly)
			}
			if v := mustFlag(t, n.plugin, tc.flag); v != tc.mountPath && !strings.HasPrefix(v, tc.mountPath+"/") {
				t.Errorf("--%s=%s is outside the mount %s", tc.flag, v, tc.mountPath)
			}
		})
	}
	// State must survive the pod; a missing directory is created.
	state := mountAt(t, n.plugin, mustFlag(t, n.plugin, "state-dir"))
	if hp := hostPath(t, n.spec, state.Name); hp.Type == nil || *hp.Type != corev1.HostPathDirectoryOrCreate {
		t.Errorf("state directory: hostPath type %s, want DirectoryOrCreate", deref(hp.Type))
	}
	// /etc/nvme is optional on the node (see the comment in daemonset.yaml).
	nvme := mountAt(t, n.plugin, "/etc/nvme")
	if hp := hostPath(t, n.spec, nvme.Name); hp.Type == nil || *hp.Type != corev1.HostPathDirectoryOrCreate {
		t.Errorf("/etc/nvme: hostPath type %s, want DirectoryOrCreate", deref(hp.Type))
	}
}

func TestPrivilegesAndPlacement(t *testing.T) { eachNodeSet(t, testPrivilegesAndPlacement) }

func testPrivilegesAndPlacement(t *testing.T, n nodeSet) {
	s := n.spec
	if !s.HostNetwork {
		t.Error("hostNetwork is not set: NVMe/TCP connections would belong to the pod's network namespace")
	}
	if s.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy %q, want ClusterFirstWithHostNet", s.DNSPolicy)
	}
	if s.HostPID {
		t.Error("hostPID is set: not needed (the host's /proc is mounted for the network namespace check)")
	}
	if s.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", s.PriorityClassName)
	}
	if !slices.ContainsFunc(s.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	}) {
		t.Error("no toleration {operator: Exists}: the plugin would be missing on tainted nodes")
	}
	if u := n.ds.Spec.UpdateStrategy; u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil || u.RollingUpdate.MaxUnavailable == nil {
		t.Errorf("updateStrategy %+v: want RollingUpdate with maxUnavailable", u)
	} else if mu := u.RollingUpdate.MaxUnavailable; mu.Type == intstr.Int && mu.IntVal != 1 {
		t.Errorf("maxUnavailable %s: want 1 (or a percentage)", mu.String())
	}

	sc := n.plugin.SecurityContext
	if sc == nil || sc.Privileged == nil || !*sc.Privileged {
		t.Error("the plugin container is not privileged")
	} else if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Add, "SYS_ADMIN") {
		t.Error("the plugin container does not add SYS_ADMIN")
	}
	for _, c := range n.sidecars() {
		sc := c.SecurityContext
		if sc == nil || (sc.Privileged != nil && *sc.Privileged) {
			t.Errorf("%s: sidecars need no privileges", c.Name)
			continue
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation is not false", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s: capabilities are not dropped", c.Name)
		}
	}

	// The node id is the Kubernetes node name.
	if got := mustFlag(t, n.plugin, "node-id"); got != "$(NODE_ID)" {
		t.Errorf("--node-id=%s, want $(NODE_ID)", got)
	}
	if !slices.ContainsFunc(n.plugin.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_ID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}) {
		t.Error("env NODE_ID does not come from spec.nodeName")
	}

	// The node prerequisite is written on the DaemonSet.
	if a := n.ds.Annotations["rds.csi.srvlab.io/node-prerequisites"]; !strings.Contains(a, "modprobe nvme-tcp") || !strings.Contains(a, "modules-load.d") {
		t.Errorf("the node-prerequisites annotation does not say to load nvme-tcp: %q", a)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"modprobe nvme-tcp", "/etc/modules-load.d/nvme-tcp.conf", "/etc/nvme/hostnqn", "kubectl apply -k deploy/kubernetes"} {
		if !strings.Contains(string(readme), s) {
			t.Errorf("README.md does not mention %q", s)
		}
	}
}

// The node plugin talks to no API objects: no token, no RBAC binding, and
// a dedicated service account (the controller's is another).
func TestNoAPIAccess(t *testing.T) {
	base := loadDir(t, baseDir)
	n := loadNodeSet(t)
	var sa *corev1.ServiceAccount
	for _, s := range each[*corev1.ServiceAccount](base) {
		if s.Name == n.spec.ServiceAccountName {
			sa = s
		}
	}
	if sa == nil {
		t.Fatalf("serviceAccountName %q is not defined in the manifests", n.spec.ServiceAccountName)
	}
	if c := loadControllerSet(t); c.spec.ServiceAccountName == sa.Name {
		t.Errorf("the node plugin and the controller share ServiceAccount %s; the node's must have no RBAC", sa.Name)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("ServiceAccount: automountServiceAccountToken is not false")
	}
	if a := n.spec.AutomountServiceAccountToken; a == nil || *a {
		t.Error("pod: automountServiceAccountToken is not false")
	}
	for _, dir := range manifestDirs {
		objs := loadDir(t, dir)
		var subjects []rbacv1.Subject
		for _, b := range each[*rbacv1.ClusterRoleBinding](objs) {
			subjects = append(subjects, b.Subjects...)
		}
		for _, b := range each[*rbacv1.RoleBinding](objs) {
			subjects = append(subjects, b.Subjects...)
		}
		for _, s := range subjects {
			if s.Kind == "ServiceAccount" && s.Name == sa.Name {
				t.Errorf("%s: a binding names the node plugin's ServiceAccount %s; the node plugin needs no RBAC", dir, sa.Name)
			}
		}
	}
}

// Every namespaced object of the driver lives in the namespace it creates.
func TestNamespace(t *testing.T) {
	base := loadDir(t, baseDir)
	ns := only[*corev1.Namespace](t, base)
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace %s: Pod Security level is not privileged; the plugin pod would be refused", ns.Name)
	}
	for _, o := range append(base, loadDir(t, monitoringDir)...) {
		name, got := objectName(o)
		switch o.obj.(type) {
		case *corev1.Namespace, *storagev1.CSIDriver, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding:
			if got != "" {
				t.Errorf("%s %s: cluster-scoped, has namespace %q", o, name, got)
			}
		default:
			if got != ns.Name {
				t.Errorf("%s %s: namespace %q, want %q", o, name, got, ns.Name)
			}
		}
	}
	q := only[*corev1.ResourceQuota](t, base)
	if sel := q.Spec.ScopeSelector; sel == nil || !slices.ContainsFunc(sel.MatchExpressions, func(e corev1.ScopedResourceSelectorRequirement) bool {
		return e.ScopeName == corev1.ResourceQuotaScopePriorityClass && slices.Contains(e.Values, loadNodeSet(t).spec.PriorityClassName)
	}) {
		t.Error("the ResourceQuota does not cover the plugin's priority class")
	}
}

// The ports on the node (hostNetwork) agree between the flags, the container
// ports, the probes, the Service and the PodMonitor, and do not collide.
func TestPortsAgree(t *testing.T) { eachNodeSet(t, testPortsAgree) }

func testPortsAgree(t *testing.T, n nodeSet) {
	metrics := addrPort(t, mustFlag(t, n.plugin, "metrics-address"))
	if got := containerPort(t, n.plugin, "metrics"); got != metrics {
		t.Errorf("containerPort metrics %d, --metrics-address port %d", got, metrics)
	}
	// Where the plugin's liveness is asked: livenessprobe's port, or the
	// plugin's own /healthz on the metrics port.
	health := metrics
	var registrar int32
	if n.builtin() {
		if len(n.plugin.Ports) != 1 {
			t.Errorf("the plugin declares ports %v; without sidecars only metrics is served", n.plugin.Ports)
		}
	} else {
		h, err := strconv.ParseInt(mustFlag(t, n.probes, "health-port"), 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		health = int32(h)
		if got := containerPort(t, n.plugin, "healthz"); got != health {
			t.Errorf("the plugin's healthz containerPort %d, livenessprobe --health-port %d", got, health)
		}
		registrar = addrPort(t, mustFlag(t, n.registrar, "http-endpoint"))
		if got := containerPort(t, n.registrar, "registrar"); got != registrar {
			t.Errorf("registrar containerPort %d, --http-endpoint port %d", got, registrar)
		}
	}

	// Probes.
	checkProbe := func(c *corev1.Container, what string, p *corev1.Probe, wantPath string, wantPort int32) {
		t.Helper()
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s", c.Name, what)
			return
		}
		if p.HTTPGet.Path != wantPath {
			t.Errorf("%s %s: path %s, want %s", c.Name, what, p.HTTPGet.Path, wantPath)
		}
		port := p.HTTPGet.Port
		got := port.IntVal
		if port.Type == intstr.String {
			got = containerPort(t, c, port.StrVal)
		}
		if got != wantPort {
			t.Errorf("%s %s: port %s (%d), want %d", c.Name, what, port.String(), got, wantPort)
		}
	}
	checkProbe(n.plugin, "livenessProbe", n.plugin.LivenessProbe, "/healthz", health)
	checkProbe(n.plugin, "startupProbe", n.plugin.StartupProbe, "/healthz", health)
	checkProbe(n.plugin, "readinessProbe", n.plugin.ReadinessProbe, "/readyz", metrics)
	if n.registrar != nil {
		checkProbe(n.registrar, "livenessProbe", n.registrar.LivenessProbe, "/healthz", registrar)
	}

	// Every declared port is a host port: none may repeat, names are valid.
	seen := map[int32]string{}
	for _, c := range n.spec.Containers {
		for _, p := range c.Ports {
			if errs := validation.IsValidPortName(p.Name); len(errs) > 0 {
				t.Errorf("%s: port name %q: %v", c.Name, p.Name, errs)
			}
			if p.HostPort != 0 && p.HostPort != p.ContainerPort {
				t.Errorf("%s: hostPort %d differs from containerPort %d under hostNetwork", c.Name, p.HostPort, p.ContainerPort)
			}
			if other, dup := seen[p.ContainerPort]; dup {
				t.Errorf("port %d declared by %s and %s/%s", p.ContainerPort, other, c.Name, p.Name)
			}
			seen[p.ContainerPort] = c.Name + "/" + p.Name
		}
	}

	// The Service and the PodMonitor reach the metrics port.
	svc := only[*corev1.Service](t, loadDir(t, baseDir))
	if diff := cmp.Diff(n.ds.Spec.Selector.MatchLabels, svc.Spec.Selector); diff != "" {
		t.Errorf("Service selector differs from the DaemonSet's (-daemonset +service):\n%s", diff)
	}
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service: want one port, have %d", len(svc.Spec.Ports))
	}
	sp := svc.Spec.Ports[0]
	target := sp.TargetPort.IntVal
	if sp.TargetPort.Type == intstr.String {
		target = containerPort(t, n.plugin, sp.TargetPort.StrVal)
	}
	if sp.Port != metrics || target != metrics {
		t.Errorf("Service port %d -> %s, want %d -> %d", sp.Port, sp.TargetPort.String(), metrics, metrics)
	}
	pm := podMonitorSelecting(t, loadDir(t, monitoringDir), n.ds.Spec.Selector.MatchLabels)
	for k, v := range pm.Spec.Selector.MatchLabels {
		if n.ds.Spec.Template.Labels[k] != v {
			t.Errorf("PodMonitor selects %s=%s, the pods do not carry it", k, v)
		}
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("PodMonitor: want one endpoint, have %d", len(pm.Spec.PodMetricsEndpoints))
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if got := containerPort(t, n.plugin, ep.Port); got != metrics || ep.Path != "/metrics" {
		t.Errorf("PodMonitor scrapes port %s (%d) path %s, want %d /metrics", ep.Port, got, ep.Path, metrics)
	}
}

var (
	// An exact version tag (v1.2.3, 1.2.3, 1.36.1-1), optionally with a digest.
	pinnedTag = regexp.MustCompile(`^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9./_-]+:v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(@sha256:[0-9a-f]{64})?$`)
	// Or a digest alone.
	pinnedDigest = regexp.MustCompile(`^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9./_-]+@sha256:[0-9a-f]{64}$`)
)

func TestImagesPinned(t *testing.T) {
	for _, dir := range manifestDirs {
		for _, o := range loadDir(t, dir) {
			var spec *corev1.PodSpec
			switch v := o.obj.(type) {
			case *appsv1.DaemonSet:
				spec = &v.Spec.Template.Spec
			case *appsv1.Deployment:
				spec = &v.Spec.Template.Spec
			case *corev1.Pod:
				spec = &v.Spec
			default:
				continue
			}
			for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
				if !pinnedTag.MatchString(c.Image) && !pinnedDigest.MatchString(c.Image) {
					t.Errorf("%s: container %s: image %q is not pinned to an exact version tag or digest (registry/name:vX.Y.Z)", o, c.Name, c.Image)
				}
				if c.ImagePullPolicy == corev1.PullAlways {
					t.Errorf("%s: container %s: imagePullPolicy Always with a pinned image", o, c.Name)
				}
			}
		}
	}
}

// Every flag the DaemonSet passes to the plugin is one the binary defines
// (main.go is parsed, not run).
func TestPluginFlagsExist(t *testing.T) {
	defined := mainFlags(t)
	eachNodeSet(t, func(t *testing.T, n nodeSet) { checkPluginFlags(t, n, defined) })
}

func checkPluginFlags(t *testing.T, n nodeSet, defined map[string]bool) {
	if len(n.plugin.Command) > 0 {
		t.Errorf("the plugin container overrides the image's ENTRYPOINT: %q", n.plugin.Command)
	}
	for _, a := range n.plugin.Args {
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			t.Errorf("argument %q: write flags as --name=value", a)
			continue
		}
		name, _, _ = strings.Cut(name, "=")
		if !defined[name] {
			t.Errorf("--%s is not a flag of the rds-csi binary (flags: %v)", name, sortedKeys(defined))
		}
	}
}

// mainFlags returns the names of the flags defined in package main at the
// repository root: calls like fs.StringVar(&v, "name", ...) or
// flag.Bool("name", ...).
func mainFlags(t *testing.T) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("../*.go")
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		if file.Name.Name != "main" {
			continue
		}
		ast.Inspect(file, func(node ast.Node) bool {
			call, ok := node.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			idx := -1
			switch m := sel.Sel.Name; {
			case strings.HasSuffix(m, "Var"): // Var, StringVar, DurationVar, TextVar, ...
				idx = 1
			case slices.Contains([]string{"String", "Bool", "Int", "Int64", "Uint", "Uint64", "Float64", "Duration", "Func", "BoolFunc"}, m):
				idx = 0
			}
			if idx < 0 || len(call.Args) <= idx {
				return true
			}
			if lit, ok := call.Args[idx].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					flags[s] = true
				}
			}
			return true
		})
	}
	if !flags["endpoint"] {
		t.Fatalf("found no --endpoint flag in ../*.go (found %v): has main.go moved?", sortedKeys(flags))
	}
	return flags
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestCSIDriver(t *testing.T) {
	d := only[*storagev1.CSIDriver](t, loadDir(t, baseDir))
	s := d.Spec
	check := func(what string, got *bool, want bool) {
		t.Helper()
		if got == nil || *got != want {
			t.Errorf("%s: %s, want %v", what, deref(got), want)
		}
	}
	check("attachRequired", s.AttachRequired, true)
	check("podInfoOnMount", s.PodInfoOnMount, false)
	check("requiresRepublish", s.RequiresRepublish, false)
	if diff := cmp.Diff([]storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent}, s.VolumeLifecycleModes); diff != "" {
		t.Errorf("volumeLifecycleModes (-want +got):\n%s", diff)
	}
	if s.FSGroupPolicy == nil || *s.FSGroupPolicy != storagev1.FileFSGroupPolicy {
		t.Errorf("fsGroupPolicy %s, want File", deref(s.FSGroupPolicy))
	}
	if s.SELinuxMount != nil && *s.SELinuxMount {
		t.Error("seLinuxMount: the node refuses the quoted context= mount option kubelet would add")
	}
}

// The examples are accepted by the plugin's own parameter parser, and the
// static PV and its claim bind to each other.
func TestExamples(t *testing.T) {
	ex := loadDir(t, examplesDir)
	sc := only[*storagev1.StorageClass](t, ex)
	if sc.AllowVolumeExpansion == nil || !*sc.AllowVolumeExpansion {
		t.Error("StorageClass: allowVolumeExpansion is not true")
	}
	if sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
		t.Errorf("StorageClass: volumeBindingMode %s, want WaitForFirstConsumer", deref(sc.VolumeBindingMode))
	}
	if _, ok := sc.Parameters[csi.KeyNQN]; ok {
		t.Error("StorageClass: nqn is per volume (the controller sets it), not a class parameter")
	}
	for _, k := range []string{"rdsAddress", csi.KeyNVMeAddress, csi.KeyNVMePort, "volumePath", csi.KeyCtrlLossTmo, csi.KeyReconnectDelay, csi.KeyKeepAliveTmo, csi.KeyFSType} {
		if _, ok := sc.Parameters[k]; !ok {
			t.Errorf("StorageClass: no %s parameter", k)
		}
	}
	// The node sees the class's parameters plus the volume's NQN.
	vc := map[string]string{csi.KeyNQN: "nqn.2000-02.com.mikrotik:pvc-00000000-0000-0000-0000-000000000000"}
	for k, v := range sc.Parameters {
		if !strings.HasPrefix(k, "csi.storage.k8s.io/") {
			vc[k] = v
		}
	}
	if _, err := csi.ParseParams(vc); err != nil {
		t.Errorf("StorageClass parameters: the node refuses them: %v", err)
	}

	pv := only[*corev1.PersistentVolume](t, ex)
	if _, err := csi.ParseParams(pv.Spec.CSI.VolumeAttributes); err != nil {
		t.Errorf("PersistentVolume %s volumeAttributes: the node refuses them: %v", pv.Name, err)
	}
	if !slices.Contains(csi.FSTypes, pv.Spec.CSI.FSType) {
		t.Errorf("PersistentVolume %s: fsType %q, want one of %v", pv.Name, pv.Spec.CSI.FSType, csi.FSTypes)
	}
	if !strings.HasSuffix(pv.Spec.CSI.VolumeAttributes[csi.KeyNQN], ":"+pv.Spec.CSI.VolumeHandle) {
		t.Errorf("PersistentVolume %s: nqn %q does not end in the volume handle %q (the RDS names subsystems after volumes)", pv.Name, pv.Spec.CSI.VolumeAttributes[csi.KeyNQN], pv.Spec.CSI.VolumeHandle)
	}

	claims := map[string]*corev1.PersistentVolumeClaim{}
	for _, c := range each[*corev1.PersistentVolumeClaim](ex) {
		claims[c.Namespace+"/"+c.Name] = c
	}
	ref := pv.Spec.ClaimRef
	if ref == nil {
		t.Fatalf("PersistentVolume %s: no claimRef", pv.Name)
	}
	pvc := claims[ref.Namespace+"/"+ref.Name]
	if pvc == nil {
		t.Fatalf("PersistentVolume %s: claimRef %s/%s is not among the examples", pv.Name, ref.Namespace, ref.Name)
	}
	if pvc.Spec.VolumeName != pv.Name {
		t.Errorf("PVC %s: volumeName %q, want %q", pvc.Name, pvc.Spec.VolumeName, pv.Name)
	}
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != pv.Spec.StorageClassName {
		t.Errorf("PVC %s: storageClassName %s, the PV's is %q", pvc.Name, deref(pvc.Spec.StorageClassName), pv.Spec.StorageClassName)
	}
	if req, capa := pvc.Spec.Resources.Requests[corev1.ResourceStorage], pv.Spec.Capacity[corev1.ResourceStorage]; req.Cmp(capa) > 0 {
		t.Errorf("PVC %s requests %s, the PV has %s", pvc.Name, req.String(), capa.String())
	}
	for _, m := range pvc.Spec.AccessModes {
		if !slices.Contains(pv.Spec.AccessModes, m) {
			t.Errorf("PVC %s: access mode %s not offered by the PV", pvc.Name, m)
		}
	}

	// Dynamic claims name the example class; the pod's claims exist.
	for _, c := range claims {
		if c.Spec.VolumeName == "" && (c.Spec.StorageClassName == nil || *c.Spec.StorageClassName != sc.Name) {
			t.Errorf("PVC %s: storageClassName %s, want %q", c.Name, deref(c.Spec.StorageClassName), sc.Name)
		}
	}
	for _, pod := range each[*corev1.Pod](ex) {
		for _, v := range pod.Spec.Volumes {
			if pc := v.PersistentVolumeClaim; pc != nil && claims[pod.Namespace+"/"+pc.ClaimName] == nil {
				t.Errorf("pod %s: claim %s is not among the examples", pod.Name, pc.ClaimName)
			}
		}
	}
}

// deref formats a pointer field: its value, or "unset".
func deref[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}
