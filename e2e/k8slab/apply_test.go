package k8slab

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
)

// fakeAPIServer serves legacy discovery for the overlay's kinds and records
// the server-side apply requests it gets, answering each with its body.
type fakeAPIServer struct {
	mu       sync.Mutex
	requests []string // "PATCH path?query content-type"
	bodies   map[string]map[string]any
}

var fakeResources = map[string][]metav1.APIResource{
	"v1": {
		{Name: "namespaces", Kind: "Namespace"},
		{Name: "resourcequotas", Kind: "ResourceQuota", Namespaced: true},
		{Name: "serviceaccounts", Kind: "ServiceAccount", Namespaced: true},
		{Name: "services", Kind: "Service", Namespaced: true},
		{Name: "secrets", Kind: "Secret", Namespaced: true},
	},
	"apps/v1": {
		{Name: "daemonsets", Kind: "DaemonSet", Namespaced: true},
		{Name: "deployments", Kind: "Deployment", Namespaced: true},
	},
	"storage.k8s.io/v1": {
		{Name: "csidrivers", Kind: "CSIDriver"},
	},
	"rbac.authorization.k8s.io/v1": {
		{Name: "clusterroles", Kind: "ClusterRole"},
		{Name: "clusterrolebindings", Kind: "ClusterRoleBinding"},
		{Name: "roles", Kind: "Role", Namespaced: true},
		{Name: "rolebindings", Kind: "RoleBinding", Namespaced: true},
	},
}

func (f *fakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reply := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(v); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api":
		reply(metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"}})
	case r.Method == http.MethodGet && r.URL.Path == "/apis":
		list := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
		for gv := range fakeResources {
			group, version, ok := strings.Cut(gv, "/")
			if !ok {
				continue
			}
			v := metav1.GroupVersionForDiscovery{GroupVersion: gv, Version: version}
			list.Groups = append(list.Groups, metav1.APIGroup{Name: group, Versions: []metav1.GroupVersionForDiscovery{v}, PreferredVersion: v})
		}
		reply(list)
	case r.Method == http.MethodGet:
		gv := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/apis/"), "/api/")
		rs, ok := fakeResources[gv]
		if !ok {
			http.NotFound(w, r)
			return
		}
		rs = slices.Clone(rs)
		for i := range rs {
			rs[i].Verbs = metav1.Verbs{"get", "list", "create", "update", "patch", "delete"}
		}
		reply(metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv, APIResources: rs})
	case r.Method == http.MethodPatch:
		data, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var obj map[string]any
		if err := json.Unmarshal(data, &obj); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.requests = append(f.requests, r.URL.Path+"?"+r.URL.RawQuery+" "+r.Header.Get("Content-Type"))
		f.bodies[r.URL.Path] = obj
		f.mu.Unlock()
		reply(obj)
	default:
		http.Error(w, "unexpected "+r.Method, http.StatusMethodNotAllowed)
	}
}

// fakeConfig is a client configuration for the fake API server, without
// client-go's default rate limit (5 requests per second).
func fakeConfig(url string) *rest.Config { return &rest.Config{Host: url, QPS: -1} }

// TestApply: the overlay and the Secret are applied in order, each with
// server-side apply (the apply patch type, the lab's field manager, force)
// at its resource's path, cluster-scoped or in its namespace.
func TestApply(t *testing.T) {
	f := &fakeAPIServer{bodies: map[string]map[string]any{}}
	srv := httptest.NewServer(f)
	defer srv.Close()

	objs := render(t, OverlayDir())
	secret, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ControllerSecret([]byte("k"), []byte("h")))
	if err != nil {
		t.Fatal(err)
	}
	objs = append(objs, &unstructured.Unstructured{Object: secret})
	if err := Apply(context.Background(), fakeConfig(srv.URL), objs); err != nil {
		t.Fatal(err)
	}

	const q = "?fieldManager=rds-csi-lab&force=true application/apply-patch+yaml"
	want := []string{
		"/api/v1/namespaces/rds-csi" + q,
		"/apis/storage.k8s.io/v1/csidrivers/rds.csi.srvlab.io" + q,
		"/apis/rbac.authorization.k8s.io/v1/clusterroles/rds-csi-provisioner" + q,
		"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/rds-csi-provisioner" + q,
		"/apis/rbac.authorization.k8s.io/v1/clusterroles/rds-csi-resizer" + q,
		"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/rds-csi-resizer" + q,
		"/apis/rbac.authorization.k8s.io/v1/clusterroles/rds-csi-snapshotter" + q,
		"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/rds-csi-snapshotter" + q,
		"/apis/rbac.authorization.k8s.io/v1/clusterroles/rds-csi-attacher" + q,
		"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/rds-csi-attacher" + q,
		"/api/v1/namespaces/rds-csi/resourcequotas/rds-csi-critical-pods" + q,
		"/api/v1/namespaces/rds-csi/serviceaccounts/rds-csi-node" + q,
		"/apis/rbac.authorization.k8s.io/v1/namespaces/rds-csi/roles/rds-csi-controller" + q,
		"/apis/rbac.authorization.k8s.io/v1/namespaces/rds-csi/rolebindings/rds-csi-controller" + q,
		"/api/v1/namespaces/rds-csi/serviceaccounts/rds-csi-controller" + q,
		"/api/v1/namespaces/rds-csi/secrets/rds-csi-controller" + q,
		"/apis/apps/v1/namespaces/rds-csi/daemonsets/rds-csi-node" + q,
		"/api/v1/namespaces/rds-csi/services/rds-csi-node-metrics" + q,
		"/apis/apps/v1/namespaces/rds-csi/deployments/rds-csi-controller" + q,
	}
	if diff := cmp.Diff(want, f.requests); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	// The Secret's data went as base64, under the keys the controller mounts.
	got := f.bodies["/api/v1/namespaces/rds-csi/secrets/rds-csi-controller"]["data"]
	if diff := cmp.Diff(map[string]any{"privateKey": "aw==", "knownHosts": "aA=="}, got); diff != "" {
		t.Errorf("Secret data (-want +got):\n%s", diff)
	}
}

// TestApplyKindNotServed: nothing is applied when one kind is not served.
func TestApplyKindNotServed(t *testing.T) {
	f := &fakeAPIServer{bodies: map[string]map[string]any{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	pm := &unstructured.Unstructured{}
	pm.SetAPIVersion("monitoring.coreos.com/v1")
	pm.SetKind("PodMonitor")
	pm.SetNamespace("rds-csi")
	pm.SetName("rds-csi-node")
	objs := append(render(t, OverlayDir()), pm)
	err := Apply(context.Background(), fakeConfig(srv.URL), objs)
	if err == nil || !strings.Contains(err.Error(), "PodMonitor rds-csi/rds-csi-node") {
		t.Errorf("error %v, want one naming the PodMonitor", err)
	}
	if len(f.requests) != 0 {
		t.Errorf("applied %q before failing", f.requests)
	}
}
