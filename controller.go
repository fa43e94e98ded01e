package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/srvlab/rds-csi/csi"
	"github.com/srvlab/rds-csi/metrics"
	"github.com/srvlab/rds-csi/routeros"
)

// The values of --mode.
const (
	modeNode       = "node"
	modeController = "controller"
)

// controllerOptions are the flags of --mode=controller: the default RDS and
// the controller's own credentials, read from files (a default Secret
// mounted in the Pod). StorageClasses name other RDSs (rdsAddress) and
// their credentials (secrets in the requests).
type controllerOptions struct {
	rdsAddress     string // host:port of the RDS's SSH service
	rdsUser        string
	keyFile        string // PEM private key
	knownHostsFile string
	volumeDir      string
	nqnBase        string
	pool           string
	maxSessions    int
	maxClients     int
	pingInterval   time.Duration
	listRDS        string // comma-separated further RDS addresses ListVolumes and ListSnapshots read
}

func (c *controllerOptions) register(fset *flag.FlagSet) {
	fset.StringVar(&c.rdsAddress, "rds-address", "", "controller: host:port of the RDS's SSH service (management address; port 22 if omitted); nvmeAddress defaults to its host")
	fset.StringVar(&c.rdsUser, "rds-user", "rds-csi", "controller: RouterOS user")
	fset.StringVar(&c.keyFile, "rds-key-file", "", "controller: file with the user's PEM private key (unencrypted)")
	fset.StringVar(&c.knownHostsFile, "rds-known-hosts-file", "", "controller: known_hosts file with the RDS's host key (no trust on first use)")
	fset.StringVar(&c.volumeDir, "volume-dir", "", "controller: absolute RouterOS directory of the volumes' backing files (e.g. /storage-pool/rds-csi)")
	fset.StringVar(&c.nqnBase, "nqn-base", "nqn.2000-02.com.mikrotik", "controller: NQN prefix; a volume's NQN is <nqn-base>:<slot>")
	fset.StringVar(&c.pool, "pool", csi.DefaultPool, "controller: mount point of the pool disk whose free space GetCapacity reports")
	fset.IntVar(&c.maxSessions, "rds-max-sessions", routeros.DefaultMaxSessions, "controller: concurrent SSH sessions per SSH client (per RDS and credentials)")
	fset.IntVar(&c.maxClients, "rds-max-clients", csi.DefaultMaxClients, "controller: SSH clients kept for RDSs and credentials other than the default (one per address and secret; the least recently used idle one is closed beyond this)")
	fset.StringVar(&c.listRDS, "list-rds", "", "controller: further RDS SSH addresses (comma-separated host[:port]) that ListVolumes and a ListSnapshots without filters read besides --rds-address, with the controller's own credentials unless the request has secrets")
	fset.DurationVar(&c.pingInterval, "rds-ping-interval", time.Minute, "controller: how often to check that the RDS answers (opens an SSH session; metric rds_csi_routeros_up); 0 disables")
}

// check validates the controller flags for mode.
func (c *controllerOptions) check(mode string) error {
	switch mode {
	case modeNode:
		return nil
	case modeController:
	default:
		return fmt.Errorf("--mode %q: want %s or %s", mode, modeNode, modeController)
	}
	for _, f := range []struct{ name, value string }{{"--rds-address", c.rdsAddress}, {"--rds-user", c.rdsUser},
		{"--rds-key-file", c.keyFile}, {"--rds-known-hosts-file", c.knownHostsFile}, {"--volume-dir", c.volumeDir}} {
		if f.value == "" {
			return fmt.Errorf("%s is required with --mode=controller", f.name)
		}
	}
	if _, err := csi.ParseRDSAddress(c.rdsAddress); err != nil {
		return fmt.Errorf("--rds-address: %w", err)
	}
	if err := routeros.ValidatePath("volume-dir", c.volumeDir); err != nil {
		return fmt.Errorf("--volume-dir: %w", err)
	}
	for _, a := range c.listRDSAddresses() {
		if _, err := csi.ParseRDSAddress(a); err != nil {
			return fmt.Errorf("--list-rds: %w", err)
		}
	}
	if c.maxSessions < 1 {
		return errors.New("--rds-max-sessions must be at least 1")
	}
	if c.maxClients < 1 {
		return errors.New("--rds-max-clients must be at least 1")
	}
	if c.pingInterval < 0 {
		return errors.New("--rds-ping-interval must not be negative")
	}
	return nil
}

// listRDSAddresses splits --list-rds (empty items dropped).
func (c *controllerOptions) listRDSAddresses() []string {
	var out []string
	for _, a := range strings.Split(c.listRDS, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// sshAddress returns the canonical --rds-address (port 22 added to an
// address without one), as volume ids carry it; check validated it.
func (c *controllerOptions) sshAddress() string {
	a, err := csi.ParseRDSAddress(c.rdsAddress)
	if err != nil {
		return c.rdsAddress
	}
	return a
}

// runController serves Identity and Controller on o.endpoint until ctx
// ends or SIGTERM/SIGINT, then drains in-flight calls. It serves /metrics
// (the RDS's commands, connections and reachability), /healthz and /readyz
// on --metrics-address, and pings the RDS every --rds-ping-interval.
func runController(ctx context.Context, o options, log *slog.Logger) error {
	key, err := os.ReadFile(o.ctrl.keyFile)
	if err != nil {
		return fmt.Errorf("--rds-key-file: %w", err)
	}
	known, err := os.ReadFile(o.ctrl.knownHostsFile)
	if err != nil {
		return fmt.Errorf("--rds-known-hosts-file: %w", err)
	}
	ros := metrics.NewRouterOS()
	obs := ros.For(o.ctrl.sshAddress())
	ssh, err := routeros.NewSSH(routeros.SSHConfig{Address: o.ctrl.sshAddress(), User: o.ctrl.rdsUser,
		PrivateKey: key, KnownHosts: known, MaxSessions: o.ctrl.maxSessions, Logger: log.With("component", "routeros"),
		Events: obs})
	if err != nil {
		return err
	}
	defer ssh.Close()
	ctrl, err := csi.NewController(csi.ControllerConfig{Client: routeros.NewClient(ssh, obs.Command),
		RDSAddress: o.ctrl.sshAddress(), ListRDS: o.ctrl.listRDSAddresses(), VolumeDir: o.ctrl.volumeDir, NQNBase: o.ctrl.nqnBase,
		Pool: o.ctrl.pool, Credentials: csi.Credentials{User: o.ctrl.rdsUser, PrivateKey: key, KnownHosts: known},
		MaxSessions: o.ctrl.maxSessions, MaxClients: o.ctrl.maxClients, Logger: log.With("component", "controller"),
		Metrics: func(addr string) (routeros.Observer, routeros.SSHEvents) {
			o := ros.For(addr)
			return o.Command, o
		}})
	if err != nil {
		return err
	}
	defer ctrl.Close()
	log.Info("starting controller", "version", version, "driver", o.driverName, "rds", o.ctrl.sshAddress(), "user", o.ctrl.rdsUser, "volume_dir", o.ctrl.volumeDir)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 2)
	stopHTTP, err := serveControllerMetrics(o, ros, errc, log)
	if err != nil {
		return err
	}
	defer stopHTTP()
	go pingRDS(ctx, routeros.NewClient(ssh, obs.Command), o.ctrl.pingInterval, log)
	lis, err := csi.Listen(o.endpoint)
	if err != nil {
		return err
	}
	srv := csi.NewControllerServer(log.With("component", "grpc"),
		csi.ControllerIdentity{Identity: csi.NewIdentity(o.driverName, version, nil)}, ctrl)
	go func() {
		if err := srv.Serve(lis); err != nil {
			errc <- fmt.Errorf("gRPC server: %w", err)
		}
	}()
	log.Info("serving CSI controller", "endpoint", o.endpoint)
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: finishing in-flight calls", "timeout", o.shutdownTimeout)
	case runErr = <-errc:
		log.Error("shutting down", "error", runErr.Error())
	}
	gracefulStop(srv, o.shutdownTimeout, log)
	log.Info("stopped")
	return runErr
}
