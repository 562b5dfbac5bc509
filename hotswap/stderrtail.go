package hotswap

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A generation's stderr goes through hotswap, so a failure can quote its
// last lines ("address already in use") in the swap result, the event and
// `hotswap status`, where an operator looks first. The copy keeps the
// server's log byte for byte on hotswap's own stderr; what it costs is one
// extra read and write per chunk (BenchmarkStderrTail: see
// docs/design.md). stdout is never touched: it stays the container's, with
// no copy at all. When hotswap's stderr is a terminal, a generation gets it
// directly (isatty, colors, job control behave as without hotswap).
//
// The pipe lives as long as the generation (and any descendant holding
// it): a running process's fd cannot be swapped back to the original.

// tailSize bounds the bytes kept per generation.
const tailSize = 4096

// stderrTail copies a generation's stderr to hotswap's and keeps its end.
type stderrTail struct {
	mu   sync.Mutex
	buf  []byte
	done chan struct{} // closed at EOF: every writer is gone
}

// newStderrTail returns the write end to hand the child and the tail that
// copies the read end to dst; nil, nil when dst is a terminal or no pipe
// can be made (the child then writes to dst directly).
func newStderrTail(dst *os.File) (*os.File, *stderrTail) {
	if _, err := unix.IoctlGetTermios(int(dst.Fd()), unix.TCGETS); err == nil {
		return nil, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil
	}
	t := &stderrTail{done: make(chan struct{})}
	go t.copy(r, dst)
	return w, t
}

func (t *stderrTail) copy(r io.ReadCloser, dst io.Writer) {
	defer close(t.done)
	defer r.Close()
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			_, _ = dst.Write(chunk[:n]) // a lost log line must not stop the copy
			t.keep(chunk[:n])
		}
		if err != nil {
			return
		}
	}
}

func (t *stderrTail) keep(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(p) >= tailSize {
		t.buf = append(t.buf[:0], p[len(p)-tailSize:]...)
		return
	}
	if over := len(t.buf) + len(p) - tailSize; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
}

// last returns up to n last lines, joined by " | " for a one-line reason.
// It waits up to wait for the copy to reach EOF, so a generation that
// wrote and exited is quoted in full.
func (t *stderrTail) last(n int, wait time.Duration) string {
	if t == nil {
		return ""
	}
	select {
	case <-t.done:
	case <-time.After(wait):
	}
	t.mu.Lock()
	b := bytes.TrimRight(t.buf, "\n")
	t.mu.Unlock()
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, " | "))
}
