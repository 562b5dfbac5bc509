package hotswap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 15: what an operator sees — warnings, hints, status fields — on
// the fake runtime.

// syncBuffer is a log destination the engine goroutine writes and the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func logTo(buf *syncBuffer) func(*Config) {
	return func(c *Config) { c.Log = slog.New(slog.NewTextHandler(buf, nil)) }
}

func TestFirstGenerationNotReadyWarnsEveryStartTimeout(t *testing.T) {
	var logs syncBuffer
	h := newHarness(t, func(c *Config) {
		logTo(&logs)(c)
		c.Ready = ReadyCheck{Kind: ReadyNotify}
	}).start()
	pid := h.proc(1).pid
	if n := strings.Count(logs.String(), "started generation"); n != 1 ||
		!strings.Contains(logs.String(), fmt.Sprintf(`msg="started generation" generation=1 pid=%d version=v1 path=/app/server-v1 waiting_for="READY=1 on NOTIFY_SOCKET"`, pid)) {
		t.Fatalf("the start line does not describe the starting generation:\n%s", logs.String())
	}
	g := h.e.Status().Generations[0]
	if g.WaitingFor != "READY=1 on NOTIFY_SOCKET" || g.Path != "/app/server-v1" || g.State != GenStarting {
		t.Fatalf("starting generation in status: %+v", g)
	}
	h.advance(h.e.cfg.StartTimeout - time.Millisecond)
	if strings.Contains(logs.String(), "not ready after") {
		t.Fatal("warned before --start-timeout")
	}
	h.advance(2 * time.Millisecond)
	if n := strings.Count(logs.String(), "generation 1 not ready after 30s: still waiting for READY=1 on NOTIFY_SOCKET"); n != 1 {
		t.Fatalf("%d warnings after one --start-timeout:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "--ready http=URL") {
		t.Fatalf("no hint to use --ready:\n%s", logs.String())
	}
	h.advance(h.e.cfg.StartTimeout)
	if !strings.Contains(logs.String(), "generation 1 not ready after 1m0s") {
		t.Fatalf("no second warning:\n%s", logs.String())
	}
	wantPhase(t, h, PhaseStarting) // it keeps waiting: nothing else could serve
	wantSignals(t, h.proc(1))
	h.notify(1, notifyMsg(h.proc(1).pid, "READY", "1"))
	before := logs.String()
	h.advance(3 * h.e.cfg.StartTimeout)
	if strings.Count(logs.String(), "not ready after") != strings.Count(before, "not ready after") {
		t.Fatal("warned after the generation became ready")
	}
	if g := h.e.Status().Generations[0]; g.WaitingFor != "" {
		t.Fatalf("a serving generation waits for %q", g.WaitingFor)
	}
}

func TestFirstGenerationExitBeforeReadyHints(t *testing.T) {
	var logs syncBuffer
	h := newHarness(t, logTo(&logs)).start()
	h.exitCode(1, 1)
	h.wait()
	ev, ok := h.rec.last(ChildExited)
	if !ok || !ev.Warning || !strings.Contains(ev.Message, "exited before it was ever ready") {
		t.Fatalf("ChildExited %+v", ev)
	}
}

func TestStatusCountsAndStaleRejectedCleared(t *testing.T) {
	h := running(t, func(c *Config) {
		c.Verify = func(_ context.Context, r Release) error {
			if r.Version == "evil" {
				return errors.New("sha256 mismatch")
			}
			return nil
		}
	})
	h.offer(rel("evil"))
	h.offer(rel("v2"))
	h.exitCode(2, 1) // failed swap
	st := h.e.Status()
	if st.LastRejected == nil || st.Counts != (SwapCounts{Rejected: 1, Failed: 1}) {
		t.Fatalf("after a rejection and a failure: %+v", st)
	}
	h.offer(rel("v3"))
	h.ready(3)
	st = h.e.Status()
	if st.LastRejected != nil {
		t.Fatalf("a later success left the stale rejection: %+v", st.LastRejected)
	}
	if st.Counts != (SwapCounts{Succeeded: 1, Rejected: 1, Failed: 1}) {
		t.Fatalf("counts %+v", st.Counts)
	}
}

// A release refused for its mode, fixed in place with chmod, is tried again
// when offered again; unchanged, it is not (and the reason is logged).
func TestRejectedReleaseFixedInPlaceIsTriedAgain(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "server")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o777); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	h := running(t, func(c *Config) {
		logTo(&logs)(c)
		c.Verify = func(_ context.Context, r Release) error {
			if fi, err := os.Stat(r.Path); err != nil || fi.Mode().Perm()&0o022 != 0 {
				return errors.New("group/world-writable")
			}
			return nil
		}
	})
	r := Release{Path: bin, Version: "v2", Source: "test"}
	h.offer(r)
	h.offer(r)
	if h.rec.count(ReleaseRejected) != 1 || !strings.Contains(logs.String(), "ignoring offered release: it failed before and its file has not changed since") {
		t.Fatalf("unchanged rejected release: %d rejections, logs:\n%s", h.rec.count(ReleaseRejected), logs.String())
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	h.offer(r)
	h.ready(2)
	if st := h.e.Status(); st.Version != "v2" {
		t.Fatalf("fixed release not swapped in: %+v", st)
	}
}

// current -> v2 (fails), -> v1 (serving: ignored), -> v2 again: tried again.
func TestFailedReleaseOfferedAgainAfterSourceMovedOn(t *testing.T) {
	h := running(t, nil)
	h.offer(rel("v2"))
	h.exitCode(2, 1)
	h.offer(rel("v1"))
	h.offer(rel("v2"))
	if h.started() != 3 {
		t.Fatalf("%d generations started; v2 offered again after the source moved on must be tried", h.started())
	}
}

func TestSwapResultJSONDurationIsReadable(t *testing.T) {
	in := SwapResult{ID: 3, Result: ResultSucceeded, Duration: 1204 * time.Millisecond, ToGen: 2}
	b, err := json.Marshal(Status{LastSwap: &in})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"duration":"1.204s"`) {
		t.Fatalf("duration not a Go duration string: %s", b)
	}
	var out Status
	if err := json.Unmarshal(b, &out); err != nil || *out.LastSwap != in {
		t.Fatalf("round trip: %+v, %v", out.LastSwap, err)
	}
}
