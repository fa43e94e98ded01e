package e2e

import (
	"regexp"
	"strings"
)

// kernelTrouble matches the first line of a kernel report that no lab run
// may produce: an oops, a BUG, a general protection fault, a soft lockup or a
// task hung in the kernel. (The lab's nvme-tcp and nvmet warnings about
// failed connects are expected, and not matched.)
var kernelTrouble = regexp.MustCompile(`\b(Oops|BUG: |general protection fault|watchdog: BUG: soft lockup|INFO: task .* blocked for more than|Kernel panic)`)

// KernelTrouble returns the kernel's reports of trouble in log (a guest's
// dmesg or console): each from its first line to the end of its stack
// (at most 40 lines), at most 3 of them.
func KernelTrouble(log string) []string {
	lines := strings.Split(log, "\n")
	var out []string
	for i := 0; i < len(lines) && len(out) < 3; i++ {
		if !kernelTrouble.MatchString(lines[i]) {
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
