//go:build linux

package kerneltest

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/e2e/nvmet"
	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs"
)

// The lab's host identity. 6.12 refuses a hostid reused with another hostnqn,
// so every test uses this pair unless it tests exactly that.
const (
	labHostID  = "2b4ab05b-6a8f-4e0e-9a2c-1f4e5d6c7b8a"
	labHostNQN = "nqn.2014-08.org.nvmexpress:uuid:" + labHostID
)

func client() (*fabrics.Client, sysfs.FS) {
	fs := sysfs.NewFS("/sys")
	return fabrics.NewClient("", fs), fs
}

func baseOpts(nqn string, port int) fabrics.Options {
	return fabrics.Options{
		Traddr:  "127.0.0.1",
		Trsvcid: port,
		NQN:     nqn,
		HostNQN: labHostNQN,
		HostID:  labHostID,
	}
}

// connect connects and disconnects at the end of the test.
func connect(t *testing.T, c *fabrics.Client, o fabrics.Options) fabrics.Controller {
	t.Helper()
	ctrl, err := c.Connect(context.Background(), o)
	if err != nil {
		t.Fatalf("Connect(%s): %v", o, err)
	}
	t.Cleanup(func() {
		if err := c.Disconnect(ctrl.Name); err != nil && !errors.Is(err, fabrics.ErrControllerGone) {
			t.Errorf("Disconnect(%s): %v", ctrl.Name, err)
		}
	})
	return ctrl
}

func controllerNames(t *testing.T, fs sysfs.FS) []string {
	t.Helper()
	cs, err := fs.Controllers()
	must(t, err)
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// noControllerLeft checks that a failed connect left no controller behind
// (the kernel adds and removes one when the transport was reached).
func noControllerLeft(t *testing.T, fs sysfs.FS, before []string) {
	t.Helper()
	eventually(t, 5*time.Second, "no new controller", func() (bool, string) {
		now := controllerNames(t, fs)
		return strings.Join(now, ",") == strings.Join(before, ","), strings.Join(now, ",")
	})
}

func waitState(t *testing.T, fs sysfs.FS, name string, want sysfs.State, within time.Duration) sysfs.Controller {
	t.Helper()
	var last sysfs.Controller
	eventually(t, within, name+" "+want.String(), func() (bool, string) {
		c, err := fs.Controller(name)
		if err != nil {
			return false, err.Error()
		}
		last = c
		return c.State == want, c.StateRaw
	})
	return last
}

func TestConnectReadBack(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "readback")
	c, fs := client()
	o := baseOpts(nqn, port)
	o.CtrlLossTmo = fabrics.Int(-1)
	o.ReconnectDelay = fabrics.Int(2)
	o.KeepAliveTmo = fabrics.Int(7)
	o.FastIOFailTmo = fabrics.Int(3)
	o.QueueSize = fabrics.Int(64)
	o.NrIOQueues = fabrics.Int(1)
	o.HdrDigest = true
	o.DataDigest = true
	ctrl := connect(t, c, o)
	if ctrl.Adopted {
		t.Errorf("a fresh connect reported Adopted")
	}
	got, err := fs.Controller(ctrl.Name)
	must(t, err)
	checks := []struct {
		what      string
		got, want any
	}{
		{"state", got.State, sysfs.StateLive},
		{"transport", got.Transport, "tcp"},
		{"subsysnqn", got.SubsysNQN, nqn},
		{"hostnqn", got.HostNQN, labHostNQN},
		{"hostid", got.HostID, labHostID},
		{"traddr", got.Address.Traddr, "127.0.0.1"},
		{"trsvcid", got.Address.Trsvcid, strconv.Itoa(port)},
		{"src_addr", got.Address.SrcAddr, "127.0.0.1"},
		{"cntlid", got.CntlID, ctrl.CntlID},
		{"instance", got.Instance, ctrl.Instance},
		{"ctrl_loss_tmo", got.CtrlLossTmo, -1},
		{"reconnect_delay", got.ReconnectDelay, 2},
		{"kato", got.KATO, 7},
		{"fast_io_fail_tmo", got.FastIOFailTmo, 3},
		{"sqsize", got.SQSize, 63},
		{"queue_count", got.QueueCount, 2},
		{"cntrltype", got.CntrlType, "io"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s: sysfs says %v, want %v", ck.what, ck.got, ck.want)
		}
	}
	// The namespace's block device follows the connect by milliseconds.
	eventually(t, 5*time.Second, "namespace disk", func() (bool, string) {
		n, err := fs.FindNamespace(nqn, 1)
		if err != nil {
			return false, err.Error()
		}
		_, err = os.Stat(n.DevPath())
		return err == nil && n.SizeBytes() == 64<<20, n.Name
	})
}

func TestSupportedOptions(t *testing.T) {
	requireLab(t)
	c, _ := client()
	set, err := c.SupportedOptions(context.Background())
	must(t, err)
	for _, name := range []string{"transport", "traddr", "trsvcid", "nqn", "hostnqn", "hostid", "ctrl_loss_tmo",
		"reconnect_delay", "keep_alive_tmo", "fast_io_fail_tmo", "duplicate_connect", "hdr_digest", "data_digest", "dhchap_secret"} {
		if !set.Has(name) {
			t.Errorf("kernel %s: probe lacks %q: %v", kernelSeries(), name, set.Names())
		}
	}
	wantTLS := kernelSeries() != "6.1"
	for _, name := range []string{"tls", "keyring", "tls_key"} {
		if set.Has(name) != wantTLS {
			t.Errorf("kernel %s: Has(%q) = %v, want %v", kernelSeries(), name, set.Has(name), wantTLS)
		}
	}
}

func TestUnsupportedOptionRefusedUpFront(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "tls")
	c, fs := client()
	if kernelSeries() != "6.1" {
		t.Skip("every option this test could use is supported by " + kernelSeries())
	}
	before := controllerNames(t, fs)
	o := baseOpts(nqn, port)
	o.TLS = true
	_, err := c.Connect(context.Background(), o)
	if !errors.Is(err, fabrics.ErrUnsupportedOption) {
		t.Fatalf("tls on 6.1: err = %v, want ErrUnsupportedOption", err)
	}
	noControllerLeft(t, fs, before)
}

// errnoCase is one row of the kernel's write() errno table.
type errnoCase struct {
	sentinel  error
	errno     syscall.Errno
	retryable bool
}

func checkErrno(t *testing.T, err error, want errnoCase) {
	t.Helper()
	if err == nil {
		t.Fatalf("connect succeeded, want %v", want.errno)
	}
	if !errors.Is(err, want.sentinel) {
		t.Errorf("err = %v: not %v", err, want.sentinel)
	}
	if !errors.Is(err, want.errno) {
		t.Errorf("err = %v: errno is not %v (%d)", err, want.errno.Error(), int(want.errno))
	}
	if fabrics.Retryable(err) != want.retryable {
		t.Errorf("Retryable(%v) = %v, want %v", err, fabrics.Retryable(err), want.retryable)
	}
}

func TestErrnoUnknownNQN(t *testing.T) {
	tg := target(t)
	_, port := simpleTarget(t, tg, "known")
	c, fs := client()
	before := controllerNames(t, fs)
	_, err := c.Connect(context.Background(), baseOpts(uniqueNQN("unknown"), port))
	checkErrno(t, err, errnoCase{fabrics.ErrRejected, syscall.EIO, false})
	noControllerLeft(t, fs, before)
}

func TestErrnoHostNotAllowed(t *testing.T) {
	tg := target(t)
	nqn, port := uniqueNQN("closed"), nextPort()
	dev, err := tg.NullBlk(16)
	must(t, err)
	must(t, tg.AddSubsystem(nvmet.Subsystem{NQN: nqn, AllowAnyHost: false}))
	must(t, tg.AddNamespace(nqn, nvmet.Namespace{NSID: 1, Device: dev}))
	must(t, tg.AddPort(nvmet.Port{ID: port, Traddr: "127.0.0.1", Trsvcid: port}))
	must(t, tg.Link(port, nqn))
	c, fs := client()
	before := controllerNames(t, fs)
	_, err = c.Connect(context.Background(), baseOpts(nqn, port))
	checkErrno(t, err, errnoCase{fabrics.ErrRejected, syscall.EIO, false})
	noControllerLeft(t, fs, before)
}

func TestErrnoRefused(t *testing.T) {
	requireLab(t)
	c, fs := client()
	before := controllerNames(t, fs)
	_, err := c.Connect(context.Background(), baseOpts(uniqueNQN("nobody"), 4399))
	checkErrno(t, err, errnoCase{fabrics.ErrUnreachable, syscall.ECONNREFUSED, true})
	noControllerLeft(t, fs, before)
}

// fakePeer listens on loopback; each accepted connection is handed to serve.
func fakePeer(t *testing.T, serve func(net.Conn)) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go serve(conn)
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

func TestErrnoPeerResets(t *testing.T) {
	requireLab(t)
	port := fakePeer(t, func(c net.Conn) {
		// Read the ICReq, then close with a reset.
		buf := make([]byte, 128)
		_, _ = c.Read(buf)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	})
	c, fs := client()
	before := controllerNames(t, fs)
	_, err := c.Connect(context.Background(), baseOpts(uniqueNQN("reset"), port))
	checkErrno(t, err, errnoCase{fabrics.ErrUnreachable, syscall.ECONNRESET, true})
	noControllerLeft(t, fs, before)
}

func TestErrnoSilentPeer(t *testing.T) {
	requireLab(t)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	port := fakePeer(t, func(c net.Conn) {
		<-done // accept, never answer
		c.Close()
	})
	c, fs := client()
	before := controllerNames(t, fs)
	_, err := c.Connect(context.Background(), baseOpts(uniqueNQN("silent"), port))
	// The kernel gives up after its ~10 s ICResp timeout with EAGAIN
	// (EWOULDBLOCK); ETIMEDOUT is the same class.
	if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("err = %v, want EAGAIN or ETIMEDOUT", err)
	}
	if !errors.Is(err, fabrics.ErrUnreachable) || !fabrics.Retryable(err) {
		t.Errorf("err = %v: want ErrUnreachable and retryable", err)
	}
	noControllerLeft(t, fs, before)
}

func TestErrnoHostIfaceMissing(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "iface")
	c, fs := client()
	before := controllerNames(t, fs)
	o := baseOpts(nqn, port)
	o.HostIface = "nosuch0"
	_, err := c.Connect(context.Background(), o)
	checkErrno(t, err, errnoCase{fabrics.ErrNoDevice, syscall.ENODEV, false})
	noControllerLeft(t, fs, before)
}

// TestKernelEINVAL covers the host identity rules 6.12 enforces and 6.1 does
// not: a hostnqn given without a hostid, and a hostid reused with another
// hostnqn. Our validation lets both through (they depend on the kernel), so
// this is the kernel's own EINVAL reaching the caller as ErrInvalidOption.
func TestKernelEINVAL(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "einval")
	c, fs := client()
	connect(t, c, baseOpts(nqn, port)) // registers labHostNQN with labHostID

	otherNQN := "nqn.2024-01.io.srvlab.lab:host-other"
	cases := []struct {
		name string
		opts fabrics.Options
	}{
		{"hostnqn without hostid", fabrics.Options{Traddr: "127.0.0.1", Trsvcid: port, NQN: nqn, HostNQN: otherNQN}},
		{"hostid reused with another hostnqn", fabrics.Options{Traddr: "127.0.0.1", Trsvcid: port, NQN: nqn, HostNQN: otherNQN, HostID: labHostID}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := controllerNames(t, fs)
			ctrl, err := c.Connect(context.Background(), tc.opts)
			if kernelSeries() == "6.1" {
				if err != nil {
					t.Fatalf("6.1 accepts this: err = %v", err)
				}
				must(t, c.Disconnect(ctrl.Name))
				return
			}
			checkErrno(t, err, errnoCase{fabrics.ErrInvalidOption, syscall.EINVAL, false})
			noControllerLeft(t, fs, before)
		})
	}
}

// TestInjectionNeverReachesKernel: values that would smuggle options are
// refused before anything is written.
func TestInjectionNeverReachesKernel(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "inject")
	c, fs := client()
	before := controllerNames(t, fs)
	for _, o := range []fabrics.Options{
		{Traddr: "127.0.0.1", Trsvcid: port, NQN: nqn + ",duplicate_connect"},
		{Traddr: "127.0.0.1", Trsvcid: port, NQN: nqn, HostNQN: labHostNQN + ",hostid=" + labHostID},
		{Traddr: "127.0.0.1,trsvcid=" + strconv.Itoa(port), NQN: nqn},
		{Traddr: "127.0.0.1", Trsvcid: port, NQN: nqn + "\nctrl_loss_tmo=0"},
		{Traddr: "127.0.0.1", Trsvcid: port, NQN: nqn, HostIface: "lo,host_traddr=1.2.3.4"},
	} {
		_, err := c.Connect(context.Background(), o)
		if !errors.Is(err, fabrics.ErrInvalidOption) {
			t.Errorf("Connect(%q): err = %v, want ErrInvalidOption", o.Redacted(), err)
		}
	}
	noControllerLeft(t, fs, before)
}

func TestAdoptOnEALREADY(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "dup")
	c, fs := client()
	o := baseOpts(nqn, port)
	o.CtrlLossTmo = fabrics.Int(-1)
	o.ReconnectDelay = fabrics.Int(1)
	first := connect(t, c, o)
	second, err := c.Connect(context.Background(), o)
	must(t, err)
	if !second.Adopted || second.Name != first.Name {
		t.Fatalf("second connect = %+v, want the first controller %s adopted", second, first.Name)
	}
	// While the controller is reconnecting the kernel still says EALREADY.
	must(t, tg.Unlink(port, nqn))
	waitState(t, fs, first.Name, sysfs.StateConnecting, 5*time.Second)
	third, err := c.Connect(context.Background(), o)
	must(t, err)
	if !third.Adopted || third.Name != first.Name {
		t.Fatalf("connect while reconnecting = %+v, want %s adopted", third, first.Name)
	}
	must(t, tg.Relink(port, nqn))
	waitState(t, fs, first.Name, sysfs.StateLive, 10*time.Second)
	if n := controllerNames(t, fs); len(n) != 1 {
		t.Errorf("controllers %v, want exactly one", n)
	}
}

func TestIPv6(t *testing.T) {
	tg := target(t)
	nqn, port := uniqueNQN("v6"), nextPort()
	dev, err := tg.NullBlk(16)
	must(t, err)
	must(t, tg.AddSubsystem(nvmet.Subsystem{NQN: nqn, AllowAnyHost: true}))
	must(t, tg.AddNamespace(nqn, nvmet.Namespace{NSID: 1, Device: dev}))
	must(t, tg.AddPort(nvmet.Port{ID: port, Traddr: "::1", Trsvcid: port}))
	must(t, tg.Link(port, nqn))
	c, fs := client()
	o := baseOpts(nqn, port)
	o.Traddr = "::1"
	ctrl := connect(t, c, o)
	got, err := fs.Controller(ctrl.Name)
	must(t, err)
	if got.Address.Traddr != "::1" || got.Address.SrcAddr != "::1" {
		t.Errorf("address %+v, want traddr and src_addr ::1", got.Address)
	}
	o.Traddr = "0:0::1" // same address, other spelling: still the same controller
	again, err := c.Connect(context.Background(), o)
	must(t, err)
	if again.Name != ctrl.Name {
		t.Errorf("connect to 0:0::1 = %+v, want %s", again, ctrl.Name)
	}
}

func TestDisconnect(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "disc")
	c, fs := client()
	ctrl := connect(t, c, baseOpts(nqn, port))
	must(t, c.Disconnect(ctrl.Name))
	// delete_controller on a live controller is synchronous.
	if _, err := fs.Controller(ctrl.Name); !errors.Is(err, sysfs.ErrNotExist) {
		t.Fatalf("after Disconnect: Controller(%s) err = %v, want ErrNotExist", ctrl.Name, err)
	}
	if err := c.Disconnect(ctrl.Name); !errors.Is(err, fabrics.ErrControllerGone) {
		t.Fatalf("second Disconnect: err = %v, want ErrControllerGone", err)
	}
}

func TestUpdateTimeouts(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "update")
	c, fs := client()
	ctrl := connect(t, c, baseOpts(nqn, port))
	cases := []struct {
		name        string
		set         fabrics.Timeouts
		wantDelay   int
		wantLoss    int
		wantFailFst int
	}{
		{"forever", fabrics.Timeouts{ReconnectDelay: fabrics.Int(5), CtrlLossTmo: fabrics.Int(-1), FastIOFailTmo: fabrics.Int(20)}, 5, -1, 20},
		{"exact multiple", fabrics.Timeouts{ReconnectDelay: fabrics.Int(3), CtrlLossTmo: fabrics.Int(30), FastIOFailTmo: fabrics.Int(-1)}, 3, 30, -1},
		// ctrl_loss_tmo is stored as ceil(30/7) = 5 attempts: it reads back as 35.
		{"rounded to attempts", fabrics.Timeouts{ReconnectDelay: fabrics.Int(7), CtrlLossTmo: fabrics.Int(30)}, 7, 35, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			must(t, c.UpdateTimeouts(ctrl.Name, tc.set))
			got, err := fs.Controller(ctrl.Name)
			must(t, err)
			if got.ReconnectDelay != tc.wantDelay || got.CtrlLossTmo != tc.wantLoss || got.FastIOFailTmo != tc.wantFailFst {
				t.Errorf("read back reconnect_delay %d ctrl_loss_tmo %d fast_io_fail_tmo %d, want %d %d %d",
					got.ReconnectDelay, got.CtrlLossTmo, got.FastIOFailTmo, tc.wantDelay, tc.wantLoss, tc.wantFailFst)
			}
		})
	}
	if err := c.UpdateTimeouts("nvme999", fabrics.Timeouts{ReconnectDelay: fabrics.Int(2)}); !errors.Is(err, fabrics.ErrControllerGone) {
		t.Errorf("UpdateTimeouts on a missing controller: err = %v, want ErrControllerGone", err)
	}
}

// TestPortUnlinkAndRelink: live -> connecting (no src_addr) -> live.
func TestPortUnlinkAndRelink(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "flap")
	c, fs := client()
	o := baseOpts(nqn, port)
	o.CtrlLossTmo = fabrics.Int(-1)
	o.ReconnectDelay = fabrics.Int(1)
	ctrl := connect(t, c, o)
	must(t, tg.Unlink(port, nqn))
	down := waitState(t, fs, ctrl.Name, sysfs.StateConnecting, 5*time.Second)
	if down.Address.SrcAddr != "" {
		t.Errorf("connecting with src_addr %q", down.Address.SrcAddr)
	}
	must(t, tg.Relink(port, nqn))
	up := waitState(t, fs, ctrl.Name, sysfs.StateLive, 10*time.Second)
	if up.Address.SrcAddr != "127.0.0.1" {
		t.Errorf("live again with src_addr %q", up.Address.SrcAddr)
	}
}

// TestCtrlLossExpiry: with ctrl_loss_tmo=2 the kernel removes the controller
// by itself once the target is gone; disconnecting it then says gone.
func TestCtrlLossExpiry(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "expire")
	c, fs := client()
	o := baseOpts(nqn, port)
	o.CtrlLossTmo = fabrics.Int(2)
	o.ReconnectDelay = fabrics.Int(1)
	ctrl := connect(t, c, o)
	must(t, tg.Unlink(port, nqn))
	eventually(t, 15*time.Second, ctrl.Name+" removed", func() (bool, string) {
		cur, err := fs.Controller(ctrl.Name)
		if errors.Is(err, sysfs.ErrNotExist) {
			return true, "gone"
		}
		if err != nil {
			return false, err.Error()
		}
		return false, cur.StateRaw
	})
	if err := c.Disconnect(ctrl.Name); !errors.Is(err, fabrics.ErrControllerGone) {
		t.Errorf("Disconnect after expiry: err = %v, want ErrControllerGone", err)
	}
}
