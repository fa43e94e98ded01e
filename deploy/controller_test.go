package deploy_test

import (
	"context"
	"io"
	"log/slog"
	"path"
	"slices"
	"strings"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/crypto/ssh"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"

	"github.com/srvlab/rds-csi/csi"
	"github.com/srvlab/rds-csi/routeros"
	"github.com/srvlab/rds-csi/routeros/rdstest"
)

// Container names in the controller Deployment.
const (
	controllerName  = "rds-csi"
	provisionerName = "csi-provisioner"
	resizerName     = "csi-resizer"
	snapshotterName = "csi-snapshotter"
	attacherName    = "csi-attacher"
)

// secretExample is the Secret's shape, applied by no kustomization (so that
// it never overwrites a real Secret).
const secretExample = "controller-secret.example.yaml"

// sidecarFlags are the flags each pinned sidecar image documents (the
// README of its release tag), so that an argument the sidecar does not know
// (it would exit at start) fails here. A new tag needs its list checked.
var sidecarFlags = map[string][]string{
	"registry.k8s.io/sig-storage/csi-provisioner:v6.3.0": {"automaxprocs", "capacity-for-immediate-binding", "capacity-ownerref-level",
		"capacity-poll-interval", "capacity-threads", "cloning-protection-threads", "csi-address", "enable-capacity", "enable-pprof",
		"extra-create-metadata", "feature-gates", "http-endpoint", "immediate-topology", "kube-api-burst", "kube-api-qps", "kubeconfig",
		"leader-election", "leader-election-lease-duration", "leader-election-namespace", "leader-election-renew-deadline",
		"leader-election-retry-period", "metrics-address", "metrics-path", "node-deployment", "node-deployment-base-delay",
		"node-deployment-immediate-binding", "node-deployment-max-delay", "prevent-volume-mode-conversion", "retry-interval-max",
		"retry-interval-start", "snapshot-orphan-sweep-interval", "strict-topology", "timeout", "v", "volume-name-prefix",
		"volume-name-uuid-length", "worker-threads"},
	// csi-snapshotter v8.2.0: the flags its cmd/csi-snapshotter/main.go
	// defines at the tag, and klog's v.
	"registry.k8s.io/sig-storage/csi-snapshotter:v8.2.0": {"csi-address", "extra-create-metadata", "feature-gates",
		"groupsnapshot-name-prefix", "groupsnapshot-name-uuid-length", "http-endpoint", "kube-api-burst", "kube-api-qps",
		"kubeconfig", "leader-election", "leader-election-lease-duration", "leader-election-namespace",
		"leader-election-renew-deadline", "leader-election-retry-period", "metrics-address", "metrics-path", "node-deployment",
		"resync-period", "retry-interval-max", "retry-interval-start", "snapshot-name-prefix", "snapshot-name-uuid-length",
		"timeout", "v", "version", "worker-threads"},
	// csi-attacher v4.13.0: the flags its cmd/csi-attacher/main.go and
	// csi-lib-utils v0.24.0's standardflags define at the tag (read from
	// the module the Go proxy serves), and klog's v.
	"registry.k8s.io/sig-storage/csi-attacher:v4.13.0": {"automaxprocs", "csi-address", "default-fstype", "feature-gates",
		"http-endpoint", "kube-api-burst", "kube-api-qps", "kubeconfig", "leader-election", "leader-election-lease-duration",
		"leader-election-namespace", "leader-election-renew-deadline", "leader-election-retry-period", "max-entries",
		"max-grpc-log-length", "metrics-address", "metrics-path", "reconcile-sync", "resync", "retry-interval-max",
		"retry-interval-start", "timeout", "v", "version", "worker-threads"},
	"registry.k8s.io/sig-storage/csi-resizer:v2.2.1": {"automaxprocs", "csi-address", "handle-volume-inuse-error", "http-endpoint",
		"kubeconfig", "leader-election", "leader-election-lease-duration", "leader-election-namespace", "leader-election-renew-deadline",
		"leader-election-retry-period", "master", "metrics-address", "metrics-path", "retry-interval-max", "retry-interval-start",
		"timeout", "v", "workers"},
}

// controllerSet is the controller Deployment and its containers.
type controllerSet struct {
	d                         *appsv1.Deployment
	spec                      *corev1.PodSpec
	plugin                    *corev1.Container
	provisioner, resizer      *corev1.Container
	sidecars                  []*corev1.Container
	snapshotter               *corev1.Container // nil without snapshots
	attacher                  *corev1.Container // nil without attach
	socketVolume, socketInPod string
}

func loadControllerSet(t *testing.T) controllerSet {
	t.Helper()
	d := only[*appsv1.Deployment](t, loadDir(t, baseDir))
	spec := &d.Spec.Template.Spec
	c := controllerSet{d: d, spec: spec, plugin: container(t, spec, controllerName),
		provisioner: container(t, spec, provisionerName), resizer: container(t, spec, resizerName)}
	c.sidecars = []*corev1.Container{c.provisioner, c.resizer}
	for i := range spec.Containers {
		switch spec.Containers[i].Name {
		case snapshotterName:
			c.snapshotter = &spec.Containers[i]
			c.sidecars = append(c.sidecars, c.snapshotter)
		case attacherName:
			c.attacher = &spec.Containers[i]
			c.sidecars = append(c.sidecars, c.attacher)
		}
	}
	if want := 1 + len(c.sidecars); len(spec.Containers) != want {
		t.Fatalf("Deployment %s: %d containers, want %d (%s and its sidecars)", d.Name, len(spec.Containers), want, controllerName)
	}
	ep := mustFlag(t, c.plugin, "endpoint")
	sock, ok := strings.CutPrefix(ep, "unix://")
	if !ok || !path.IsAbs(sock) {
		t.Fatalf("controller --endpoint=%s: want unix:///absolute/path", ep)
	}
	c.socketInPod = sock
	c.socketVolume = mountAt(t, c.plugin, path.Dir(sock)).Name
	return c
}

// podVolume returns the named volume of the pod.
func podVolume(t *testing.T, spec *corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %q", name)
	return corev1.Volume{}
}

// The controller container runs the binary in controller mode with flags
// the binary really has (main.go is parsed: a renamed flag fails here),
// every flag --mode=controller requires, and values its parsers accept.
func TestControllerFlags(t *testing.T) {
	c := loadControllerSet(t)
	defined := mainFlags(t)
	if len(c.plugin.Command) > 0 {
		t.Errorf("the controller container overrides the image's ENTRYPOINT: %q", c.plugin.Command)
	}
	for _, a := range c.plugin.Args {
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
	if got := mustFlag(t, c.plugin, "mode"); got != "controller" {
		t.Errorf("--mode=%s, want controller", got)
	}
	for _, f := range []string{"rds-address", "rds-user", "rds-key-file", "rds-known-hosts-file", "volume-dir"} {
		mustFlag(t, c.plugin, f)
	}
	if _, err := csi.ParseRDSAddress(mustFlag(t, c.plugin, "rds-address")); err != nil {
		t.Errorf("--rds-address: %v", err)
	}
	if err := routeros.ValidatePath("volume-dir", mustFlag(t, c.plugin, "volume-dir")); err != nil {
		t.Errorf("--volume-dir: %v", err)
	}
	if v, ok := flagValue(c.plugin.Args, "driver-name"); ok && v != csi.DefaultDriverName {
		t.Errorf("--driver-name=%s, want %s", v, csi.DefaultDriverName)
	}

	// The key and known_hosts files are the default Secret's keys, mounted
	// read-only from a Secret volume.
	for flag, key := range map[string]string{"rds-key-file": csi.SecretPrivateKey, "rds-known-hosts-file": csi.SecretKnownHosts} {
		file := mustFlag(t, c.plugin, flag)
		m := mountAt(t, c.plugin, path.Dir(file))
		if !m.ReadOnly {
			t.Errorf("--%s: mount %s is not read-only", flag, m.MountPath)
		}
		v := podVolume(t, c.spec, m.Name)
		if v.Secret == nil {
			t.Fatalf("--%s=%s: volume %q is not a Secret", flag, file, m.Name)
		}
		if !slices.ContainsFunc(v.Secret.Items, func(k corev1.KeyToPath) bool { return k.Key == key && k.Path == path.Base(file) }) {
			t.Errorf("--%s=%s: Secret %s does not map key %s to %s", flag, file, v.Secret.SecretName, key, path.Base(file))
		}
	}

	// The root filesystem is read-only, and known_hosts is parsed through
	// a temporary file: /tmp must be writable.
	if sc := c.plugin.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("controller: readOnlyRootFilesystem is not set")
	}
	if tmp := mountAt(t, c.plugin, "/tmp"); podVolume(t, c.spec, tmp.Name).EmptyDir == nil || tmp.ReadOnly {
		t.Error("controller: /tmp is not a writable emptyDir (known_hosts parsing writes a temporary file)")
	}
}

// The controller's /metrics (where rds_csi_routeros_up, which the
// RdsCsiControllerRDSUnreachable alert watches, comes from) is declared,
// probed for liveness and scraped by a PodMonitor of its own; no port
// collides with a sidecar's.
func TestControllerMetrics(t *testing.T) {
	c := loadControllerSet(t)
	port := addrPort(t, mustFlag(t, c.plugin, "metrics-address"))
	if got := containerPort(t, c.plugin, "metrics"); got != port {
		t.Errorf("containerPort metrics %d, --metrics-address port %d", got, port)
	}
	p := c.plugin.LivenessProbe
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "metrics" {
		t.Errorf("controller livenessProbe %+v, want HTTP /healthz on port metrics", p)
	}
	seen := map[int32]string{}
	for _, ctr := range c.spec.Containers {
		for _, cp := range ctr.Ports {
			if other, dup := seen[cp.ContainerPort]; dup {
				t.Errorf("port %d declared by %s and %s/%s", cp.ContainerPort, other, ctr.Name, cp.Name)
			}
			seen[cp.ContainerPort] = ctr.Name + "/" + cp.Name
		}
	}
	pm := podMonitorSelecting(t, loadDir(t, monitoringDir), c.d.Spec.Selector.MatchLabels)
	for k, v := range pm.Spec.Selector.MatchLabels {
		if c.d.Spec.Template.Labels[k] != v {
			t.Errorf("PodMonitor %s selects %s=%s, the controller's pods do not carry it", pm.Name, k, v)
		}
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("PodMonitor %s: want one endpoint, have %d", pm.Name, len(pm.Spec.PodMetricsEndpoints))
	}
	if ep := pm.Spec.PodMetricsEndpoints[0]; containerPort(t, c.plugin, ep.Port) != port || ep.Path != "/metrics" {
		t.Errorf("PodMonitor %s scrapes port %s path %s, want %d /metrics", pm.Name, ep.Port, ep.Path, port)
	}
}

// Each sidecar talks to the controller's socket, elects a leader in the
// pod's namespace, serves /healthz/leader-election on its declared port
// (its liveness probe), and passes only flags its image documents.
func TestControllerSidecars(t *testing.T) {
	c := loadControllerSet(t)
	seen := map[int32]string{}
	for _, s := range c.sidecars {
		if s.Image == "" || sidecarFlags[s.Image] == nil {
			t.Errorf("%s: image %q has no documented flag list in sidecarFlags; check the release's README and add it", s.Name, s.Image)
		}
		for _, a := range s.Args {
			name, ok := strings.CutPrefix(a, "--")
			if !ok {
				t.Errorf("%s: argument %q: write flags as --name=value", s.Name, a)
				continue
			}
			name, _, _ = strings.Cut(name, "=")
			if known := sidecarFlags[s.Image]; known != nil && !slices.Contains(known, name) {
				t.Errorf("%s: --%s is not a documented flag of %s", s.Name, name, s.Image)
			}
		}
		m := volumeMount(t, s, c.socketVolume)
		if got, want := mustFlag(t, s, "csi-address"), path.Join(m.MountPath, path.Base(c.socketInPod)); got != want {
			t.Errorf("%s --csi-address=%s, the controller's socket is %s in this container", s.Name, got, want)
		}
		if !slices.Contains(s.Args, "--leader-election") && !slices.Contains(s.Args, "--leader-election=true") {
			t.Errorf("%s: leader election is not enabled", s.Name)
		}
		if got := mustFlag(t, s, "leader-election-namespace"); got != "$(NAMESPACE)" || !slices.ContainsFunc(s.Env, func(e corev1.EnvVar) bool {
			return e.Name == "NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
		}) {
			t.Errorf("%s: --leader-election-namespace=%s, want $(NAMESPACE) from metadata.namespace (the Role grants Leases there)", s.Name, got)
		}
		port := addrPort(t, mustFlag(t, s, "http-endpoint"))
		if other, dup := seen[port]; dup {
			t.Errorf("%s and %s both listen on %d", other, s.Name, port)
		}
		seen[port] = s.Name
		p := s.LivenessProbe
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz/leader-election" {
			t.Errorf("%s: no liveness probe on /healthz/leader-election", s.Name)
		} else if got := containerPort(t, s, p.HTTPGet.Port.StrVal); got != port {
			t.Errorf("%s: liveness probe port %d, --http-endpoint port %d", s.Name, got, port)
		}
	}
	for _, ctr := range c.spec.Containers {
		sc := ctr.SecurityContext
		if sc == nil || (sc.Privileged != nil && *sc.Privileged) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s: want unprivileged, no privilege escalation, all capabilities dropped", ctr.Name)
		}
	}
	if ps := c.spec.SecurityContext; ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
		t.Error("controller pod: runAsNonRoot is not set")
	}
	// A critical priority class outside kube-system needs the quota.
	q := only[*corev1.ResourceQuota](t, loadDir(t, baseDir))
	if pc := c.spec.PriorityClassName; pc != "" && !slices.ContainsFunc(q.Spec.ScopeSelector.MatchExpressions, func(e corev1.ScopedResourceSelectorRequirement) bool {
		return e.ScopeName == corev1.ResourceQuotaScopePriorityClass && slices.Contains(e.Values, pc)
	}) {
		t.Errorf("the ResourceQuota does not cover the controller's priority class %s", pc)
	}
}

// The snapshotter sidecar exits at start when the driver does not advertise
// CREATE_DELETE_SNAPSHOT: it is in the Deployment exactly when the
// controller advertises snapshots.
func TestControllerSnapshotterMatchesCapabilities(t *testing.T) {
	c := loadControllerSet(t)
	ctrl, _ := exampleController(t, c)
	caps, err := ctrl.ControllerGetCapabilities(context.Background(), &csipb.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	snapshots := slices.ContainsFunc(caps.GetCapabilities(), func(c *csipb.ControllerServiceCapability) bool {
		return c.GetRpc().GetType() == csipb.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT
	})
	classes := each[*volumeSnapshotClass](loadDir(t, snapshotsDir))
	if snapshots != (len(classes) > 0) {
		t.Errorf("the controller advertises snapshots: %v; VolumeSnapshotClasses in %s: %d (want one exactly when it does)", snapshots, snapshotsDir, len(classes))
	}
	for _, vsc := range classes {
		if vsc.Driver != csi.DefaultDriverName {
			t.Errorf("VolumeSnapshotClass %s: driver %q, want %q", vsc.Name, vsc.Driver, csi.DefaultDriverName)
		}
		if vsc.DeletionPolicy != "Delete" && vsc.DeletionPolicy != "Retain" {
			t.Errorf("VolumeSnapshotClass %s: deletionPolicy %q, want Delete or Retain", vsc.Name, vsc.DeletionPolicy)
		}
		for k, v := range vsc.Parameters {
			// CreateSnapshot takes no parameters; the sidecar consumes its own.
			if !strings.HasPrefix(k, "csi.storage.k8s.io/") {
				t.Errorf("VolumeSnapshotClass %s: parameter %s, which CreateSnapshot refuses", vsc.Name, k)
			}
			if strings.HasSuffix(k, "-secret-namespace") && v != c.d.Namespace {
				t.Errorf("VolumeSnapshotClass %s: %s=%s, but the controller may read Secrets only in %s", vsc.Name, k, v, c.d.Namespace)
			}
		}
	}
	switch {
	case snapshots && c.snapshotter == nil:
		t.Error("the controller advertises CREATE_DELETE_SNAPSHOT but the Deployment has no csi-snapshotter sidecar (add it, its RBAC and a VolumeSnapshotClass)")
	case !snapshots && c.snapshotter != nil:
		t.Error("the Deployment has a csi-snapshotter sidecar but the controller does not advertise CREATE_DELETE_SNAPSHOT: the sidecar would exit at start")
	}
}

// The attacher sidecar, the CSIDriver's attachRequired and the controller's
// PUBLISH_UNPUBLISH_VOLUME go together: attachRequired without the
// capability leaves every VolumeAttachment unattached (no pod starts), the
// capability without attachRequired is never called.
func TestControllerAttacherMatchesCapabilities(t *testing.T) {
	c := loadControllerSet(t)
	ctrl, _ := exampleController(t, c)
	caps, err := ctrl.ControllerGetCapabilities(context.Background(), &csipb.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	publish := slices.ContainsFunc(caps.GetCapabilities(), func(c *csipb.ControllerServiceCapability) bool {
		return c.GetRpc().GetType() == csipb.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME
	})
	d := only[*storagev1.CSIDriver](t, loadDir(t, baseDir))
	attach := d.Spec.AttachRequired != nil && *d.Spec.AttachRequired
	if publish != attach || publish != (c.attacher != nil) {
		t.Errorf("PUBLISH_UNPUBLISH_VOLUME advertised: %v; CSIDriver attachRequired: %v; csi-attacher sidecar: %v: want all three alike", publish, attach, c.attacher != nil)
	}
}

// exampleController is a Controller configured as the Deployment's flags
// say, its default client on an rdstest emulator (which stands in for the
// RDS at --rds-address).
func exampleController(t *testing.T, c controllerSet) (*csi.Controller, *rdstest.Server) {
	t.Helper()
	srv, err := rdstest.Start(rdstest.Options{Pool: mustFlag(t, c.plugin, "pool"), User: mustFlag(t, c.plugin, "rds-user")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run, err := routeros.NewSSH(routeros.SSHConfig{Address: srv.Addr(), User: srv.User(), PrivateKey: srv.ClientKeyPEM(),
		KnownHosts: srv.KnownHosts(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Close() })
	nqnBase, _ := flagValue(c.plugin.Args, "nqn-base")
	if nqnBase == "" {
		nqnBase = "nqn.2000-02.com.mikrotik" // the flag's default
	}
	ctrl, err := csi.NewController(csi.ControllerConfig{Client: routeros.NewClient(run, nil),
		RDSAddress: mustFlag(t, c.plugin, "rds-address"), VolumeDir: mustFlag(t, c.plugin, "volume-dir"),
		NQNBase: nqnBase, Pool: mustFlag(t, c.plugin, "pool"), Logger: log})
	if err != nil {
		t.Fatalf("the Deployment's flags: %v", err)
	}
	t.Cleanup(ctrl.Close)
	return ctrl, srv
}

// TestExampleClaimProvisions: the example claim, on the example
// StorageClass, provisions on a controller configured by the Deployment's
// flags: CreateVolume succeeds with the class's parameters and the claim's
// size, the volume lands under --volume-dir on the default RDS, its id
// names that RDS, the node accepts its VolumeContext, and it deletes.
func TestExampleClaimProvisions(t *testing.T) {
	c := loadControllerSet(t)
	ctrl, srv := exampleController(t, c)
	ex := loadDir(t, examplesDir)
	sc := only[*storagev1.StorageClass](t, ex)
	var claim *corev1.PersistentVolumeClaim
	for _, pvc := range each[*corev1.PersistentVolumeClaim](ex) {
		if pvc.Spec.StorageClassName != nil && *pvc.Spec.StorageClassName == sc.Name {
			claim = pvc
		}
	}
	if claim == nil {
		t.Fatalf("no example claim on StorageClass %s", sc.Name)
	}
	if len(sc.Parameters) == 0 || sc.Parameters[csi.KeyRDSAddress] == "" {
		t.Fatal("the example StorageClass names no rdsAddress")
	}
	for k, v := range sc.Parameters {
		if strings.HasSuffix(k, "-secret-namespace") && v != c.d.Namespace {
			t.Errorf("StorageClass %s: %s=%s, but the controller may read Secrets only in %s", sc.Name, k, v, c.d.Namespace)
		}
	}
	size := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	caps := []*csipb.VolumeCapability{{
		AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}}
	// What external-provisioner sends: the class's parameters (its
	// csi.storage.k8s.io/ secret keys removed) and the claim's size.
	params := map[string]string{}
	for k, v := range sc.Parameters {
		if !strings.HasPrefix(k, "csi.storage.k8s.io/") {
			params[k] = v
		}
	}
	resp, err := ctrl.CreateVolume(context.Background(), &csipb.CreateVolumeRequest{Name: "pvc-6f0f3b8e-2c1d-4b7a-9e5f-1a2b3c4d5e6f",
		Parameters: params, VolumeCapabilities: caps, CapacityRange: &csipb.CapacityRange{RequiredBytes: size.Value()}})
	if err != nil {
		t.Fatalf("the example claim does not provision: %v", err)
	}
	v := resp.GetVolume()
	id, err := csi.ParseVolumeID(v.GetVolumeId())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := csi.ParseRDSAddress(mustFlag(t, c.plugin, "rds-address"))
	if id.RDS != want {
		t.Errorf("volume id %s names RDS %s, want the Deployment's %s", v.GetVolumeId(), id.RDS, want)
	}
	if v.GetCapacityBytes() < size.Value() {
		t.Errorf("capacity %d, the claim asks %d", v.GetCapacityBytes(), size.Value())
	}
	if _, err := csi.ParseParams(v.GetVolumeContext()); err != nil {
		t.Errorf("the node refuses the VolumeContext %v: %v", v.GetVolumeContext(), err)
	}
	disks := srv.Disks()
	if len(disks) != 1 || !strings.HasPrefix(disks[0].FilePath, mustFlag(t, c.plugin, "volume-dir")+"/") {
		t.Errorf("disks %v, want one under --volume-dir", disks)
	}
	if _, err := ctrl.DeleteVolume(context.Background(), &csipb.DeleteVolumeRequest{VolumeId: v.GetVolumeId()}); err != nil {
		t.Errorf("delete: %v", err)
	}
	if d := srv.Disks(); len(d) != 0 {
		t.Errorf("disks %v after the delete", d)
	}
}

// The Secret's documented shape: exactly the keys the controller reads,
// the name the Deployment mounts, the namespace the RBAC allows, and
// placeholders that are not keys.
func TestSecretExample(t *testing.T) {
	c := loadControllerSet(t)
	s := only[*corev1.Secret](t, loadFile(t, secretExample))
	if s.Namespace != c.d.Namespace {
		t.Errorf("Secret %s: namespace %q, want %q", s.Name, s.Namespace, c.d.Namespace)
	}
	cred := podVolume(t, c.spec, mountAt(t, c.plugin, path.Dir(mustFlag(t, c.plugin, "rds-key-file"))).Name)
	if cred.Secret.SecretName != s.Name {
		t.Errorf("the Deployment mounts Secret %q, the example is %q", cred.Secret.SecretName, s.Name)
	}
	if cred.Secret.Optional != nil && *cred.Secret.Optional {
		t.Error("the default Secret is optional: the controller would start without credentials")
	}
	got := slices.Sorted(func(yield func(string) bool) {
		for k := range s.StringData {
			if !yield(k) {
				return
			}
		}
	})
	if want := []string{csi.SecretKnownHosts, csi.SecretPrivateKey, csi.SecretUsername}; !slices.Equal(got, want) {
		t.Errorf("Secret keys %v, want %v", got, want)
	}
	if _, err := csi.ParseCredentials(s.StringData, csi.Credentials{}); err != nil {
		t.Errorf("the controller refuses the Secret's keys: %v", err)
	}
	if _, err := ssh.ParsePrivateKey([]byte(s.StringData[csi.SecretPrivateKey])); err == nil {
		t.Error("the example Secret holds a real private key; it must hold a placeholder")
	}
	if len(s.Data) > 0 {
		t.Error("the example Secret has data: use stringData placeholders")
	}
	// No kustomization applies it.
	for _, dir := range manifestDirs {
		for _, f := range yamlFiles(t, dir) {
			if path.Base(f) == secretExample {
				t.Errorf("%s is in %s, which a kustomization applies", secretExample, dir)
			}
		}
	}
}

// RBAC: the sidecars' documented rules are granted to the controller's
// ServiceAccount and to nothing else; Secrets only with get, only in the
// driver's namespace; the node's ServiceAccount has no binding at all.
func TestControllerRBAC(t *testing.T) {
	base := loadDir(t, baseDir)
	c := loadControllerSet(t)
	sa := c.spec.ServiceAccountName
	if !slices.ContainsFunc(each[*corev1.ServiceAccount](base), func(s *corev1.ServiceAccount) bool { return s.Name == sa }) {
		t.Fatalf("serviceAccountName %q is not defined", sa)
	}
	roles := map[string][]rbacv1.PolicyRule{}
	for _, r := range each[*rbacv1.ClusterRole](base) {
		roles["ClusterRole/"+r.Name] = r.Rules
		for _, rule := range r.Rules {
			if slices.Contains(rule.Resources, "secrets") || slices.Contains(rule.Resources, "*") {
				t.Errorf("ClusterRole %s grants %v on %v: Secrets are readable in the driver's namespace only", r.Name, rule.Verbs, rule.Resources)
			}
		}
	}
	for _, r := range each[*rbacv1.Role](base) {
		roles["Role/"+r.Name] = r.Rules
		for _, rule := range r.Rules {
			if slices.Contains(rule.Resources, "secrets") && !slices.Equal(rule.Verbs, []string{"get"}) {
				t.Errorf("Role %s: verbs %v on secrets, want only get (the sidecars get the Secret a StorageClass names)", r.Name, rule.Verbs)
			}
		}
	}
	var granted []rbacv1.PolicyRule
	check := func(kind, name string, subjects []rbacv1.Subject, ref rbacv1.RoleRef) {
		for _, s := range subjects {
			if s.Kind != "ServiceAccount" || s.Name != sa || s.Namespace != c.d.Namespace {
				t.Errorf("%s %s binds %s %s/%s; only the controller's ServiceAccount %s/%s needs API access", kind, name, s.Kind, s.Namespace, s.Name, c.d.Namespace, sa)
			}
		}
		rules, ok := roles[ref.Kind+"/"+ref.Name]
		if !ok {
			t.Errorf("%s %s: roleRef %s %s is not defined here", kind, name, ref.Kind, ref.Name)
		}
		granted = append(granted, rules...)
	}
	for _, b := range each[*rbacv1.ClusterRoleBinding](base) {
		check("ClusterRoleBinding", b.Name, b.Subjects, b.RoleRef)
	}
	for _, b := range each[*rbacv1.RoleBinding](base) {
		if b.Namespace != c.d.Namespace {
			t.Errorf("RoleBinding %s in %q, want %q", b.Name, b.Namespace, c.d.Namespace)
		}
		check("RoleBinding", b.Name, b.Subjects, b.RoleRef)
	}
	// What the sidecars need (their deploy/kubernetes/rbac.yaml at the
	// pinned tags; secrets get for the StorageClasses' Secrets).
	need := []struct{ group, resource, verbs string }{
		{"", "persistentvolumes", "get list watch create patch delete"},
		{"", "persistentvolumeclaims", "get list watch update"},
		{"", "persistentvolumeclaims/status", "patch"},
		{"", "events", "list watch create update patch"},
		{"", "nodes", "get list watch"},
		{"", "pods", "get list watch"},
		{"", "secrets", "get"},
		{"storage.k8s.io", "storageclasses", "get list watch"},
		{"storage.k8s.io", "csinodes", "get list watch"},
		{"storage.k8s.io", "volumeattachments", "get list watch patch"},
		{"storage.k8s.io", "volumeattachments/status", "patch"},
		{"storage.k8s.io", "volumeattributesclasses", "get list watch"},
		{"snapshot.storage.k8s.io", "volumesnapshots", "get list watch update"},
		{"snapshot.storage.k8s.io", "volumesnapshotcontents", "get list watch update patch"},
		{"snapshot.storage.k8s.io", "volumesnapshotcontents/status", "update patch"},
		{"snapshot.storage.k8s.io", "volumesnapshotclasses", "get list watch"},
		{"coordination.k8s.io", "leases", "get watch list delete update create"},
	}
	for _, n := range need {
		for _, verb := range strings.Fields(n.verbs) {
			if !slices.ContainsFunc(granted, func(r rbacv1.PolicyRule) bool {
				return slices.Contains(r.APIGroups, n.group) && slices.Contains(r.Resources, n.resource) && slices.Contains(r.Verbs, verb)
			}) {
				t.Errorf("the controller's ServiceAccount may not %s %s (group %q)", verb, n.resource, n.group)
			}
		}
	}
	// The sidecars use the API: the token is mounted.
	if a := c.spec.AutomountServiceAccountToken; a != nil && !*a {
		t.Error("controller pod: automountServiceAccountToken is false; the sidecars need the API")
	}
}
