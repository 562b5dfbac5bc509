package reuseport

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/hotswap-dev/hotswap/reuseport/activation"
	"github.com/hotswap-dev/hotswap/reuseport/drain"
	"github.com/hotswap-dev/hotswap/reuseport/handoff"
	"github.com/hotswap-dev/hotswap/reuseport/steer"
)

// ErrNoListener is returned (wrapped) by [Listener] when the process was not
// given a listener of that name and has no fallback address to bind.
var ErrNoListener = activation.ErrNoListener

// Server is an http.Server serving one listener, able to [Server.Drain]
// without dropping a request. Create it with [Serve].
type Server = drain.Server

// process is what this process was given and has bound, read and made on
// first use. It is the only state of this package; tests replace it with
// resetProcess.
type process struct {
	inheritOnce sync.Once
	inherited   *activation.Inherited
	inheritErr  error

	mu       sync.Mutex
	bound    map[string]net.Listener // fallbacks bound by Listener, by name
	steerers []*steer.Steerer        // of those, the ones Steer may attach

	hubOnce sync.Once
	hub     *handoff.Hub // nil unless the supervisor asked for handoff
}

var proc = &process{}

// resetProcess forgets what the process inherited and bound (tests: set
// LISTEN_* or HOTSWAP_HANDOFF_SOCKET again, then reset).
func resetProcess() { proc = &process{} }

func (p *process) inherit() (*activation.Inherited, error) {
	p.inheritOnce.Do(func() { p.inherited, p.inheritErr = activation.Inherit() })
	return p.inherited, p.inheritErr
}

func (p *process) handoffHub() *handoff.Hub {
	p.hubOnce.Do(func() { p.hub = handoff.FromEnv() })
	return p.hub
}

// Listener returns the listener this process inherited under name (systemd
// socket activation: LISTEN_PID equal to our PID, LISTEN_FDS, LISTEN_FDNAMES;
// hotswap passes --listen NAME=... this way). If the process inherited no
// listeners at all — it runs standalone — it binds fallbackAddr itself
// ("tcp://HOST:PORT", any activation.ParseAddr form, or a bare "HOST:PORT")
// with SO_REUSEPORT, so a new and an old instance can overlap during a swap.
//
// It is an error to ask for a name that was not passed when other listeners
// were: binding the fallback then would silently split traffic. Every call
// with the same name returns the same listener. The LISTEN_* variables are
// removed from the environment on first use, as sd_listen_fds(1) does, and the
// descriptors are close-on-exec, so grandchildren do not take them.
func Listener(name, fallbackAddr string) (net.Listener, error) {
	in, err := proc.inherit()
	if err != nil {
		return nil, err
	}
	if in.Active() {
		return in.Listener(name)
	}
	proc.mu.Lock()
	defer proc.mu.Unlock()
	if ln, ok := proc.bound[name]; ok {
		return ln, nil
	}
	if fallbackAddr == "" {
		return nil, fmt.Errorf("%w named %q: none inherited (LISTEN_FDS unset) and no fallback address", ErrNoListener, name)
	}
	network, address, err := activation.ParseFallback(fallbackAddr)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	if os.Getenv("HOTSWAP_GENERATION") != "" && os.Getenv(steer.SteeredEnv) != "1" {
		// A generation under hotswap --mode reuseport: remember its place in
		// the SO_REUSEPORT group, so that Steer can make it take the group's
		// new connections once ready (package steer).
		var st *steer.Steerer
		ln, st, err = steer.Listen(context.Background(), network, address)
		if st != nil {
			proc.steerers = append(proc.steerers, st)
		}
	} else {
		ln, err = activation.Listen(context.Background(), network, address)
	}
	if err != nil {
		return nil, err
	}
	if proc.bound == nil {
		proc.bound = map[string]net.Listener{}
	}
	proc.bound[name] = ln
	return ln, nil
}

// Listeners returns every listener this process inherited, by name (unnamed
// descriptors are called LISTEN_FD_3, LISTEN_FD_4, ...). The map is empty,
// without error, when the process was started without listeners. The
// listeners are the same ones [Listener] returns. Inherited descriptors that
// are not stream listeners are left out and reported in the error.
func Listeners() (map[string]net.Listener, error) {
	in, err := proc.inherit()
	if err != nil {
		return nil, err
	}
	return in.All()
}

// Serve starts serving srv on ln in a new goroutine and returns at once. It
// takes over srv.Handler (nil means http.DefaultServeMux), srv.ConnState and
// srv.ConnContext, wrapping what is set there, to track connections and to
// answer "Connection: close" while draining. Stop it with [Server.Drain]
// rather than srv.Shutdown.
//
// When the supervisor asks for it (HOTSWAP_HANDOFF_SOCKET is set, as hotswap
// run --handoff-keepalive does), Serve also opens the process's handoff
// socket before it returns, receives the keep-alive connections older
// generations hand over, and Drain hands this server's own to the newer
// generation instead of closing them (see docs/handoff.md).
func Serve(srv *http.Server, ln net.Listener) *Server {
	return drain.Serve(srv, ln, proc.handoffHub())
}

// Steer makes each listener that [Listener] bound itself under hotswap
// --mode reuseport take every new connection of its SO_REUSEPORT group, when
// it can tell its place there (package steer): the previous generation's
// listener then has no handshake in flight when it closes, which
// net.ipv4.tcp_migrate_req alone does not guarantee. Call it once the
// listeners are being served, right before [Ready]; [ListenAndServe] does.
// It does nothing for inherited listeners or outside hotswap, and is best
// effort: where it cannot steer, the kernel spreads connections by hash.
func Steer() {
	proc.mu.Lock()
	defer proc.mu.Unlock()
	for _, st := range proc.steerers {
		_, _ = st.Attach() // best effort: without it the kernel spreads by hash
	}
}

// Notify sends state (newline-separated KEY=VALUE lines, e.g. "STATUS=warming
// up") to the supervisor on $NOTIFY_SOCKET, like sd_notify(0, state). It does
// nothing and returns nil when NOTIFY_SOCKET is unset (standalone).
func Notify(state string) error { return activation.Notify(state) }

// Ready tells the supervisor this process serves (READY=1): hotswap then
// stops the previous generation. Call it once the listeners are being served
// (after [Steer], under hotswap --mode reuseport). It only notifies.
func Ready() error { return Notify("READY=1") }

// Stopping tells the supervisor this process is shutting down (STOPPING=1).
func Stopping() error { return Notify("STOPPING=1") }
