package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"

	"github.com/hotswap-dev/hotswap/hotswap/fleet"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
	"github.com/hotswap-dev/hotswap/hotswap/kube/core"
	"github.com/hotswap-dev/hotswap/hotswap/source"
)

// DefaultKey is the stable manifest's key, as the pods' --configmap-key default.
const DefaultKey = "release.yaml"

// The errors Drive and the steering calls return, checked with errors.Is.
var (
	// ErrNoRollout: the ConfigMap holds no rollout record.
	ErrNoRollout = errors.New("rollout: no rollout in the ConfigMap")
	// ErrInProgress: Start found another live rollout.
	ErrInProgress = errors.New("rollout: another rollout is under way")
	// ErrRolledBack: a bad sign halted the rollout and the pods went back.
	ErrRolledBack = errors.New("rollout: halted and rolled back")
	// ErrAborted: an operator aborted the rollout.
	ErrAborted = errors.New("rollout: aborted")
	// ErrPhase: the call does not apply to the rollout's phase.
	ErrPhase = errors.New("rollout: not possible in this phase")
)

// Options configure a Driver.
type Options struct {
	// REST is the apiserver connection.
	REST *rest.Config
	// Namespace and ConfigMap name the release ConfigMap (the pods' --configmap).
	Namespace, ConfigMap string
	// Key is the stable manifest's key (the pods' --configmap-key); default DefaultKey.
	Key string
	// Interval is how often Drive looks at the pods; default 1s.
	Interval time.Duration
	// Analysis, when set, runs as `sh -c Analysis` after each step's bake;
	// a non-zero exit rolls back. AnalysisTimeout bounds it (default 1m).
	Analysis        string
	AnalysisTimeout time.Duration
	// Forever keeps Drive running after a rollout ends, waiting for the
	// next one (the in-cluster driver).
	Forever bool
	// Name identifies this driver in the record and in events; default host/pid.
	Name string
	Log  *slog.Logger
}

// Driver drives the rollouts recorded in one release ConfigMap.
type Driver struct {
	opts     Options
	c        rest.Interface
	log      *slog.Logger
	metrics  Metrics
	podCache podCache
	// watching: Drive runs, pods come from the informer (podCache).
	watching atomic.Bool
}

// New checks opts and builds the client. Nothing is contacted until a call.
func New(opts Options) (*Driver, error) {
	if opts.REST == nil {
		return nil, errors.New("rollout: no apiserver connection")
	}
	if opts.Namespace == "" || opts.ConfigMap == "" {
		return nil, errors.New("rollout: the release ConfigMap's namespace and name are required")
	}
	if opts.Key == "" {
		opts.Key = DefaultKey
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.AnalysisTimeout <= 0 {
		opts.AnalysisTimeout = time.Minute
	}
	if opts.Name == "" {
		host, _ := os.Hostname()
		opts.Name = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	c, err := kube.NewCoreV1Client(opts.REST)
	if err != nil {
		return nil, fmt.Errorf("rollout: %w", err)
	}
	return &Driver{opts: opts, c: c, log: opts.Log.With("configmap", opts.Namespace+"/"+opts.ConfigMap)}, nil
}

func (d *Driver) canaryKey() string { return fleet.CanaryKey(d.opts.Key) }

// get reads the ConfigMap (a quorum read: its resourceVersion is the one
// the next write is conditioned on) and its rollout record.
func (d *Driver) get(ctx context.Context) (*core.ConfigMap, *fleet.Rollout, error) {
	cm := &core.ConfigMap{}
	d.metrics.Reads.Add(1)
	if err := d.c.Get().Namespace(d.opts.Namespace).Resource("configmaps").Name(d.opts.ConfigMap).Do(ctx).Into(cm); err != nil {
		d.metrics.APIErrors.Add(1)
		return nil, nil, fmt.Errorf("rollout: read configmap %s/%s: %w", d.opts.Namespace, d.opts.ConfigMap, err)
	}
	r, err := fleet.ParseRollout(cm.Data[fleet.KeyRollout])
	if err != nil {
		return nil, nil, fmt.Errorf("rollout: configmap %s/%s: %w", d.opts.Namespace, d.opts.ConfigMap, err)
	}
	return cm, r, nil
}

// put writes cm and r back, conditioned on cm's resourceVersion: a Conflict
// means another writer came first, and the caller decides again.
func (d *Driver) put(ctx context.Context, cm *core.ConfigMap, r *fleet.Rollout) error {
	r.Updated = time.Now().UTC()
	r.Driver = d.opts.Name
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[fleet.KeyRollout] = r.Format()
	d.metrics.Writes.Add(1)
	err := d.c.Put().Namespace(d.opts.Namespace).Resource("configmaps").Name(cm.Name).Body(cm).Do(ctx).Into(cm)
	if apierrors.IsConflict(err) {
		d.metrics.Conflicts.Add(1)
		return err
	}
	if err != nil {
		d.metrics.APIErrors.Add(1)
		return fmt.Errorf("rollout: write configmap %s/%s: %w", d.opts.Namespace, d.opts.ConfigMap, err)
	}
	return nil
}

// modify applies f to a fresh read and writes the result, again on every
// Conflict: f decides from what the object says now. f returning errNoWrite
// ends without writing.
func (d *Driver) modify(ctx context.Context, f func(cm *core.ConfigMap, r *fleet.Rollout) (*fleet.Rollout, *event, error)) (*fleet.Rollout, error) {
	for {
		cm, r, err := d.get(ctx)
		if err != nil {
			return nil, err
		}
		nr, ev, err := f(cm, r)
		if errors.Is(err, errNoWrite) {
			return r, nil
		}
		if err != nil {
			return r, err
		}
		err = d.put(ctx, cm, nr)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ev != nil {
			d.record(ctx, cm, *ev)
		}
		return nr, nil
	}
}

var errNoWrite = errors.New("no write")

// Spec is what Start records: the release and how to take it through.
type Spec struct {
	// Manifest is the canary release manifest (docs/sources.md).
	Manifest []byte
	// Deployment or Selector names the pods (one of them).
	Deployment, Selector string
	// Steps: see fleet.ParseSteps; default 1,25%,50%,100%.
	Steps []fleet.Step
	// Bake is the health bake per step; SwapTimeout how long a pod may
	// take to serve the canary (default 2m); MaxSwapping the cap on pods
	// swapping at once (default 1... at least 1).
	Bake, SwapTimeout time.Duration
	MaxSwapping       int
	// AutoPromote makes the canary stable after the last step.
	AutoPromote bool
}

// Start records a new rollout of spec.Manifest in the ConfigMap (phase
// Progressing, no pod on the canary yet); Drive takes it from there.
// Starting the same release to the same pods again while it is live is not
// an error (a re-run after a killed driver); another live rollout is
// ErrInProgress.
func (d *Driver) Start(ctx context.Context, spec Spec) (*fleet.Rollout, error) {
	man, err := source.ParseManifest(spec.Manifest)
	if err != nil {
		return nil, fmt.Errorf("rollout: the canary manifest: %w", err)
	}
	if len(spec.Steps) == 0 {
		spec.Steps, _ = fleet.ParseSteps("1,25%,50%,100%")
	}
	if spec.MaxSwapping <= 0 {
		spec.MaxSwapping = 1
	}
	if spec.SwapTimeout <= 0 {
		spec.SwapTimeout = 2 * time.Minute
	}
	target := fleet.Target{Deployment: spec.Deployment, Selector: spec.Selector}
	switch {
	case spec.Deployment != "" && spec.Selector != "":
		return nil, errors.New("rollout: give a Deployment or a selector, not both")
	case spec.Deployment != "":
		if target.Selector, err = d.deploymentSelector(ctx, spec.Deployment); err != nil {
			return nil, err
		}
	case spec.Selector != "":
		sel, err := labels.Parse(spec.Selector)
		if err != nil {
			return nil, fmt.Errorf("rollout: selector %q: %w", spec.Selector, err)
		}
		if sel.Empty() {
			return nil, fmt.Errorf("rollout: selector %q selects every pod of the namespace; name the pods", spec.Selector)
		}
		target.Selector = sel.String()
	default:
		return nil, errors.New("rollout: name the pods: a Deployment or a label selector")
	}
	manifest := string(spec.Manifest)
	return d.modify(ctx, func(cm *core.ConfigMap, r *fleet.Rollout) (*fleet.Rollout, *event, error) {
		if r != nil && r.Phase.Live() {
			if cm.Data[d.canaryKey()] == manifest && r.Target == target {
				return nil, nil, errNoWrite // the same rollout: continue it
			}
			return nil, nil, fmt.Errorf("%w: %s of %s is %s at step %d/%d (started %s by %s); abort or promote it first",
				ErrInProgress, r.CanaryVersion, r.Target, r.Phase, r.Step+1, len(r.Steps), r.Started.Format(time.RFC3339), r.Driver)
		}
		stable, ok := cm.Data[d.opts.Key]
		if !ok {
			return nil, nil, fmt.Errorf("rollout: configmap %s/%s has no stable release under %s: put one there first (a plain update, no rollout)",
				d.opts.Namespace, d.opts.ConfigMap, d.opts.Key)
		}
		sm, err := source.ParseManifest([]byte(stable))
		if err != nil {
			return nil, nil, fmt.Errorf("rollout: the stable manifest under %s: %w", d.opts.Key, err)
		}
		if stable == manifest {
			return nil, nil, fmt.Errorf("rollout: %s is already the stable release", man.Version)
		}
		now := time.Now().UTC()
		nr := &fleet.Rollout{
			Target: target, Steps: spec.Steps, Bake: fleet.Duration(spec.Bake), MaxSwapping: spec.MaxSwapping,
			SwapTimeout: fleet.Duration(spec.SwapTimeout), AutoPromote: spec.AutoPromote,
			StableVersion: sm.Version, CanaryVersion: man.Version,
			Phase: fleet.Progressing, Started: now, Swapped: now,
			Reason: "started",
		}
		cm.Data[d.canaryKey()] = manifest
		delete(cm.Data, fleet.KeyCanaryPods)
		return nr, &event{reason: "RolloutStarted", msg: fmt.Sprintf("rollout of %s (stable %s) to %s in steps %s, bake %s",
			man.Version, sm.Version, target, stepsString(spec.Steps), spec.Bake)}, nil
	})
}

func stepsString(steps []fleet.Step) string {
	s := make([]string, len(steps))
	for i, st := range steps {
		s[i] = st.String()
	}
	return strings.Join(s, ",")
}

// deploymentSelector reads a Deployment's pod selector. The Deployment is
// read as plain JSON so hotswap links no apps/v1 types.
func (d *Driver) deploymentSelector(ctx context.Context, name string) (string, error) {
	raw, err := d.c.Get().AbsPath("/apis/apps/v1/namespaces", d.opts.Namespace, "deployments", name).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("rollout: read deployment %s/%s: %w", d.opts.Namespace, name, err)
	}
	var dep struct {
		Spec struct {
			Selector *metav1.LabelSelector `json:"selector"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(raw, &dep); err != nil {
		return "", fmt.Errorf("rollout: deployment %s/%s: %w", d.opts.Namespace, name, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil || sel.Empty() {
		return "", fmt.Errorf("rollout: deployment %s/%s: unusable selector: %v", d.opts.Namespace, name, err)
	}
	return sel.String(), nil
}

// pods returns the target's pods: from the informer while Drive runs (once
// it has synced), else a list from the apiserver's watch cache
// (resourceVersion 0: no etcd read).
func (d *Driver) pods(ctx context.Context, selector string) ([]Pod, error) {
	if d.watching.Load() {
		if pods, ok := d.cachedPods(ctx, selector); ok {
			return pods, nil
		}
	}
	list := &core.PodList{}
	d.metrics.PodLists.Add(1)
	err := d.c.Get().Namespace(d.opts.Namespace).Resource("pods").
		VersionedParams(&metav1.ListOptions{LabelSelector: selector, ResourceVersion: "0"}, kube.ParameterCodec).
		Do(ctx).Into(list)
	if err != nil {
		d.metrics.APIErrors.Add(1)
		return nil, fmt.Errorf("rollout: list pods %s in %s: %w", selector, d.opts.Namespace, err)
	}
	out := make([]Pod, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, ReadPod(&list.Items[i]))
	}
	slices.SortFunc(out, func(a, b Pod) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
