package load

import (
	"errors"
	"fmt"
	"math"
	"net"
	"time"
)

// Defaults applied by Start to the zero fields of a Config.
const (
	// DefaultDuration bounds a run that sets no Requests.
	DefaultDuration = 10 * time.Second
	// DefaultCountedDuration bounds a run that sets Requests but no Duration.
	DefaultCountedDuration = time.Minute
	// DefaultTimeout bounds one attempt: dial, write and the whole response.
	DefaultTimeout = 5 * time.Second
	// DefaultIdleFor is how long an idle-pool connection sits idle between requests.
	DefaultIdleFor = time.Second
	// DefaultFailurePause is how long a client waits after a failed attempt.
	DefaultFailurePause = 10 * time.Millisecond
	// DefaultSwapWindow is the half-width of the window around each swap mark.
	DefaultSwapWindow = time.Second
	// DefaultMarkLag is how late a swap mark may be recorded after its time.
	DefaultMarkLag = 5 * time.Second
	// DefaultPath is the path of a normal request.
	DefaultPath = "/"
	// DefaultSlowPath is the path of a slow request (the example server
	// sleeps for ?sleep=DUR before answering).
	DefaultSlowPath = "/?sleep=50ms"
)

// ErrConfig is wrapped by every error that Start returns for a bad Config.
var ErrConfig = errors.New("load: bad config")

// Config describes one load run. Addr and at least one client are required;
// every other zero field takes its default.
type Config struct {
	// Addr is the target, host:port. It is resolved once, at Start.
	Addr string `json:"addr"`
	// Host is the Host header; default Addr.
	Host string `json:"host,omitempty"`
	// Path is the request target of a normal request; default "/".
	Path string `json:"path,omitempty"`
	// SlowPath is the request target of a slow request; default "/?sleep=50ms".
	SlowPath string `json:"slow_path,omitempty"`
	// SlowFraction is the fraction (0..1) of requests sent to SlowPath.
	SlowFraction float64 `json:"slow_fraction,omitempty"`

	// Duration is the hard time bound: no attempt starts after it.
	// Default DefaultDuration, or DefaultCountedDuration when Requests is set.
	Duration time.Duration `json:"duration_ns"`
	// Requests, when positive, stops the run after this many attempts
	// (across all clients), or at Duration, whichever comes first.
	Requests int64 `json:"requests,omitempty"`
	// Timeout bounds one attempt (dial, write, whole response); default 5s.
	Timeout time.Duration `json:"timeout_ns"`

	// KeepAlive is the number of keep-alive clients: each sends its requests
	// back to back on one connection, dialing again only when the server
	// closes it (Connection: close) or an attempt fails.
	KeepAlive int `json:"keepalive"`
	// NewConn is the number of clients that open a new connection for
	// every request (and send Connection: close).
	NewConn int `json:"newconn"`
	// Clients and KeepAliveFraction are an alternative to KeepAlive and
	// NewConn, used only when both of those are zero: round(Clients *
	// KeepAliveFraction) keep-alive clients, the rest new-connection ones.
	Clients int `json:"clients,omitempty"`
	// KeepAliveFraction: see Clients.
	KeepAliveFraction float64 `json:"keepalive_fraction,omitempty"`
	// Think is a pause between two attempts of a keep-alive or
	// new-connection client; default none (closed loop, back to back).
	Think time.Duration `json:"think_ns,omitempty"`
	// Rate, when positive, paces the keep-alive and new-connection clients
	// to about this many attempts per second in total (an open schedule per
	// client instead of back to back), so the load leaves CPU to the server
	// on a small machine. A client that cannot keep up does not burst.
	Rate float64 `json:"rate,omitempty"`
	// FailurePause is how long a client waits after a failed attempt
	// before its next one, so a server that is down is not spun on;
	// default 10ms, negative for none.
	FailurePause time.Duration `json:"failure_pause_ns,omitempty"`

	// IdlePool is the number of long-idle keep-alive connections: each
	// sends one request, sits idle for IdleFor, then checks that the server
	// has not closed it (as connection pools do before reuse) and sends the
	// next one on it. A connection found closed is replaced silently (a
	// "stale" reconnect, not a failure).
	IdlePool int `json:"idle_pool,omitempty"`
	// IdleFor is the idle time of an idle-pool connection; default 1s.
	IdleFor time.Duration `json:"idle_for_ns,omitempty"`
	// IdleNoCheck makes the idle pool reuse its connections without the
	// check, as a naive pool does: a connection the server closed while it
	// was idle then fails its next attempt (EOF or reset).
	IdleNoCheck bool `json:"idle_no_check,omitempty"`

	// SwapWindow is the half-width of the window around each swap mark in
	// which latency is reported separately; default 1s.
	SwapWindow time.Duration `json:"swap_window_ns"`
	// MarkLag is how long after time t Runner.MarkSwap(t) may still be
	// called and be counted exactly; default 5s. Attempts are classified
	// into swap window or baseline MarkLag+SwapWindow after they end.
	MarkLag time.Duration `json:"mark_lag_ns,omitempty"`
	// KeepAttempts keeps one Attempt per attempt in Report.Log (about 64
	// bytes each: mind long runs).
	KeepAttempts bool `json:"keep_attempts,omitempty"`
}

// withDefaults returns c with defaults applied, or an error wrapping ErrConfig.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	if c.Addr == "" {
		return bad("Addr is empty: set the target host:port")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return bad("Addr %q: %v", c.Addr, err)
	}
	if c.KeepAlive < 0 || c.NewConn < 0 || c.Clients < 0 || c.IdlePool < 0 {
		return bad("client counts must not be negative")
	}
	if c.KeepAliveFraction < 0 || c.KeepAliveFraction > 1 || math.IsNaN(c.KeepAliveFraction) {
		return bad("KeepAliveFraction %v: want 0..1", c.KeepAliveFraction)
	}
	if c.SlowFraction < 0 || c.SlowFraction > 1 || math.IsNaN(c.SlowFraction) {
		return bad("SlowFraction %v: want 0..1", c.SlowFraction)
	}
	if c.KeepAlive == 0 && c.NewConn == 0 && c.Clients > 0 {
		c.KeepAlive = int(math.Round(float64(c.Clients) * c.KeepAliveFraction))
		c.NewConn = c.Clients - c.KeepAlive
	}
	if c.KeepAlive+c.NewConn+c.IdlePool == 0 {
		return bad("no clients: set KeepAlive, NewConn, Clients or IdlePool")
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return bad("Rate %v: want a positive number of attempts per second, or 0 for back to back", c.Rate)
	}
	if c.Duration < 0 || c.Timeout < 0 || c.IdleFor < 0 || c.Think < 0 || c.SwapWindow < 0 || c.MarkLag < 0 || c.Requests < 0 {
		return bad("durations and Requests must not be negative")
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
		if c.Requests > 0 {
			c.Duration = DefaultCountedDuration
		}
	}
	if c.Host == "" {
		c.Host = c.Addr
	}
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.SlowPath == "" {
		c.SlowPath = DefaultSlowPath
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.IdleFor == 0 {
		c.IdleFor = DefaultIdleFor
	}
	if c.FailurePause == 0 {
		c.FailurePause = DefaultFailurePause
	}
	if c.FailurePause < 0 {
		c.FailurePause = 0
	}
	if c.SwapWindow == 0 {
		c.SwapWindow = DefaultSwapWindow
	}
	if c.MarkLag == 0 {
		c.MarkLag = DefaultMarkLag
	}
	for _, s := range []string{c.Host, c.Path, c.SlowPath} {
		for i := 0; i < len(s); i++ {
			if s[i] <= ' ' || s[i] == 0x7f {
				return bad("Host/Path/SlowPath %q contains a space or control character", s)
			}
		}
	}
	return c, nil
}
