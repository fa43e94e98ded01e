// Command labfailures prints, for the end of a CI log, what failed in a lab
// run: the failed guest tests' output and boot failures found in the host's
// `go test -v ./e2e/` output (make e2e and make proofs keep it in e2e.log and
// proofs.log and print only a summary). Each failure is cut to its last
// lines, and a list of the guest tests' own messages comes last. When the
// log holds no such failure (a build error, a host-side timeout), it prints
// the log's last lines instead.
//
//	go run ./e2e/cmd/labfailures [-full 4] [-lines 80] [-listed 20] [-own 10] e2e.log
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/srvlab/rds-csi/e2e"
)

func main() {
	full := flag.Int("full", 4, "failures printed with their output (the others are only listed)")
	lines := flag.Int("lines", 80, "lines of output per failure (its last ones)")
	listed := flag.Int("listed", 20, "failures in the closing list")
	own := flag.Int("own", 10, "lines of each guest test's own messages in the closing list")
	tailN := flag.Int("tail", 60, "lines of the log printed when it holds no failure message")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: labfailures [flags] e2e.log")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *full, *lines, *listed, *own, *tailN); err != nil {
		fmt.Fprintln(os.Stderr, "labfailures:", err)
		os.Exit(1)
	}
}

func run(path string, full, lines, listed, own, tailN int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fails, err := e2e.ParseLabFailures(f)
	if err != nil {
		return err
	}
	if len(fails) > 0 {
		return e2e.WriteLabFailures(os.Stdout, fails, full, lines, listed, own)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > tailN {
		all = all[len(all)-tailN:]
	}
	fmt.Printf("\n======== lab: no guest test or boot failure in %s; its last %d lines ========\n%s\n", path, len(all), strings.Join(all, "\n"))
	return nil
}
