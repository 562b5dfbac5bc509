package main

import (
	"context"
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/hotswap-dev/hotswap/hotswap"
)

// Keep-alive handoff (--handoff-keepalive): idle HTTP/1.1 keep-alive
// connections move from the old generation to the new one at each swap,
// socket and all, so clients never reconnect. See docs/handoff.md.
func init() {
	registerFeature(feature{name: "handoff", flags: handoffFlags, setup: setupHandoff})
}

func handoffFlags(f *pflag.FlagSet) {
	f.Bool("handoff-keepalive", false, "hand idle HTTP/1.1 keep-alive connections from the old generation to the new one at each swap (servers using hotswap's reuseport.Serve; plain TCP only); see docs/handoff.md")
}

func setupHandoff(_ context.Context, fs *pflag.FlagSet, cfg *hotswap.Config, _ *slog.Logger) (func(context.Context, *hotswap.Engine) error, error) {
	cfg.HandoffKeepAlive, _ = fs.GetBool("handoff-keepalive")
	return nil, nil
}
