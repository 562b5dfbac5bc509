package pid1

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotswap-dev/hotswap/e2e/testbin"
	"github.com/hotswap-dev/hotswap/entrypoint"
)

// helperArg, as argv[1], makes the test binary a helper process instead of
// a test run: `pid1.test pid1-helper NAME ARGS...`. Helpers are chosen by
// argv, not by the environment, because hotswap passes its environment on to
// its children.
const helperArg = "pid1-helper"

var (
	// hotswapBin is the static hotswap binary under test.
	hotswapBin string
	// helperBin is a copy of this test binary that any user may run.
	helperBin string
)

func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == helperArg {
		os.Exit(runHelper(os.Args[2], os.Args[3:]))
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e/pid1: needs root (PID and mount namespaces, setuid to nobody); skipping")
		return 0
	}
	var err error
	hotswapBin, err = testbin.Hotswap()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer testbin.Cleanup()
	// A copy of ourselves in a directory everybody can enter: the
	// non-root tests run helpers as nobody.
	dir, err := os.MkdirTemp("", "pid1-helper-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	_ = os.Chmod(dir, 0o755)
	helperBin = filepath.Join(dir, "helper")
	if err := copyFile(os.Args[0], helperBin, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func runHelper(name string, args []string) int {
	switch name {
	case "nsexec":
		return nsExec(args, false)
	case "nsinit":
		return nsExec(args, true)
	case "child":
		return child(args)
	case "spawn-daemon":
		return spawnDaemon(args)
	case "spawn-orphans":
		return spawnOrphans(args)
	case "stamp":
		return stamp(args)
	}
	fmt.Fprintf(os.Stderr, "helper %q: unknown\n", name)
	return 2
}

// nsExec is the first process of a new PID and mount namespace. It makes
// its mounts private, mounts a /proc of the namespace, optionally makes the
// root read-only (keeping rw=DIR bind mounts writable) and mounts tmpfs=DIR,
// optionally drops to uid=N, then either becomes hotswap (exec: hotswap is
// PID 1) or, as init, starts hotswap as its child and waits for that child
// only, never reaping anything else: orphans that reach this init stay
// zombies, so a hotswap that failed as a subreaper is caught.
//
//	nsexec|nsinit parent-mntns=X [ro] [rw=DIR]... [tmpfs=DIR]... [uid=N] [memfd-noexec] -- HOTSWAP ARGS...
func nsExec(args []string, asInit bool) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "nsexec: "+format+"\n", a...)
		return 120
	}
	var parentNS string
	var ro bool
	var rw, tmpfs []string
	uid := -1
	memfdNoexec := false
	for len(args) > 0 && args[0] != "--" {
		k, v, _ := strings.Cut(args[0], "=")
		switch k {
		case "parent-mntns":
			parentNS = v
		case "ro":
			ro = true
		case "rw":
			rw = append(rw, v)
		case "tmpfs":
			tmpfs = append(tmpfs, v)
		case "uid":
			uid, _ = strconv.Atoi(v)
		case "memfd-noexec":
			memfdNoexec = true
		default:
			return fail("unknown option %q", args[0])
		}
		args = args[1:]
	}
	if len(args) < 2 {
		return fail("no command after --")
	}
	argv := args[1:]
	// Never touch the mounts of the machine: only go on in a namespace of
	// our own.
	if os.Getpid() != 1 {
		return fail("not PID 1 of a new PID namespace (pid %d)", os.Getpid())
	}
	if ns, err := os.Readlink("/proc/self/ns/mnt"); err != nil || ns == parentNS || parentNS == "" {
		return fail("not in a mount namespace of our own (%q, parent %q, %v)", ns, parentNS, err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail("make mounts private: %v", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fail("mount /proc: %v", err)
	}
	if memfdNoexec {
		// Per PID namespace (Linux >= 6.3): only this test's hotswap may
		// not create executable memfds.
		if err := os.WriteFile("/proc/sys/vm/memfd_noexec", []byte("2"), 0); err != nil {
			return fail("vm.memfd_noexec=2: %v", err)
		}
	}
	for _, d := range rw {
		if err := unix.Mount(d, d, "", unix.MS_BIND, ""); err != nil {
			return fail("bind %s: %v", d, err)
		}
	}
	for _, d := range tmpfs {
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=16m"); err != nil {
			return fail("tmpfs %s: %v", d, err)
		}
	}
	if ro {
		// Read-only for this mount of / in this namespace only, as
		// Kubernetes' readOnlyRootFilesystem: the machine's / stays rw.
		if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return fail("remount / read-only: %v", err)
		}
	}
	var cred *syscall.Credential
	if uid >= 0 {
		if asInit {
			cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}
		} else {
			if err := syscall.Setgroups(nil); err != nil {
				return fail("setgroups: %v", err)
			}
			if err := syscall.Setresgid(uid, uid, uid); err != nil {
				return fail("setresgid: %v", err)
			}
			if err := syscall.Setresuid(uid, uid, uid); err != nil {
				return fail("setresuid: %v", err)
			}
		}
	}
	if !asInit {
		if f := os.Getenv("PID1_T0_FILE"); f != "" {
			// The start-to-exec benchmark times hotswap from here.
			_ = os.Unsetenv("PID1_T0_FILE")
			var ts unix.Timespec
			_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
			_ = os.WriteFile(f, []byte(strconv.FormatInt(ts.Nano(), 10)), 0o666)
		}
		err := syscall.Exec(argv[0], argv, os.Environ())
		return fail("exec %s: %v", argv[0], err)
	}
	// An init that waits for hotswap only. SIGTERM and friends from the
	// test go to hotswap directly, not to us.
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{
		Env: os.Environ(), Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{Credential: cred},
	})
	if err != nil {
		return fail("start %s: %v", argv[0], err)
	}
	for {
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fail("wait: %v", err)
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// recorded are the signals a child helper records.
var recorded = []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGUSR1,
	syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGWINCH, syscall.SIGALRM, syscall.SIGPWR, syscall.Signal(36)}

// child is the supervised process of most tests. It appends to its log:
//
//	start gen=G version=V pid=P ppid=PP uid=U
//	sig NAME          for each signal received
//
// Options:
//
//	log=PATH          the log (required)
//	term=exit:N       on SIGTERM: record, exit N (default exit:0)
//	term=ignore       on SIGTERM: record, go on
//	anyexit           on the first signal: record, exit 100+signal number
//	exit=N            exit N at once after start
//	daemon=LOG        leave a setsid daemon behind (a child helper with
//	                  log LOG and daemon-term as its term=), reparented to
//	                  hotswap
//	orphans=N         leave N orphans behind, check they are reaped by our
//	                  parent (hotswap) and, as PID 1's child, that no zombie
//	                  is left in the namespace; exit 0 if so, 1 if not
func child(args []string) int {
	var logPath, term, daemonLog, daemonTerm = "", "exit:0", "", "exit:0"
	anyExit, exitNow, orphans := false, -1, 0
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "log":
			logPath = v
		case "term":
			term = v
		case "anyexit":
			anyExit = true
		case "exit":
			exitNow, _ = strconv.Atoi(v)
		case "daemon":
			daemonLog = v
		case "daemon-term":
			daemonTerm = v
		case "orphans":
			orphans, _ = strconv.Atoi(v)
		}
	}
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o666)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 99
	}
	logf := func(format string, a ...any) { fmt.Fprintf(f, format+"\n", a...) }
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, recorded...)
	if daemonLog != "" {
		c := exec.Command(os.Args[0], helperArg, "spawn-daemon", "log="+daemonLog, "term="+daemonTerm)
		if out, err := c.CombinedOutput(); err != nil {
			logf("daemon failed: %v %s", err, out)
			return 98
		}
	}
	logf("start gen=%s version=%s pid=%d ppid=%d uid=%d listen_pid=%s", os.Getenv("HOTSWAP_GENERATION"), os.Getenv("HOTSWAP_VERSION"), os.Getpid(), os.Getppid(), os.Getuid(), os.Getenv("LISTEN_PID"))
	if exitNow >= 0 {
		return exitNow
	}
	if orphans > 0 {
		return leaveOrphans(orphans, logf)
	}
	for s := range sigs {
		sig := s.(syscall.Signal)
		logf("sig %s", entrypoint.SignalName(sig))
		switch {
		case anyExit:
			return 100 + int(sig)
		case sig == syscall.SIGTERM && term != "ignore":
			n, _ := strconv.Atoi(strings.TrimPrefix(term, "exit:"))
			return n
		}
	}
	return 0
}

// spawnDaemon starts a child helper in a new session and exits, so the
// daemon is reparented to the nearest subreaper: hotswap.
func spawnDaemon(args []string) int {
	c := exec.Command(os.Args[0], append([]string{helperArg, "child"}, args...)...)
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "spawn-daemon:", err)
		return 1
	}
	return 0
}

// spawnOrphans starts N short-lived processes, writes their PIDs to stdout
// and exits without waiting: half exit at once (zombies when we exit), half
// live a little longer (reparented alive).
func spawnOrphans(args []string) int {
	n, _ := strconv.Atoi(args[0])
	attr := &syscall.ProcAttr{Env: []string{}, Files: []uintptr{^uintptr(0), ^uintptr(0), 2}}
	var b strings.Builder
	for i := range n {
		argv := []string{"/bin/true"}
		if i%2 == 1 {
			argv = []string{"/bin/sleep", "0.3"}
		}
		pid, err := syscall.ForkExec(argv[0], argv, attr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "spawn-orphans:", err)
			return 1
		}
		fmt.Fprintf(&b, "%d\n", pid)
	}
	// Let the /bin/true ones die first, so some orphans arrive as zombies.
	time.Sleep(50 * time.Millisecond)
	fmt.Print(b.String())
	return 0
}

func leaveOrphans(n int, logf func(string, ...any)) int {
	out, err := exec.Command(os.Args[0], helperArg, "spawn-orphans", strconv.Itoa(n)).Output()
	if err != nil {
		logf("orphans: spawn: %v", err)
		return 1
	}
	var pids []int
	for _, l := range strings.Fields(string(out)) {
		pid, _ := strconv.Atoi(l)
		pids = append(pids, pid)
	}
	if len(pids) != n {
		logf("orphans: spawned %d, want %d", len(pids), n)
		return 1
	}
	// Every orphan still there must now be hotswap's child, and all must go
	// (be reaped) soon.
	hotswap, bad := os.Getppid(), 0
	for _, pid := range pids {
		if st, ppid := procStat(pid); st != 0 && st != 'Z' && ppid != hotswap {
			if bad++; bad <= 3 {
				logf("orphans: %d has parent %d, want hotswap %d", pid, ppid, hotswap)
			}
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	left := pids
	for len(left) > 0 && time.Now().Before(deadline) {
		var still []int
		for _, pid := range left {
			if st, _ := procStat(pid); st != 0 {
				still = append(still, pid)
			}
		}
		left = still
		if len(left) > 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if len(left) > 0 {
		st, ppid := procStat(left[0])
		logf("orphans: %d of %d never reaped, e.g. %d state %c parent %d", len(left), n, left[0], st, ppid)
		bad++
	}
	// In a namespace of our own, nothing may be a zombie now.
	if hotswap == 1 || os.Getenv("PID1_NS") != "" {
		zs := zombies()
		if len(zs) > 0 {
			logf("orphans: zombies left in the namespace: %v", zs)
			bad++
		}
		logf("orphans: zombies in /proc: %d", len(zs))
	}
	logf("orphans: %d spawned, %d problems", n, bad)
	if bad > 0 {
		return 1
	}
	return 0
}

// procStat returns the state and parent of pid from /proc (0 if gone).
func procStat(pid int) (byte, int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return f[0][0], ppid
}

// zombies lists the PIDs in state Z in /proc.
func zombies() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, _ := procStat(pid); st == 'Z' {
			out = append(out, pid)
		}
	}
	return out
}

// stamp writes CLOCK_MONOTONIC (ns) to the file in args[0] and exits.
func stamp(args []string) int {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	if err := os.WriteFile(args[0], []byte(strconv.FormatInt(ts.Nano(), 10)), 0o666); err != nil {
		return 1
	}
	return 0
}
