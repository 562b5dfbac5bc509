// Package execshim is the exec shim behind activation.RunShimIfRequested:
// set LISTEN_PID to our own PID and execve the target (by path, or the open
// file hotswap verified: ExecFDEnv). It is kept free of
// heavy imports (no net/http) so that reuseport/shim can run it from a
// package initializer before the rest of the binary initializes. It owns only
// that, never waits for processes, and never imports Kubernetes code.
package execshim
