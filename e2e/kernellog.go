package e2e

import (
	"regexp"
	"strings"
)

// kernelTrouble matches the first line of a kernel report of trouble: an
// oops, a BUG, a general protection fault or a panic, and also a soft lockup
// or a task hung in the kernel. (The lab's nvme-tcp and nvmet warnings about
// failed connects are expected, and not matched.)
var kernelTrouble = regexp.MustCompile(`\b(Oops|BUG: |general protection fault|INFO: task .* blocked for more than|Kernel panic)`)

// kernelSlow matches the reports among those that say the kernel was slow,
// not wrong: a soft lockup or a hung task. Under TCG they come from the
// emulation's speed (a page-zeroing loop ran for minutes with
// init_on_alloc=1, see lab.go), so they are reported, not failed on.
var kernelSlow = regexp.MustCompile(`soft lockup|blocked for more than`)

// KernelTrouble returns the kernel's reports of trouble in log (a guest's
// dmesg or console): each from its first line to the end of its stack
// (at most 40 lines), at most 3 of them; slow only those that say the
// kernel was slow (soft lockups, hung tasks), faults the others.
func KernelTrouble(log string, slow bool) []string {
	lines := strings.Split(log, "\n")
	var out []string
	for i := 0; i < len(lines) && len(out) < 3; i++ {
		if !kernelTrouble.MatchString(lines[i]) || kernelSlow.MatchString(lines[i]) != slow {
			continue
		}
		end := min(i+40, len(lines))
		for j := i + 1; j < end; j++ {
			if strings.Contains(lines[j], "---[ end trace") {
				end = j + 1
				break
			}
		}
		out = append(out, strings.Join(lines[i:end], "\n"))
		i = end - 1
	}
	return out
}
