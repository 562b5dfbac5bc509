package kube

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hotswap-dev/hotswap/hotswap/kube/core"
)

// Scheme knows the core/v1 kinds hotswap reads or writes (pods, events,
// configmaps), as the small types of package core, and nothing else.
var Scheme = runtime.NewScheme()

// Codecs serialises the types in Scheme.
var Codecs = serializer.NewCodecFactory(Scheme)

// ParameterCodec encodes list/watch options for requests made with a client
// from NewCoreV1Client.
var ParameterCodec = runtime.NewParameterCodec(Scheme)

func init() {
	if err := core.AddToScheme(Scheme); err != nil {
		panic(fmt.Sprintf("kube: register core/v1: %v", err))
	}
}

// RESTConfig returns the apiserver connection for hotswap: the kubeconfig
// file at path when path is not empty, else the in-cluster config (service
// account token and CA mounted into the pod). Outside a pod without a path
// the error wraps rest.ErrNotInCluster.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kube: load kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("kube: in-cluster config: %w", err)
	}
	return cfg, nil
}

// NewCoreV1Client returns a REST client for the core/v1 API group using
// Scheme, without linking client-go's typed clientset. It is safe for
// concurrent use and works for watches too (it sets no overall timeout).
//
// The ConfigMap release source builds its informer on it:
//
//	c, _ := kube.NewCoreV1Client(cfg)
//	lw := cache.NewListWatchFromClient(c, "configmaps", ns,
//		fields.OneTermEqualSelector("metadata.name", name))
//	inf := cache.NewSharedIndexInformer(lw, &core.ConfigMap{}, 0, cache.Indexers{})
//
// A zero QPS/Burst becomes 20/40 and an empty UserAgent "hotswap".
func NewCoreV1Client(cfg *rest.Config) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &core.SchemeGroupVersion
	c.APIPath = "/api"
	c.NegotiatedSerializer = Codecs.WithoutConversion()
	if c.QPS == 0 {
		c.QPS = 20
	}
	if c.Burst == 0 {
		c.Burst = 40
	}
	if c.UserAgent == "" {
		c.UserAgent = "hotswap"
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("kube: core/v1 client for %s: %w", cfg.Host, err)
	}
	return rc, nil
}
