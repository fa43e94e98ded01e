// Command demo is the README's main job: it boots the QEMU lab (a stock
// Debian kernel with the kernel's own NVMe/TCP target on loopback), starts
// the RDS emulator there (RouterOS over SSH, disks as real files exported by
// nvmet), runs the rds-csi binary inside it as the controller and as the
// node daemon, and drives them through their CSI gRPC sockets: CreateVolume,
// stage and publish the volume as ext4, write data, unlink the target port,
// watch volume health and the reconnect metrics, relink, verify the data,
// unpublish, unstage and DeleteVolume. It prints what happens as it happens
// and a short summary, and exits non-zero if any step fails.
//
//	go run ./e2e/cmd/demo [-kernel 6.12]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/srvlab/rds-csi/e2e"
)

func main() {
	series := flag.String("kernel", "6.12", "kernel series to boot: 6.1 or 6.12")
	verbose := flag.Bool("v", false, "show the whole guest console (kernel messages included)")
	flag.Parse()
	if err := run(*series, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(series string, verbose bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	say := func(format string, a ...any) { fmt.Printf("demo: "+format+"\n", a...) }

	say("preparing the %s kernel (first run downloads it with apt)", series)
	k, err := e2e.PrepareKernel(ctx, series)
	if err != nil {
		return err
	}
	runDir, err := os.MkdirTemp("", "rds-csi-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(runDir)
	say("building rds-csi and the demo client (static, CGO_ENABLED=0)")
	if err := e2e.BuildBinary(ctx, ".", filepath.Join(runDir, "rds-csi")); err != nil {
		return err
	}
	if err := e2e.BuildBinary(ctx, "./e2e/cmd/demo-guest", filepath.Join(runDir, "demo-guest")); err != nil {
		return err
	}
	job := fmt.Sprintf("cd /out\n./demo-guest -rds-csi %s\n", filepath.Join(runDir, "rds-csi"))
	say("booting %s under QEMU (TCG)", k.Version)
	var console io.Writer = os.Stdout
	if !verbose {
		console = &guestLines{w: os.Stdout}
	}
	start := time.Now()
	res, err := e2e.VM{Kernel: k, Multipath: true, RunDir: runDir, Job: job, Console: console}.Boot(ctx)
	if err != nil {
		return err
	}
	say("guest finished in %s", time.Since(start).Round(100*time.Millisecond))
	if res.JobExit != 0 {
		return fmt.Errorf("the demo failed inside the guest (exit %d); rerun with -v for the whole console", res.JobExit)
	}
	return nil
}

// guestLines passes through only the demo's own lines ("| ...") and the
// lab's status lines, hiding kernel and daemon chatter.
type guestLines struct {
	w   io.Writer
	buf []byte
}

func (g *guestLines) Write(p []byte) (int, error) {
	g.buf = append(g.buf, p...)
	for {
		i := strings.IndexByte(string(g.buf), '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(g.buf[:i]), "\r")
		g.buf = g.buf[i+1:]
		if strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "rdslab: up") {
			fmt.Fprintln(g.w, line)
		}
	}
	return len(p), nil
}
