package sysfs

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Scans read many directories; each is a few dozen small system calls, so a
// scan spreads them over a few goroutines. Results go into slices by index,
// so the outcome does not depend on scheduling.

const (
	maxWorkers = 8
	// minPerWorker keeps small scans (the common case) on one goroutine.
	minPerWorker = 16
)

// forEach calls fn(s, i) for every i in [0, n) on up to maxWorkers
// goroutines (no more than GOMAXPROCS), each with its own scratch. It stops
// early on failure and returns the error of the lowest failing i: indices are
// handed out in order and every one handed out is finished, so that is the
// same error a sequential loop would return.
func forEach(n int, fn func(s *scratch, i int) error) error {
	workers := min(runtime.GOMAXPROCS(0), maxWorkers, (n+minPerWorker-1)/minPerWorker)
	if workers <= 1 {
		s := scratchPool.Get().(*scratch)
		defer scratchPool.Put(s)
		for i := range n {
			if err := fn(s, i); err != nil {
				return err
			}
		}
		return nil
	}

	var (
		next     atomic.Int64
		failed   atomic.Bool
		mu       sync.Mutex
		firstIdx = n
		firstErr error
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			s := scratchPool.Get().(*scratch)
			defer scratchPool.Put(s)
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(s, i); err != nil {
					mu.Lock()
					if i < firstIdx {
						firstIdx, firstErr = i, err
					}
					mu.Unlock()
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// compact keeps the elements of out whose keep flag is set, in order.
func compact[T any](out []T, keep []bool) []T {
	n := 0
	for i := range out {
		if keep[i] {
			out[n] = out[i]
			n++
		}
	}
	clear(out[n:])
	if n == 0 {
		return nil
	}
	return out[:n]
}
