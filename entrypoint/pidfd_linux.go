package entrypoint

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A pidfd names one process, never a number: a signal sent through it can
// only reach that process, and waitid(P_PIDFD) only reaps that child. This
// file holds the pidfd plumbing the reaper and the group signalling share.

// childInfo is the part of the kernel's siginfo_t that waitid fills in for
// a child: the same layout as Go's own in syscall/exec_linux.go. It is cast
// to *unix.Siginfo, which has the same size but hides the pid.
type childInfo struct {
	Signo int32
	_     struct {
		Errno int32
		Code  int32
	}
	_ [is64bit]int32

	Pid    int32
	Uid    uint32
	Status int32

	_ [128 - (6+is64bit)*4]byte
}

const is64bit = ^uint(0) >> 63

var _ [unsafe.Sizeof(unix.Siginfo{}) - unsafe.Sizeof(childInfo{})]byte // same size
var _ [unsafe.Sizeof(childInfo{}) - unsafe.Sizeof(unix.Siginfo{})]byte

// waitidPeek returns a child that has exited without reaping it (WNOWAIT),
// 0 when none has; idtype/id select which children, as in waitid(2).
func waitidPeek(idtype, id int) (int, error) {
	for {
		var info childInfo
		err := unix.Waitid(idtype, id, (*unix.Siginfo)(unsafe.Pointer(&info)), unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err == syscall.EINTR {
			continue
		}
		return int(info.Pid), err
	}
}

// ownFDs are the pidfds this package holds itself. pidfdHolders leaves them
// out: a pidfd of ours on an orphan (a group member we may have to signal)
// must not make the orphan look like a child someone else will wait for.
// An fd is registered right after it is opened and unregistered before it is
// closed, so its number can never name another owner's pidfd while listed.
var ownFDs struct {
	sync.Mutex
	m map[int]struct{}
}

// openPidfd opens and registers a pidfd for pid.
func openPidfd(pid int) (int, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, err
	}
	ownFDs.Lock()
	if ownFDs.m == nil {
		ownFDs.m = make(map[int]struct{})
	}
	ownFDs.m[fd] = struct{}{}
	ownFDs.Unlock()
	return fd, nil
}

// closePidfd unregisters and closes a pidfd from openPidfd.
func closePidfd(fd int) {
	ownFDs.Lock()
	delete(ownFDs.m, fd)
	ownFDs.Unlock()
	_ = unix.Close(fd)
}

// pidfdSignal sends sig through a pidfd; ESRCH means the process is gone
// (a zombie still takes signals, and ignores them).
func pidfdSignal(fd int, sig syscall.Signal) error {
	return unix.PidfdSendSignal(fd, sig, nil, 0)
}

// pidfdsWork reports whether pidfds work here the way the os package checks
// it (os.checkPidfd): only then does os/exec hold a pidfd on each child it
// starts until its Wait has reaped it, which is how the reaper tells those
// children from orphans.
func pidfdsWork() bool {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var info childInfo
	err = unix.Waitid(unix.P_PIDFD, fd, (*unix.Siginfo)(unsafe.Pointer(&info)), unix.WEXITED|unix.WNOHANG, nil)
	if err != syscall.ECHILD {
		return false
	}
	return unix.PidfdSendSignal(fd, 0, nil, 0) == nil
}

// pidfdListings counts pidfdHolders calls: each reads every descriptor of
// the process, which the reaper must not do on every wake-up (a test checks).
var pidfdListings atomic.Uint64

// pidfdHolders lists the processes that some pidfd in this process, other
// than this package's own, refers to. Go's os package (os/exec, and
// os.StartProcess) opens one on every child with clone(CLONE_PIDFD), before
// the child runs, and closes it only after its Wait has reaped the child, or
// on Release: a child listed here has an owner that wants its exit status.
func pidfdHolders() map[int]bool {
	pidfdListings.Add(1)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	ownFDs.Lock()
	own := make(map[int]bool, len(ownFDs.m))
	for fd := range ownFDs.m {
		own[fd] = true
	}
	ownFDs.Unlock()
	var out map[int]bool
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || own[fd] {
			continue
		}
		// "anon_inode:[pidfd]", or "pidfd:[ino]" where pidfs is the backing.
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || !strings.Contains(link, "pidfd") {
			continue
		}
		b, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue
		}
		if i := bytes.Index(b, []byte("\nPid:\t")); i >= 0 {
			rest := b[i+6:]
			if j := bytes.IndexByte(rest, '\n'); j >= 0 {
				rest = rest[:j]
			}
			if pid, err := strconv.Atoi(string(rest)); err == nil && pid > 0 {
				if out == nil {
					out = make(map[int]bool)
				}
				out[pid] = true
			}
		}
	}
	return out
}

// children lists our direct children, threads' children included (a child
// belongs to the thread that forked it, and an orphan to whichever thread
// adopted it). /proc/PID/task/TID/children needs CONFIG_PROC_CHILDREN;
// without it the whole of /proc is read.
func children() []int {
	tasks, err := os.ReadDir("/proc/self/task")
	if err == nil {
		var out []int
		ok := true
		for _, t := range tasks {
			b, err := readWhole("/proc/self/task/" + t.Name() + "/children")
			if err != nil {
				if os.IsNotExist(err) {
					ok = false
					break
				}
				continue // the thread exited meanwhile: its children moved on
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					out = append(out, pid)
				}
			}
		}
		if ok {
			return out
		}
	}
	procs, err := listProcs()
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, p := range procs {
		if p.ppid == self {
			out = append(out, p.pid)
		}
	}
	return out
}

// readWhole reads a /proc file with reads as large as it may need, so that
// a list the kernel builds as it is read is read in as few passes as
// possible: each pass may skip an entry when the list changed meanwhile.
func readWhole(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	n := 0
	for {
		m, err := f.Read(buf[n:])
		n += m
		if err != nil || m == 0 {
			return buf[:n], nil
		}
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
	}
}
