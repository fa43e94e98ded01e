package rdstest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// recorder is a Backend that logs its calls and fails those containing fail.
type recorder struct {
	calls []string
	fail  string
}

func (r *recorder) do(format string, a ...any) error {
	c := fmt.Sprintf(format, a...)
	if r.fail != "" && strings.Contains(c, r.fail) {
		r.calls = append(r.calls, c+" FAILED")
		return errors.New("injected")
	}
	r.calls = append(r.calls, c)
	return nil
}

func (r *recorder) CreateFile(n string, s int64) error { return r.do("create %s %d", n, s) }
func (r *recorder) CopyFile(src, dst string) error     { return r.do("copy %s %s", src, dst) }
func (r *recorder) GrowFile(n string, s int64) error   { return r.do("grow %s %d", n, s) }
func (r *recorder) RemoveFile(n string) error          { return r.do("rmfile %s", n) }
func (r *recorder) Export(f string, p int, n string) error {
	return r.do("export %s %d %s", f, p, n)
}
func (r *recorder) Unexport(f string, p int, n string) error {
	return r.do("unexport %s %d %s", f, p, n)
}
func (r *recorder) Resized(f string, p int, n string) error {
	return r.do("resized %s %d %s", f, p, n)
}

func (r *recorder) AllowHosts(f string, p int, n string, hosts []string) error {
	return r.do("allow %s %d %s %v", f, p, n, hosts)
}

func (r *recorder) take() []string { c := r.calls; r.calls = nil; return c }

// TestBackendEffects: every change the model commits reaches the Backend
// with exactly its effects, and a Backend failure fails the command and
// leaves the model as it was.
func TestBackendEffects(t *testing.T) {
	rec := &recorder{}
	s := start(t, Options{Backend: rec})
	name := strings.TrimPrefix(path, "/")
	nqn := "nqn.2000-02.com.mikrotik:" + slot
	copyName := "storage-pool/rds-csi/copy.img"
	for _, step := range []struct {
		line string
		fail string
		want []string
	}{
		{add, "", []string{"create " + name + " 1048576", "export " + name + " 4420 " + nqn}},
		{`/disk set [find slot="` + slot + `"] file-size=2097152`, "", []string{"grow " + name + " 2097152", "resized " + name + " 4420 " + nqn}},
		{`/disk set [find slot="` + slot + `"] file-size=2097152`, "", nil},
		{`/disk set [find slot="` + slot + `"] nvme-tcp-server-port=4421`, "", []string{"unexport " + name + " 4420 " + nqn, "export " + name + " 4421 " + nqn}},
		{`/disk set [find slot="` + slot + `"] nvme-tcp-server-allow-host-name="nqn.h:a"`, "", []string{"allow " + name + " 4421 " + nqn + " [nqn.h:a]"}},
		{`/disk set [find slot="` + slot + `"] nvme-tcp-server-allow-host-name="nqn.h:a" comment="c"`, "", nil},
		{`/disk set [find slot="` + slot + `"] nvme-tcp-server-allow-host-name=""`, "", []string{"allow " + name + " 4421 " + nqn + " []"}},
		{`/disk set [find slot="` + slot + `"] nvme-tcp-server-allow-host-name="nqn.h:b"`, "allow", []string{"allow " + name + " 4421 " + nqn + " [nqn.h:b] FAILED"}},
		{`/disk add type=file copy-from=[find slot="` + slot + `"] file-path="/` + copyName + `" slot="copy" mount-filesystem=no`, "", []string{"copy " + name + " " + copyName}},
		{`/disk set [find slot="copy"] nvme-tcp-export=yes nvme-tcp-server-port=4421 nvme-tcp-server-nqn="nqn.x:copy"`, "", []string{"export " + copyName + " 4421 nqn.x:copy"}},
		{`/disk remove [find slot="copy"]`, "", []string{"unexport " + copyName + " 4421 nqn.x:copy"}},
		{`/file remove [find name="` + copyName + `"]`, "", []string{"rmfile " + copyName}},
		// Failures: the model is unchanged (checked below).
		{`/disk set [find slot="` + slot + `"] file-size=4194304`, "grow", []string{"grow " + name + " 4194304 FAILED"}},
		{`/disk add type=file file-path="/b.img" file-size=1 slot="b" nvme-tcp-export=yes nvme-tcp-server-port=1 nvme-tcp-server-nqn="n"`, "export b.img",
			[]string{"create b.img 1", "export b.img 1 n FAILED", "rmfile b.img"}},
		{`/disk remove [find slot="` + slot + `"]`, "unexport", []string{"unexport " + name + " 4421 " + nqn + " FAILED"}},
	} {
		rec.fail = step.fail
		out, _, _ := s.Exec(step.line)
		if failed := strings.HasPrefix(out, "failure: emulator backend: injected"); failed != (step.fail != "") {
			t.Errorf("%s: %q", step.line, out)
		}
		if got := rec.take(); !reflect.DeepEqual(got, step.want) {
			t.Errorf("%s:\n got %q\nwant %q", step.line, got, step.want)
		}
	}
	if d := s.Disks(); len(d) != 1 || d[0].Slot != slot || d[0].NVMePort != 4421 || !d[0].NVMeExport || d[0].AllowHostName != "" || d[0].Comment != "c" {
		t.Errorf("disks after failed commands: %+v", d)
	}
	if f := s.Files(); len(f) != 1 || f[path] != 2097152 {
		t.Errorf("files after failed commands: %v", f)
	}
	rec.fail = ""
	s.SetVariant(Variant{RemoveDiskRemovesFile: true})
	s.Exec(`/disk remove [find slot="` + slot + `"]`)
	if got, want := rec.take(), []string{"unexport " + name + " 4421 " + nqn, "rmfile " + name}; !reflect.DeepEqual(got, want) {
		t.Errorf("remove with RemoveDiskRemovesFile: got %q, want %q", got, want)
	}
}
