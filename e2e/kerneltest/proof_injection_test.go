//go:build linux

package kerneltest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/sysfs"
)

// injectionPieces are what an attacker appends to a VolumeContext value to
// smuggle an option into the string written to /dev/nvme-fabrics.
var injectionPieces = []string{
	",ctrl_loss_tmo=0", ",keep_alive_tmo=1", ",duplicate_connect", ",host_iface=lo", ",hostnqn=nqn.evil:x",
	"\nctrl_loss_tmo=0", "\x00,fast_io_fail_tmo=0", " ,nr_io_queues=1", "=", ",", "\t", "\n",
}

// TestProofVolumeContextInjection: VolumeContext values that carry option
// syntax (commas, newlines, NULs, '=') are refused by NodeStageVolume with
// InvalidArgument naming the parameter, and no controller appears in the
// kernel: a fixed list of attacks on every key, then random combinations.
// A legitimate stage with every resilience parameter set shows, in the
// controller's sysfs attributes, exactly the values given and nothing
// else. The real binary over its socket.
func TestProofVolumeContextInjection(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "vcinject")
	_, ep := startRDSCSI(t, "inject")
	node := nodeClient(t, ep)
	fs := sysfs.NewFS("/sys")
	before := controllerNames(t, fs)
	staging := "/run/inject/staging/globalmount"
	must(t, mkdirGuest(staging))

	base := func() map[string]string {
		return volumeContext(nqn, port, "ctrlLossTmo", "60", "reconnectDelay", "3", "reconnectSpread", "0", "keepAliveTmo", "7", "fastIoFailTmo", "10")
	}
	keys := []string{"nvmeAddress", "nvmePort", "nqn", "nsid", "ctrlLossTmo", "reconnectDelay", "reconnectSpread", "keepAliveTmo", "fastIoFailTmo", "hostIface", "nrIoQueues", "queueSize"}
	try := func(key, value string) error {
		vc := base()
		vc[key] = value
		_, err := node.NodeStageVolume(withTimeout(t, 30*time.Second), &csipb.NodeStageVolumeRequest{
			VolumeId: "vol-inject", StagingTargetPath: staging, VolumeCapability: blockCap(), VolumeContext: vc,
		})
		if status.Code(err) != codes.InvalidArgument {
			return fmt.Errorf("%s=%q: %v, want InvalidArgument", key, value, err)
		}
		if !strings.Contains(status.Convert(err).Message(), key) {
			return fmt.Errorf("%s=%q: message %q does not name the parameter", key, value, status.Convert(err).Message())
		}
		return nil
	}

	attempts := 0
	for _, key := range keys {
		valid := base()[key]
		if valid == "" {
			valid = map[string]string{"nsid": "1", "hostIface": "lo", "nrIoQueues": "2", "queueSize": "64"}[key]
		}
		for _, piece := range injectionPieces {
			attempts++
			if err := try(key, valid+piece); err != nil {
				t.Error(err)
			}
		}
	}
	// Unknown keys, among them the kernel's own option names, are refused too.
	for _, key := range []string{"ctrl_loss_tmo", "hostnqn", "duplicate_connect", "nqn,ctrl_loss_tmo"} {
		attempts++
		vc := base()
		vc[key] = "1"
		_, err := node.NodeStageVolume(withTimeout(t, 30*time.Second), &csipb.NodeStageVolumeRequest{
			VolumeId: "vol-inject", StagingTargetPath: staging, VolumeCapability: blockCap(), VolumeContext: vc,
		})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("unknown key %q: %v, want InvalidArgument", key, err)
		}
	}
	// Random combinations: 1 to 3 pieces around a valid value.
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	const random = 200
	for range random {
		key := keys[rng.IntN(len(keys))]
		v := base()[key]
		if v == "" {
			v = "1"
		}
		for n := 1 + rng.IntN(3); n > 0; n-- {
			p := injectionPieces[rng.IntN(len(injectionPieces))]
			if rng.IntN(2) == 0 {
				v = p + v
			} else {
				v += p
			}
		}
		attempts++
		if err := try(key, v); err != nil {
			t.Errorf("seed %d: %v", seed, err)
		}
	}
	if now := controllerNames(t, fs); !slices.Equal(now, before) {
		t.Fatalf("controllers after %d refused stages: %v, before %v: something reached the kernel", attempts, now, before)
	}

	// The legitimate stage: the kernel shows exactly the values given.
	if _, err := node.NodeStageVolume(withTimeout(t, time.Minute), &csipb.NodeStageVolumeRequest{
		VolumeId: "vol-inject", StagingTargetPath: staging, VolumeCapability: blockCap(), VolumeContext: base(),
	}); err != nil {
		t.Fatalf("legitimate stage: %v", err)
	}
	var ours []sysfs.Controller
	cs, err := fs.Controllers()
	must(t, err)
	for _, c := range cs {
		if c.SubsysNQN == nqn {
			ours = append(ours, c)
		}
	}
	if len(ours) != 1 {
		t.Fatalf("controllers for %s: %d, want 1", nqn, len(ours))
	}
	c := ours[0]
	got := fmt.Sprintf("traddr=%s trsvcid=%s ctrl_loss_tmo=%d reconnect_delay=%d kato=%d fast_io_fail_tmo=%d",
		c.Address.Traddr, c.Address.Trsvcid, c.CtrlLossTmo, c.ReconnectDelay, c.KATO, c.FastIOFailTmo)
	want := fmt.Sprintf("traddr=127.0.0.1 trsvcid=%d ctrl_loss_tmo=60 reconnect_delay=3 kato=7 fast_io_fail_tmo=10", port)
	if got != want {
		t.Errorf("controller attributes %s, want %s", got, want)
	}
	if _, err := node.NodeUnstageVolume(withTimeout(t, time.Minute), &csipb.NodeUnstageVolumeRequest{VolumeId: "vol-inject", StagingTargetPath: staging}); err != nil {
		t.Fatalf("unstage: %v", err)
	}
	writeResult(t, "injection", fmt.Sprintf(
		"%d NodeStageVolume calls with option syntax in VolumeContext (%d fixed: every key x %d pieces, plus 4 unknown keys; %d random, seed %d): all InvalidArgument naming the parameter, no controller created. The legitimate stage's controller: `%s`.\n",
		attempts, attempts-random, len(injectionPieces), random, seed, got))
}
