package swap

import (
	"testing"
	"time"
)

// TestSwapsHandoffKeepAlive: 50 swaps with --handoff-keepalive under the
// mixed load (keep-alive clients, 10% slow requests in flight at swaps,
// new-connection clients, long-idle pooled connections that check before
// reuse): zero failed requests and zero reconnects — every keep-alive and
// idle-pool client keeps its one TCP connection through all 50 swaps, while
// the generations answering it change.
func TestSwapsHandoffKeepAlive(t *testing.T) {
	if !inNetns(t) {
		return
	}
	p := StartPod(t, PodConfig{Flags: []string{"--handoff-keepalive"}, Serve: []string{"--grace", "2s"}})
	r := startLoad(t, p, mixedLoad(p.Addr, 5*time.Minute))
	runSwaps(t, p, r.MarkSwap, ciSwaps, 50*time.Millisecond)
	time.Sleep(time.Second) // the last handover, under load
	rep := finishLoad(t, r)
	if rc := rep.Reconnects(); rc.Total() != 0 {
		t.Errorf("keep-alive clients reconnected %d times (%+v), want 0", rc.Total(), rc)
	}
	if n := rep.KeepAlive.Connections + rep.IdlePool.Connections; n != int64(rep.KeepAlive.Clients+rep.IdlePool.Clients) {
		t.Errorf("keep-alive and idle-pool clients opened %d connections, want one each (%d)", n, rep.KeepAlive.Clients+rep.IdlePool.Clients)
	}
	gens := map[string]bool{}
	for _, g := range rep.Generations {
		gens[g.Generation] = true
	}
	if len(gens) < ciSwaps+1 {
		t.Errorf("%d generations answered, want %d (every swap's)", len(gens), ciSwaps+1)
	}
}
