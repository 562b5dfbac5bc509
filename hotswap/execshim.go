package hotswap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// A generation that gets listeners needs LISTEN_PID set to its own PID,
// which Go cannot do between fork and exec; one that runs its verified
// open binary needs it executed by descriptor (pin.go). Both start through
// an exec shim. The tiny shim (internal/tinyshim: 1.4 KB of assembly in a
// sealed memfd, loaded once by the Runtime) costs well under a millisecond;
// where it cannot run, the self re-exec of hotswap (/proc/self/exe as
// "hotswap-exec-shim", reuseport/internal/execshim) does the same after the
// Go runtime's start and hotswap's package initializers (docs/perf-swap.md).

// Status.ExecShim values.
const (
	ExecShimTiny   = "tiny"
	ExecShimReexec = "self-reexec"
)

// initExecShim takes the Runtime's tiny shim, or notes why there is none.
func (e *Engine) initExecShim() {
	s, err := e.rt.ExecShim()
	if err != nil || s == nil {
		e.shimWhy = "no tiny shim"
		if err != nil {
			e.shimWhy = err.Error()
		}
		e.status.ExecShim = ExecShimReexec
		return
	}
	e.shim = s
	e.status.ExecShim = ExecShimTiny
}

// logExecShim says once, at start, how generations start.
func (e *Engine) logExecShim() {
	if e.shim != nil {
		e.log.Info("generations start through the tiny exec shim", "exec_shim", ExecShimTiny, "bytes", e.shim.Size())
		return
	}
	e.log.Info("generations start through hotswap's own binary as the exec shim (slower: the Go runtime starts first)", "exec_shim", ExecShimReexec, "reason", e.shimWhy)
}

// shimCommand makes spec's command start the release through the exec
// shim: files are the server's descriptors, bin its verified open binary
// or nil (run by path).
func (e *Engine) shimCommand(rel Release, bin *os.File, files []*os.File, env []string) (path string, argv []string, outFiles []*os.File, outEnv []string) {
	if e.shim != nil {
		if p, ok := shimPath(rel.Path, env); ok || bin != nil {
			c := e.shim.Command(p, bin, append([]string{rel.Path}, rel.Args...), env, files)
			return c.Path, c.Argv, c.Files, c.Env
		}
		// Not found in PATH: the self re-exec says so as a shell would.
	}
	if bin != nil {
		env = append(env, activation.ShimExecFDEnv+"="+strconv.Itoa(len(files)))
		files = append(files, bin)
	}
	path, argv = activation.ShimCommand(e.cfg.Self, rel.Path, rel.Args)
	return path, argv, files, env
}

// shimPath resolves a command without '/' in the generation's own PATH, as
// the self re-exec shim (exec.LookPath in the child) does: the tiny shim
// only execs. ok is false when it is not found, or only relative to the
// working directory (exec.ErrDot).
func shimPath(name string, env []string) (string, bool) {
	if strings.Contains(name, "/") {
		return name, true
	}
	pathEnv := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v // the last one wins, as in getenv
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		p := filepath.Join(dir, name)
		if !filepath.IsAbs(p) {
			continue
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return name, false
}

// tinyShimRefused reports whether err, from starting spec, is the kernel
// or a security policy refusing to exec the tiny shim's memfd (rather than
// fork failing): then the self re-exec would work where it does not.
func (e *Engine) tinyShimRefused(spec entrypoint.Spec, err error) bool {
	if e.shim == nil || !strings.HasPrefix(spec.Path, "/proc/self/fd/") {
		return false
	}
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EPERM, syscall.ENOEXEC, syscall.ENOENT, syscall.ENOSYS, syscall.EINVAL} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// startWithoutTinyShim starts rel through the self re-exec after the tiny
// shim's exec was refused (refused). If that start works, the tiny shim
// was the problem: generations start without it from now on, which the log
// says once. If it fails too, the error is the release's, not the shim's:
// the tiny shim stays.
func (e *Engine) startWithoutTinyShim(rel Release, first bool, refused error) (*generation, error) {
	s := e.shim
	e.shim = nil
	g, err := e.startGeneration(rel, first)
	if err != nil {
		e.shim = s
		return nil, err
	}
	_ = s.Close()
	e.log.Warn("the tiny exec shim cannot run here; generations start through hotswap's own binary from now on", "exec_shim", ExecShimReexec, "err", refused)
	e.shimWhy = fmt.Sprintf("exec refused: %v", refused)
	e.mu.Lock()
	e.status.ExecShim = ExecShimReexec
	e.mu.Unlock()
	return g, nil
}

// closeExecShim lets the memfd go when Run ends.
func (e *Engine) closeExecShim() {
	if e.shim != nil {
		_ = e.shim.Close()
	}
}
