package reuseport

import (
	"context"
	"errors"
	"net/http"
	"os/signal"
	"syscall"
	"time"
)

// DefaultGrace is how long [ListenAndServe] answers with "Connection: close"
// before it shuts down (see [Server.Drain]). It ends early once every
// connection is closed, so it only runs in full when clients sit idle.
const DefaultGrace = 2 * time.Second

// ListenAndServe is the whole swap-ready server: it serves srv on
// [Listener](name, fallbackAddr), steers its SO_REUSEPORT group to itself
// ([Steer], under hotswap --mode reuseport only), reports [Ready], and on
// SIGTERM or SIGINT reports [Stopping] and drains with [DefaultGrace]. A
// second signal kills the process. It returns nil after a clean drain.
func ListenAndServe(name, fallbackAddr string, srv *http.Server) error {
	ln, err := Listener(name, fallbackAddr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s := Serve(srv, ln)
	Steer() // explicit: the only place the library steers on its own
	if err := Ready(); err != nil {
		return errors.Join(err, s.Drain(context.Background(), 0))
	}
	select {
	case <-ctx.Done():
	case <-s.Done():
		return s.Err()
	}
	stop()
	_ = Stopping() // best effort: hotswap already knows it asked us to stop
	return s.Drain(context.Background(), DefaultGrace)
}
