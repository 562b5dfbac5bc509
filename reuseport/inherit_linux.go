package reuseport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNoListener is returned (wrapped) by [Listener] when the process was not
// given a listener of that name and has no fallback address to bind.
var ErrNoListener = errors.New("reuseport: no listener")

// inherited is what the process was started with, read once.
var inherited struct {
	once   sync.Once
	mu     sync.Mutex
	active bool                    // LISTEN_FDS was meant for this process
	lns    map[string]net.Listener // by name
	order  []string                // names, in fd order
	bad    map[string]error        // inherited descriptors that are not listeners
	err    error                   // the environment itself is malformed
}

// Listener returns the listener this process inherited under name (systemd
// socket activation: LISTEN_PID equal to our PID, LISTEN_FDS, LISTEN_FDNAMES;
// hotswap passes --listen NAME=... this way). If the process inherited no
// listeners at all — it runs standalone — it binds fallbackAddr itself
// ("tcp://HOST:PORT", any [ParseAddr] form, or a bare "HOST:PORT") with
// SO_REUSEPORT, so a new and an old instance can overlap during a swap.
//
// It is an error to ask for a name that was not passed when other listeners
// were: binding the fallback then would silently split traffic. Every call
// with the same name returns the same listener. The LISTEN_* variables are
// removed from the environment on first use, as sd_listen_fds(1) does, and the
// descriptors are close-on-exec, so grandchildren do not take them.
func Listener(name, fallbackAddr string) (net.Listener, error) {
	if err := loadInherited(); err != nil {
		return nil, err
	}
	inherited.mu.Lock()
	defer inherited.mu.Unlock()
	if ln, ok := inherited.lns[name]; ok {
		return ln, nil
	}
	if err, ok := inherited.bad[name]; ok {
		return nil, err
	}
	if inherited.active {
		return nil, fmt.Errorf("%w named %q among the inherited ones (%s); check --listen NAME=... of the supervisor",
			ErrNoListener, name, strings.Join(inherited.order, ", "))
	}
	if fallbackAddr == "" {
		return nil, fmt.Errorf("%w named %q: none inherited (LISTEN_FDS unset) and no fallback address", ErrNoListener, name)
	}
	network, address, err := parseFallback(fallbackAddr)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	if os.Getenv("HOTSWAP_GENERATION") != "" {
		// A generation under hotswap --mode reuseport: once ready it takes
		// the group's new connections, so that the previous generation's
		// listener closes idle (steer_linux.go).
		var st *steerer
		ln, st, err = listenSteered(context.Background(), network, address)
		if st != nil {
			steerers.mu.Lock()
			steerers.all = append(steerers.all, st)
			steerers.mu.Unlock()
		}
	} else {
		ln, err = Listen(context.Background(), network, address)
	}
	if err != nil {
		return nil, err
	}
	inherited.lns[name] = ln
	return ln, nil
}

// Listeners returns every listener this process inherited, by name (unnamed
// descriptors are called LISTEN_FD_3, LISTEN_FD_4, ...). The map is empty,
// without error, when the process was started without listeners. The
// listeners are the same ones [Listener] returns. Inherited descriptors that
// are not stream listeners are left out and reported in the error.
func Listeners() (map[string]net.Listener, error) {
	if err := loadInherited(); err != nil {
		return nil, err
	}
	inherited.mu.Lock()
	defer inherited.mu.Unlock()
	out := make(map[string]net.Listener, len(inherited.order))
	var errs []error
	for _, name := range inherited.order {
		if ln, ok := inherited.lns[name]; ok {
			out[name] = ln
		} else {
			errs = append(errs, inherited.bad[name])
		}
	}
	return out, errors.Join(errs...)
}

func loadInherited() error {
	inherited.once.Do(func() {
		inherited.lns = map[string]net.Listener{}
		inherited.bad = map[string]error{}
		inherited.err = takeInherited(os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"))
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_FDNAMES")
	})
	return inherited.err
}

// takeInherited turns fds 3.. into listeners; called once, under once.
func takeInherited(pidEnv, fdsEnv, namesEnv string) error {
	if fdsEnv == "" {
		return nil
	}
	if pid, err := strconv.Atoi(pidEnv); err != nil || pid != os.Getpid() {
		// Meant for another process (e.g. our parent was socket-activated and
		// leaked its environment): not ours, do not touch those descriptors.
		return nil
	}
	n, err := strconv.Atoi(fdsEnv)
	if err != nil || n < 0 {
		return fmt.Errorf("reuseport: LISTEN_FDS=%q is not a count of descriptors", fdsEnv)
	}
	var names []string
	if namesEnv != "" {
		names = strings.Split(namesEnv, ":")
	}
	inherited.active = n > 0
	for i := 0; i < n; i++ {
		fd := listenFdsStart + i
		name := "LISTEN_FD_" + strconv.Itoa(fd)
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		// Like sd_listen_fds: our descriptors are not for our children.
		unix.CloseOnExec(fd)
		if slices.Contains(inherited.order, name) {
			// systemd allows repeated names; hotswap never passes them. Keep
			// the first, and leave the descriptor to whoever wants it.
			continue
		}
		inherited.order = append(inherited.order, name)
		// os.NewFile (unlike the *os.File of (*net.TCPListener).File) does not
		// make Fd switch the shared description to blocking, and
		// net.FileListener keeps it non-blocking.
		f := os.NewFile(uintptr(fd), name)
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			inherited.bad[name] = fmt.Errorf("reuseport: inherited fd %d (%s) is not a stream listener: %w", fd, name, err)
			continue
		}
		inherited.lns[name] = ln
	}
	return nil
}
