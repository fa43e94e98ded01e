// Package controllersanity holds only a test: csi-sanity's Controller and
// Identity specs against the rds-csi Controller service (package csi) and
// the in-memory RDS emulator (routeros/rdstest) over SSH on loopback. It is
// its own package because Ginkgo runs one suite per process and package
// csi already runs the node suite.
package controllersanity
