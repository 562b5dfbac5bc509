package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/admin"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
)

// Kubernetes reporting (annotations, the hotswap.dev/ready condition,
// events) and the admin endpoint (/metrics, /healthz, /readyz). Both are
// observers of the engine: they never sit on the serving path.
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
	registerFeature(feature{
		name: "admin",
		flags: func(f *pflag.FlagSet) {
			f.String("admin-addr", "", "serve /metrics (Prometheus), /healthz and /readyz on this address, e.g. :9090 (default off)")
		},
		setup: setupAdmin,
	})
}

// reportErrors is the reporter's error counter, for the admin endpoint.
var reportErrors func() uint64

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

func setupAdmin(_ context.Context, fs *pflag.FlagSet, cfg *hotswap.Config, log *slog.Logger) (func(context.Context, *hotswap.Engine) error, error) {
	addr, _ := fs.GetString("admin-addr")
	if addr == "" {
		return nil, nil
	}
	var eng *hotswap.Engine
	srv := admin.New(admin.Options{
		Addr:          addr,
		OrphansReaped: func() uint64 { return eng.Reaper().Orphans() },
		LiveChildren:  func() int { return eng.Reaper().Live() },
		ChildRestarts: func() uint64 { return eng.Restarts() },
		ReportErrors: func() uint64 {
			if reportErrors == nil {
				return 0
			}
			return reportErrors()
		},
	}, log)
	// Bind now: a bad --admin-addr is a usage error, not a surprise later.
	ln, err := srv.Listen()
	if err != nil {
		return nil, err
	}
	cfg.Observers = append(cfg.Observers, srv)
	return func(ctx context.Context, e *hotswap.Engine) error {
		eng = e
		background.Go(func() {
			if err := srv.Serve(ctx, ln); err != nil {
				log.Warn("admin endpoint stopped; serving goes on", "err", err)
			}
		})
		return nil
	}, nil
}
