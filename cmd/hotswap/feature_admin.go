package main

import (
	"context"
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/admin"
)

// The admin endpoint (/metrics, /healthz, /readyz): an observer of the
// engine, off unless --admin-addr is given.
func init() {
	registerFeature(feature{
		name: "admin",
		flags: func(f *pflag.FlagSet) {
			f.String("admin-addr", "", "serve /metrics (Prometheus), /healthz and /readyz on this address, e.g. :9090 (default off)")
		},
		setup: setupAdmin,
	})
}

// reportErrors is the Kubernetes reporter's error counter when reporting is
// on (feature_kube.go sets it), for the admin endpoint.
var reportErrors func() uint64

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
		return nil, usageErr("%v", err)
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
