package k8slab

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The plugin image installs exactly the runtime stage's packages. The build
// reads them with ParseRuntimeStage; this reads them a second, independent
// way from the same Dockerfile: deploy/image_test.go requires a comment
// "# PACKAGE: why" before each package line, so the comments name them too.
func TestPluginPackagesFollowDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(moduleRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseRuntimeStage(string(data))
	if err != nil {
		t.Fatal(err)
	}
	if got.Suite != "bookworm" {
		t.Errorf("suite %q, want bookworm (the Dockerfile's runtime FROM debian:bookworm-slim)", got.Suite)
	}

	lines := strings.Split(string(data), "\n")
	from := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "FROM debian:") })
	if from < 0 {
		t.Fatal("Dockerfile: no FROM debian: line")
	}
	reason := regexp.MustCompile(`^\s*#\s*([a-z0-9][a-z0-9.+-]+):\s`)
	var commented []string
	for i, l := range lines[from:] {
		m := reason.FindStringSubmatch(l)
		if m == nil || from+i+1 >= len(lines) {
			continue
		}
		if next := strings.Trim(strings.TrimSpace(lines[from+i+1]), `\ `); next == m[1] {
			commented = append(commented, m[1])
		}
	}
	if diff := cmp.Diff(commented, got.Packages); diff != "" {
		t.Errorf("packages (-commented in the Dockerfile +parsed for the image):\n%s", diff)
	}
	for _, want := range []string{"mount", "util-linux", "e2fsprogs", "xfsprogs"} {
		if !slices.Contains(got.Packages, want) {
			t.Errorf("packages %q lack %s", got.Packages, want)
		}
	}
}

func TestParseRuntimeStage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    RuntimeStage
		wantErr string
	}{
		{
			name: "comments inside the continuation",
			in: "ARG V=1\nFROM golang:1 AS build\nRUN apt-get install -y gcc\nFROM debian:bookworm-slim\n" +
				"RUN apt-get update \\\n\t&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\\n" +
				"\t# mount: why\n\tmount \\\n\t# util-linux: why\n\tutil-linux \\\n\t&& rm -rf /var/lib/apt/lists/*\n" +
				"ENTRYPOINT [\"/x\"]\n",
			want: RuntimeStage{Suite: "bookworm", Packages: []string{"mount", "util-linux"}},
		},
		{
			name: "two installs, options with values, a digest",
			in: "FROM --platform=linux/amd64 debian:trixie@sha256:" + strings.Repeat("ab", 32) + "\n" +
				"RUN apt-get -o Dpkg::Options::=--force-confold install -y a1 b.2+c; apt-get install d-e\n" +
				"RUN apt-get update && apt-get -q remove f\n",
			want: RuntimeStage{Suite: "trixie", Packages: []string{"a1", "b.2+c", "d-e"}},
		},
		{name: "no FROM", in: "RUN apt-get install x\n", wantErr: "no FROM"},
		{name: "not Debian", in: "FROM alpine:3\nRUN apk add xfsprogs\n", wantErr: "want debian:SUITE"},
		{name: "no packages", in: "FROM debian:bookworm\nRUN apt-get update\n", wantErr: "installs no package"},
		{name: "a variable", in: "FROM debian:bookworm\nRUN apt-get install -y $PKGS\n", wantErr: `"$PKGS": not a Debian package name`},
		{name: "a pinned version", in: "FROM debian:bookworm\nRUN apt-get install -y xfsprogs=6.1.0-1\n", wantErr: "not a Debian package name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRuntimeStage(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseRuntimeStage(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join(moduleRoot(), "Dockerfile")); err == nil {
		f.Add(string(data))
	}
	f.Add("FROM debian:bookworm\nRUN apt-get install -y a \\\n# c\n b; apt-get install c\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseRuntimeStage(in)
		if err != nil {
			return
		}
		if got.Suite == "" || len(got.Packages) == 0 {
			t.Fatalf("no error but %+v", got)
		}
		for _, p := range got.Packages {
			if !debianName.MatchString(p) {
				t.Fatalf("package %q is not a Debian package name", p)
			}
		}
	})
}

func TestBusyboxTree(t *testing.T) {
	tree, err := busyboxTree("/host/busybox", []string{"bin/sh", "usr/bin/sha256sum", "bin/busybox", "linuxrc", "bin/sh", "../etc/x"})
	if err != nil {
		t.Fatal(err)
	}
	want := fileTree{
		{Path: "/bin", Mode: fs.ModeDir | 0o755},
		{Path: "/etc", Mode: fs.ModeDir | 0o755},
		{Path: "/root", Mode: fs.ModeDir | 0o700},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "/usr", Mode: fs.ModeDir | 0o755},
		{Path: "/usr/bin", Mode: fs.ModeDir | 0o755},
		{Path: "/bin/busybox", Mode: 0o755, Src: "/host/busybox"},
		{Path: "/bin/sh", Mode: fs.ModeSymlink | 0o777, Link: "/bin/busybox"},
		{Path: "/linuxrc", Mode: fs.ModeSymlink | 0o777, Link: "/bin/busybox"},
		{Path: "/usr/bin/sha256sum", Mode: fs.ModeSymlink | 0o777, Link: "/bin/busybox"},
	}
	if diff := cmp.Diff(want, tree); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := busyboxTree("/b", []string{"bin/ls"}); err == nil || !strings.Contains(err.Error(), "no sh applet") {
		t.Errorf("without sh: error %v, want no sh applet", err)
	}
}

// tarEntry is what the tests compare of a layer's tar entry.
type tarEntry struct {
	Name     string
	Type     byte
	Mode     int64
	UID, GID int
	Link     string
	Content  string
}

// ociArchive is an archive read back: its files by name.
type ociArchive map[string][]byte

func readOCIArchive(t *testing.T, file string) ociArchive {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := ociArchive{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return a
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeDir {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		a[hdr.Name] = data
	}
}

// blob returns a descriptor's blob after checking its digest and size.
func (a ociArchive) blob(t *testing.T, d descriptor) []byte {
	t.Helper()
	hx, ok := strings.CutPrefix(d.Digest, "sha256:")
	if !ok {
		t.Fatalf("digest %q is not sha256", d.Digest)
	}
	data, ok := a["blobs/sha256/"+hx]
	if !ok {
		t.Fatalf("no blob %s", d.Digest)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != hx {
		t.Fatalf("blob %s has digest %s", hx, got)
	}
	if int64(len(data)) != d.Size {
		t.Fatalf("blob %s: %d bytes, descriptor says %d", hx, len(data), d.Size)
	}
	return data
}

func (a ociArchive) json(t *testing.T, d descriptor, v any) {
	t.Helper()
	if err := json.Unmarshal(a.blob(t, d), v); err != nil {
		t.Fatalf("blob %s: %v", d.Digest, err)
	}
}

func layerEntries(t *testing.T, data []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{Name: hdr.Name, Type: hdr.Typeflag, Mode: hdr.Mode, UID: hdr.Uid, GID: hdr.Gid, Link: hdr.Linkname, Content: string(content)})
	}
}

// An archive is an OCI layout that containerd's importer names after
// spec.Name: every blob matches its digest and size, the config's diff ids
// are the layers', the layers hold the trees as given.
func TestWriteOCIArchive(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"usr/bin", "etc", "empty"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, content string, mode fs.FileMode) {
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(root, p), mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	write("usr/bin/tool", "#!/bin/sh\n", 0o755)
	write("etc/conf", "a=1\n", 0o600)
	if err := os.Link(filepath.Join(root, "usr/bin/tool"), filepath.Join(root, "usr/bin/tool2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	hostFile := filepath.Join(dir, "extra")
	if err := os.WriteFile(hostFile, []byte("extra"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := imageSpec{
		Name: "rds-csi.lab/test:lab",
		Layers: []layer{
			dirTree{Root: root},
			fileTree{
				{Path: "/usr/local", Mode: fs.ModeDir | 0o755},
				{Path: "/usr/local/extra", Mode: fs.ModeSetuid | 0o755, Src: hostFile},
				{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
				{Path: "/sh", Mode: fs.ModeSymlink | 0o777, Link: "/usr/bin/tool"},
			},
		},
		Entrypoint: []string{"/usr/bin/tool"},
		Env:        []string{"A=b"},
	}
	archive := filepath.Join(dir, "out", "test.oci.tar")
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeOCIArchive(archive, spec); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "out", ".*")); len(left) > 0 {
		t.Errorf("temporary files left beside the archive: %q", left)
	}
	a := readOCIArchive(t, archive)

	if got := string(a["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout %q", got)
	}
	var idx index
	if err := json.Unmarshal(a["index.json"], &idx); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("index has %d manifests, want 1", len(idx.Manifests))
	}
	md := idx.Manifests[0]
	wantAnn := map[string]string{annotationRefName: spec.Name, annotationImageName: spec.Name}
	if diff := cmp.Diff(wantAnn, md.Annotations); diff != "" {
		t.Errorf("manifest annotations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&platform{Architecture: runtime.GOARCH, OS: "linux"}, md.Platform); diff != "" {
		t.Errorf("platform (-want +got):\n%s", diff)
	}
	var man manifest
	a.json(t, md, &man)
	if man.MediaType != mediaTypeManifest || man.Config.MediaType != mediaTypeConfig || len(man.Layers) != 2 {
		t.Fatalf("manifest %+v", man)
	}
	var cfg imageConfig
	a.json(t, man.Config, &cfg)
	wantCfg := containerConfig{Entrypoint: spec.Entrypoint, Env: []string{defaultPath, "A=b"}, WorkingDir: "/"}
	if diff := cmp.Diff(wantCfg, cfg.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	var layerDigests []string
	for _, l := range man.Layers {
		layerDigests = append(layerDigests, l.Digest)
		if l.MediaType != mediaTypeLayer {
			t.Errorf("layer media type %s", l.MediaType)
		}
	}
	if diff := cmp.Diff(rootFS{Type: "layers", DiffIDs: layerDigests}, cfg.RootFS); diff != "" {
		t.Errorf("rootfs (-want +got):\n%s", diff)
	}
	if cfg.Architecture != runtime.GOARCH || cfg.OS != "linux" {
		t.Errorf("config platform %s/%s", cfg.OS, cfg.Architecture)
	}

	uid, gid := os.Getuid(), os.Getgid()
	wantRoot := []tarEntry{
		{Name: "bin", Type: tar.TypeSymlink, Mode: 0o777, UID: uid, GID: gid, Link: "usr/bin"},
		{Name: "empty/", Type: tar.TypeDir, Mode: 0o755, UID: uid, GID: gid},
		{Name: "etc/", Type: tar.TypeDir, Mode: 0o755, UID: uid, GID: gid},
		{Name: "etc/conf", Type: tar.TypeReg, Mode: 0o600, UID: uid, GID: gid, Content: "a=1\n"},
		{Name: "usr/", Type: tar.TypeDir, Mode: 0o755, UID: uid, GID: gid},
		{Name: "usr/bin/", Type: tar.TypeDir, Mode: 0o755, UID: uid, GID: gid},
		{Name: "usr/bin/tool", Type: tar.TypeReg, Mode: 0o755, UID: uid, GID: gid, Content: "#!/bin/sh\n"},
		{Name: "usr/bin/tool2", Type: tar.TypeLink, Mode: 0o755, UID: uid, GID: gid, Link: "usr/bin/tool"},
	}
	if diff := cmp.Diff(wantRoot, layerEntries(t, a.blob(t, man.Layers[0]))); diff != "" {
		t.Errorf("directory layer (-want +got):\n%s", diff)
	}
	wantFiles := []tarEntry{
		{Name: "usr/local/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "usr/local/extra", Type: tar.TypeReg, Mode: 0o4755, Content: "extra"},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "sh", Type: tar.TypeSymlink, Mode: 0o777, Link: "/usr/bin/tool"},
	}
	if diff := cmp.Diff(wantFiles, layerEntries(t, a.blob(t, man.Layers[1]))); diff != "" {
		t.Errorf("file layer (-want +got):\n%s", diff)
	}

	// The same inputs give the same archive.
	again := filepath.Join(dir, "out", "again.oci.tar")
	if err := writeOCIArchive(again, spec); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(archive)
	b2, _ := os.ReadFile(again)
	if !bytes.Equal(b1, b2) {
		t.Error("writing the same image twice gave different archives")
	}
}

func TestFileTreeRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry treeEntry
		want  string
	}{
		{"outside the root", treeEntry{Path: "../x", Mode: 0o644, Src: "/dev/null"}, "not a path inside the image"},
		{"the root itself", treeEntry{Path: "/", Mode: fs.ModeDir | 0o755}, "not a path inside the image"},
		{"not a regular file", treeEntry{Path: "/x", Mode: 0o644, Src: "/dev/null"}, "not a regular file"},
		{"a device", treeEntry{Path: "/x", Mode: fs.ModeDevice | 0o644}, "unsupported mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fileTree{tc.entry}.writeTar(tar.NewWriter(io.Discard))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestImageRef(t *testing.T) {
	for name, want := range map[string]string{"pause": "rds-csi.lab/pause:lab", "plugin": "rds-csi.lab/plugin:lab"} {
		if got := imageRef(name); got != want {
			t.Errorf("imageRef(%q) = %q, want %q", name, got, want)
		}
	}
}

// What k8s.io/mount-utils runs, where bookworm's merged /usr puts it.
var pluginTools = []string{
	"usr/bin/mount", "usr/bin/umount", "usr/sbin/blkid", "usr/sbin/fsck", "usr/sbin/blockdev",
	"usr/sbin/mkfs.ext4", "usr/sbin/e2fsck", "usr/sbin/resize2fs",
	"usr/sbin/mkfs.xfs", "usr/sbin/xfs_repair", "usr/sbin/xfs_growfs",
	"usr/local/bin/rds-csi",
}

// TestIntegrationBuildImages builds the four images (debootstrap and the Go
// module proxy when not cached) and, when it can start a throwaway
// containerd on this host, imports them with ctr as the node does and runs
// each one.
func TestIntegrationBuildImages(t *testing.T) {
	if os.Getenv("RDS_CSI_K8S") != "1" {
		t.Skip("set RDS_CSI_K8S=1 to build the lab's images (needs root, the Debian mirror and the Go module proxy; minutes when not cached)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	imgs, err := BuildImages(ctx, t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	all := []Image{imgs.Pause, imgs.App, imgs.Plugin, imgs.Attacher}
	entrypoints := map[string][]string{
		imgs.Pause.Name:    {"/pause"},
		imgs.App.Name:      nil, // Cmd sh
		imgs.Plugin.Name:   {"/usr/local/bin/rds-csi"},
		imgs.Attacher.Name: {"/csi-attacher"},
	}
	for _, img := range all {
		ref, cfg := archiveImage(t, img.Archive)
		if ref != img.Name {
			t.Errorf("%s: index names %q", img.Archive, ref)
		}
		if diff := cmp.Diff(entrypoints[img.Name], cfg.Entrypoint); diff != "" {
			t.Errorf("%s: entrypoint (-want +got):\n%s", img.Name, diff)
		}
	}
	files := archiveFiles(t, imgs.Plugin.Archive)
	for _, f := range pluginTools {
		if !files[f] {
			t.Errorf("the plugin image has no %s", f)
		}
	}

	c := startContainerd(t)
	for _, img := range all {
		c.ctr(t, "images", "import", img.Archive)
	}
	var want []string
	for _, img := range all {
		want = append(want, img.Name)
	}
	got := strings.Fields(c.ctr(t, "images", "ls", "-q"))
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("imported image names (-want +got):\n%s", diff)
	}

	// Each image runs: busybox writes and hashes a file, the plugin and the
	// attacher print their versions, the plugin's tools run, pause ends on
	// SIGTERM. (ctr run's arguments replace the entrypoint too.)
	out := c.ctr(t, "run", "--rm", imgs.App.Name, "app", "sh", "-c", "echo lab > /tmp/f && sync && sha256sum /tmp/f")
	sum := sha256.Sum256([]byte("lab\n"))
	if want := hex.EncodeToString(sum[:]) + "  /tmp/f"; !strings.Contains(out, want) {
		t.Errorf("app: %q", out)
	}
	if out := c.ctr(t, "run", "--rm", imgs.Plugin.Name, "plugin", "/usr/local/bin/rds-csi", "--version"); !strings.HasPrefix(out, "rds-csi ") {
		t.Errorf("plugin --version: %q", out)
	}
	if out := c.ctr(t, "run", "--rm", imgs.Attacher.Name, "attacher", "/csi-attacher", "--version"); !strings.Contains(out, AttacherVersion) {
		t.Errorf("attacher --version: %q", out)
	}
	tools := c.ctr(t, "run", "--rm", imgs.Plugin.Name, "tools", "sh", "-c",
		"mkfs.xfs -V && mke2fs -V 2>&1 && blkid -V && mount -V && xfs_growfs -V && resize2fs 2>&1 | head -1")
	for _, want := range []string{"mkfs.xfs version", "mke2fs 1.", "blkid from util-linux", "mount from util-linux", "xfs_growfs version", "resize2fs 1."} {
		if !strings.Contains(tools, want) {
			t.Errorf("the plugin's tools: no %q in\n%s", want, tools)
		}
	}
	c.ctr(t, "run", "-d", imgs.Pause.Name, "pause")
	c.ctr(t, "task", "kill", "-s", "SIGTERM", "pause")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.ctr(t, "task", "ls"), "STOPPED") {
		if time.Now().After(deadline) {
			t.Fatal("pause did not stop on SIGTERM")
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.ctr(t, "task", "rm", "pause")
	c.ctr(t, "containers", "rm", "pause")
}

// archiveImage is the name the archive's index gives its one manifest, and
// that manifest's image configuration.
func archiveImage(t *testing.T, archive string) (string, containerConfig) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	small := ociArchive{} // index, manifests and configs; not the layers
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Size > 1<<16 {
			continue
		}
		if small[hdr.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
	var idx index
	if err := json.Unmarshal(small["index.json"], &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("%s: index.json: %v, %d manifests, want 1", archive, err, len(idx.Manifests))
	}
	var man manifest
	small.json(t, idx.Manifests[0], &man)
	var cfg imageConfig
	small.json(t, man.Config, &cfg)
	return idx.Manifests[0].Annotations[annotationRefName], cfg.Config
}

// archiveFiles are the paths in all the layers of an archive (read without
// keeping the archive in memory).
func archiveFiles(t *testing.T, archive string) map[string]bool {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(hdr.Name, "blobs/sha256/") || hdr.Size < 2048 {
			continue // manifests and configs are small; layers are not
		}
		lr := tar.NewReader(tr)
		for {
			lh, err := lr.Next()
			if err != nil {
				break // not a tar (a config), or its end
			}
			files[strings.TrimSuffix(lh.Name, "/")] = true
		}
	}
}

// containerd is a throwaway containerd on this host, in a temporary
// directory, stopped when the test ends.
type containerd struct {
	address string
}

func startContainerd(t *testing.T) *containerd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the import check starts a containerd, which needs root")
	}
	for _, bin := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("the import check needs %s (apt-get install containerd): %v", bin, err)
		}
	}
	dir, err := os.MkdirTemp("", "k8slab-containerd-") // short: the socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	c := &containerd{address: filepath.Join(dir, "containerd.sock")}
	config := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"+
		"[grpc]\n  address = %q\n[ttrpc]\n  address = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.address, c.address+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logFile.Close()
		if t.Failed() {
			if log, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("containerd log:\n%s", tail(string(log), 30))
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing the containerd directory: %v", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := exec.Command("ctr", "--address", c.address, "version").CombinedOutput(); err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s within 30 s", c.address)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ctr runs ctr in the k8s.io namespace (the kubelet's) and returns its output.
func (c *containerd) ctr(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.address, "-n", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// When ctx ends, run stops the command's whole process group, the
// children it started in the background included.
func TestRunStopsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			if data, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(data), "\n") {
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	_, err := run(ctx, "", nil, "bash", "-c", `sleep 100 & echo $! > "$0.tmp"; mv "$0.tmp" "$0"; wait`, pidFile)
	if err == nil {
		t.Fatal("a cancelled command succeeded")
	}
	data, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid <= 1 {
		t.Fatalf("pid file %q", data)
	}
	// The background sleep dies: gone, or a zombie waiting for init. The
	// SIGKILL to its group is sent when run returns, but the kernel may
	// not have finished the process yet (seen: state R just after), so
	// this waits for it, for much longer than a kill takes; a sleep that
	// the kill missed would run for 100 s.
	var stat []byte
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var serr error
		if stat, serr = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); serr != nil {
			return
		}
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && bytes.HasPrefix(stat[i+1:], []byte(" Z")) {
			return
		}
	}
	t.Errorf("the background child %d outlived run: %s", pid, stat)
}
