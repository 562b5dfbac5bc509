package main

import (
	"context"

	"github.com/spf13/pflag"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/admin"
)

// adminFeature is the admin endpoint (/metrics, /healthz, /readyz): an
// observer of the engine, off unless --admin-addr is given.
type adminFeature struct {
	addr string
	// reportErrors is the Kubernetes reporter's error counter; nil in a
	// build without Kubernetes.
	reportErrors func() uint64
}

func (a *adminFeature) addFlags(f *pflag.FlagSet) {
	f.StringVar(&a.addr, "admin-addr", "", "serve /metrics (Prometheus), /healthz and /readyz on this address, e.g. :9090 (default off)")
}

func (a *adminFeature) setup(d *deps, cfg *hotswap.Config) (func(*hotswap.Engine) error, error) {
	if a.addr == "" {
		return nil, nil
	}
	reportErrors := a.reportErrors
	if reportErrors == nil {
		reportErrors = func() uint64 { return 0 }
	}
	// The engine exists only once every feature is set up; the endpoint
	// serves (and so calls ChildRestarts) only after start has set it.
	var eng *hotswap.Engine
	srv := admin.New(admin.Options{
		Addr:          a.addr,
		OrphansReaped: d.reaper.Orphans,
		LiveChildren:  d.reaper.Live,
		ChildRestarts: func() uint64 { return eng.Restarts() },
		ReportErrors:  reportErrors,
	}, d.log)
	// Bind now: a bad --admin-addr is a usage error, not a surprise later.
	ln, err := srv.Listen()
	if err != nil {
		return nil, usageErr("%v", err) // it names --admin-addr
	}
	cfg.Observers = append(cfg.Observers, srv)
	return func(e *hotswap.Engine) error {
		eng = e
		d.group.Go(func(ctx context.Context) {
			if err := srv.Serve(ctx, ln); err != nil {
				d.log.Warn("admin endpoint stopped; serving goes on", "err", err)
			}
		})
		return nil
	}, nil
}
