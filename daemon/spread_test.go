package daemon

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

func testKey(host string, vol int) connKey {
	o := fabrics.Options{Traddr: "10.0.0.5", Trsvcid: 4420, NQN: volNQN(vol), HostNQN: host}
	return keyOf(&o)
}

func hostN(i int) (nqn, id string) {
	id = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
	return "nqn.2014-08.org.nvmexpress:uuid:" + id, id
}

// TestSpreadOffsetDeterministicBounded: the same host and connection give
// the same offset every time (it is a pure function of them), always in
// 0..bound; a zero bound is always 0.
func TestSpreadOffsetDeterministicBounded(t *testing.T) {
	for _, bound := range []int{0, 1, 4, 9, MaxReconnectSpread} {
		seen := map[int]bool{}
		for h := range 50 {
			nqn, id := hostN(h)
			for v := range 20 {
				k := testKey(nqn, v)
				o := spreadOffset(id, k, bound)
				if o < 0 || o > bound {
					t.Fatalf("bound %d: offset %d out of 0..%d", bound, o, bound)
				}
				if again := spreadOffset(id, testKey(nqn, v), bound); again != o {
					t.Fatalf("bound %d: offset %d then %d for the same host and connection", bound, o, again)
				}
				seen[o] = true
			}
		}
		// 1000 controllers cover every offset of a small bound.
		if bound <= 9 && len(seen) != bound+1 {
			t.Errorf("bound %d: %d distinct offsets over 1000 controllers, want all %d", bound, len(seen), bound+1)
		}
	}
	// A known value: the offset must not change between releases (it
	// would move every controller's timer on an upgrade for nothing).
	nqn, id := hostN(1)
	if got := spreadOffset(id, testKey(nqn, 1), 4); got != wantKnownOffset {
		t.Errorf("offset of host 1, volume 1, bound 4 = %d, want %d (the hash changed)", got, wantKnownOffset)
	}
}

// wantKnownOffset pins spreadOffset's hash (SHA-256 of the fields).
const wantKnownOffset = 2

// TestSpreadOffsetDiffersAcrossHosts: one volume seen from 200 nodes gets
// every offset, about equally often, and so do the volumes of one node.
func TestSpreadOffsetDiffersAcrossHosts(t *testing.T) {
	const bound, n = 4, 200
	byHost := make([]int, bound+1)
	byVol := make([]int, bound+1)
	one, oneID := hostN(0)
	for i := range n {
		nqn, id := hostN(i)
		byHost[spreadOffset(id, testKey(nqn, 7), bound)]++
		byVol[spreadOffset(oneID, testKey(one, i), bound)]++
	}
	for o := range bound + 1 {
		// Uniform is 40 each; a hash that ignored the host would put all
		// 200 on one offset.
		if byHost[o] < 20 || byHost[o] > 60 {
			t.Errorf("offset %d taken by %d of %d hosts for one volume: %v", o, byHost[o], n, byHost)
		}
		if byVol[o] < 20 || byVol[o] > 60 {
			t.Errorf("offset %d taken by %d of %d volumes of one host: %v", o, byVol[o], n, byVol)
		}
	}
	// The host id alone changes it too (same host NQN, other id).
	differ := false
	for i := range 20 {
		_, id := hostN(i + 1000)
		if spreadOffset(id, testKey(one, 7), bound) != spreadOffset(oneID, testKey(one, 7), bound) {
			differ = true
		}
	}
	if !differ {
		t.Error("the host id does not enter the offset")
	}
}

// TestSpreadCtrlLossTmo: the ctrl_loss_tmo written with a spread delay
// makes the kernel (DIV_ROUND_UP(ctrl_loss_tmo, reconnect_delay) attempts,
// the last at attempts*delay) give up no earlier than asked and less than
// one delay later; -1 and 0 keep their meaning.
func TestSpreadCtrlLossTmo(t *testing.T) {
	for _, tc := range []struct {
		tmo, delay, want int
	}{
		{-1, 7, -1},
		{-5, 7, -1}, // any negative is forever
		{0, 7, 0},   // remove at the first failure
		{600, 5, 600},
		{600, 6, 600},
		{600, 7, 602}, // 86 attempts: 595 would give up early
		{7, 5, 10},
		{1, 9, 9},
		{9, 9, 9},
		{10, 9, 18},
		{maxCtrlLossTmo, 1, maxCtrlLossTmo},
		{maxCtrlLossTmo, 7, maxCtrlLossTmo - maxCtrlLossTmo%7}, // 2147483647 is 7*306783378+1: one attempt fewer fits an int
	} {
		t.Run(fmt.Sprintf("%d/%d", tc.tmo, tc.delay), func(t *testing.T) {
			got := spreadCtrlLossTmo(tc.tmo, tc.delay)
			if got != tc.want {
				t.Fatalf("spreadCtrlLossTmo(%d, %d) = %d, want %d", tc.tmo, tc.delay, got, tc.want)
			}
			if tc.tmo <= 0 {
				return
			}
			attempts := (got + tc.delay - 1) / tc.delay // the kernel's max_reconnects
			giveUp := attempts * tc.delay
			if giveUp != got {
				t.Errorf("the kernel shows %d, not the %d written", giveUp, got)
			}
			if (giveUp < tc.tmo || giveUp-tc.tmo >= tc.delay) && tc.tmo <= maxCtrlLossTmo-tc.delay {
				t.Errorf("gives up after %d s, want %d..%d", giveUp, tc.tmo, tc.tmo+tc.delay-1)
			}
		})
	}
}

// TestAttachSpreadsReconnectDelay: a connect carries reconnect_delay =
// reconnectDelay + the controller's offset and the converted
// ctrl_loss_tmo; a zero spread leaves both as given; health and the
// snapshot name the spread.
func TestAttachSpreadsReconnectDelay(t *testing.T) {
	for _, tc := range []struct {
		name          string
		spread, tmo   int
		wantOffset    int
		wantDelay     int
		wantCtrlLoss  int
		wantInMessage string
	}{
		{name: "off", spread: 0, tmo: 7, wantDelay: 5, wantCtrlLoss: 7, wantInMessage: "reconnect every 5s (no spread)"},
		{name: "forever", spread: 4, tmo: -1, wantOffset: 3, wantDelay: 8, wantCtrlLoss: -1,
			wantInMessage: "reconnect every 8s (reconnectDelay 5s + spread 3s of 0..4s: on average 1.5s, at most 3s, later back after a target restart)"},
		{name: "finite, divisible", spread: 4, tmo: 600, wantOffset: 3, wantDelay: 8, wantCtrlLoss: 600},
		{name: "finite, not divisible", spread: 4, tmo: 601, wantOffset: 3, wantDelay: 8, wantCtrlLoss: 608},
		{name: "zero", spread: 4, tmo: 0, wantOffset: 3, wantDelay: 8, wantCtrlLoss: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, sysfstest.Spec{Multipath: true})
			d := e.start()
			s := spec("pvc-1", volNQN(1), 1)
			s.Options.ReconnectDelay = fabrics.Int(5)
			s.Options.CtrlLossTmo = fabrics.Int(tc.tmo)
			s.ReconnectSpread = tc.spread
			if off := spreadOffset(hostID, keyOf(&s.Options), tc.spread); off != tc.wantOffset {
				t.Fatalf("offset of the test volume is %d, the table assumes %d", off, tc.wantOffset)
			}
			if _, err := d.Attach(t.Context(), s); err != nil {
				t.Fatal(err)
			}
			e.conn.mu.Lock()
			got := e.conn.connected[0]
			e.conn.mu.Unlock()
			if rd, _ := got.ReconnectDelay.Get(); rd != tc.wantDelay {
				t.Errorf("connect with reconnect_delay %d, want %d", rd, tc.wantDelay)
			}
			if cl, _ := got.CtrlLossTmo.Get(); cl != tc.wantCtrlLoss {
				t.Errorf("connect with ctrl_loss_tmo %d, want %d", cl, tc.wantCtrlLoss)
			}
			want := Spread{Base: 5, Bound: tc.spread, Offset: tc.wantOffset}
			if diff := cmp.Diff(want, controllerInfo(t, d, "nvme0").Spread); diff != "" {
				t.Errorf("snapshot spread (-want +got):\n%s", diff)
			}
			if tc.wantInMessage != "" {
				if err := sysfstest.SetState(e.root, "nvme0", "connecting"); err != nil {
					t.Fatal(err)
				}
				d.resync(false)
				h, err := d.VolumeHealth("pvc-1")
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(h.Message, tc.wantInMessage) {
					t.Errorf("health message %q does not say %q", h.Message, tc.wantInMessage)
				}
			}
		})
	}
}

// TestAttachSpreadUpdatesLiveController: a repeat stage with a spread
// updates an existing controller through sysfs (the live update path) to
// the spread delay and the converted ctrl_loss_tmo; the same stage again
// changes nothing.
func TestAttachSpreadUpdatesLiveController(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{{
		Instance: 0, NQN: volNQN(1),
		Controllers: []sysfstest.Controller{{Instance: 0, Attrs: map[string]string{
			"hostnqn": hostNQN, "hostid": hostID, "reconnect_delay": "5", "ctrl_loss_tmo": "600"}}},
		Namespaces: []sysfstest.Namespace{{NSID: 1}},
	}}})
	d := e.start()
	s := spec("pvc-1", volNQN(1), 1)
	s.Options.ReconnectDelay = fabrics.Int(5)
	s.Options.CtrlLossTmo = fabrics.Int(601)
	s.ReconnectSpread = 4 // offset 3 for this volume (TestAttachSpreadsReconnectDelay)
	a, err := d.Attach(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	if !a.TimeoutsUpdated {
		t.Fatal("timeouts not updated")
	}
	e.conn.mu.Lock()
	u := e.conn.updates["nvme0"]
	e.conn.mu.Unlock()
	rd, _ := u.ReconnectDelay.Get()
	cl, _ := u.CtrlLossTmo.Get()
	if rd != 8 || cl != 608 {
		t.Errorf("update wrote reconnect_delay %d ctrl_loss_tmo %d, want 8 and 608", rd, cl)
	}
	a, err = d.Attach(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	if a.TimeoutsUpdated {
		t.Error("a repeated stage updated the timeouts again")
	}
}

// TestAttachSpreadRange: a spread outside 0..MaxReconnectSpread is an
// invalid option.
func TestAttachSpreadRange(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	d := e.start()
	for _, v := range []int{-1, MaxReconnectSpread + 1} {
		s := spec("pvc-1", volNQN(1), 1)
		s.ReconnectSpread = v
		if _, err := d.Attach(t.Context(), s); !errors.Is(err, fabrics.ErrInvalidOption) {
			t.Errorf("spread %d: %v, want ErrInvalidOption", v, err)
		}
	}
}
