package fabrics

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/sysfs"
)

// TestAdoptFromFixtures runs EALREADY adoption against the sysfs trees
// captured from the 6.1 and 6.12 kernels (testdata/sysfs): nvme0 and nvme1
// are live paths to multi-1 on ports 4422 and 4423, nvme2 is a connecting
// controller to flaky-4 on 4425, nvme3 a discovery controller on 4422.
func TestAdoptFromFixtures(t *testing.T) {
	const (
		hostID  = "2b4ab05b-6a8f-4e0e-9a2c-1f4e5d6c7b8a"
		hostNQN = "nqn.2014-08.org.nvmexpress:uuid:" + hostID
		multi   = "nqn.2024-01.io.srvlab.lab:multi-1"
		flaky   = "nqn.2024-01.io.srvlab.lab:flaky-4"
	)
	tests := []struct {
		name string
		opts Options
		want string // adopted controller, "" for ErrAlreadyConnected
	}{
		{"first path", Options{Traddr: "127.0.0.1", Trsvcid: 4422, NQN: multi, HostNQN: hostNQN, HostID: hostID}, "nvme0"},
		{"second path", Options{Traddr: "127.0.0.1", Trsvcid: 4423, NQN: multi}, "nvme1"},
		{"connecting controller", Options{Traddr: "127.0.0.1", Trsvcid: 4425, NQN: flaky, HostNQN: hostNQN}, "nvme2"},
		{"discovery controller ignored", Options{Traddr: "127.0.0.1", Trsvcid: 4422, NQN: DiscoveryNQN}, ""},
		{"other port", Options{Traddr: "127.0.0.1", Trsvcid: 4424, NQN: multi}, ""},
		{"other host", Options{Traddr: "127.0.0.1", Trsvcid: 4422, NQN: multi, HostNQN: "nqn.2014-08.org.example:other"}, ""},
		{"other address family", Options{Traddr: "::1", Trsvcid: 4422, NQN: multi}, ""},
		{"host_traddr not used by the controller", Options{Traddr: "127.0.0.1", Trsvcid: 4422, NQN: multi, HostTraddr: "127.0.0.1"}, ""},
	}
	fixtures, err := filepath.Glob(filepath.Join("..", "testdata", "sysfs", "*"))
	if err != nil || len(fixtures) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, root := range fixtures {
		for _, tt := range tests {
			t.Run(filepath.Base(root)+"/"+tt.name, func(t *testing.T) {
				dev := newFakeDevice()
				dev.writeErr = syscall.EALREADY
				got, err := newTestClient(dev, nil).withSource(sysfs.NewFS(root)).Connect(t.Context(), tt.opts)
				if tt.want == "" {
					if !errors.Is(err, ErrAlreadyConnected) {
						t.Fatalf("Connect() = %+v, %v; want ErrAlreadyConnected", got, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(filepath.Join(root, "class", "nvme", tt.want, "cntlid"))
				if err != nil {
					t.Fatal(err)
				}
				cntlid, err := strconv.Atoi(strings.TrimSpace(string(b)))
				if err != nil {
					t.Fatalf("cntlid of %s: %v", tt.want, err)
				}
				instance, err := strconv.Atoi(strings.TrimPrefix(tt.want, "nvme"))
				if err != nil {
					t.Fatalf("instance of %s: %v", tt.want, err)
				}
				want := Controller{Name: tt.want, Instance: instance, CntlID: cntlid, Adopted: true}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Connect (-want +got):\n%s", diff)
				}
			})
		}
	}
}
