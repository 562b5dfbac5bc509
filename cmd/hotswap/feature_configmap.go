//go:build !nokube

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
	"github.com/hotswap-dev/hotswap/hotswap/source/configmap"
)

// The ConfigMap release source (--configmap): a client-go informer on one
// object, so a `kubectl apply` swaps at once instead of after the kubelet's
// volume refresh. Left out of `-tags nokube` builds with the rest of client-go.
func init() {
	registerFeature(feature{
		name: "configmap",
		flags: func(f *pflag.FlagSet) {
			f.String("configmap", "", "[NAMESPACE/]NAME: read the release manifest from this ConfigMap through the API (an informer; needs get/list/watch on configmaps)")
			f.String("configmap-key", configmap.DefaultKey, "key of --configmap that holds the manifest")
		},
		setup: setupConfigMap,
	})
}

// setupConfigMap checks the flags; the informer starts with the engine, and
// its failure only costs a warning: serving never depends on the apiserver.
func setupConfigMap(_ context.Context, fs *pflag.FlagSet, cfg *hotswap.Config, log *slog.Logger) (func(context.Context, *hotswap.Engine) error, error) {
	str := func(n string) string { s, _ := fs.GetString(n); return strings.TrimSpace(s) }
	ref := str("configmap")
	if ref == "" {
		return nil, nil
	}
	ns, name, err := configmap.ParseRef(ref)
	if err != nil {
		return nil, usageErr("--configmap: %v", err)
	}
	key := str("configmap-key")
	if err := configmap.CheckKey(key); err != nil {
		return nil, usageErr("--configmap-key: %v", err)
	}
	base, root := cfg.Release, str("release-root")
	return func(ctx context.Context, eng *hotswap.Engine) error {
		kubeconfig := os.Getenv("KUBECONFIG")
		if f := fs.Lookup("kubeconfig"); f != nil && f.Value.String() != "" {
			kubeconfig = f.Value.String()
		}
		rc, err := kube.RESTConfig(kubeconfig)
		if err != nil {
			return fmt.Errorf("--configmap %s/%s: no apiserver to read it from: %w (in a pod this is automatic; elsewhere set KUBECONFIG)", ns, name, err)
		}
		src, err := configmap.New(configmap.Options{Namespace: ns, Name: name, Key: key, REST: rc, Base: base, Root: root, Log: log})
		if err != nil {
			return fmt.Errorf("--configmap %s/%s: %w", ns, name, err)
		}
		go src.Run(ctx, eng)
		return nil
	}, nil
}
