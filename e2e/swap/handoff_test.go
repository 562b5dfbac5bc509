package swap

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/e2e/swaptest"
	"github.com/hotswap-dev/hotswap/hotswap"
)

// TestSwapsHandoffKeepAlive: 50 swaps with --handoff-keepalive under the
// mixed load (keep-alive clients, 10% slow requests in flight at swaps,
// new-connection clients, long-idle pooled connections that check before
// reuse): zero failed requests and zero reconnects — every keep-alive and
// idle-pool client keeps its one TCP connection through all 50 swaps, while
// the generations answering it change.
func TestSwapsHandoffKeepAlive(t *testing.T) {
	if !swaptest.InNetns(t) {
		return
	}
	p := swaptest.StartPod(t, swaptest.PodConfig{Flags: []string{"--handoff-keepalive"}, Serve: []string{"--grace", "2s"}})
	r := swaptest.StartLoad(t, p, swaptest.MixedLoad(p.Addr, 5*time.Minute))
	swaptest.RunSwaps(t, p, r.MarkSwap, ciSwaps, 50*time.Millisecond)
	time.Sleep(time.Second) // the last handover, under load
	rep := swaptest.FinishLoad(t, r)
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

// TestHandoffNewGenerationDiesAfterReady: with --handoff-keepalive, the new
// generation is ready, takes the old one's idle connections, then fails
// (drains and exits 1) while the old one still finishes a slow request. The
// engine rolls back; the dying generation closes what it received with
// Connection: close, the old one sends its last connection to the
// rolled-back generation (or, if none is ready yet, keeps it with
// Connection: close). No request fails.
func TestHandoffNewGenerationDiesAfterReady(t *testing.T) {
	if !swaptest.InNetns(t) {
		return
	}
	p := swaptest.StartPod(t, swaptest.PodConfig{Flags: []string{"--handoff-keepalive"}, Serve: []string{"--grace", "3s"}})
	r := swaptest.StartLoad(t, p, swaptest.MixedLoad(p.Addr, time.Minute))
	slow, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	br := bufio.NewReader(slow)
	get := func(path string) *http.Response {
		t.Helper()
		fmt.Fprintf(slow, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path)
		slow.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s on a held connection: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if g := get("/").Header.Get("X-Hotswap-Generation"); g != "1" {
		t.Fatalf("held connection answered by generation %q, want 1", g)
	}
	fmt.Fprintf(slow, "GET /?sleep=1500ms HTTP/1.1\r\nHost: test\r\n\r\n") // in flight on generation 1
	time.Sleep(100 * time.Millisecond)
	// Its grace (1s) outlasts the idle pool's 700 ms idle time, so every
	// connection handed to it gets a request, and Connection: close, within
	// the grace: one idle through the whole grace would be closed by
	// Shutdown and race a client sending on it (the race any HTTP/1.1 idle
	// close has; see reuseport.Server.Drain).
	p.SetServeFlags("--exit-after-ready", "300ms", "--exit-drain", "--grace", "1s")
	r.MarkSwap(time.Now())
	res, err := p.Swap(ctxFor(t, 30*time.Second))
	if err != nil || res.Result != hotswap.ResultSucceeded || res.ToGen != 2 {
		t.Fatalf("swap: %+v %v", res, err)
	}
	p.SetServeFlags("--grace", "3s")
	r.MarkSwap(time.Now().Add(300 * time.Millisecond))
	if _, err := p.WaitLog(ctxFor(t, 10*time.Second), func(l swaptest.LogRec) bool { return strings.Contains(l.Msg, "rolling back") }); err != nil {
		t.Fatalf("no rollback logged: %v", err)
	}
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("slow request: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if g := resp.Header.Get("X-Hotswap-Generation"); g != "1" || resp.StatusCode != 200 {
		t.Fatalf("slow request answered by generation %q with %s", g, resp.Status)
	}
	if !resp.Close {
		// Kept alive: it moved on (to the rolled-back generation).
		time.Sleep(200 * time.Millisecond)
		resp = get("/")
		t.Logf("held connection after the rollback: generation %s", resp.Header.Get("X-Hotswap-Generation"))
	}
	if err := p.WaitPhase(ctxFor(t, 10*time.Second), hotswap.PhaseServing); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	swaptest.FinishLoad(t, r)
}
