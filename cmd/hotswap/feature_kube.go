//go:build !nokube

package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
	"github.com/hotswap-dev/hotswap/hotswap/source/configmap"
)

// kubeFeatures are the parts of hotswap that talk to the apiserver: the
// ConfigMap release source and Kubernetes reporting, sharing one
// --kubeconfig. They are left out of `-tags nokube` builds, which then link
// no client-go at all (feature_nokube.go). releaseRoot is the sources'
// --release-root, which ConfigMap releases must obey too; reportErrors
// counts the reporter's failed API calls, for the admin endpoint.
func kubeFeatures(releaseRoot *string) (fs []feature, reportErrors func() uint64) {
	settings := &kubeSettings{}
	rep := &kubeFeature{kube: settings}
	return []feature{settings, &configMapFeature{kube: settings, releaseRoot: releaseRoot}, rep}, rep.errors
}

// kubeSettings are the flags every Kubernetes feature shares.
type kubeSettings struct {
	kubeconfig string
}

func (k *kubeSettings) addFlags(f *pflag.FlagSet) {
	f.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig for reporting from outside a pod (default: in-cluster config)")
}

func (k *kubeSettings) setup(*deps, *hotswap.Config) (func(*hotswap.Engine) error, error) {
	return nil, nil
}

// kubeFeature is Kubernetes reporting (annotations, the hotswap.dev/ready
// condition, events): an observer of the engine, never on the serving path.
type kubeFeature struct {
	kube              *kubeSettings
	mode              string
	unreadyDuringSwap bool
	// rep is set by setup when reporting is on.
	rep *kube.Reporter
}

func (k *kubeFeature) addFlags(f *pflag.FlagSet) {
	f.StringVar(&k.mode, "kube", "auto", "report to Kubernetes (pod annotations, hotswap.dev/ready condition, events): auto (when in a pod), on, off")
	f.BoolVar(&k.unreadyDuringSwap, "unready-during-swap", false, "set the hotswap.dev/ready condition False while a swap runs (servers that cannot share a port across versions)")
}

func (k *kubeFeature) setup(d *deps, cfg *hotswap.Config) (func(*hotswap.Engine) error, error) {
	mode, err := kube.ParseMode(k.mode)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.set.origin("kube"), err)
	}
	rep, err := kube.New(kube.Config{Mode: mode, Kubeconfig: k.kube.kubeconfig, UnreadyDuringSwap: k.unreadyDuringSwap}, d.log)
	if err != nil {
		return nil, err
	}
	if !rep.Enabled() {
		return nil, nil
	}
	// client-go logs through klog; send it to our slog handler, so its
	// lines share hotswap's format (text or JSON) and level.
	klog.SetSlogLogger(d.log.With("component", "client-go"))
	k.rep = rep
	cfg.Observers = append(cfg.Observers, rep)
	return func(*hotswap.Engine) error {
		d.group.Go(func(ctx context.Context) {
			if err := rep.Run(ctx); err != nil {
				d.log.Warn("kubernetes reporting stopped; serving goes on", "err", err)
			}
		})
		return nil
	}, nil
}

// errors is the reporter's count of failed API calls, 0 when it is off.
func (k *kubeFeature) errors() uint64 {
	if k.rep == nil {
		return 0
	}
	return k.rep.Errors()
}

// configMapFeature is the ConfigMap release source (--configmap): a
// client-go informer on one object, so a `kubectl apply` swaps at once
// instead of after the kubelet's volume refresh.
type configMapFeature struct {
	kube        *kubeSettings
	releaseRoot *string
	ref         string
	key         string
}

func (c *configMapFeature) addFlags(f *pflag.FlagSet) {
	f.StringVar(&c.ref, "configmap", "", "[NAMESPACE/]NAME: read the release manifest from this ConfigMap through the API (an informer; needs get/list/watch on configmaps)")
	f.StringVar(&c.key, "configmap-key", configmap.DefaultKey, "key of --configmap that holds the manifest")
}

// setup checks the options; the informer starts with the engine, and its
// failure only costs a warning: serving never depends on the apiserver.
func (c *configMapFeature) setup(d *deps, cfg *hotswap.Config) (func(*hotswap.Engine) error, error) {
	ref := strings.TrimSpace(c.ref)
	if ref == "" {
		return nil, nil
	}
	ns, name, err := configmap.ParseRef(ref)
	if err != nil {
		return nil, d.set.bad("configmap", err)
	}
	key := strings.TrimSpace(c.key)
	if err := configmap.CheckKey(key); err != nil {
		return nil, d.set.bad("configmap-key", err)
	}
	base, root := cfg.Release, strings.TrimSpace(*c.releaseRoot)
	return func(eng *hotswap.Engine) error {
		kubeconfig := c.kube.kubeconfig
		if kubeconfig == "" {
			kubeconfig = os.Getenv("KUBECONFIG")
		}
		rc, err := kube.RESTConfig(kubeconfig)
		if err != nil {
			return fmt.Errorf("--configmap %s/%s: no apiserver to read it from: %w (in a pod this is automatic; elsewhere set KUBECONFIG)", ns, name, err)
		}
		src, err := configmap.New(configmap.Options{Namespace: ns, Name: name, Key: key, REST: rc, Base: base, Root: root, Log: d.log})
		if err != nil {
			return fmt.Errorf("--configmap %s/%s: %w", ns, name, err)
		}
		d.group.Go(func(ctx context.Context) { src.Run(ctx, eng) })
		return nil
	}, nil
}
