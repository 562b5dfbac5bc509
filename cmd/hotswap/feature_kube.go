//go:build !nokube

package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
)

// Kubernetes reporting (annotations, the hotswap.dev/ready condition,
// events): an observer of the engine, never on the serving path. Left out of
// `-tags nokube` builds, which then link no client-go at all.
func init() {
	registerFeature(feature{
		name: "kube",
		flags: func(f *pflag.FlagSet) {
			f.String("kube", "auto", "report to Kubernetes (pod annotations, hotswap.dev/ready condition, events): auto (when in a pod), on, off")
			f.String("kubeconfig", "", "kubeconfig for reporting from outside a pod (default: in-cluster config)")
			f.Bool("unready-during-swap", false, "set the hotswap.dev/ready condition False while a swap runs (servers that cannot share a port across versions)")
		},
		setup: setupKube,
	})
}

func setupKube(_ context.Context, fs *pflag.FlagSet, cfg *hotswap.Config, log *slog.Logger) (func(context.Context, *hotswap.Engine) error, error) {
	modeFlag, _ := fs.GetString("kube")
	mode, err := kube.ParseMode(modeFlag)
	if err != nil {
		return nil, fmt.Errorf("--kube: %w", err)
	}
	kubeconfig, _ := fs.GetString("kubeconfig")
	unready, _ := fs.GetBool("unready-during-swap")
	rep, err := kube.New(kube.Config{Mode: mode, Kubeconfig: kubeconfig, UnreadyDuringSwap: unready}, log)
	if err != nil {
		return nil, err
	}
	if !rep.Enabled() {
		return nil, nil
	}
	// client-go logs through klog; send it to our slog handler, so its
	// lines share hotswap's format (text or JSON) and level.
	klog.SetSlogLogger(log.With("component", "client-go"))
	reportErrors = rep.Errors
	cfg.Observers = append(cfg.Observers, rep)
	return func(ctx context.Context, _ *hotswap.Engine) error {
		background.Go(func() {
			if err := rep.Run(ctx); err != nil {
				log.Warn("kubernetes reporting stopped; serving goes on", "err", err)
			}
		})
		return nil
	}, nil
}
