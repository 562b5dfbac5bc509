package entrypoint

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Signalling a group by number, kill(-PGID), is only safe while the number
// cannot belong to anyone else. The kernel frees a PID number once no task
// uses it as PID, process group or session ID; so -PID names our child's
// group while the child is unreaped (Signal holds the reaper's lock for
// that), and after that only while some member of the old group lives. Once
// the last one is gone, a stranger may get the number and lead a group of
// the same number: a setsid daemon of another generation, say, which a late
// kill(-PID) would kill.
//
// So when the leader is reaped, the reaper checks at once, before anyone
// can have reused the number, whether the group outlived it; if it did, it
// opens a pidfd on each member. Those members are the anchors: while one of
// them lives and is still in the group, the number is still pinned by our
// group, and every process in a group of that number is one of ours. Signals
// then go through pidfds, one per member, never through the number. When no
// anchor is left, the group is gone for good: Signal returns ErrDone.

// member is a process of a group whose leader was reaped, held by a pidfd.
type member struct {
	pid   int
	start uint64 // start time in clock ticks: with pid, who it is
	fd    int
}

// adoptMembers opens a pidfd on each process in p's group, soon after p was
// reaped at reapedAt (clock ticks). The number may have been freed and
// reused since the reap, but only by a process that started after it and
// that is, or was forked by, a stranger with our leader's PID. So: none is
// taken when a process has that PID now, nor one that started after the
// reap's tick; members forked since are picked up by signalMembers once an
// anchor proves them. Called with p.gmu held.
func (p *Process) adoptMembers(reapedAt uint64) {
	procs, err := listProcs()
	if err != nil {
		return
	}
	for _, q := range procs {
		if q.pid == p.PID {
			return // the PID is someone else's already
		}
	}
	for _, q := range procs {
		// A zombie member holds the number only until it is reaped, soon,
		// and takes no signal: it does not make the group live.
		if q.pgid != p.PID || q.state == 'Z' || q.start > reapedAt {
			continue
		}
		if m, ok := holdMember(q, p.PID); ok {
			p.members = append(p.members, m)
			track(p, m)
		}
	}
}

// memberOf maps the PID of each held member to its Process, so that the
// reaper, when it reaps a member reparented to it, lets the pidfd go at once
// rather than at a Signal that may never come. Its lock is a leaf.
var memberOf struct {
	sync.Mutex
	m map[int]*Process
}

func track(p *Process, m member) {
	memberOf.Lock()
	if memberOf.m == nil {
		memberOf.m = make(map[int]*Process)
	}
	memberOf.m[m.pid] = p
	memberOf.Unlock()
}

// release forgets and closes m.
func (m member) release() {
	memberOf.Lock()
	delete(memberOf.m, m.pid)
	memberOf.Unlock()
	closePidfd(m.fd)
}

// memberReaped is the reaper's news that pid, reaped as an orphan, is gone.
func memberReaped(pid int) {
	memberOf.Lock()
	p := memberOf.m[pid]
	memberOf.Unlock()
	if p == nil {
		return
	}
	if !p.gmu.TryLock() {
		// Signal or the adoption holds it and may take long: the reaper
		// goroutine never waits for it.
		go func() { p.gmu.Lock(); p.dropMember(pid) }()
		return
	}
	p.dropMember(pid)
}

// dropMember lets go of member pid; called with p.gmu held, unlocks it.
func (p *Process) dropMember(pid int) {
	defer p.gmu.Unlock()
	kept := p.members[:0]
	for _, m := range p.members {
		if m.pid == pid {
			m.release()
		} else {
			kept = append(kept, m)
		}
	}
	p.members = kept
}

// holdMember opens a pidfd on q and checks, through /proc read after the
// pidfd holds the process, that it is still q and still in group pgid.
func holdMember(q procInfo, pgid int) (member, bool) {
	fd, err := openPidfd(q.pid)
	if err != nil {
		return member{}, false
	}
	m := member{pid: q.pid, start: q.start, fd: fd}
	if !m.inGroup(pgid) {
		closePidfd(fd)
		return member{}, false
	}
	return m, true
}

// inGroup reports whether m is alive (a zombie counts: it still holds its
// group's number) and in group pgid. The /proc read is about m's process
// only if m's pidfd still works after it: then that process held the PID
// all along.
func (m member) inGroup(pgid int) bool {
	q, ok := readProc(m.pid)
	return ok && q.pgid == pgid && q.start == m.start && pidfdSignal(m.fd, 0) == nil
}

// signalMembers signals the group of p after its leader was reaped (see
// above) and returns how many processes it reached.
func (p *Process) signalMembers(sig syscall.Signal) (int, error) {
	p.gmu.Lock()
	defer p.gmu.Unlock()
	if p.groupGone {
		return 0, ErrDone
	}
	anchors := p.members[:0]
	for _, m := range p.members {
		if m.inGroup(p.PID) {
			anchors = append(anchors, m)
		} else {
			m.release()
		}
	}
	p.members = anchors
	if len(anchors) == 0 {
		p.groupGone = true
		return 0, ErrDone
	}
	// Members forked into the group since are ours too, as long as an
	// anchor lived all along; checked after they are held.
	held := make(map[int]bool, len(anchors))
	for _, m := range anchors {
		held[m.pid] = true
	}
	var fresh []member
	if procs, err := listProcs(); err == nil {
		for _, q := range procs {
			if q.pgid == p.PID && !held[q.pid] {
				if m, ok := holdMember(q, p.PID); ok {
					fresh = append(fresh, m)
				}
			}
		}
	}
	proven := false
	for _, m := range anchors {
		if pidfdSignal(m.fd, 0) == nil {
			proven = true
			break
		}
	}
	if proven {
		for _, m := range fresh {
			track(p, m)
		}
		p.members = append(p.members, fresh...)
	} else {
		for _, m := range fresh {
			closePidfd(m.fd) // not proven ours: leave them be
		}
	}
	n := 0
	var firstErr error
	for _, m := range p.members {
		err := pidfdSignal(m.fd, sig)
		switch {
		case err == nil:
			n++
		case errors.Is(err, syscall.ESRCH):
		case firstErr == nil:
			firstErr = fmt.Errorf("entrypoint: signal %v to %d of group %d: %w", sig, m.pid, p.PID, err)
		}
	}
	if sig == syscall.SIGKILL {
		// Nothing is sent after SIGKILL and a dying process forks no more:
		// let the pidfds go now rather than at a Signal that may not come.
		for _, m := range p.members {
			m.release()
		}
		p.members = nil
		p.groupGone = true
	}
	if n == 0 && firstErr == nil {
		return 0, ErrDone
	}
	return n, firstErr
}

// KillTree sends SIGKILL to p's group (as Kill) and to every process p left
// behind outside it: daemons that forked twice and called setsid are
// reparented to the init and lead groups of their own, where no group
// signal reaches them. Those are found by marker, an environment entry
// ("HOTSWAP_GENERATION=3") that p was started with and that its descendants
// inherit: every live process of ours whose environment holds marker and
// that started no earlier than p, and every descendant of those. "Of ours"
// is every other process of the PID namespace when we are its init, else
// our descendants (a subreaper adopts the daemons). Each is killed through a
// pidfd, checked after opening to be the process that was listed.
//
// A descendant that cleared its environment and whose parent has exited is
// not found; neither is one whose environment we may not read.
//
// It returns how many processes it killed by marker.
func (p *Process) KillTree(marker string) (int, error) {
	if err := p.Kill(); err != nil && !errors.Is(err, ErrDone) {
		return 0, err
	}
	procs, err := listProcs()
	if err != nil {
		return 0, err
	}
	self := os.Getpid()
	ours := ourProcs(procs)
	want := []byte(marker)
	tree := map[int]bool{}
	for _, q := range procs {
		if q.pid == self || !ours[q.pid] || q.start < p.startTicks || q.state == 'Z' {
			continue
		}
		if envHas(q.pid, want) {
			tree[q.pid] = true
		}
	}
	for changed := len(tree) > 0; changed; {
		changed = false
		for _, q := range procs {
			if !tree[q.pid] && tree[q.ppid] && q.pid != self && q.start >= p.startTicks {
				tree[q.pid] = true
				changed = true
			}
		}
	}
	n := 0
	var firstErr error
	for _, q := range procs {
		if !tree[q.pid] {
			continue
		}
		fd, err := openPidfd(q.pid)
		if err != nil {
			continue // gone
		}
		if now, ok := readProc(q.pid); ok && now.start == q.start {
			err = pidfdSignal(fd, syscall.SIGKILL)
			if err == nil {
				n++
			} else if !errors.Is(err, syscall.ESRCH) && firstErr == nil {
				firstErr = fmt.Errorf("entrypoint: kill %d left by %d: %w", q.pid, p.PID, err)
			}
		}
		closePidfd(fd)
	}
	return n, firstErr
}

// envHas reports whether pid's initial environment holds entry exactly.
func envHas(pid int, entry []byte) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			i = len(b)
		}
		if bytes.Equal(b[:i], entry) {
			return true
		}
		b = b[min(i+1, len(b)):]
	}
	return false
}

// ourProcs is the set of processes an init may stop: as PID 1 every process
// in the namespace, otherwise our descendants.
func ourProcs(procs []procInfo) map[int]bool {
	self := os.Getpid()
	mine := map[int]bool{self: true}
	if IsPID1() {
		for _, p := range procs {
			mine[p.pid] = true
		}
		return mine
	}
	// Descendants: repeat until no new child of a known process appears.
	for changed := true; changed; {
		changed = false
		for _, p := range procs {
			if !mine[p.pid] && mine[p.ppid] {
				mine[p.pid] = true
				changed = true
			}
		}
	}
	return mine
}

// bootTicks is now on the clock /proc's start times use (CLOCK_BOOTTIME in
// clock ticks of 1/100 s), rounded down like theirs.
func bootTicks() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano()) / (1e9 / clockTicks)
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100
