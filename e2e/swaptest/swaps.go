package swaptest

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
)

// SwapRun is the outcome of one scripted run of swaps under load.
type SwapRun struct {
	Results []hotswap.SwapResult
	Marks   []time.Time
}

// RunSwaps triggers n swaps one after another, every third by SIGUSR2 and
// the rest through the control socket, each after pause, and checks that
// every swap produced a new generation.
func RunSwaps(t testing.TB, p *Pod, mark func(time.Time), n int, pause time.Duration) SwapRun {
	t.Helper()
	var out SwapRun
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n)*5*time.Second)
	defer cancel()
	for i := range n {
		time.Sleep(pause)
		at := time.Now()
		mark(at)
		out.Marks = append(out.Marks, at)
		if i%3 == 2 {
			st, err := p.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Signal(syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
			// The signal's swap is the next one: wait for its outcome.
			for {
				s2, err := p.Status(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if s2.LastSwap != nil && s2.LastSwap.ID > idOf(st.LastSwap) {
					out.Results = append(out.Results, *s2.LastSwap)
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("swap %d by SIGUSR2: no outcome", i)
				case <-time.After(5 * time.Millisecond):
				}
			}
		} else {
			res, err := p.Swap(ctx)
			if err != nil {
				t.Fatalf("swap %d: %v", i, err)
			}
			out.Results = append(out.Results, res)
		}
		if r := out.Results[len(out.Results)-1]; r.Result != hotswap.ResultSucceeded || r.ToGen <= r.FromGen {
			t.Fatalf("swap %d: %+v", i, r)
		}
	}
	return out
}

func idOf(r *hotswap.SwapResult) uint64 {
	if r == nil {
		return 0
	}
	return r.ID
}
