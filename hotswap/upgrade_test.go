package hotswap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
)

// TestHandoverRoundTrip: the state an upgrade hands over, encoded by the
// old engine and decoded by the one decoder the self-test and the restore
// share, keeps every generation, the serving one, the swap counters and
// the releases.
func TestHandoverRoundTrip(t *testing.T) {
	h := running(t, nil)
	h.requestSwap("control")
	h.ready(2) // generation 1 drains, 2 serves
	h.settle()
	b, err := json.Marshal(h.e.handover(nil)) // idle after settle: no race with Run
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeHandover(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got.Serving != 2 || got.SwappedIn != 2 || got.LastGen != 2 || got.SwapID != 1 || got.LastSwap == nil {
		t.Errorf("handover: serving %d swappedIn %d lastGen %d swaps %d lastSwap %v", got.Serving, got.SwappedIn, got.LastGen, got.SwapID, got.LastSwap)
	}
	if len(got.Gens) != 2 || got.Gens[0].State != GenDraining || got.Gens[1].State != GenServing ||
		got.Gens[0].PID != h.proc(1).pid || got.Gens[1].PID != h.proc(2).pid || got.Gens[0].DrainStart.IsZero() {
		t.Errorf("handover generations: %+v", got.Gens)
	}
	if got.Current.Path == "" || got.Previous.Path == "" {
		t.Errorf("handover releases: current %+v previous %+v", got.Current, got.Previous)
	}
	// The swap counts carry over: `hotswap status` must not start again
	// from zero after an upgrade.
	if got.Counts != h.e.Status().Counts || got.Counts.Succeeded != 1 {
		t.Errorf("handover counts %+v, want the engine's %+v with 1 succeeded", got.Counts, h.e.Status().Counts)
	}
}

// TestDecodeHandoverRefuses: the self-test fails (and the upgrade is
// refused) for state this hotswap cannot take over.
func TestDecodeHandoverRefuses(t *testing.T) {
	for _, tc := range []struct{ state, want string }{
		{`{"format": 99}`, "format 99"},
		{`{"format": 1, "generations": [{"id": 1, "pid": 0, "state": "serving"}]}`, "pid 0"},
		{`{"format": 1, "generations": [{"id": 1, "pid": 7, "state": "zombie"}]}`, "unknown state"},
		{`not json`, "decode"},
	} {
		if _, err := decodeHandover(strings.NewReader(tc.state)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.state, err, tc.want)
		}
	}
}

// TestUpgradeRefusedWhileSwapping: an upgrade waits for no swap; it is
// refused as busy, and the engine goes on.
func TestUpgradeRefusedWhileSwapping(t *testing.T) {
	h := running(t, nil)
	h.requestSwap("control")
	h.settle()
	_, err := h.e.Upgrade(context.Background(), "/nonexistent", "")
	if !errors.Is(err, ErrUpgradeRefused) {
		t.Fatalf("upgrade during a swap: %v, want ErrUpgradeRefused", err)
	}
	h.ready(2)
	if st := h.e.Status(); st.Generation != 2 || st.Upgrades != 0 {
		t.Fatalf("after the refused upgrade: %+v", st)
	}
}

// TestResumedSourcesDoNotRollBack: after an in-place upgrade the sources
// start again and re-read what they offered before. A release that was
// since replaced by another source's newer one must not come back by that
// re-read (the cluster e2e swapped back to an old ConfigMap release that
// way); a source that then offers something new is followed as always.
func TestResumedSourcesDoNotRollBack(t *testing.T) {
	h := running(t, nil)
	fromCM := func(v string) Release { r := rel(v); r.Source = "configmap"; return r }
	fromWatch := func(v string) Release { r := rel(v); r.Source = "watch"; return r }
	h.offer(fromCM("v2"))
	h.ready(2)
	h.offer(fromWatch("v3"))
	h.ready(3)
	h.settle()
	b, err := json.Marshal(h.e.handover(nil))
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeHandover(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Offered["configmap"].Same(fromCM("v2")) || !got.Offered["watch"].Same(fromWatch("v3")) {
		t.Fatalf("handover offered %+v", got.Offered)
	}
	// What resume does with it, on this engine.
	h.e.offered, h.e.unchangedOffers = got.Offered, maps.Clone(got.Offered)

	h.offer(fromWatch("v3")) // serving already
	h.offer(fromCM("v2"))    // re-read after the upgrade: not a new offer
	if n := h.started(); n != 3 {
		t.Fatalf("%d generations started, want 3: the re-read of an old release started a swap", n)
	}
	h.offer(fromCM("v4")) // the ConfigMap changed: followed
	if n := h.started(); n != 4 {
		t.Fatalf("%d generations started, want 4: a new release after the upgrade was ignored", n)
	}
}

// TestResumedKeepsReadiness: the readiness default depends on the
// listeners, which a resumed engine inherits instead of binding. It must be
// the same as before the upgrade (it fell back to "delay=0s", and a release
// that exits at start was taken for ready: found by the cluster e2e).
func TestResumedKeepsReadiness(t *testing.T) {
	cfg := testConfig(t)
	cfg.Ready = ReadyCheck{}
	cfg.Listeners = []ListenSpec{{Name: "http", URL: "tcp://127.0.0.1:0"}}
	e, err := NewResumed(cfg, nil, &Handover{h: &handover{Format: UpgradeFormat}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.cfg.Ready.Kind != ReadyNotify {
		t.Fatalf("resumed engine waits for %s, want READY=1 on the notify socket as before the upgrade", e.readyDesc())
	}
}
