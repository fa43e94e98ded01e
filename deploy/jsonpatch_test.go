package deploy_test

import (
	"encoding/json"
	"os/exec"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// applyJSONPatch stands in for kustomize's JSON patches in build: the RFC
// 6902 cases the component uses, and the failures that must stop a build.
func TestApplyJSONPatch(t *testing.T) {
	for _, tc := range []struct {
		name, doc, op, want string // want "" = an error
	}{
		{"add member", `{"a":1}`, `{"op":"add","path":"/b","value":2}`, `{"a":1,"b":2}`},
		{"add replaces a member", `{"a":1}`, `{"op":"add","path":"/a","value":2}`, `{"a":2}`},
		{"append", `{"a":[1,2]}`, `{"op":"add","path":"/a/-","value":3}`, `{"a":[1,2,3]}`},
		{"insert", `{"a":[1,2]}`, `{"op":"add","path":"/a/1","value":9}`, `{"a":[1,9,2]}`},
		{"insert at the end", `{"a":[1,2]}`, `{"op":"add","path":"/a/2","value":9}`, `{"a":[1,2,9]}`},
		{"insert past the end", `{"a":[1,2]}`, `{"op":"add","path":"/a/3","value":9}`, ``},
		{"remove element", `{"a":[1,2,3]}`, `{"op":"remove","path":"/a/1"}`, `{"a":[1,3]}`},
		{"remove member", `{"a":{"b":1,"c":2}}`, `{"op":"remove","path":"/a/b"}`, `{"a":{"c":2}}`},
		{"remove missing", `{"a":{}}`, `{"op":"remove","path":"/a/b"}`, ``},
		{"replace nested", `{"a":[{"p":{"port":"x"}}]}`, `{"op":"replace","path":"/a/0/p/port","value":"y"}`, `{"a":[{"p":{"port":"y"}}]}`},
		{"replace missing", `{"a":{}}`, `{"op":"replace","path":"/a/b","value":1}`, ``},
		{"escaped tokens", `{"a/b":{"c~d":1}}`, `{"op":"replace","path":"/a~1b/c~0d","value":2}`, `{"a/b":{"c~d":2}}`},
		{"test passes", `{"a":[{"name":"x"}]}`, `{"op":"test","path":"/a/0/name","value":"x"}`, `{"a":[{"name":"x"}]}`},
		{"test fails", `{"a":[{"name":"x"}]}`, `{"op":"test","path":"/a/0/name","value":"y"}`, ``},
		{"test missing", `{"a":[]}`, `{"op":"test","path":"/a/0/name","value":"x"}`, ``},
		{"leading zero", `{"a":[1,2]}`, `{"op":"remove","path":"/a/01"}`, ``},
		{"through a scalar", `{"a":1}`, `{"op":"add","path":"/a/b","value":1}`, ``},
		{"root", `{"a":1}`, `{"op":"remove","path":""}`, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var doc any
			var op jsonPatchOp
			if err := json.Unmarshal([]byte(tc.doc), &doc); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.op), &op); err != nil {
				t.Fatal(err)
			}
			got, err := applyJSONPatch(doc, op)
			if tc.want == "" {
				if err == nil {
					t.Errorf("no error, result %v", got)
				}
				return
			}
			var want any
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, %v; want %v", got, err, want)
			}
		})
	}
}

// build agrees with kustomize (kubectl kustomize) on the overlay, where
// kubectl is installed (it is not part of the project's toolchain; the
// strict checks above do not need it).
func TestBuildMatchesKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	out, err := exec.Command(kubectl, "kustomize", builtinOverlayDir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", builtinOverlayDir, err)
	}
	docs, err := splitDocuments(out)
	if err != nil {
		t.Fatal(err)
	}
	kz := map[string]any{}
	for _, d := range docs {
		j, err := yaml.YAMLToJSONStrict(d)
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Kind     string
			Metadata struct{ Name, Namespace string }
		}
		var doc any
		if err := json.Unmarshal(j, &v); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(j, &doc); err != nil {
			t.Fatal(err)
		}
		kz[v.Kind+"/"+v.Metadata.Namespace+"/"+v.Metadata.Name] = doc
	}
	objs := build(t, builtinOverlayDir)
	if len(objs) != len(kz) {
		t.Errorf("build made %d objects, kustomize %d", len(objs), len(kz))
	}
	for _, o := range objs {
		name, ns := objectName(o)
		var doc any
		if err := json.Unmarshal(o.json, &doc); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(kz[o.meta.Kind+"/"+ns+"/"+name], doc); diff != "" {
			t.Errorf("%s differs from kustomize's (-kustomize +build):\n%s", o, diff)
		}
	}
}
