package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The manifest directories, relative to this package. Each one is a
// kustomization.
const (
	baseDir       = "kubernetes"
	monitoringDir = "kubernetes/monitoring"
	examplesDir   = "kubernetes/examples"
	snapshotsDir  = "kubernetes/snapshots"
)

var manifestDirs = []string{baseDir, monitoringDir, examplesDir, snapshotsDir}

// The registrar-free variant: a kustomize Component of JSON patches on the
// base, and an overlay that applies it.
const (
	builtinComponentDir = "components/builtin-registration"
	builtinOverlayDir   = "overlays/builtin-registration"
)

// object is one decoded manifest document.
type object struct {
	file string // path relative to this package
	doc  int    // 0-based document index in file
	meta metav1.TypeMeta
	obj  any    // a pointer to the typed object
	json []byte // the document as JSON
}

func (o object) String() string {
	return fmt.Sprintf("%s#%d (%s %s)", o.file, o.doc, o.meta.APIVersion, o.meta.Kind)
}

// newTyped returns a pointer to the Go type a manifest of this apiVersion and
// kind decodes into, or nil for one this repository does not use.
func newTyped(tm metav1.TypeMeta) any {
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/Namespace":
		return &corev1.Namespace{}
	case "v1/ResourceQuota":
		return &corev1.ResourceQuota{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/PersistentVolume":
		return &corev1.PersistentVolume{}
	case "v1/PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}
	case "v1/Pod":
		return &corev1.Pod{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "rbac.authorization.k8s.io/v1/ClusterRole":
		return &rbacv1.ClusterRole{}
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}
	case "rbac.authorization.k8s.io/v1/Role":
		return &rbacv1.Role{}
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		return &rbacv1.RoleBinding{}
	case "storage.k8s.io/v1/CSIDriver":
		return &storagev1.CSIDriver{}
	case "storage.k8s.io/v1/StorageClass":
		return &storagev1.StorageClass{}
	case "monitoring.coreos.com/v1/PodMonitor":
		return &podMonitor{}
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &prometheusRule{}
	case "snapshot.storage.k8s.io/v1/VolumeSnapshotClass":
		return &volumeSnapshotClass{}
	case "kustomize.config.k8s.io/v1beta1/Kustomization", "kustomize.config.k8s.io/v1alpha1/Component":
		return &kustomization{}
	}
	return nil
}

// Small local types for the kinds k8s.io/api does not have. They cover the
// fields the manifests use; strict decoding makes any other field an error,
// so a new field has to be added here on purpose.

type kustomization struct {
	metav1.TypeMeta `json:",inline"`
	Resources       []string `json:"resources,omitempty"`
	Components      []string `json:"components,omitempty"`
	Patches         []struct {
		Path   string `json:"path"`
		Target struct {
			Group     string `json:"group,omitempty"`
			Version   string `json:"version"`
			Kind      string `json:"kind"`
			Name      string `json:"name"`
			Namespace string `json:"namespace,omitempty"`
		} `json:"target"`
	} `json:"patches,omitempty"`
}

type podMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port              string       `json:"port"`
			Path              string       `json:"path,omitempty"`
			Scheme            string       `json:"scheme,omitempty"`
			Interval          string       `json:"interval,omitempty"`
			ScrapeTimeout     string       `json:"scrapeTimeout,omitempty"`
			Relabelings       []relabeling `json:"relabelings,omitempty"`
			MetricRelabelings []relabeling `json:"metricRelabelings,omitempty"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type relabeling struct {
	SourceLabels []string `json:"sourceLabels,omitempty"`
	Separator    string   `json:"separator,omitempty"`
	TargetLabel  string   `json:"targetLabel,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	Replacement  *string  `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
}

// volumeSnapshotClass is snapshot.storage.k8s.io/v1 VolumeSnapshotClass
// (external-snapshotter's client types are not a dependency of this module).
type volumeSnapshotClass struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Driver            string            `json:"driver"`
	Parameters        map[string]string `json:"parameters,omitempty"`
	DeletionPolicy    string            `json:"deletionPolicy"`
}

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

// ruleGroup is a Prometheus rule group, as in a rules file and in a
// PrometheusRule's spec.groups (the same field names).
type ruleGroup struct {
	Name        string            `json:"name"`
	Interval    string            `json:"interval,omitempty"`
	QueryOffset string            `json:"query_offset,omitempty"`
	Limit       *int              `json:"limit,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Rules       []struct {
		Record        string            `json:"record,omitempty"`
		Alert         string            `json:"alert,omitempty"`
		Expr          string            `json:"expr"`
		For           string            `json:"for,omitempty"`
		KeepFiringFor string            `json:"keep_firing_for,omitempty"`
		Labels        map[string]string `json:"labels,omitempty"`
		Annotations   map[string]string `json:"annotations,omitempty"`
	} `json:"rules"`
}

// splitDocuments returns the YAML documents of data, without the ones that
// hold nothing but comments.
func splitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSONStrict(d)
		if err != nil {
			return nil, err
		}
		if s := string(bytes.TrimSpace(j)); s == "null" || s == "" {
			continue
		}
		docs = append(docs, d)
	}
}

// decodeStrict decodes one YAML document into v: duplicate keys, unknown
// fields and keys in the wrong case are errors.
func decodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, v, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// loadFile decodes every document of a manifest file strictly into its type.
func loadFile(t *testing.T, file string) []object {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := splitDocuments(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no documents", file)
	}
	var out []object
	for i, d := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(d, &tm); err != nil {
			t.Fatalf("%s#%d: %v", file, i, err)
		}
		o := object{file: file, doc: i, meta: tm, obj: newTyped(tm)}
		if o.obj == nil {
			t.Fatalf("%s: unexpected apiVersion %q kind %q: add its type to newTyped", o, tm.APIVersion, tm.Kind)
		}
		if err := decodeStrict(d, o.obj); err != nil {
			t.Fatalf("%s: %v", o, err)
		}
		if o.json, err = yaml.YAMLToJSONStrict(d); err != nil {
			t.Fatalf("%s: %v", o, err)
		}
		out = append(out, o)
	}
	return out
}

// yamlFiles lists the *.yaml files of dir (not its subdirectories), sorted.
func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if yml, _ := filepath.Glob(filepath.Join(dir, "*.yml")); len(yml) > 0 {
		t.Fatalf("%v: use the .yaml extension", yml)
	}
	slices.Sort(files)
	return files
}

// loadDir decodes every manifest of dir except its kustomization.yaml.
func loadDir(t *testing.T, dir string) []object {
	t.Helper()
	var out []object
	for _, f := range yamlFiles(t, dir) {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		out = append(out, loadFile(t, f)...)
	}
	return out
}

// only returns the single object of type T in objs.
func only[T any](t *testing.T, objs []object) T {
	t.Helper()
	all := each[T](objs)
	if len(all) != 1 {
		var zero T
		t.Fatalf("want exactly one %T, found %d", zero, len(all))
	}
	return all[0]
}

// podMonitorSelecting returns the one PodMonitor in objs whose selector
// is exactly labels (the node's and the controller's each have their own).
func podMonitorSelecting(t *testing.T, objs []object, labels map[string]string) *podMonitor {
	t.Helper()
	var found []*podMonitor
	for _, pm := range each[*podMonitor](objs) {
		if maps.Equal(pm.Spec.Selector.MatchLabels, labels) && len(pm.Spec.Selector.MatchExpressions) == 0 {
			found = append(found, pm)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one PodMonitor selecting %v, found %d", labels, len(found))
	}
	return found[0]
}

// each returns every object of type T in objs.
func each[T any](objs []object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func container(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// flagValue returns the value of --name=value (or -name=value) in args.
// Flags are written with "=" in the manifests so that this is unambiguous.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		for _, p := range []string{"--" + name + "=", "-" + name + "="} {
			if v, ok := strings.CutPrefix(a, p); ok {
				return v, true
			}
		}
	}
	return "", false
}

func mustFlag(t *testing.T, c *corev1.Container, name string) string {
	t.Helper()
	v, ok := flagValue(c.Args, name)
	if !ok {
		t.Fatalf("container %s: no --%s=... in args %q", c.Name, name, c.Args)
	}
	return v
}

// volumeMount returns c's mount of the named volume.
func volumeMount(t *testing.T, c *corev1.Container, volume string) corev1.VolumeMount {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m
		}
	}
	t.Fatalf("container %s does not mount volume %q", c.Name, volume)
	return corev1.VolumeMount{}
}

// mountAt returns c's mount whose mountPath is path.
func mountAt(t *testing.T, c *corev1.Container, path string) corev1.VolumeMount {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return m
		}
	}
	t.Fatalf("container %s mounts nothing at %s", c.Name, path)
	return corev1.VolumeMount{}
}

// hostPath returns the hostPath source of the named pod volume.
func hostPath(t *testing.T, spec *corev1.PodSpec, volume string) *corev1.HostPathVolumeSource {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name == volume {
			if v.HostPath == nil {
				t.Fatalf("volume %q is not a hostPath", volume)
			}
			return v.HostPath
		}
	}
	t.Fatalf("no volume %q", volume)
	return nil
}

// containerPort returns the number of c's port with the given name.
func containerPort(t *testing.T, c *corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, name)
	return 0
}

// addrPort returns the port of a listen address such as ":9809".
func addrPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		t.Fatalf("address %q: port: %v", addr, err)
	}
	return int32(n)
}

// build returns the objects `kustomize build dir` makes, for the kustomize
// features these manifests use: resources (files, and directories that are
// kustomizations themselves) and components whose patches are JSON patches
// (RFC 6902) on a target named by group, version, kind and name. Anything
// else in a kustomization fails strict decoding. Each patched object is
// decoded strictly again.
func build(t *testing.T, dir string) []object {
	t.Helper()
	k := only[*kustomization](t, loadFile(t, filepath.Join(dir, "kustomization.yaml")))
	if k.Kind != "Kustomization" {
		t.Fatalf("%s: kind %s cannot be built on its own", dir, k.Kind)
	}
	if len(k.Patches) > 0 {
		t.Fatalf("%s: patches outside a component: extend build", dir)
	}
	var objs []object
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		if fi, err := os.Stat(p); err != nil {
			t.Fatal(err)
		} else if fi.IsDir() {
			objs = append(objs, build(t, p)...)
		} else {
			objs = append(objs, loadFile(t, p)...)
		}
	}
	for _, c := range k.Components {
		cdir := filepath.Join(dir, c)
		ck := only[*kustomization](t, loadFile(t, filepath.Join(cdir, "kustomization.yaml")))
		if ck.Kind != "Component" || len(ck.Resources) > 0 || len(ck.Components) > 0 {
			t.Fatalf("%s: want a Component with patches only", cdir)
		}
		for _, p := range ck.Patches {
			ops := loadJSONPatch(t, filepath.Join(cdir, p.Path))
			tg := p.Target
			hits := 0
			for i, o := range objs {
				name, ns := objectName(o)
				if o.meta.APIVersion != path.Join(tg.Group, tg.Version) || o.meta.Kind != tg.Kind || name != tg.Name || (tg.Namespace != "" && ns != tg.Namespace) {
					continue
				}
				hits++
				var doc any
				if err := json.Unmarshal(o.json, &doc); err != nil {
					t.Fatal(err)
				}
				for j, op := range ops {
					var err error
					if doc, err = applyJSONPatch(doc, op); err != nil {
						t.Fatalf("%s: operation %d (%s %s) on %s: %v", p.Path, j, op.Op, op.Path, o, err)
					}
				}
				patched, err := json.Marshal(doc)
				if err != nil {
					t.Fatal(err)
				}
				n := object{file: o.file + " patched by " + filepath.Join(cdir, p.Path), doc: o.doc, meta: o.meta, obj: newTyped(o.meta), json: patched}
				if err := decodeStrict(patched, n.obj); err != nil {
					t.Fatalf("%s: %v", n, err)
				}
				objs[i] = n
			}
			if hits != 1 {
				t.Fatalf("%s: target %+v matches %d objects, want 1", filepath.Join(cdir, p.Path), tg, hits)
			}
		}
	}
	return objs
}

// jsonPatchOp is one operation of a JSON patch (RFC 6902).
type jsonPatchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value,omitempty"`
}

// loadJSONPatch decodes a JSON patch written in YAML, strictly.
func loadJSONPatch(t *testing.T, file string) []jsonPatchOp {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var ops []jsonPatchOp
	if err := decodeStrict(data, &ops); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(ops) == 0 {
		t.Fatalf("%s: no operations", file)
	}
	for i, op := range ops {
		switch op.Op {
		case "add", "replace", "test":
			if op.Value == nil {
				t.Fatalf("%s: operation %d (%s %s) has no value", file, i, op.Op, op.Path)
			}
		case "remove":
		default:
			// move and copy are valid RFC 6902, but applyJSONPatch does not
			// know them.
			t.Fatalf("%s: operation %d: op %q: want add, remove, replace or test", file, i, op.Op)
		}
	}
	return ops
}

// applyJSONPatch applies one operation (add, remove, replace, test) to doc,
// a document as json.Unmarshal into an any makes it, and returns the result.
func applyJSONPatch(doc any, op jsonPatchOp) (any, error) {
	if op.Path == "" || op.Path[0] != '/' {
		return nil, fmt.Errorf("path %q: want a JSON pointer to a member", op.Path)
	}
	var toks []string
	for _, tok := range strings.Split(op.Path[1:], "/") {
		toks = append(toks, strings.NewReplacer("~1", "/", "~0", "~").Replace(tok))
	}
	var val any
	if op.Value != nil {
		if err := json.Unmarshal(op.Value, &val); err != nil {
			return nil, err
		}
	}
	return patchAt(doc, toks, op.Op, val)
}

func patchAt(node any, toks []string, op string, val any) (any, error) {
	tok, last := toks[0], len(toks) == 1
	switch n := node.(type) {
	case map[string]any:
		child, ok := n[tok]
		if !last {
			if !ok {
				return nil, fmt.Errorf("no member %q", tok)
			}
			c, err := patchAt(child, toks[1:], op, val)
			n[tok] = c
			return n, err
		}
		if !ok && op != "add" {
			return nil, fmt.Errorf("no member %q", tok)
		}
		switch op {
		case "add", "replace":
			n[tok] = val
		case "remove":
			delete(n, tok)
		case "test":
			if !reflect.DeepEqual(child, val) {
				return nil, fmt.Errorf("test failed: %q is %v, want %v", tok, child, val)
			}
		}
		return n, nil
	case []any:
		if last && op == "add" && tok == "-" {
			return append(n, val), nil
		}
		i, err := strconv.Atoi(tok)
		if err != nil || i < 0 || (tok != "0" && tok[0] == '0') {
			return nil, fmt.Errorf("array index %q", tok)
		}
		if last && op == "add" {
			if i > len(n) {
				return nil, fmt.Errorf("index %d past the end (%d)", i, len(n))
			}
			return slices.Insert(n, i, val), nil
		}
		if i >= len(n) {
			return nil, fmt.Errorf("index %d past the end (%d)", i, len(n))
		}
		if !last {
			c, err := patchAt(n[i], toks[1:], op, val)
			n[i] = c
			return n, err
		}
		switch op {
		case "replace":
			n[i] = val
		case "remove":
			return slices.Delete(n, i, i+1), nil
		case "test":
			if !reflect.DeepEqual(n[i], val) {
				return nil, fmt.Errorf("test failed: [%d] is %v, want %v", i, n[i], val)
			}
		}
		return n, nil
	}
	return nil, fmt.Errorf("%q: not in an object or array", tok)
}
