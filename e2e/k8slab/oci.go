package k8slab

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// The OCI media types and annotations the lab's archives use.
const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar" // uncompressed: no gunzip under TCG

	// annotationRefName is the OCI reference annotation; containerd's
	// importer (ctr images import) names the image after it.
	annotationRefName = "org.opencontainers.image.ref.name"
	// annotationImageName is containerd's own full-name annotation, which
	// its exporter writes; set too, with the same full name.
	annotationImageName = "io.containerd.image.name"
)

// epoch is the modification time of the files of in-memory layers, so that
// the same inputs give the same layer digests.
var epoch = time.Unix(0, 0).UTC()

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

// imageConfig is the OCI image configuration (the parts the lab sets).
type imageConfig struct {
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Config       containerConfig `json:"config"`
	RootFS       rootFS          `json:"rootfs"`
}

type containerConfig struct {
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Cmd        []string          `json:"Cmd,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	WorkingDir string            `json:"WorkingDir,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

// imageSpec is what an image archive holds.
type imageSpec struct {
	Name       string  // full reference, e.g. rds-csi.lab/pause:lab
	Layers     []layer // bottom first
	Entrypoint []string
	Cmd        []string
	Env        []string // PATH defaults to defaultPath
	Labels     map[string]string
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// layer writes its entries into a layer's tar stream.
type layer interface {
	writeTar(tw *tar.Writer) error
}

// writeOCIArchive writes spec as an OCI image layout in a tar archive at
// archive (written beside it, then renamed into place). The index names the
// one manifest with spec.Name in both annotationRefName and
// annotationImageName, for the linux/GOARCH platform.
func writeOCIArchive(archive string, spec imageSpec) error {
	tmp, err := os.MkdirTemp(filepath.Dir(archive), ".oci-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	var blobs []string // files in tmp, named by digest hex
	addBlob := func(mediaType string, data []byte) (descriptor, error) {
		sum := sha256.Sum256(data)
		hx := hex.EncodeToString(sum[:])
		if err := os.WriteFile(filepath.Join(tmp, hx), data, 0o644); err != nil {
			return descriptor{}, err
		}
		blobs = append(blobs, hx)
		return descriptor{MediaType: mediaType, Digest: "sha256:" + hx, Size: int64(len(data))}, nil
	}

	env := spec.Env
	if !hasEnv(env, "PATH") {
		env = append([]string{defaultPath}, env...)
	}
	cfg := imageConfig{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Config:       containerConfig{Entrypoint: spec.Entrypoint, Cmd: spec.Cmd, Env: env, WorkingDir: "/", Labels: spec.Labels},
		RootFS:       rootFS{Type: "layers", DiffIDs: []string{}},
	}
	man := manifest{SchemaVersion: 2, MediaType: mediaTypeManifest, Layers: []descriptor{}}
	for i, l := range spec.Layers {
		d, err := writeLayerBlob(tmp, l)
		if err != nil {
			return fmt.Errorf("%s: layer %d: %w", spec.Name, i, err)
		}
		blobs = append(blobs, strings.TrimPrefix(d.Digest, "sha256:"))
		man.Layers = append(man.Layers, d)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, d.Digest) // uncompressed: the diff id is the digest
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	if man.Config, err = addBlob(mediaTypeConfig, cfgJSON); err != nil {
		return err
	}
	manJSON, err := json.Marshal(man)
	if err != nil {
		return err
	}
	manDesc, err := addBlob(mediaTypeManifest, manJSON)
	if err != nil {
		return err
	}
	manDesc.Platform = &platform{Architecture: runtime.GOARCH, OS: "linux"}
	manDesc.Annotations = map[string]string{annotationRefName: spec.Name, annotationImageName: spec.Name}
	idxJSON, err := json.Marshal(index{SchemaVersion: 2, MediaType: mediaTypeIndex, Manifests: []descriptor{manDesc}})
	if err != nil {
		return err
	}
	return writeLayoutTar(archive, tmp, blobs, idxJSON)
}

// writeLayoutTar writes the image layout's tar: oci-layout, the blobs (files
// of blobDir named by their digests' hex) and the index last.
func writeLayoutTar(archive, blobDir string, blobs []string, idxJSON []byte) (err error) {
	out, err := os.CreateTemp(filepath.Dir(archive), ".oci-archive-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(out.Name())
		}
	}()
	tw := tar.NewWriter(out)
	if err := tarBytes(tw, "oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, hx := range blobs {
		if seen[hx] { // two identical layers are one blob
			continue
		}
		seen[hx] = true
		if err := tarFile(tw, "blobs/sha256/"+hx, filepath.Join(blobDir, hx)); err != nil {
			return err
		}
	}
	if err := tarBytes(tw, "index.json", idxJSON); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := out.Chmod(0o644); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(out.Name(), archive)
}

func hasEnv(env []string, name string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, name+"=") {
			return true
		}
	}
	return false
}

// writeLayerBlob writes the layer's tar into dir under its digest's hex.
func writeLayerBlob(dir string, l layer) (descriptor, error) {
	f, err := os.CreateTemp(dir, ".layer-")
	if err != nil {
		return descriptor{}, err
	}
	defer f.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	tw := tar.NewWriter(cw)
	if err := l.writeTar(tw); err != nil {
		return descriptor{}, err
	}
	if err := tw.Close(); err != nil {
		return descriptor{}, err
	}
	if err := f.Close(); err != nil {
		return descriptor{}, err
	}
	hx := hexSum(h)
	if err := os.Rename(f.Name(), filepath.Join(dir, hx)); err != nil {
		return descriptor{}, err
	}
	return descriptor{MediaType: mediaTypeLayer, Digest: "sha256:" + hx, Size: cw.n}, nil
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func tarBytes(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func tarFile(tw *tar.Writer, name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: fi.Size(), ModTime: epoch}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	return nil
}

// treeEntry is one entry of an in-memory layer: a directory, a symlink
// (Link), or a regular file copied from the host file Src.
type treeEntry struct {
	Path string      // in the image, absolute ("/bin/sh")
	Mode fs.FileMode // permissions plus fs.ModeDir or fs.ModeSymlink; regular otherwise
	Src  string      // regular files: the host file to copy
	Link string      // symlinks: the target
}

// fileTree is a layer of a few entries, all owned by root, dated epoch. The
// parent directories of every entry must come before it.
type fileTree []treeEntry

func (t fileTree) writeTar(tw *tar.Writer) error {
	for _, e := range t {
		name := strings.TrimPrefix(path.Clean(e.Path), "/")
		if name == "" || name == "." || strings.HasPrefix(name, "..") {
			return fmt.Errorf("entry %q: not a path inside the image", e.Path)
		}
		hdr := &tar.Header{Name: name, Mode: tarMode(e.Mode), ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case e.Mode.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		case e.Mode&fs.ModeSymlink != 0:
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.Link
		case e.Mode.IsRegular():
			if err := tarHostFile(tw, hdr, e.Src); err != nil {
				return fmt.Errorf("entry %s: %w", e.Path, err)
			}
			continue
		default:
			return fmt.Errorf("entry %s: unsupported mode %v", e.Path, e.Mode)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	return nil
}

// tarMode is the tar header mode (permission bits with setuid, setgid and
// sticky in their Unix places) of a Go file mode.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

func tarHostFile(tw *tar.Writer, hdr *tar.Header, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	if n != fi.Size() {
		return fmt.Errorf("%s changed size while being read", src)
	}
	return nil
}

// dirTree is a layer holding a whole host directory tree as the image's
// root: owners, modes, modification times, symlinks, hard links and device
// nodes kept; sockets skipped. Entries are written in lexical order.
type dirTree struct {
	Root string
}

func (d dirTree) writeTar(tw *tar.Writer) error {
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{} // first path of each multiply linked file
	return filepath.WalkDir(d.Root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(d.Root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil
		}
		target := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		// The image's own /etc/passwd names the owners; the host's do not.
		hdr.Uname, hdr.Gname = "", ""
		hdr.ModTime = fi.ModTime().Truncate(time.Second)
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
			key := inode{uint64(st.Dev), st.Ino}
			if first, ok := links[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				return tw.WriteHeader(hdr)
			}
			links[key] = hdr.Name
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.Copy(tw, f)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if n != hdr.Size {
			return fmt.Errorf("%s changed size while being read", p)
		}
		return nil
	})
}
