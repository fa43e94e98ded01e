package k8slab

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The Makefile names the sidecars' versions for make k8s-deps (which builds
// them) and for make test (which runs the Kubernetes lab only when they are
// cached); they are this package's constants.
func TestMakefileSidecarVersions(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(moduleRoot(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ variable, want string }{
		{"K8S_ATTACHER_VERSION", AttacherVersion},
		{"K8S_PROVISIONER_VERSION", ProvisionerVersion},
		{"K8S_RESIZER_VERSION", ResizerVersion},
	} {
		t.Run(tc.variable, func(t *testing.T) {
			m := regexp.MustCompile(`(?m)^` + tc.variable + ` := (\S+)$`).FindSubmatch(b)
			if m == nil {
				t.Fatalf("the Makefile sets no %s", tc.variable)
			}
			if string(m[1]) != tc.want {
				t.Errorf("Makefile %s %s, the Go constant %s", tc.variable, m[1], tc.want)
			}
		})
	}
}

// make k8s-deps builds each sidecar as BuildImages does, and make test's
// gate (K8S_CACHED) waits for the Kubernetes binaries and exactly the cache
// entries those builds make.
func TestMakefileSidecarRecipes(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skipf("no make: %v", err)
	}
	cache := t.TempDir()
	recipe := makeOutput(t, cache, "-n", "k8s-deps")
	for _, s := range sidecars {
		want := "bash e2e/lab/k8s-sidecar.sh " + s.Cmd + " " + s.Module + " " + s.Version + "\n"
		if !strings.Contains(recipe, want) {
			t.Errorf("make k8s-deps does not run %q:\n%s", want, recipe)
		}
	}

	got := strings.Fields(makeVar(t, cache, "K8S_CACHED"))
	want := []string{filepath.Join(cache, "kubernetes-"+makeVar(t, cache, "K8S_VERSION")+"-"+runtime.GOARCH, "ready")}
	for _, s := range sidecars {
		want = append(want, filepath.Join(cache, s.Cmd+"-"+s.Version+"-"+runtime.GOARCH, "ready"))
	}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("K8S_CACHED (-want +got):\n%s", diff)
	}
}

// makeOutput runs make in the repository with the lab cache at cache and
// returns its output.
func makeOutput(t *testing.T, cache string, args ...string) string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"--no-print-directory", "-C", moduleRoot()}, args...)...)
	// Not the flags of a make that runs this test (make test).
	cmd.Env = append(os.Environ(), "RDS_CSI_LAB_CACHE="+cache, "MAKEFLAGS=", "MAKELEVEL=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// makeVar is the value the Makefile gives variable.
func makeVar(t *testing.T, cache, variable string) string {
	t.Helper()
	return strings.TrimSpace(makeOutput(t, cache, "-s", "--eval", "k8slab-print-var: ; @echo $("+variable+")", "k8slab-print-var"))
}
