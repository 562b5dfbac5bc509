package hotswap

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Binary is a release's executable opened once. Every check reads this open
// file, and every process started for the release — its preflight, its
// generation, a restart, a rollback — executes it through the descriptor
// (see docs/security.md), so a file renamed or replaced at the path after
// verification is never what runs: what was verified is the inode that runs.
//
// What the descriptor cannot stop is a write into the same inode by someone
// allowed to write it; the verifier therefore refuses files and directories
// that anyone but root and hotswap's own user could change.
//
// A Binary is safe for concurrent use. Close it when no generation may be
// started from it any more (the engine keeps the serving and the previous
// release's binaries open for restarts and rollbacks).
type Binary struct {
	f      *os.File
	path   string // the opened file's path, symlinks resolved, as the kernel names it
	asked  string // the path it was opened by
	info   os.FileInfo
	script bool // starts with "#!"
}

// OpenBinary opens the executable at path (absolute, or relative to the
// working directory; symlinks are followed) for verification and execution.
// The error is a *RejectError (check "exists" or "regular").
func OpenBinary(path string) (*Binary, error) {
	reject := func(check, p, reason string, err error) (*Binary, error) {
		return nil, &RejectError{Check: check, Path: p, Reason: reason, Err: err}
	}
	if path == "" {
		return reject("exists", "(no path)", "the release names no binary", nil)
	}
	// O_NONBLOCK: a FIFO planted at the path must not hang the swap in
	// open(2); it has no effect on a regular file. Go adds O_CLOEXEC.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return reject("exists", path, "no such file (or a symlink on the way points nowhere); is the volume mounted and the copy finished?", err)
		}
		return reject("exists", path, err.Error(), err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return reject("exists", path, err.Error(), err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return reject("regular", path, fmt.Sprintf("not a regular file (%s)", fi.Mode().Type()), nil)
	}
	b := &Binary{f: f, asked: path, info: fi}
	// The kernel's name for the opened inode, not a second walk of the
	// path: a symlink flipped after the open cannot move what is checked
	// against --release-root.
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(b.fd()))
	if err != nil || !filepath.IsAbs(real) {
		real, err = filepath.EvalSymlinks(path)
		if err == nil {
			real, err = filepath.Abs(real)
		}
		if err != nil {
			f.Close()
			return reject("exists", path, err.Error(), err)
		}
	}
	b.path = real
	var magic [2]byte
	if n, _ := f.ReadAt(magic[:], 0); n == 2 && string(magic[:]) == "#!" {
		b.script = true
	}
	return b, nil
}

// fd is the descriptor number. Never (*os.File).Fd, which would make the
// descriptor blocking; a regular file does not care, but rawFD is the habit.
func (b *Binary) fd() int {
	fd := -1
	if sc, err := b.f.SyscallConn(); err == nil {
		_ = sc.Control(func(u uintptr) { fd = int(u) })
	}
	return fd
}

// Path is the opened file's path with symlinks resolved, as it was named
// when it was opened.
func (b *Binary) Path() string { return b.path }

// File is the open file. Pass it to a child (entrypoint.Spec.Files) to
// execute exactly this inode; do not close it.
func (b *Binary) File() *os.File { return b.f }

// Script reports whether the file is a #! script. A script cannot be run
// through a close-on-exec descriptor (its interpreter opens /dev/fd/N after
// the exec closed it), so it is run by path: only a trusted release (the
// command line's, from the image) may be a script.
func (b *Binary) Script() bool { return b.script }

// Info is the open file's fstat at open time.
func (b *Binary) Info() os.FileInfo { return b.info }

// Close closes the file. Closing twice is harmless.
func (b *Binary) Close() error {
	if b == nil {
		return nil
	}
	err := b.f.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// reader reads the whole file from its start without moving the shared
// file offset, so concurrent readers (a hash, an ELF parse) never interfere.
func (b *Binary) reader() io.Reader { return io.NewSectionReader(b.f, 0, b.info.Size()) }

// writableBy describes who besides root and hotswap's own user could change
// the file or directory fi describes, or "" when nobody could. With
// stickyOK, a directory with the sticky bit (/tmp) passes: others may add
// entries there but not rename or remove ours, and the entry on the path is
// checked on its own.
func writableBy(fi os.FileInfo, stickyOK bool) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "" // not a Unix file system; nothing to say
	}
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Sprintf("owned by uid %d, neither root nor hotswap's uid %d", st.Uid, os.Geteuid())
	}
	perm := fi.Mode().Perm()
	if stickyOK && fi.IsDir() && fi.Mode()&os.ModeSticky != 0 {
		return ""
	}
	switch {
	case perm&0o002 != 0:
		return fmt.Sprintf("world-writable (mode %04o)", perm)
	case perm&0o020 != 0:
		return fmt.Sprintf("group-writable by gid %d (mode %04o)", st.Gid, perm)
	}
	return ""
}

// checkUnwritable refuses a file (already stat'ed as fi) that someone other
// than root and hotswap's user could change, directly or, when paths are
// given, by replacing it in a directory on the way to it: every directory
// above each path (a symlinked directory is checked as what it points to).
// It returns a reason for the operator, or "".
func checkUnwritable(fi os.FileInfo, paths ...string) string {
	if why := writableBy(fi, false); why != "" {
		return "the file is " + why + ": whoever can write it could change it after it was verified; chown root and chmod go-w it"
	}
	seen := map[string]bool{}
	for _, p := range paths {
		if p == "" {
			continue
		}
		p, err := filepath.Abs(p)
		if err != nil {
			continue
		}
		for d := filepath.Dir(p); ; d = filepath.Dir(d) {
			if !seen[d] {
				seen[d] = true
				if di, err := os.Stat(d); err == nil {
					if why := writableBy(di, true); why != "" {
						return fmt.Sprintf("directory %s on its path is %s: whoever can write it can put another file at the path; chown root and chmod go-w it (or use the sticky bit)", d, why)
					}
				}
			}
			if d == "/" || d == "." {
				break
			}
		}
	}
	return ""
}

// firstExisting is p or its nearest ancestor that exists.
func firstExisting(p string) string {
	for {
		if _, err := os.Lstat(p); err == nil || p == "/" || p == "." {
			return p
		}
		p = filepath.Dir(p)
	}
}
