package rollout

import (
	"context"
	"slices"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/hotswap-dev/hotswap/hotswap/kube"
	"github.com/hotswap-dev/hotswap/hotswap/kube/core"
)

// podCache is an informer on the target's pods, so a driver looking every
// second costs the apiserver one watch, not a list of every pod each time
// (at 1,000 pods a list is megabytes).
type podCache struct {
	mu       sync.Mutex
	selector string
	inf      cache.SharedIndexInformer
	cancel   context.CancelFunc
}

// cachedPods returns the pods selected by selector from the informer, starting (or
// restarting, for a new selector) it first; ok is false until it has synced.
func (d *Driver) cachedPods(ctx context.Context, selector string) ([]Pod, bool) {
	c := &d.podCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.selector != selector || c.inf == nil {
		if c.cancel != nil {
			c.cancel()
		}
		lw := &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.LabelSelector = selector
				list := &core.PodList{}
				d.metrics.PodLists.Add(1)
				err := d.c.Get().Namespace(d.opts.Namespace).Resource("pods").VersionedParams(&o, kube.ParameterCodec).Do(ctx).Into(list)
				return list, err
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.LabelSelector = selector
				o.Watch = true
				return d.c.Get().Namespace(d.opts.Namespace).Resource("pods").VersionedParams(&o, kube.ParameterCodec).Watch(ctx)
			},
		}
		inf := cache.NewSharedIndexInformer(lw, &core.Pod{}, 0, cache.Indexers{})
		ictx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		go inf.RunWithContext(ictx)
		c.selector, c.inf, c.cancel = selector, inf, cancel
	}
	if !c.inf.HasSynced() {
		return nil, false
	}
	objs := c.inf.GetStore().List()
	out := make([]Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*core.Pod); ok {
			out = append(out, ReadPod(p))
		}
	}
	slices.SortFunc(out, func(a, b Pod) int { return strings.Compare(a.Name, b.Name) })
	return out, true
}

// stopCache ends the informer (Drive returns).
func (d *Driver) stopCache() {
	c := &d.podCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		c.cancel()
	}
	c.inf, c.cancel, c.selector = nil, nil, ""
}
