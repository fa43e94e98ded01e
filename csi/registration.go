package csi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// RegistrationSocketMode is the permission of the kubelet registration
// socket: only kubelet (root) dials it.
const RegistrationSocketMode = 0o600

// RegistrationVersions are the CSI API versions GetInfo announces to kubelet.
var RegistrationVersions = []string{"1.0.0"}

// ErrNotSocket: a path where a socket is to be created holds something else,
// which is left alone.
var ErrNotSocket = errors.New("exists and is not a socket; refusing to remove it")

// Registration is kubelet's plugin registration service (pluginregistration
// v1), served on a socket in kubelet's plugins_registry directory: kubelet's
// plugin watcher finds the socket, calls GetInfo to learn the driver name and
// the CSI endpoint, registers the driver and reports the outcome with
// NotifyRegistrationStatus; later it calls GetInfo now and then to see that
// the plugin is still there. It stands in for the node-driver-registrar
// sidecar.
type Registration struct {
	registerapi.UnimplementedRegistrationServer

	name     string
	endpoint string
	log      *slog.Logger

	mu         sync.Mutex
	failed     error // kubelet's last word was a failed registration
	registered bool  // kubelet's last word was a successful registration
}

// NewRegistration returns the registration service for driver name, whose
// CSI socket kubelet reaches at endpoint (an absolute path on the host).
func NewRegistration(name, endpoint string, log *slog.Logger) (*Registration, error) {
	if name == "" {
		return nil, errors.New("csi: registration: no driver name")
	}
	if !filepath.IsAbs(endpoint) {
		return nil, fmt.Errorf("csi: registration: kubelet's endpoint %q is not an absolute path", endpoint)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Registration{name: name, endpoint: endpoint, log: log}, nil
}

// GetInfo answers kubelet with the plugin type, driver name, CSI endpoint and
// versions.
func (r *Registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	// kubelet's plugin watcher calls it now and then, and so does the
	// plugin's own health check: not logged above debug level.
	r.log.Debug("registration GetInfo answered", "driver", r.name, "endpoint", r.endpoint)
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              r.name,
		Endpoint:          r.endpoint,
		SupportedVersions: RegistrationVersions,
	}, nil
}

// NotifyRegistrationStatus records kubelet's verdict. A refusal is logged at
// error level and kept until a later success: Status reports it, so the
// health check fails and the liveness probe restarts the plugin (the
// registrar exits instead) unless kubelet's own retry succeeds first.
func (r *Registration) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st.GetPluginRegistered() {
		if r.failed != nil {
			r.log.Info("kubelet registered the driver after an earlier failure", "driver", r.name, "endpoint", r.endpoint)
		} else {
			r.log.Info("kubelet registered the driver", "driver", r.name, "endpoint", r.endpoint)
		}
		r.failed, r.registered = nil, true
		return &registerapi.RegistrationStatusResponse{}, nil
	}
	r.registered = false
	r.failed = fmt.Errorf("kubelet did not register the driver: %s", st.GetError())
	r.log.Error("kubelet did not register the driver", "driver", r.name, "endpoint", r.endpoint, "error", st.GetError())
	return &registerapi.RegistrationStatusResponse{}, nil
}

// Registered tells whether kubelet's last word was a successful registration.
func (r *Registration) Registered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.registered
}

// Status is nil unless kubelet's last word was a failed registration.
func (r *Registration) Status() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// ListenAtomic listens on a unix socket at path that appears there complete:
// it is created under a dot-name in the same directory (kubelet's plugin
// watcher ignores dot-names), given mode, then renamed onto path, replacing
// a stale socket of an earlier run in one step. Anything at path (or at the
// temporary name) that is not a socket is refused with ErrNotSocket and left
// alone. The directory must exist: a missing plugins_registry means kubelet's
// directory is not where the flags say. Closing the listener removes the
// socket, if path is still the one it created.
func ListenAtomic(path string, mode fs.FileMode) (net.Listener, error) {
	dir, base := filepath.Split(path)
	if !filepath.IsAbs(path) || base == "" || strings.HasPrefix(base, ".") {
		return nil, fmt.Errorf("csi: socket path %q: want an absolute path whose name does not start with '.'", path)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("csi: socket directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("csi: socket directory %s is not a directory", dir)
	}
	if err := checkSocketOrMissing(path); err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "."+base+".new")
	if err := checkSocketOrMissing(tmp); err != nil {
		return nil, err
	}
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("csi: remove stale %s: %w", tmp, err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("csi: listen on %s: %w", tmp, err)
	}
	// The socket moves: Close must not unlink by the old name.
	l.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		l.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(fmt.Errorf("csi: chmod %s: %w", tmp, err))
	}
	// Checked again just before the rename, which would replace whatever is
	// there.
	if err := checkSocketOrMissing(path); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("csi: %w", err))
	}
	fi, err := os.Lstat(path)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("csi: %w", err)
	}
	return &ownedListener{UnixListener: l, path: path, fi: fi}, nil
}

// checkSocketOrMissing is nil when nothing or a socket is at path.
func checkSocketOrMissing(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("csi: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("csi: %s %w", path, ErrNotSocket)
	}
	return nil
}

// ownedListener removes its socket on Close, unless the path now names
// another file (a newer instance's socket).
type ownedListener struct {
	*net.UnixListener
	path string
	fi   fs.FileInfo
	once sync.Once
}

func (l *ownedListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if cur, serr := os.Lstat(l.path); serr == nil && os.SameFile(cur, l.fi) {
			if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("csi: remove socket: %w", rerr))
			}
		}
	})
	return err
}
