// Package metrics exports the node daemon's state to Prometheus and serves
// it over HTTP together with the liveness and readiness probes.
//
// It only reads. A Collector copies the daemon's registry (controllers,
// volumes and counters, through Source) once per scrape and turns it into
// constant metrics: no sysfs walk, no exec and no /dev scan happens at
// scrape time, so a scrape costs one registry copy. An Observer implements
// daemon.Observer and keeps the two histograms that need every event rather
// than a count (connect durations and outage durations).
//
// # Names and labels
//
// Every name starts with the namespace rds_csi, carries its unit (_seconds)
// and counters end in _total. Per-controller series carry the labels
// controller, subsysnqn, traddr and trsvcid (traddr in fabrics.CanonicalIP form,
// so that series of one target from many nodes aggregate); their values come
// only from the controllers in the registry, so the number of series follows
// the number of controllers on the node. Every other label is a fixed enum
// (state, owned, result, class), and its values are exported from the first
// scrape on, with zero values, so that rate() and increase() see the first
// event.
//
// Controller state is a state set: rds_csi_controller_state has one series
// per state of sysfs.States() (a state the kernel reports that package sysfs
// does not know is "unknown"), 1 for the current state and 0 for the others.
//
// # The controller
//
// In --mode=controller a RouterOS (NewControllerRegistry) counts what the
// controller does with its RDS: commands by verb and result
// (routeros.ErrorClass), their durations, SSH connections, connection
// failures, waits for a session, and rds_csi_routeros_up. For(addr) gives
// the observer of one RDS, labelled rds=addr: its Command method is the
// routeros.Observer of the Client, and it is the SSHConfig's Events.
//
// # Wiring
//
//	obs := metrics.NewObserver()
//	d, err := daemon.New(daemon.Config{..., Observer: obs})
//	reg := metrics.NewRegistry(d, obs, version)
//	srv := metrics.NewServer(addr, reg, metrics.HealthFuncs{
//		Alive: metrics.LoopProgress(d, 2*time.Minute),
//		Ready: d.Ready,
//	})
package metrics
