package handoff

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// SocketEnv names the variable through which a supervisor (hotswap run
// --handoff-keepalive) gives each generation the path of its private handoff
// socket. [FromEnv] opens it; reuseport.Serve does so before the server can
// report ready, then receives keep-alive connections from older generations,
// and hands its own to a newer one when it drains.
const SocketEnv = "HOTSWAP_HANDOFF_SOCKET"

// The handoff protocol, on a unix SOCK_SEQPACKET socket (one message per
// datagram, text):
//
//	supervisor → gen:  "TARGET /path/of/newer.sock"    reply "OK"
//	old gen → new gen: "CONN <idle-since-unix-ns>" + one fd (SCM_RIGHTS)
//	                   reply "OK" (it serves it now), "NO <why>" (the
//	                   sender keeps it) or "MOVED /path" (it drains too;
//	                   send there)
//	old gen → new gen: "CONNS <idle-since> <idle-since> ..." + as many fds,
//	                   at most maxBatch, in one SCM_RIGHTS (a sender
//	                   sends a lone one as "CONN")
//	                   reply "OK <y|n per fd, in order>" (y: it serves
//	                   that one now; n: the sender keeps it), or "NO <why>"
//	                   or "MOVED /path" for all of them
//
// The receiver answers before anything reads from the sockets, so a sender
// that did not read "OK" knows no socket was touched and keeps serving
// them. One message is outstanding per lane at a time. A receiver from
// before "CONNS" answers it "NO unknown message" (closing what it got,
// unread); the sender then sends that batch, and every later one to the
// same target, one "CONN" at a time. A malformed batch (descriptor and
// time counts that differ, a truncated message or control message, a bad
// time) is refused whole, every descriptor it brought closed.
const (
	handoffReplyTimeout = 2 * time.Second
	handoffDialTimeout  = time.Second
)

// SetTarget tells the generation whose handoff socket is socket to
// hand its idle keep-alive connections to the generation listening on
// target when it drains (and to send there any it receives meanwhile). The
// supervisor calls it once the target generation is ready and before it
// sends the stop signal; nothing happens until the generation drains.
func SetTarget(ctx context.Context, socket, target string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Second)
		defer cancel()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixpacket", socket)
	if err != nil {
		return fmt.Errorf("reuseport: handoff target for %s: %w", socket, err)
	}
	defer c.Close()
	if err := checkPeer(c.(*net.UnixConn)); err != nil {
		return fmt.Errorf("reuseport: handoff target for %s: %w", socket, err)
	}
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	if _, err := c.Write([]byte("TARGET " + target)); err != nil {
		return fmt.Errorf("reuseport: handoff target for %s: %w", socket, err)
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("reuseport: handoff target for %s: no answer: %w", socket, err)
	}
	if r := string(buf[:n]); r != "OK" {
		return fmt.Errorf("reuseport: handoff target for %s: refused: %s", socket, r)
	}
	return nil
}

// Hub is a process's handoff endpoint: it receives connections for the
// process's [Listener]s and knows where to send them on. A server process
// has one (from [FromEnv]); tests open as many as they like with [Open].
type Hub struct {
	path string
	ln   *net.UnixListener

	mu     sync.Mutex
	target string
	snd    *senderPool // for target, dialed lazily
	lns    []*Listener
	closed bool
	peers  map[*net.UnixConn]struct{}
	wg     sync.WaitGroup

	epoch atomic.Uint64 // bumped on every target change
	// deadEpoch is epoch+1 once the current target failed (gone, or did
	// not answer): connections then stay, with Connection: close.
	deadEpoch atomic.Uint64

	// Counters, for tests and debugging.
	sent, received, refused, kept atomic.Int64
	messages                      atomic.Int64 // CONN or CONNS sent and answered
}

// FromEnv opens the hub the supervisor asked for in [SocketEnv] and removes
// the variable (it is this process's, not its children's); it returns nil
// when the variable is unset. A socket that cannot be opened costs a warning
// on stderr, not the server: keep-alive clients then reconnect, as without
// handoff. Call it once per process: the variable is gone afterwards.
func FromEnv() *Hub {
	path := os.Getenv(SocketEnv)
	if path == "" {
		return nil
	}
	os.Unsetenv(SocketEnv)
	h, err := Open(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "reuseport: %v; keep-alive connections will not be handed over\n", err)
		return nil
	}
	return h
}

// Open listens for handoff messages on the unix socket at path (absolute,
// at most 107 bytes; a stale socket file is replaced, a live one never;
// mode 0600).
func Open(path string) (*Hub, error) {
	if !strings.HasPrefix(path, "/") || len(path) > 107 {
		return nil, fmt.Errorf("handoff socket %q: want an absolute path of at most 107 bytes", path)
	}
	if err := activation.RemoveStaleSocket(path); err != nil {
		return nil, fmt.Errorf("handoff socket: %w", err)
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("handoff socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("handoff socket: %w", err)
	}
	h := &Hub{path: path, ln: ln, peers: map[*net.UnixConn]struct{}{}}
	h.wg.Add(1)
	go h.acceptLoop()
	return h, nil
}

// Path is the hub's socket path.
func (h *Hub) Path() string { return h.path }

// Stats counts what the hub did with connections, for tests and debugging.
type Stats struct {
	Sent     int64 // handed to a newer generation
	Received int64 // taken from an older generation
	Refused  int64 // offered to us and refused (the sender kept them)
	Kept     int64 // not handed over although a target was set
	Messages int64 // CONN and CONNS messages sent and answered: Sent/Messages is the mean batch
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	return Stats{Sent: h.sent.Load(), Received: h.received.Load(), Refused: h.refused.Load(), Kept: h.kept.Load(), Messages: h.messages.Load()}
}

// Close stops receiving and waits for the message handlers.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	snd := h.snd
	h.snd = nil
	for c := range h.peers {
		c.Close()
	}
	h.mu.Unlock()
	h.ln.Close()
	h.wg.Wait()
	if snd != nil {
		snd.close()
	}
}

func (h *Hub) register(l *Listener) {
	h.mu.Lock()
	h.lns = append(h.lns, l)
	h.mu.Unlock()
}

func (h *Hub) unregister(l *Listener) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, x := range h.lns {
		if x == l {
			h.lns = append(h.lns[:i], h.lns[i+1:]...)
			return
		}
	}
}

// targetAlive reports whether handing over may still work: there is a
// target, and it has not failed.
func (h *Hub) targetAlive() bool {
	return h.deadEpoch.Load() != h.epoch.Load()+1
}

// HasTarget reports whether a newer generation was named ([SetTarget] or
// [Hub.PointAt]): a draining server then hands its connections over.
func (h *Hub) HasTarget() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.target != ""
}

// PointAt points the hub at the newer generation whose hub listens on t,
// as a "TARGET t" message does, and re-arms draining servers (a target that
// changes mid-drain: back-to-back swaps, or a new generation that died and
// was replaced).
func (h *Hub) PointAt(t string) error {
	if !strings.HasPrefix(t, "/") || t == h.path {
		return fmt.Errorf("bad target %q", t)
	}
	h.mu.Lock()
	if h.target == t {
		h.mu.Unlock()
		return nil
	}
	h.target = t
	h.epoch.Add(1)
	old := h.snd
	h.snd = nil
	lns := append([]*Listener(nil), h.lns...)
	h.mu.Unlock()
	if old != nil {
		go old.close() // waits for a send in progress
	}
	for _, l := range lns {
		if l.retarget != nil {
			l.retarget()
		}
	}
	return nil
}

// adoptTarget follows a receiver's "MOVED": if the target is still the one
// that answered, the newer one it names replaces it.
func (h *Hub) adoptTarget(epoch uint64, t string) bool {
	h.mu.Lock()
	same := h.epoch.Load() == epoch
	h.mu.Unlock()
	if !same {
		return true // changed meanwhile: try the new one
	}
	return h.PointAt(t) == nil
}

func (h *Hub) acceptLoop() {
	defer h.wg.Done()
	for {
		c, err := h.ln.AcceptUnix()
		if err != nil {
			return
		}
		if !peerTrusted(c) {
			c.Close()
			continue
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			c.Close()
			return
		}
		h.peers[c] = struct{}{}
		h.wg.Add(1)
		h.mu.Unlock()
		go h.serveConn(c)
	}
}

// peerTrusted accepts peers of our own user or root (the socket is 0600 in
// a 0700 directory already; this also holds for an abstract or moved path).
func peerTrusted(c *net.UnixConn) bool { return checkPeer(c) == nil }

// checkPeer refuses the other end of c unless it runs as our own user or
// root, as the kernel recorded it (SO_PEERCRED: the listener's credentials
// for a connection we dialed, the dialer's for one we accepted). Both ends
// of a handoff check: a receiver never serves a stranger's descriptor, and
// a sender never gives a client's connection to a stranger's socket.
func checkPeer(c *net.UnixConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("the socket's listener runs as uid %d (pid %d), not as uid %d: refusing to talk to it", cred.Uid, cred.Pid, os.Getuid())
	}
	return nil
}

func (h *Hub) serveConn(c *net.UnixConn) {
	defer h.wg.Done()
	defer func() {
		h.mu.Lock()
		delete(h.peers, c)
		h.mu.Unlock()
		c.Close()
	}()
	// Room for the longest valid message ("CONNS" and maxBatch times) and
	// its descriptors; anything longer arrives truncated and is refused.
	buf := make([]byte, 1024)
	oob := make([]byte, unix.CmsgSpace(4*maxBatch))
	for {
		n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		fds := parseRights(oob[:oobn])
		reply, commit := h.handle(string(buf[:n]), fds, flags)
		_, err = c.Write([]byte(reply))
		if commit != nil {
			// Not on this goroutine: delivering waits for net/http's
			// Accept, and the sender's next message on this connection
			// must not wait for that (it gives up after
			// handoffReplyTimeout, and drops the connections it sent).
			go commit(err == nil)
		}
		if err != nil {
			return
		}
	}
}

// parseRights returns the descriptors a message carried. The kernel
// installs them in this process as it hands the message over, so every one
// found here is ours to close; control messages that do not parse carry
// none we can name.
func parseRights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if f, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// handle answers one message. For accepted connections, commit runs after
// the reply was written: only then may anything read the sockets. Every
// descriptor in fds is closed or handed to commit, whatever the message.
func (h *Hub) handle(msg string, fds []int, flags int) (string, func(ok bool)) {
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		// Longer than any valid message, or more descriptors than fit:
		// the kernel dropped what did not fit, we close what did.
		closeFds(fds)
		return "NO message or descriptors truncated", nil
	}
	verb, arg, _ := strings.Cut(msg, " ")
	var idle []string
	switch verb {
	case "TARGET":
		closeFds(fds)
		if err := h.PointAt(arg); err != nil {
			return "NO " + err.Error(), nil
		}
		return "OK", nil
	case "CONN":
		if len(fds) != 1 {
			closeFds(fds)
			return "NO want exactly one descriptor", nil
		}
		idle = []string{arg}
	case "CONNS":
		idle = strings.Split(arg, " ")
		if len(idle) != len(fds) || len(fds) > maxBatch {
			closeFds(fds)
			return fmt.Sprintf("NO want one descriptor per idle time, at most %d", maxBatch), nil
		}
	default:
		closeFds(fds)
		return "NO unknown message", nil
	}
	since := make([]time.Time, len(idle))
	for i, a := range idle {
		ns, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			closeFds(fds)
			return "NO bad idle time", nil
		}
		since[i] = time.Unix(0, ns)
	}
	h.mu.Lock()
	target := h.target
	h.mu.Unlock()
	if target != "" {
		// We drain too: the sender should go to the newest generation
		// directly rather than through us (a relay could be cut by our exit).
		closeFds(fds)
		return "MOVED " + target, nil
	}
	var taken []received
	marks := make([]byte, len(fds))
	var why string
	for i, fd := range fds {
		r, err := h.take(fd, since[i])
		if err != nil {
			h.refused.Add(1)
			marks[i], why = 'n', err.Error()
			continue
		}
		marks[i] = 'y'
		taken = append(taken, r)
	}
	var commit func(ok bool)
	if len(taken) > 0 {
		commit = func(ok bool) {
			for _, r := range taken {
				if !ok {
					r.l.cancel()
					r.conn.Close() // the sender keeps it; close(2) leaves the socket alone
					continue
				}
				h.received.Add(1)
				r.l.deliver(newConn(r.conn, r.l, true, r.idleSince))
			}
		}
	}
	if verb == "CONN" {
		if len(taken) == 0 {
			return "NO " + why, nil
		}
		return "OK", commit
	}
	return "OK " + string(marks), commit
}

// received is a connection taken from a sender and reserved a place in the
// Listener that will serve it.
type received struct {
	conn      net.Conn
	l         *Listener
	idleSince time.Time
}

// take wraps a received descriptor (it is closed on error) and reserves it
// a place in the Listener for its address.
func (h *Hub) take(fd int, idleSince time.Time) (received, error) {
	conn, err := fdConn(fd)
	if err != nil {
		return received{}, err
	}
	l := h.listenerFor(conn.LocalAddr())
	if l == nil || !l.reserve() {
		conn.Close()
		return received{}, fmt.Errorf("not serving %s", conn.LocalAddr())
	}
	return received{conn: conn, l: l, idleSince: idleSince}, nil
}

// fdConn turns a received socket into a net.Conn. The open file
// description is O_NONBLOCK already (a Go sender's); os.NewFile then does
// not set its nonblock flag, so the Fd call inside net.FileConn does not
// switch the description, shared with the sender, to blocking mode.
func fdConn(fd int) (net.Conn, error) {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fcntl: %w", err)
	}
	if flags&unix.O_NONBLOCK == 0 {
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("set nonblocking: %w", err)
		}
	}
	f := os.NewFile(uintptr(fd), "handoff")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		return c, nil
	}
	c.Close()
	return nil, fmt.Errorf("not a stream socket")
}

// listenerFor finds the Listener the connection came from (same port, or
// same unix path).
func (h *Hub) listenerFor(local net.Addr) *Listener {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.lns {
		if addrServes(l.Addr(), local) {
			return l
		}
	}
	return nil
}

func addrServes(ln, local net.Addr) bool {
	switch l := ln.(type) {
	case *net.TCPAddr:
		c, ok := local.(*net.TCPAddr)
		return ok && c.Port == l.Port && (l.IP.IsUnspecified() || l.IP.Equal(c.IP))
	case *net.UnixAddr:
		c, ok := local.(*net.UnixAddr)
		return ok && c.Name == l.Name
	}
	return false
}

// handoverResult is what became of one connection.
type handoverResult int

const (
	handoverKept   handoverResult = iota // not sent or refused: we serve it
	handoverDone                         // the receiver serves it
	handoverGaveUp                       // no answer in time: neither of us may be sure; we drop it
)

// handOver sends c's socket to the current target, following "MOVED".
// epoch is the target generation it tried last (for "failed for this
// target" bookkeeping).
func (h *Hub) handOver(c net.Conn, idleSince time.Time) (handoverResult, uint64) {
	var epoch uint64
	for range 4 {
		h.mu.Lock()
		target, snd := h.target, h.snd
		epoch = h.epoch.Load()
		if h.closed {
			target = "" // a pool made now would never be closed
		}
		if target != "" && snd == nil {
			snd = newSenderPool(target, &h.messages)
			h.snd = snd
		}
		h.mu.Unlock()
		if target == "" {
			return handoverKept, epoch
		}
		res, arg := snd.send(c, idleSince)
		switch res {
		case sendNoFD:
			// EMFILE, typically: this one stays, and is counted as such.
			h.kept.Add(1)
			return handoverKept, epoch
		case sendOK:
			h.sent.Add(1)
			return handoverDone, epoch
		case sendUnanswered:
			h.deadEpoch.Store(epoch + 1)
			return handoverGaveUp, epoch
		case sendMoved:
			if arg == h.path || !h.adoptTarget(epoch, arg) {
				h.kept.Add(1)
				return handoverKept, epoch
			}
		default: // failed or refused
			if h.epoch.Load() == epoch {
				if res == sendFailed {
					h.deadEpoch.Store(epoch + 1)
				}
				h.kept.Add(1)
				return handoverKept, epoch
			}
			// the target changed while we tried: try the new one
		}
	}
	h.kept.Add(1)
	return handoverKept, epoch
}

type sendResult int

const (
	sendFailed     sendResult = iota // not delivered: keep it
	sendRefused                      // delivered, answered NO: keep it
	sendMoved                        // answered MOVED: try the named target
	sendOK                           // the receiver serves it
	sendUnanswered                   // delivered, no answer in time
	sendNoFD                         // not sent: the socket could not be duplicated
)

// senderLanes is how many handoff connections a sender opens to one
// target. One message is outstanding per connection, so with one lane the
// connections of a draining server queue for a round trip each (10,000
// idle ones took 2.8s on 2 busy cores); with several, the receiver, which
// serves each connection on its own goroutine, takes them in parallel.
const senderLanes = 8

// maxBatch is the most connections one "CONNS" message carries. A drain
// wakes every idle connection at once; while a lane waits for its reply the
// others queue, and the next message takes up to maxBatch of them: one
// sendmsg, one recvmsg, one reply and one delivering goroutine for the lot
// instead of one each. 32 keeps the text under 700 bytes and the
// descriptors in flight per lane well below SCM_MAX_FD (253).
const maxBatch = 32

// senderPool is the connections to one target's handoff socket, each served
// by a goroutine that sends what the draining connections ask for.
type senderPool struct {
	lanes [senderLanes]*handoffSender
	reqs  chan *sendReq // unbuffered: a request taken is a lane's to answer
	stop  chan struct{}
	once  sync.Once

	messages *atomic.Int64 // the hub's count of messages answered

	// single: the target answered "CONNS" with "NO unknown message" (a
	// receiver from before batches); from then on one "CONN" per message.
	single atomic.Bool
}

// sendReq is one connection waiting for its lane's answer.
type sendReq struct {
	c         net.Conn
	idleSince time.Time
	fd        int
	res       sendResult
	arg       string
	done      chan struct{}
}

func newSenderPool(path string, messages *atomic.Int64) *senderPool {
	p := &senderPool{reqs: make(chan *sendReq), stop: make(chan struct{}), messages: messages}
	for i := range p.lanes {
		p.lanes[i] = &handoffSender{path: path}
		go p.serveLane(p.lanes[i])
	}
	return p
}

// send hands c's socket to the target and waits for what became of it.
func (p *senderPool) send(c net.Conn, idleSince time.Time) (sendResult, string) {
	r := &sendReq{c: c, idleSince: idleSince, fd: -1, done: make(chan struct{})}
	select {
	case p.reqs <- r:
	case <-p.stop:
		return sendFailed, ""
	}
	<-r.done
	return r.res, r.arg
}

// serveLane takes a waiting connection, then as many more as are waiting
// right now (up to maxBatch), and sends them in one message. There is no
// timer: the batch is whatever queued during the previous round trip, so a
// lone connection goes at once.
func (p *senderPool) serveLane(l *handoffSender) {
	batch := make([]*sendReq, 0, maxBatch)
	for {
		select {
		case <-p.stop:
			return
		case r := <-p.reqs:
			batch = append(batch[:0], r)
		}
	gather:
		for len(batch) < maxBatch {
			select {
			case r := <-p.reqs:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		p.sendBatch(l, batch)
		for _, r := range batch {
			close(r.done)
		}
		clear(batch)
	}
}

// sendBatch sends the batch on lane l and sets each request's result. The
// descriptors are duplicated only now that a lane is held: a drain wakes
// every idle connection at once, and a duplicate each while they waited
// doubled the process's descriptors (EMFILE with 10,000 connections under a
// 20,000 limit).
func (p *senderPool) sendBatch(l *handoffSender, batch []*sendReq) {
	sending := make([]*sendReq, 0, len(batch))
	for _, r := range batch {
		fd, err := activation.DupFD(r.c) // never (*os.File).Fd: see activation.ExportFiles
		if err != nil {
			r.res, r.arg = sendNoFD, err.Error()
			continue
		}
		r.fd = fd
		sending = append(sending, r)
	}
	defer func() {
		for _, r := range sending {
			unix.Close(r.fd)
		}
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-p.stop: // closed: never dial again for a pool nobody uses
		l.fail()
	default:
	}
	if len(sending) > 1 && !p.single.Load() {
		res, reply := l.exchangeLocked(batchMessage(sending), fdsOf(sending))
		p.count(res)
		if res != sendRefused || !strings.HasPrefix(reply, "NO unknown message") {
			setBatchResults(sending, res, reply)
			return
		}
		// A receiver from before batches; it closed what it got, unread.
		p.single.Store(true)
	}
	for _, r := range sending {
		r.res, r.arg = l.sendOneLocked(r.fd, r.idleSince)
		p.count(r.res)
	}
}

// count counts a message that was answered.
func (p *senderPool) count(res sendResult) {
	if res != sendFailed && res != sendUnanswered {
		p.messages.Add(1)
	}
}

func batchMessage(rs []*sendReq) string {
	b := make([]byte, 0, 6+20*len(rs))
	b = append(b, "CONNS"...)
	for _, r := range rs {
		b = append(b, ' ')
		b = strconv.AppendInt(b, r.idleSince.UnixNano(), 10)
	}
	return string(b)
}

func fdsOf(rs []*sendReq) []int {
	fds := make([]int, len(rs))
	for i, r := range rs {
		fds[i] = r.fd
	}
	return fds
}

// setBatchResults spreads the answer to a "CONNS" message over its
// connections: "OK " and one 'y' (taken) or 'n' (refused) per connection,
// in order; or MOVED or NO for all of them. A reply that fits none of these
// leaves us unsure what the receiver serves: every connection is given up,
// as for no answer.
func setBatchResults(rs []*sendReq, res sendResult, reply string) {
	if res == sendOK {
		marks, ok := strings.CutPrefix(reply, "OK ")
		if !ok || len(marks) != len(rs) || strings.Trim(marks, "yn") != "" {
			res = sendUnanswered
		} else {
			for i, r := range rs {
				if marks[i] == 'y' {
					r.res = sendOK
				} else {
					r.res, r.arg = sendRefused, "NO refused in a batch"
				}
			}
			return
		}
	}
	arg := ""
	if res == sendMoved || res == sendRefused {
		arg = reply
		if res == sendMoved {
			arg = strings.TrimPrefix(reply, "MOVED ")
		}
	}
	for _, r := range rs {
		r.res, r.arg = res, arg
	}
}

func (p *senderPool) close() {
	p.once.Do(func() { close(p.stop) })
	for _, l := range p.lanes {
		l.close()
	}
}

// handoffSender is one connection to a target's handoff socket.
type handoffSender struct {
	path string
	mu   sync.Mutex
	conn *net.UnixConn
	dead bool
}

func (snd *handoffSender) close() {
	snd.mu.Lock()
	defer snd.mu.Unlock()
	snd.fail()
}

func (snd *handoffSender) fail() {
	snd.dead = true
	if snd.conn != nil {
		snd.conn.Close()
		snd.conn = nil
	}
}

// send sends one descriptor in a "CONN" message.
func (snd *handoffSender) send(fd int, idleSince time.Time) (sendResult, string) {
	snd.mu.Lock()
	defer snd.mu.Unlock()
	return snd.sendOneLocked(fd, idleSince)
}

func (snd *handoffSender) sendOneLocked(fd int, idleSince time.Time) (sendResult, string) {
	res, reply := snd.exchangeLocked("CONN "+strconv.FormatInt(idleSince.UnixNano(), 10), []int{fd})
	switch res {
	case sendOK:
		if reply != "OK" {
			return sendRefused, reply
		}
	case sendMoved:
		return res, strings.TrimPrefix(reply, "MOVED ")
	}
	return res, reply
}

// exchangeLocked sends one message with its descriptors and reads the
// reply, with snd.mu held: sendOK for a reply starting "OK", sendMoved for
// "MOVED ...", sendRefused for anything else, and sendFailed or
// sendUnanswered if there was none.
func (snd *handoffSender) exchangeLocked(msg string, fds []int) (sendResult, string) {
	if snd.dead {
		return sendFailed, ""
	}
	if snd.conn == nil {
		d := net.Dialer{Timeout: handoffDialTimeout}
		c, err := d.Dial("unixpacket", snd.path)
		if err != nil {
			snd.dead = true // the target is gone: its drain, or its death
			return sendFailed, ""
		}
		// A client's connection goes only to a generation of our own user:
		// whoever else bound the path gets nothing, not even a message.
		if checkPeer(c.(*net.UnixConn)) != nil {
			c.Close()
			snd.dead = true
			return sendFailed, ""
		}
		snd.conn = c.(*net.UnixConn)
	}
	c := snd.conn
	_ = c.SetWriteDeadline(time.Now().Add(handoffReplyTimeout))
	if _, _, err := c.WriteMsgUnix([]byte(msg), unix.UnixRights(fds...), nil); err != nil {
		// A seqpacket datagram is queued whole or not at all.
		snd.fail()
		return sendFailed, ""
	}
	_ = c.SetReadDeadline(time.Now().Add(handoffReplyTimeout))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		snd.fail()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// Delivered, unanswered: the receiver may yet serve them.
			return sendUnanswered, ""
		}
		// EOF or reset: it died before answering, so it never read
		// from the sockets (it answers first).
		return sendFailed, ""
	}
	reply := string(buf[:n])
	switch {
	case reply == "OK" || strings.HasPrefix(reply, "OK "):
		return sendOK, reply
	case strings.HasPrefix(reply, "MOVED "):
		return sendMoved, reply
	}
	return sendRefused, reply
}
