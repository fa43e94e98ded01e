package rdstest

import (
	"strings"
	"testing"
)

const (
	slot = "rds-csi-0123456789abcdef01234567"
	path = "/storage-pool/rds-csi/" + slot + ".img"
	add  = `/disk add type=file file-path="` + path + `" file-size=1048576 slot="` + slot + `" mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:` + slot + `"`
)

func start(t *testing.T, o Options) *Server {
	t.Helper()
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestVariants(t *testing.T) {
	for _, tc := range []struct {
		v                    Variant
		stdout, stderr       string
		status               int
		silentStdout, silent string
	}{
		{Variant{}, "failure: not enough space\r\n", "", 0, "", ""},
		{Variant{ErrorsOnStderr: true, ErrorExitStatus: 1}, "", "failure: not enough space\r\n", 1, "", ""},
		{Variant{FindNoMatchError: true}, "failure: not enough space\r\n", "", 0, "failure: no such item\r\n", ""},
	} {
		s := start(t, Options{PoolSize: 1024, Variant: tc.v})
		out, errOut, status := s.Exec(add)
		if out != tc.stdout || errOut != tc.stderr || status != tc.status {
			t.Errorf("%+v: add on a full pool = %q, %q, %d", tc.v, out, errOut, status)
		}
		out, errOut, _ = s.Exec(`/disk remove [find slot="nothing"]`)
		if out != tc.silentStdout || errOut != tc.silent {
			t.Errorf("%+v: remove of nothing = %q, %q", tc.v, out, errOut)
		}
	}
}

func TestModel(t *testing.T) {
	s := start(t, Options{})
	run := func(line, wantErr string) string {
		t.Helper()
		out, _, _ := s.Exec(line)
		if wantErr == "" && strings.HasPrefix(out, "failure") || wantErr != "" && !strings.Contains(out, wantErr) {
			t.Fatalf("%s: %q, want error %q", line, out, wantErr)
		}
		return out
	}
	run(add, "")
	run(add, "already exists")
	run(`/disk set [find slot="`+slot+`"] file-size=1024`, "cannot shrink")
	run(`/disk set [find slot="`+slot+`"] file-size=2097152`, "")
	run(`/disk add type=file copy-from=[find slot="`+slot+`"] file-path="/storage-pool/rds-csi/copy.img" slot="copy" mount-filesystem=no`, "")
	if got := s.Files(); got["/storage-pool/rds-csi/copy.img"] != 2097152 || got[path] != 2097152 {
		t.Errorf("files after copy: %v", got)
	}
	run(`/file remove [find name="`+strings.TrimPrefix(path, "/")+`"]`, "in use")
	run(`/disk remove [find slot="`+slot+`"]`, "")
	if _, ok := s.Files()[path]; !ok {
		t.Error("removing the disk removed its file")
	}
	run(`/file remove [find name="`+strings.TrimPrefix(path, "/")+`"]`, "")
	if len(s.Disks()) != 1 || len(s.Files()) != 1 {
		t.Errorf("disks %v files %v", s.Disks(), s.Files())
	}
	run(`/disk add type=file file-path="/x.img" file-size=1 slot="`+strings.Repeat("a", 33)+`"`, "too long")
	s.SetVariant(Variant{RemoveDiskRemovesFile: true})
	run(`/disk remove [find slot="copy"]`, "")
	if len(s.Disks()) != 0 || len(s.Files()) != 0 {
		t.Errorf("RemoveDiskRemovesFile: disks %v files %v", s.Disks(), s.Files())
	}
	for _, bad := range []string{
		`/disk add type=file slot="a$b" file-path="/x" file-size=1`,
		`/disk print detail; /system reset`,
		`/disk print detail where slot="a" extra=1`,
		`/disk add type=file slot=a file-path=/x file-size=1 comment=x`,
		`/disk remove [find slot="a"`,
		`/system reset`,
		"/disk print detail\n/system reset",
	} {
		if out, _, _ := s.Exec(bad); out == "" || strings.HasPrefix(out, "Flags") {
			t.Errorf("%q accepted: %q", bad, out)
		}
	}
}

func TestDetailLayout(t *testing.T) {
	s := start(t, Options{PoolSize: 53687091200})
	out, _, _ := s.Exec(`/disk print detail where slot="none"`)
	if out != diskLegend+"\r\n" {
		t.Errorf("empty print = %q, want the legend only", out)
	}
	out, _, _ = s.Exec(`/disk print detail where mount-point="storage-pool"`)
	if !strings.Contains(out, "size=53 687 091 200") || !strings.Contains(out, "\r\n      ") || strings.Contains(strings.ReplaceAll(out, "\r\n", ""), "\n") {
		t.Errorf("pool print lacks grouped digits, wrapping or CRLF:\n%s", out)
	}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
		if len(l) > DefaultWidth {
			t.Errorf("line longer than %d: %q", DefaultWidth, l)
		}
	}
	if Group(1) != "1" || Group(1000) != "1 000" || Group(53687091200) != "53 687 091 200" || Human(53687091200) != "50.0GiB" {
		t.Error("Group/Human")
	}
}

// TestCopy: a copy carries its source's size and data, is not exported,
// and the two copy variants do what they say.
func TestCopy(t *testing.T) {
	cp := `/disk add type=file copy-from=[find slot="` + slot + `"] file-path="/storage-pool/rds-csi/copy.img" slot="copy" mount-filesystem=no`
	for _, tc := range []struct {
		v        Variant
		exported bool
		refused  bool
	}{
		{Variant{}, false, false},
		{Variant{CopyInheritsExport: true}, true, false},
		{Variant{CopyRefusesProperties: true}, false, true},
	} {
		s := start(t, Options{Variant: tc.v})
		if out, _, _ := s.Exec(add); out != "" {
			t.Fatal(out)
		}
		if err := s.WriteData(path, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		out, _, _ := s.Exec(cp)
		if tc.refused {
			if !strings.Contains(out, "expected end of command") || len(s.Disks()) != 1 {
				t.Errorf("%+v: copy with mount-filesystem = %q, disks %v", tc.v, out, s.Disks())
			}
			out, _, _ = s.Exec(strings.TrimSuffix(cp, " mount-filesystem=no"))
		}
		if out != "" {
			t.Fatalf("%+v: copy = %q", tc.v, out)
		}
		d := s.Disks()[1]
		if d.NVMeExport != tc.exported || tc.exported && (d.NVMePort != 4420 || d.NVMeNQN == "") || s.Files()["/storage-pool/rds-csi/copy.img"] != 1048576 {
			t.Errorf("%+v: copy %+v files %v", tc.v, d, s.Files())
		}
		if got := string(s.Data("/storage-pool/rds-csi/copy.img")); got != "hello" {
			t.Errorf("%+v: copy data %q", tc.v, got)
		}
		s.WriteData(path, []byte("changed"))
		if got := string(s.Data("/storage-pool/rds-csi/copy.img")); got != "hello" {
			t.Errorf("%+v: the copy follows its source: %q", tc.v, got)
		}
	}
}
