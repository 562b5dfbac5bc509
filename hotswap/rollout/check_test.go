package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap/fleet"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
)

// TestCheck: the verdict on one canary pod, every sign.
func TestCheck(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)
	bake := t0.Add(10 * time.Second)
	r := &fleet.Rollout{CanaryVersion: "v2", StableVersion: "v1", Started: t0, Swapped: t0, SwapTimeout: fleet.Duration(time.Minute)}
	baking := *r
	baking.BakeSince = &bake
	healthy := Pod{Name: "p", Created: t0.Add(-time.Hour), Version: "v2", Phase: "Serving", HotswapReady: true, Ready: true, Running: true}
	with := func(f func(*Pod)) Pod { p := healthy; f(&p); return p }
	for _, tc := range []struct {
		name string
		p    Pod
		r    *fleet.Rollout
		now  time.Time
		want Verdict
		why  string
	}{
		{"healthy", healthy, r, t0.Add(5 * time.Second), Healthy, ""},
		{"still on stable, in time", with(func(p *Pod) { p.Version = "v1" }), r, t0.Add(5 * time.Second), Swapping, `serves "v1"`},
		{"still on stable, too late", with(func(p *Pod) { p.Version = "v1" }), r, t0.Add(2 * time.Minute), Bad, "swap timeout 1m0s"},
		{"unready during the bake", with(func(p *Pod) { p.Ready = false }), &baking, t0.Add(20 * time.Second), Bad, "was healthy on v2 during the bake, now not Ready"},
		{"unready before the bake", with(func(p *Pod) { p.Ready = false }), r, t0.Add(5 * time.Second), Swapping, "not Ready"},
		{"new pod during the bake", with(func(p *Pod) { p.Ready = false; p.Created = t0.Add(15 * time.Second) }), &baking, t0.Add(20 * time.Second), Swapping, "not Ready"},
		{"restart since the start", with(func(p *Pod) {
			p.Restarts = 1
			p.LastRestart = t0.Add(time.Second)
			p.LastExit = "container app exited 2 (Error)"
		}), r, t0.Add(5 * time.Second), Bad, "container app exited 2"},
		{"restart before the start", with(func(p *Pod) { p.Restarts = 1; p.LastRestart = t0.Add(-time.Minute) }), r, t0.Add(5 * time.Second), Healthy, ""},
		{"swap failed", with(func(p *Pod) {
			p.Version = "v1"
			p.LastSwap = &kube.LastSwap{Time: t0.Add(time.Second), Result: "failed", ToVersion: "v2", Reason: "exited before ready"}
		}), r, t0.Add(5 * time.Second), Bad, "the swap to v2 failed: exited before ready"},
		{"refused", with(func(p *Pod) {
			p.Version = "v1"
			p.LastRejected = &kube.LastSwap{Time: t0.Add(time.Second), Result: "rejected", ToVersion: "v2", Reason: "sha256 mismatch"}
		}), r, t0.Add(5 * time.Second), Bad, "refused by verification: sha256 mismatch"},
		{"refused an older rollout", with(func(p *Pod) {
			p.LastRejected = &kube.LastSwap{Time: t0.Add(-time.Hour), Result: "rejected", ToVersion: "v2"}
		}), r, t0.Add(5 * time.Second), Healthy, ""},
		{"own bake rolled back", with(func(p *Pod) {
			p.Version = "v1"
			p.Bake = &kube.Bake{Version: "v2", Result: kube.BakeRolledBack, Reason: "health", Since: t0.Add(time.Second)}
		}), r, t0.Add(5 * time.Second), Bad, "its bake of v2 rolled back: health"},
		{"own bake running", with(func(p *Pod) { p.Bake = &kube.Bake{Version: "v2", Result: kube.BakeBaking, Since: t0.Add(time.Second)} }), r, t0.Add(5 * time.Second), Swapping, "its own bake runs"},
		{"own bake reported after the step's bake began, begun before it", with(func(p *Pod) {
			p.Bake = &kube.Bake{Version: "v2", Result: kube.BakeBaking, Since: bake.Add(-300 * time.Millisecond)}
		}), &baking, bake.Add(time.Second), Swapping, "began before the step's bake"},
		{"own bake begun again during the step's bake", with(func(p *Pod) {
			p.Bake = &kube.Bake{Version: "v2", Result: kube.BakeBaking, Since: bake.Add(time.Second)}
		}), &baking, bake.Add(2 * time.Second), Bad, "was healthy on v2 during the bake, now its own bake runs"},
		{"own bake done", with(func(p *Pod) { p.Bake = &kube.Bake{Version: "v2", Result: kube.BakeBaked, Since: t0.Add(time.Second)} }), r, t0.Add(5 * time.Second), Healthy, ""},
		{"nothing serves", with(func(p *Pod) { p.Phase = "Failed" }), r, t0.Add(5 * time.Second), Bad, "nothing serves"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, why := Check(tc.p, tc.r, tc.now)
			if v != tc.want || !strings.Contains(why, tc.why) {
				t.Fatalf("Check = %s %q, want %s containing %q", v, why, tc.want, tc.why)
			}
		})
	}
}
