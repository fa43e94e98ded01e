package kerneltest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ioProbe samples, while a phase runs, what a slow phase waits on: the
// kernel's TCP retransmissions and retransmission timeouts (every nvme-tcp
// queue and the target's are TCP over lo), the requests in flight per NVMe
// disk, the controllers' states, and the kernel stacks of this process's
// threads that are in the kernel and not idly waiting. A proof that finds a phase
// slow reports the samples, so that the next run says why.
type ioProbe struct {
	start   time.Time
	tcp0    map[string]int64
	cpu0    []int64          // /proc/stat's cpu line
	self0   [2]int64         // this process's utime, stime
	vm0     map[string]int64 // /proc/vmstat
	stop    chan struct{}
	done    sync.WaitGroup
	mu      sync.Mutex
	samples []string
}

// startIOProbe samples every interval until finish.
func startIOProbe(every time.Duration) *ioProbe {
	p := &ioProbe{start: time.Now(), tcp0: tcpCounters(), cpu0: cpuTicks(), self0: selfTicks(), vm0: vmstat(), stop: make(chan struct{})}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
				s := p.sample()
				p.mu.Lock()
				p.samples = append(p.samples, s)
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// finish stops sampling and returns the growth over the phase of the TCP
// counters, the guest's CPU time by kind, this process's CPU time and the
// memory-management counters that say the kernel worked to find memory;
// and the samples taken.
func (p *ioProbe) finish() (summary string, samples []string) {
	close(p.stop)
	p.done.Wait()
	var b strings.Builder
	b.WriteString(p.tcpDelta())
	if cpu := cpuTicks(); len(cpu) >= 8 && len(p.cpu0) >= 8 {
		var total int64
		d := make([]int64, 8)
		for i := range d {
			d[i] = cpu[i] - p.cpu0[i]
			total += d[i]
		}
		if total > 0 {
			fmt.Fprintf(&b, "; guest CPU user %d%%, nice %d%%, system %d%%, idle %d%%, iowait %d%%, irq+softirq %d%%, steal %d%%",
				100*d[0]/total, 100*d[1]/total, 100*d[2]/total, 100*d[3]/total, 100*d[4]/total, 100*(d[5]+d[6])/total, 100*d[7]/total)
		}
	}
	self := selfTicks()
	fmt.Fprintf(&b, "; this process: user %d ticks, system %d ticks", self[0]-p.self0[0], self[1]-p.self0[1])
	vm := vmstat()
	for _, k := range []string{"pgmajfault", "pgpgin", "allocstall_normal", "allocstall_movable", "compact_stall", "pgscan_direct", "pgscan_kswapd", "workingset_refault_file", "thp_fault_alloc"} {
		if d := vm[k] - p.vm0[k]; d != 0 {
			fmt.Fprintf(&b, "; %s +%d", k, d)
		}
	}
	return b.String(), p.samples
}

// cpuTicks is /proc/stat's first line: user, nice, system, idle, iowait,
// irq, softirq, steal, ... in clock ticks.
func cpuTicks() []int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var out []int64
	for _, f := range strings.Fields(line)[1:] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil
		}
		out = append(out, v)
	}
	return out
}

// selfTicks is this process's utime and stime (/proc/self/stat).
func selfTicks() [2]int64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return [2]int64{}
	}
	// The fields after the command's closing parenthesis: utime and stime
	// are the 12th and 13th of them.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return [2]int64{}
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return [2]int64{u, s}
}

// vmstat is /proc/vmstat by name.
func vmstat() map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		return out
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out
}

func (p *ioProbe) tcpDelta() string {
	now := tcpCounters()
	var parts []string
	for _, k := range []string{"RetransSegs", "TCPTimeouts", "TCPLostRetransmit", "TCPSynRetrans"} {
		parts = append(parts, fmt.Sprintf("%s +%d", k, now[k]-p.tcp0[k]))
	}
	return strings.Join(parts, ", ")
}

func (p *ioProbe) sample() string {
	var b strings.Builder
	fmt.Fprintf(&b, "at %s: %s", fmtDur(time.Since(p.start)), p.tcpDelta())
	disks, _ := filepath.Glob("/sys/block/nvme*/inflight")
	for _, f := range disks {
		if v, err := os.ReadFile(f); err == nil {
			if r := strings.Fields(string(v)); len(r) == 2 && (r[0] != "0" || r[1] != "0") {
				fmt.Fprintf(&b, "; %s in flight r/w %s/%s", filepath.Base(filepath.Dir(f)), r[0], r[1])
			}
		}
	}
	states, _ := filepath.Glob("/sys/class/nvme/nvme*/state")
	for _, f := range states {
		if v, err := os.ReadFile(f); err == nil {
			fmt.Fprintf(&b, "; %s %s", filepath.Base(filepath.Dir(f)), strings.TrimSpace(string(v)))
		}
	}
	stacks, _ := filepath.Glob("/proc/self/task/*/stack")
	for _, f := range stacks {
		v, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(v)
		idle := s == "" || strings.Contains(s, "futex_wait") || strings.Contains(s, "ep_poll") ||
			strings.Contains(s, "do_nanosleep") || strings.Contains(s, "do_sys_poll")
		if !idle {
			fmt.Fprintf(&b, "\n    task %s:\n%s", filepath.Base(filepath.Dir(f)), indent(strings.TrimSpace(s), "      "))
		}
	}
	return b.String()
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// tcpCounters reads the kernel's TCP counters (/proc/net/snmp's Tcp and
// /proc/net/netstat's TcpExt lines) by name.
func tcpCounters() map[string]int64 {
	out := map[string]int64{}
	for _, f := range []string{"/proc/net/snmp", "/proc/net/netstat"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i++ {
			names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			if len(names) == 0 || len(names) != len(values) || names[0] != values[0] ||
				(names[0] != "Tcp:" && names[0] != "TcpExt:") {
				continue
			}
			for j := 1; j < len(names); j++ {
				if v, err := strconv.ParseInt(values[j], 10, 64); err == nil {
					out[names[j]] = v
				}
			}
			i++
		}
	}
	return out
}

// firstLast returns the first n and the last m of list, with a line saying
// how many were left out between them.
func firstLast(list []string, n, m int) []string {
	if len(list) <= n+m {
		return list
	}
	out := append([]string{}, list[:n]...)
	out = append(out, fmt.Sprintf("(%d more)", len(list)-n-m))
	return append(out, list[len(list)-m:]...)
}
