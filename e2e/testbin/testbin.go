// Package testbin builds the hotswap binary once per test process, so e2e
// tests run the real static binary exactly as an image would.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

var (
	once    sync.Once
	binPath string
	binErr  error
)

// Hotswap returns the path of a freshly built static hotswap binary. The
// first call builds it (CGO_ENABLED=0, like the image); later calls reuse
// it. Call Cleanup from TestMain to remove it.
func Hotswap() (string, error) {
	once.Do(func() {
		dir, err := os.MkdirTemp("", "hotswap-e2e-bin-")
		if err != nil {
			binErr = err
			return
		}
		// Readable and executable by other users: tests run it as nobody too.
		_ = os.Chmod(dir, 0o755)
		binPath = filepath.Join(dir, "hotswap")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", binPath, "./cmd/hotswap")
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("build hotswap: %v\n%s", err, out)
		}
	})
	return binPath, binErr
}

// Cleanup removes the built binary.
func Cleanup() {
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
}

// repoRoot is the module root, found from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return strings.TrimSuffix(filepath.Dir(file), filepath.FromSlash("/e2e/testbin"))
}
