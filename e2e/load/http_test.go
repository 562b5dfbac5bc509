package load

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	const next = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"
	tests := []struct {
		name      string
		in        string
		status    int
		closeConn bool
		version   string
		gen       string
		pid       string
		err       error // errors.Is target; nil for success
		pipelined bool  // a next response follows and must parse
	}{
		{name: "content-length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Hotswap-Version: v1.4\r\nX-Hotswap-Generation: 7\r\nx-hotswap-pid:  42 \r\n\r\nhello" + next,
			status: 200, version: "v1.4", gen: "7", pid: "42", pipelined: true},
		{name: "chunked with trailers", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n" + next,
			status: 200, pipelined: true},
		{name: "connection close", in: "HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n",
			status: 200, closeConn: true},
		{name: "connection token list", in: "HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\nContent-Length: 0\r\n\r\n",
			status: 200, closeConn: true},
		{name: "http/1.0 closes", in: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, closeConn: true},
		{name: "http/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok" + next,
			status: 200, pipelined: true},
		{name: "body until close", in: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200, closeConn: true},
		{name: "interim 100", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n" + next,
			status: 201, pipelined: true},
		{name: "204 no body", in: "HTTP/1.1 204 No Content\r\n\r\n" + next, status: 204, pipelined: true},
		{name: "503", in: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\n\r\nbye" + next, status: 503, pipelined: true},
		{name: "bare LF", in: "HTTP/1.1 200 OK\nContent-Length: 1\n\nx" + next, status: 200, pipelined: true},
		{name: "eof before response", in: "", err: io.EOF},
		{name: "eof in status line", in: "HTTP/1.1 2", err: io.ErrUnexpectedEOF},
		{name: "eof in headers", in: "HTTP/1.1 200 OK\r\nContent-Le", err: io.ErrUnexpectedEOF},
		{name: "eof in body", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", err: io.ErrUnexpectedEOF},
		{name: "eof in chunk", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe", err: io.ErrUnexpectedEOF},
		{name: "bad status line", in: "HTTP/2 200\r\n\r\n", err: errProtocol},
		{name: "bad content-length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: errProtocol},
		{name: "bad chunk size", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", err: errProtocol},
		{name: "header too long", in: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", readBufSize) + "\r\n\r\n", err: errProtocol},
		{name: "101", in: "HTTP/1.1 101 Switching Protocols\r\n\r\n", err: errProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tt.in), readBufSize)
			var resp response
			err := readResponse(br, &resp)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if resp.status != tt.status || resp.closeConn != tt.closeConn {
				t.Errorf("status %d close %v, want %d %v", resp.status, resp.closeConn, tt.status, tt.closeConn)
			}
			if string(resp.version) != tt.version || string(resp.generation) != tt.gen || string(resp.pid) != tt.pid {
				t.Errorf("version %q gen %q pid %q, want %q %q %q", resp.version, resp.generation, resp.pid, tt.version, tt.gen, tt.pid)
			}
			if tt.pipelined {
				if err := readResponse(br, &resp); err != nil || resp.status != 200 || resp.version != nil && len(resp.version) != 0 {
					t.Fatalf("next response: err %v status %d version %q", err, resp.status, resp.version)
				}
				if _, err := br.ReadByte(); err != io.EOF {
					t.Fatalf("bytes left after the next response")
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
		ka   int
		nc   int
	}{
		{"no addr", Config{KeepAlive: 1}, false, 0, 0},
		{"bad addr", Config{Addr: "localhost", KeepAlive: 1}, false, 0, 0},
		{"no clients", Config{Addr: "127.0.0.1:1"}, false, 0, 0},
		{"fraction 0.5", Config{Addr: "127.0.0.1:1", Clients: 10, KeepAliveFraction: 0.5}, true, 5, 5},
		{"fraction 1", Config{Addr: "127.0.0.1:1", Clients: 10, KeepAliveFraction: 1}, true, 10, 0},
		{"explicit wins", Config{Addr: "127.0.0.1:1", KeepAlive: 2, Clients: 10, KeepAliveFraction: 1}, true, 2, 0},
		{"bad fraction", Config{Addr: "127.0.0.1:1", Clients: 10, KeepAliveFraction: 2}, false, 0, 0},
		{"bad slow", Config{Addr: "127.0.0.1:1", KeepAlive: 1, SlowFraction: -1}, false, 0, 0},
		{"space in path", Config{Addr: "127.0.0.1:1", KeepAlive: 1, Path: "/a b"}, false, 0, 0},
		{"negative", Config{Addr: "127.0.0.1:1", KeepAlive: 1, Timeout: -1}, false, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.cfg.withDefaults()
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrConfig) {
					t.Fatalf("err %v does not wrap ErrConfig", err)
				}
				return
			}
			if c.KeepAlive != tt.ka || c.NewConn != tt.nc {
				t.Errorf("keepalive %d newconn %d, want %d %d", c.KeepAlive, c.NewConn, tt.ka, tt.nc)
			}
			if c.Duration != DefaultDuration || c.Timeout != DefaultTimeout || c.Path != "/" || c.SlowPath != DefaultSlowPath || c.Host != c.Addr {
				t.Errorf("defaults not applied: %+v", c)
			}
		})
	}
}
