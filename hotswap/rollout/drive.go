package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/hotswap-dev/hotswap/hotswap/fleet"
	"github.com/hotswap-dev/hotswap/hotswap/kube/core"
)

// Drive takes the rollout recorded in the ConfigMap forward until it ends
// (Promoted, Completed without auto-promote: nil; RolledBack: ErrRolledBack;
// Aborted: ErrAborted) or ctx is done. With Options.Forever it never ends
// on its own: it waits for the next rollout. Failed API calls are retried
// every interval: a driver outlives an apiserver restart.
func (d *Driver) Drive(ctx context.Context) (*fleet.Rollout, error) {
	t := time.NewTicker(d.opts.Interval)
	defer t.Stop()
	d.watching.Store(true)
	defer func() { d.watching.Store(false); d.stopCache() }()
	var lastErr string
	for {
		r, done, err := d.reconcile(ctx)
		switch {
		case apierrors.IsConflict(err):
			continue // another driver wrote: decide again from what it wrote
		case err != nil && (errors.Is(err, ErrNoRollout) || apierrors.IsNotFound(err)) && !d.opts.Forever:
			return r, err
		case errors.Is(err, ErrNoRollout):
			// The in-cluster driver between rollouts: nothing to say.
		case err != nil && ctx.Err() == nil:
			if err.Error() != lastErr {
				d.log.Warn("rollout driver: retrying", "err", err)
				lastErr = err.Error()
			}
		case err == nil:
			lastErr = ""
		}
		if done && !d.opts.Forever {
			return r, outcome(r)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-t.C:
		}
	}
}

func outcome(r *fleet.Rollout) error {
	switch r.Phase {
	case fleet.RolledBack:
		return fmt.Errorf("%w: %s", ErrRolledBack, r.Reason)
	case fleet.Aborted:
		return fmt.Errorf("%w: %s", ErrAborted, r.Reason)
	}
	return nil
}

// reconcile looks once and acts once. done is true when the rollout has
// ended and its pods have settled.
func (d *Driver) reconcile(ctx context.Context) (*fleet.Rollout, bool, error) {
	cm, r, err := d.get(ctx)
	if err != nil {
		return nil, false, err
	}
	if r == nil {
		return nil, true, ErrNoRollout
	}
	d.metrics.observe(r)
	switch r.Phase {
	case fleet.Paused:
		return r, false, nil
	case fleet.Promoted:
		return r, true, nil
	case fleet.Completed:
		if !r.AutoPromote {
			return r, true, nil
		}
		nr, ev := d.promote(cm, r, "every step baked; auto-promote")
		if err := d.put(ctx, cm, nr); err != nil {
			return r, false, err
		}
		d.record(ctx, cm, *ev)
		return nr, true, nil
	case fleet.RolledBack, fleet.Aborted:
		return d.settle(ctx, cm, r)
	case fleet.Progressing:
		return d.progress(ctx, cm, r)
	}
	return r, true, fmt.Errorf("rollout: unknown phase %q in %s", r.Phase, fleet.KeyRollout)
}

// settle waits after a rollback until no pod serves the canary any more
// (bounded by the swap timeout) and says so once.
func (d *Driver) settle(ctx context.Context, cm *core.ConfigMap, r *fleet.Rollout) (*fleet.Rollout, bool, error) {
	if r.Settled {
		return r, true, nil
	}
	pods, err := d.pods(ctx, r.Target.Selector)
	if err != nil {
		return r, false, err
	}
	var on []string
	for _, p := range pods {
		if p.Version == r.CanaryVersion && !p.Terminating {
			on = append(on, p.Name)
		}
	}
	if len(on) > 0 && time.Since(r.Updated) < time.Duration(r.SwapTimeout) {
		return r, false, nil
	}
	nr := *r
	msg := fmt.Sprintf("every pod serves %s again", r.StableVersion)
	if len(on) > 0 {
		msg = fmt.Sprintf("still on %s after %s: %s", r.CanaryVersion, time.Duration(r.SwapTimeout), strings.Join(on, ", "))
	}
	nr.Reason = r.Reason + "; " + msg
	nr.Settled = true
	if err := d.put(ctx, cm, &nr); err != nil {
		return r, false, err
	}
	d.record(ctx, cm, event{reason: "RolloutRolledBack", warning: len(on) > 0, msg: fmt.Sprintf("rollout of %s: %s", r.CanaryVersion, msg)})
	d.log.Info("rollout rolled back", "canary", r.CanaryVersion, "stable", r.StableVersion, "result", msg)
	return &nr, true, nil
}

// progress is one reconcile of a Progressing rollout: check the canary
// pods, halt on a bad sign, else bake, advance or add pods — at most one
// write, conditioned on what was read.
func (d *Driver) progress(ctx context.Context, cm *core.ConfigMap, r *fleet.Rollout) (*fleet.Rollout, bool, error) {
	pods, err := d.pods(ctx, r.Target.Selector)
	if err != nil {
		return r, false, err
	}
	now := time.Now().UTC()
	var live []Pod
	for _, p := range pods {
		if !p.Terminating {
			live = append(live, p)
		}
	}
	list := cm.Data[fleet.KeyCanaryPods]
	star := fleet.OnCanary(list, fleet.AllPods)
	var canary, rest []Pod
	for _, p := range live {
		if star || fleet.OnCanary(list, p.Name) {
			canary = append(canary, p)
		} else {
			rest = append(rest, p)
		}
	}
	swapping := 0
	for _, p := range canary {
		switch v, why := Check(p, r, now); v {
		case Bad:
			return d.halt(ctx, cm, r, fmt.Sprintf("pod %s: %s", p.Name, why))
		case Swapping:
			swapping++
		}
	}

	nr := *r
	var ev *event
	step := nr.Steps[nr.Step]
	reached := swapping == 0 && len(canary) >= step.Of(len(live)) && (!step.All() || star)
	if reached && nr.BakeSince == nil {
		nr.BakeSince = &now
		nr.Reason = fmt.Sprintf("step %s: %d of %d pods on %s, baking %s", d.stepName(&nr), len(canary), len(live), nr.CanaryVersion, time.Duration(nr.Bake))
	}
	// Without a bake the step advances in the same write.
	if reached && now.Sub(*nr.BakeSince) >= time.Duration(nr.Bake) {
		if claim, wait := d.analysisClaim(r, now); wait {
			return r, false, nil // another driver analyses this step: wait for its verdict
		} else if claim != nil {
			// Claim the analysis first (one conditioned write); the next
			// pass, if the claim won, runs it.
			nr.Analysis = claim
			nr.Reason = fmt.Sprintf("step %s: baked; analysis by %s", d.stepName(&nr), d.opts.Name)
			if err := d.put(ctx, cm, &nr); err != nil {
				return r, false, err
			}
			return &nr, false, nil
		}
		if err := d.analyse(ctx, &nr, canary); err != nil {
			return d.halt(ctx, cm, r, fmt.Sprintf("step %s analysis: %v", d.stepName(&nr), err))
		}
		d.metrics.Steps.Add(1)
		nr.Analysis = nil
		done := fmt.Sprintf("step %s baked: %d of %d pods healthy on %s for %s", d.stepName(&nr), len(canary), len(live), nr.CanaryVersion, time.Duration(nr.Bake))
		if nr.Step == len(nr.Steps)-1 {
			nr.Phase, nr.Reason = fleet.Completed, done
			ev = &event{reason: "RolloutStep", msg: done + "; rollout complete"}
			if nr.AutoPromote {
				pr, pev := d.promote(cm, &nr, "every step baked; auto-promote")
				nr, ev = *pr, &event{reason: "RolloutPromoted", msg: done + "; " + pev.msg}
			}
		} else {
			nr.Step++
			nr.BakeSince = nil
			nr.Reason = done
			ev = &event{reason: "RolloutStep", msg: done + fmt.Sprintf("; next step %s", d.stepName(&nr))}
		}
	}

	// A step already baking can lose pods to a scale-up (more are wanted
	// now), or find one still swapping (its own bake runs: reported after
	// its version): reach it again, then bake again.
	if !reached && nr.BakeSince != nil && nr.Phase == fleet.Progressing &&
		(swapping > 0 || len(canary) < step.Of(len(live)) || step.All() && !star) {
		nr.BakeSince = nil
	}

	// Reach the current step: tell more pods to swap, never more than
	// MaxSwapping at once, choosing Ready pods first, then by name (two
	// drivers choose alike).
	newList := list
	if nr.Phase == fleet.Progressing && nr.BakeSince == nil {
		step = nr.Steps[nr.Step]
		want := step.Of(len(live))
		slices.SortStableFunc(rest, func(a, b Pod) int {
			if a.Ready != b.Ready {
				if a.Ready {
					return -1
				}
				return 1
			}
			return strings.Compare(a.Name, b.Name)
		})
		names := make([]string, 0, len(canary))
		for _, p := range canary {
			names = append(names, p.Name)
		}
		add := min(max(nr.MaxSwapping-swapping, 0), want-len(canary), len(rest))
		add = max(add, 0)
		for _, p := range rest[:add] {
			names = append(names, p.Name)
		}
		switch {
		case star:
		case step.All() && len(names) == len(live):
			newList = fleet.AllPods + "\n" // later pods too
		default:
			// Also drops the names of pods that are gone.
			newList = fleet.FormatPods(names)
		}
		if add > 0 {
			nr.Swapped = now
			nr.Reason = fmt.Sprintf("step %s: %d of %d pods on %s, %d swapping", d.stepName(&nr), len(names), len(live), nr.CanaryVersion, swapping+add)
			d.log.Info("telling pods to swap", "step", d.stepName(&nr), "pods", names[len(names)-add:], "canary", nr.CanaryVersion)
		}
	}
	if newList == list && nr.Step == r.Step && nr.Phase == r.Phase && nr.BakeSince == r.BakeSince {
		return r, false, nil // nothing to write: the pods are working
	}
	if nr.Phase == fleet.Progressing {
		cm.Data[fleet.KeyCanaryPods] = newList
	}
	if err := d.put(ctx, cm, &nr); err != nil {
		return r, false, err
	}
	if ev != nil {
		d.record(ctx, cm, *ev)
		d.log.Info(ev.msg)
	}
	return &nr, nr.Phase == fleet.Promoted || nr.Phase == fleet.Completed && !nr.AutoPromote, nil
}

// analysisClaim decides who runs the analysis of r's current step, whose
// bake is over: wait is true while another driver's claim on it stands
// (whether or not this driver has an analysis command: the two may be
// configured apart); otherwise a non-nil claim is this driver's to write
// first, and nil means run it now (this driver holds the claim, or there is
// no command). A claim stands for the analysis timeout and two intervals: a
// driver killed while it analysed does not hold the rollout for ever.
func (d *Driver) analysisClaim(r *fleet.Rollout, now time.Time) (claim *fleet.AnalysisClaim, wait bool) {
	c := r.Analysis
	if c != nil && c.Step == r.Step {
		if c.Driver == d.opts.Name {
			return nil, false
		}
		if now.Sub(c.Since) < d.opts.AnalysisTimeout+2*d.opts.Interval {
			return nil, true
		}
	}
	if d.opts.Analysis == "" {
		return nil, false
	}
	return &fleet.AnalysisClaim{Step: r.Step, Driver: d.opts.Name, Since: now}, false
}

func (d *Driver) stepName(r *fleet.Rollout) string {
	return fmt.Sprintf("%d/%d (%s)", r.Step+1, len(r.Steps), r.Steps[r.Step])
}

// halt rolls every canary pod back: one write empties canary-pods, and each
// pod swaps back to the stable release in place.
func (d *Driver) halt(ctx context.Context, cm *core.ConfigMap, r *fleet.Rollout, why string) (*fleet.Rollout, bool, error) {
	nr := *r
	nr.Phase = fleet.RolledBack
	nr.Reason = fmt.Sprintf("halted at step %s: %s; every pod goes back to %s", d.stepName(r), why, r.StableVersion)
	nr.BakeSince = nil
	delete(cm.Data, fleet.KeyCanaryPods)
	if err := d.put(ctx, cm, &nr); err != nil {
		return r, false, err
	}
	d.metrics.Halts.Add(1)
	d.record(ctx, cm, event{reason: "RolloutHalted", warning: true, msg: fmt.Sprintf("rollout of %s %s", r.CanaryVersion, nr.Reason)})
	d.log.Warn("rollout halted", "canary", r.CanaryVersion, "reason", nr.Reason)
	return &nr, false, nil
}

// promote makes the canary the stable release in cm and returns the record.
func (d *Driver) promote(cm *core.ConfigMap, r *fleet.Rollout, why string) (*fleet.Rollout, *event) {
	nr := *r
	cm.Data[d.opts.Key] = cm.Data[d.canaryKey()]
	delete(cm.Data, d.canaryKey())
	delete(cm.Data, fleet.KeyCanaryPods)
	nr.Phase = fleet.Promoted
	nr.BakeSince = nil
	nr.Reason = fmt.Sprintf("%s is the stable release (was %s): %s", r.CanaryVersion, r.StableVersion, why)
	d.metrics.Promotions.Add(1)
	return &nr, &event{reason: "RolloutPromoted", msg: nr.Reason}
}

// Pause stops a Progressing rollout where it is: canary pods stay on the
// canary, no step advances, until Resume.
func (d *Driver) Pause(ctx context.Context, why string) (*fleet.Rollout, error) {
	return d.steer(ctx, func(cm *core.ConfigMap, r *fleet.Rollout) (*fleet.Rollout, *event, error) {
		if r.Phase != fleet.Progressing {
			return nil, nil, fmt.Errorf("%w: pause a Progressing rollout; this one is %s", ErrPhase, r.Phase)
		}
		nr := *r
		nr.Phase, nr.Reason = fleet.Paused, "paused: "+why
		return &nr, &event{reason: "RolloutPaused", msg: fmt.Sprintf("rollout of %s paused at step %s: %s", r.CanaryVersion, d.stepName(r), why)}, nil
	})
}

// Resume continues a Paused rollout; the current step's bake starts over.
func (d *Driver) Resume(ctx context.Context) (*fleet.Rollout, error) {
	return d.steer(ctx, func(cm *core.ConfigMap, r *fleet.Rollout) (*fleet.Rollout, *event, error) {
		if r.Phase != fleet.Paused {
			return nil, nil, fmt.Errorf("%w: resume a Paused rollout; this one is %s", ErrPhase, r.Phase)
		}
		nr := *r
		nr.Phase, nr.Reason, nr.BakeSince, nr.Swapped = fleet.Progressing, "resumed", nil, time.Now().UTC()
		nr.Analysis = nil // the bake starts over, and so does the analysis
		return &nr, &event{reason: "RolloutResumed", msg: fmt.Sprintf("rollout of %s resumed at step %s", r.CanaryVersion, d.stepName(r))}, nil
	})
}

// Abort stops a live rollout and sends every canary pod back to stable.
func (d *Driver) Abort(ctx context.Context, why string) (*fleet.Rollout, error) {
	return d.steer(ctx, func(cm *core.ConfigMap, r *fleet.Rollout) (*fleet.Rollout, *event, error) {
		if !r.Phase.Live() {
			return nil, nil, fmt.Errorf("%w: nothing to abort, the rollout is %s", ErrPhase, r.Phase)
		}
		nr := *r
		nr.Phase, nr.BakeSince = fleet.Aborted, nil
		nr.Reason = fmt.Sprintf("aborted at step %s: %s; every pod goes back to %s", d.stepName(r), why, r.StableVersion)
		delete(cm.Data, fleet.KeyCanaryPods)
		return &nr, &event{reason: "RolloutAborted", warning: true, msg: fmt.Sprintf("rollout of %s %s", r.CanaryVersion, nr.Reason)}, nil
	})
}

// Promote makes the canary the stable release now, whatever step the
// rollout is at: pods on the canary see the same release and do nothing,
// the others swap to it.
func (d *Driver) Promote(ctx context.Context, why string) (*fleet.Rollout, error) {
	return d.steer(ctx, func(cm *core.ConfigMap, r *fleet.Rollout) (*fleet.Rollout, *event, error) {
		if !r.Phase.Live() {
			return nil, nil, fmt.Errorf("%w: only a live rollout can be promoted; this one is %s", ErrPhase, r.Phase)
		}
		if _, ok := cm.Data[d.canaryKey()]; !ok {
			return nil, nil, fmt.Errorf("rollout: no canary manifest under %s to promote", d.canaryKey())
		}
		nr, ev := d.promote(cm, r, why)
		return nr, ev, nil
	})
}

func (d *Driver) steer(ctx context.Context, f func(cm *core.ConfigMap, r *fleet.Rollout) (*fleet.Rollout, *event, error)) (*fleet.Rollout, error) {
	return d.modify(ctx, func(cm *core.ConfigMap, r *fleet.Rollout) (*fleet.Rollout, *event, error) {
		if r == nil {
			return nil, nil, ErrNoRollout
		}
		return f(cm, r)
	})
}
