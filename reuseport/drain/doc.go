// Package drain serves an http.Server on one listener and stops it without
// dropping a request: [Serve] tracks connections, and [Server.Drain] stops
// accepting, answers "Connection: close" for a grace period so keep-alive
// clients reconnect at a request boundary, then shuts down. With a
// handoff.Hub it hands keep-alive connections to the newer generation
// instead (package reuseport/handoff, which it drives; handoff knows nothing
// of this package).
//
// Server authors use it through package reuseport (reuseport.Serve,
// reuseport.Server). It never calls shutdown(2) on the listener or on a
// connection — the socket is shared by, or handed to, another generation —
// and never imports Kubernetes code.
package drain
