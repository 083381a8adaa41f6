package shoes

import (
	"runtime"
	"time"
)

// warmInterval is how often the warmer looks at the pool.
const warmInterval = time.Second

// Warm starts keeping Config.WarmProcesses processes started ahead of
// demand while the pool is in use, until Close. In use means a call in
// the last IdleTimeout (Warm itself counts as one, so a daemon starts
// warm): an idle daemon keeps one process, not WarmProcesses of them,
// each of which holds a plugin's memory (20 MiB for the sim's). Starting a plugin process (exec, the Go runtime,
// the go-plugin handshake) costs tens of milliseconds of CPU; at a burst
// of 128 calls on two cores, starting them on demand spread the first
// AddInstance calls over most of a second. The warmer starts the missing
// processes in the background, a few at a time, each under a slot of the
// pool so that the pool never runs more than PoolSize processes, and
// stops processes idle for longer than IdleTimeout beyond the warm ones,
// so that the pool shrinks back after a burst. Calling it again does
// nothing.
func (h *Host) Warm() {
	h.warmerRun.Do(func() {
		if err := h.enter(); err != nil {
			return // closed
		}
		h.mu.Lock()
		h.lastUse = time.Now()
		h.mu.Unlock()
		go func() {
			defer h.calls.Done()
			h.warm()
		}()
	})
}

func (h *Host) warm() {
	tick := time.NewTicker(warmInterval)
	defer tick.Stop()
	var next time.Time // no warm start before, while starts keep failing
	for {
		now := time.Now()
		h.shrink(now)
		if now.After(next) {
			h.grow()
			// A plugin that does not start is not started again every
			// second: the warmer backs off, up to a minute, and its next
			// good start clears the failure that readiness reports.
			if n := h.starts.failures(); n > 0 {
				next = now.Add(min(time.Duration(n)*5*time.Second, time.Minute))
			}
		}
		select {
		case <-h.done:
			return
		case <-tick.C:
		}
	}
}

// warmStartsAtOnce bounds the warmer's starts in progress: enough to warm
// a large pool in a fraction of a second, few enough to leave the CPU to
// the calls being served.
func warmStartsAtOnce() int { return max(2, runtime.GOMAXPROCS(0)) }

// grow starts the processes the warm floor misses, each under a free slot
// of the pool; none is started while every slot is taken.
func (h *Host) grow() {
	for {
		h.mu.Lock()
		// Every start in progress counts, the calls' too, and the pool
		// never runs more than PoolSize processes: idle ones hold no slot.
		running := len(h.live) + h.starting
		need := h.floor(time.Now()) - running
		if h.closed || need <= 0 || running >= h.cfg.PoolSize || h.warming >= warmStartsAtOnce() {
			h.mu.Unlock()
			return
		}
		select {
		case h.slots <- struct{}{}:
		default:
			h.mu.Unlock()
			return // the pool is busy: its processes are started
		}
		h.warming++
		h.starting++
		h.mu.Unlock()
		h.calls.Add(1)
		go func() {
			defer h.calls.Done()
			defer func() { <-h.slots }()
			p, err := h.startProc(h.closing)
			h.mu.Lock()
			h.warming--
			h.starting--
			h.mu.Unlock()
			if err != nil {
				h.log.Debug("warm plugin process did not start", "err", err)
				return
			}
			h.checkin(p)
			h.grow() // the next ones, without waiting for the tick
		}()
	}
}

// floor is how many processes the warmer keeps (h.mu held): WarmProcesses
// while the pool is in use, else at most one.
func (h *Host) floor(now time.Time) int {
	if now.Sub(h.lastUse) <= h.cfg.IdleTimeout {
		return h.cfg.WarmProcesses
	}
	return min(1, h.cfg.WarmProcesses)
}

// shrink stops the processes idle for longer than IdleTimeout, oldest
// first, down to the warm floor.
func (h *Host) shrink(now time.Time) {
	h.mu.Lock()
	var stale []*proc
	excess := len(h.live) - h.floor(now)
	keep := h.idle[:0]
	// idle is a stack: the oldest idle processes are at the bottom.
	for _, p := range h.idle {
		if excess > 0 && now.Sub(p.idleSince) > h.cfg.IdleTimeout {
			stale = append(stale, p)
			delete(h.live, p)
			excess--
			continue
		}
		keep = append(keep, p)
	}
	h.idle = keep
	h.mu.Unlock()
	for _, p := range stale {
		h.log.Debug("plugin process idle for too long; stopping it", "pid", p.pid)
		p.kill(false)
	}
}
