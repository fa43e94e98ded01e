package e2e

import (
	"strings"
	"testing"
)

// A guest dmesg with the lab's expected noise (failed connects, a
// reconnect) and, in the middle, an oops of the shape the 6.12 lab showed
// (the frames are those it named; the rest is the kernel's format).
const sampleDmesg = `[   12.100000] nvme nvme0: new ctrl: NQN "nqn.2024-01.io.test:vol0", addr 127.0.0.1:4420, hostnqn: nqn.2014-08.org.nvmexpress:uuid:0
[   13.200000] nvme nvme0: failed to connect socket: -111
[   13.300000] nvme nvme0: Failed reconnect attempt 1/-1
[   20.000000] nvme nvme1: Removing ctrl: NQN "nqn.2024-01.io.test:vol1"
[   20.075000] BUG: kernel NULL pointer dereference, address: 0000000000000010
[   20.075001] #PF: supervisor read access in kernel mode
[   20.075002] Oops: Oops: 0000 [#1] PREEMPT SMP NOPTI
[   20.075003] CPU: 1 UID: 0 PID: 412 Comm: rds-csi Not tainted 6.12.117 #1
[   20.075004] RIP: 0010:kernel_getsockname+0x5/0x20
[   20.075005] Call Trace:
[   20.075006]  <TASK>
[   20.075007]  nvme_tcp_get_address+0x6f/0xb0 [nvme_tcp]
[   20.075008]  nvme_sysfs_show_address+0x1d/0x30 [nvme_core]
[   20.075009]  </TASK>
[   20.075010] ---[ end trace 0000000000000000 ]---
[   21.000000] nvme nvme0: creating 2 I/O queues.
`

func TestKernelTrouble(t *testing.T) {
	got := KernelTrouble(sampleDmesg, false)
	if len(got) != 1 {
		t.Fatalf("reports %q, want the one oops", got)
	}
	if !strings.HasPrefix(got[0], "[   20.075000] BUG: kernel NULL pointer dereference") ||
		!strings.HasSuffix(got[0], "---[ end trace 0000000000000000 ]---") ||
		!strings.Contains(got[0], "Comm: rds-csi") {
		t.Errorf("report:\n%s\nwant the oops from its BUG line to its end marker", got[0])
	}
	quiet := strings.Join(strings.Split(sampleDmesg, "\n")[:4], "\n")
	if got := KernelTrouble(quiet, false); len(got) != 0 {
		t.Errorf("expected nvme noise reported as trouble: %q", got)
	}
	if got := KernelTrouble(sampleDmesg, true); len(got) != 0 {
		t.Errorf("the oops reported as slowness: %q", got)
	}
	for _, slow := range []string{
		"[ 500.0] INFO: task kerneltest.test:77 blocked for more than 122 seconds.\n[ 500.1] Call Trace:\n",
		"[ 256.8] watchdog: BUG: soft lockup - CPU#1 stuck for 25s! [kerneltest.test:197]\n[ 256.9] RIP: 0010:clear_page_erms+0xb/0x20\n",
	} {
		if got := KernelTrouble(slow, true); len(got) != 1 {
			t.Errorf("%q: slow reports %q, want one", slow, got)
		}
		if got := KernelTrouble(slow, false); len(got) != 0 {
			t.Errorf("%q: reported as a fault: %q", slow, got)
		}
	}
}
