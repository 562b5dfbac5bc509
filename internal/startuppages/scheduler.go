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
}

// NewScheduler returns a Scheduler already poked once: Release runs quiet
// from now unless poked again. done gets what Release returned.
func NewScheduler(quiet time.Duration, done func(kB int, err error)) *Scheduler {
	s := &Scheduler{quiet: quiet}
	s.t = time.AfterFunc(quiet, func() { done(Release()) })
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

// Stop cancels any pending Release; later Pokes do nothing.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	s.t.Stop()
}
