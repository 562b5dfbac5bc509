package activation

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNoListener is returned (wrapped) when a process was not given a
// listener of the name it asks for.
var ErrNoListener = errors.New("reuseport: no listener")

// Inherited is the set of listeners a process was started with (systemd
// socket activation: LISTEN_PID equal to its PID, LISTEN_FDS,
// LISTEN_FDNAMES). It holds no process-wide state: [Inherit] builds one from
// the environment, and whoever calls it owns the result.
type Inherited struct {
	active bool                    // LISTEN_FDS was meant for this process
	lns    map[string]net.Listener // by name
	order  []string                // names, in fd order
	bad    map[string]error        // inherited descriptors that are not listeners
}

// Inherit takes the listeners passed to this process at fds 3.. and removes
// LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from the environment, as
// sd_listen_fds(1) does; the descriptors become close-on-exec, so
// grandchildren do not take them. Variables meant for another process
// (LISTEN_PID is not ours: our parent was socket-activated and leaked its
// environment) leave the descriptors alone and yield an empty set. Call it
// once per process: afterwards the variables are gone.
func Inherit() (*Inherited, error) {
	in := &Inherited{lns: map[string]net.Listener{}, bad: map[string]error{}}
	err := in.take(os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"))
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	return in, err
}

// Active reports whether the process was given listeners (LISTEN_FDS > 0
// for our PID): then it must serve those, never bind a fallback of its own.
func (in *Inherited) Active() bool { return in.active }

// Listener returns the inherited listener called name. Asking for a name
// that was not passed is an error wrapping [ErrNoListener]; so is an
// inherited descriptor of that name that is not a stream listener.
func (in *Inherited) Listener(name string) (net.Listener, error) {
	if ln, ok := in.lns[name]; ok {
		return ln, nil
	}
	if err, ok := in.bad[name]; ok {
		return nil, err
	}
	if in.active {
		return nil, fmt.Errorf("%w named %q among the inherited ones (%s); check --listen NAME=... of the supervisor",
			ErrNoListener, name, strings.Join(in.order, ", "))
	}
	return nil, fmt.Errorf("%w named %q: none inherited (LISTEN_FDS unset)", ErrNoListener, name)
}

// All returns every inherited listener by name (unnamed descriptors are
// called LISTEN_FD_3, LISTEN_FD_4, ...); the map is empty when the process
// was started without listeners. Inherited descriptors that are not stream
// listeners are left out and reported in the error.
func (in *Inherited) All() (map[string]net.Listener, error) {
	out := make(map[string]net.Listener, len(in.order))
	var errs []error
	for _, name := range in.order {
		if ln, ok := in.lns[name]; ok {
			out[name] = ln
		} else {
			errs = append(errs, in.bad[name])
		}
	}
	return out, errors.Join(errs...)
}

// take turns fds 3.. into listeners.
func (in *Inherited) take(pidEnv, fdsEnv, namesEnv string) error {
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
	in.active = n > 0
	for i := 0; i < n; i++ {
		fd := listenFdsStart + i
		name := "LISTEN_FD_" + strconv.Itoa(fd)
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		// Like sd_listen_fds: our descriptors are not for our children.
		unix.CloseOnExec(fd)
		if slices.Contains(in.order, name) {
			// systemd allows repeated names; hotswap never passes them. Keep
			// the first, and leave the descriptor to whoever wants it.
			continue
		}
		in.order = append(in.order, name)
		// os.NewFile (unlike the *os.File of (*net.TCPListener).File) does not
		// make Fd switch the shared description to blocking, and
		// net.FileListener keeps it non-blocking.
		f := os.NewFile(uintptr(fd), name)
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			in.bad[name] = fmt.Errorf("reuseport: inherited fd %d (%s) is not a stream listener: %w", fd, name, err)
			continue
		}
		in.lns[name] = ln
	}
	return nil
}
