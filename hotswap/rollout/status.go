package rollout

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap/fleet"
)

// Report is where a rollout stands: the record and every target pod.
type Report struct {
	ConfigMap string         `json:"configMap"`
	Rollout   *fleet.Rollout `json:"rollout"`
	Pods      []PodReport    `json:"pods"`
}

// PodReport is one pod as `hotswap rollout status` shows it.
type PodReport struct {
	Pod
	Track fleet.Track `json:"track"`
	// Check is the driver's verdict on a canary pod (empty on stable), and
	// Why the reason when it is not healthy.
	Check string `json:"check,omitempty"`
	Why   string `json:"why,omitempty"`
}

// Status reads the rollout and its pods.
func (d *Driver) Status(ctx context.Context) (*Report, error) {
	cm, r, err := d.get(ctx)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("%w %s/%s", ErrNoRollout, d.opts.Namespace, d.opts.ConfigMap)
	}
	pods, err := d.pods(ctx, r.Target.Selector)
	if err != nil {
		return nil, err
	}
	rep := &Report{ConfigMap: d.opts.Namespace + "/" + d.opts.ConfigMap, Rollout: r}
	list := cm.Data[fleet.KeyCanaryPods]
	_, hasCanary := cm.Data[d.canaryKey()]
	now := time.Now()
	for _, p := range pods {
		pr := PodReport{Pod: p, Track: fleet.Stable}
		if hasCanary && fleet.OnCanary(list, p.Name) {
			pr.Track = fleet.Canary
			if r.Phase == fleet.Progressing || r.Phase == fleet.Paused {
				v, why := Check(p, r, now)
				pr.Check, pr.Why = v.String(), why
			}
		}
		rep.Pods = append(rep.Pods, pr)
	}
	return rep, nil
}

// WriteTable writes the report for a person: the rollout in a few lines,
// then one line per pod.
func (rep *Report) WriteTable(w io.Writer, now time.Time) error {
	r := rep.Rollout
	step := ""
	if r.Step < len(r.Steps) {
		step = fmt.Sprintf("%d/%d (%s)", r.Step+1, len(r.Steps), r.Steps[r.Step])
	}
	canary := 0
	for _, p := range rep.Pods {
		if p.Track == fleet.Canary {
			canary++
		}
	}
	fmt.Fprintf(w, "Rollout:  %s of %s → %s (configmap %s)\n", r.CanaryVersion, r.StableVersion, r.Target, rep.ConfigMap)
	fmt.Fprintf(w, "Phase:    %s, step %s, %d of %d pods on the canary\n", r.Phase, step, canary, len(rep.Pods))
	fmt.Fprintf(w, "Steps:    %s, bake %s, max swapping %d\n", stepsString(r.Steps), time.Duration(r.Bake), r.MaxSwapping)
	fmt.Fprintf(w, "Started:  %s ago; updated %s ago by %s\n", age(now, r.Started), age(now, r.Updated), r.Driver)
	if r.Reason != "" {
		fmt.Fprintf(w, "Reason:   %s\n", r.Reason)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tTRACK\tVERSION\tGEN\tSTATE\tREADY\tRESTARTS\tLAST SWAP\tCHECK")
	for _, p := range rep.Pods {
		state := p.Phase
		if p.Terminating {
			state = "Terminating"
		}
		if b := p.Bake; b != nil && b.Version == p.Version && b.Result != "" {
			state += "/" + b.Result
		}
		ready := "no"
		if p.Ready && p.HotswapReady {
			ready = "yes"
		} else if p.Ready != p.HotswapReady {
			ready = "partly"
		}
		last := "-"
		if s := p.LastSwap; s != nil {
			last = fmt.Sprintf("%s %s→%s %s ago", s.Result, s.FromVersion, s.ToVersion, age(now, s.Time))
			if s.Reason != "" && s.Result != "succeeded" {
				last += ": " + s.Reason
			}
		}
		check := p.Check
		if p.Why != "" {
			check += ": " + p.Why
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", p.Name, p.Track, dash(p.Version), p.Generation, dash(state), ready, p.Restarts, oneLine(last), oneLine(check))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func age(now, t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Hour).String()
}
