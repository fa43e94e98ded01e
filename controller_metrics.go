package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/srvlab/rds-csi/metrics"
	"github.com/srvlab/rds-csi/routeros"
)

// controllerMetricsAddress is --metrics-address's default with
// --mode=controller: not the node plugin's 9809 (nor 9808 and 9810, its
// sidecars'), so both can run on one host.
const controllerMetricsAddress = ":9811"

// flagSet reports whether the flag name was given on the command line.
func flagSet(fset *flag.FlagSet, name string) bool {
	set := false
	fset.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// serveControllerMetrics serves the controller's registry (ros, build info,
// Go and process metrics) with /healthz and /readyz on --metrics-address,
// as the node does ("" disables it). The returned func stops the server.
func serveControllerMetrics(o options, ros *metrics.RouterOS, errc chan<- error, log *slog.Logger) (func(), error) {
	srv, err := startMetricsServer(o.metricsAddress, metrics.NewControllerRegistry(ros, version), metrics.HealthFuncs{}, log, errc)
	if err != nil || srv == nil {
		return func() {}, err
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
}

// pingRDS checks that the RDS answers (an SSH session opened and closed)
// at once and then every interval until ctx ends, so that
// rds_csi_routeros_up follows the RDS when no CSI call does; c's Observer
// counts the pings. A change between answering and not is logged once.
// interval 0 disables it.
func pingRDS(ctx context.Context, c *routeros.Client, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var last error
	first := true
	for {
		pctx, cancel := context.WithTimeout(ctx, min(interval, 30*time.Second))
		err := c.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && (first || last == nil):
			log.Warn("the RDS does not answer", "error", err.Error())
		case err == nil && !first && last != nil:
			log.Info("the RDS answers again")
		}
		last, first = err, false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
