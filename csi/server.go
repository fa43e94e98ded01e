package csi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/protosanitizer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// SocketMode is the permission of the unix socket Listen creates.
const SocketMode = 0o660

// ParseEndpoint splits a CSI endpoint: "unix:///csi/csi.sock" (or
// "unix:/csi/csi.sock", or a bare absolute path) is ("unix",
// "/csi/csi.sock"); "tcp://127.0.0.1:10000" is ("tcp", "127.0.0.1:10000").
func ParseEndpoint(ep string) (network, address string, err error) {
	if strings.HasPrefix(ep, "/") {
		return "unix", ep, nil
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", "", fmt.Errorf("csi: endpoint %q: %w", ep, err)
	}
	switch u.Scheme {
	case "unix":
		p := u.Path
		if p == "" {
			p = u.Opaque
		}
		if u.Host != "" || p == "" {
			return "", "", fmt.Errorf("csi: endpoint %q: want unix:///absolute/path", ep)
		}
		return "unix", p, nil
	case "tcp":
		if u.Host == "" {
			return "", "", fmt.Errorf("csi: endpoint %q: want tcp://host:port", ep)
		}
		return "tcp", u.Host, nil
	}
	return "", "", fmt.Errorf("csi: endpoint %q: scheme must be unix or tcp", ep)
}

// Listen listens on a CSI endpoint. For a unix socket it creates the
// parent directory, removes a stale socket file left by a previous run
// (never anything that is not a socket), and sets the socket's mode to
// SocketMode.
func Listen(endpoint string) (net.Listener, error) {
	network, addr, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if err := prepareSocketPath(addr); err != nil {
			return nil, err
		}
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("csi: listen on %s: %w", endpoint, err)
	}
	if network == "unix" {
		if err := os.Chmod(addr, SocketMode); err != nil {
			l.Close()
			return nil, fmt.Errorf("csi: chmod %s: %w", addr, err)
		}
	}
	return l, nil
}

func prepareSocketPath(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("csi: %w", err)
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("csi: %w", err)
	case fi.Mode()&fs.ModeSocket == 0:
		return fmt.Errorf("csi: %s exists and is not a socket; refusing to remove it", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("csi: remove stale socket: %w", err)
	}
	return nil
}

// NewServer returns a gRPC server with the Identity and Node services and
// a logging interceptor (secrets stripped from requests).
func NewServer(log *slog.Logger, id csi.IdentityServer, node csi.NodeServer, opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(LoggingInterceptor(log))}, opts...)
	s := grpc.NewServer(opts...)
	csi.RegisterIdentityServer(s, id)
	if node != nil {
		csi.RegisterNodeServer(s, node)
	}
	return s
}

// quietMethods are polled often and logged at debug level only.
var quietMethods = map[string]bool{
	"/csi.v1.Identity/Probe":                 true,
	"/csi.v1.Identity/GetPluginInfo":         true,
	"/csi.v1.Node/NodeGetCapabilities":       true,
	"/csi.v1.Node/NodeGetVolumeStats":        true,
	"/csi.v1.Node/NodeGetVolumeHealth":       true,
	"/csi.v1.Node/NodeGetStorageHealth":      true,
	"/csi.v1.Identity/GetPluginCapabilities": true,
}

// maxLoggedRequest bounds how much of a request a log line quotes.
const maxLoggedRequest = 4096

// LoggingInterceptor logs every call with its request (secrets replaced by
// protosanitizer; past maxLoggedRequest bytes only its start and its size),
// duration and resulting code.
func LoggingInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		level := slog.LevelInfo
		if quietMethods[info.FullMethod] {
			level = slog.LevelDebug
		}
		if err != nil && level < slog.LevelWarn {
			level = slog.LevelWarn
		}
		if log.Enabled(ctx, level) {
			st, _ := status.FromError(err)
			attrs := []any{
				"method", info.FullMethod,
				"request", boundedText(protosanitizer.StripSecrets(req).String(), maxLoggedRequest),
				"code", st.Code().String(),
				"duration", time.Since(start),
			}
			if err != nil {
				attrs = append(attrs, "error", st.Message())
			}
			log.Log(ctx, level, "gRPC call", attrs...)
		}
		return resp, err
	}
}

// boundedText returns s, or its first max bytes (cut at a rune start) and its
// size.
func boundedText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", runePrefix(s, max), len(s))
}
