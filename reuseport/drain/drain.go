package drain

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotswap-dev/hotswap/reuseport/handoff"
)

// Server is an http.Server serving one listener, able to [Server.Drain]
// without dropping a request. Create it with [Serve].
type Server struct {
	srv *http.Server
	ln  net.Listener

	draining atomic.Bool
	served   chan struct{} // closed when srv.Serve has returned
	serveErr error         // srv.Serve's result, valid after served

	mu      sync.Mutex
	conns   map[net.Conn]*connInfo // open connections, net/http's view
	noConns chan struct{}          // closed when draining and conns is empty

	drainOnce sync.Once
	drainErr  error

	// Handoff of keep-alive connections (handoff.go); ml is nil without.
	ml        *handoff.Listener
	graceOver atomic.Bool
}

// connInfo is what Server tracks per connection. It is the seam for
// handing idle connections to the next generation (hotswap issue #9).
type connInfo struct {
	conn  net.Conn
	state http.ConnState
	told  atomic.Bool   // a response carried "Connection: close"
	hc    *handoff.Conn // nil unless the connection can be handed over
	http1 atomic.Bool   // it carried an HTTP/1.x request (HTTP/2 never moves)
}

type connInfoKey struct{}

// Serve starts serving srv on ln in a new goroutine and returns at once. It
// takes over srv.Handler (nil means http.DefaultServeMux), srv.ConnState and
// srv.ConnContext, wrapping what is set there, to track connections and to
// answer "Connection: close" while draining. Stop it with [Server.Drain]
// rather than srv.Shutdown.
//
// With a hub (nil: none), Serve also receives the keep-alive connections
// older generations hand over for ln's address, and Drain hands this
// server's own to the newer generation the hub names instead of closing
// them (see docs/handoff.md).
func Serve(srv *http.Server, ln net.Listener, hub *handoff.Hub) *Server {
	s := &Server{
		srv:     srv,
		ln:      ln,
		served:  make(chan struct{}),
		conns:   map[net.Conn]*connInfo{},
		noConns: make(chan struct{}),
	}
	if hub != nil {
		s.ml = hub.Listen(ln, handoff.ListenOptions{Done: s.served, IdleTimeout: s.idleTimeout, Retarget: s.retarget})
		s.ln = s.ml
	}
	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	srv.Handler = s.wrap(h)
	userConnState := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		s.connState(c, st)
		if userConnState != nil {
			userConnState(c, st)
		}
	}
	userConnContext := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if userConnContext != nil {
			ctx = userConnContext(ctx, c)
		}
		ci := &connInfo{conn: c, state: http.StateNew}
		ci.hc, _ = c.(*handoff.Conn)
		s.mu.Lock()
		s.conns[c] = ci
		s.mu.Unlock()
		return context.WithValue(ctx, connInfoKey{}, ci)
	}
	go func() {
		err := srv.Serve(s.ln)
		if s.draining.Load() || errors.Is(err, http.ErrServerClosed) {
			err = nil // we closed the listener
		}
		s.serveErr = err
		close(s.served)
	}()
	return s
}

// Done is closed when the server stopped accepting: after [Server.Drain]
// began, or when accepting failed ([Server.Err] says why).
func (s *Server) Done() <-chan struct{} { return s.served }

// Err is why the server stopped accepting, once [Server.Done] is closed: nil
// when it was drained.
func (s *Server) Err() error {
	select {
	case <-s.served:
		if s.serveErr != nil {
			return fmt.Errorf("reuseport: serve %s: %w", s.ln.Addr(), s.serveErr)
		}
		return nil
	default:
		return nil
	}
}

// Drain stops the server without dropping a request, in three steps:
//
//  1. Stop accepting: close this process's listener descriptor. Under hotswap
//     the socket and its accept queue live on in PID 1 and the new generation,
//     which accepts what is queued; nothing is reset. (This never calls
//     shutdown(2), which would act on the socket every generation shares.)
//  2. For up to grace, answer every request — including those in flight —
//     with "Connection: close", so that every keep-alive client learns at a
//     request boundary to open its next connection to the new generation.
//     net/http closes each such connection after the response. The step ends
//     early once no connection is left.
//  3. http.Server.Shutdown: close the connections that stayed idle through
//     the whole grace (their clients sent nothing for that long) and wait for
//     the rest. If ctx ends first, the remaining connections are closed and
//     Drain returns ctx's error.
//
// Hijacked connections (e.g. WebSockets) are the handler's to close; use
// srv.RegisterOnShutdown. Calling Drain again returns the first result.
func (s *Server) Drain(ctx context.Context, grace time.Duration) error {
	s.drainOnce.Do(func() { s.drainErr = s.drain(ctx, grace) })
	return s.drainErr
}

func (s *Server) drain(ctx context.Context, grace time.Duration) error {
	s.draining.Store(true)
	if s.ml != nil {
		defer s.ml.Detach()
		if s.ml.HasTarget() {
			// Before the listener closes: a connection accepted and not
			// yet read from is at a boundary too, and moves.
			s.ml.SetMoving(true)
		}
	}
	s.ln.Close() // our descriptor only
	// Once Serve has returned, every accepted connection is tracked:
	// net/http reports StateNew before it accepts the next one. (Shutdown
	// alone can return while a just-accepted connection is not yet tracked,
	// and the process then exits under it.)
	select {
	case <-s.served:
	case <-ctx.Done():
	}
	s.mu.Lock()
	s.checkEmptyLocked()
	s.wakeLocked() // idle connections move at once
	s.mu.Unlock()
	// A connection that became idle before draining started may
	// already have been told nothing: it stays open during the grace
	// (with handoff, it has moved unless the handover failed).
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-s.noConns:
	case <-t.C:
	case <-ctx.Done():
	}
	// Whatever is left answers with Connection: close from now on.
	s.graceOver.Store(true)
	if s.ml != nil {
		s.ml.SetMoving(false)
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
		return fmt.Errorf("reuseport: drain %s: %w", s.ln.Addr(), err)
	}
	return nil
}

// connState tracks connections; it runs before the user's ConnState.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ci := s.conns[c]
	if ci == nil {
		return
	}
	ci.state = st
	switch st {
	case http.StateClosed, http.StateHijacked:
		if ci.hc != nil {
			ci.hc.Never()
		}
		delete(s.conns, c)
		s.checkEmptyLocked()
	case http.StateIdle:
		if ci.told.Load() {
			// net/http closes after a "Connection: close" response on its
			// own; this covers a handler that removed the header again.
			c.Close()
		} else if ci.hc != nil && ci.http1.Load() {
			ci.hc.Idle()
		}
	case http.StateActive:
		if ci.hc != nil {
			ci.hc.Active()
		}
	}
}

func (s *Server) checkEmptyLocked() {
	if !s.draining.Load() || len(s.conns) > 0 {
		return
	}
	select {
	case <-s.served:
	default:
		return // Serve may still report a just-accepted connection
	}
	select {
	case <-s.noConns:
	default:
		close(s.noConns)
	}
}

// wrap is the handler wrapper: while draining, responses of HTTP/1.x
// requests carry "Connection: close". HTTP/2 needs no header: Shutdown
// sends GOAWAY.
func (s *Server) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ci, _ := r.Context().Value(connInfoKey{}).(*connInfo)
		if r.ProtoMajor != 1 {
			if ci != nil && ci.hc != nil {
				ci.hc.Never() // HTTP/2 state lives in this process
			}
			h.ServeHTTP(w, r)
			return
		}
		if ci != nil {
			ci.http1.Store(true)
		}
		if s.closeNow(ci, r) {
			tell(w, ci)
			h.ServeHTTP(w, r)
			return
		}
		// Not draining yet (or handing over): decide when the header is
		// written, so that a request in flight when draining starts, or
		// when a handover fails, is told too.
		cw := &closeWriter{ResponseWriter: w, s: s, ci: ci, r: r}
		h.ServeHTTP(cw, r)
		cw.check() // a handler that wrote nothing: net/http writes after us
	})
}

func tell(w http.ResponseWriter, ci *connInfo) {
	w.Header().Set("Connection", "close")
	if ci != nil {
		ci.told.Store(true)
	}
}

// closeWriter sets "Connection: close" at WriteHeader time if draining began
// while the handler ran. It keeps http.Flusher, http.Hijacker and
// io.ReaderFrom working and unwraps for http.ResponseController.
type closeWriter struct {
	http.ResponseWriter
	s     *Server
	ci    *connInfo
	r     *http.Request
	wrote bool
}

func (w *closeWriter) check() {
	if !w.wrote {
		w.wrote = true
		if w.s.closeNow(w.ci, w.r) {
			tell(w.ResponseWriter, w.ci)
		}
	}
}

// WriteHeader implements http.ResponseWriter.
func (w *closeWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.check()
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *closeWriter) Write(p []byte) (int, error) {
	w.check()
	return w.ResponseWriter.Write(p)
}

// ReadFrom keeps net/http's sendfile path.
func (w *closeWriter) ReadFrom(r io.Reader) (int64, error) {
	w.check()
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(w.ResponseWriter, r)
}

// Flush implements http.Flusher.
func (w *closeWriter) Flush() {
	w.check()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack implements http.Hijacker.
func (w *closeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the original writer.
func (w *closeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
