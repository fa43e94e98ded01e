package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeGo is a stand-in for the go command that k8s-bins.sh runs (through $GO):
// it answers `env GOARCH`/`env GOVERSION` from $FAKE_ARCH, serves $FAKE_GOMOD
// as k8s.io/kubernetes's go.mod, and "builds" by writing one executable per
// package into the -o directory. Every build is logged to $FAKE_LOG with the
// go.mod of the module it ran in. $FAKE_FAIL makes the build fail half-way.
const fakeGo = `#!/usr/bin/env bash
set -eu
case "$1 ${2:-}" in
"env GOARCH") echo "$FAKE_ARCH"; exit 0 ;;
"env GOVERSION") echo go0.0-fake; exit 0 ;;
"mod download")
	printf '{\n\t"Path": "k8s.io/kubernetes",\n\t"GoMod": "%s",\n\t"Dir": "/nowhere"\n}\n' "$FAKE_GOMOD"
	exit 0 ;;
esac
[ "$1" = build ] || { echo "fake go: unexpected $*" >&2; exit 3; }
shift
out=
pkgs=()
while [ $# -gt 0 ]; do
	case $1 in
	-o) out=$2; shift 2 ;;
	-trimpath) shift ;;
	-ldflags) shift 2 ;;
	*) pkgs+=("$1"); shift ;;
	esac
done
{ echo "build ${pkgs[*]}"; echo "CGO_ENABLED=$CGO_ENABLED"; cat go.mod; echo "--"; } >> "$FAKE_LOG"
for p in "${pkgs[@]}"; do
	printf '#!/bin/sh\n' > "$out/$(basename "$p")"; chmod +x "$out/$(basename "$p")"
	if [ -n "${FAKE_FAIL:-}" ]; then exit 1; fi
done
`

// The parts of a go.mod like k8s.io/kubernetes's that matter: staging
// replaces (to take) next to a replace that is not staging (to leave).
const fakeKubernetesGoMod = `module k8s.io/kubernetes

go 1.26.0

require (
	k8s.io/api v0.0.0
	k8s.io/client-go v0.0.0
)

replace (
	github.com/example/other => github.com/example/other v1.2.3
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	k8s.io/kube-scheduler => ./staging/src/k8s.io/kube-scheduler
)
`

type k8sBinsEnv struct {
	t     *testing.T
	cache string
	log   string
	env   []string
}

func newK8sBinsEnv(t *testing.T) *k8sBinsEnv {
	dir := t.TempDir()
	goBin := filepath.Join(dir, "go")
	if err := os.WriteFile(goBin, []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	gomod := filepath.Join(dir, "kubernetes.mod")
	if err := os.WriteFile(gomod, []byte(fakeKubernetesGoMod), 0o644); err != nil {
		t.Fatal(err)
	}
	e := &k8sBinsEnv{t: t, cache: filepath.Join(dir, "cache"), log: filepath.Join(dir, "builds.log")}
	e.env = append(os.Environ(), "GO="+goBin, "FAKE_GOMOD="+gomod, "FAKE_LOG="+e.log,
		"RDS_CSI_LAB_CACHE="+e.cache, "RDS_CSI_K8S_VERSION=", "FAKE_ARCH=amd64")
	return e
}

// run runs k8s-bins.sh with extra environment and arguments; it returns the
// directory printed and the error.
func (e *k8sBinsEnv) run(env []string, args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{filepath.Join(labDir(), "k8s-bins.sh")}, args...)...)
	cmd.Env = append(slices.Clone(e.env), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		e.t.Logf("k8s-bins.sh %v: %v\n%s", args, err, stderr.String())
	}
	return strings.TrimSpace(string(out)), err
}

// builds returns the builds logged so far.
func (e *k8sBinsEnv) builds() []string {
	b, err := os.ReadFile(e.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	parts := strings.Split(string(b), "--\n")
	return parts[:len(parts)-1]
}

var k8sBins = []string{"kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

func checkK8sDir(t *testing.T, dir string) {
	t.Helper()
	for _, f := range append([]string{"ready"}, k8sBins...) {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", dir, err)
		}
	}
}

func TestK8sBinsCache(t *testing.T) {
	e := newK8sBinsEnv(t)

	// Cold: one build of the four commands, keyed on version and arch.
	dir, err := e.run(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(e.cache, "kubernetes-v1.37.2-amd64"); dir != want {
		t.Fatalf("dir %q, want %q", dir, want)
	}
	checkK8sDir(t, dir)
	builds := e.builds()
	if len(builds) != 1 {
		t.Fatalf("%d builds, want 1", len(builds))
	}
	b := builds[0]
	for _, want := range []string{
		"build k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler\n",
		"CGO_ENABLED=0\n",
		"require k8s.io/kubernetes v1.37.2\n",
		"replace k8s.io/api => k8s.io/api v0.37.2\n",
		"replace k8s.io/client-go => k8s.io/client-go v0.37.2\n",
		"replace k8s.io/kube-scheduler => k8s.io/kube-scheduler v0.37.2\n",
	} {
		if !strings.Contains(b, want) {
			t.Errorf("build lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "example/other") || strings.Contains(b, "./staging") {
		t.Errorf("build's go.mod takes more than the staging modules:\n%s", b)
	}

	// Warm: the same directory, no build.
	if again, err := e.run(nil); err != nil || again != dir {
		t.Fatalf("second run: %q, %v; want %q", again, err, dir)
	}
	if n := len(e.builds()); n != 1 {
		t.Fatalf("second run built again (%d builds)", n)
	}

	// Another version (argument or RDS_CSI_K8S_VERSION), another arch: each its own entry.
	other, err := e.run(nil, "v1.36.4")
	if err != nil || other != filepath.Join(e.cache, "kubernetes-v1.36.4-amd64") {
		t.Fatalf("v1.36.4: %q, %v", other, err)
	}
	if b := e.builds()[1]; !strings.Contains(b, "require k8s.io/kubernetes v1.36.4\n") || !strings.Contains(b, "k8s.io/api v0.36.4\n") {
		t.Errorf("v1.36.4 build:\n%s", b)
	}
	if d, err := e.run([]string{"RDS_CSI_K8S_VERSION=v1.36.4"}); err != nil || d != other {
		t.Fatalf("RDS_CSI_K8S_VERSION=v1.36.4: %q, %v", d, err)
	}
	arm, err := e.run([]string{"FAKE_ARCH=arm64"})
	if err != nil || arm != filepath.Join(e.cache, "kubernetes-v1.37.2-arm64") {
		t.Fatalf("arm64: %q, %v", arm, err)
	}
	if n := len(e.builds()); n != 3 {
		t.Fatalf("%d builds after v1.36.4 twice and arm64, want 3", n)
	}
	checkK8sDir(t, dir) // the first entry is untouched
}

func TestK8sBinsFailedBuildLeavesNothing(t *testing.T) {
	e := newK8sBinsEnv(t)
	if _, err := e.run([]string{"FAKE_FAIL=1"}); err == nil {
		t.Fatal("a failed build succeeded")
	}
	ents, err := os.ReadDir(e.cache)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != ".kubernetes-v1.37.2-amd64.lock" { // the lock stays, empty
			t.Fatalf("a failed build left %s in the cache", e.Name())
		}
	}
	// A half-built entry (no ready file) is built again, not used.
	half := filepath.Join(e.cache, "kubernetes-v1.37.2-amd64")
	if err := os.MkdirAll(half, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(half, "kubelet"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := e.run(nil)
	if err != nil || dir != half {
		t.Fatalf("%q, %v", dir, err)
	}
	checkK8sDir(t, dir)
	if n := len(e.builds()); n != 2 {
		t.Fatalf("%d builds, want 2 (the failed one and the rebuild)", n)
	}
}

func TestK8sBinsRefusesBadVersions(t *testing.T) {
	e := newK8sBinsEnv(t)
	for _, v := range []string{"latest", "1.37.2", "v1.37", "v1.37.2-rc.0", "v1.37.2/../../x", "v2.0.0", "v1.37.2 "} {
		if _, err := e.run(nil, v); err == nil {
			t.Errorf("version %q accepted", v)
		}
	}
	if n := len(e.builds()); n != 0 {
		t.Fatalf("%d builds for bad versions", n)
	}
	if _, err := os.Stat(e.cache); !os.IsNotExist(err) {
		t.Fatalf("bad versions touched the cache: %v", err)
	}
}
