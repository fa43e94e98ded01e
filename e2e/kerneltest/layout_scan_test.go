//go:build linux

package kerneltest

import (
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/sysfs"
)

// TestLayoutScan parses the live sysfs tree of the layout scenario (native
// multipath on or off, per boot) with the sysfs package and checks it against
// what the scenario built.
func TestLayoutScan(t *testing.T) {
	tg := target(t)
	teardown := layoutScenario(t, tg)
	defer teardown()
	fs := sysfs.NewFS("/sys")

	mp, err := fs.Multipath()
	must(t, err)
	if mp != nativeMultipath() {
		t.Fatalf("Multipath() = %v, boot asked for %v", mp, nativeMultipath())
	}
	ctrls, err := fs.Controllers()
	must(t, err)
	subs, err := fs.Subsystems()
	must(t, err)

	var io, disc, connecting, live int
	bySub := map[string][]sysfs.Controller{}
	for _, c := range ctrls {
		if c.Transport != "tcp" || c.Address.Traddr != "127.0.0.1" || c.Address.Trsvcid == "" {
			t.Errorf("%s: transport %q address %+v", c.Name, c.Transport, c.Address)
		}
		if c.Subsystem == "" {
			t.Errorf("%s: no subsystem links to it", c.Name)
		}
		bySub[c.SubsysNQN] = append(bySub[c.SubsysNQN], c)
		switch c.CntrlType {
		case "io":
			io++
		case "discovery":
			disc++
		default:
			t.Errorf("%s: cntrltype %q", c.Name, c.CntrlType)
		}
		switch c.State {
		case sysfs.StateLive:
			live++
			if c.Address.SrcAddr != "127.0.0.1" {
				t.Errorf("%s live without src_addr: %+v", c.Name, c.Address)
			}
		case sysfs.StateConnecting:
			connecting++
			if c.Address.SrcAddr != "" {
				t.Errorf("%s connecting but src_addr %q", c.Name, c.Address.SrcAddr)
			}
			if c.CtrlLossTmo != -1 || c.ReconnectDelay != 1 || c.KATO != 7 {
				t.Errorf("%s: ctrl_loss_tmo %d reconnect_delay %d kato %d, want -1 1 7", c.Name, c.CtrlLossTmo, c.ReconnectDelay, c.KATO)
			}
		}
	}
	if io != 3 || disc != 1 || connecting != 1 || live != 3 {
		t.Errorf("io %d discovery %d connecting %d live %d; want 3 1 1 3", io, disc, connecting, live)
	}

	for _, s := range subs {
		if s.Type == "discovery" {
			continue
		}
		n, err := fs.FindNamespace(s.NQN, 1)
		if err != nil {
			t.Errorf("FindNamespace(%s, 1): %v", s.NQN, err)
			continue
		}
		if n.Hidden || n.NSID != 1 || n.SizeBytes() != 64<<20 {
			t.Errorf("%s: namespace %+v", s.NQN, n)
		}
		underSubsystem := n.Parent == s.Name
		if nativeMultipath() != underSubsystem {
			t.Errorf("multipath %v: %s served by %s under %s", nativeMultipath(), s.NQN, n.Name, n.Parent)
		}
		if len(s.Controllers) != len(bySub[s.NQN]) {
			t.Errorf("%s lists controllers %v, scan found %d", s.Name, s.Controllers, len(bySub[s.NQN]))
		}
		if strings.Contains(s.NQN, "multi") {
			if len(s.Controllers) != 2 {
				t.Errorf("%s: %d controllers, want 2 (two paths)", s.NQN, len(s.Controllers))
			}
			if want := "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"; !strings.EqualFold(n.UUID, want) {
				t.Errorf("%s: uuid %q, want %s (the target's)", n.Name, n.UUID, want)
			}
		}
	}
}
