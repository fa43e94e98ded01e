package k8slab

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The lab's images carry names under a registry that does not exist: the
// node imports them (ctr -n k8s.io images import) and pods never pull
// (imagePullPolicy: Never).
const (
	ImageRegistry = "rds-csi.lab"
	ImageTag      = "lab"
)

// The kubernetes-csi sidecars the lab runs beside the plugin's controller,
// built from the Go module proxy. Each is the version
// deploy/kubernetes/controller.yaml names, except csi-resizer: the proxy does
// not serve that one's v2.2.1, so the lab runs the newest it does serve.
const (
	AttacherVersion    = "v4.13.0" // csi-attacher, kubernetes-csi/external-attacher
	ProvisionerVersion = "v6.3.0"  // csi-provisioner, kubernetes-csi/external-provisioner
	ResizerVersion     = "v2.3.0"  // csi-resizer, kubernetes-csi/external-resizer
)

// A sidecar is the command ./cmd/<Cmd> of a kubernetes-csi module, built once
// and cached by e2e/lab/k8s-sidecar.sh, and put in its image at /<Cmd>.
type sidecar struct {
	Cmd     string // e.g. "csi-attacher"
	Module  string // e.g. "github.com/kubernetes-csi/external-attacher/v4"
	Version string
}

var (
	attacher    = sidecar{"csi-attacher", "github.com/kubernetes-csi/external-attacher/v4", AttacherVersion}
	provisioner = sidecar{"csi-provisioner", "github.com/kubernetes-csi/external-provisioner/v6", ProvisionerVersion}
	resizer     = sidecar{"csi-resizer", "github.com/kubernetes-csi/external-resizer/v2", ResizerVersion}
	// sidecars are the ones the lab builds, as the Makefile's k8s-deps does.
	sidecars = []sidecar{attacher, provisioner, resizer}
)

// Image is one of the lab's container images, written as an OCI image layout
// in a tar archive.
type Image struct {
	Name    string // e.g. "rds-csi.lab/plugin:lab"
	Archive string // path of the OCI tar
}

// Images are the lab's container images.
type Images struct {
	Pause       Image // the pod sandbox (containerd's sandbox_image): /pause
	App         Image // busybox, for test pods that write and read files
	Plugin      Image // rds-csi, as the Dockerfile builds it
	Attacher    Image // csi-attacher AttacherVersion: /csi-attacher
	Provisioner Image // csi-provisioner ProvisionerVersion: /csi-provisioner
	Resizer     Image // csi-resizer ResizerVersion: /csi-resizer
}

// All are the images, in the order BuildImages builds them.
func (i Images) All() []Image {
	return []Image{i.Pause, i.App, i.Plugin, i.Attacher, i.Provisioner, i.Resizer}
}

// imageRef is the full name of the lab image called name.
func imageRef(name string) string { return ImageRegistry + "/" + name + ":" + ImageTag }

// moduleRoot is the repository root, found from this source file so the
// builds work from any working directory inside the module.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// BuildImages writes the images' archives into outDir (<name>.oci.tar).
// What is slow is cached outside the repository under $RDS_CSI_LAB_CACHE
// (default /var/cache/rds-csi-lab): the plugin's Debian root
// (e2e/lab/k8s-plugin-root.sh, needs root and the Debian mirror) and the
// sidecars (e2e/lab/k8s-sidecar.sh, needs the Go module proxy); the archives
// themselves are written anew each time. Builds run niced; when ctx
// ends, a running build's process group is stopped.
func BuildImages(ctx context.Context, outDir string, logf func(string, ...any)) (Images, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return Images{}, err
	}
	outDir, err := filepath.Abs(outDir)
	if err != nil {
		return Images{}, err
	}
	var imgs Images
	for _, b := range []struct {
		name  string
		img   *Image
		build func(context.Context, string) (imageSpec, error)
	}{
		{"pause", &imgs.Pause, buildPause},
		{"app", &imgs.App, buildApp},
		{"plugin", &imgs.Plugin, buildPlugin},
		{"attacher", &imgs.Attacher, attacher.build},
		{"provisioner", &imgs.Provisioner, provisioner.build},
		{"resizer", &imgs.Resizer, resizer.build},
	} {
		start := time.Now()
		logf("k8slab: building image %s", imageRef(b.name))
		work := filepath.Join(outDir, b.name+".build")
		if err := os.MkdirAll(work, 0o755); err != nil {
			return Images{}, err
		}
		spec, err := b.build(ctx, work)
		if err != nil {
			return Images{}, fmt.Errorf("image %s: %w", b.name, err)
		}
		spec.Name = imageRef(b.name)
		archive := filepath.Join(outDir, b.name+".oci.tar")
		if err := writeOCIArchive(archive, spec); err != nil {
			return Images{}, fmt.Errorf("image %s: %w", b.name, err)
		}
		if err := os.RemoveAll(work); err != nil {
			return Images{}, err
		}
		*b.img = Image{Name: spec.Name, Archive: archive}
		fi, err := os.Stat(archive)
		if err != nil {
			return Images{}, err
		}
		logf("k8slab: image %s: %s, %.1f MiB, in %s", spec.Name, archive, float64(fi.Size())/(1<<20), time.Since(start).Round(100*time.Millisecond))
	}
	return imgs, nil
}

// buildPause builds e2e/cmd/pause statically.
func buildPause(ctx context.Context, work string) (imageSpec, error) {
	bin := filepath.Join(work, "pause")
	if _, err := run(ctx, moduleRoot(), []string{"CGO_ENABLED=0", "GOOS=linux"},
		"nice", "-n", "10", "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./e2e/cmd/pause"); err != nil {
		return imageSpec{}, err
	}
	return imageSpec{
		Layers:     []layer{fileTree{{Path: "/pause", Mode: 0o755, Src: bin}}},
		Entrypoint: []string{"/pause"},
	}, nil
}

// busybox is Debian busybox-static's binary.
const busybox = "/bin/busybox"

// buildApp is busybox with a symlink for each applet, where
// `busybox --install -s` would put it, and a /tmp.
func buildApp(ctx context.Context, _ string) (imageSpec, error) {
	if err := checkStatic(busybox); err != nil {
		return imageSpec{}, fmt.Errorf("%w (apt-get install busybox-static)", err)
	}
	list, err := run(ctx, "", nil, busybox, "--list-full")
	if err != nil {
		return imageSpec{}, err
	}
	tree, err := busyboxTree(busybox, strings.Fields(list))
	if err != nil {
		return imageSpec{}, err
	}
	return imageSpec{Layers: []layer{tree}, Cmd: []string{"sh"}}, nil
}

// busyboxTree lays out busybox at /bin/busybox and its applets (paths as
// busybox --list-full prints them, e.g. "usr/bin/sha256sum") as symlinks
// to it, with their directories, /tmp, /root and /etc.
func busyboxTree(bin string, applets []string) (fileTree, error) {
	dirs := map[string]bool{"bin": true, "tmp": true, "root": true, "etc": true}
	var links []string
	for _, a := range applets {
		a = path.Clean(strings.TrimPrefix(a, "/"))
		if a == "." || strings.HasPrefix(a, "..") || a == "bin/busybox" {
			continue
		}
		links = append(links, a)
		for d := path.Dir(a); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	if !slices.Contains(links, "bin/sh") {
		return nil, fmt.Errorf("%s has no sh applet", bin)
	}
	var tree fileTree
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		mode := fs.ModeDir | 0o755
		switch d {
		case "tmp":
			mode = fs.ModeDir | fs.ModeSticky | 0o777
		case "root":
			mode = fs.ModeDir | 0o700
		}
		tree = append(tree, treeEntry{Path: "/" + d, Mode: mode})
	}
	tree = append(tree, treeEntry{Path: "/bin/busybox", Mode: 0o755, Src: bin})
	slices.Sort(links)
	links = slices.Compact(links)
	for _, l := range links {
		tree = append(tree, treeEntry{Path: "/" + l, Mode: fs.ModeSymlink | 0o777, Link: "/bin/busybox"})
	}
	return tree, nil
}

// checkStatic fails unless file is an ELF executable without an
// interpreter (so it runs in an image with no libc).
func checkStatic(file string) error {
	f, err := elf.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", file)
		}
	}
	return nil
}

// buildPlugin is the Dockerfile's runtime stage: the Debian root with the
// packages that stage installs (cached by k8s-plugin-root.sh), plus the
// binary `make image-binary` builds, at /usr/local/bin/rds-csi.
func buildPlugin(ctx context.Context, work string) (imageSpec, error) {
	root := moduleRoot()
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return imageSpec{}, err
	}
	stage, err := ParseRuntimeStage(string(df))
	if err != nil {
		return imageSpec{}, err
	}
	out, err := run(ctx, root, nil, "bash", append([]string{filepath.Join(root, "e2e", "lab", "k8s-plugin-root.sh"), stage.Suite}, stage.Packages...)...)
	if err != nil {
		return imageSpec{}, err
	}
	rootfs := strings.TrimSpace(out)
	if fi, err := os.Stat(filepath.Join(rootfs, "usr", "bin")); err != nil || !fi.IsDir() {
		return imageSpec{}, fmt.Errorf("k8s-plugin-root.sh printed %q, which holds no usr/bin", rootfs)
	}
	if _, err := run(ctx, root, nil, "nice", "-n", "10", "make", "--no-print-directory", "image-binary"); err != nil {
		return imageSpec{}, err
	}
	// Copied out of bin/image at once, so a later make does not change
	// what this image holds.
	bin := filepath.Join(work, "rds-csi")
	if err := copyFile(filepath.Join(root, "bin", "image", "rds-csi"), bin, 0o755); err != nil {
		return imageSpec{}, err
	}
	return imageSpec{
		Layers: []layer{
			dirTree{Root: rootfs},
			fileTree{
				{Path: "/usr", Mode: fs.ModeDir | 0o755},
				{Path: "/usr/local", Mode: fs.ModeDir | 0o755},
				{Path: "/usr/local/bin", Mode: fs.ModeDir | 0o755},
				{Path: "/usr/local/bin/rds-csi", Mode: 0o755, Src: bin},
			},
		},
		Entrypoint: []string{"/usr/local/bin/rds-csi"},
	}, nil
}

// build is the sidecar's binary (built once, cached, by k8s-sidecar.sh) at
// /<Cmd>, with a /tmp.
func (s sidecar) build(ctx context.Context, _ string) (imageSpec, error) {
	out, err := run(ctx, moduleRoot(), nil, "bash", filepath.Join(moduleRoot(), "e2e", "lab", "k8s-sidecar.sh"), s.Cmd, s.Module, s.Version)
	if err != nil {
		return imageSpec{}, err
	}
	bin := filepath.Join(strings.TrimSpace(out), s.Cmd)
	if err := checkStatic(bin); err != nil {
		return imageSpec{}, err
	}
	return imageSpec{
		Layers: []layer{fileTree{
			{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
			{Path: "/" + s.Cmd, Mode: 0o755, Src: bin},
		}},
		Entrypoint: []string{"/" + s.Cmd},
	}, nil
}

func copyFile(src, dst string, mode fs.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}

// run runs a command in its own process group (stopped with SIGTERM, then
// SIGKILL after 30 s, when ctx ends) and returns its stdout; a failure
// carries the tail of its stderr.
func run(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		// Whatever the command left behind in its group goes with it.
		if kerr := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); kerr != nil && !errors.Is(kerr, syscall.ESRCH) {
			return "", fmt.Errorf("%s: killing its process group: %w", name, kerr)
		}
	}
	if err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(stderr.String(), 40))
	}
	return stdout.String(), nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
