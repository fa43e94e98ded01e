package k8slab

import (
	"fmt"
	"path/filepath"
	"runtime"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// OverlayDir is the lab's kustomize overlay (e2e/k8slab/overlay), found from
// this source file so that it works from any working directory inside the
// module.
func OverlayDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "overlay")
}

// RenderOverlay builds the kustomization in dir (kustomize's own code, on
// the real filesystem, as `kubectl kustomize dir` would) and returns its
// objects in the order kustomize emits them (the resources' depth-first
// order). Apply orders them for the API server.
func RenderOverlay(dir string) ([]*unstructured.Unstructured, error) {
	// The default options: plugins off, no managed-by label, and loads
	// restricted to each kustomization's root (bases such as
	// ../../../deploy/overlays/builtin-registration are their own roots).
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range m.Resources() {
		// Through JSON, not r.Map(): Map's numbers are Go ints, which
		// unstructured's DeepCopy (JSON values: int64, float64) panics on.
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s: %w", dir, r.CurId(), err)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s: %w", dir, r.CurId(), err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}
