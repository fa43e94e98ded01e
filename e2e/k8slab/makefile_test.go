package k8slab

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestMakefileAttacherVersion: make test decides whether to run the
// Kubernetes lab by the cache entry of the csi-attacher the lab builds.
func TestMakefileAttacherVersion(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(moduleRoot(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^K8S_ATTACHER_VERSION := (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("the Makefile sets no K8S_ATTACHER_VERSION")
	}
	if string(m[1]) != AttacherVersion {
		t.Errorf("Makefile K8S_ATTACHER_VERSION %s, AttacherVersion %s", m[1], AttacherVersion)
	}
}
