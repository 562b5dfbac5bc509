package pid1

import (
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/internal/tinyshim"
)

// TestExecShim: hotswap as PID 1 with a listener starts its generations
// through the tiny exec shim (internal/tinyshim); where memfds may not be
// executed (vm.memfd_noexec=2, set in the test's PID namespace only) it
// starts them through its own binary instead, and says why. Either way every
// generation's LISTEN_PID is its own PID.
func TestExecShim(t *testing.T) {
	if _, err := os.Stat("/proc/sys/vm/memfd_noexec"); err != nil {
		t.Skipf("no vm.memfd_noexec (Linux < 6.3): %v", err)
	}
	tiny := "exec_shim=tiny"
	if !tinyshim.Built() {
		tiny = "exec_shim=self-reexec"
	}
	for _, tc := range []struct {
		name    string
		noexec  bool
		want    string
		without string
	}{
		{"tiny", false, tiny, "cannot run here"},
		{"memfd-noexec", true, `exec_shim=self-reexec reason="tinyshim: memfd_create: permission denied"`, "exec_shim=tiny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			log := filepath.Join(tempDir(t), "child.log")
			args := append([]string{"--listen", "http=tcp://127.0.0.1:0", "--ready", "delay=10ms"}, childCmd("log="+log)...)
			r := startHotswap(t, opts{mode: asPID1, memfdNoexec: tc.noexec}, args...)
			waitLog(t, r, log, "start gen=1", 10*time.Second)
			r.signal(syscall.SIGUSR2)
			text := waitLog(t, r, log, "start gen=2", 10*time.Second)
			starts := regexp.MustCompile(`start gen=\d+ .*pid=(\d+) ppid=\d+ uid=\d+ listen_pid=(\d*)`).FindAllStringSubmatch(text, -1)
			if len(starts) != 2 {
				t.Fatalf("want two generations:\n%s", text)
			}
			for _, m := range starts {
				if m[1] != m[2] {
					t.Errorf("generation with pid %s saw LISTEN_PID=%q:\n%s", m[1], m[2], text)
				}
			}
			waitOutput(t, r, tc.want, 5*time.Second)
			r.signal(syscall.SIGTERM)
			if code := r.wait(15 * time.Second); code != 0 {
				t.Errorf("hotswap exited %d, want 0\n%s", code, r.out)
			}
			if o := r.out.String(); regexp.MustCompile(regexp.QuoteMeta(tc.without)).MatchString(o) {
				t.Errorf("hotswap output has %q:\n%s", tc.without, o)
			}
		})
	}
}
