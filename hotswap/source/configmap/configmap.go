package configmap

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/fleet"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
	"github.com/hotswap-dev/hotswap/hotswap/kube/core"
	"github.com/hotswap-dev/hotswap/hotswap/source"
)

// DefaultKey is the ConfigMap key holding the manifest (--configmap-key).
const DefaultKey = "release.yaml"

// Rule is one RBAC rule the source needs, in the shape of kube.Rule.
type Rule = kube.Rule

// RequiredRules is exactly what the source needs in the ConfigMap's
// namespace. RBAC cannot restrict list and watch by resourceNames, so the
// chart grants them on configmaps; get can be limited to the one name.
func RequiredRules() []Rule {
	return []Rule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}}}
}

// namespaceFile is where the service-account volume names the pod's namespace.
const namespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// ParseRef reads --configmap [NAMESPACE/]NAME. Without a namespace it is
// $POD_NAMESPACE, then the pod's service-account namespace, then "default".
func ParseRef(s string) (namespace, name string, err error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok {
		ns, name = "", s
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", "", fmt.Errorf("configmap %q: name %q is not a valid ConfigMap name (%s); want [NAMESPACE/]NAME", s, name, strings.Join(errs, "; "))
	}
	if ok {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return "", "", fmt.Errorf("configmap %q: namespace %q is not valid (%s); want [NAMESPACE/]NAME", s, ns, strings.Join(errs, "; "))
		}
		return ns, name, nil
	}
	if ns = os.Getenv(kube.EnvPodNamespace); ns != "" {
		return ns, name, nil
	}
	if b, err := os.ReadFile(namespaceFile); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b)), name, nil
	}
	return "default", name, nil
}

// CheckKey checks --configmap-key.
func CheckKey(key string) error {
	if errs := validation.IsConfigMapKey(key); len(errs) > 0 {
		return fmt.Errorf("configmap key %q: %s", key, strings.Join(errs, "; "))
	}
	return nil
}

// Options configure a Source.
type Options struct {
	Namespace, Name string
	// Key is the data key holding the manifest (default DefaultKey).
	Key string
	// PodName is this pod's name ($POD_NAME): a pod listed in the
	// ConfigMap's canary-pods runs the canary manifest (docs/rollout.md).
	// Empty means $POD_NAME (the downward API env the chart sets, which
	// reporting reads too); without either, always the stable manifest.
	PodName string
	// REST is the apiserver connection (kube.RESTConfig).
	REST *rest.Config
	// Base and Root: see source.ManifestOptions.
	Base hotswap.Release
	Root string
	// SyncTimeout is how long Run waits for the first list before it says
	// that it cannot read the ConfigMap (it keeps trying); default 10s.
	SyncTimeout time.Duration
	Log         *slog.Logger
}

// Source offers the release described by one key of one ConfigMap.
type Source struct {
	opts Options
	lw   *cache.ListWatch
	name string
	log  *slog.Logger

	mu      sync.Mutex
	lastErr string            // last list/watch error, said once
	lastSum [sha256.Size]byte // manifest last handed on; touched by the informer's handler goroutine only
}

// New builds the client and the list-watch on the one ConfigMap. Nothing is
// contacted until Run.
func New(opts Options) (*Source, error) {
	if opts.Key == "" {
		opts.Key = DefaultKey
	}
	if opts.Namespace == "" || opts.Name == "" {
		return nil, errors.New("configmap: namespace and name are required")
	}
	if err := CheckKey(opts.Key); err != nil {
		return nil, err
	}
	if opts.REST == nil {
		return nil, errors.New("configmap: no apiserver connection")
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.PodName == "" {
		opts.PodName = os.Getenv(kube.EnvPodName)
	}
	rc, err := kube.NewCoreV1Client(opts.REST)
	if err != nil {
		return nil, fmt.Errorf("configmap: %w", err)
	}
	s := &Source{
		opts: opts,
		lw:   cache.NewListWatchFromClient(rc, "configmaps", opts.Namespace, fields.OneTermEqualSelector("metadata.name", opts.Name)),
		name: fmt.Sprintf("configmap:%s/%s", opts.Namespace, opts.Name),
	}
	s.log = opts.Log.With("source", s.name, "key", opts.Key)
	// The reflector's streaming list (WatchListClient) retries failed
	// requests itself and tells no error handler: see every failed request
	// here, so a missing Role or apiserver is reported, not only retried.
	list, watchFn := s.lw.ListWithContextFunc, s.lw.WatchFuncWithContext
	s.lw.ListWithContextFunc = func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		obj, err := list(ctx, o)
		if err != nil && ctx.Err() == nil {
			s.watchError(err)
		}
		return obj, err
	}
	s.lw.WatchFuncWithContext = func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		w, err := watchFn(ctx, o)
		if err != nil && ctx.Err() == nil {
			s.watchError(err)
		}
		return w, err
	}
	return s, nil
}

// Name is how releases from this source are labelled ("configmap:NS/NAME").
func (s *Source) Name() string { return s.name }

// Run offers releases to o until ctx is done. It never fails: when the
// ConfigMap cannot be read it says why, keeps retrying with backoff, and
// the serving generation keeps serving.
func (s *Source) Run(ctx context.Context, o source.Offerer) {
	inf := cache.NewSharedIndexInformer(s.lw, &core.ConfigMap{}, 0, cache.Indexers{})
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) { s.watchError(err) })
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.changed(obj, o) },
		UpdateFunc: func(_, obj any) { s.changed(obj, o) },
		DeleteFunc: func(obj any) { s.deleted(obj) },
	})
	s.log.Info("watching the ConfigMap for releases", "host", s.opts.REST.Host)
	done := make(chan struct{})
	go func() { defer close(done); inf.RunWithContext(ctx) }()
	sctx, cancel := context.WithTimeout(ctx, s.opts.SyncTimeout)
	synced := cache.WaitForCacheSync(sctx.Done(), inf.HasSynced)
	cancel()
	if !synced && ctx.Err() == nil {
		s.mu.Lock()
		last := s.lastErr
		s.mu.Unlock()
		s.log.Warn("cannot read the ConfigMap yet; serving goes on and the source keeps retrying", "waited", s.opts.SyncTimeout, "last_error", last)
	}
	<-done
}

// watchError reports list/watch failures once per distinct message, with
// what to do about the usual ones.
func (s *Source) watchError(err error) {
	// A request error names a URL that changes with every retry (the watch
	// timeout is randomised): keep only the cause.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = fmt.Errorf("%s %s: %w", ue.Op, s.opts.REST.Host, ue.Err)
	}
	msg := err.Error()
	s.mu.Lock()
	repeat := msg == s.lastErr
	s.lastErr = msg
	s.mu.Unlock()
	if repeat {
		return
	}
	hint := "is the apiserver reachable from the pod?"
	switch {
	case apierrors.IsForbidden(err):
		hint = "give the pod's service account get, list and watch on configmaps in this namespace (the chart's Role does)"
	case apierrors.IsUnauthorized(err):
		hint = "the service-account token or kubeconfig credentials are not accepted"
	}
	s.log.Warn("cannot list/watch the ConfigMap; serving goes on, retrying with backoff", "err", err, "hint", hint)
}

func (s *Source) changed(obj any, o source.Offerer) {
	cm, ok := obj.(*core.ConfigMap)
	if !ok {
		return
	}
	s.mu.Lock()
	if s.lastErr != "" {
		s.log.Info("reading the ConfigMap again")
		s.lastErr = ""
	}
	s.mu.Unlock()
	// BinaryData counts as Data: a manifest is text, but kubectl create
	// --from-file stores a file that is not UTF-8 there.
	all := make(map[string]string, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.BinaryData {
		all[k] = string(v)
	}
	for k, v := range cm.Data {
		all[k] = v
	}
	m, track, ok := fleet.ReleaseFor(all, s.opts.Key, s.opts.PodName)
	if !ok {
		keys := slices.Sorted(maps.Keys(all))
		s.log.Warn("the ConfigMap has no release key; serving goes on", "keys", strings.Join(keys, ","), "hint", "put the manifest under --configmap-key")
		s.lastSum = [sha256.Size]byte{}
		return
	}
	data := []byte(m)
	sum := sha256.Sum256(data)
	if sum == s.lastSum {
		return // another key changed, or a resync
	}
	s.lastSum = sum
	log := s.log.With("resourceVersion", cm.ResourceVersion)
	if track == fleet.Canary {
		// The canary gets its own source name, so the trigger in
		// hotswap.dev/last-swap says which track a swap came from.
		log.Info("this pod is on the rollout's canary", "key", fleet.CanaryKey(s.opts.Key))
		source.OfferManifest(data, s.opts.Base, s.opts.Root, s.name+"#canary", log, o)
		return
	}
	source.OfferManifest(data, s.opts.Base, s.opts.Root, s.name, log, o)
}

func (s *Source) deleted(any) {
	// Forget the content: a re-created ConfigMap is read afresh (the engine
	// ignores it if it is what serves).
	s.lastSum = [sha256.Size]byte{}
	s.log.Warn("the ConfigMap was deleted; the serving generation keeps serving until it is created again")
}
