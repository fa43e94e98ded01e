package daemon

import (
	"testing"

	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// TestConnKeyMatchesKernelRule pins the registry's "same controller" test to
// the kernel's (drivers/nvme/host/fabrics.h nvmf_ctlr_matches_baseopts and
// fabrics.c nvmf_ip_options_match, both on 6.1 and 6.12): subsystem NQN,
// hostnqn and hostid (uuid_equal) equal, traddr, trsvcid, host_traddr and
// host_iface equal as strings. The driver writes canonical values, so an
// existing controller is the same one only when sysfs shows exactly those.
func TestConnKeyMatchesKernelRule(t *testing.T) {
	const (
		nqn     = "nqn.2000-02.com.mikrotik:pvc-1"
		hostNQN = "nqn.2014-08.org.nvmexpress:uuid:5f1e0d3c-2b4a-4c6d-8e9f-0a1b2c3d4e5f"
		hostID  = "5f1e0d3c-2b4a-4c6d-8e9f-0a1b2c3d4e5f"
	)
	opts := func(edit func(o *fabrics.Options)) fabrics.Options {
		o := fabrics.Options{Traddr: "192.0.2.10", Trsvcid: 4420, NQN: nqn, HostNQN: hostNQN, HostID: hostID}
		if edit != nil {
			edit(&o)
		}
		return o
	}
	ctrl := func(edit func(c *sysfs.Controller)) sysfs.Controller {
		c := sysfs.Controller{
			Name: "nvme0", State: sysfs.StateLive, StateRaw: "live", Transport: "tcp", CntrlType: "io",
			Address:   sysfs.Address{Traddr: "192.0.2.10", Trsvcid: "4420", SrcAddr: "192.0.2.20"},
			SubsysNQN: nqn, HostNQN: hostNQN, HostID: hostID,
		}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	tests := []struct {
		name string
		o    fabrics.Options
		c    sysfs.Controller
		want bool
	}{
		{"identical", opts(nil), ctrl(nil), true},
		{"hostid differs", opts(nil), ctrl(func(c *sysfs.Controller) { c.HostID = "00000000-0000-4000-8000-000000000001" }), false},
		{"hostid upper case", opts(func(o *fabrics.Options) { o.HostID = "5F1E0D3C-2B4A-4C6D-8E9F-0A1B2C3D4E5F" }), ctrl(nil), true},
		{"hostid not given", opts(func(o *fabrics.Options) { o.HostID = "" }), ctrl(func(c *sysfs.Controller) { c.HostID = "00000000-0000-4000-8000-000000000001" }), true},
		{"hostnqn not given", opts(func(o *fabrics.Options) { o.HostNQN, o.HostID = "", "" }), ctrl(nil), true},
		// The kernel parses "04420" as octal (port 2320) and compares the strings.
		{"port with a leading zero", opts(nil), ctrl(func(c *sysfs.Controller) { c.Address.Trsvcid = "04420" }), false},
		{"ipv4-mapped traddr", opts(nil), ctrl(func(c *sysfs.Controller) { c.Address.Traddr = "::ffff:192.0.2.10" }), false},
		{"non-canonical traddr in sysfs", opts(func(o *fabrics.Options) { o.Traddr = "fd00::10" }), ctrl(func(c *sysfs.Controller) { c.Address.Traddr = "fd00:0::10" }), false},
		{"non-canonical traddr in options", opts(func(o *fabrics.Options) { o.Traddr = "fd00:0000::0010" }), ctrl(func(c *sysfs.Controller) { c.Address.Traddr = "fd00::10" }), true},
		{"host_traddr only on the controller", opts(nil), ctrl(func(c *sysfs.Controller) { c.Address.HostTraddr = "192.0.2.20" }), false},
		{"host_iface differs", opts(func(o *fabrics.Options) { o.HostIface = "eth1" }), ctrl(func(c *sysfs.Controller) { c.Address.HostIface = "eth2" }), false},
		{"deleting", opts(nil), ctrl(func(c *sysfs.Controller) { c.State = sysfs.StateDeleting }), false},
		{"discovery", opts(nil), ctrl(func(c *sysfs.Controller) { c.CntrlType = "discovery" }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keyOf(&tt.o).matches(&tt.c); got != tt.want {
				t.Errorf("registry key matches = %v, want %v (the kernel's answer)", got, tt.want)
			}
		})
	}
}

// TestAttachIgnoresControllerOfAnotherHostID: a controller with our host NQN
// but another host ID is not the one a connect with our identity would get
// (the kernel compares the hostid too), so Attach does not reuse it.
func TestAttachIgnoresControllerOfAnotherHostID(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{{
		Instance: 0, NQN: volNQN(1),
		Controllers: []sysfstest.Controller{{Instance: 0, Attrs: map[string]string{
			"hostnqn": hostNQN, "hostid": "00000000-0000-4000-8000-0000000000ff"}}},
		Namespaces: []sysfstest.Namespace{{NSID: 1}},
	}}})
	d := e.start()
	a, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 1))
	if err != nil {
		t.Fatal(err)
	}
	if a.Controller == "nvme0" || a.Adopted {
		t.Errorf("attachment %+v reuses nvme0, whose hostid is not the spec's", a)
	}
	if n := e.conn.connectCount(); n != 1 {
		t.Errorf("%d connects, want 1", n)
	}
}
