package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/hotswap"
)

// feature is an optional part of hotswap (release sources, Kubernetes
// reporting, the admin endpoint). It owns its flags, bound to its own
// options, and is handed everything else it needs as arguments.
type feature interface {
	// addFlags declares the feature's flags.
	addFlags(fs *pflag.FlagSet)
	// setup checks the feature's options (once flags, environment and file
	// are merged), may add observers or a verifier to cfg, and returns a
	// function run once the engine exists (nil if there is nothing to start).
	// A setup error is a usage error.
	setup(d *deps, cfg *hotswap.Config) (start func(*hotswap.Engine) error, err error)
}

// deps is what cmd hands every feature.
type deps struct {
	log    *slog.Logger
	reaper *entrypoint.Reaper
	// set names the source of a bad value.
	set *settings
	// group runs every goroutine a feature starts; it is stopped and
	// awaited when the engine has exited.
	group *group
}

// group runs goroutines under one context and waits for all of them at
// shutdown.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newGroup(ctx context.Context) *group {
	ctx, cancel := context.WithCancel(ctx)
	return &group{ctx: ctx, cancel: cancel}
}

// Go runs fn in a goroutine; its ctx is done when the group stops.
func (g *group) Go(fn func(ctx context.Context)) {
	g.wg.Go(func() { fn(g.ctx) })
}

// stop cancels every goroutine and waits for them, at most limit, so a
// feature's last act (the reporter's final patch, the admin endpoint's
// shutdown) is done but exit is never held up long. It reports whether all
// of them returned.
func (g *group) stop(limit time.Duration) bool {
	g.cancel()
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(limit):
		return false
	}
}
