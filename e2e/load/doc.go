// Package load is the load generator of hotswap's end-to-end tests and
// benchmarks. It drives an HTTP/1.1 server with a mix of keep-alive clients,
// new-connection-per-request clients, slow requests and a pool of long-idle
// keep-alive connections, and it counts every attempt.
//
// It owns its own small HTTP/1.1 client on net.Conn. It must never use
// net/http's Transport: the Transport silently retries some requests that
// fail on a reused keep-alive connection, which is exactly the failure a swap
// can cause, so a count taken through it lies. Here one attempt is one
// request written once; its outcome (ok, refused, reset, EOF, timeout,
// non-2xx, other) is recorded, never retried.
//
// A run always stops by itself: no attempt starts after Config.Duration (or
// after Config.Requests attempts), and every attempt is bounded by
// Config.Timeout, so Run returns within Duration+Timeout.
//
// Swap events are recorded while the run goes (Runner.MarkSwap); the report
// splits latency into the swap windows (±Config.SwapWindow around each mark)
// and the baseline outside them, and lists the server generations and
// versions that answered (X-Hotswap-Generation, X-Hotswap-Version,
// X-Hotswap-Pid) with the time each was first seen.
//
// Typical use in an e2e test:
//
//	r, err := load.Start(ctx, load.Config{Addr: addr, Duration: 30 * time.Second,
//		KeepAlive: 8, NewConn: 2, SlowFraction: 0.1, IdlePool: 4, IdleFor: 2 * time.Second})
//	...
//	r.MarkSwap(time.Now()) // just before triggering a swap
//	trigger()
//	at, err := r.WaitVersion(ctx, "v2")
//	...
//	rep := r.Wait()
//	if err := rep.Err(); err != nil {
//		t.Fatal(err) // lists the failures by kind
//	}
package load
