package hotswap

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// pickRuntimeDir picks the directory for sockets: the configured one, else
// /run/hotswap, else a per-user directory under $TMPDIR, so hotswap works as
// non-root and on a read-only root filesystem with any writable mount.
//
// The configured directory must be absolute: the notify socket's path in it
// is the generation's NOTIFY_SOCKET, which must be absolute to be reached
// at all (a relative one left the first generation waiting forever).
//
// The $TMPDIR fallback lives in a directory every user can write to: the
// first user to create hotswap-UID there would own hotswap's sockets. It is
// used only when it is hotswap's own (see privateDir), else refused.
func pickRuntimeDir(want string) (string, error) {
	if err := checkRuntimeDirFlag(want); err != nil {
		return "", err
	}
	type cand struct {
		dir     string
		private bool // in a shared directory: must be hotswap's alone
	}
	cands := []cand{{dir: want}}
	if want == "" {
		cands = []cand{
			{dir: "/run/hotswap"},
			// The name DefaultControlSockets gives clients.
			{dir: filepath.Join(os.TempDir(), fmt.Sprintf("hotswap-%d", os.Getuid())), private: true},
		}
	}
	var errs []error
	var tried []string
	for _, c := range cands {
		tried = append(tried, c.dir)
		if c.private {
			if err := privateDir(c.dir); err != nil {
				errs = append(errs, err)
				continue
			}
		} else if err := os.MkdirAll(c.dir, 0o700); err != nil {
			errs = append(errs, err)
			continue
		}
		probe := filepath.Join(c.dir, fmt.Sprintf(".probe-%d", os.Getpid()))
		l, err := net.Listen("unix", probe)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s not writable: %w", c.dir, err))
			continue
		}
		l.Close()
		return c.dir, nil
	}
	return "", fmt.Errorf("no usable runtime directory for the control socket (tried %s): %w; mount an emptyDir at /run/hotswap or set --runtime-dir", strings.Join(tried, ", "), errors.Join(errs...))
}

// checkRuntimeDirFlag refuses a relative --runtime-dir: a start-up error
// even when only the control socket would live there.
func checkRuntimeDirFlag(dir string) error {
	if dir != "" && !filepath.IsAbs(dir) {
		return fmt.Errorf("--runtime-dir %q: must be an absolute path (the notify socket in it becomes the server's NOTIFY_SOCKET, which must be absolute), e.g. /run/hotswap", dir)
	}
	return nil
}

// privateDir creates dir with mode 0700, or accepts an existing one only if
// it is a real directory (not a symlink), owned by hotswap's effective uid,
// and closed to everyone else. Another user who created it first could
// otherwise replace the control socket with their own and answer
// `hotswap swap` with "swapped" while nothing swapped.
func privateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("runtime directory %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("runtime directory %s: %w", dir, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("runtime directory %s is a symlink, which hotswap never follows there (another user may have planted it); remove it or set --runtime-dir", dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("runtime directory %s exists and is not a directory; remove it or set --runtime-dir", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("runtime directory %s is owned by uid %d, not by hotswap's uid %d: another user created it first and could stand in for hotswap's sockets; remove it or set --runtime-dir", dir, st.Uid, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("runtime directory %s has mode %04o: others could replace hotswap's sockets in it; chmod 700 it, or set --runtime-dir", dir, perm)
	}
	return nil
}
