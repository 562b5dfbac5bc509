package load

import (
	"bufio"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	readBufSize = 4096
	maxSamples  = 4 // error messages kept per client
)

// Why a keep-alive client's connection was closed, so that its next dial
// can be counted as a reconnect of that cause.
const (
	causeServer = iota // the server said Connection: close
	causeError         // an attempt failed
	causeStale         // found closed by the server before reuse
	numCauses
)

// record is one finished attempt, waiting to be classified into swap window
// or baseline once no later mark can cover it.
type record struct {
	start, end int64 // ns since run start
	status     uint16
	kind       Kind
	reused     bool
}

// counters are one client's totals. Only the client writes them; the
// report reads them after the client has exited.
type counters struct {
	attempts   int64
	kinds      [numKinds]int64
	failReused int64
	codes      map[int]int64
	conns      int64
	reconnects [numCauses]int64
	samples    []string
	winFailed  int64
	baseFailed int64
	hist       *[3]histogram // overall, swap window, baseline; allocated at first success
	kept       []record
}

// worker is one client: a goroutine with at most one connection.
type worker struct {
	r     *Runner
	class Class
	rng   *rand.Rand
	timer *time.Timer
	br    *bufio.Reader
	resp  response

	mu   sync.Mutex // guards conn against abort
	conn net.Conn

	connected bool // a connection was opened before: the next dial is a reconnect
	lastCause int  // why the last connection was closed

	gen     genKey // generation answering this client, and its run of responses
	genN    int64
	genEnd  int64
	prevGen genKey // the generation that answered before gen
	genSeen bool   // gen is set

	pending []record
	head    int
	c       counters

	progAttempts atomic.Int64
	progFailed   atomic.Int64
}

func newWorker(r *Runner, class Class, id int) *worker {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &worker{
		r:     r,
		class: class,
		rng:   rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(id))),
		timer: t,
		br:    bufio.NewReaderSize(nil, readBufSize),
	}
}

func (w *worker) run() {
	defer w.r.wg.Done()
	defer w.closeConn(causeError)
	defer w.flushGen()
	cfg := &w.r.cfg
	if w.class == IdlePool {
		// Stagger the pool so its connections do not all fire at once.
		if !w.r.sleep(w.timer, time.Duration(w.rng.Int64N(int64(cfg.IdleFor)))) {
			return
		}
		for w.r.next() {
			if w.conn != nil && !cfg.IdleNoCheck && (w.br.Buffered() > 0 || connClosed(w.conn)) {
				w.closeConn(causeStale)
			}
			w.attempt()
			if !w.r.sleep(w.timer, cfg.IdleFor) {
				return
			}
		}
		return
	}
	// With a Rate, each client starts its attempts on its own schedule,
	// one every interval from a random phase; a client that falls behind
	// does not burst to catch up.
	var interval time.Duration
	var next time.Time
	if n := cfg.KeepAlive + cfg.NewConn; cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(n) / cfg.Rate)
		next = time.Now().Add(time.Duration(w.rng.Int64N(int64(interval) + 1)))
	}
	for {
		if interval > 0 {
			if !w.r.sleep(w.timer, time.Until(next)) {
				return
			}
			next = next.Add(interval)
		}
		if !w.r.next() {
			return
		}
		pause := cfg.Think
		if !w.attempt() {
			pause = max(pause, cfg.FailurePause)
		}
		if !w.r.sleep(w.timer, pause) {
			return
		}
		if interval > 0 {
			if now := time.Now(); next.Before(now) {
				next = now
			}
		}
	}
}

// attempt makes one request and records its outcome; it reports success.
func (w *worker) attempt() bool {
	r := w.r
	slow := 0
	if r.cfg.SlowFraction > 0 && w.rng.Float64() < r.cfg.SlowFraction {
		slow = 1
	}
	req := r.reqKeep[slow]
	if w.class == NewConn {
		req = r.reqClose[slow]
	}
	start := time.Now()
	deadline := start.Add(r.cfg.Timeout)
	reused := w.conn != nil
	var err error
	if reused {
		err = w.conn.SetDeadline(deadline)
	} else {
		err = w.dial(deadline)
	}
	if err == nil {
		_, err = w.conn.Write(req)
	}
	if err == nil {
		err = readResponse(w.br, &w.resp)
	}
	end := time.Now()

	kind := OK
	switch {
	case err != nil:
		kind = classify(err)
		if r.aborted.Load() {
			kind = Aborted
		} else if kind == Other && len(w.c.samples) < maxSamples {
			w.c.samples = append(w.c.samples, err.Error())
		}
		w.closeConn(causeError)
	default:
		if w.resp.status < 200 || w.resp.status > 299 {
			kind = Status
		}
		w.noteGeneration(end.Sub(r.start).Nanoseconds())
		if w.resp.closeConn || w.class == NewConn {
			w.closeConn(causeServer)
		}
	}
	rec := record{
		start:  start.Sub(r.start).Nanoseconds(),
		end:    end.Sub(r.start).Nanoseconds(),
		kind:   kind,
		reused: reused,
	}
	if kind == Status {
		rec.status = uint16(w.resp.status)
	}
	w.finish(rec)
	return kind == OK
}

func (w *worker) dial(deadline time.Time) error {
	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(w.r.dialCtx, "tcp", w.r.addr)
	if err != nil {
		return err
	}
	if err := c.SetDeadline(deadline); err != nil {
		c.Close()
		return err
	}
	w.mu.Lock()
	w.conn = c
	w.mu.Unlock()
	w.br.Reset(c)
	w.c.conns++
	if w.class != NewConn && w.connected {
		w.c.reconnects[w.lastCause]++
	}
	w.connected = true
	return nil
}

func (w *worker) closeConn(cause int) {
	if w.conn == nil {
		return
	}
	w.mu.Lock()
	c := w.conn
	w.conn = nil
	w.mu.Unlock()
	c.Close()
	w.br.Reset(nil)
	w.lastCause = cause
}

// finish counts a finished attempt and classifies the attempts old enough
// that no swap mark can still be recorded near them.
func (w *worker) finish(rec record) {
	c := &w.c
	c.attempts++
	c.kinds[rec.kind]++
	w.progAttempts.Add(1)
	if rec.kind.Failed() {
		w.progFailed.Add(1)
		if rec.reused {
			c.failReused++
		}
		if rec.kind == Status {
			if c.codes == nil {
				c.codes = map[int]int64{}
			}
			c.codes[int(rec.status)]++
		}
	}
	if w.head == len(w.pending) {
		w.pending, w.head = w.pending[:0], 0
	} else if w.head >= 1024 && w.head*2 >= len(w.pending) {
		n := copy(w.pending, w.pending[w.head:])
		w.pending, w.head = w.pending[:n], 0
	}
	w.pending = append(w.pending, rec)
	w.flush(rec.end - int64(w.r.cfg.SwapWindow+w.r.cfg.MarkLag))
}

// flush classifies the pending attempts that ended before until.
func (w *worker) flush(until int64) {
	if w.head == len(w.pending) || w.pending[w.head].end > until {
		return
	}
	marks := *w.r.marks.Load()
	window := int64(w.r.cfg.SwapWindow)
	c := &w.c
	for w.head < len(w.pending) && w.pending[w.head].end <= until {
		rec := &w.pending[w.head]
		w.head++
		if w.r.cfg.KeepAttempts {
			c.kept = append(c.kept, *rec)
		}
		in := inWindow(marks, rec.start, rec.end, window)
		switch {
		case rec.kind == OK:
			if c.hist == nil {
				c.hist = new([3]histogram)
			}
			lat := rec.end - rec.start
			c.hist[0].add(lat)
			if in {
				c.hist[1].add(lat)
			} else {
				c.hist[2].add(lat)
			}
		case rec.kind.Failed():
			if in {
				c.winFailed++
			} else {
				c.baseFailed++
			}
		}
	}
}

// noteGeneration follows the generation answering this client; the shared
// tracker is told only when it changes.
func (w *worker) noteGeneration(end int64) {
	resp := &w.resp
	if len(resp.generation) == 0 && len(resp.version) == 0 && len(resp.pid) == 0 {
		return
	}
	if w.genN > 0 && string(resp.generation) == w.gen.gen && string(resp.version) == w.gen.ver && string(resp.pid) == w.gen.pid {
		w.genN++
		w.genEnd = end
		return
	}
	w.flushGen()
	if w.genSeen && string(resp.generation) == w.prevGen.gen && string(resp.version) == w.prevGen.ver && string(resp.pid) == w.prevGen.pid {
		// Flipping back to the previous generation (both serve during a
		// swap): already reported as seen, no new strings.
		w.gen, w.prevGen = w.prevGen, w.gen
	} else {
		if w.genSeen {
			w.prevGen = w.gen
		}
		w.gen = genKey{gen: string(resp.generation), ver: string(resp.version), pid: string(resp.pid)}
		w.r.versions.seen(w.gen, end)
	}
	w.genSeen = true
	w.genN, w.genEnd = 1, end
}

func (w *worker) flushGen() {
	if w.genN > 0 {
		w.r.versions.add(w.gen, w.genEnd, w.genN)
		w.genN = 0
	}
}
