package main

import (
	"github.com/spf13/pflag"

	"github.com/hotswap-dev/hotswap/hotswap"
)

// handoffFeature is keep-alive handoff (--handoff-keepalive): idle HTTP/1.1
// keep-alive connections move from the old generation to the new one at
// each swap, socket and all, so clients never reconnect. See
// docs/handoff.md.
type handoffFeature struct {
	keepAlive bool
}

func (h *handoffFeature) addFlags(f *pflag.FlagSet) {
	f.BoolVar(&h.keepAlive, "handoff-keepalive", false, "hand idle HTTP/1.1 keep-alive connections from the old generation to the new one at each swap (servers using hotswap's reuseport.Serve; plain TCP only); see docs/handoff.md")
}

func (h *handoffFeature) setup(_ *deps, cfg *hotswap.Config) (func(*hotswap.Engine) error, error) {
	cfg.HandoffKeepAlive = h.keepAlive
	return nil, nil
}
