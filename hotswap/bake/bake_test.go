package bake

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
)

type recorder struct {
	mu      sync.Mutex
	offers  []hotswap.Release
	results []Result
	ch      chan Result
}

func (r *recorder) Offer(rel hotswap.Release) {
	r.mu.Lock()
	r.offers = append(r.offers, rel)
	r.mu.Unlock()
}

func (r *recorder) ReportBake(res Result) {
	r.mu.Lock()
	r.results = append(r.results, res)
	r.mu.Unlock()
	r.ch <- res
}

func (r *recorder) next(t *testing.T) Result {
	t.Helper()
	select {
	case res := <-r.ch:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("no bake result within 10s")
	}
	return Result{}
}

func swapped(from, to string, gen int) hotswap.Event {
	return hotswap.Event{Type: hotswap.SwapSucceeded, Status: hotswap.Status{Phase: hotswap.PhaseServing, Generation: gen, Version: to,
		LastSwap: &hotswap.SwapResult{Result: hotswap.ResultSucceeded, FromVersion: from, ToVersion: to, FromGen: gen - 1, ToGen: gen}}}
}

func setup(t *testing.T, healthy *atomic.Bool, d time.Duration) (*Baker, *recorder) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			http.Error(w, "sick", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	rec := &recorder{ch: make(chan Result, 16)}
	b := New(Options{Duration: d, URL: srv.URL, Interval: 20 * time.Millisecond, Failures: 2,
		Initial: hotswap.Release{Version: "v1", Path: "/r/v1"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, rec)
	b.SetTarget(rec)
	return b, rec
}

// TestBaked: a healthy generation bakes, and nothing is offered back.
func TestBaked(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	b, rec := setup(t, &healthy, 200*time.Millisecond)
	b.Remember(hotswap.Release{Version: "v2", Path: "/r/v2"})
	b.Observe(swapped("v1", "v2", 2))
	if r := rec.next(t); r.Result != Baking || r.Version != "v2" || r.Generation != 2 {
		t.Fatalf("first result %+v", r)
	}
	if r := rec.next(t); r.Result != Baked {
		t.Fatalf("second result %+v", r)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.offers) != 0 {
		t.Fatalf("offers %v, want none", rec.offers)
	}
}

// TestHealthFailsRollsBack: the health URL fails during the bake; the
// previous release is offered again, and the rollback itself is not baked.
func TestHealthFailsRollsBack(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	b, rec := setup(t, &healthy, 10*time.Second)
	b.Remember(hotswap.Release{Version: "v2", Path: "/r/v2"})
	b.Observe(swapped("v1", "v2", 2))
	rec.next(t)
	healthy.Store(false)
	r := rec.next(t)
	if r.Result != RolledBack || r.Version != "v2" || r.Reason == "" {
		t.Fatalf("result %+v", r)
	}
	rec.mu.Lock()
	offers := append([]hotswap.Release(nil), rec.offers...)
	rec.mu.Unlock()
	if len(offers) != 1 || offers[0].Path != "/r/v1" {
		t.Fatalf("offers %+v, want the initial v1", offers)
	}
	// The engine swaps back: no bake of the rollback.
	b.Observe(swapped("v2", "v1", 3))
	select {
	case r := <-rec.ch:
		t.Fatalf("the rollback was baked: %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestDeathRollsBack: the baking generation exits; without a URL the bake
// watches survival only.
func TestDeathRollsBack(t *testing.T) {
	rec := &recorder{ch: make(chan Result, 16)}
	b := New(Options{Duration: time.Minute, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, rec)
	b.SetTarget(rec)
	b.Remember(hotswap.Release{Version: "v1", Path: "/r/v1"})
	b.Remember(hotswap.Release{Version: "v2", Path: "/r/v2"})
	b.Observe(swapped("v1", "v2", 2))
	rec.next(t)
	b.Observe(hotswap.Event{Type: hotswap.ChildExited, Message: "generation 2 exited with code 2", Status: hotswap.Status{Phase: hotswap.PhaseFailed}})
	if r := rec.next(t); r.Result != RolledBack || r.Reason != "the generation exited during the bake: generation 2 exited with code 2" {
		t.Fatalf("result %+v", r)
	}
}

// TestNewerSwapReplacesBake: a swap during a bake ends the old bake without
// a verdict; the new generation is baked instead.
func TestNewerSwapReplacesBake(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	b, rec := setup(t, &healthy, time.Second)
	b.Remember(hotswap.Release{Version: "v2", Path: "/r/v2"})
	b.Remember(hotswap.Release{Version: "v3", Path: "/r/v3"})
	b.Observe(swapped("v1", "v2", 2))
	rec.next(t)
	b.Observe(swapped("v2", "v3", 3))
	if r := rec.next(t); r.Result != Baking || r.Version != "v3" {
		t.Fatalf("result %+v", r)
	}
	if r := rec.next(t); r.Result != Baked || r.Version != "v3" {
		t.Fatalf("result %+v", r)
	}
}

// TestNoBake: Duration 0 does nothing.
func TestNoBake(t *testing.T) {
	rec := &recorder{ch: make(chan Result, 16)}
	b := New(Options{}, rec)
	b.Observe(swapped("v1", "v2", 2))
	select {
	case r := <-rec.ch:
		t.Fatalf("bake without a duration: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
}
