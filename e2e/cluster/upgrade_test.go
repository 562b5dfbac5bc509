package cluster

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

const (
	annHotswapVersion = "hotswap.dev/hotswap-version"
	annUpgrades       = "hotswap.dev/upgrades"
)

// upgradeHotswap replaces the pod's PID 1, hotswap itself, with the binary
// at path (the same build the v3 release runs, with version wantVersion) in
// place, under load: the pod keeps its UID, the container never restarts,
// the serving generation serves on, and the reporter of the new hotswap
// patches hotswap.dev/hotswap-version and hotswap.dev/upgrades.
func (s *scenario) upgradeHotswap(path, sum, wantVersion string) {
	t := s.t
	t.Helper()
	before := s.getPod()
	if v := before.Annotations[annHotswapVersion]; v == wantVersion || v == "" {
		t.Fatalf("before the upgrade %s=%q; want another, non-empty version than %q", annHotswapVersion, v, wantVersion)
	}
	prog := s.load.Progress()
	rec := &swapRecord{Name: "kubectl exec POD -- /hotswap upgrade (PID 1 itself)"}
	s.records = append(s.records, rec)
	rec.Trigger = time.Now()
	s.load.MarkSwap(rec.Trigger)
	out, err := kubectl(s.ctx, "-n", ns, "exec", s.pod, "-c", "server", "--", "/hotswap", "upgrade", path, "--sha256", sum)
	rec.TriggerCmd = time.Since(rec.Trigger)
	if err != nil {
		dumpPod(t, ns, s.pod)
		t.Fatalf("hotswap upgrade: %v", err)
	}
	t.Logf("hotswap upgrade: %s", firstLines(strings.TrimSpace(out), 2))
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	p := waitPod(ctx, t, ns, s.pod, "annotations "+annHotswapVersion+"="+wantVersion+" and "+annUpgrades+"=1", func(p *corev1.Pod) bool {
		return p.Annotations[annHotswapVersion] == wantVersion && p.Annotations[annUpgrades] == "1"
	})
	rec.Annotated = time.Since(rec.Trigger)
	s.checkSamePod(rec.Name, p)
	rec.Generation, rec.Version = p.Annotations[annGen], p.Annotations[annVersion]
	if rec.Generation != before.Annotations[annGen] || rec.Version != before.Annotations[annVersion] {
		t.Errorf("after the upgrade generation %s (%s) serves, want the same %s (%s)",
			rec.Generation, rec.Version, before.Annotations[annGen], before.Annotations[annVersion])
	}
	time.Sleep(time.Second)
	now := s.load.Progress()
	rec.Requests, rec.Failed = now.Attempts-prog.Attempts, now.Failed-prog.Failed
	rec.Note = "hotswap " + before.Annotations[annHotswapVersion] + " → " + wantVersion + ", same PID 1, same generation"
	t.Logf("hotswap upgrade: annotated after %v, hotswap %s → %s, generation %s serves on, %d requests, %d failed",
		rec.Annotated.Round(time.Millisecond), before.Annotations[annHotswapVersion], wantVersion, rec.Generation, rec.Requests, rec.Failed)
	if rec.Failed > 0 {
		t.Errorf("hotswap upgrade: %d requests failed", rec.Failed)
	}
}
