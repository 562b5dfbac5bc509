// Command loadgen drives an HTTP/1.1 server with hotswap's load generator
// (package e2e/load) and prints a report of every attempt: failures by
// kind, reconnects, latency overall and around swap marks, and the server
// generations seen.
//
//	loadgen -addr 127.0.0.1:8080 -duration 30s -keepalive 8 -newconn 2 -slow 0.1 -idle-pool 4 -idle-for 2s
//
// Send SIGUSR1 to loadgen to record a swap mark at that moment. It exits 1
// when any attempt failed, 2 on bad usage.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hotswap-dev/hotswap/e2e/load"
)

func main() {
	var c load.Config
	var asJSON bool
	flag.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "target `host:port`")
	flag.DurationVar(&c.Duration, "duration", 10*time.Second, "hard time bound of the run")
	flag.Int64Var(&c.Requests, "requests", 0, "stop after `N` attempts (0: duration only)")
	flag.DurationVar(&c.Timeout, "timeout", load.DefaultTimeout, "per-attempt timeout (dial, write, response)")
	flag.IntVar(&c.KeepAlive, "keepalive", 0, "`N` keep-alive clients")
	flag.IntVar(&c.NewConn, "newconn", 0, "`N` new-connection-per-request clients")
	flag.IntVar(&c.Clients, "clients", 0, "`N` clients split by -keepalive-fraction (when -keepalive and -newconn are 0)")
	flag.Float64Var(&c.KeepAliveFraction, "keepalive-fraction", 1, "fraction of -clients that keep connections alive")
	flag.Float64Var(&c.SlowFraction, "slow", 0, "fraction of requests sent to -slow-path")
	flag.StringVar(&c.Path, "path", load.DefaultPath, "request target of a normal request")
	flag.StringVar(&c.SlowPath, "slow-path", load.DefaultSlowPath, "request target of a slow request")
	flag.IntVar(&c.IdlePool, "idle-pool", 0, "`N` long-idle keep-alive connections")
	flag.DurationVar(&c.IdleFor, "idle-for", load.DefaultIdleFor, "idle time of an idle-pool connection between requests")
	flag.BoolVar(&c.IdleNoCheck, "idle-no-check", false, "reuse idle-pool connections without checking them first")
	flag.Float64Var(&c.Rate, "rate", 0, "pace keep-alive and new-connection clients to about `R` attempts/s in total (0: back to back)")
	flag.DurationVar(&c.Think, "think", 0, "pause between attempts of a client")
	flag.DurationVar(&c.SwapWindow, "swap-window", load.DefaultSwapWindow, "half-width of the latency window around a swap mark")
	flag.BoolVar(&asJSON, "json", false, "print the report as JSON")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	if c.KeepAlive == 0 && c.NewConn == 0 && c.Clients == 0 && c.IdlePool == 0 {
		c.KeepAlive = 4
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	marks := make(chan os.Signal, 16)
	signal.Notify(marks, syscall.SIGUSR1)
	r, err := load.Start(ctx, c)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(2)
	}
	go func() {
		for range marks {
			r.MarkSwap(time.Now())
		}
	}()
	rep := r.Wait()
	signal.Stop(marks)
	if asJSON {
		err = rep.WriteJSON(os.Stdout)
	} else {
		err = rep.WriteText(os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(2)
	}
	if rep.Failed() > 0 {
		os.Exit(1)
	}
}
