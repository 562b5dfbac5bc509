package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/bake"
)

// bakeFeature is the per-pod post-swap health bake (--bake-time,
// --bake-url; docs/rollout.md): a new generation is checked for a while
// after it takes over, and the pod swaps back to the previous release in
// place when it fails. Set up after the other features: it wraps their
// Verify hook (to learn every release) and reports through every observer
// that hears bakes (Kubernetes reporting).
type bakeFeature struct {
	duration, interval time.Duration
	url                string
	failures           int
}

func (b *bakeFeature) addFlags(f *pflag.FlagSet) {
	f.DurationVar(&b.duration, "bake-time", 0, "after a swap, keep checking the new generation this long; on failure swap back to the previous release (0: no bake)")
	f.StringVar(&b.url, "bake-url", "", "during the bake, GET this URL every --bake-interval; it must answer 2xx (without it only the generation's survival is checked)")
	f.DurationVar(&b.interval, "bake-interval", time.Second, "time between two bake checks")
	f.IntVar(&b.failures, "bake-failures", 3, "bake checks failing in a row that fail the bake")
}

func (b *bakeFeature) setup(d *deps, cfg *hotswap.Config) (func(*hotswap.Engine) error, error) {
	u := strings.TrimSpace(b.url)
	switch {
	case b.duration < 0:
		return nil, d.set.bad("bake-time", fmt.Errorf("%s must not be negative; 30s is a good start", b.duration))
	case b.duration == 0 && u != "":
		return nil, d.set.bad("bake-url", fmt.Errorf("%s is checked only during a bake: set --bake-time too", u))
	case b.duration == 0:
		return nil, nil
	case b.interval <= 0:
		return nil, d.set.bad("bake-interval", fmt.Errorf("%s: must be positive, e.g. 1s", b.interval))
	case b.failures < 1:
		return nil, d.set.bad("bake-failures", fmt.Errorf("%d: must be 1 or more", b.failures))
	}
	if u != "" {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, d.set.bad("bake-url", fmt.Errorf("%q: want http://HOST:PORT/PATH", u))
		}
	}
	var reps []bake.Reporter
	for _, o := range cfg.Observers {
		if r, ok := o.(bake.Reporter); ok {
			reps = append(reps, r)
		}
	}
	bk := bake.New(bake.Options{Duration: b.duration, URL: u, Interval: b.interval, Failures: b.failures,
		Initial: cfg.Release, Log: d.log.With("component", "bake")}, reps...)
	prev := cfg.Verify
	cfg.Verify = func(ctx context.Context, r hotswap.Release) error {
		if prev != nil {
			if err := prev(ctx, r); err != nil {
				return err
			}
		}
		bk.Remember(r)
		return nil
	}
	cfg.Observers = append(cfg.Observers, bk)
	return func(e *hotswap.Engine) error {
		bk.SetTarget(e)
		return nil
	}, nil
}
