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
		binErr = Static(binPath, "./cmd/hotswap")
	})
	return binPath, binErr
}

// Static builds pkg (a path from the module root, e.g. "./cmd/hotswap") to
// out as the image does: CGO_ENABLED=0, -trimpath, stripped. extra are more
// `go build` flags, e.g. "-tags=nokube".
func Static(out, pkg string, extra ...string) error {
	args := append([]string{"build", "-trimpath", "-ldflags=-s -w", "-o", out}, extra...)
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", pkg, err, msg)
	}
	return nil
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
