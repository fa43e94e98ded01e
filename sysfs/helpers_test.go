package sysfs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// Test trees: small specs whose every value the tests spell out.

const (
	nqnVol0 = "nqn.2024-01.io.test:vol0"
	nqnVol1 = "nqn.2024-01.io.test:vol1"
)

// smallSpec is three subsystems: vol0 reached over nvme0 (live) and nvme2
// (connecting) with two namespaces; vol1 over nvme1 (IPv6, host_iface,
// ctrl_loss_tmo off, an older kernel without cntrltype and
// fast_io_fail_tmo); and a discovery subsystem with nvme10.
func smallSpec(multipath bool) sysfstest.Spec {
	return sysfstest.Spec{
		Multipath: multipath,
		Subsystems: []sysfstest.Subsystem{
			{
				Instance: 0,
				NQN:      nqnVol0,
				Model:    "RDS",
				Serial:   "SER0",
				Controllers: []sysfstest.Controller{
					{Instance: 0},
					{Instance: 2, State: "connecting"},
				},
				Namespaces: []sysfstest.Namespace{
					{NSID: 1},
					{NSID: 2, Sectors: 4096, UUID: "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"},
				},
			},
			{
				Instance: 1,
				NQN:      nqnVol1,
				Model:    "RDS",
				Serial:   "SER1",
				Controllers: []sysfstest.Controller{{
					Instance: 1,
					Address:  "traddr=::1,trsvcid=4420,host_iface=eth0,src_addr=::1",
					Attrs:    map[string]string{"ctrl_loss_tmo": "off", "reconnect_delay": "2"},
					Omit:     []string{"cntrltype", "fast_io_fail_tmo"},
				}},
				Namespaces: []sysfstest.Namespace{{NSID: 1, ANAState: "non-optimized"}},
			},
			{
				Instance:    2,
				NQN:         sysfstest.DiscoveryNQN,
				Type:        "discovery",
				Controllers: []sysfstest.Controller{{Instance: 10}},
			},
		},
	}
}

// build lays out spec in a fresh temporary directory, for a test that
// changes the tree.
func build(t testing.TB, spec sysfstest.Spec) (sysfs.FS, string) {
	t.Helper()
	root := t.TempDir()
	if err := sysfstest.Build(root, spec); err != nil {
		t.Fatal(err)
	}
	return sysfs.NewFS(root), root
}

// Trees that no test changes are built once per run and shared: creating
// files is the slow part of these tests.
var shared struct {
	sync.Mutex
	dir   string
	trees map[string]sysfs.FS
}

// sharedTree returns the tree of spec, built on its first use. Tests must
// not change it.
func sharedTree(t testing.TB, spec sysfstest.Spec) sysfs.FS {
	t.Helper()
	key := fmt.Sprintf("%#v", spec)
	shared.Lock()
	defer shared.Unlock()
	if fs, ok := shared.trees[key]; ok {
		return fs
	}
	if shared.trees == nil {
		shared.trees = map[string]sysfs.FS{}
	}
	root := filepath.Join(shared.dir, strconv.Itoa(len(shared.trees)))
	if err := sysfstest.Build(root, spec); err != nil {
		t.Fatal(err)
	}
	fs := sysfs.NewFS(root)
	shared.trees[key] = fs
	return fs
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sysfs-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ctrl is a controller of smallSpec as sysfstest writes it by default.
func ctrl(inst int, nqn, subsys string, ns ...sysfs.Namespace) sysfs.Controller {
	return sysfs.Controller{
		Name:           fmt.Sprintf("nvme%d", inst),
		Instance:       inst,
		State:          sysfs.StateLive,
		StateRaw:       "live",
		Transport:      "tcp",
		Address:        sysfs.Address{Traddr: "127.0.0.1", Trsvcid: "4420", SrcAddr: "127.0.0.1"},
		CntrlType:      "io",
		SubsysNQN:      nqn,
		HostNQN:        sysfstest.DefaultHostNQN,
		HostID:         sysfstest.DefaultHostID,
		CntlID:         inst + 1,
		CtrlLossTmo:    600,
		ReconnectDelay: 10,
		FastIOFailTmo:  -1,
		KATO:           5,
		QueueCount:     3,
		SQSize:         127,
		Model:          "RDS",
		FirmwareRev:    sysfstest.DefaultFirmware,
		NUMANode:       -1,
		Dev:            sysfs.DevNum{Major: 245, Minor: uint32(inst)},
		Subsystem:      subsys,
		Namespaces:     ns,
	}
}

// disk is a visible namespace disk of smallSpec.
func disk(name, parent string, subsysInst int, nsid uint32, minor uint32) sysfs.Namespace {
	uuid := sysfstest.UUIDFor(subsysInst, nsid)
	return sysfs.Namespace{
		Name:    name,
		NSID:    nsid,
		UUID:    uuid,
		WWID:    "uuid." + uuid,
		Sectors: sysfstest.DefaultSectors,
		Dev:     sysfs.DevNum{Major: 259, Minor: minor},
		Parent:  parent,
	}
}

// pathDisk is a hidden per-path disk: ANA state, no device number.
func pathDisk(n sysfs.Namespace, ana string) sysfs.Namespace {
	n.Hidden = true
	n.ANAState = ana
	n.ANAGrpID = 1
	n.Dev = sysfs.DevNum{}
	return n
}

func withUUID(n sysfs.Namespace, uuid string, sectors uint64) sysfs.Namespace {
	n.UUID, n.WWID, n.Sectors = uuid, "uuid."+uuid, sectors
	return n
}

// smallControllers is what Controllers returns for smallSpec(true).
func smallControllers() []sysfs.Controller {
	const uuid2 = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
	// Block minors in build order: vol0 heads nvme0n1 0, nvme0n2 2; vol1
	// head nvme1n1 4. Hidden per-path disks have none.
	c0 := ctrl(0, nqnVol0, "nvme-subsys0",
		pathDisk(disk("nvme0c0n1", "nvme0", 0, 1, 0), "optimized"),
		pathDisk(withUUID(disk("nvme0c0n2", "nvme0", 0, 2, 0), uuid2, 4096), "optimized"),
	)
	c0.Serial = "SER0"

	c1 := ctrl(1, nqnVol1, "nvme-subsys1",
		pathDisk(disk("nvme1c1n1", "nvme1", 1, 1, 0), "non-optimized"),
	)
	c1.Serial = "SER1"
	c1.Address = sysfs.Address{Traddr: "::1", Trsvcid: "4420", HostIface: "eth0", SrcAddr: "::1"}
	c1.CntrlType = ""
	c1.FastIOFailTmo = 0
	c1.CtrlLossTmo = -1
	c1.ReconnectDelay = 2

	c2 := ctrl(2, nqnVol0, "nvme-subsys0",
		pathDisk(disk("nvme0c2n1", "nvme2", 0, 1, 0), "optimized"),
		pathDisk(withUUID(disk("nvme0c2n2", "nvme2", 0, 2, 0), uuid2, 4096), "optimized"),
	)
	c2.Serial = "SER0"
	c2.State, c2.StateRaw = sysfs.StateConnecting, "connecting"
	c2.Address.SrcAddr = ""

	c10 := ctrl(10, sysfstest.DiscoveryNQN, "nvme-subsys2")
	c10.Address.Trsvcid = "8009"
	c10.CntrlType = "discovery"
	c10.KATO = 30
	c10.QueueCount = 1
	c10.SQSize = 31
	c10.Model = sysfstest.DefaultModel
	c10.Serial = "0000000000000003"

	return []sysfs.Controller{c0, c1, c2, c10}
}
