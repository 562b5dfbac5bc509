package swap

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/e2e/swaptest"
	"github.com/hotswap-dev/hotswap/hotswap"
	"golang.org/x/sys/unix"
)

// daemonArgv is the command line of the daemon generation 1 leaves behind:
// distinctive, so the test finds it among the pod's processes.
const daemonArgv = "sleep\x00617\x00"

// TestDrainedGenerationLeavesNothing: generation 1 forks a daemon that calls
// setsid (so it is in a session and process group of its own, where no
// group signal reaches it), keeps the listening socket on fd 3 and outlives
// its parent: it is reparented to PID 1. After the swap, once generation 1's
// drain deadline has passed, the daemon is gone, and generation 2 serves.
func TestDrainedGenerationLeavesNothing(t *testing.T) {
	if !swaptest.InNetns(t) {
		return
	}
	const drain = time.Second
	p := swaptest.StartPod(t, swaptest.PodConfig{
		Flags:   []string{"--drain-timeout", drain.String()},
		Prelude: `if [ "$HOTSWAP_GENERATION" = 1 ]; then setsid sh -c 'exec sleep 617' </dev/null >/dev/null 2>&1 & fi`,
	})
	daemon := 0
	for end := time.Now().Add(5 * time.Second); daemon == 0 && time.Now().Before(end); {
		for _, pid := range p.Procs() {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); bytes.Equal(b, []byte(daemonArgv)) {
				daemon = pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if daemon == 0 {
		t.Fatal("generation 1 left no daemon: the test's premise is broken")
	}
	t.Cleanup(func() { _ = syscall.Kill(daemon, syscall.SIGKILL) })
	mustServe(t, p, 1)
	if sid, _ := unix.Getsid(daemon); sid != daemon {
		t.Fatalf("daemon %d: session %d, want its own (setsid)", daemon, sid)
	}
	if pg, _ := syscall.Getpgid(daemon); pg != daemon {
		t.Fatalf("daemon %d: process group %d, want its own", daemon, pg)
	}
	if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", daemon)); !strings.HasPrefix(l, "socket:") {
		t.Fatalf("daemon %d: fd 3 is %q, want the listening socket", daemon, l)
	}

	res, err := p.Swap(ctxFor(t, 30*time.Second))
	if err != nil || res.Result != hotswap.ResultSucceeded {
		t.Fatalf("swap: %+v, %v", res, err)
	}
	swapped := time.Now()
	// Generation 1 exits as it drains: the daemon, reparented to PID 1,
	// is out of every group and tree hotswap signals by.
	for end := time.Now().Add(drain); ppidOf(daemon) != p.PID() && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("daemon %d: parent %d (PID 1 is %d) %v after the swap", daemon, ppidOf(daemon), p.PID(), time.Since(swapped).Round(time.Millisecond))
	end := swapped.Add(drain + 5*time.Second)
	for alive(daemon) && time.Now().Before(end) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(daemon) {
		t.Errorf("daemon %d forked by drained generation 1 still runs %v after the swap (drain timeout %v)", daemon, time.Since(swapped).Round(time.Millisecond), drain)
	}
	mustServe(t, p, 2)
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.Addr + "/")
	if err != nil {
		t.Fatalf("request after the drain deadline: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Hotswap-Generation") != "2" {
		t.Errorf("after the drain deadline: %s, generation %q: %s; want 200 from generation 2", resp.Status, resp.Header.Get("X-Hotswap-Generation"), body)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// ppidOf is pid's parent, 0 when it is gone.
func ppidOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}
