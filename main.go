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
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

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

	// kubelet plugin registration without node-driver-registrar
	registrationPath     string // the registration socket; "" = off
	registrationEndpoint string // the CSI socket as kubelet sees it; "" = the --endpoint path

	mode string // modeNode or modeController
	ctrl controllerOptions
}

func parseFlags(fset *flag.FlagSet, args []string) (options, error) {
	var o options
	host, _ := os.Hostname()
	fset.StringVar(&o.endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint (unix:///path or tcp://host:port)")
	fset.StringVar(&o.nodeID, "node-id", host, "the node's name (the Kubernetes node name; default: the host name); NodeGetInfo reports <node-id>/<hostnqn>, at most 192 bytes")
	fset.StringVar(&o.driverName, "driver-name", csi.DefaultDriverName, "CSI driver name")
	fset.StringVar(&o.stateDir, "state-dir", "/var/lib/rds-csi", "directory for the ownership file and the generated host identity (a hostPath)")
	fset.StringVar(&o.hostIdentityDir, "host-identity-dir", "/etc/nvme", "directory with the host's hostnqn and hostid files (nvme-cli's); empty to ignore them")
	fset.StringVar(&o.sysfsRoot, "sysfs-root", sysfs.DefaultRoot, "sysfs mount point")
	fset.StringVar(&o.fabricsDevice, "fabrics-device", fabrics.DefaultDevicePath, "NVMe over Fabrics control device")
	fset.StringVar(&o.procRoot, "proc-root", "/proc", "procfs mount point (network namespace check)")
	fset.StringVar(&o.metricsAddress, "metrics-address", ":9809", "HTTP address for /healthz and /readyz (and metrics); empty disables (with --mode=controller the default is "+controllerMetricsAddress+", so that a node plugin and a controller on one host do not collide)")
	fset.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	fset.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fset.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fset.BoolVar(&o.skipNetNSCheck, "skip-netns-check", false, "do not require the host network namespace (lab only: NVMe/TCP connections belong to the network namespace that creates them)")
	fset.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight gRPC calls may run after SIGTERM")
	fset.DurationVar(&o.drainDeadAfter, "drain-dead-after", 0, "on SIGTERM (and on SIGUSR1, the admin call `rds-csi drain-dead-targets` sends), lower ctrl_loss_tmo to --drain-ctrl-loss-tmo on controllers whose target has been unreachable at least this long, so a node shutdown does not hang forever on a dead target; 0: SIGTERM leaves every connection alone and SIGUSR1 uses 10m")
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
	fset.StringVar(&o.registrationPath, "kubelet-registration-path", "", "serve kubelet's plugin registration (pluginregistration v1) on this socket, e.g. /var/lib/kubelet/plugins_registry/<driver-name>-reg.sock, so that kubelet finds the plugin without the node-driver-registrar sidecar; empty: off (a registrar registers the plugin)")
	fset.StringVar(&o.registrationEndpoint, "kubelet-registration-endpoint", "", "with --kubelet-registration-path: the path of the CSI socket (--endpoint) as kubelet sees it on the host, which kubelet dials; empty: the --endpoint path (when the plugin sees it at the host's path)")
	fset.StringVar(&o.mode, "mode", modeNode, "what to serve: node (Identity and Node, the DaemonSet) or controller (Identity and Controller on --endpoint, driving the RDS over SSH; see the --rds-* flags)")
	o.ctrl.register(fset)
	if err := fset.Parse(args); err != nil {
		return options{}, err
	}
	if o.mode == modeController && !flagSet(fset, "metrics-address") {
		o.metricsAddress = controllerMetricsAddress
	}
	if err := o.ctrl.check(o.mode); err != nil {
		return options{}, err
	}
	if fset.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %v", fset.Args())
	}
	if err := o.checkRegistration(); err != nil {
		return options{}, err
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

// checkRegistration checks the --kubelet-registration-* flags and fills in
// the default kubelet endpoint.
func (o *options) checkRegistration() error {
	if o.registrationPath == "" {
		if o.registrationEndpoint != "" {
			return errors.New("--kubelet-registration-endpoint needs --kubelet-registration-path")
		}
		return nil
	}
	if o.mode != modeNode {
		return fmt.Errorf("--kubelet-registration-path is for --mode=%s (kubelet registers node plugins only)", modeNode)
	}
	if base := filepath.Base(o.registrationPath); !filepath.IsAbs(o.registrationPath) || strings.HasPrefix(base, ".") {
		return fmt.Errorf("--kubelet-registration-path %q: want an absolute path whose name does not start with '.' (kubelet ignores those)", o.registrationPath)
	}
	network, sock, err := csi.ParseEndpoint(o.endpoint)
	if err != nil {
		return fmt.Errorf("--endpoint: %w", err)
	}
	if network != "unix" {
		return fmt.Errorf("--kubelet-registration-path: kubelet dials unix sockets only; --endpoint is %s", o.endpoint)
	}
	if o.registrationEndpoint == "" {
		o.registrationEndpoint = sock
	}
	network, p, err := csi.ParseEndpoint(o.registrationEndpoint)
	if err != nil || network != "unix" {
		return fmt.Errorf("--kubelet-registration-endpoint %q: want the absolute path of a unix socket", o.registrationEndpoint)
	}
	o.registrationEndpoint = p
	if o.registrationEndpoint == o.registrationPath {
		return errors.New("--kubelet-registration-endpoint and --kubelet-registration-path name the same socket")
	}
	return nil
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
	if len(args) > 0 && args[0] == drainCommand {
		return runDrain(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == checkCommand {
		return runCheck(ctx, args[1:], stdout, stderr)
	}
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
	if o.mode == modeController {
		return runController(ctx, o, log)
	}
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
	log.Info("starting", "version", version, "driver", o.driverName, "node_name", o.nodeID,
		"hostnqn", host.NQN, "hostid", host.ID, "host_identity_source", source)

	fsys := sysfs.NewFS(o.sysfsRoot)
	fab := fabrics.NewClient(o.fabricsDevice, fsys)
	obs := metrics.NewObserver()
	d, err := daemon.New(daemon.Config{
		Observer:        obs,
		FS:              fsys,
		Fabrics:         fab,
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
		Rescanner: csi.KernelRescanner{Disks: fsys, Fabrics: fab},
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
// otherwise left alone. SIGUSR1 (sent by `rds-csi drain-dead-targets`)
// lowers ctrl_loss_tmo on demand.
func serve(ctx context.Context, o options, log *slog.Logger, d lifecycle, reg prometheus.Gatherer, identity *csi.Identity, node *csi.Node) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)

	errc := make(chan error, 3)
	var serving servingCheck
	loop := metrics.LoopProgress(d, loopStallLimit(o.pollInterval))
	httpSrv, err := startMetricsServer(o.metricsAddress, reg, metrics.HealthFuncs{
		Alive: func() error { return errors.Join(loop(), serving.check()) },
		Ready: d.Ready,
	}, log, errc)
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
	checks := []func(context.Context) error{func(ctx context.Context) error { return probeCSI(ctx, o.endpoint) }}

	// Registration comes last: kubelet dials the CSI socket as soon as it
	// has registered the driver.
	stopRegistration := func() {}
	if o.registrationPath != "" {
		var regCheck func(context.Context) error
		stopRegistration, regCheck, err = startRegistration(o, log.With("component", "registration"), errc)
		if err != nil {
			gracefulStop(srv, o.shutdownTimeout, log)
			stopHTTP()
			_ = d.Close()
			return err
		}
		checks = append(checks, regCheck)
	}
	serving.set(checks)

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
	// First, so that kubelet deregisters the driver and sends no new calls
	// while the CSI server drains; the socket goes with it.
	stopRegistration()
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
// progress) and /readyz (the daemon finished its first reconcile) on addr
// with metrics.NewServer; "" disables it. It listens before it returns, so
// a bad address fails the start.
func startMetricsServer(addr string, g prometheus.Gatherer, h metrics.HealthFuncs, log *slog.Logger, errc chan<- error) (*http.Server, error) {
	if addr == "" {
		return nil, nil
	}
	srv := metrics.NewServer(addr, g, h)
	lis, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-address: %w", err)
	}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("metrics server: %w", err)
		}
	}()
	log.Info("serving metrics and health endpoints", "address", lis.Addr().String())
	return srv, nil
}

// registrationWarnAfter is how long after the registration socket appears
// the plugin warns that kubelet has not registered it (kubelet's plugin
// watcher reacts to a new socket at once).
const registrationWarnAfter = 2 * time.Minute

// warnIfUnregistered logs a warning unless kubelet has registered the driver:
// the usual cause is a registration socket outside the plugins_registry
// directory of the node's kubelet (another kubelet root directory).
func warnIfUnregistered(reg *csi.Registration, socket string, log *slog.Logger) {
	if reg.Registered() {
		return
	}
	log.Warn("kubelet has not registered the driver yet: check that --kubelet-registration-path is in the plugins_registry directory of the node's kubelet (its root directory, /var/lib/kubelet by default) and that kubelet runs",
		"socket", socket, "waited", registrationWarnAfter, "refusal", fmt.Sprint(reg.Status()))
}

// healthTimeout bounds each of /healthz's calls to the plugin's own sockets.
const healthTimeout = 3 * time.Second

// servingCheck is the part of /healthz that checks what kubelet uses: it
// fails until the servers run (the first reconcile takes a while: the
// DaemonSet's startup probe allows for it), then calls each check, with a
// fresh connection each time, so that a deleted socket file or a server that
// no longer answers is seen as kubelet would see it.
type servingCheck struct {
	checks atomic.Pointer[[]func(context.Context) error]
}

func (s *servingCheck) set(checks []func(context.Context) error) { s.checks.Store(&checks) }

func (s *servingCheck) check() error {
	checks := s.checks.Load()
	if checks == nil {
		return errors.New("not serving yet: the first reconcile is running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
	defer cancel()
	var errs []error
	for _, c := range *checks {
		errs = append(errs, c(ctx))
	}
	return errors.Join(errs...)
}

// dial returns a client connection to a unix socket path or host:port.
func dial(network, addr string) (*grpc.ClientConn, error) {
	target := addr
	if network == "unix" {
		target = "unix://" + addr
	}
	return grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// probeCSI calls CSI Probe on endpoint, as livenessprobe does: an error
// unless it answers ready.
func probeCSI(ctx context.Context, endpoint string) error {
	network, addr, err := csi.ParseEndpoint(endpoint)
	if err != nil {
		return err
	}
	conn, err := dial(network, addr)
	if err != nil {
		return fmt.Errorf("CSI endpoint %s: %w", endpoint, err)
	}
	defer conn.Close()
	resp, err := csipb.NewIdentityClient(conn).Probe(ctx, &csipb.ProbeRequest{})
	if err != nil {
		return fmt.Errorf("CSI Probe on %s: %w", endpoint, err)
	}
	if r := resp.GetReady(); r != nil && !r.GetValue() {
		return fmt.Errorf("CSI Probe on %s: not ready", endpoint)
	}
	return nil
}

// startRegistration serves kubelet's plugin registration on
// --kubelet-registration-path (see csi.Registration and csi.ListenAtomic)
// and returns what stops it (the socket goes with it) and its health check:
// the socket answers GetInfo with this driver and endpoint, and kubelet's
// last word was not a refusal.
func startRegistration(o options, log *slog.Logger, errc chan<- error) (stop func(), check func(context.Context) error, err error) {
	reg, err := csi.NewRegistration(o.driverName, o.registrationEndpoint, log)
	if err != nil {
		return nil, nil, err
	}
	lis, err := csi.ListenAtomic(o.registrationPath, csi.RegistrationSocketMode)
	if err != nil {
		return nil, nil, fmt.Errorf("--kubelet-registration-path: %w", err)
	}
	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, reg)
	go func() {
		if err := srv.Serve(lis); err != nil {
			errc <- fmt.Errorf("registration server: %w", err)
		}
	}()
	log.Info("serving kubelet plugin registration", "socket", o.registrationPath, "kubelet_endpoint", o.registrationEndpoint)
	warn := time.AfterFunc(registrationWarnAfter, func() { warnIfUnregistered(reg, o.registrationPath, log) })
	stop = func() {
		warn.Stop()
		srv.Stop()
	}
	check = func(ctx context.Context) error {
		if err := reg.Status(); err != nil {
			return err
		}
		conn, err := dial("unix", o.registrationPath)
		if err != nil {
			return fmt.Errorf("registration socket %s: %w", o.registrationPath, err)
		}
		defer conn.Close()
		info, err := registerapi.NewRegistrationClient(conn).GetInfo(ctx, &registerapi.InfoRequest{})
		if err != nil {
			return fmt.Errorf("registration socket %s: GetInfo: %w", o.registrationPath, err)
		}
		if info.GetName() != o.driverName || info.GetEndpoint() != o.registrationEndpoint {
			return fmt.Errorf("registration socket %s answers for %s at %s, not this plugin", o.registrationPath, info.GetName(), info.GetEndpoint())
		}
		return nil
	}
	return stop, check, nil
}
