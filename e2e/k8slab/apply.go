package k8slab

import (
	"context"
	"errors"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// FieldManager is the server-side apply field manager of everything the lab
// applies.
const FieldManager = "rds-csi-lab"

// Apply applies objs to the cluster of cfg with server-side apply (field
// manager FieldManager, conflicts forced: the lab owns these objects), one
// at a time in the order of applyOrder. A kind the cluster does not serve
// is an error: every object of the lab's overlay is needed.
func Apply(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("apply: discovery client: %w", err)
	}
	groups, err := restmapper.GetAPIGroupResourcesWithContext(ctx, dc)
	if err != nil {
		return fmt.Errorf("apply: discovery: %w", err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("apply: dynamic client: %w", err)
	}
	ordered, err := applyOrder(mapper, objs)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	for _, o := range ordered {
		ri := dynamic.ResourceInterface(dyn.Resource(o.mapping.Resource))
		if o.mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(o.mapping.Resource).Namespace(o.obj.GetNamespace())
		}
		opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
		if _, err := ri.Apply(ctx, o.obj.GetName(), o.obj, opts); err != nil {
			return fmt.Errorf("apply %s: %w", describe(o.obj), err)
		}
	}
	return nil
}

// errScope: an object's namespace does not fit its kind's scope (a
// namespaced kind without a namespace, or a cluster-scoped one with one).
var errScope = errors.New("namespace does not fit the kind's scope")

// mappedObject is an object with the resource the cluster serves it as.
type mappedObject struct {
	obj     *unstructured.Unstructured
	mapping *meta.RESTMapping
}

// applyOrder maps every object to its resource and orders them so that
// nothing is applied before what it lives in or is admitted against:
// Namespaces, then CustomResourceDefinitions, then other cluster-scoped
// objects (CSIDriver, ClusterRoles and their bindings), then the namespaced
// objects that pods need at admission (ServiceAccounts, ResourceQuotas,
// Secrets, ConfigMaps, Roles, RoleBindings), then the rest (Services,
// workloads). Within a rank the input order is kept. A kind the mapper does
// not know is an error for which meta.IsNoMatchError holds; a namespace that
// does not fit the kind's scope is errScope.
func applyOrder(mapper meta.RESTMapper, objs []*unstructured.Unstructured) ([]mappedObject, error) {
	out := make([]mappedObject, 0, len(objs))
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return nil, fmt.Errorf("%s: the cluster does not serve %s: %w", describe(obj), gvk, err)
		}
		namespaced := m.Scope.Name() == meta.RESTScopeNameNamespace
		if namespaced != (obj.GetNamespace() != "") {
			return nil, fmt.Errorf("%s: %w: namespace %q, %s is %s-scoped", describe(obj), errScope, obj.GetNamespace(), gvk.Kind, m.Scope.Name())
		}
		out = append(out, mappedObject{obj: obj, mapping: m})
	}
	sort.SliceStable(out, func(i, j int) bool { return applyRank(out[i]) < applyRank(out[j]) })
	return out, nil
}

// applyRank is an object's place in applyOrder (lower first).
func applyRank(o mappedObject) int {
	gk := o.obj.GroupVersionKind().GroupKind()
	switch {
	case gk.Group == "" && gk.Kind == "Namespace":
		return 0
	case gk.Group == "apiextensions.k8s.io" && gk.Kind == "CustomResourceDefinition":
		return 1
	case o.mapping.Scope.Name() != meta.RESTScopeNameNamespace:
		return 2
	}
	switch gk.String() {
	case "ServiceAccount", "ResourceQuota", "LimitRange", "Secret", "ConfigMap",
		"Role.rbac.authorization.k8s.io", "RoleBinding.rbac.authorization.k8s.io":
		return 3
	}
	return 4
}

// describe names an object in errors: Kind namespace/name.
func describe(obj *unstructured.Unstructured) string {
	if ns := obj.GetNamespace(); ns != "" {
		return fmt.Sprintf("%s %s/%s", obj.GetKind(), ns, obj.GetName())
	}
	return fmt.Sprintf("%s %s", obj.GetKind(), obj.GetName())
}

// ControllerSecret is the controller's default Secret (rds-csi-controller in
// namespace rds-csi, the shape of deploy/controller-secret.example.yaml):
// privateKeyPEM is the RouterOS user's unencrypted PEM private key,
// knownHosts the known_hosts lines with the RDS's host key under the address
// the controller dials ("[10.88.0.1]:2222" in the lab). No username key: the
// controller's --rds-user names the user of the default Secret. TypeMeta is
// set, so that runtime.DefaultUnstructuredConverter turns it into an object
// for Apply.
func ControllerSecret(privateKeyPEM, knownHosts []byte) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      "rds-csi-controller",
			Namespace: "rds-csi",
			Labels: map[string]string{
				"app.kubernetes.io/name":      "rds-csi",
				"app.kubernetes.io/component": "controller",
				"app.kubernetes.io/part-of":   "rds-csi",
			},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			"privateKey": privateKeyPEM,
			"knownHosts": knownHosts,
		},
	}
}
