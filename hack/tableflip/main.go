// Command tableflip is one HTTP server upgraded two ways, for the side by
// side in docs/perf-swap.md ("Generation start"): under hotswap (socket
// activation: LISTEN_FDS, READY=1, drains on SIGTERM), or on its own with
// cloudflare/tableflip, which on SIGHUP re-executes the same binary with
// the listener and exits once the new process is ready. Both answer with
// their generation (HOTSWAP_GENERATION, or the PID under tableflip), so
// hack/shimbench times trigger → first answer from the new process with the
// same server code in every arm. It is a module of its own so that
// hotswap's module does not depend on tableflip.
//
//	cd hack/tableflip && go build -o /tmp/tableflip-server .
//	go run ./hack/shimbench -only answer -tableflip /tmp/tableflip-server before=... after=...
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/hotswap-dev/hotswap/reuseport"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:] // the command line of `hotswap serve`
	}
	fs := flag.NewFlagSet("tableflip", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "address to bind when no listener is inherited")
	grace := fs.Duration("grace", 20*time.Millisecond, "drain grace under hotswap")
	fs.String("log-level", "", "ignored (hotswap serve's flag)")
	_ = fs.Parse(args)
	gen := os.Getenv("HOTSWAP_GENERATION")
	if gen == "" {
		gen = strconv.Itoa(os.Getpid())
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "generation=%s pid=%d\n", gen, os.Getpid())
	})}
	if os.Getenv("LISTEN_FDS") != "" {
		os.Exit(underHotswap(srv, *grace))
	}
	os.Exit(withTableflip(srv, *addr))
}

func underHotswap(srv *http.Server, grace time.Duration) int {
	ln, err := reuseport.Listener("http", "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	s := reuseport.Serve(srv, ln)
	if err := reuseport.Ready(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-ctx.Done()
	_ = s.Drain(context.Background(), grace)
	return 0
}

func withTableflip(srv *http.Server, addr string) int {
	upg, err := tableflip.New(tableflip.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer upg.Stop()
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGHUP)
		for range sig {
			if err := upg.Upgrade(); err != nil {
				fmt.Fprintln(os.Stderr, "upgrade:", err)
			}
		}
	}()
	ln, err := upg.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { _ = srv.Serve(ln) }()
	if err := upg.Ready(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-upg.Exit()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	return 0
}
