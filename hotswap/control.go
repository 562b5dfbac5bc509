package hotswap

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// ControlRequest is one line a client sends on the control socket.
type ControlRequest struct {
	// Op is "swap" or "status".
	Op string `json:"op"`
	// Timeout bounds a swap, as a Go duration ("30s"); empty: no bound
	// beyond the engine's own --start-timeout.
	Timeout string `json:"timeout,omitempty"`
}

// ControlResponse is the one line the server answers.
type ControlResponse struct {
	Error  string      `json:"error,omitempty"`
	Swap   *SwapResult `json:"swap,omitempty"`
	Status *Status     `json:"status,omitempty"`
}

// DefaultControlSockets lists where a client looks for the control socket
// when none is given, in the order the server picks its runtime directory.
func DefaultControlSockets() []string {
	return []string{
		"/run/hotswap/control.sock",
		filepath.Join(os.TempDir(), fmt.Sprintf("hotswap-%d", os.Getuid()), "control.sock"),
	}
}

// controlPath is where this engine's control socket lives.
func (e *Engine) controlPath() string {
	if e.cfg.ControlSocket != "" {
		return e.cfg.ControlSocket
	}
	return filepath.Join(e.runDir, "control.sock")
}

// serveControl listens on the control socket (mode 0600) and answers
// requests until ctx ends. Only our own user (or root) may connect: the
// file mode enforces it and SO_PEERCRED double-checks.
func (e *Engine) serveControl(ctx context.Context) (func(), error) {
	if e.runDir == "" && e.cfg.ControlSocket == "" {
		return nil, errors.New("no writable runtime directory")
	}
	path := e.controlPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := activation.RemoveStaleSocket(path); err != nil {
		return nil, fmt.Errorf("control socket: %w; give this hotswap its own --control-socket", err)
	}
	old := unix.Umask(0o177) // the socket is created 0600, with no window
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	e.log.Info("control socket ready", "path", path, "try", "hotswap swap --control-socket "+path)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go e.serveControlConn(ctx, c.(*net.UnixConn))
		}
	}()
	return func() { ln.Close() }, nil
}

func (e *Engine) serveControlConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	reply := func(r ControlResponse) {
		b, _ := json.Marshal(r)
		_, _ = c.Write(append(b, '\n'))
	}
	if uid, err := peerUID(c); err != nil || (uid != 0 && uid != os.Geteuid()) {
		e.log.Warn("control socket: refused a client of another user", "uid", uid, "err", err)
		reply(ControlResponse{Error: "permission denied: only root or the user hotswap runs as may control it"})
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReaderSize(c, 4096).ReadBytes('\n')
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	var req ControlRequest
	if err := json.Unmarshal(line, &req); err != nil {
		reply(ControlResponse{Error: "bad request: " + err.Error()})
		return
	}
	switch req.Op {
	case "status":
		st := e.Status()
		reply(ControlResponse{Status: &st})
	case "swap":
		sctx := ctx
		if req.Timeout != "" {
			d, err := time.ParseDuration(req.Timeout)
			if err != nil {
				reply(ControlResponse{Error: fmt.Sprintf("bad timeout %q: %v", req.Timeout, err)})
				return
			}
			var cancel context.CancelFunc
			sctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		res, err := e.Swap(sctx, "control")
		if err != nil {
			reply(ControlResponse{Error: err.Error()})
			return
		}
		reply(ControlResponse{Swap: &res})
	default:
		reply(ControlResponse{Error: fmt.Sprintf("unknown op %q: want swap or status", req.Op)})
	}
}

func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if cerr != nil {
		return -1, cerr
	}
	return int(cred.Uid), nil
}

// Control sends one request to the control socket at path ("" searches
// DefaultControlSockets) and returns the answer. The context bounds the
// whole exchange.
func Control(ctx context.Context, path string, req ControlRequest) (ControlResponse, error) {
	paths := []string{path}
	if path == "" {
		paths = DefaultControlSockets()
	}
	var c net.Conn
	var errs []error
	for _, p := range paths {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", p)
		if err == nil {
			c = conn
			break
		}
		errs = append(errs, err)
	}
	if c == nil {
		return ControlResponse{}, fmt.Errorf("cannot reach hotswap's control socket (is hotswap running here? pass --control-socket): %w", errors.Join(errs...))
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	b, _ := json.Marshal(req)
	_, werr := c.Write(append(b, '\n'))
	// Read even when the write failed: a server that refuses us answers
	// before reading the request and closes, and its answer says why.
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil && werr != nil {
		return ControlResponse{}, fmt.Errorf("control socket: send: %w", werr)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ControlResponse{}, fmt.Errorf("control socket: no answer: %w", ctx.Err())
		}
		return ControlResponse{}, fmt.Errorf("control socket: read answer: %w", err)
	}
	var resp ControlResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		return ControlResponse{}, fmt.Errorf("control socket: bad answer: %w", err)
	}
	return resp, nil
}
