package hotswap

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

func TestStderrTailKeepsTheEnd(t *testing.T) {
	tail := &stderrTail{done: make(chan struct{})}
	close(tail.done)
	for i := range 2000 {
		tail.keep([]byte(strings.Repeat("x", i%7) + "\n"))
	}
	tail.keep([]byte("panic: boom\ngoroutine 1 [running]:\nmain.main()\n"))
	if got := tail.last(2, 0); got != "goroutine 1 [running]: | main.main()" {
		t.Fatalf("last 2 lines %q", got)
	}
	if len(tail.buf) > tailSize {
		t.Fatalf("kept %d bytes, bound %d", len(tail.buf), tailSize)
	}
	big := strings.Repeat("y", 3*tailSize) + "\nend"
	tail.keep([]byte(big))
	if got := tail.last(1, 0); got != "end" || len(tail.buf) != tailSize {
		t.Fatalf("after a write bigger than the tail: %q, %d bytes", got, len(tail.buf))
	}
	var none *stderrTail
	if none.last(5, 0) != "" {
		t.Fatal("no tail must quote nothing")
	}
}

// A real first generation that binds the port hotswap holds: its stderr is
// quoted and the hint names the fix.
func TestRealFirstGenerationAddressInUseHint(t *testing.T) {
	events := make(chan Event, 64)
	cfg := Config{
		Release:    Release{Path: "/bin/sh", Args: []string{"-c", "echo 'listen tcp :8080: bind: address already in use' >&2; exit 1"}},
		Ready:      ReadyCheck{Kind: ReadyDelay, Delay: time.Minute},
		Listeners:  []ListenSpec{{Name: "http", URL: "tcp://127.0.0.1:0"}},
		RuntimeDir: t.TempDir(),
		Observers:  []Observer{ObserverFunc(func(e Event) { events <- e })},
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	e, err := New(cfg, reaper(t))
	if err != nil {
		t.Fatal(err)
	}
	code := make(chan int, 1)
	go func() { code <- e.run(context.Background(), nil) }()
	for ev := range events {
		if ev.Type != ChildExited {
			continue
		}
		for _, want := range []string{"exited before it was ever ready: exit status 1", "last stderr: listen tcp :8080: bind: address already in use", "package reuseport", "--mode reuseport"} {
			if !strings.Contains(ev.Message, want) {
				t.Errorf("ChildExited %q lacks %q", ev.Message, want)
			}
		}
		break
	}
	go func() {
		for range events {
		}
	}()
	if c := <-code; c != 1 {
		t.Fatalf("exit code %d, want 1", c)
	}
}

// BenchmarkStderrTail is the cost of quoting a generation's stderr: a
// writer pushing 64 KiB chunks to /dev/null directly, and through the tail
// (pipe, copy goroutine, ring). Run:
//
//	go test -run '^$' -bench StderrTail -benchtime 2s ./hotswap
func BenchmarkStderrTail(b *testing.B) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	chunk := []byte(strings.Repeat("0123456789abcde\n", 4096)) // 64 KiB of lines
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(int64(len(chunk)))
		for b.Loop() {
			if _, err := null.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tail", func(b *testing.B) {
		w, tail := newStderrTail(null)
		if w == nil {
			b.Skip("no pipe")
		}
		b.SetBytes(int64(len(chunk)))
		for b.Loop() {
			if _, err := w.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		w.Close()
		<-tail.done
	})
	b.Run("tail-lines", func(b *testing.B) { // a logger: one 100-byte line per write
		line := []byte(strings.Repeat("l", 99) + "\n")
		w, tail := newStderrTail(null)
		b.SetBytes(int64(len(line)))
		for b.Loop() {
			if _, err := w.Write(line); err != nil {
				b.Fatal(err)
			}
		}
		w.Close()
		<-tail.done
	})
	b.Run("direct-lines", func(b *testing.B) {
		line := []byte(strings.Repeat("l", 99) + "\n")
		b.SetBytes(int64(len(line)))
		for b.Loop() {
			if _, err := null.Write(line); err != nil {
				b.Fatal(err)
			}
		}
	})
}
