package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeProc builds a procfs tree: self is pid 42, running bin/rds-csi.
// procs maps a pid to its exe (relative to the tree, "" for none: a kernel
// thread) and its argv.
func fakeProc(t *testing.T, procs map[string][2]string) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range []string{"bin/rds-csi", "other/rds-csi", "bin/sh"} {
		must(t, os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755))
		must(t, os.WriteFile(filepath.Join(root, f), []byte(f), 0o755))
	}
	proc := filepath.Join(root, "proc")
	procs["42"] = [2]string{"bin/rds-csi", "rds-csi\x00" + drainCommand}
	for pid, p := range procs {
		dir := filepath.Join(proc, pid)
		must(t, os.MkdirAll(dir, 0o755))
		if p[0] != "" {
			must(t, os.Symlink(filepath.Join(root, p[0]), filepath.Join(dir, "exe")))
		}
		must(t, os.WriteFile(filepath.Join(dir, "cmdline"), []byte(p[1]+"\x00"), 0o644))
	}
	must(t, os.Symlink("42", filepath.Join(proc, "self")))
	must(t, os.WriteFile(filepath.Join(proc, "uptime"), []byte("1 1\n"), 0o644))
	return proc
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestFindPlugin(t *testing.T) {
	plugin := [2]string{"bin/rds-csi", "/usr/local/bin/rds-csi\x00--endpoint=unix:///csi/csi.sock"}
	tests := []struct {
		name    string
		procs   map[string][2]string
		want    int
		wantErr string
	}{
		{"the plugin is pid 1", map[string][2]string{"1": plugin, "2": {"", ""}, "7": {"bin/sh", "sh"}}, 1, ""},
		{"shared pid namespace: init is another program", map[string][2]string{"1": {"bin/sh", "/sbin/init"}, "300": plugin}, 300, ""},
		{"the same name, another file", map[string][2]string{"1": {"other/rds-csi", "rds-csi"}, "9": plugin}, 9, ""},
		{"another admin call is not the plugin", map[string][2]string{"1": plugin, "50": {"bin/rds-csi", "rds-csi\x00" + drainCommand}}, 1, ""},
		{"a running check is not the plugin", map[string][2]string{"1": plugin, "51": {"bin/rds-csi", "rds-csi\x00" + checkCommand}}, 1, ""},
		{"none", map[string][2]string{"1": {"bin/sh", "/sbin/init"}}, 0, "no running rds-csi plugin"},
		{"two", map[string][2]string{"1": plugin, "12": plugin}, 0, "pids 1 12"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findPlugin(fakeProc(t, tc.procs))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %d, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// pluginArgsEnv carries the plugin's arguments to TestDrainHelperPlugin.
const pluginArgsEnv = "RDS_CSI_TEST_PLUGIN_ARGS"

// TestDrainHelperPlugin is the plugin process of TestDrainSignalsPlugin (a
// re-executed test binary, so its executable is the same file as the
// test's); it does nothing in a normal run.
func TestDrainHelperPlugin(t *testing.T) {
	raw := os.Getenv(pluginArgsEnv)
	if raw == "" {
		t.Skip("only the child process of TestDrainSignalsPlugin runs this")
	}
	var args []string
	must(t, json.Unmarshal([]byte(raw), &args))
	if err := run(context.Background(), args, os.Stderr, os.Stderr); err != nil {
		t.Fatal(err)
	}
}

// TestDrainSignalsPlugin runs the README's recipe against a real plugin
// process on this machine's /proc: `rds-csi drain-dead-targets` finds the
// running plugin (another process of the same executable) and the plugin
// answers with its lowering pass; then SIGTERM stops it cleanly.
func TestDrainSignalsPlugin(t *testing.T) {
	dir := t.TempDir()
	args, _ := json.Marshal([]string{
		"--endpoint", "unix://" + filepath.Join(dir, "csi.sock"),
		"--node-id", "node-1",
		"--state-dir", filepath.Join(dir, "state"),
		"--host-identity-dir", "",
		"--sysfs-root", filepath.Join(dir, "sys"),
		"--fabrics-device", "/dev/null",
		"--staging-root", filepath.Join(dir, "plugins"),
		"--metrics-address", "",
		"--skip-netns-check", "--no-events",
		"--log-format", "text",
	})
	logPath := filepath.Join(dir, "plugin.log")
	logFile, err := os.Create(logPath)
	must(t, err)
	defer logFile.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDrainHelperPlugin$", "-test.count=1")
	cmd.Env = append(os.Environ(), pluginArgsEnv+"="+string(args))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	must(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
	}()
	waitLog := func(want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			b, _ := os.ReadFile(logPath)
			if bytes.Contains(b, []byte(want)) {
				return
			}
			select {
			case err := <-exited:
				t.Fatalf("plugin exited (%v) before logging %q:\n%s", err, want, b)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("plugin never logged %q:\n%s", want, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLog("serving CSI")

	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{drainCommand}, &out, &errOut); err != nil {
		t.Fatalf("%s: %v (%s)", drainCommand, err, errOut.String())
	}
	if want := "pid " + strconv.Itoa(cmd.Process.Pid); !strings.Contains(out.String(), want) {
		t.Errorf("output %q does not name the plugin's %s", out.String(), want)
	}
	waitLog("lowered ctrl_loss_tmo on controllers whose target has been unreachable")

	must(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		if err != nil {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("plugin exited with %v after SIGTERM:\n%s", err, b)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("plugin did not stop on SIGTERM")
	}
}
