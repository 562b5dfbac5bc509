package hotswap

import (
	"crypto/rand"
	"encoding/hex"
	"os"
)

// What was verified is what runs (docs/security.md). The engine opens a
// release's binary once — before its verification, in the swap's
// background step — and keeps the open file in the Release (Release.bin)
// for as long as the release may still be started: while it is current or
// previous, or a generation of it lives. Every generation of the release,
// its restarts and its rollbacks, execute that open file through the exec
// shim (execSpec), never the path again. A forced swap (signal, `hotswap
// swap`) opens the path afresh: picking up a changed file is its purpose.

// pinFirst opens the command line's binary for its generations. A binary
// that cannot be opened is left to the start by path, whose error says what
// a shell would (127, 126).
func (e *Engine) pinFirst() {
	if e.current.bin != nil {
		return
	}
	r, err := resolveRelease(e.current)
	if err != nil {
		return
	}
	b, err := e.rt.OpenBinary(r.Path)
	if err != nil {
		e.log.Debug("cannot open the command's binary; starting it by path", "path", r.Path, "err", err)
		return
	}
	e.current.bin = b
	e.keepBinary(b)
}

// keepBinary makes the engine responsible for closing b (sweepBinaries).
func (e *Engine) keepBinary(b *Binary) {
	if b == nil {
		return
	}
	if e.bins == nil {
		e.bins = map[*Binary]bool{}
	}
	e.bins[b] = true
}

// sweepBinaries closes every binary no release that may still start
// refers to: not current, not previous, not a live generation's. It runs
// after every event, so a rejected or replaced release's file (and the disk
// space of a deleted one) is let go at once.
func (e *Engine) sweepBinaries() {
	if len(e.bins) == 0 {
		return
	}
	used := map[*Binary]bool{e.current.bin: true, e.previous.bin: true}
	for _, g := range e.gens {
		used[g.release.bin] = true
	}
	for b := range e.bins {
		if !used[b] {
			_ = b.Close()
			delete(e.bins, b)
		}
	}
}

// closeBinaries closes them all, when Run ends.
func (e *Engine) closeBinaries() {
	for b := range e.bins {
		_ = b.Close()
	}
	e.bins = nil
}

// pinnedBinary is rel's open binary for the exec shim to run (the shim
// gets it as a descriptor and executes it, with argv[0] still the
// release's path), or nil to run rel by path. A script runs by path (its
// interpreter must reopen it); only the command line's trusted release may
// be one.
func (e *Engine) pinnedBinary(rel Release) *os.File {
	if rel.bin == nil || rel.bin.Script() {
		return nil
	}
	return rel.bin.File()
}

// instanceToken tells this hotswap's socket files from those of another
// hotswap sharing the runtime directory (two containers of a pod with one
// emptyDir, PID 1 in each): PIDs alone collide.
func instanceToken() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
