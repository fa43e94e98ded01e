package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/srvlab/rds-csi/routeros"
	"github.com/srvlab/rds-csi/routeros/rdscheck"
)

// checkCommand is the subcommand that checks a real RDS once (package
// rdscheck): `rds-csi check --rds-address ... --volume-dir ...`.
const checkCommand = "check"

// runCheck is the check subcommand. It takes the controller's --rds-*
// flags, --volume-dir, --nqn-base and --pool, runs rdscheck.Run and prints
// its report on stdout (progress on stderr). SIGINT or SIGTERM stops the
// probes; the cleanup still runs (a second signal ends the process
// without it). It fails when the check could not run, was interrupted,
// found something the driver does not handle, or left something behind.
func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("rds-csi "+checkCommand, flag.ContinueOnError)
	fset.SetOutput(stderr)
	var c controllerOptions
	c.register(fset)
	port := fset.Int("nvme-port", 4420, "nvme-tcp-server-port of the test disk's NVMe/TCP export")
	transcript := fset.String("transcript", "", "also write the report with the raw transcript as JSON to this file")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments: %v", checkCommand, fset.Args())
	}
	if err := c.check(modeController); err != nil {
		return fmt.Errorf("%s: %w", checkCommand, err)
	}
	key, err := os.ReadFile(c.keyFile)
	if err != nil {
		return fmt.Errorf("--rds-key-file: %w", err)
	}
	known, err := os.ReadFile(c.knownHostsFile)
	if err != nil {
		return fmt.Errorf("--rds-known-hosts-file: %w", err)
	}
	ssh, err := routeros.NewSSH(routeros.SSHConfig{Address: c.sshAddress(), User: c.rdsUser, PrivateKey: key,
		KnownHosts: known, MaxSessions: 1,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	defer ssh.Close()

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-ctx.Done():
			stop() // a second signal ends the process
			fmt.Fprintln(stderr, "interrupted: removing what the check created (interrupt again to abandon that; the next check removes leftovers first)")
		case <-finished:
		}
	}()
	fmt.Fprintf(stderr, "checking %s as %s; test disks rds-csi-check-* in %s\n", c.sshAddress(), c.rdsUser, c.volumeDir)
	report, err := rdscheck.Run(ctx, rdscheck.Config{Runner: ssh, VolumeDir: c.volumeDir, Pool: c.pool,
		Port: *port, NQNBase: c.nqnBase, Progress: stderr})
	if report != nil {
		if werr := report.WriteText(stdout); werr != nil && err == nil {
			err = werr
		}
		if *transcript != "" {
			if werr := writeJSONFile(*transcript, report); werr != nil && err == nil {
				err = werr
			}
		}
	}
	switch {
	case err != nil:
		return err
	case report.Interrupted:
		return errors.New(checkCommand + ": interrupted")
	case report.Problems() > 0:
		return fmt.Errorf("%s: %d problem(s): see DIFFERS, LEFT BEHIND or CLEANUP above", checkCommand, report.Problems())
	}
	return nil
}

func writeJSONFile(path string, r *rdscheck.Report) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("--transcript: %w", err)
	}
	err = r.WriteJSON(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("--transcript: %w", err)
	}
	return nil
}
