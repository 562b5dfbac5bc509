package hotswap

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// ControlRequest is one line a client sends on the control socket.
type ControlRequest struct {
	// Op is "swap", "status" or "upgrade".
	Op string `json:"op"`
	// Path and SHA256 name the new hotswap binary of an "upgrade".
	Path   string `json:"path,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// Timeout bounds a swap, as a Go duration ("30s"); empty: no bound
	// beyond the engine's own --start-timeout.
	Timeout string `json:"timeout,omitempty"`
}

// ControlResponse is the one line the server answers.
type ControlResponse struct {
	Error  string      `json:"error,omitempty"`
	Swap   *SwapResult `json:"swap,omitempty"`
	Status *Status     `json:"status,omitempty"`
	// Upgrade answers an "upgrade": sent just before the exec.
	Upgrade *UpgradeResult `json:"upgrade,omitempty"`
}

// MaxControlRequest bounds one request line on the control socket, newline
// included. A request is a few dozen bytes; the bound keeps a client from
// growing PID 1's memory with an endless line.
const MaxControlRequest = 64 << 10

// MaxControlAnswer bounds the answer line a client reads: a status lists a
// few generations, far below it.
const MaxControlAnswer = 4 << 20

// controlReadTimeout is how long a client may take to send its request
// line, and controlWriteTimeout how long it may take to read the answer
// (once it is ready): a silent client never holds a connection for good.
var (
	controlReadTimeout  = 5 * time.Second
	controlWriteTimeout = 5 * time.Second
)

// errControlTooLong is the answer to a request line over MaxControlRequest.
var errControlTooLong = fmt.Errorf("request too long: a request line is at most %d bytes", MaxControlRequest)

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
	readTimeout := controlReadTimeout // read once, here: tests change it between engines
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go e.serveControlConn(ctx, c.(*net.UnixConn), readTimeout)
		}
	}()
	return func() { ln.Close() }, nil
}

func (e *Engine) serveControlConn(ctx context.Context, c *net.UnixConn, readTimeout time.Duration) {
	defer c.Close()
	reply := func(r ControlResponse) {
		b, _ := json.Marshal(r)
		_ = c.SetWriteDeadline(time.Now().Add(controlWriteTimeout))
		_, _ = c.Write(append(b, '\n'))
	}
	if uid, err := peerUID(c); err != nil || (uid != 0 && uid != os.Geteuid()) {
		e.log.Warn("control socket: refused a client of another user", "uid", uid, "err", err)
		reply(ControlResponse{Error: "permission denied: only root or the user hotswap runs as may control it"})
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	req, err := readControlRequest(c)
	if errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) {
		return // gone or silent: nobody to answer
	}
	if err != nil {
		e.log.Warn("control socket: bad request", "err", err)
		reply(ControlResponse{Error: err.Error()})
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	switch req.Op {
	case "status":
		st := e.Status()
		reply(ControlResponse{Status: &st})
	case "swap":
		sctx := ctx
		if req.Timeout != "" {
			d, _ := time.ParseDuration(req.Timeout) // checked by parseControlRequest
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
	case "upgrade":
		res, err := e.Upgrade(ctx, req.Path, req.SHA256)
		if err != nil {
			reply(ControlResponse{Error: err.Error()})
			return
		}
		reply(ControlResponse{Upgrade: &res})
	}
}

// readControlRequest reads and parses one request line of at most
// MaxControlRequest bytes. It never buffers more than that, whatever the
// client sends. io.EOF means the client sent nothing.
func readControlRequest(r io.Reader) (ControlRequest, error) {
	lr := &io.LimitedReader{R: r, N: MaxControlRequest}
	line, err := bufio.NewReaderSize(lr, 4096).ReadBytes('\n')
	switch {
	case err == nil:
	case errors.Is(err, io.EOF) && lr.N == 0:
		return ControlRequest{}, errControlTooLong
	case errors.Is(err, io.EOF) && len(line) > 0:
		return ControlRequest{}, errors.New("bad request: the line does not end with a newline")
	default:
		return ControlRequest{}, err
	}
	return parseControlRequest(line)
}

// parseControlRequest checks one request line: JSON, a known op, a
// well-formed timeout.
func parseControlRequest(line []byte) (ControlRequest, error) {
	var req ControlRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return ControlRequest{}, fmt.Errorf("bad request: %w", err)
	}
	switch req.Op {
	case "swap", "status":
	case "upgrade":
		if !filepath.IsAbs(req.Path) {
			return ControlRequest{}, fmt.Errorf("upgrade: path %q: want the absolute path of the new hotswap binary", req.Path)
		}
	default:
		return ControlRequest{}, fmt.Errorf("unknown op %q: want swap, status or upgrade", req.Op)
	}
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil {
			return ControlRequest{}, fmt.Errorf("bad timeout %q: %w", req.Timeout, err)
		}
		if d <= 0 {
			return ControlRequest{}, fmt.Errorf("bad timeout %q: must be positive", req.Timeout)
		}
	}
	return req, nil
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
	line, err := bufio.NewReader(io.LimitReader(c, MaxControlAnswer)).ReadBytes('\n')
	if err != nil && werr != nil {
		return ControlResponse{}, fmt.Errorf("control socket: send: %w", werr)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ControlResponse{}, fmt.Errorf("control socket: no answer: %w", ctx.Err())
		}
		return ControlResponse{}, fmt.Errorf("control socket: read answer: %w", err)
	}
	return decodeControlAnswer(req.Op, line)
}

// decodeControlAnswer parses the answer to a request of op and checks that
// it carries what a caller will use: an error, or the swap result (op swap)
// or the status (op status). A caller may then dereference Swap or Status
// whenever Error is empty.
func decodeControlAnswer(op string, line []byte) (ControlResponse, error) {
	var resp ControlResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		return ControlResponse{}, fmt.Errorf("control socket: bad answer: %w", err)
	}
	if resp.Error != "" {
		return resp, nil
	}
	switch {
	case op == "swap" && resp.Swap == nil:
		return ControlResponse{}, fmt.Errorf("control socket: bad answer to %s: neither a swap result nor an error (%.200q)", op, line)
	case op == "status" && resp.Status == nil:
		return ControlResponse{}, fmt.Errorf("control socket: bad answer to %s: neither a status nor an error (%.200q)", op, line)
	}
	return resp, nil
}
