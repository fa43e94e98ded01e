package fabrics

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/srvlab/rds-csi/sysfs"
)

// Option lists read from /dev/nvme-fabrics on the lab's 6.12 and 6.1 kernels
// (e2e/kerneltest/fabrics_test.go, TestSupportedOptions, checks the options
// that matter on both).
const (
	probe612 = "instance=-1,cntlid=-1,transport=%s,traddr=%s,trsvcid=%s,nqn=%s,queue_size=%d,nr_io_queues=%d," +
		"reconnect_delay=%d,ctrl_loss_tmo=%d,keep_alive_tmo=%d,hostnqn=%s,host_traddr=%s,host_iface=%s," +
		"hostid=%s,duplicate_connect,disable_sqflow,hdr_digest,data_digest,nr_write_queues=%d," +
		"nr_poll_queues=%d,tos=%d,keyring=%d,tls_key=%d,fast_io_fail_tmo=%d,discovery,dhchap_secret=%s," +
		"dhchap_ctrl_secret=%s,tls\n"
	probe61 = "instance=-1,cntlid=-1,transport=%s,traddr=%s,trsvcid=%s,nqn=%s,queue_size=%d,nr_io_queues=%d," +
		"reconnect_delay=%d,ctrl_loss_tmo=%d,keep_alive_tmo=%d,hostnqn=%s,host_traddr=%s,host_iface=%s," +
		"hostid=%s,duplicate_connect,disable_sqflow,hdr_digest,data_digest,nr_write_queues=%d," +
		"nr_poll_queues=%d,tos=%d,fast_io_fail_tmo=%d,discovery,dhchap_secret=%s," +
		"dhchap_ctrl_secret=%s\n"
)

const (
	testNQN     = "nqn.2000-02.com.mikrotik:pvc-0f5c3a7e-6f0b-4bc1-9a51-3f4d2b6c8e10"
	testHostID  = "5f1e0d3c-2b4a-4c6d-8e9f-0a1b2c3d4e5f"
	testHostNQN = "nqn.2014-08.org.nvmexpress:uuid:" + testHostID
)

// makeSecret returns a DH-HMAC-CHAP secret for a key of n bytes.
func makeSecret(hash byte, n int, seed byte) Secret {
	key := make([]byte, n, n+4)
	for i := range key {
		key[i] = seed + byte(i)*7
	}
	key = binary.LittleEndian.AppendUint32(key, crc32.ChecksumIEEE(key))
	return Secret(fmt.Sprintf("DHHC-1:%02d:%s:", hash, base64.StdEncoding.EncodeToString(key)))
}

var (
	hostSecret = makeSecret(1, 32, 1)
	ctrlSecret = makeSecret(3, 64, 9)
)

// minimalOptions is the smallest valid Options.
func minimalOptions() Options {
	return Options{Traddr: "192.0.2.10", NQN: testNQN}
}

// fullOptions sets every option that can go together.
func fullOptions() Options {
	return Options{
		Transport:        "tcp",
		Traddr:           "192.0.2.10",
		Trsvcid:          4420,
		NQN:              testNQN,
		HostNQN:          testHostNQN,
		HostID:           testHostID,
		HostTraddr:       "192.0.2.20",
		HostIface:        "eth0",
		CtrlLossTmo:      Int(-1),
		ReconnectDelay:   Int(2),
		KeepAliveTmo:     Int(5),
		FastIOFailTmo:    Int(30),
		NrIOQueues:       Int(4),
		NrWriteQueues:    Int(2),
		NrPollQueues:     Int(1),
		QueueSize:        Int(128),
		TOS:              Int(0),
		DuplicateConnect: true,
		DisableSQFlow:    true,
		HdrDigest:        true,
		DataDigest:       true,
		DHCHAPSecret:     hostSecret,
		DHCHAPCtrlSecret: ctrlSecret,
		TLS:              true,
		Keyring:          Int(123456),
		TLSKey:           Int(654321),
	}
}

// fakeDevice stands in for /dev/nvme-fabrics: a read on a fresh descriptor
// returns the option list, a write "connects", a read after it returns the
// reply. Errors are injected as *fs.PathError wrapping an errno, as os.File
// returns them.
type fakeDevice struct {
	mu       sync.Mutex
	openErr  error
	probe    string
	probeErr syscall.Errno
	writeErr syscall.Errno
	reply    string
	readErr  syscall.Errno

	opens  int
	writes []string
}

func newFakeDevice() *fakeDevice {
	return &fakeDevice{probe: probe612, reply: "instance=3,cntlid=1\n"}
}

func (d *fakeDevice) open(path string) (deviceFile, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.opens++
	if d.openErr != nil {
		return nil, d.openErr
	}
	return &fakeFile{dev: d, path: path}, nil
}

func (d *fakeDevice) written() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.writes)
}

type fakeFile struct {
	dev     *fakeDevice
	path    string
	written bool
	r       *strings.Reader
}

func (f *fakeFile) Write(p []byte) (int, error) {
	d := f.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	if f.written {
		return 0, &fs.PathError{Op: "write", Path: f.path, Err: syscall.EINVAL}
	}
	f.written = true
	d.writes = append(d.writes, string(p))
	if d.writeErr != 0 {
		return 0, &fs.PathError{Op: "write", Path: f.path, Err: d.writeErr}
	}
	return len(p), nil
}

func (f *fakeFile) Read(p []byte) (int, error) {
	d := f.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	if f.r == nil {
		text, errno := d.probe, d.probeErr
		if f.written {
			text, errno = d.reply, d.readErr
		}
		if errno != 0 {
			return 0, &fs.PathError{Op: "read", Path: f.path, Err: errno}
		}
		f.r = strings.NewReader(text)
	}
	return f.r.Read(p)
}

func (f *fakeFile) Close() error { return nil }

// fakeSys is a ControllerSource over a fixed controller list that records
// attribute writes as "name attr=value".
type fakeSys struct {
	mu       sync.Mutex
	ctrls    []sysfs.Controller
	disks    map[string][]string // DiskControllers answers
	listErr  error
	writeErr map[string]error // by attribute
	writes   []string
}

func (s *fakeSys) Controllers() ([]sysfs.Controller, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listErr != nil {
		return nil, s.listErr
	}
	return slices.Clone(s.ctrls), nil
}

func (s *fakeSys) Controller(name string) (sysfs.Controller, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.ctrls {
		if c.Name == name {
			return c, nil
		}
	}
	return sysfs.Controller{}, fmt.Errorf("sysfs: controller %s: %w", name, sysfs.ErrNotExist)
}

func (s *fakeSys) WriteControllerAttr(name, attr, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.ContainsFunc(s.ctrls, func(c sysfs.Controller) bool { return c.Name == name }) {
		return fmt.Errorf("sysfs: controller %s: %w", name, sysfs.ErrNotExist)
	}
	if err := s.writeErr[attr]; err != nil {
		return err
	}
	s.writes = append(s.writes, name+" "+attr+"="+value)
	return nil
}

func (s *fakeSys) DiskControllers(disk string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctrls, ok := s.disks[disk]
	if !ok {
		return nil, fmt.Errorf("sysfs: disk %s: %w", disk, sysfs.ErrNotExist)
	}
	return slices.Clone(ctrls), nil
}

func (s *fakeSys) written() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.writes)
}

// newTestClient returns a client on fakes, reporting kernel release "test".
func newTestClient(dev *fakeDevice, sys *fakeSys) *Client {
	var src ControllerSource
	if sys != nil {
		src = sys
	}
	c := NewClient("/dev/fake-nvme-fabrics", src)
	c.open = dev.open
	c.release = func() string { return "6.12.0-test" }
	return c
}

func (c *Client) withSource(src ControllerSource) *Client {
	c.sys = src
	return c
}

// liveCtrl is a live TCP controller matching minimalOptions.
func liveCtrl(instance int) sysfs.Controller {
	return sysfs.Controller{
		Name:      fmt.Sprintf("nvme%d", instance),
		Instance:  instance,
		State:     sysfs.StateLive,
		StateRaw:  "live",
		Transport: "tcp",
		Address:   sysfs.Address{Traddr: "192.0.2.10", Trsvcid: "4420", SrcAddr: "192.0.2.20"},
		CntrlType: "io",
		SubsysNQN: testNQN,
		HostNQN:   testHostNQN,
		HostID:    testHostID,
		CntlID:    instance + 100,
	}
}

func mustNotContainSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, sec := range []Secret{hostSecret, ctrlSecret} {
		// The base64 body alone must not leak either.
		body := strings.TrimSuffix(string(sec)[len("DHHC-1:00:"):], ":")
		if strings.Contains(s, body) {
			t.Errorf("%s contains a secret: %q", what, s)
		}
	}
}
