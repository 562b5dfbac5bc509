package handoff

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// aLongTimeAgo is a read deadline in the past: it wakes a blocked Read.
var aLongTimeAgo = time.Unix(1, 0)

// Conn is a connection accepted or received by a [Listener]: net/http reads
// through it, and it gives the socket away from inside net/http's own read,
// at a request boundary, answering that read with io.EOF. The server tells
// it where net/http is ([Conn.Idle], [Conn.Active], [Conn.Never]) and wakes
// it when draining starts ([Conn.Wake]).
//
// Why inside Read, and why io.EOF:
//
//   - After a response net/http reports StateIdle, then sets the idle read
//     deadline, then peeks 4 bytes. A wake-up deadline set from the idle
//     hook would be overwritten; so the takeover runs in the Read that the
//     peek makes, and a wake-up of an already blocked Read is kept across
//     any SetReadDeadline until that Read returns (then net/http's own
//     deadline is put back).
//   - Only a Read whose buffer is net/http's whole bufio buffer (the length
//     of the first Read on the connection) proves that net/http holds no
//     bytes of the next request; any other Read at an idle point means
//     pipelined bytes are buffered, and the connection stays.
//   - A woken Read that returns data instead of the timeout lost the race:
//     the bytes belong to net/http. The takeover is abandoned and
//     net/http's deadline restored, so the request is served here.
//   - net/http treats io.EOF as the client closing; any other error at that
//     point makes it write "400 Bad Request" onto the socket — which by then
//     belongs to the next generation. After the takeover, writes fail and
//     CloseWrite does nothing: shutdown(2) would act on the socket the next
//     generation serves, not on this descriptor. Close is close(2) of ours.
type Conn struct {
	net.Conn // *net.TCPConn or *net.UnixConn
	l        *Listener
	created  time.Time

	taken atomic.Bool // handed over (or given up): reads EOF, writes fail

	mu        sync.Mutex
	boundary  bool      // at a request boundary: nothing read since accept or StateIdle
	idleSince time.Time // since when it has been at the boundary
	fullLen   int       // len(p) of the first Read: net/http's bufio buffer
	reading   bool      // a Read is blocked in the socket
	readClean bool      // ... at a clean boundary
	woken     bool      // ... and we set aLongTimeAgo to wake it
	dl        time.Time // the read deadline net/http asked for
	noMove    bool      // HTTP/2, hijacked: never hand over
	failEpoch uint64    // hub epoch+1 at which a handover failed (0: none)

	// A received connection is idle, but net/http treats it as new and
	// would apply the (shorter) header timeout. Until its first byte, fresh
	// keeps the server's idle timeout counted from idleSince; then the
	// deadlines net/http set for the first request (from when it started
	// waiting) are shifted by the time the connection waited.
	fresh    bool
	freshDL  time.Time
	shifting bool
	shift    time.Duration
}

func newConn(c net.Conn, l *Listener, received bool, idleSince time.Time) *Conn {
	hc := &Conn{Conn: c, l: l, created: time.Now(), boundary: true, idleSince: idleSince}
	if received {
		hc.fresh = true
		if d := l.idleTimeout(); d > 0 {
			hc.freshDL = idleSince.Add(d)
		}
		_ = c.SetReadDeadline(hc.freshDL)
	}
	return hc
}

// movableLocked: not excluded, and no failed handover to the current target.
func (c *Conn) movableLocked() bool {
	return !c.noMove && c.failEpoch != c.l.hub.epoch.Load()+1 && c.l.hub.targetAlive()
}

// Movable reports whether the connection may still be handed over.
func (c *Conn) Movable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.movableLocked()
}

// Read implements net.Conn; see the type's comment.
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	for {
		if c.taken.Load() {
			c.mu.Unlock()
			return 0, io.EOF
		}
		if c.fullLen == 0 {
			c.fullLen = len(p)
		}
		clean := c.boundary && len(p) == c.fullLen && len(p) > 0
		if clean && c.l.moving.Load() && c.movableLocked() {
			since := c.idleSince
			c.mu.Unlock()
			res, epoch := c.l.hub.handOver(c.Conn, since)
			c.mu.Lock()
			if res != handoverKept {
				c.taken.Store(true)
				c.mu.Unlock()
				return 0, io.EOF
			}
			c.failEpoch = epoch + 1 // served here, with Connection: close
		}
		c.reading, c.readClean = true, clean
		c.mu.Unlock()
		n, err := c.Conn.Read(p)
		c.mu.Lock()
		c.reading = false
		if c.woken {
			c.woken = false
			derr := c.applyDeadlineLocked()
			if n == 0 && isTimeout(err) && derr == nil && !c.deadlinePassedLocked() {
				continue // our wake-up, not net/http's deadline: hand over now
			}
		}
		if n > 0 {
			c.boundary = false
			if c.fresh {
				c.fresh = false
				c.shifting = true
				c.shift = time.Since(c.created)
				_ = c.applyDeadlineLocked()
			}
		}
		c.mu.Unlock()
		return n, err
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// applyDeadlineLocked puts the deadline net/http asked for on the socket,
// adjusted for a received connection.
func (c *Conn) applyDeadlineLocked() error {
	return c.Conn.SetReadDeadline(c.effectiveDeadlineLocked())
}

func (c *Conn) effectiveDeadlineLocked() time.Time {
	t := c.dl
	switch {
	case c.fresh:
		t = c.freshDL
	case c.shifting && t.After(c.created):
		t = t.Add(c.shift)
	}
	return t
}

func (c *Conn) deadlinePassedLocked() bool {
	t := c.effectiveDeadlineLocked()
	return !t.IsZero() && !time.Now().Before(t)
}

// SetReadDeadline implements net.Conn. While a wake-up is pending, the new
// deadline is only recorded: the woken Read puts it on the socket.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dl = t
	if c.woken {
		return nil
	}
	return c.applyDeadlineLocked()
}

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// Write implements net.Conn; after a handover it writes nothing.
func (c *Conn) Write(p []byte) (int, error) {
	if c.taken.Load() {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// ReadFrom keeps net/http's sendfile/splice path.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if c.taken.Load() {
		return 0, net.ErrClosed
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite is net/http's half-close before closing a connection it
// still owns; after a handover it must not touch the shared socket.
func (c *Conn) CloseWrite() error {
	if c.taken.Load() {
		return nil
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Wake interrupts a Read blocked at a clean boundary so that it hands over.
func (c *Conn) Wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reading && c.readClean && !c.woken && c.movableLocked() {
		c.woken = true
		_ = c.Conn.SetReadDeadline(aLongTimeAgo)
	}
}

// Idle: net/http finished a response and keeps the connection (StateIdle).
func (c *Conn) Idle() {
	c.mu.Lock()
	c.boundary = true
	c.idleSince = time.Now()
	c.mu.Unlock()
}

// Active: net/http read a request (StateActive); the first request's
// deadlines are set.
func (c *Conn) Active() {
	c.mu.Lock()
	c.boundary = false
	c.shifting = false
	c.mu.Unlock()
}

// Never excludes the connection from handover (HTTP/2, hijacked).
func (c *Conn) Never() {
	c.mu.Lock()
	c.noMove = true
	c.mu.Unlock()
}

// Listener is the listener net/http serves under handoff: the connections
// it accepts itself plus those handed over by older generations, each a
// [*Conn]. It reports closed only once every accepted and every reserved
// handed-over connection is delivered, so that a server's "Serve returned:
// every connection is tracked" still holds. Create it with [Hub.Listen].
type Listener struct {
	net.Listener
	hub      *Hub
	done     <-chan struct{} // ListenOptions.Done
	idleTO   func() time.Duration
	retarget func()
	accepted chan acceptResult
	injected chan net.Conn

	// moving: the server drains with a target and hands over at boundaries.
	moving atomic.Bool

	// Only the goroutine of Serve (Accept) uses these.
	tcpDone bool
	tcpErr  error

	mu      sync.Mutex
	closed  bool
	pending int
	quiet   chan struct{} // closed when closed && pending == 0
}

type acceptResult struct {
	c   net.Conn
	err error
}

// ListenOptions connect a [Listener] to the server that serves it. The
// server depends on this package, never the other way round.
type ListenOptions struct {
	// Done is closed once the server stopped serving the Listener (its
	// Serve returned); connections that arrive later are closed.
	Done <-chan struct{}
	// IdleTimeout is the server's keep-alive idle timeout (0: none); a
	// received connection keeps the time it already waited.
	IdleTimeout func() time.Duration
	// Retarget runs when the hub learns a (new) target, so that a server
	// already draining can (re)start handing over. May be nil.
	Retarget func()
}

// Listen wraps ln, the server's own listener, and registers the result with
// the hub, which delivers handed-over connections for ln's address to it.
// [Listener.Detach] undoes the registration.
func (h *Hub) Listen(ln net.Listener, o ListenOptions) *Listener {
	ml := &Listener{Listener: ln, hub: h, done: o.Done, idleTO: o.IdleTimeout, retarget: o.Retarget,
		accepted: make(chan acceptResult), injected: make(chan net.Conn), quiet: make(chan struct{})}
	go ml.acceptLoop()
	h.register(ml)
	return ml
}

// Detach stops the hub from delivering connections to ml or telling it of
// new targets (a server calls it once it drains).
func (ml *Listener) Detach() { ml.hub.unregister(ml) }

// HasTarget reports whether the hub knows a newer generation to hand to.
func (ml *Listener) HasTarget() bool { return ml.hub.HasTarget() }

// SetMoving turns handing over at request boundaries on (draining with a
// target) or off (not draining, or the grace is over).
func (ml *Listener) SetMoving(on bool) { ml.moving.Store(on) }

func (ml *Listener) idleTimeout() time.Duration {
	if ml.idleTO == nil {
		return 0
	}
	return ml.idleTO()
}

func (ml *Listener) acceptLoop() {
	for {
		c, err := ml.Listener.Accept()
		if err == nil {
			switch c.(type) {
			case *net.TCPConn, *net.UnixConn:
				c = newConn(c, ml, false, time.Now())
			}
		}
		select {
		case ml.accepted <- acceptResult{c, err}:
		case <-ml.done: // Serve gave up on an earlier error
			if c != nil {
				c.Close()
			}
			return
		}
		if err != nil && errors.Is(err, net.ErrClosed) {
			ml.markClosed()
			return
		}
	}
}

// Accept implements net.Listener.
func (ml *Listener) Accept() (net.Conn, error) {
	for {
		var acc <-chan acceptResult
		var quiet <-chan struct{}
		if ml.tcpDone {
			quiet = ml.quiet
		} else {
			acc = ml.accepted
		}
		select {
		case r := <-acc:
			if r.err != nil && errors.Is(r.err, net.ErrClosed) {
				ml.tcpDone, ml.tcpErr = true, r.err
				continue // deliver reserved handovers first
			}
			return r.c, r.err
		case c := <-ml.injected:
			return c, nil
		case <-quiet:
			return nil, ml.tcpErr
		}
	}
}

// Close implements net.Listener: it closes this process's listener
// descriptor (never shutdown(2)) and stops taking handed-over connections.
func (ml *Listener) Close() error {
	ml.markClosed()
	return ml.Listener.Close()
}

func (ml *Listener) markClosed() {
	ml.mu.Lock()
	defer ml.mu.Unlock()
	if !ml.closed {
		ml.closed = true
		ml.checkQuietLocked()
	}
}

func (ml *Listener) checkQuietLocked() {
	if ml.closed && ml.pending == 0 {
		select {
		case <-ml.quiet:
		default:
			close(ml.quiet)
		}
	}
}

// reserve promises a handed-over connection a place: Accept will return it.
func (ml *Listener) reserve() bool {
	ml.mu.Lock()
	defer ml.mu.Unlock()
	if ml.closed {
		return false
	}
	ml.pending++
	return true
}

func (ml *Listener) cancel() {
	ml.mu.Lock()
	defer ml.mu.Unlock()
	ml.pending--
	ml.checkQuietLocked()
}

// deliver hands a reserved connection to net/http.
func (ml *Listener) deliver(c net.Conn) {
	select {
	case ml.injected <- c:
	case <-ml.done:
		c.Close() // Serve failed (not drained): nobody serves here
	}
	ml.cancel()
}

// Moving reports whether handing over at request boundaries is on.
func (ml *Listener) Moving() bool { return ml.moving.Load() }
