package hotswap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The control socket is served by the engine on the fake runtime (its
// listener is real): running gives one with generation 1 serving.

// A client that sends an endless request line gets an error answer after
// MaxControlRequest bytes, and PID 1 does not buffer the rest: before the
// bound, one 780 MiB line grew hotswap to 856 MB.
func TestControlRequestLineIsBounded(t *testing.T) {
	e := running(t, nil).e
	c, err := net.Dial("unix", e.controlPath())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const total = 100 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	sent := make(chan int64, 1)
	go func() {
		chunk := bytes.Repeat([]byte("a"), 1<<20)
		var n int64
		for n < total {
			w, err := c.Write(chunk)
			n += int64(w)
			if err != nil {
				break // the server stopped reading and closed: what we want
			}
		}
		sent <- n
	}()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		t.Fatalf("no answer to an oversized request: %v (read %q)", err, line)
	}
	n := <-sent
	runtime.ReadMemStats(&after)
	var resp ControlResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		t.Fatalf("answer %q: %v", line, err)
	}
	if !strings.Contains(resp.Error, "request too long") {
		t.Errorf("answer %q, want a request-too-long error", line)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("client sent %d KiB before the server closed; the test process allocated %d KiB meanwhile", n>>10, alloc>>10)
	if alloc > 16<<20 {
		t.Errorf("allocated %d MiB while a client sent one long line: the request line is buffered unbounded", alloc>>20)
	}
	if e.Status().Phase != PhaseServing {
		t.Errorf("phase %s after the oversized request, want serving", e.Status().Phase)
	}
}

// A client that connects and sends nothing is dropped after the read
// timeout instead of holding a goroutine and a descriptor for good.
func TestControlSilentClientIsDropped(t *testing.T) {
	old := controlReadTimeout
	controlReadTimeout = 200 * time.Millisecond
	t.Cleanup(func() { controlReadTimeout = old })
	e := running(t, nil).e
	c, err := net.Dial("unix", e.controlPath())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("silent client: read = %v, want EOF (the server hangs up)", err)
	}
}

// The server answers requests it cannot parse with an error that says why.
func TestControlBadRequests(t *testing.T) {
	e := running(t, nil).e
	for _, c := range []struct{ line, want string }{
		{"not json\n", "bad request"},
		{`{"op":"reboot"}` + "\n", `unknown op "reboot"`},
		{`{"op":"swap","timeout":"soon"}` + "\n", `bad timeout "soon"`},
		{`{"op":"swap","timeout":"-1s"}` + "\n", "must be positive"},
		{`{"op":"status"}`, "does not end with a newline"},
	} {
		conn, err := net.Dial("unix", e.controlPath())
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, c.line); err != nil {
			t.Fatal(err)
		}
		_ = conn.(*net.UnixConn).CloseWrite()
		line, err := bufio.NewReader(conn).ReadBytes('\n')
		conn.Close()
		if err != nil {
			t.Fatalf("%q: no answer: %v", c.line, err)
		}
		var resp ControlResponse
		if err := json.Unmarshal(line, &resp); err != nil || !strings.Contains(resp.Error, c.want) {
			t.Errorf("%q: answer %s, want an error containing %q", c.line, line, c.want)
		}
	}
}

// fakeControlServer answers every connection with answer, whatever it asks.
func fakeControlServer(t *testing.T, answer string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = bufio.NewReader(c).ReadBytes('\n')
			_, _ = io.WriteString(c, answer)
			c.Close()
		}
	}()
	return path
}

// Control refuses an answer that carries neither what was asked nor an
// error, so callers (hotswap swap) may use Swap and Status without a nil
// check: before, `hotswap swap` panicked on such an answer.
func TestControlValidatesAnswers(t *testing.T) {
	for _, c := range []struct {
		op, answer string
		ok         bool
	}{
		{"swap", "{}\n", false},
		{"swap", `{"swap":null}` + "\n", false},
		{"swap", `{"status":{"phase":"serving"}}` + "\n", false},
		{"status", "{}\n", false},
		{"status", `{"swap":{"id":1}}` + "\n", false},
		{"swap", "[]\n", false},
		{"swap", "no newline", false},
		{"swap", `{"swap":{"id":1,"result":"succeeded"}}` + "\n", true},
		{"status", `{"status":{"phase":"serving"}}` + "\n", true},
		{"swap", `{"error":"busy"}` + "\n", true},
	} {
		path := fakeControlServer(t, c.answer)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := Control(ctx, path, ControlRequest{Op: c.op})
		cancel()
		if (err == nil) != c.ok {
			t.Errorf("%s answered %q: err = %v, want ok=%v", c.op, c.answer, err, c.ok)
			continue
		}
		if err == nil && resp.Error == "" && ((c.op == "swap" && resp.Swap == nil) || (c.op == "status" && resp.Status == nil)) {
			t.Errorf("%s answered %q: accepted without a result", c.op, c.answer)
		}
	}
}

// An answer line longer than MaxControlAnswer is an error, not an endless
// read into memory.
func TestControlAnswerIsBounded(t *testing.T) {
	path := fakeControlServer(t, `{"error":"`+strings.Repeat("x", MaxControlAnswer)+`"}`+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Control(ctx, path, ControlRequest{Op: "status"}); err == nil {
		t.Fatal("an answer over MaxControlAnswer was accepted")
	}
}

func FuzzControlRequest(f *testing.F) {
	for _, s := range []string{
		`{"op":"swap"}` + "\n",
		`{"op":"swap","timeout":"30s"}` + "\n",
		`{"op":"status"}` + "\n",
		`{"op":"swap","timeout":"-5m"}` + "\n",
		`{"op":"swap","timeout":"9999999999h"}` + "\n",
		`{"op":"status","op":"swap"}` + "\n",
		`{"op":"\u0073tatus"}` + "\n",
		"{}\n", "\n", "", "null\n", `{"op":1}` + "\n", "{\"op\":\"swap\"}\n{\"op\":\"status\"}\n",
		`{"op":"swap"` + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := readControlRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		first, _, found := bytes.Cut(data, []byte("\n"))
		if !found || len(first)+1 > MaxControlRequest {
			t.Fatalf("accepted %q: no newline within %d bytes", data, MaxControlRequest)
		}
		if req.Op != "swap" && req.Op != "status" {
			t.Fatalf("accepted unknown op %q from %q", req.Op, data)
		}
		if req.Timeout != "" {
			if d, err := time.ParseDuration(req.Timeout); err != nil || d <= 0 {
				t.Fatalf("accepted timeout %q (%v) from %q", req.Timeout, err, data)
			}
		}
		// What the client would send for it parses back to the same request.
		b, _ := json.Marshal(req)
		again, err := readControlRequest(bytes.NewReader(append(b, '\n')))
		if err != nil || again != req {
			t.Fatalf("round trip of %+v: %+v, %v", req, again, err)
		}
	})
}

func FuzzControlAnswer(f *testing.F) {
	for _, s := range []string{
		`{"swap":{"id":1,"result":"succeeded","fromGen":1,"toGen":2}}`,
		`{"status":{"phase":"serving","generation":1,"generations":[{"generation":1,"pid":7}]}}`,
		`{"error":"busy"}`, `{"error":""}`, `{}`, `null`, `[]`, `{"swap":null}`,
		`{"status":null,"error":null}`, `{"swap":{}}`, `{"status":{"generations":null}}`,
	} {
		f.Add("swap", []byte(s))
		f.Add("status", []byte(s))
	}
	f.Fuzz(func(t *testing.T, op string, line []byte) {
		resp, err := decodeControlAnswer(op, line)
		if err != nil || resp.Error != "" {
			return
		}
		// What `hotswap swap` and `hotswap status` dereference.
		switch op {
		case "swap":
			_ = resp.Swap.Result
		case "status":
			_ = resp.Status.Phase
			for _, g := range resp.Status.Generations {
				_ = g.PID
			}
		}
	})
}
