package k8slab

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// baseRel is the overlay's one resource: the shipped variant without
// sidecars, relative to the overlay.
const baseRel = "../../../deploy/overlays/builtin-registration"

// The lab's values (the overlay's patches and images).
const (
	labPlugin      = "rds-csi.lab/plugin:lab"
	labAttacher    = "rds-csi.lab/attacher:lab"
	labProvisioner = "rds-csi.lab/provisioner:lab"
	labResizer     = "rds-csi.lab/resizer:lab"
	labAddress     = "--rds-address=10.88.0.1:2222"
	labVolDir      = "--volume-dir=/storage-pool/rds-csi"
	labPool        = "--pool=storage-pool"
)

// render renders dir and checks that every object is made of JSON values
// (DeepCopy panics on anything else, a Go int for one).
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := RenderOverlay(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("%s: not JSON values: %v", describe(o), r)
				}
			}()
			o.DeepCopy()
		}()
	}
	return objs
}

// objectID names an object across renderings.
func objectID(o *unstructured.Unstructured) string {
	return o.GetAPIVersion() + " " + describe(o)
}

func byID(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	m := make(map[string]*unstructured.Unstructured, len(objs))
	for _, o := range objs {
		m[objectID(o)] = o
	}
	return m
}

// decode converts a rendered object into its API type, refusing unknown
// fields.
func decode(t *testing.T, o *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true); err != nil {
		t.Fatalf("%s: %v", describe(o), err)
	}
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s in the rendered overlay", kind, name)
	return nil
}

// TestOverlayRendersFromDeploy: the overlay's only resource is
// deploy/overlays/builtin-registration, and the directory holds nothing but
// the kustomization and the patches it names (no copied manifests).
func TestOverlayRendersFromDeploy(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(OverlayDir(), "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k types.Kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{baseRel}, k.Resources); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
	if len(k.Components) != 0 || len(k.Generators) != 0 || len(k.ConfigMapGenerator) != 0 || len(k.SecretGenerator) != 0 {
		t.Errorf("the overlay adds components or generators; it should only patch the base")
	}
	base, err := filepath.Abs(filepath.Join(OverlayDir(), baseRel))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(base, filepath.Join("deploy", "overlays", "builtin-registration")) {
		t.Errorf("the base resolves to %s", base)
	}
	if _, err := os.Stat(filepath.Join(base, "kustomization.yaml")); err != nil {
		t.Errorf("the base: %v", err)
	}

	want := []string{"kustomization.yaml"}
	for _, p := range k.Patches {
		if p.Path == "" {
			t.Errorf("an inline patch (%q): keep patches in files, commented", p.Patch)
		}
		want = append(want, p.Path)
	}
	entries, err := os.ReadDir(OverlayDir())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files of %s (-want +got):\n%s", OverlayDir(), diff)
	}
}

// TestOverlayObjects: the overlay has every object of the base and no other;
// all but the two workloads are unchanged, and the workloads differ from the
// base only by the lab's changes (images, pull policy, the controller's
// sidecars and RDS flags).
func TestOverlayObjects(t *testing.T) {
	base := byID(render(t, filepath.Join(OverlayDir(), baseRel)))
	lab := byID(render(t, OverlayDir()))
	ids := func(m map[string]*unstructured.Unstructured) []string {
		return slices.Sorted(func(yield func(string) bool) {
			for id := range m {
				if !yield(id) {
					return
				}
			}
		})
	}
	if diff := cmp.Diff(ids(base), ids(lab)); diff != "" {
		t.Fatalf("objects (-base +lab):\n%s", diff)
	}
	for id, b := range base {
		l := lab[id]
		switch b.GetKind() {
		case "DaemonSet":
			var want, got appsv1.DaemonSet
			decode(t, b, &want)
			decode(t, l, &got)
			labContainers(t, want.Spec.Template.Spec.Containers)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: more than the lab's changes (-want +got):\n%s", id, diff)
			}
		case "Deployment":
			var want, got appsv1.Deployment
			decode(t, b, &want)
			decode(t, l, &got)
			spec := &want.Spec.Template.Spec
			spec.Containers = slices.DeleteFunc(spec.Containers, func(c corev1.Container) bool {
				return c.Name == "csi-snapshotter"
			})
			labContainers(t, spec.Containers)
			args := spec.Containers[0].Args
			for i, a := range args {
				switch {
				case strings.HasPrefix(a, "--rds-address="):
					args[i] = labAddress
				case strings.HasPrefix(a, "--volume-dir="):
					args[i] = labVolDir
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: more than the lab's changes (-want +got):\n%s", id, diff)
			}
		default:
			if diff := cmp.Diff(b.Object, l.Object); diff != "" {
				t.Errorf("%s changed (-base +lab):\n%s", id, diff)
			}
		}
	}
}

// labContainers applies the lab's image names and pull policy to the base's
// containers, as the overlay should.
func labContainers(t *testing.T, cs []corev1.Container) {
	t.Helper()
	for i := range cs {
		c := &cs[i]
		switch {
		case strings.HasPrefix(c.Image, "ghcr.io/srvlab/rds-csi:"):
			c.Image = labPlugin
		case strings.HasPrefix(c.Image, "registry.k8s.io/sig-storage/csi-attacher:"):
			c.Image = labAttacher
		case strings.HasPrefix(c.Image, "registry.k8s.io/sig-storage/csi-provisioner:"):
			c.Image = labProvisioner
		case strings.HasPrefix(c.Image, "registry.k8s.io/sig-storage/csi-resizer:"):
			c.Image = labResizer
		default:
			t.Errorf("container %s: image %s has no lab image", c.Name, c.Image)
		}
		c.ImagePullPolicy = corev1.PullNever
	}
}

func TestOverlayDaemonSet(t *testing.T) {
	var ds appsv1.DaemonSet
	decode(t, find(t, render(t, OverlayDir()), "DaemonSet", "rds-csi-node"), &ds)
	spec := ds.Spec.Template.Spec
	if len(spec.Containers) != 1 || spec.Containers[0].Name != "rds-csi" {
		t.Fatalf("containers %v, want rds-csi alone", containerNames(spec.Containers))
	}
	c := spec.Containers[0]
	if c.Image != labPlugin || c.ImagePullPolicy != corev1.PullNever {
		t.Errorf("image %s pull %s, want %s pull Never", c.Image, c.ImagePullPolicy, labPlugin)
	}
	if !slices.Contains(c.Args, "--kubelet-registration-path=/var/lib/kubelet/plugins_registry/rds.csi.srvlab.io-reg.sock") {
		t.Errorf("no --kubelet-registration-path in %q", c.Args)
	}
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Errorf("not privileged: %+v", c.SecurityContext)
	}
	if !spec.HostNetwork {
		t.Error("hostNetwork false")
	}
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/var/lib/kubelet" })
	if i < 0 {
		t.Fatal("no /var/lib/kubelet mount")
	}
	if p := c.VolumeMounts[i].MountPropagation; p == nil || *p != corev1.MountPropagationBidirectional {
		t.Errorf("/var/lib/kubelet propagation %v, want Bidirectional", p)
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", spec.PriorityClassName)
	}
}

func TestOverlayController(t *testing.T) {
	var d appsv1.Deployment
	decode(t, find(t, render(t, OverlayDir()), "Deployment", "rds-csi-controller"), &d)
	cs := d.Spec.Template.Spec.Containers
	if diff := cmp.Diff([]string{"rds-csi", "csi-provisioner", "csi-resizer", "csi-attacher"}, containerNames(cs)); diff != "" {
		t.Fatalf("containers (-want +got):\n%s", diff)
	}
	for i, want := range []string{labPlugin, labProvisioner, labResizer, labAttacher} {
		if cs[i].Image != want || cs[i].ImagePullPolicy != corev1.PullNever {
			t.Errorf("%s: image %s pull %s, want %s pull Never", cs[i].Name, cs[i].Image, cs[i].ImagePullPolicy, want)
		}
	}
	for _, flag := range []string{labAddress, labVolDir, labPool} {
		name, _, _ := strings.Cut(flag, "=")
		var got []string
		for _, a := range cs[0].Args {
			if strings.HasPrefix(a, name+"=") {
				got = append(got, a)
			}
		}
		if diff := cmp.Diff([]string{flag}, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	if !slices.Contains(cs[0].Args, "--mode=controller") {
		t.Errorf("rds-csi args %q: not --mode=controller", cs[0].Args)
	}
}

func TestOverlayCSIDriver(t *testing.T) {
	var d storagev1.CSIDriver
	decode(t, find(t, render(t, OverlayDir()), "CSIDriver", "rds.csi.srvlab.io"), &d)
	if d.Spec.AttachRequired == nil || !*d.Spec.AttachRequired {
		t.Errorf("attachRequired %v, want true (the scenarios test attach)", d.Spec.AttachRequired)
	}
}

// TestControllerSecret: the Secret is the one the controller mounts, with
// exactly the keys it mounts.
func TestControllerSecret(t *testing.T) {
	var d appsv1.Deployment
	decode(t, find(t, render(t, OverlayDir()), "Deployment", "rds-csi-controller"), &d)
	vols := d.Spec.Template.Spec.Volumes
	i := slices.IndexFunc(vols, func(v corev1.Volume) bool { return v.Secret != nil })
	if i < 0 {
		t.Fatal("the controller mounts no Secret")
	}
	var keys []string
	for _, it := range vols[i].Secret.Items {
		keys = append(keys, it.Key)
	}
	slices.Sort(keys)

	s := ControllerSecret([]byte("key"), []byte("[10.88.0.1]:2222 ssh-ed25519 AAAA"))
	if s.Name != vols[i].Secret.SecretName || s.Namespace != d.Namespace {
		t.Errorf("Secret %s/%s, the controller mounts %s/%s", s.Namespace, s.Name, d.Namespace, vols[i].Secret.SecretName)
	}
	var got []string
	for k := range s.Data {
		got = append(got, k)
	}
	slices.Sort(got)
	if diff := cmp.Diff(keys, got); diff != "" {
		t.Errorf("keys (-mounted +secret):\n%s", diff)
	}
	if string(s.Data["privateKey"]) != "key" || string(s.Data["knownHosts"]) != "[10.88.0.1]:2222 ssh-ed25519 AAAA" {
		t.Errorf("data %q", s.Data)
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(s)
	if err != nil {
		t.Fatal(err)
	}
	if u["kind"] != "Secret" || u["apiVersion"] != "v1" {
		t.Errorf("kind %v apiVersion %v: Apply needs both", u["kind"], u["apiVersion"])
	}
}

// TestOverlayKubectl: where kubectl is installed, `kubectl kustomize` (its
// own, possibly older, kustomize) builds the same objects as RenderOverlay
// (kubectl sorts them its own way; compared by identity).
func TestOverlayKubectl(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	out, err := exec.CommandContext(t.Context(), kubectl, "kustomize", OverlayDir()).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v", err)
	}
	got := map[string]map[string]any{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		o := &unstructured.Unstructured{}
		if err := dec.Decode(&o.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		// Through JSON, as RenderOverlay does, so that numbers compare.
		data, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if err := o.UnmarshalJSON(data); err != nil {
			t.Fatal(err)
		}
		got[objectID(o)] = o.Object
	}
	want := map[string]map[string]any{}
	for id, o := range byID(render(t, OverlayDir())) {
		want[id] = o.Object
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RenderOverlay vs kubectl kustomize (-want +got):\n%s", diff)
	}
}

func containerNames(cs []corev1.Container) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

// testMapper serves the kinds of the overlay, with their scopes.
func testMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	for _, k := range []struct {
		gvk        schema.GroupVersionKind
		namespaced bool
	}{
		{schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, false},
		{schema.GroupVersionKind{Version: "v1", Kind: "ResourceQuota"}, true},
		{schema.GroupVersionKind{Version: "v1", Kind: "ServiceAccount"}, true},
		{schema.GroupVersionKind{Version: "v1", Kind: "Service"}, true},
		{schema.GroupVersionKind{Version: "v1", Kind: "Secret"}, true},
		{schema.GroupVersionKind{Group: "storage.k8s.io", Version: "v1", Kind: "CSIDriver"}, false},
		{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"}, true},
		{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, true},
		{schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}, false},
		{schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"}, false},
		{schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"}, true},
		{schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"}, true},
	} {
		scope := meta.RESTScopeRoot
		if k.namespaced {
			scope = meta.RESTScopeNamespace
		}
		m.Add(k.gvk, scope)
	}
	return m
}

func TestApplyOrder(t *testing.T) {
	objs := render(t, OverlayDir())
	secret, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ControllerSecret([]byte("k"), []byte("h")))
	if err != nil {
		t.Fatal(err)
	}
	// The Secret last, as the lab adds it: it must still come before the
	// workloads.
	objs = append(objs, &unstructured.Unstructured{Object: secret})
	ordered, err := applyOrder(testMapper(), objs)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range ordered {
		got = append(got, o.obj.GetKind()+" "+o.obj.GetName())
	}
	want := []string{
		"Namespace rds-csi",
		"CSIDriver rds.csi.srvlab.io",
		"ClusterRole rds-csi-provisioner",
		"ClusterRoleBinding rds-csi-provisioner",
		"ClusterRole rds-csi-resizer",
		"ClusterRoleBinding rds-csi-resizer",
		"ClusterRole rds-csi-snapshotter",
		"ClusterRoleBinding rds-csi-snapshotter",
		"ClusterRole rds-csi-attacher",
		"ClusterRoleBinding rds-csi-attacher",
		"ResourceQuota rds-csi-critical-pods",
		"ServiceAccount rds-csi-node",
		"Role rds-csi-controller",
		"RoleBinding rds-csi-controller",
		"ServiceAccount rds-csi-controller",
		"Secret rds-csi-controller",
		"DaemonSet rds-csi-node",
		"Service rds-csi-node-metrics",
		"Deployment rds-csi-controller",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestApplyOrderErrors(t *testing.T) {
	obj := func(apiVersion, kind, ns string) *unstructured.Unstructured {
		o := &unstructured.Unstructured{}
		o.SetAPIVersion(apiVersion)
		o.SetKind(kind)
		o.SetName("x")
		o.SetNamespace(ns)
		return o
	}
	isScope := func(err error) bool { return errors.Is(err, errScope) }
	for _, tc := range []struct {
		name string
		obj  *unstructured.Unstructured
		is   func(error) bool
	}{
		{"kind not served", obj("monitoring.coreos.com/v1", "PodMonitor", "rds-csi"), meta.IsNoMatchError},
		{"namespaced without namespace", obj("apps/v1", "Deployment", ""), isScope},
		{"cluster-scoped with namespace", obj("storage.k8s.io/v1", "CSIDriver", "rds-csi"), isScope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := applyOrder(testMapper(), []*unstructured.Unstructured{tc.obj})
			if err == nil || !tc.is(err) {
				t.Errorf("error %v, want the case's kind", err)
			}
		})
	}
}
