package load

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// Kind is the outcome of one attempt.
type Kind uint8

// Outcomes. Every kind except OK and Aborted is a failure.
const (
	// OK is a complete 2xx response.
	OK Kind = iota
	// Refused is a dial refused by the target (ECONNREFUSED).
	Refused
	// Reset is a connection reset by the peer (ECONNRESET, ECONNABORTED)
	// or a write to a connection the peer closed (EPIPE).
	Reset
	// EOF is the server closing the connection before a full response.
	EOF
	// Timeout is an attempt that did not finish within Config.Timeout.
	Timeout
	// Status is a complete response with a status outside 2xx.
	Status
	// Other is any other error (malformed response, no local port, ...);
	// Report.Errors keeps samples.
	Other
	// Aborted is an attempt cut short because the run's context was
	// cancelled; it is not a failure.
	Aborted
	numKinds
)

var kindNames = [numKinds]string{"ok", "refused", "reset", "eof", "timeout", "non-2xx", "other", "aborted"}

// String returns the kind's short name ("reset", "non-2xx", ...).
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MarshalText encodes the kind as its String.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Failed reports whether the kind counts as a failed attempt.
func (k Kind) Failed() bool { return k != OK && k != Aborted }

// Class is the kind of client that made an attempt.
type Class uint8

// Client classes.
const (
	// KeepAlive clients send back to back on one connection.
	KeepAlive Class = iota
	// NewConn clients open a connection per request.
	NewConn
	// IdlePool connections idle for Config.IdleFor between requests.
	IdlePool
	numClasses
)

var classNames = [numClasses]string{"keepalive", "newconn", "idlepool"}

// String returns the class's name ("keepalive", "newconn", "idlepool").
func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// MarshalText encodes the class as its String.
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// errProtocol is wrapped by errors for responses this client cannot parse.
var errProtocol = errors.New("malformed HTTP response")

// classify maps an attempt's error to its Kind.
func classify(err error) Kind {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return Timeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return Reset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return EOF
	default:
		return Other
	}
}
