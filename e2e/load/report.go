package load

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// ErrFailures is wrapped by Report.Err when any attempt failed.
var ErrFailures = errors.New("load: failed attempts")

// Report is the outcome of a run. Durations are nanoseconds in JSON.
type Report struct {
	// Config is the run's configuration with defaults applied.
	Config Config `json:"config"`
	// Start is when the run started; Elapsed is how long it ran, until
	// the last attempt finished.
	Start   time.Time     `json:"start"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// Attempts is every attempt made: OK + Failures.Total() + Aborted.
	Attempts int64 `json:"attempts"`
	// OK is the number of complete 2xx responses.
	OK int64 `json:"ok"`
	// Aborted is the number of attempts cut short by cancelling the run.
	Aborted int64 `json:"aborted"`
	// Failures counts the failed attempts by kind.
	Failures Failures `json:"failures"`
	// Rate is attempts per second.
	Rate float64 `json:"rate"`

	// KeepAlive, NewConn and IdlePool break the counts down by client class.
	KeepAlive ClassReport `json:"keepalive"`
	NewConn   ClassReport `json:"newconn"`
	IdlePool  ClassReport `json:"idlepool"`

	// Latency of successful (2xx) attempts, and failures, overall, in the
	// swap windows and outside them.
	Latency Latency `json:"latency"`

	// Swaps are the swap marks recorded, in time order.
	Swaps []time.Time `json:"swaps"`
	// Generations and Versions seen answering, in order of first response.
	Generations []Generation `json:"generations"`
	Versions    []Version    `json:"versions"`
	// Errors holds samples of the messages of "other" failures.
	Errors []string `json:"errors,omitempty"`
	// Log holds every attempt in start order, when Config.KeepAttempts is set.
	Log []Attempt `json:"log,omitempty"`
}

// Failures counts failed attempts by kind.
type Failures struct {
	// Refused, Reset, EOF, Timeout, Status (non-2xx) and Other count the
	// attempts of each failed Kind.
	Refused int64 `json:"refused"`
	Reset   int64 `json:"reset"`
	EOF     int64 `json:"eof"`
	Timeout int64 `json:"timeout"`
	Status  int64 `json:"non_2xx"`
	Other   int64 `json:"other"`
	// OnReused is how many of the failures happened on a reused
	// (keep-alive) connection rather than a fresh one.
	OnReused int64 `json:"on_reused"`
	// StatusCodes counts the non-2xx responses by status code.
	StatusCodes map[int]int64 `json:"status_codes,omitempty"`
}

// ClassReport is the part of a report for one class of client.
type ClassReport struct {
	// Clients is the number of clients of the class.
	Clients int `json:"clients"`
	// Attempts, OK, Aborted and Failures are as in Report, for this class.
	Attempts int64    `json:"attempts"`
	OK       int64    `json:"ok"`
	Aborted  int64    `json:"aborted"`
	Failures Failures `json:"failures"`
	// Connections is the number of TCP connections opened.
	Connections int64 `json:"connections"`
	// Reconnects counts connections opened by keep-alive and idle-pool
	// clients beyond their first, by the reason the previous one ended.
	Reconnects Reconnects `json:"reconnects"`
}

// Reconnects counts new connections a keep-alive client had to open.
type Reconnects struct {
	// ServerClose: the server answered Connection: close (not a failure).
	ServerClose int64 `json:"server_close"`
	// Error: the previous attempt failed.
	Error int64 `json:"error"`
	// Stale: an idle-pool connection was found closed by the server
	// before reuse (not a failure).
	Stale int64 `json:"stale"`
}

// Total is the number of reconnects of any cause.
func (r Reconnects) Total() int64 { return r.ServerClose + r.Error + r.Stale }

func (r *Reconnects) add(o Reconnects) {
	r.ServerClose += o.ServerClose
	r.Error += o.Error
	r.Stale += o.Stale
}

// Latency splits latency statistics by time relative to the swap marks.
type Latency struct {
	// Overall covers every attempt.
	Overall LatencyStats `json:"overall"`
	// SwapWindow covers attempts that overlap [mark-SwapWindow,
	// mark+SwapWindow] for some swap mark.
	SwapWindow LatencyStats `json:"swap_window"`
	// Baseline covers the other attempts.
	Baseline LatencyStats `json:"baseline"`
}

// LatencyStats are latency quantiles of successful attempts (within 1.6%),
// and the number of failed attempts in the same set.
type LatencyStats struct {
	// Count is the number of successful attempts in the set.
	Count int64 `json:"count"`
	// Failed is the number of failed attempts in the set.
	Failed int64 `json:"failed"`
	// Mean, P50 ... P999 and Max are latencies of the successful attempts.
	Mean time.Duration `json:"mean_ns"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
}

// Attempt is one attempt, kept when Config.KeepAttempts is set.
type Attempt struct {
	// Start is when the attempt started (before its dial, if any).
	Start time.Time `json:"start"`
	// Latency is from Start to the end of the response or the error.
	Latency time.Duration `json:"latency_ns"`
	// Class is the client that made it; Kind is its outcome.
	Class Class `json:"class"`
	Kind  Kind  `json:"kind"`
	// Status is the status code of a non-2xx response.
	Status int `json:"status,omitempty"`
	// Reused is set when the attempt went on a reused connection.
	Reused bool `json:"reused,omitempty"`
}

// Total is the number of failed attempts.
func (f Failures) Total() int64 {
	return f.Refused + f.Reset + f.EOF + f.Timeout + f.Status + f.Other
}

// String lists the non-zero failure kinds, e.g. "reset=3 eof=1 non-2xx=2 (503×2)".
func (f Failures) String() string {
	var b strings.Builder
	for _, k := range []struct {
		name string
		n    int64
	}{{"refused", f.Refused}, {"reset", f.Reset}, {"eof", f.EOF}, {"timeout", f.Timeout}, {"non-2xx", f.Status}, {"other", f.Other}} {
		if k.n > 0 {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s=%d", k.name, k.n)
		}
	}
	if len(f.StatusCodes) > 0 {
		b.WriteString(" (")
		for i, code := range slices.Sorted(maps.Keys(f.StatusCodes)) {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%d×%d", code, f.StatusCodes[code])
		}
		b.WriteByte(')')
	}
	if b.Len() == 0 {
		return "none"
	}
	if f.OnReused > 0 {
		fmt.Fprintf(&b, "; %d on reused connections", f.OnReused)
	}
	return b.String()
}

func (f *Failures) addCounters(c *counters) {
	f.Refused += c.kinds[Refused]
	f.Reset += c.kinds[Reset]
	f.EOF += c.kinds[EOF]
	f.Timeout += c.kinds[Timeout]
	f.Status += c.kinds[Status]
	f.Other += c.kinds[Other]
	f.OnReused += c.failReused
	for code, n := range c.codes {
		if f.StatusCodes == nil {
			f.StatusCodes = map[int]int64{}
		}
		f.StatusCodes[code] += n
	}
}

func (f *Failures) add(o Failures) {
	f.Refused += o.Refused
	f.Reset += o.Reset
	f.EOF += o.EOF
	f.Timeout += o.Timeout
	f.Status += o.Status
	f.Other += o.Other
	f.OnReused += o.OnReused
	for code, n := range o.StatusCodes {
		if f.StatusCodes == nil {
			f.StatusCodes = map[int]int64{}
		}
		f.StatusCodes[code] += n
	}
}

// Failed returns the number of failed attempts.
func (r *Report) Failed() int { return int(r.Failures.Total()) }

// Reconnects returns the new connections opened by keep-alive and
// idle-pool clients beyond their first, by cause.
func (r *Report) Reconnects() Reconnects {
	var t Reconnects
	t.add(r.KeepAlive.Reconnects)
	t.add(r.IdlePool.Reconnects)
	return t
}

// Err returns nil when no attempt failed, and otherwise an error wrapping
// ErrFailures that lists the failures by kind and by client class.
func (r *Report) Err() error {
	n := r.Failed()
	if n == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d attempts failed: %s", n, r.Attempts, r.Failures)
	for _, c := range r.classes() {
		if t := c.r.Failures.Total(); t > 0 {
			fmt.Fprintf(&b, "; %s: %s", c.class, c.r.Failures)
		}
	}
	if w := r.Latency.SwapWindow.Failed; len(r.Swaps) > 0 {
		fmt.Fprintf(&b, "; %d in swap windows", w)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "; e.g. %s", r.Errors[0])
	}
	return fmt.Errorf("%w: %s", ErrFailures, b.String())
}

type classRef struct {
	class Class
	r     *ClassReport
}

func (r *Report) classes() []classRef {
	return []classRef{{KeepAlive, &r.KeepAlive}, {NewConn, &r.NewConn}, {IdlePool, &r.IdlePool}}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("load: write report: %w", err)
	}
	return nil
}

// String returns the report as WriteText writes it.
func (r *Report) String() string {
	var b strings.Builder
	_ = r.WriteText(&b)
	return b.String()
}

// WriteText writes the report as human-readable tables.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	c := r.Config
	fmt.Fprintf(w, "target %s  elapsed %.2fs  %.0f attempts/s  timeout %v  slow %.0f%%\n",
		c.Addr, r.Elapsed.Seconds(), r.Rate, c.Timeout, 100*c.SlowFraction)
	fmt.Fprintf(w, "attempts %d  ok %d  failed %d  aborted %d  failures: %s\n\n",
		r.Attempts, r.OK, r.Failed(), r.Aborted, r.Failures)

	p("class\tclients\tattempts\tok\tfailed\trefused\treset\teof\ttimeout\tnon-2xx\tother\tconns\treconn:close\treconn:error\treconn:stale\t\n")
	for _, cr := range r.classes() {
		x := cr.r
		if x.Clients == 0 {
			continue
		}
		f := x.Failures
		p("%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", cr.class, x.Clients, x.Attempts, x.OK, f.Total(),
			f.Refused, f.Reset, f.EOF, f.Timeout, f.Status, f.Other, x.Connections,
			x.Reconnects.ServerClose, x.Reconnects.Error, x.Reconnects.Stale)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("load: write report: %w", err)
	}
	fmt.Fprintln(w)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/1e6) }
	p("latency\tok\tfailed\tmean\tp50\tp90\tp99\tp99.9\tmax\t\n")
	for _, l := range []struct {
		name string
		s    LatencyStats
	}{{"overall", r.Latency.Overall}, {fmt.Sprintf("swap ±%v", c.SwapWindow), r.Latency.SwapWindow}, {"baseline", r.Latency.Baseline}} {
		s := l.s
		p("%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", l.name, s.Count, s.Failed, ms(s.Mean), ms(s.P50), ms(s.P90), ms(s.P99), ms(s.P999), ms(s.Max))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("load: write report: %w", err)
	}
	fmt.Fprintf(w, "\nswap marks: %d\n", len(r.Swaps))
	if len(r.Generations) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "generation\tversion\tpid\tfirst\tlast\tresponses\t\n")
		for _, g := range r.Generations {
			fmt.Fprintf(tw, "%s\t%s\t%s\t+%.3fs\t+%.3fs\t%d\t\n", g.Generation, g.Version, g.Pid,
				g.First.Sub(r.Start).Seconds(), g.Last.Sub(r.Start).Seconds(), g.Responses)
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("load: write report: %w", err)
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error sample: %s\n", e)
	}
	return nil
}

func stats(h *histogram, failed int64) LatencyStats {
	s := LatencyStats{Count: h.n, Failed: failed, Max: time.Duration(h.max)}
	if h.n > 0 {
		s.Mean = time.Duration(h.sum / h.n)
		s.P50, s.P90, s.P99, s.P999 = h.quantile(0.5), h.quantile(0.9), h.quantile(0.99), h.quantile(0.999)
	}
	return s
}

// buildReport merges the clients' counters; every client has exited.
func (r *Runner) buildReport(end time.Time) *Report {
	rep := &Report{Config: r.cfg, Start: r.start, Elapsed: end.Sub(r.start)}
	var hist [3]histogram
	var winFailed, baseFailed int64
	for _, w := range r.workers {
		w.flush(1<<62 - 1)
		c := &w.c
		cr := rep.classes()[w.class].r
		cr.Clients++
		cr.Attempts += c.attempts
		cr.OK += c.kinds[OK]
		cr.Aborted += c.kinds[Aborted]
		cr.Failures.addCounters(c)
		cr.Connections += c.conns
		cr.Reconnects.add(Reconnects{ServerClose: c.reconnects[causeServer], Error: c.reconnects[causeError], Stale: c.reconnects[causeStale]})
		if c.hist != nil {
			for i := range hist {
				hist[i].merge(&c.hist[i])
			}
		}
		winFailed += c.winFailed
		baseFailed += c.baseFailed
		for _, s := range c.samples {
			if len(rep.Errors) < 10 && !slices.Contains(rep.Errors, s) {
				rep.Errors = append(rep.Errors, s)
			}
		}
		for _, k := range c.kept {
			a := Attempt{Start: r.start.Add(time.Duration(k.start)), Latency: time.Duration(k.end - k.start),
				Class: w.class, Kind: k.kind, Status: int(k.status), Reused: k.reused}
			rep.Log = append(rep.Log, a)
		}
	}
	for _, cr := range rep.classes() {
		rep.Attempts += cr.r.Attempts
		rep.OK += cr.r.OK
		rep.Aborted += cr.r.Aborted
		rep.Failures.add(cr.r.Failures)
	}
	if s := rep.Elapsed.Seconds(); s > 0 {
		rep.Rate = float64(rep.Attempts) / s
	}
	rep.Latency = Latency{
		Overall:    stats(&hist[0], winFailed+baseFailed),
		SwapWindow: stats(&hist[1], winFailed),
		Baseline:   stats(&hist[2], baseFailed),
	}
	for _, m := range *r.marks.Load() {
		rep.Swaps = append(rep.Swaps, r.start.Add(time.Duration(m)))
	}
	rep.Generations, rep.Versions = r.versions.report(r.start)
	slices.SortStableFunc(rep.Log, func(a, b Attempt) int { return a.Start.Compare(b.Start) })
	return rep
}
