package startuppages

import (
	"sync"
	"time"
)

// Scheduler runs Release once things have been quiet for a while: Poke it
// after anything that touches much code for a short time (start-up, a
// swap), and Release runs quiet after the last Poke. Safe for concurrent
// use; Poke never blocks.
type Scheduler struct {
	mu      sync.Mutex
	t       *time.Timer
	quiet   time.Duration
	stopped bool
	running sync.WaitGroup // a Release under way, which Stop waits for
}

// NewScheduler returns a Scheduler already poked once: Release runs quiet
// from now unless poked again. done gets what Release returned.
func NewScheduler(quiet time.Duration, done func(kB int, err error)) *Scheduler {
	s := &Scheduler{quiet: quiet}
	s.t = time.AfterFunc(quiet, func() {
		// A timer that fired just before Stop still runs its func: the
		// flag, under the lock Stop takes, is what keeps it from starting.
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return
		}
		s.running.Add(1)
		s.mu.Unlock()
		defer s.running.Done()
		done(Release())
	})
	return s
}

// Poke postpones the next Release to quiet from now.
func (s *Scheduler) Poke() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.t.Reset(s.quiet)
	}
}

// Stop cancels any pending Release and waits for one under way; once it
// returns, done is not called again and later Pokes do nothing.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	s.stopped = true
	s.t.Stop()
	s.mu.Unlock()
	s.running.Wait()
}
