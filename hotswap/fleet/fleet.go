package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The ConfigMap keys besides the stable manifest's (whose name is the
// source's --configmap-key, release.yaml by default).
const (
	// KeyCanaryPods lists the pods that run the canary manifest: pod names
	// separated by newlines (or commas, or blanks), or "*" for every pod.
	// Empty or absent: no pod runs the canary.
	KeyCanaryPods = "canary-pods"
	// KeyRollout is the rollout driver's record (Rollout as JSON). Pods
	// never read it; people and drivers do.
	KeyRollout = "rollout.json"
	// AllPods in KeyCanaryPods puts every pod on the canary, including pods
	// that start later (the last step of a rollout).
	AllPods = "*"
)

// CanaryKey is the key of the canary manifest beside the stable one at key:
// release.yaml → release.canary.yaml; a key without ".yaml" gets ".canary".
func CanaryKey(key string) string {
	if stem, ok := strings.CutSuffix(key, ".yaml"); ok {
		return stem + ".canary.yaml"
	}
	return key + ".canary"
}

// Track says which of the two manifests a pod runs.
type Track string

// The two tracks.
const (
	Stable Track = "stable"
	Canary Track = "canary"
)

// ReleaseFor returns the manifest pod should run, read from a ConfigMap's
// data, and on which track: the canary manifest when the pod is listed in
// KeyCanaryPods (or the list is "*") and a canary manifest is there; the
// stable one otherwise. ok is false when the chosen manifest's key is
// missing. A pod with no name (not in a pod, no downward API) is stable.
func ReleaseFor(data map[string]string, key, pod string) (manifest string, track Track, ok bool) {
	if c, has := data[CanaryKey(key)]; has && pod != "" && OnCanary(data[KeyCanaryPods], pod) {
		return c, Canary, true
	}
	m, has := data[key]
	return m, Stable, has
}

// OnCanary reports whether list (the KeyCanaryPods value) names pod.
func OnCanary(list, pod string) bool {
	for _, p := range ParsePods(list) {
		if p == AllPods || p == pod {
			return true
		}
	}
	return false
}

// ParsePods splits a KeyCanaryPods value into names.
func ParsePods(list string) []string {
	return strings.FieldsFunc(list, func(r rune) bool { return r == '\n' || r == ',' || r == ' ' || r == '\t' || r == '\r' })
}

// FormatPods is the KeyCanaryPods value for names: sorted, one a line, so a
// diff of the ConfigMap reads well.
func FormatPods(names []string) string {
	s := slices.Clone(names)
	slices.Sort(s)
	s = slices.Compact(s)
	if len(s) == 0 {
		return ""
	}
	return strings.Join(s, "\n") + "\n"
}

// Phase is where a rollout stands.
type Phase string

// The phases. Progressing and Paused are live; the rest are final until the
// next rollout starts.
const (
	// Progressing: the driver moves canary pods forward step by step.
	Progressing Phase = "Progressing"
	// Paused: an operator stopped the steps; canary pods stay where they are.
	Paused Phase = "Paused"
	// Completed: every step baked; the canary runs everywhere and waits for
	// promote.
	Completed Phase = "Completed"
	// Promoted: the canary became the stable release.
	Promoted Phase = "Promoted"
	// RolledBack: a bad sign halted the rollout and every pod went back to
	// stable. Reason says why.
	RolledBack Phase = "RolledBack"
	// Aborted: an operator stopped the rollout; every pod went back to stable.
	Aborted Phase = "Aborted"
)

// Live reports whether a rollout in phase p is still under way.
func (p Phase) Live() bool { return p == Progressing || p == Paused || p == Completed }

// Target names the pods a rollout covers: a Deployment's (its selector is
// read when the rollout starts) or a label selector's.
type Target struct {
	Deployment string `json:"deployment,omitempty"`
	// Selector is a label selector in kubectl's syntax (app=web,tier!=db).
	Selector string `json:"selector"`
}

func (t Target) String() string {
	if t.Deployment != "" {
		return "deployment/" + t.Deployment
	}
	return "pods " + t.Selector
}

// Rollout is the driver's record, stored as JSON under KeyRollout. It is
// the rollout's whole state: a driver killed and started again continues
// from it, and every write to it carries the ConfigMap's resourceVersion,
// so two drivers never both act on the same state.
type Rollout struct {
	// Target, Steps, Bake and MaxSwapping are the spec, fixed at start.
	Target Target `json:"target"`
	Steps  []Step `json:"steps"`
	// Bake is how long each step's pods must stay healthy before the next.
	Bake Duration `json:"bake"`
	// MaxSwapping caps the pods told to swap at once.
	MaxSwapping int `json:"maxSwapping"`
	// SwapTimeout is how long a pod may take to report the canary.
	SwapTimeout Duration `json:"swapTimeout"`
	// AutoPromote makes the canary stable when the last step has baked.
	AutoPromote bool `json:"autoPromote"`

	StableVersion string `json:"stableVersion"`
	CanaryVersion string `json:"canaryVersion"`

	Phase Phase `json:"phase"`
	// Step indexes Steps: the step being reached or baked.
	Step int `json:"step"`
	// Swapped is when the driver last told pods to swap (added names to
	// KeyCanaryPods); a pod's SwapTimeout counts from it, or from the pod's
	// creation if later.
	Swapped time.Time `json:"swapped"`
	// BakeSince is when every pod of the step reported the canary healthy;
	// nil while pods are still swapping.
	BakeSince *time.Time `json:"bakeSince,omitempty"`
	// Analysis is the claim of the driver that runs the current step's
	// analysis command, written (conditioned on the resourceVersion) before
	// the command runs: of two drivers only the one whose claim was written
	// runs it, the other waits for its verdict.
	Analysis *AnalysisClaim `json:"analysis,omitempty"`
	// Settled is set once every pod serves stable again after a rollback
	// or an abort.
	Settled bool `json:"settled,omitempty"`
	// Reason says why the phase is what it is, for people at 2 am.
	Reason  string    `json:"reason,omitempty"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// Driver names the driver that wrote last (host/pid), for people.
	Driver string `json:"driver,omitempty"`
}

// AnalysisClaim names the driver running a step's analysis and since when.
type AnalysisClaim struct {
	Step   int       `json:"step"`
	Driver string    `json:"driver"`
	Since  time.Time `json:"since"`
}

// ParseRollout reads a KeyRollout value. An empty value is no rollout.
func ParseRollout(s string) (*Rollout, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	r := &Rollout{}
	if err := json.Unmarshal([]byte(s), r); err != nil {
		return nil, fmt.Errorf("fleet: %s is not a rollout record: %w", KeyRollout, err)
	}
	return r, nil
}

// Format is the KeyRollout value: indented JSON, readable in kubectl get -o yaml.
func (r *Rollout) Format() string {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("fleet: marshal rollout: %v", err)) // plain struct
	}
	return string(b) + "\n"
}

// Step is one step of a rollout: a number of pods, or a percentage of them.
type Step struct {
	Pods    int `json:"pods,omitempty"`
	Percent int `json:"percent,omitempty"`
}

func (s Step) String() string {
	if s.Percent > 0 {
		return fmt.Sprintf("%d%%", s.Percent)
	}
	return fmt.Sprint(s.Pods)
}

// Of is how many of total pods the step puts on the canary: at least one,
// at most total; a percentage rounds up.
func (s Step) Of(total int) int {
	n := s.Pods
	if s.Percent > 0 {
		n = (s.Percent*total + 99) / 100
	}
	return max(min(n, total), min(1, total))
}

// All reports whether the step covers every pod, including pods that start
// later: KeyCanaryPods becomes "*".
func (s Step) All() bool { return s.Percent == 100 }

// ErrSteps is wrapped by ParseSteps' errors.
var ErrSteps = errors.New("invalid steps")

// ParseSteps reads "1,25%,50%,100%": pod counts or percentages, growing.
// A list that does not end at 100% gets it appended: a rollout always ends
// with every pod on the canary.
func ParseSteps(s string) ([]Step, error) {
	var steps []Step
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		var st Step
		var err error
		if p, ok := strings.CutSuffix(f, "%"); ok {
			_, err = fmt.Sscanf(p, "%d", &st.Percent)
			if err == nil && (st.Percent < 1 || st.Percent > 100 || fmt.Sprint(st.Percent) != p) {
				err = errors.New("a percentage is 1% to 100%")
			}
		} else {
			_, err = fmt.Sscanf(f, "%d", &st.Pods)
			if err == nil && (st.Pods < 1 || fmt.Sprint(st.Pods) != f) {
				err = errors.New("a pod count is 1 or more")
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %q: step %q: %v (e.g. 1,25%%,50%%,100%%)", ErrSteps, s, f, err)
		}
		steps = append(steps, st)
	}
	for i := 1; i < len(steps); i++ {
		a, b := steps[i-1], steps[i]
		if a.Percent > 0 && b.Percent > 0 && b.Percent <= a.Percent || a.Pods > 0 && b.Pods > 0 && b.Pods <= a.Pods {
			return nil, fmt.Errorf("%w: %q: steps must grow (%s then %s)", ErrSteps, s, a, b)
		}
	}
	if len(steps) == 0 || !steps[len(steps)-1].All() {
		steps = append(steps, Step{Percent: 100})
	}
	return steps, nil
}

// Duration is a time.Duration written as "30s" in JSON.
type Duration time.Duration

// MarshalJSON writes "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
