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
// threads that wait in the block layer or nvme. A proof that finds a phase
// slow reports the samples, so that the next run says why.
type ioProbe struct {
	start   time.Time
	tcp0    map[string]int64
	stop    chan struct{}
	done    sync.WaitGroup
	mu      sync.Mutex
	samples []string
}

// startIOProbe samples every interval until finish.
func startIOProbe(every time.Duration) *ioProbe {
	p := &ioProbe{start: time.Now(), tcp0: tcpCounters(), stop: make(chan struct{})}
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

// finish stops sampling and returns the TCP counters' growth over the
// phase and the samples taken.
func (p *ioProbe) finish() (tcp string, samples []string) {
	close(p.stop)
	p.done.Wait()
	return p.tcpDelta(), p.samples
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
		if strings.Contains(s, "nvme") || strings.Contains(s, "blk_") || strings.Contains(s, "folio_wait") || strings.Contains(s, "io_schedule") {
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
