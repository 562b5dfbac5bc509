package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/kube/core"
)

// The pod annotations the Reporter keeps up to date.
const (
	AnnotationVersion    = "hotswap.dev/version"    // serving release's version
	AnnotationGeneration = "hotswap.dev/generation" // serving generation number
	AnnotationPhase      = "hotswap.dev/phase"      // hotswap.Phase
	AnnotationLastSwap   = "hotswap.dev/last-swap"  // LastSwap as JSON
	// AnnotationLastRejected is the last release a source offered that
	// verification refused (LastSwap as JSON), so an operator sees why an
	// update did not happen.
	AnnotationLastRejected = "hotswap.dev/last-rejected"
	// AnnotationHotswapVersion is the running hotswap's own version and
	// AnnotationUpgrades how often it replaced itself in place
	// (docs/upgrade.md): after `hotswap upgrade` the new one reports itself.
	AnnotationHotswapVersion = "hotswap.dev/hotswap-version"
	AnnotationUpgrades       = "hotswap.dev/upgrades"
)

// ConditionReady is the pod condition a pod's readinessGates can name.
const ConditionReady = "hotswap.dev/ready"

// LastSwap is the JSON value of the hotswap.dev/last-swap annotation.
type LastSwap struct {
	Time           time.Time `json:"time"`     // when the swap started
	Duration       string    `json:"duration"` // trigger accepted → ready or failed, e.g. "1.204s"
	Result         string    `json:"result"`   // hotswap.Result
	Reason         string    `json:"reason,omitempty"`
	ID             uint64    `json:"id"`
	Trigger        string    `json:"trigger,omitempty"`
	FromVersion    string    `json:"fromVersion,omitempty"`
	ToVersion      string    `json:"toVersion,omitempty"`
	FromGeneration int       `json:"fromGeneration,omitempty"`
	ToGeneration   int       `json:"toGeneration,omitempty"`
}

// Stats counts what the Reporter did since New.
type Stats struct {
	Observed      uint64 // events given to Observe
	Patches       uint64 // pod and pods/status patches that succeeded
	PatchErrors   uint64 // pod and pods/status patches that failed
	EventsSent    uint64 // event create/patch/update requests that succeeded
	EventErrors   uint64 // event requests that failed (the writer retries unreachable ones)
	EventsDropped uint64 // events dropped because the queue was full or by the spam filter
	LookupErrors  uint64 // failed reads of the pod's UID
}

// queue keys: one per request, so a forbidden pods/status does not hold up
// the annotations and the other way round.
type key string

const (
	keyAnnotations key = "annotations"
	keyCondition   key = "condition"
)

// eventQueueLen bounds the events waiting for the recorder; past it Observe
// drops events (counted) rather than wait.
const eventQueueLen = 256

// Reporter reports the engine's events to the pod it runs in. It implements
// hotswap.Observer. Create it with New, give it to the engine as an
// observer, and run Run in its own goroutine.
type Reporter struct {
	cfg     Config
	log     *slog.Logger
	enabled bool
	client  rest.Interface
	queue   workqueue.TypedRateLimitingInterface[key]
	events  chan hotswap.Event
	sink    *eventWriter

	mu      sync.Mutex
	want    map[key][]byte // body of the next patch per key
	applied map[key][]byte // body of the last successful patch per key
	failing map[key]string // last error per key, to log changes only
	cond    string         // status of the hotswap.dev/ready condition
	since   time.Time      // lastTransitionTime of cond
	last    hotswap.Status // the status of the last event, for bake reports
	bake    string         // the hotswap.dev/bake value, once a bake ran

	observed, patches, patchErrs, dropped, lookupErrs atomic.Uint64
	eventsSent, eventErrs                             atomic.Uint64
}

var _ hotswap.Observer = (*Reporter)(nil)

// New resolves cfg (mode, connection, the pod's identity) and returns a
// Reporter. With reporting off it returns a Reporter whose Observe and Run
// do nothing; Enabled says which. Errors say what to set to fix them.
func New(cfg Config, log *slog.Logger) (*Reporter, error) {
	if log == nil {
		log = slog.Default()
	}
	mode, err := ParseMode(string(cfg.Mode))
	if err != nil {
		return nil, err
	}
	resolved, rc, why, err := cfg.resolve()
	if err != nil {
		if mode != ModeAuto || cfg.Kubeconfig != "" || cfg.REST != nil {
			return nil, err
		}
		// auto with in-cluster detection means "report when it can": a pod
		// without a service-account token (automountServiceAccountToken:
		// false) or without the downward-API env must still serve, not
		// crash-loop. --kube=on or an explicit --kubeconfig make it an error.
		r := &Reporter{cfg: cfg, log: log.With("component", "kube")}
		r.log.Warn("kubernetes reporting off: "+err.Error(), "hint", "--kube=on makes this a start-up error; --kube=off silences it")
		return r, nil
	}
	cfg = resolved
	r := &Reporter{cfg: cfg, log: log.With("component", "kube")}
	if rc == nil {
		r.log.Info("kubernetes reporting " + why)
		return r, nil
	}
	client, err := NewCoreV1Client(rc)
	if err != nil {
		return nil, err
	}
	r.enabled = true
	r.client = client
	r.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[key](cfg.RetryBase, cfg.RetryMax),
		workqueue.TypedRateLimitingQueueConfig[key]{})
	r.events = make(chan hotswap.Event, eventQueueLen)
	r.sink = newEventWriter(client, cfg, &r.eventsSent, &r.eventErrs, &r.dropped)
	r.want = map[key][]byte{}
	r.applied = map[key][]byte{}
	r.failing = map[key]string{}
	r.log.Info("kubernetes reporting "+why, "pod", cfg.PodNamespace+"/"+cfg.PodName, "apiserver", rc.Host)
	return r, nil
}

// Enabled reports whether the Reporter talks to an apiserver.
func (r *Reporter) Enabled() bool { return r.enabled }

// Stats returns the counters.
func (r *Reporter) Stats() Stats {
	return Stats{
		Observed: r.observed.Load(), Patches: r.patches.Load(), PatchErrors: r.patchErrs.Load(),
		EventsSent: r.eventsSent.Load(), EventErrors: r.eventErrs.Load(),
		EventsDropped: r.dropped.Load(), LookupErrors: r.lookupErrs.Load(),
	}
}

// Errors is the number of failed requests of any kind (patches, events, pod
// lookups); the admin endpoint exports it as the report-errors metric.
func (r *Reporter) Errors() uint64 {
	return r.patchErrs.Load() + r.eventErrs.Load() + r.lookupErrs.Load()
}

// Observe records the state after e as the one to report and queues e's
// Kubernetes event. It never blocks on the network: it takes one short lock
// and returns.
func (r *Reporter) Observe(e hotswap.Event) {
	if !r.enabled {
		return
	}
	r.observed.Add(1)
	ann, cond := r.bodies(e)
	r.mu.Lock()
	r.last = e.Status
	changedAnn := !bytes.Equal(ann, r.want[keyAnnotations])
	r.want[keyAnnotations] = ann
	changedCond := !bytes.Equal(cond, r.want[keyCondition])
	r.want[keyCondition] = cond
	r.mu.Unlock()
	if changedAnn {
		r.queue.Add(keyAnnotations)
	}
	if changedCond {
		r.queue.Add(keyCondition)
	}
	if e.Type == hotswap.StatusChanged {
		return // not one of the events operators look for in kubectl describe
	}
	select {
	case r.events <- e:
	default:
		r.dropped.Add(1)
	}
}

// bodies returns the merge patch for the annotations and the strategic merge
// patch for the condition that describe e.Status.
func (r *Reporter) bodies(e hotswap.Event) (ann, cond []byte) {
	st := e.Status
	a := map[string]string{
		AnnotationVersion:    st.Version,
		AnnotationGeneration: strconv.Itoa(st.Generation),
		AnnotationPhase:      string(st.Phase),
	}
	if st.Hotswap != "" {
		a[AnnotationHotswapVersion] = st.Hotswap
		a[AnnotationUpgrades] = strconv.Itoa(st.Upgrades)
	}
	if st.LastSwap != nil {
		a[AnnotationLastSwap] = lastSwapJSON(st.LastSwap)
	}
	if st.LastRejected != nil {
		a[AnnotationLastRejected] = lastSwapJSON(st.LastRejected)
	}
	r.mu.Lock()
	if r.bake != "" {
		a[AnnotationBake] = r.bake
	}
	r.mu.Unlock()
	ann = mustJSON(map[string]any{"metadata": map[string]any{"annotations": a}})

	status, reason, msg := core.ConditionFalse, string(st.Phase), ""
	switch {
	case st.Generation == 0:
		reason, msg = "NotServing", "no generation serves"
		if st.Phase != "" {
			reason = string(st.Phase)
		}
	case st.Phase == hotswap.PhaseServing:
		status, msg = core.ConditionTrue, fmt.Sprintf("generation %d (%s) serves", st.Generation, st.Version)
	case st.Phase == hotswap.PhaseSwapping && !r.cfg.UnreadyDuringSwap:
		status, msg = core.ConditionTrue, fmt.Sprintf("generation %d (%s) serves; a swap runs", st.Generation, st.Version)
	default:
		msg = fmt.Sprintf("generation %d (%s): %s", st.Generation, st.Version, st.Phase)
	}
	r.mu.Lock()
	if status != r.cond || r.since.IsZero() {
		r.cond, r.since = status, e.Time
		if r.since.IsZero() {
			r.since = time.Now()
		}
	}
	since := r.since
	r.mu.Unlock()
	cond = mustJSON(map[string]any{"status": map[string]any{"conditions": []map[string]any{{
		"type": string(ConditionReady), "status": string(status), "reason": reason, "message": msg,
		"lastTransitionTime": since.UTC().Format(time.RFC3339),
	}}}})
	return ann, cond
}

func lastSwapJSON(s *hotswap.SwapResult) string {
	return string(mustJSON(LastSwap{
		Time: s.Started.UTC(), Duration: s.Duration.Round(time.Millisecond).String(), Result: string(s.Result),
		Reason: s.Reason, ID: s.ID, Trigger: s.Trigger, FromVersion: s.FromVersion, ToVersion: s.ToVersion,
		FromGeneration: s.FromGen, ToGeneration: s.ToGen,
	}))
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("kube: marshal %T: %v", v, err)) // only maps of strings and plain structs
	}
	return b
}

// Run patches the pod and records events until ctx ends, then makes one
// last attempt (bounded by the request timeout) to report the final state.
// It returns nil at once when reporting is off. Call it once.
func (r *Reporter) Run(ctx context.Context) error {
	if !r.enabled {
		return nil
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.recordEvents(ctx) })
	wg.Go(func() {
		for r.processNext(ctx) {
		}
	})
	<-ctx.Done()
	r.queue.ShutDown()
	wg.Wait()

	final, cancel := context.WithTimeout(context.Background(), r.cfg.RequestTimeout)
	defer cancel()
	for _, k := range []key{keyAnnotations, keyCondition} {
		_ = r.sync(final, k) // logged and counted in sync
	}
	return nil
}

func (r *Reporter) processNext(ctx context.Context) bool {
	k, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(k)
	if err := r.sync(ctx, k); err != nil {
		r.queue.AddRateLimited(k)
		return true
	}
	r.queue.Forget(k)
	return true
}

// sync sends the latest body for k unless the apiserver already has it.
func (r *Reporter) sync(ctx context.Context, k key) error {
	r.mu.Lock()
	body := r.want[k]
	same := bytes.Equal(body, r.applied[k])
	r.mu.Unlock()
	if body == nil || same {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	req := r.client.Patch(types.MergePatchType)
	if k == keyCondition {
		// Strategic merge: conditions merge by type, so the kubelet's
		// conditions (Ready, ContainersReady, ...) stay as they are.
		req = r.client.Patch(types.StrategicMergePatchType).SubResource("status")
	}
	err := req.Namespace(r.cfg.PodNamespace).Resource("pods").Name(r.cfg.PodName).Body(body).Do(rctx).Error()

	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil && ctx.Err() != nil {
		return err // shutting down: Run's final flush sends it again; not an apiserver error
	}
	if err != nil {
		r.patchErrs.Add(1)
		if msg := err.Error(); r.failing[k] != msg {
			r.failing[k] = msg
			r.log.Warn("cannot report to kubernetes; serving is unaffected, retrying with backoff",
				"what", string(k), "pod", r.cfg.PodNamespace+"/"+r.cfg.PodName, "err", err)
		}
		return fmt.Errorf("kube: patch %s of pod %s/%s: %w", k, r.cfg.PodNamespace, r.cfg.PodName, err)
	}
	r.patches.Add(1)
	r.applied[k] = body
	if r.failing[k] != "" {
		delete(r.failing, k)
		r.log.Info("reporting to kubernetes again", "what", string(k), "pod", r.cfg.PodNamespace+"/"+r.cfg.PodName)
	}
	return nil
}

// recordEvents hands queued events to the event writer, which sends them
// with its own retries, spam filter and repeat counting. Events name the pod
// by UID so kubectl describe finds them; the UID is read once (pods get).
func (r *Reporter) recordEvents(ctx context.Context) {
	ref := core.ObjectReference{
		Kind: "Pod", APIVersion: "v1", Namespace: r.cfg.PodNamespace, Name: r.cfg.PodName, UID: types.UID(r.cfg.PodUID),
	}
	var next time.Time
	backoff := r.cfg.RetryBase
	lookup := func() {
		if ref.UID != "" || time.Now().Before(next) {
			return
		}
		uid, err := r.podUID(ctx)
		if err != nil {
			r.lookupErrs.Add(1)
			r.log.Warn("cannot read the pod's UID; events are recorded without it and kubectl describe may not show them",
				"pod", r.cfg.PodNamespace+"/"+r.cfg.PodName, "err", err)
			next, backoff = time.Now().Add(backoff), min(2*backoff, r.cfg.RetryMax)
			return
		}
		ref.UID = uid
	}
	lookup()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-r.events:
			lookup()
			typ := core.EventTypeNormal
			if e.Warning {
				typ = core.EventTypeWarning
			}
			at := e.Time
			if at.IsZero() {
				at = time.Now()
			}
			r.sink.write(ctx, ref, typ, string(e.Type), e.Message, at)
		}
	}
}

func (r *Reporter) podUID(ctx context.Context) (types.UID, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	pod := &core.Pod{}
	if err := r.client.Get().Namespace(r.cfg.PodNamespace).Resource("pods").Name(r.cfg.PodName).Do(ctx).Into(pod); err != nil {
		return "", fmt.Errorf("kube: get pod %s/%s: %w", r.cfg.PodNamespace, r.cfg.PodName, err)
	}
	return pod.UID, nil
}
