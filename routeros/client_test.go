package routeros

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/srvlab/rds-csi/routeros/rdstest"
)

const testPool = "storage-pool"

// emulator starts an emulated RDS and an SSH transport and Client for it.
func emulator(t *testing.T, o rdstest.Options, tune func(*SSHConfig)) (*rdstest.Server, *SSH, *Client) {
	t.Helper()
	srv, err := rdstest.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cfg := SSHConfig{Address: srv.Addr(), User: srv.User(), PrivateKey: srv.ClientKeyPEM(), KnownHosts: srv.KnownHosts(),
		Backoff: wait.Backoff{Duration: time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 3},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil))}
	if tune != nil {
		tune(&cfg)
	}
	tr, err := NewSSH(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return srv, tr, NewClient(tr, nil)
}

func spec(t *testing.T, name string, size int64) DiskSpec {
	t.Helper()
	slot, err := SlotFor(name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := FilePathFor(testDir, slot)
	if err != nil {
		t.Fatal(err)
	}
	nqn, err := NQNFor("nqn.2000-02.com.mikrotik", slot)
	if err != nil {
		t.Fatal(err)
	}
	return DiskSpec{Slot: slot, FilePath: p, Size: size, Port: 4420, NQN: nqn}
}

// variants: every combination of the unverified behaviours the emulator can
// switch, and two output layouts (wrapped at spaces with CRLF; wrapped
// mid-token, narrow, LF).
func variants() map[string]rdstest.Options {
	out := map[string]rdstest.Options{}
	for _, stderr := range []bool{false, true} {
		for _, status := range []int{0, 1} {
			for _, findErr := range []bool{false, true} {
				for _, rmFile := range []bool{false, true} {
					for _, f := range []rdstest.Format{{}, {Width: 37, MidToken: true, LF: true}} {
						name := fmt.Sprintf("stderr=%v,status=%d,findNoMatchError=%v,removeDiskRemovesFile=%v,width=%d", stderr, status, findErr, rmFile, f.Width)
						out[name] = rdstest.Options{Format: f, Variant: rdstest.Variant{ErrorsOnStderr: stderr, ErrorExitStatus: status,
							FindNoMatchError: findErr, RemoveDiskRemovesFile: rmFile}}
					}
				}
			}
		}
	}
	return out
}

func TestClientRoundTrip(t *testing.T) {
	for name, o := range variants() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o.PoolSize = 10 << 30
			srv, _, c := emulator(t, o, nil)
			ctx := context.Background()
			pool, err := c.Pool(ctx, testPool)
			if err != nil || pool.Size != 10<<30 || pool.Free != 10<<30 {
				t.Fatalf("Pool = %+v, %v", pool, err)
			}
			s := spec(t, "pvc-a", 1<<30+1)
			if _, err := c.Disk(ctx, s.Slot); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Disk before create: %v", err)
			}
			d, err := c.CreateDisk(ctx, s)
			if err != nil || d.Size != s.Size || d.FilePath != s.FilePath || !d.NVMeExport || d.NVMeNQN != s.NQN || d.MountFilesystem {
				t.Fatalf("CreateDisk = %+v, %v", d, err)
			}
			if _, err := c.CreateDisk(ctx, s); !errors.Is(err, ErrExists) {
				t.Errorf("second CreateDisk: %v, want ErrExists", err)
			}
			if ds, err := c.Disks(ctx, SlotPrefix); err != nil || len(ds) != 1 || ds[0].Slot != s.Slot {
				t.Errorf("Disks = %+v, %v", ds, err)
			}
			if d, err := c.ResizeDisk(ctx, s.Slot, 2<<30+3); err != nil || d.Size != 2<<30+3 {
				t.Errorf("ResizeDisk grow = %+v, %v", d, err)
			}
			before := len(srv.Commands())
			if d, err := c.ResizeDisk(ctx, s.Slot, 1<<30); err != nil || d.Size != 2<<30+3 {
				t.Errorf("ResizeDisk smaller = %+v, %v; want unchanged", d, err)
			}
			if got := srv.Commands()[before:]; len(got) != 1 || !strings.Contains(got[0], "print") {
				t.Errorf("ResizeDisk smaller sent %q; want only a print", got)
			}
			cp := spec(t, "snap-a", 0)
			cp.Slot, _ = SnapshotSlotFor("snap-a")
			cp.FilePath, _ = FilePathFor(testDir, cp.Slot)
			cp.NQN, _ = NQNFor("nqn.2000-02.com.mikrotik", cp.Slot)
			cd, err := c.CopyDisk(ctx, CopySpec{From: s.Slot, Slot: cp.Slot, FilePath: cp.FilePath})
			if err != nil || cd.Size != 2<<30+3 || cd.NVMeExport {
				t.Fatalf("CopyDisk = %+v, %v", cd, err)
			}
			if _, err := c.CopyDisk(ctx, CopySpec{From: spec(t, "gone", 0).Slot, Slot: spec(t, "x", 0).Slot, FilePath: spec(t, "x", 0).FilePath}); !errors.Is(err, ErrNotFound) {
				t.Errorf("CopyDisk from nothing: %v, want ErrNotFound", err)
			}
			if ds, err := c.Disks(ctx, SnapshotSlotPrefix); err != nil || len(ds) != 1 || ds[0].Slot != cp.Slot {
				t.Errorf("Disks(snapshots) = %+v, %v", ds, err)
			}
			if ds, err := c.Disks(ctx, SlotPrefix); err != nil || len(ds) != 1 || ds[0].Slot != s.Slot {
				t.Errorf("Disks(volumes) = %+v, %v", ds, err)
			}
			if ed, err := c.ExportDisk(ctx, cp.Slot, 4421, cp.NQN); err != nil || !ed.NVMeExport || ed.NVMePort != 4421 {
				t.Errorf("ExportDisk = %+v, %v", ed, err)
			}
			if err := c.RemoveFile(ctx, testDir, s.FilePath); !errors.Is(err, ErrInUse) {
				t.Errorf("RemoveFile of a used file: %v, want ErrInUse", err)
			}
			for i := 0; i < 2; i++ { // the second time: already gone, success
				if err := c.RemoveDisk(ctx, s.Slot); err != nil {
					t.Fatalf("RemoveDisk #%d: %v", i+1, err)
				}
			}
			if _, ok := srv.Files()[s.FilePath]; ok == o.Variant.RemoveDiskRemovesFile {
				t.Fatalf("file after disk remove: %v (variant %+v)", srv.Files(), o.Variant)
			}
			for i := 0; i < 2; i++ {
				if err := c.RemoveFile(ctx, testDir, s.FilePath); err != nil {
					t.Fatalf("RemoveFile #%d: %v", i+1, err)
				}
			}
			files, err := c.Files(ctx, testDir)
			if err != nil || len(files) != 1 || files[0].Path != cp.FilePath || files[0].Type != ".img file" || files[0].Size != 2<<30+3 {
				t.Errorf("Files = %+v, %v", files, err)
			}
			if pool, err := c.Pool(ctx, testPool); err != nil || pool.Free != 10<<30-(2<<30+3) {
				t.Errorf("Pool after = %+v, %v", pool, err)
			}
		})
	}
}

// TestCopyVariants: whatever RouterOS does with the unverified parts of a
// copy, CopyDisk either returns an unexported, unmounted copy carrying the
// source's size and data, or fails before anything is created: a copy that
// inherited its source's export is unexported (one more set and read), and
// an RDS that refuses mount-filesystem=no with copy-from fails the copy
// with ErrInvalidArgument (the driver never copies without it).
func TestCopyVariants(t *testing.T) {
	for _, v := range []rdstest.Variant{
		{},
		{CopyInheritsExport: true},
		{CopyRefusesProperties: true},
		{CopyInheritsExport: true, CopyRefusesProperties: true, FindNoMatchError: true, ErrorsOnStderr: true, ErrorExitStatus: 1},
	} {
		t.Run(fmt.Sprintf("%+v", v), func(t *testing.T) {
			srv, _, c := emulator(t, rdstest.Options{Variant: v}, nil)
			ctx := context.Background()
			s := spec(t, "pvc-copy", 1<<20+5)
			if _, err := c.CreateDisk(ctx, s); err != nil {
				t.Fatal(err)
			}
			if err := srv.WriteData(s.FilePath, []byte("source data")); err != nil {
				t.Fatal(err)
			}
			snap, _ := SnapshotSlotFor("snap-copy")
			p, err := BackingPath(testDir, Backing{Slot: snap, Source: s.Slot, Created: time.Unix(1764642000, 0)})
			if err != nil {
				t.Fatal(err)
			}
			before := len(srv.Commands())
			d, err := c.CopyDisk(ctx, CopySpec{From: s.Slot, Slot: snap, FilePath: p})
			var verbs []string
			for _, line := range srv.Commands()[before:] {
				verbs = append(verbs, verbOf(line))
			}
			if v.CopyRefusesProperties {
				if !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("CopyDisk = %+v, %v; want ErrInvalidArgument", d, err)
				}
				if len(srv.Disks()) != 1 || len(srv.Files()) != 1 {
					t.Errorf("a refused copy left disks %v files %v", srv.Disks(), srv.Files())
				}
				return
			}
			if err != nil || d.NVMeExport || d.MountFilesystem || d.Size != s.Size || d.FilePath != p {
				t.Fatalf("CopyDisk = %+v, %v", d, err)
			}
			for _, m := range srv.Disks() {
				if m.Slot == snap && (m.NVMeExport || m.MountFilesystem) {
					t.Errorf("the copy on the RDS: %+v", m)
				}
			}
			if got := string(srv.Data(p)); got != "source data" {
				t.Errorf("copy data %q", got)
			}
			want := []string{"disk-print", "disk-copy", "disk-print"}
			if v.CopyInheritsExport {
				want = append(want, "disk-set", "disk-print")
			}
			if fmt.Sprint(verbs) != fmt.Sprint(want) {
				t.Errorf("CopyDisk sent %v, want %v", verbs, want)
			}
		})
	}
}

func TestClientRefusesWhatIsNotOurs(t *testing.T) {
	srv, _, c := emulator(t, rdstest.Options{}, nil)
	ctx := context.Background()
	srv.AddFile("/storage-pool/rds-csi/notes.img", 10)
	srv.AddFile("/storage-pool/other/"+testSlot+".img", 10)
	for _, err := range []error{
		c.RemoveDisk(ctx, rdstest.PoolSlot),
		c.RemoveDisk(ctx, "pvc-0123"),
		c.RemoveFile(ctx, testDir, "/storage-pool/rds-csi/notes.img"),
		c.RemoveFile(ctx, testDir, "/storage-pool/other/"+testSlot+".img"),
		func() error { _, err := c.ResizeDisk(ctx, rdstest.PoolSlot, 1); return err }(),
		func() error {
			_, err := c.CreateDisk(ctx, DiskSpec{Slot: "mine", FilePath: testPath, Size: 1, Port: 1, NQN: testNQN})
			return err
		}(),
	} {
		if !errors.Is(err, ErrNotOwned) {
			t.Errorf("got %v, want ErrNotOwned", err)
		}
	}
	if got := srv.Commands(); len(got) != 0 {
		t.Errorf("commands sent: %q", got)
	}
	if len(srv.Files()) != 2 {
		t.Errorf("files: %v", srv.Files())
	}
}

func TestPoolFull(t *testing.T) {
	for _, stderr := range []bool{false, true} {
		_, _, c := emulator(t, rdstest.Options{PoolSize: 1 << 30, Variant: rdstest.Variant{ErrorsOnStderr: stderr}}, nil)
		_, err := c.CreateDisk(context.Background(), spec(t, "big", 1<<30+1))
		if !errors.Is(err, ErrNoSpace) {
			t.Errorf("stderr=%v: %v, want ErrNoSpace", stderr, err)
		}
	}
}

func TestHostKeyRefused(t *testing.T) {
	ctx := context.Background()
	t.Run("mismatch", func(t *testing.T) {
		srv, tr, c := emulator(t, rdstest.Options{}, nil)
		if err := srv.RotateHostKey(); err != nil {
			t.Fatal(err)
		}
		if err := c.Ping(ctx); !errors.Is(err, ErrHostKey) || !strings.Contains(err.Error(), "does not match") {
			t.Errorf("Ping = %v, want ErrHostKey (mismatch)", err)
		}
		if _, err := c.Disk(ctx, testSlot); !errors.Is(err, ErrHostKey) {
			t.Errorf("Disk = %v, want ErrHostKey", err)
		}
		if len(srv.Commands()) != 0 || tr.Reconnects() != 0 {
			t.Errorf("commands %q reconnects %d", srv.Commands(), tr.Reconnects())
		}
	})
	t.Run("unknown host", func(t *testing.T) {
		other, err := rdstest.Start(rdstest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		// known_hosts names another host only: no trust on first use
		_, _, c := emulator(t, rdstest.Options{}, func(c *SSHConfig) { c.KnownHosts = other.KnownHosts() })
		if err := c.Ping(ctx); !errors.Is(err, ErrHostKey) || !strings.Contains(err.Error(), "no key") {
			t.Errorf("Ping = %v, want ErrHostKey (unknown host)", err)
		}
	})
}

func TestAuthFailure(t *testing.T) {
	ctx := context.Background()
	srv, _, c := emulator(t, rdstest.Options{}, nil)
	srv.RejectAuth(true)
	if err := c.Ping(ctx); !errors.Is(err, ErrAuth) {
		t.Errorf("Ping = %v, want ErrAuth", err)
	}
	other, err := rdstest.Start(rdstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, _, c = emulator(t, rdstest.Options{}, func(c *SSHConfig) { c.PrivateKey = other.ClientKeyPEM() })
	if _, err := c.Disk(ctx, testSlot); !errors.Is(err, ErrAuth) {
		t.Errorf("wrong key: %v, want ErrAuth", err)
	}
}

// TestHungCommand: a command the RDS never answers ends at the context's
// deadline; the retry on a new connection is safe and sees the state.
func TestHungCommand(t *testing.T) {
	srv, tr, c := emulator(t, rdstest.Options{}, nil)
	s := spec(t, "pvc-hang", 1<<20)
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.Hang("/disk add")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.CreateDisk(ctx, s)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("CreateDisk = %v, want deadline and ErrUnreachable", err)
	}
	srv.Hang("")
	if _, err := c.Disk(context.Background(), s.Slot); !errors.Is(err, ErrNotFound) {
		t.Errorf("Disk after the hang: %v, want ErrNotFound", err)
	}
	if d, err := c.CreateDisk(context.Background(), s); err != nil || d.Slot != s.Slot {
		t.Errorf("retried CreateDisk = %+v, %v", d, err)
	}
	if tr.Reconnects() < 1 {
		t.Errorf("Reconnects = %d, want >= 1 (the hung connection was closed)", tr.Reconnects())
	}
}

// TestDroppedConnection: the connection drops after the RDS ran a create but
// before it answered: the caller gets ErrUnreachable, re-reads on a new
// connection and finds the disk once.
func TestDroppedConnection(t *testing.T) {
	ctx := context.Background()
	srv, tr, c := emulator(t, rdstest.Options{}, nil)
	s := spec(t, "pvc-drop", 1<<20)
	srv.Drop("/disk add", true)
	if _, err := c.CreateDisk(ctx, s); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("CreateDisk = %v, want ErrUnreachable", err)
	}
	d, err := c.Disk(ctx, s.Slot)
	if err != nil || Matches(d, s) != nil {
		t.Fatalf("Disk after drop = %+v, %v", d, err)
	}
	if n := len(srv.Disks()); n != 1 {
		t.Errorf("%d disks, want 1", n)
	}
	// dropped before it ran: nothing created
	s2 := spec(t, "pvc-drop-2", 1<<20)
	srv.Drop("/disk add", false)
	if _, err := c.CreateDisk(ctx, s2); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("CreateDisk = %v, want ErrUnreachable", err)
	}
	if _, err := c.Disk(ctx, s2.Slot); !errors.Is(err, ErrNotFound) {
		t.Errorf("Disk = %v, want ErrNotFound", err)
	}
	// dropped between commands: the next session is opened on a new connection
	srv.DropConnections()
	if err := c.Ping(ctx); err != nil {
		t.Errorf("Ping after drop: %v", err)
	}
	if tr.Reconnects() < 2 {
		t.Errorf("Reconnects = %d, want >= 2", tr.Reconnects())
	}
}

// TestSessionBound: with MaxSessions 1 and one command hung, a second call
// waits for a session and ends at its own deadline without sending
// anything.
func TestSessionBound(t *testing.T) {
	srv, _, c := emulator(t, rdstest.Options{}, func(c *SSHConfig) { c.MaxSessions = 1 })
	srv.Hang("print")
	ctx1, cancel1 := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := c.Disk(ctx1, testSlot)
		first <- err
	}()
	for len(srv.Commands()) == 0 { // the first command reached the RDS
		select {
		case err := <-first:
			t.Fatalf("the command to hang ended: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := c.Disk(ctx2, testSlot); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second call: %v, want deadline", err)
	}
	if got := srv.Commands(); len(got) != 1 {
		t.Errorf("commands %q, want only the hung one", got)
	}
	cancel1()
	<-first
}

func TestSecretsNotLogged(t *testing.T) {
	srv, err := rdstest.Start(rdstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	key := srv.ClientKeyPEM()
	var logs bytes.Buffer
	cfg := SSHConfig{Address: srv.Addr(), User: srv.User(), PrivateKey: key, KnownHosts: srv.KnownHosts(),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	tr, err := NewSSH(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := NewClient(tr, nil).Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "cfg", cfg)
	bad := cfg
	bad.PrivateKey = append([]byte("garbage"), key[10:]...)
	_, err = NewSSH(bad)
	if !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad key: %v", err)
	}
	all := logs.String() + fmt.Sprint(cfg) + fmt.Sprintf("%v", err)
	body := strings.Split(string(key), "\n")[1] // a line of the key's base64
	if strings.Contains(all, body[:20]) || strings.Contains(all, "PRIVATE KEY") {
		t.Errorf("key material in logs or errors:\n%s", all)
	}
	if !strings.Contains(all, "<redacted>") {
		t.Errorf("no redaction marker:\n%s", all)
	}
}

func TestNewSSHValidates(t *testing.T) {
	srv, err := rdstest.Start(rdstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	good := SSHConfig{Address: srv.Addr(), User: srv.User(), PrivateKey: srv.ClientKeyPEM(), KnownHosts: srv.KnownHosts()}
	for name, mut := range map[string]func(*SSHConfig){
		"no port":           func(c *SSHConfig) { c.Address = "127.0.0.1" },
		"no user":           func(c *SSHConfig) { c.User = "" },
		"user with space":   func(c *SSHConfig) { c.User = "a b" },
		"no key":            func(c *SSHConfig) { c.PrivateKey = nil },
		"no known_hosts":    func(c *SSHConfig) { c.KnownHosts = nil },
		"known_hosts junk":  func(c *SSHConfig) { c.KnownHosts = []byte("not a known hosts line\n") },
		"blank known_hosts": func(c *SSHConfig) { c.KnownHosts = []byte("\n\n") },
	} {
		c := good
		mut(&c)
		if _, err := NewSSH(c); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
}

// TestConcurrentClients: many concurrent calls through a bound of two
// sessions all succeed and the observer sees every command.
func TestConcurrentClients(t *testing.T) {
	srv, tr, _ := emulator(t, rdstest.Options{}, nil)
	var mu sync.Mutex
	verbs := map[string]int{}
	c := NewClient(tr, func(verb string, err error, d time.Duration) {
		mu.Lock()
		verbs[verb+"/"+ErrorClass(err)]++
		mu.Unlock()
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := spec(t, fmt.Sprintf("pvc-%d", i), 1<<20)
			if _, err := c.CreateDisk(ctx, s); err != nil {
				errs <- err
				return
			}
			errs <- c.RemoveDisk(ctx, s.Slot)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if len(srv.Disks()) != 0 || len(srv.Files()) != 8 {
		t.Errorf("disks %v files %d", srv.Disks(), len(srv.Files()))
	}
	want := map[string]int{"disk-add/": 8, "disk-remove/": 8, "disk-print/": 16}
	if fmt.Sprint(verbs) != fmt.Sprint(want) {
		t.Errorf("observed %v, want %v", verbs, want)
	}
}

// TestUnreachable: an RDS that is gone is ErrUnreachable after the bounded
// backoff, not a hang.
func TestUnreachable(t *testing.T) {
	srv, _, c := emulator(t, rdstest.Options{}, nil)
	srv.Close()
	if err := c.Ping(context.Background()); !errors.Is(err, ErrUnreachable) || !Retryable(err) {
		t.Errorf("Ping = %v, want ErrUnreachable", err)
	}
	if _, err := c.Disks(context.Background(), ""); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Disks = %v, want ErrUnreachable", err)
	}
}

// TestRoundTrips pins how many RouterOS commands each Client call sends
// (doc.go lists them): each is a round trip of about half a second on a
// real RDS (ROUTEROS.md), so a change here is a change in latency.
func TestRoundTrips(t *testing.T) {
	srv, _, c := emulator(t, rdstest.Options{}, nil)
	ctx := context.Background()
	s := spec(t, "pvc-rt", 1<<20)
	snap, _ := SnapshotSlotFor("snap-rt")
	snapPath, _ := FilePathFor(testDir, snap)
	steps := []struct {
		name string
		call func() error
		want []string
	}{
		{"Disk", func() error { _, err := c.Disk(ctx, s.Slot); return ignoreNotFound(err) }, []string{"disk-print"}},
		{"CreateDisk", func() error { _, err := c.CreateDisk(ctx, s); return err }, []string{"disk-add", "disk-print"}},
		{"ResizeDisk", func() error { _, err := c.ResizeDisk(ctx, s.Slot, 2<<20); return err }, []string{"disk-print", "disk-set", "disk-print"}},
		{"CopyDisk", func() error {
			_, err := c.CopyDisk(ctx, CopySpec{From: s.Slot, Slot: snap, FilePath: snapPath})
			return err
		}, []string{"disk-print", "disk-copy", "disk-print"}},
		{"ExportDisk", func() error { _, err := c.ExportDisk(ctx, snap, 4420, testNQN); return err }, []string{"disk-set", "disk-print"}},
		{"UnexportDisk", func() error { _, err := c.UnexportDisk(ctx, snap); return err }, []string{"disk-set", "disk-print"}},
		{"SlotFiles", func() error { _, err := c.SlotFiles(ctx, testDir, snap); return err }, []string{"file-print"}},
		{"Pool", func() error { _, err := c.Pool(ctx, testPool); return err }, []string{"disk-print"}},
		{"RemoveDisk", func() error { return c.RemoveDisk(ctx, s.Slot) }, []string{"disk-remove", "disk-print"}},
		{"RemoveFile", func() error { return c.RemoveFile(ctx, testDir, s.FilePath) }, []string{"disk-print", "file-remove", "file-print"}},
		{"Files", func() error { _, err := c.Files(ctx, testDir); return err }, []string{"file-print"}},
	}
	for _, st := range steps {
		before := len(srv.Commands())
		if err := st.call(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		var got []string
		for _, line := range srv.Commands()[before:] {
			got = append(got, verbOf(line))
		}
		if fmt.Sprint(got) != fmt.Sprint(st.want) {
			t.Errorf("%s sent %v, want %v", st.name, got, st.want)
		}
	}
}

func ignoreNotFound(err error) error {
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func verbOf(line string) string {
	f := strings.Fields(line)
	v := strings.TrimPrefix(f[0], "/") + "-" + f[1]
	if strings.Contains(line, "copy-from=") {
		v = "disk-copy"
	}
	return v
}

// TestCommandTimeout: a command whose context has no deadline still ends,
// at CommandTimeout.
func TestCommandTimeout(t *testing.T) {
	srv, _, c := emulator(t, rdstest.Options{}, func(c *SSHConfig) { c.CommandTimeout = 200 * time.Millisecond })
	srv.Hang("print")
	if _, err := c.Disks(context.Background(), ""); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnreachable) {
		t.Errorf("Disks = %v, want deadline and ErrUnreachable", err)
	}
}

// TestSessionRefused: an RDS that refuses one more session (a channel
// rejection, the connection itself fine) is ErrBusy, retryable, and the
// command already running on that connection is not disturbed.
func TestSessionRefused(t *testing.T) {
	srv, tr, c := emulator(t, rdstest.Options{MaxSessions: 1}, nil)
	ctx := context.Background()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Hang("slot~")
	hung := make(chan error, 1)
	go func() {
		for {
			// the Ping's session may not be closed on the server side yet
			_, err := c.Disks(ctx, SlotPrefix)
			if !errors.Is(err, ErrBusy) {
				hung <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for len(srv.Commands()) == 0 { // the hung command reached the RDS
		select {
		case err := <-hung:
			t.Fatalf("the command to hang ended: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	_, err := c.Disk(ctx, testSlot)
	if !errors.Is(err, ErrBusy) || !Retryable(err) {
		t.Errorf("second session: %v, want ErrBusy", err)
	}
	select {
	case err := <-hung:
		t.Errorf("the running command ended: %v", err)
	default:
		srv.Hang("")
		srv.DropConnections()
		<-hung
	}
	if tr.Reconnects() != 0 {
		t.Errorf("Reconnects = %d: the connection was dropped", tr.Reconnects())
	}
}
