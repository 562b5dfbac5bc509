package load

import (
	"bufio"
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// cannedServer answers every request with the same bytes and allocates
// nothing per request, so the benchmark's allocations are the client's.
func cannedServer(b *testing.B, served *atomic.Int64) string {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Hotswap-Version: v1\r\nX-Hotswap-Generation: 1\r\nX-Hotswap-Pid: 1\r\n\r\nok\n")
	return rawServer(b, func(c net.Conn) {
		br := bufio.NewReader(c)
		for readRequest(br) == nil {
			served.Add(1)
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
}

// BenchmarkClient measures the client's own throughput against a trivial
// server on loopback (which shares the machine's cores): one op is one
// attempt. Report the req/s metric and allocs/op.
func BenchmarkClient(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"keepalive=1", Config{KeepAlive: 1}},
		{"keepalive=8", Config{KeepAlive: 8}},
		{"newconn=4", Config{NewConn: 4}},
		{"mix=4+2", Config{KeepAlive: 4, NewConn: 2}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var served atomic.Int64
			cfg := bc.cfg
			cfg.Addr = cannedServer(b, &served)
			cfg.Requests = int64(b.N)
			cfg.Duration = 10 * time.Minute
			b.ReportAllocs()
			b.ResetTimer()
			rep, err := Run(context.Background(), cfg)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if err := rep.Err(); err != nil {
				b.Fatal(err)
			}
			if rep.Attempts != int64(b.N) || rep.OK != served.Load() {
				b.Fatalf("attempts %d ok %d served %d, want %d", rep.Attempts, rep.OK, served.Load(), b.N)
			}
			b.ReportMetric(rep.Rate, "req/s")
			b.ReportMetric(float64(rep.Latency.Overall.P99.Microseconds()), "p99-µs")
		})
	}
}
