package sources

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/source/sourcetest"
)

// exeSum is the sha256 of what process pid executes, read through
// /proc/PID/exe: the inode the kernel runs, whatever the path now holds.
func exeSum(t *testing.T, pid int) string {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		t.Fatalf("open the executable of pid %d: %v", pid, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// replace renames a different binary (a working server, so nothing but its
// content gives it away) over path, the way `mv` inside the release root
// does.
func replace(t *testing.T, path, tag string) string {
	t.Helper()
	imp, sum := release(t, filepath.Dir(path), ".impostor-"+tag, tag, 0o755)
	if err := os.Rename(imp, path); err != nil {
		t.Fatal(err)
	}
	return sum
}

// TestRunsTheVerifiedFile (issue 13, item 2): the file verified is the file
// that runs. A binary moved over the release's path during its preflight,
// or at any time after the swap, is never what a generation executes: not
// for the swap, not for a rollback, not for a restart. Each generation's
// /proc/PID/exe must hash to the pinned sha256.
func TestRunsTheVerifiedFile(t *testing.T) {
	rel := filepath.Join(t.TempDir(), "releases")
	v1, _ := release(t, rel, "v1/hotswap", "v1", 0o755)
	v2, sum2 := release(t, rel, "v2/hotswap", "v2", 0o755)
	_, sum3 := release(t, rel, "v3/hotswap", "v3", 0o755)
	vol := filepath.Join(t.TempDir(), "config")
	os.MkdirAll(vol, 0o755)
	write := func(manifest string) {
		t.Helper()
		if _, err := sourcetest.WriteAtomic(vol, map[string]sourcetest.File{"release.yaml": {Data: []byte(manifest)}}); err != nil {
			t.Fatal(err)
		}
	}
	write("version: v1\nbinary: v1/hotswap\nargs: [serve]\n")
	p := startPod(t, []string{"--manifest", filepath.Join(vol, "release.yaml"), "--release-root", rel,
		"--release-version", "v1", "--on-exit", "restart", "--rollback-window", "30s"}, v1, "serve")

	// 1. The swap: the preflight (a nested hotswap running `sleep 2`) holds
	// the swap between verification and start; the path changes meanwhile.
	mark := p.logLen()
	nested := t.TempDir()
	write(fmt.Sprintf("version: v2\nbinary: v2/hotswap\nsha256: %s\nargs: [serve]\npreflight: [run, --runtime-dir, %s, --, /bin/sleep, \"2\"]\n", sum2, nested))
	p.waitLog(mark, 10*time.Second, "SwapStarted", eventIs("SwapStarted"))
	time.Sleep(700 * time.Millisecond) // verified, preflight running
	impostor := replace(t, v2, "impostor-v2")
	s := p.waitStatus(20*time.Second, "v2 serving", func(s hotswap.Status) bool { return s.Version == "v2" && s.Phase == hotswap.PhaseServing })
	if got := exeSum(t, s.PID); got != sum2 {
		if got == impostor {
			t.Fatalf("swap: generation %d (pid %d) runs the binary moved over %s during the preflight, not the verified one (sha256 %s, pinned %s)", s.Generation, s.PID, v2, got, sum2)
		}
		t.Fatalf("swap: generation %d runs sha256 %s, pinned %s", s.Generation, got, sum2)
	}
	t.Logf("swap: generation %d (pid %d) runs the pinned v2 although %s was replaced during the preflight", s.Generation, s.PID, v2)

	// 2. The rollback: v3 dies right after taking over; v2 comes back from
	// its open file, not from its path (which holds the impostor).
	write(fmt.Sprintf("version: v3\nbinary: v3/hotswap\nsha256: %s\nargs: [serve, --exit-after-ready, 500ms]\n", sum3))
	p.waitStatus(20*time.Second, "v3 swapped in", func(s hotswap.Status) bool { return s.Version == "v3" })
	s = p.waitStatus(20*time.Second, "v2 rolled back", func(s hotswap.Status) bool {
		return s.Version == "v2" && s.Phase == hotswap.PhaseServing && s.Generation > 2
	})
	if got := exeSum(t, s.PID); got != sum2 {
		t.Fatalf("rollback: generation %d (pid %d) runs sha256 %s, not the verified v2 %s (the path holds %s)", s.Generation, s.PID, got, sum2, impostor)
	}
	t.Logf("rollback: generation %d (pid %d) runs the pinned v2", s.Generation, s.PID)

	// 3. The restart (--on-exit restart): the serving generation is killed.
	gen := s.Generation
	if err := syscall.Kill(s.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s = p.waitStatus(20*time.Second, "v2 restarted", func(s hotswap.Status) bool {
		return s.Phase == hotswap.PhaseServing && s.Generation > gen
	})
	if got := exeSum(t, s.PID); got != sum2 || s.Version != "v2" {
		t.Fatalf("restart: generation %d (pid %d) runs %s sha256 %s, not the verified v2 %s", s.Generation, s.PID, s.Version, got, sum2)
	}
	t.Logf("restart: generation %d (pid %d) runs the pinned v2", s.Generation, s.PID)
}
