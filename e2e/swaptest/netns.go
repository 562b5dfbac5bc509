package swaptest

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/e2e/netns"
)

// envInner names the test that this process runs inside its own network
// namespace; envBin passes the hotswap binary built by the outer process.
const (
	envInner = "HOTSWAP_SWAP_INNER"
	envBin   = "HOTSWAP_SWAP_BIN"
)

// InNetns makes t run in a network namespace of its own. In the outer
// process it re-runs this test (a top-level test or benchmark) under
// `unshare --net`, reports the inner run's outcome and returns false: the
// caller returns at once. In the inner process it brings loopback up and
// returns true: the caller runs the test body.
func InNetns(t testing.TB) bool {
	t.Helper()
	name := t.Name()
	if os.Getenv(envInner) == name {
		if err := netns.LoopbackUp(); err != nil {
			t.Fatalf("bring loopback up in the test's network namespace: %v", err)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: PID and network namespaces")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare(1) (util-linux)")
	}
	bin := Bin(t)
	args := []string{"--net", "--", os.Args[0], "-test.count=1", "-test.v"}
	_, isBench := t.(*testing.B)
	if isBench {
		args = append(args, "-test.run=^$", "-test.bench=^"+name+"$", "-test.benchtime=1x")
	} else {
		args = append(args, "-test.run=^"+name+"$")
	}
	if d, ok := deadline(t); ok {
		args = append(args, "-test.timeout="+time.Until(d).Round(time.Second).String())
	}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), envInner+"="+name, envBin+"="+bin)
	var out bytes.Buffer
	if isBench || testing.Verbose() {
		// Long runs: show progress as it happens.
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	} else {
		cmd.Stdout, cmd.Stderr = &out, &out
	}
	err := cmd.Run()
	if err != nil {
		t.Fatalf("%s in its own network namespace: %v\n%s", name, err, Indent(out.String()))
	}
	if strings.Contains(out.String(), "--- SKIP") {
		t.Skipf("inner run skipped:\n%s", Indent(out.String()))
	}
	return false
}

func deadline(t testing.TB) (time.Time, bool) {
	if tt, ok := t.(*testing.T); ok {
		return tt.Deadline()
	}
	return time.Time{}, false
}

func Indent(s string) string {
	return "    | " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    | ")
}

// SetMigrateReq sets net.ipv4.tcp_migrate_req in the current network
// namespace: /proc/sys/net shows the namespace of the process that opens it,
// which here is the test's own.
func SetMigrateReq(t testing.TB, on bool) {
	t.Helper()
	if os.Getenv(envInner) == "" {
		t.Fatal("SetMigrateReq outside the test's own network namespace: refusing to touch the host's")
	}
	v := "0"
	if on {
		v = "1"
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/tcp_migrate_req", []byte(v), 0o644); err != nil {
		t.Fatalf("sysctl net.ipv4.tcp_migrate_req=%s: %v", v, err)
	}
}
