package entrypoint

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// reapTrace records, with the kernel's own clock, where each orphan's
// exit → reap delay goes in BenchmarkOrphanReapDelay (REAP_TRACE=1). It is
// a tracefs instance of its own, so the global trace buffer is left alone,
// with trace_clock mono, so its times compare with CLOCK_MONOTONIC. Per
// orphan it sees:
//
//   - sys_enter_exit_group: bash enters do_exit;
//   - signal_generate (SIGCHLD, sent by the orphan): exit_notify has made
//     it a zombie and signals us, after the mm, files and the rest are
//     torn down;
//   - signal_deliver (SIGCHLD, in this process): a thread of ours runs the
//     handler, i.e. the process got a CPU after the signal;
//   - sys_exit_wait4 returning the orphan's PID: the reaper has reaped it;
//   - sched_wakeup and sched_switch of this process's threads, to find how
//     long the threads on the way from the handler to wait4 sat runnable
//     on a run queue instead of running.
type reapTrace struct {
	dir  string // the instance
	comm string // our threads' comm, for the sched event filters
}

// traceRoots are where tracefs may be mounted.
var traceRoots = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// startReapTrace creates and starts the trace instance. On an error nothing
// is left behind.
func startReapTrace() (*reapTrace, error) {
	root := ""
	for _, r := range traceRoots {
		if _, err := os.Stat(filepath.Join(r, "instances")); err == nil {
			root = r
			break
		}
	}
	if root == "" {
		return nil, errors.New("reap trace: no tracefs with instances/ at " + strings.Join(traceRoots, " or "))
	}
	removeStaleTraces(filepath.Join(root, "instances"))
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		return nil, fmt.Errorf("reap trace: %w", err)
	}
	t := &reapTrace{
		dir:  filepath.Join(root, "instances", tracePrefix+strconv.Itoa(os.Getpid())),
		comm: strings.TrimSpace(string(comm)),
	}
	if err := os.Mkdir(t.dir, 0o700); err != nil {
		return nil, fmt.Errorf("reap trace: create instance: %w", err)
	}
	q := strconv.Quote(t.comm)
	steps := [][2]string{
		{"trace_clock", "mono"},
		{"buffer_size_kb", "32768"},
		{"options/record-tgid", "1"},
		{"events/syscalls/sys_enter_exit_group/enable", "1"},
		{"events/signal/signal_generate/filter", "sig == 17"},
		{"events/signal/signal_generate/enable", "1"},
		{"events/signal/signal_deliver/filter", "sig == 17"},
		{"events/signal/signal_deliver/enable", "1"},
		{"events/syscalls/sys_exit_wait4/filter", "ret > 0"},
		{"events/syscalls/sys_exit_wait4/enable", "1"},
		{"events/sched/sched_wakeup/filter", "comm == " + q},
		{"events/sched/sched_wakeup/enable", "1"},
		{"events/sched/sched_switch/filter", "next_comm == " + q + " || prev_comm == " + q},
		{"events/sched/sched_switch/enable", "1"},
		{"tracing_on", "1"},
	}
	for _, s := range steps {
		if err := os.WriteFile(filepath.Join(t.dir, s[0]), []byte(s[1]), 0); err != nil {
			t.close()
			return nil, fmt.Errorf("reap trace: %s: %w", s[0], err)
		}
	}
	return t, nil
}

const tracePrefix = "hotswap-reaptrace-"

// removeStaleTraces removes instances left by a benchmark that was killed
// before its clean-up ran: those whose process is gone.
func removeStaleTraces(instances string) {
	ents, _ := os.ReadDir(instances)
	for _, e := range ents {
		pid, ok := strings.CutPrefix(e.Name(), tracePrefix)
		if !ok {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err != nil {
			_ = os.Remove(filepath.Join(instances, e.Name()))
		}
	}
}

// stop stops recording and returns what was recorded.
func (t *reapTrace) stop() ([]byte, error) {
	if err := os.WriteFile(filepath.Join(t.dir, "tracing_on"), []byte("0"), 0); err != nil {
		return nil, fmt.Errorf("reap trace: stop: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(t.dir, "trace"))
	if err != nil {
		return nil, fmt.Errorf("reap trace: read: %w", err)
	}
	return b, nil
}

// close removes the instance; the kernel disables its events with it.
func (t *reapTrace) close() {
	_ = os.WriteFile(filepath.Join(t.dir, "tracing_on"), []byte("0"), 0)
	_ = os.Remove(t.dir)
}

// monoOffset is CLOCK_REALTIME − CLOCK_MONOTONIC, in µs, to put the
// orphans' $EPOCHREALTIME stamps on the trace's clock: the pair read
// closest together of a few.
func monoOffset() int64 {
	best, off := int64(-1), int64(0)
	for range 5 {
		var m1, r, m2 unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1)
		_ = unix.ClockGettime(unix.CLOCK_REALTIME, &r)
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m2)
		if gap := m2.Nano() - m1.Nano(); best < 0 || gap < best {
			best = gap
			off = (r.Nano() - (m1.Nano()+m2.Nano())/2) / 1000
		}
	}
	return off
}

// traceEvent is one line of the trace.
type traceEvent struct {
	tid, tgid int   // the task the event ran on; tgid 0 if unknown
	at        int64 // µs, CLOCK_MONOTONIC
	name      string
	args      string
}

// "  comm-tid  ( tgid) [cpu] flags sec.usec: name: args"; syscall events
// print "sys_wait4 -> 0x1f" and "sys_exit_group(error_code: 0)".
var traceLine = regexp.MustCompile(`^\s*.*-(\d+)\s+\(\s*([-\d]+)\)\s+\[\d+\]\s+\S+\s+(\d+)\.(\d{6}): (\w+)[:(]? ?(.*)$`)

func parseTrace(b []byte) []traceEvent {
	var out []traceEvent
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := traceLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		tid, _ := strconv.Atoi(m[1])
		tgid, _ := strconv.Atoi(m[2]) // "-------": 0
		sec, _ := strconv.ParseInt(m[3], 10, 64)
		usec, _ := strconv.ParseInt(m[4], 10, 64)
		out = append(out, traceEvent{tid: tid, tgid: tgid, at: sec*1e6 + usec, name: m[5], args: m[6]})
	}
	return out
}

// field returns key's value in "k=v k=v" args.
func field(args, key string) string {
	for f := range strings.FieldsSeq(args) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// reapSplit is one orphan's exit → reap, cut at the kernel's events; µs.
type reapSplit struct {
	stampToExit   int64 // user stamp → exit_group: bash's last act (benchmark)
	exitToSignal  int64 // exit_group → SIGCHLD: teardown to zombie (benchmark)
	signalToRun   int64 // SIGCHLD → our handler runs, or the reap if earlier (machine)
	runToReap     int64 // handler → wait4 returned the PID (the reaper's path)
	runqInReap    int64 // of runToReap: our threads runnable, not running (machine)
	ownSignal     bool  // the handler ran for this orphan's signal before its reap
	signalPending bool  // SIGCHLD was already pending when it was sent
}

// splitReaps cuts each orphan's delay. stamps are the orphans' user-space
// exit stamps (µs, CLOCK_MONOTONIC) by PID; self is our PID. Orphans
// missing an event are left out; the count says how many are in.
func splitReaps(events []traceEvent, stamps map[int]int64, self int) []reapSplit {
	exitAt := map[int]int64{}
	sigAt := map[int]int64{}
	pending := map[int]bool{}
	reapAt := map[int]int64{}
	var delivers []int64
	ours := map[int]bool{} // our threads
	for _, e := range events {
		if e.tgid == self {
			ours[e.tid] = true
		}
	}
	if ents, err := os.ReadDir("/proc/self/task"); err == nil {
		for _, d := range ents {
			if tid, err := strconv.Atoi(d.Name()); err == nil {
				ours[tid] = true
			}
		}
	}
	// Run-queue waits of our threads: [from, to) where a thread was woken
	// or preempted and not yet switched in; woke names who woke it.
	type wait struct {
		tid, woke int
		from, to  int64
	}
	var waits []wait
	open := map[int]wait{}
	for _, e := range events {
		switch e.name {
		case "sys_exit_group":
			if _, ok := stamps[e.tid]; ok {
				if _, seen := exitAt[e.tid]; !seen {
					exitAt[e.tid] = e.at
				}
			}
		case "signal_generate":
			target, _ := strconv.Atoi(field(e.args, "pid"))
			if _, ok := stamps[e.tid]; ok && ours[target] {
				if _, seen := sigAt[e.tid]; !seen {
					sigAt[e.tid] = e.at
					pending[e.tid] = field(e.args, "res") == "2"
				}
			}
		case "signal_deliver":
			if e.tgid == self {
				delivers = append(delivers, e.at)
			}
		case "sys_wait4":
			if e.tgid != self {
				continue
			}
			if v, ok := strings.CutPrefix(e.args, "-> 0x"); ok {
				if pid, err := strconv.ParseInt(v, 16, 64); err == nil {
					if _, ok := stamps[int(pid)]; ok {
						reapAt[int(pid)] = e.at
					}
				}
			}
		case "sched_wakeup":
			tid, _ := strconv.Atoi(field(e.args, "pid"))
			if ours[tid] {
				if _, ok := open[tid]; !ok {
					open[tid] = wait{tid: tid, woke: e.tid, from: e.at}
				}
			}
		case "sched_switch":
			prev, _ := strconv.Atoi(field(e.args, "prev_pid"))
			next, _ := strconv.Atoi(field(e.args, "next_pid"))
			if st := field(e.args, "prev_state"); ours[prev] && strings.HasPrefix(st, "R") {
				open[prev] = wait{tid: prev, woke: prev, from: e.at} // preempted
			}
			if w, ok := open[next]; ok && ours[next] {
				w.to = e.at
				waits = append(waits, w)
				delete(open, next)
			}
		}
	}
	// runq is how long, within [from, to), the chain of our threads that
	// led to the reap at to on thread tid sat runnable: walk back from the
	// reap through each wait's waker while the waker is one of ours.
	byTid := map[int][]wait{}
	for _, w := range waits {
		byTid[w.tid] = append(byTid[w.tid], w)
	}
	runq := func(tid int, from, to int64) int64 {
		var sum int64
		for range 64 {
			ws := byTid[tid]
			i, _ := slices.BinarySearchFunc(ws, to, func(w wait, t int64) int {
				switch {
				case w.to < t:
					return -1
				case w.to > t:
					return 1
				}
				return 0
			})
			// ws[i-1] is the last wait that ended before to
			if i == 0 || ws[i-1].to <= from {
				return sum
			}
			w := ws[i-1]
			sum += w.to - max(w.from, from)
			if w.from <= from || !ours[w.woke] {
				return sum
			}
			tid, to = w.woke, w.from
		}
		return sum
	}
	reaperTid := map[int]int{}
	for _, e := range events {
		if e.name == "sys_wait4" && e.tgid == self {
			if v, ok := strings.CutPrefix(e.args, "-> 0x"); ok {
				if pid, err := strconv.ParseInt(v, 16, 64); err == nil {
					reaperTid[int(pid)] = e.tid
				}
			}
		}
	}
	var out []reapSplit
	for pid, u := range stamps {
		x, ok1 := exitAt[pid]
		g, ok2 := sigAt[pid]
		r, ok3 := reapAt[pid]
		if !ok1 || !ok2 || !ok3 {
			continue
		}
		run, own := r, false
		if i, _ := slices.BinarySearch(delivers, g); i < len(delivers) && delivers[i] <= r {
			run, own = delivers[i], true
		}
		out = append(out, reapSplit{
			stampToExit:   x - u,
			exitToSignal:  g - x,
			signalToRun:   run - g,
			runToReap:     r - run,
			runqInReap:    runq(reaperTid[pid], run, r),
			ownSignal:     own,
			signalPending: pending[pid],
		})
	}
	return out
}

// reapSegments names the segments of a reapSplit, for metrics and tables.
var reapSegments = []struct {
	name string
	get  func(reapSplit) int64
}{
	{"stamp-to-exit", func(s reapSplit) int64 { return s.stampToExit }},
	{"exit-to-signal", func(s reapSplit) int64 { return s.exitToSignal }},
	{"signal-to-run", func(s reapSplit) int64 { return s.signalToRun }},
	{"run-to-reap", func(s reapSplit) int64 { return s.runToReap }},
	{"runq-in-reap", func(s reapSplit) int64 { return s.runqInReap }},
	{"reaper-own", func(s reapSplit) int64 { return s.runToReap - s.runqInReap }},
	{"signal-to-reap", func(s reapSplit) int64 { return s.signalToRun + s.runToReap }},
	{"exit-to-reap", func(s reapSplit) int64 { return s.exitToSignal + s.signalToRun + s.runToReap }},
}

// quantiles returns p50, p99 and max of d (sorted in place), in ms.
func quantiles(d []int64) (p50, p99, most float64) {
	slices.Sort(d)
	at := func(p float64) float64 { return float64(d[int(p*float64(len(d)-1))]) / 1000 }
	return at(0.5), at(0.99), float64(d[len(d)-1]) / 1000
}

// TestSplitReaps cuts one orphan's delay out of trace lines in the kernel's
// own format (copied from a run, PIDs changed): our process is 100, its
// handler runs on thread 100, which wakes thread 101 that reaps orphan 200
// (0xc8) after 1 ms on a run queue.
func TestSplitReaps(t *testing.T) {
	const trace = `# tracer: nop
            bash-200     (    200) [001] ..... 1000.000300: sys_exit_group(error_code: 0)
            bash-200     (    200) [001] dN.2. 1000.000900: signal_generate: sig=17 errno=0 code=1 comm=ent.test pid=100 grp=1 res=0
          <idle>-0       (-------) [000] dNh2. 1000.001000: sched_wakeup: comm=ent.test pid=100 prio=120 target_cpu=000
          <idle>-0       (-------) [000] d..2. 1000.001500: sched_switch: prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=ent.test next_pid=100 next_prio=120
        ent.test-100     (    100) [000] d..1. 1000.001510: signal_deliver: sig=17 errno=0 code=1 sa_handler=48eea0 sa_flags=1c000004
        ent.test-100     (    100) [000] d..2. 1000.001520: sched_wakeup: comm=ent.test pid=101 prio=120 target_cpu=001
          <idle>-0       (-------) [001] d..2. 1000.002520: sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=ent.test next_pid=101 next_prio=120
        ent.test-101     (    100) [001] ..... 1000.002620: sys_wait4 -> 0xc8
`
	events := parseTrace([]byte(trace))
	if len(events) != 8 {
		t.Fatalf("parsed %d events, want 8: %+v", len(events), events)
	}
	got := splitReaps(events, map[int]int64{200: 1000_000000}, 100)
	want := reapSplit{stampToExit: 300, exitToSignal: 600, signalToRun: 610, runToReap: 1110, runqInReap: 1000, ownSignal: true}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("split %+v, want [%+v]", got, want)
	}
}
