package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/source"
)

// Release sources from files (--watch, --manifest) and release
// verification (--release-root, --require-sha256, --preflight). See
// docs/sources.md.
func init() {
	registerFeature(feature{name: "sources", flags: sourceFlags, setup: setupSources})
}

func sourceFlags(f *pflag.FlagSet) {
	f.String("watch", "", "swap when the binary at PATH changes: a file or a \"current\" symlink on a volume (the directory is watched)")
	f.Duration("settle", source.DefaultSettle, "a watched binary must be unchanged this long before it is offered (a copy in progress is never swapped in)")
	f.String("manifest", "", "swap to the release a YAML manifest file describes (e.g. a mounted ConfigMap key); see docs/sources.md")
	f.String("release-root", "", "releases from sources must resolve (symlinks followed) to a file under this directory")
	f.Bool("require-sha256", false, "refuse releases whose manifest pins no sha256")
	f.String("preflight", "", "arguments to run a new binary with before swapping to it, e.g. \"--version\"; it must exit 0 (a manifest's preflight: wins)")
	f.Duration("preflight-timeout", 10*time.Second, "how long a preflight may run before it is killed and the release refused")
}

// setupSources checks the flags, installs the verifier and opens the file
// watches. (The ConfigMap source is feature_configmap.go: it links client-go.)
func setupSources(_ context.Context, fs *pflag.FlagSet, cfg *hotswap.Config, log *slog.Logger) (func(context.Context, *hotswap.Engine) error, error) {
	str := func(n string) string { s, _ := fs.GetString(n); return strings.TrimSpace(s) }
	dur := func(n string) time.Duration { d, _ := fs.GetDuration(n); return d }
	bad := func(flag, format string, a ...any) error {
		return usageErr("--%s: %s", flag, fmt.Sprintf(format, a...))
	}
	settle := dur("settle")
	if settle < 0 {
		return nil, bad("settle", "%s must not be negative; 1s is a good start", settle)
	}
	ptimeout := dur("preflight-timeout")
	if ptimeout <= 0 {
		return nil, bad("preflight-timeout", "%s: must be positive, e.g. 10s", ptimeout)
	}
	requireSum, _ := fs.GetBool("require-sha256")
	v, err := hotswap.NewVerifier(hotswap.VerifyOptions{
		Root:             str("release-root"),
		RequireSHA256:    requireSum,
		Preflight:        strings.Fields(str("preflight")),
		PreflightTimeout: ptimeout,
		TrustedSource:    cfg.Release.Source,
	})
	if err != nil {
		return nil, bad("release-root", "%v", err)
	}
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
	root := str("release-root")
	var runs []func(context.Context, source.Offerer)
	if p := str("watch"); p != "" {
		w, err := source.NewWatch(source.WatchOptions{Path: p, Settle: settle, Base: base, Log: log})
		if err != nil {
			return nil, bad("watch", "%v", err)
		}
		runs = append(runs, w.Run)
	}
	if p := str("manifest"); p != "" {
		m, err := source.NewManifestFile(source.ManifestOptions{Path: p, Base: base, Root: root, Log: log})
		if err != nil {
			return nil, bad("manifest", "%v", err)
		}
		runs = append(runs, m.Run)
	}
	return func(ctx context.Context, eng *hotswap.Engine) error {
		v.SetStarter(eng.Reaper())
		for _, run := range runs {
			go run(ctx, eng)
		}
		return nil
	}, nil
}
