package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/source"
)

// sourcesFeature is release sources from files (--watch, --manifest) and
// release verification (--release-root, --require-sha256, --preflight). See
// docs/sources.md. (The ConfigMap source is in feature_kube.go: it links
// client-go.)
type sourcesFeature struct {
	watch            string
	settle           time.Duration
	manifest         string
	releaseRoot      string
	requireSHA256    bool
	preflight        string
	preflightTimeout time.Duration
}

func (o *sourcesFeature) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.watch, "watch", "", "swap when the binary at PATH changes: a file or a \"current\" symlink on a volume (the directory is watched)")
	f.DurationVar(&o.settle, "settle", source.DefaultSettle, "a watched binary must be unchanged this long before it is offered (a copy in progress is never swapped in)")
	f.StringVar(&o.manifest, "manifest", "", "swap to the release a YAML manifest file describes (e.g. a mounted ConfigMap key); see docs/sources.md")
	f.StringVar(&o.releaseRoot, "release-root", "", "releases from sources must resolve (symlinks followed) to a file under this directory")
	f.BoolVar(&o.requireSHA256, "require-sha256", false, "refuse releases whose manifest pins no sha256")
	f.StringVar(&o.preflight, "preflight", "", "arguments to run a new binary with before swapping to it, e.g. \"--version\"; it must exit 0 (a manifest's preflight: wins)")
	f.DurationVar(&o.preflightTimeout, "preflight-timeout", 10*time.Second, "how long a preflight may run before it is killed and the release refused")
}

// setup checks the options, installs the verifier and opens the file
// watches; the watches run once the engine exists.
func (o *sourcesFeature) setup(d *deps, cfg *hotswap.Config) (func(*hotswap.Engine) error, error) {
	bad := func(flag, format string, a ...any) error { return d.set.bad(flag, fmt.Errorf(format, a...)) }
	if o.settle < 0 {
		return nil, bad("settle", "%s must not be negative; 1s is a good start", o.settle)
	}
	if o.preflightTimeout <= 0 {
		return nil, bad("preflight-timeout", "%s: must be positive, e.g. 10s", o.preflightTimeout)
	}
	root := strings.TrimSpace(o.releaseRoot)
	v, err := hotswap.NewVerifier(hotswap.VerifyOptions{
		Root:             root,
		RequireSHA256:    o.requireSHA256,
		Preflight:        strings.Fields(o.preflight),
		PreflightTimeout: o.preflightTimeout,
		TrustedSource:    cfg.Release.Source,
	})
	if err != nil {
		return nil, bad("release-root", "%v", err)
	}
	v.SetStarter(d.reaper)
	prev := cfg.Verify
	cfg.Verify = func(ctx context.Context, r hotswap.Release) error {
		if prev != nil {
			if err := prev(ctx, r); err != nil {
				return err
			}
		}
		return v.Verify(ctx, r)
	}

	base := cfg.Release
	var runs []func(context.Context, source.Offerer)
	if p := strings.TrimSpace(o.watch); p != "" {
		w, err := source.NewWatch(source.WatchOptions{Path: p, Settle: o.settle, Base: base, Log: d.log})
		if err != nil {
			return nil, bad("watch", "%v", err)
		}
		runs = append(runs, w.Run)
	}
	if p := strings.TrimSpace(o.manifest); p != "" {
		m, err := source.NewManifestFile(source.ManifestOptions{Path: p, Base: base, Root: root, Log: d.log})
		if err != nil {
			return nil, bad("manifest", "%v", err)
		}
		runs = append(runs, m.Run)
	}
	if len(runs) == 0 {
		return nil, nil
	}
	return func(eng *hotswap.Engine) error {
		for _, run := range runs {
			d.group.Go(func(ctx context.Context) { run(ctx, eng) })
		}
		return nil
	}, nil
}
