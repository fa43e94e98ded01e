// Command rds-csi is the node plugin of the rds-csi CSI driver: the CSI
// Identity and Node services for NVMe/TCP volumes, and the daemon that
// connects, watches and cleans up NVMe/TCP controllers.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/srvlab/rds-csi/csi"
	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/metrics"
	"github.com/srvlab/rds-csi/sysfs"
)

var _ csi.Volumes = (*daemon.Daemon)(nil)

// driverNameRE is the CSI spec's rule for plugin names.
var driverNameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,61}[a-zA-Z0-9])?$`)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// options are the command line flags.
type options struct {
	endpoint        string
	nodeID          string
	driverName      string
	stateDir        string
	hostIdentityDir string
	sysfsRoot       string
	fabricsDevice   string
	procRoot        string
	metricsAddress  string
	logFormat       string
	logLevel        string
	showVersion     bool
	skipNetNSCheck  bool
	shutdownTimeout time.Duration
	drainDeadAfter  time.Duration
	drainLossTmo    int

	stagingRoot     string
	pollInterval    time.Duration
	orphanGrace     time.Duration
	cleanupInterval time.Duration
	cleanupDryRun   bool
	deviceTimeout   time.Duration
	startupJitter   time.Duration
	noEvents        bool
	kmsg            bool
}

func parseFlags(fset *flag.FlagSet, args []string) (options, error) {
	var o options
	host, _ := os.Hostname()
	fset.StringVar(&o.endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint (unix:///path or tcp://host:port)")
	fset.StringVar(&o.nodeID, "node-id", host, "node id reported by NodeGetInfo (default: the host name)")
	fset.StringVar(&o.driverName, "driver-name", csi.DefaultDriverName, "CSI driver name")
	fset.StringVar(&o.stateDir, "state-dir", "/var/lib/rds-csi", "directory for the ownership file and the generated host identity (a hostPath)")
	fset.StringVar(&o.hostIdentityDir, "host-identity-dir", "/etc/nvme", "directory with the host's hostnqn and hostid files (nvme-cli's); empty to ignore them")
	fset.StringVar(&o.sysfsRoot, "sysfs-root", sysfs.DefaultRoot, "sysfs mount point")
	fset.StringVar(&o.fabricsDevice, "fabrics-device", fabrics.DefaultDevicePath, "NVMe over Fabrics control device")
	fset.StringVar(&o.procRoot, "proc-root", "/proc", "procfs mount point (network namespace check)")
	fset.StringVar(&o.metricsAddress, "metrics-address", ":9809", "HTTP address for /healthz and /readyz (and metrics); empty disables")
	fset.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	fset.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fset.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fset.BoolVar(&o.skipNetNSCheck, "skip-netns-check", false, "do not require the host network namespace (lab only: NVMe/TCP connections belong to the network namespace that creates them)")
	fset.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight gRPC calls may run after SIGTERM")
	fset.DurationVar(&o.drainDeadAfter, "drain-dead-after", 0, "on SIGTERM (and on SIGUSR1, the admin call), lower ctrl_loss_tmo to --drain-ctrl-loss-tmo on controllers whose target has been unreachable at least this long, so a node shutdown does not hang forever on a dead target; 0: SIGTERM leaves every connection alone and SIGUSR1 uses 10m")
	fset.IntVar(&o.drainLossTmo, "drain-ctrl-loss-tmo", 30, "the ctrl_loss_tmo (seconds) --drain-dead-after and SIGUSR1 set")
	fset.StringVar(&o.stagingRoot, "staging-root", "/var/lib/kubelet/plugins", "kubelet's plugins directory, under which staging paths live")
	fset.DurationVar(&o.pollInterval, "poll-interval", time.Second, "how often the state of known controllers is re-read")
	fset.DurationVar(&o.orphanGrace, "orphan-grace", 5*time.Minute, "how long an owned, unreferenced controller is kept before cleanup disconnects it")
	fset.DurationVar(&o.cleanupInterval, "cleanup-interval", time.Minute, "how often orphan cleanup runs")
	fset.BoolVar(&o.cleanupDryRun, "cleanup-dry-run", false, "log what orphan cleanup would disconnect, without disconnecting")
	fset.DurationVar(&o.deviceTimeout, "device-timeout", 30*time.Second, "how long to wait for a namespace's block device after a connect")
	fset.DurationVar(&o.startupJitter, "startup-jitter", 0, "random delay (up to this) before the first orphan cleanup, so a DaemonSet rollout does not act on every node at once")
	fset.BoolVar(&o.noEvents, "no-events", false, "do not subscribe to uevents and netlink, nor read the kernel log (the poller still runs)")
	fset.BoolVar(&o.kmsg, "kmsg", true, "read the kernel log (/dev/kmsg, needs CAP_SYSLOG) to see controller faults within milliseconds; without it, or with --kmsg=false, faults are seen by uevents and the poller")
	if err := fset.Parse(args); err != nil {
		return options{}, err
	}
	if fset.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %v", fset.Args())
	}
	switch {
	case o.nodeID == "":
		return options{}, errors.New("--node-id is required (the host name is unknown)")
	case o.stateDir == "":
		return options{}, errors.New("--state-dir is required")
	case o.drainDeadAfter < 0 || o.drainLossTmo < 0:
		return options{}, errors.New("--drain-dead-after and --drain-ctrl-loss-tmo must not be negative")
	case o.shutdownTimeout <= 0:
		return options{}, errors.New("--shutdown-timeout must be positive")
	case !driverNameRE.MatchString(o.driverName):
		return options{}, fmt.Errorf("--driver-name %q: want at most 63 characters, alphanumerics, '-' and '.', starting and ending with an alphanumeric", o.driverName)
	}
	return o, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	hopts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}

// checkFabricsDevice fails with a clear message when the fabrics control
// device is missing (the nvme-tcp module is not loaded).
func checkFabricsDevice(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s does not exist: the NVMe/TCP host driver is not loaded; run `modprobe nvme-tcp` on the node (and add nvme-tcp to /etc/modules-load.d)", path)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return fmt.Errorf("%s is not a character device", path)
	}
	return nil
}

// checkHostNetNS fails unless this process is in the network namespace of
// PID 1 (compared by the inode of <procRoot>/<pid>/ns/net). In a pod this
// holds with hostNetwork: true; NVMe/TCP sockets belong to the network
// namespace of the process that connects, so a pod network would tie every
// volume's connection to the pod's lifetime. Note that without hostPID,
// PID 1 is the pod's own first process, and the check cannot tell.
func checkHostNetNS(procRoot string) error {
	self, err := os.Stat(filepath.Join(procRoot, "self", "ns", "net"))
	if err != nil {
		return fmt.Errorf("network namespace check: %w (use --skip-netns-check to skip)", err)
	}
	pid1, err := os.Stat(filepath.Join(procRoot, "1", "ns", "net"))
	if err != nil {
		return fmt.Errorf("network namespace check: %w (use --skip-netns-check to skip)", err)
	}
	if !os.SameFile(self, pid1) {
		return errors.New("not in the host network namespace: run the node plugin with hostNetwork: true (NVMe/TCP connections belong to the network namespace that creates them), or pass --skip-netns-check in a lab")
	}
	return nil
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "rds-csi:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("rds-csi", flag.ContinueOnError)
	fset.SetOutput(stderr)
	o, err := parseFlags(fset, args)
	if err != nil {
		return err
	}
	if o.showVersion {
		fmt.Fprintln(stdout, "rds-csi", version)
		return nil
	}
	log, err := newLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	if err := preflight(o); err != nil {
		return err
	}

	host, source, warnings, err := csi.LoadHostIdentity(o.hostIdentityDir, o.stateDir)
	for _, w := range warnings {
		log.Warn("host identity: " + w)
	}
	if err != nil {
		return err
	}
	log.Info("starting", "version", version, "driver", o.driverName, "node_id", o.nodeID,
		"hostnqn", host.NQN, "hostid", host.ID, "host_identity_source", source)

	fsys := sysfs.NewFS(o.sysfsRoot)
	obs := metrics.NewObserver()
	d, err := daemon.New(daemon.Config{
		Observer:        obs,
		FS:              fsys,
		Fabrics:         fabrics.NewClient(o.fabricsDevice, fsys),
		StateDir:        o.stateDir,
		StagingRoot:     o.stagingRoot,
		PollInterval:    o.pollInterval,
		OrphanGrace:     o.orphanGrace,
		CleanupInterval: o.cleanupInterval,
		CleanupDryRun:   o.cleanupDryRun,
		DeviceTimeout:   o.deviceTimeout,
		StartupJitter:   o.startupJitter,
		NoEvents:        o.noEvents,
		NoKmsg:          !o.kmsg,
		Logger:          log, // the daemon adds component=daemon itself
	})
	if err != nil {
		return err
	}
	node, err := csi.NewNode(csi.NodeConfig{
		NodeID:    o.nodeID,
		Host:      host,
		Volumes:   d,
		Rescanner: csi.SysfsRescanner{FS: fsys},
		Logger:    log.With("component", "node"),
	})
	if err != nil {
		return err
	}
	identity := csi.NewIdentity(o.driverName, version, d.Ready)
	reg := metrics.NewRegistry(d, obs, version)
	return serve(ctx, o, log, d, reg, identity, node)
}

func preflight(o options) error {
	if err := checkFabricsDevice(o.fabricsDevice); err != nil {
		return err
	}
	if o.skipNetNSCheck {
		return nil
	}
	return checkHostNetNS(o.procRoot)
}

// lifecycle is the part of the daemon main drives.
type lifecycle interface {
	Start(ctx context.Context) error
	Ready() bool
	Close() error
	Snapshot() daemon.Snapshot
	LowerLossTimeout(unreachableFor time.Duration, tmo int) ([]string, error)
}

// serve runs the daemon, then the gRPC server and the metrics and health
// endpoints, until a signal (SIGTERM, SIGINT) or a failure. The metrics
// server starts first (/readyz says not ready); the CSI socket is created
// only after the daemon's first reconcile (sysfs, the mount table, the
// ownership file, the first orphan cleanup), so no call is served from a
// registry that does not yet know what this node has. On a signal it stops
// accepting calls and lets in-flight ones finish (bounded by
// --shutdown-timeout), lowers ctrl_loss_tmo on long-dead targets if
// --drain-dead-after asks for it, then stops the daemon; connections are
// otherwise left alone. SIGUSR1 lowers ctrl_loss_tmo on demand.
func serve(ctx context.Context, o options, log *slog.Logger, d lifecycle, reg prometheus.Gatherer, identity *csi.Identity, node *csi.Node) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)

	errc := make(chan error, 3)
	httpSrv, err := startMetricsServer(o.metricsAddress, metrics.Handler(reg, metrics.HealthFuncs{
		Alive: metrics.LoopProgress(d, loopStallLimit(o.pollInterval)),
		Ready: d.Ready,
	}), log, errc)
	if err != nil {
		return err
	}
	stopHTTP := func() {
		if httpSrv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = httpSrv.Shutdown(sctx)
			cancel()
		}
	}

	// The daemon's goroutines outlive the signal context: in-flight calls
	// still need them while the gRPC server drains.
	dctx, cancelDaemon := context.WithCancel(context.Background())
	defer cancelDaemon()
	started := make(chan error, 1)
	go func() { started <- d.Start(dctx) }()
	select {
	case err := <-started:
		if err != nil {
			stopHTTP()
			return fmt.Errorf("daemon: %w", err)
		}
	case <-ctx.Done():
		log.Info("signal during the first reconcile: stopping")
		_ = d.Close()
		<-started
		stopHTTP()
		return nil
	}

	lis, err := csi.Listen(o.endpoint)
	if err != nil {
		stopHTTP()
		_ = d.Close()
		return err
	}
	srv := csi.NewServer(log.With("component", "grpc"), identity, node)
	go func() {
		if err := srv.Serve(lis); err != nil {
			errc <- fmt.Errorf("gRPC server: %w", err)
		}
	}()
	log.Info("serving CSI", "endpoint", o.endpoint)

	var runErr error
loop:
	for {
		select {
		case <-usr1:
			lowerDeadTargets(d, cmp.Or(o.drainDeadAfter, 10*time.Minute), o.drainLossTmo, log)
		case <-ctx.Done():
			log.Info("shutting down: finishing in-flight calls", "timeout", o.shutdownTimeout)
			break loop
		case runErr = <-errc:
			log.Error("shutting down", "error", runErr.Error())
			break loop
		}
	}
	gracefulStop(srv, o.shutdownTimeout, log)
	if o.drainDeadAfter > 0 {
		lowerDeadTargets(d, o.drainDeadAfter, o.drainLossTmo, log)
	}
	stopHTTP()
	cancelDaemon()
	if err := d.Close(); err != nil {
		log.Warn("closing the daemon", "error", err.Error())
	}
	log.Info("stopped")
	return runErr
}

// lowerDeadTargets sets ctrl_loss_tmo to tmo on controllers whose target has
// been unreachable for at least after, so that the kernel gives them up
// instead of reconnecting forever (and a shutdown unmounting their file
// systems does not hang).
func lowerDeadTargets(d lifecycle, after time.Duration, tmo int, log *slog.Logger) {
	names, err := d.LowerLossTimeout(after, tmo)
	if err != nil {
		log.Error("lowering ctrl_loss_tmo on dead targets", "error", err.Error(), "changed", names)
		return
	}
	log.Warn("lowered ctrl_loss_tmo on controllers whose target has been unreachable",
		"unreachable_for", after, "ctrl_loss_tmo", tmo, "controllers", names)
}

// grpcServer is the part of *grpc.Server gracefulStop uses.
type grpcServer interface {
	GracefulStop()
	Stop()
}

// gracefulStop stops accepting calls and waits for in-flight ones, for at
// most timeout; then it cancels the rest.
func gracefulStop(srv grpcServer, timeout time.Duration, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		log.Warn("in-flight gRPC calls did not finish in time; cancelling them", "timeout", timeout)
		srv.Stop()
		<-done
	}
}

// loopStallLimit is how long the event loop may make no pass before /healthz
// fails: the poller passes every poll interval, so many missed intervals
// mean it is stuck.
func loopStallLimit(poll time.Duration) time.Duration {
	return max(2*time.Minute, 30*poll)
}

// startMetricsServer serves /metrics, /healthz (the event loop makes
// progress) and /readyz (the daemon finished its first reconcile) on addr;
// "" disables it.
func startMetricsServer(addr string, h http.Handler, log *slog.Logger, errc chan<- error) (*http.Server, error) {
	if addr == "" {
		return nil, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-address: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("metrics server: %w", err)
		}
	}()
	log.Info("serving metrics and health endpoints", "address", lis.Addr().String())
	return srv, nil
}
