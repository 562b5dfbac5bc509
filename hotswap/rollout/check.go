package rollout

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/fleet"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
	"github.com/hotswap-dev/hotswap/hotswap/kube/core"
)

// Pod is what a pod reports about itself through hotswap's annotations and
// conditions and the kubelet's status, read once.
type Pod struct {
	Name       string    `json:"name"`
	UID        string    `json:"uid"`
	Created    time.Time `json:"created"`
	Node       string    `json:"node,omitempty"`
	Version    string    `json:"version"`
	Generation int       `json:"generation"`
	Phase      string    `json:"phase"`
	// HotswapReady is the hotswap.dev/ready condition, Ready the kubelet's.
	HotswapReady bool           `json:"hotswapReady"`
	Ready        bool           `json:"ready"`
	Restarts     int            `json:"restarts"`
	LastRestart  time.Time      `json:"lastRestart,omitzero"`
	LastExit     string         `json:"lastExit,omitempty"`
	LastSwap     *kube.LastSwap `json:"lastSwap,omitempty"`
	LastRejected *kube.LastSwap `json:"lastRejected,omitempty"`
	Bake         *kube.Bake     `json:"bake,omitempty"`
	Terminating  bool           `json:"terminating,omitempty"`
	Running      bool           `json:"running"`
}

// ReadPod extracts what the driver looks at from a pod.
func ReadPod(p *core.Pod) Pod {
	a := p.Annotations
	r := Pod{
		Name: p.Name, UID: string(p.UID), Created: p.CreationTimestamp.Time, Node: p.Spec.NodeName,
		Version: a[kube.AnnotationVersion], Phase: a[kube.AnnotationPhase],
		Terminating: p.DeletionTimestamp != nil, Running: p.Status.Phase == core.PodRunning,
	}
	r.Generation, _ = strconv.Atoi(a[kube.AnnotationGeneration])
	r.LastSwap = parseJSON[kube.LastSwap](a[kube.AnnotationLastSwap])
	r.LastRejected = parseJSON[kube.LastSwap](a[kube.AnnotationLastRejected])
	r.Bake = parseJSON[kube.Bake](a[kube.AnnotationBake])
	for _, c := range p.Status.Conditions {
		switch c.Type {
		case kube.ConditionReady:
			r.HotswapReady = c.Status == core.ConditionTrue
		case core.PodReady:
			r.Ready = c.Status == core.ConditionTrue
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		r.Restarts += int(cs.RestartCount)
		if t := cs.LastTerminationState.Terminated; t != nil && t.FinishedAt.After(r.LastRestart) {
			r.LastRestart = t.FinishedAt.Time
			r.LastExit = fmt.Sprintf("container %s exited %d (%s)", cs.Name, t.ExitCode, t.Reason)
		}
	}
	return r
}

func parseJSON[T any](s string) *T {
	if s == "" {
		return nil
	}
	v := new(T)
	if json.Unmarshal([]byte(s), v) != nil {
		return nil
	}
	return v
}

// Verdict is the driver's view of one canary pod.
type Verdict int

// The verdicts.
const (
	// Swapping: not (yet) serving the canary healthy, within its time.
	Swapping Verdict = iota
	// Healthy: serving the canary, Ready, no bad sign.
	Healthy
	// Bad: a bad sign; the rollout halts.
	Bad
)

func (v Verdict) String() string {
	return [...]string{"swapping", "healthy", "bad"}[v]
}

// Check judges pod p, which the rollout r has put on the canary, at now.
// It returns the verdict and, unless Healthy, why.
//
// A bad sign at any time: a container restarted since the rollout started,
// the pod's swap to the canary failed, verification refused the canary,
// its own bake of the canary rolled back, or nothing serves. Not serving the
// canary healthy is a bad sign only when the pod was part of a bake that
// had begun (it was healthy and is no longer — unless it is its own bake
// that runs, begun before the step's: then it never was), or when it has
// taken longer than the rollout's swap timeout.
func Check(p Pod, r *fleet.Rollout, now time.Time) (Verdict, string) {
	canary := r.CanaryVersion
	// The kubelet's finishedAt has whole seconds: a restart in the second
	// the rollout started counts.
	if !p.LastRestart.IsZero() && !p.LastRestart.Before(r.Started.Truncate(time.Second)) {
		return Bad, fmt.Sprintf("%s at %s (restarts %d)", p.LastExit, p.LastRestart.UTC().Format(time.TimeOnly), p.Restarts)
	}
	if s := p.LastSwap; s != nil && s.ToVersion == canary && s.Result == string(hotswap.ResultFailed) && s.Time.After(r.Started) {
		return Bad, fmt.Sprintf("the swap to %s failed: %s", canary, s.Reason)
	}
	if s := p.LastRejected; s != nil && s.ToVersion == canary && s.Time.After(r.Started) {
		return Bad, fmt.Sprintf("%s refused by verification: %s", canary, s.Reason)
	}
	if b := p.Bake; b != nil && b.Version == canary && b.Result == kube.BakeRolledBack && b.Since.After(r.Started) {
		return Bad, fmt.Sprintf("its bake of %s rolled back: %s", canary, b.Reason)
	}
	if p.Phase == string(hotswap.PhaseFailed) {
		return Bad, "nothing serves (hotswap.dev/phase Failed)"
	}
	why := ""
	switch {
	case p.Terminating:
		why = "terminating"
	case p.Version != canary:
		why = fmt.Sprintf("serves %q, not %s", p.Version, canary)
	case p.Phase != string(hotswap.PhaseServing):
		why = "hotswap phase " + p.Phase
	case !p.HotswapReady:
		why = "condition hotswap.dev/ready is not True"
	case !p.Ready:
		why = "not Ready"
	case p.Bake != nil && p.Bake.Version == canary && p.Bake.Result == kube.BakeBaking:
		why = "its own bake runs"
	default:
		return Healthy, ""
	}
	since := r.Swapped
	if p.Created.After(since) {
		since = p.Created
	}
	if r.BakeSince != nil && since.Before(*r.BakeSince) && !p.Terminating {
		// A pod reports its version and its own bake in two patches: the
		// driver may see the canary served before the "baking" that began
		// with it. A bake begun before the step's was there all along —
		// the pod was never healthy, nothing regressed; the step bakes
		// again once it is.
		if b := p.Bake; b != nil && b.Version == canary && b.Result == kube.BakeBaking && b.Since.Before(*r.BakeSince) {
			return Swapping, why + " (began before the step's bake)"
		}
		return Bad, "was healthy on " + canary + " during the bake, now " + why
	}
	if now.Sub(since) > time.Duration(r.SwapTimeout) {
		return Bad, fmt.Sprintf("%s after %s (swap timeout %s)", why, now.Sub(since).Round(time.Second), time.Duration(r.SwapTimeout))
	}
	return Swapping, why
}
