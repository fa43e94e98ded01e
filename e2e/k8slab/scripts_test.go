package k8slab

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeSidecarGo stands in for the go command k8s-sidecar.sh runs (through
// $GO): `mod download -json` points at $FAKE_SRC as the module's source;
// `build` logs its directory's go.mod and environment to $FAKE_LOG and writes
// the -o file ($FAKE_FAIL: fails instead).
const fakeSidecarGo = `#!/usr/bin/env bash
set -eu
case "$1 ${2:-}" in
"env GOARCH") echo amd64; exit 0 ;;
"env GOVERSION") echo go0.0-fake; exit 0 ;;
"mod download") printf '{\n\t"Path": "%s",\n\t"Dir": "%s",\n\t"GoMod": "/x"\n}\n' "${@: -1}" "$FAKE_SRC"; exit 0 ;;
esac
[ "$1" = build ] || { echo "fake go: unexpected $*" >&2; exit 3; }
out=
for ((i = 1; i <= $#; i++)); do [ "${!i}" = -o ] && { j=$((i + 1)); out=${!j}; }; done
{ echo "build ${*: -1} in $(head -1 go.mod)"; echo "CGO_ENABLED=$CGO_ENABLED GOARCH=$GOARCH"; echo "args $*"; echo "--"; } >>"$FAKE_LOG"
[ -z "${FAKE_FAIL:-}" ] || exit 1
printf '#!/bin/sh\n' >"$out"
chmod +x "$out"
`

func runScript(t *testing.T, env []string, script string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join(moduleRoot(), "e2e", "lab", script)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Logf("%s %v: %v\n%s", script, args, err, stderr.String())
	}
	return strings.TrimSpace(string(out)), err
}

func TestSidecarScriptCache(t *testing.T) {
	dir := t.TempDir()
	goBin := filepath.Join(dir, "go")
	if err := os.WriteFile(goBin, []byte(fakeSidecarGo), 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "cmd", "csi-attacher"), 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module github.com/kubernetes-csi/external-attacher/v4\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	cache, log := filepath.Join(dir, "cache"), filepath.Join(dir, "builds.log")
	env := []string{"GO=" + goBin, "FAKE_SRC=" + src, "FAKE_LOG=" + log, "RDS_CSI_LAB_CACHE=" + cache}
	args := []string{attacher.Cmd, attacher.Module, attacher.Version}
	builds := func() []string {
		b, err := os.ReadFile(log)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(string(b), "--\n")
		return parts[:len(parts)-1]
	}

	// A failed build leaves no entry.
	if _, err := runScript(t, append(slices.Clone(env), "FAKE_FAIL=1"), "k8s-sidecar.sh", args...); err == nil {
		t.Fatal("a failed build succeeded")
	}
	if ents, _ := filepath.Glob(filepath.Join(cache, "csi-attacher-*")); len(ents) > 0 {
		t.Fatalf("a failed build left %q", ents)
	}
	if ents, _ := filepath.Glob(filepath.Join(cache, ".tmp.*")); len(ents) > 0 {
		t.Fatalf("a failed build left %q", ents)
	}

	// Cold: the module's own main module builds ./cmd/csi-attacher statically.
	out, err := runScript(t, env, "k8s-sidecar.sh", args...)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "csi-attacher-"+AttacherVersion+"-amd64"); out != want {
		t.Fatalf("dir %q, want %q", out, want)
	}
	for _, f := range []string{"ready", "csi-attacher", "build-info"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	b := builds()
	if len(b) != 2 {
		t.Fatalf("%d builds, want 2 (the failed one and this)", len(b))
	}
	for _, want := range []string{
		"build ./cmd/csi-attacher in module github.com/kubernetes-csi/external-attacher/v4\n",
		"CGO_ENABLED=0 GOARCH=amd64\n",
		"-trimpath", "-X main.version=" + AttacherVersion,
	} {
		if !strings.Contains(b[1], want) {
			t.Errorf("build lacks %q:\n%s", want, b[1])
		}
	}

	// Warm: the same directory, no build.
	if again, err := runScript(t, env, "k8s-sidecar.sh", args...); err != nil || again != out {
		t.Fatalf("second run: %q, %v; want %q", again, err, out)
	}
	if n := len(builds()); n != 2 {
		t.Fatalf("the second run built again (%d builds)", n)
	}

	// A module without the command: no entry.
	if _, err := runScript(t, env, "k8s-sidecar.sh", "csi-resizer", attacher.Module, attacher.Version); exitCode(err) != 1 {
		t.Errorf("a command the module lacks: %v, want exit status 1", err)
	}
	if ents, _ := filepath.Glob(filepath.Join(cache, "csi-resizer-*")); len(ents) > 0 {
		t.Errorf("a module without the command left %q", ents)
	}
}

// k8s-sidecar.sh takes only names it can safely put on a command line and in
// a path, and versions of the module's major version; it rejects others
// before touching the cache.
func TestSidecarScriptRejects(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "cache")
	const mod = "github.com/kubernetes-csi/external-attacher/v4"
	for _, args := range [][]string{
		{},
		{"csi-attacher", mod},
		{"csi-attacher", mod, "v4.13.0", "extra"},
		{"attacher", mod, "v4.13.0"},
		{"csi-../x", mod, "v4.13.0"},
		{"csi-attacher", "github.com/kubernetes-csi/external-attacher", "v1.0.0"},
		{"csi-attacher", "github.com/evil/external-attacher/v4", "v4.13.0"},
		{"csi-attacher", "github.com/kubernetes-csi/../x/v4", "v4.13.0"},
		{"csi-attacher", mod, "v5.0.0"},
		{"csi-attacher", mod, "v4.13"},
		{"csi-attacher", mod, "../v4.1.1"},
		{"csi-attacher", mod, "master"},
		{"csi-attacher", mod, "v4.13.0-rc.1"},
	} {
		if _, err := runScript(t, []string{"GO=false", "RDS_CSI_LAB_CACHE=" + cache}, "k8s-sidecar.sh", args...); exitCode(err) != 2 {
			t.Errorf("%q: %v, want exit status 2", args, err)
		}
	}
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Errorf("the cache was touched: %v", err)
	}
}

// k8s-plugin-root.sh takes only names it can safely put on a command line
// and in a path; it rejects others before touching the cache.
func TestPluginRootScriptRejects(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "cache")
	for _, args := range [][]string{
		{"bookworm"},
		{"bookworm-slim", "mount"},
		{"bookworm", "mount", "$(reboot)"},
		{"bookworm", "../mount"},
		{"bookworm", "-y"},
	} {
		if _, err := runScript(t, []string{"RDS_CSI_LAB_CACHE=" + cache}, "k8s-plugin-root.sh", args...); exitCode(err) != 2 {
			t.Errorf("%q: %v, want exit status 2", args, err)
		}
	}
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Errorf("the cache was touched: %v", err)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
