package drain

import (
	"net/http"
	"time"
)

// closeNow decides whether a response carries "Connection: close": while
// draining, yes — unless the server hands connections over and this one
// can still move at its next boundary. A request with a body closes: its
// bytes may still sit in net/http's buffers when the response is done.
func (s *Server) closeNow(ci *connInfo, r *http.Request) bool {
	if !s.draining.Load() {
		return false
	}
	if s.ml == nil || !s.ml.Moving() || ci == nil || ci.hc == nil {
		return true
	}
	if r != nil && (r.ContentLength != 0 || len(r.TransferEncoding) > 0) {
		return true
	}
	return !ci.hc.Movable()
}

// wakeLocked wakes every connection blocked at a clean boundary so that it
// hands over now. Called with s.mu held.
func (s *Server) wakeLocked() {
	if s.ml == nil || !s.ml.Moving() {
		return
	}
	for _, ci := range s.conns {
		if ci.hc != nil {
			ci.hc.Wake()
		}
	}
}

// retarget runs when the hub learns a (new) target: a server already
// draining, still within its grace, (re)starts handing over. The hub may
// call it while Serve is still setting s.ml: draining is checked first, as
// Drain sets it only after Serve returned.
func (s *Server) retarget() {
	if !s.draining.Load() || s.graceOver.Load() || s.ml == nil {
		return
	}
	s.ml.SetMoving(true)
	if s.graceOver.Load() { // the grace ended meanwhile
		s.ml.SetMoving(false)
		return
	}
	s.mu.Lock()
	s.wakeLocked()
	s.mu.Unlock()
}

// idleTimeout is net/http's: IdleTimeout, else ReadTimeout.
func (s *Server) idleTimeout() time.Duration {
	if d := s.srv.IdleTimeout; d != 0 {
		return d
	}
	return s.srv.ReadTimeout
}
