// Package hotswap is the swap engine: it owns the generations of the serving
// process and the one state machine that moves between them.
//
// A swap flows one way: trigger → release → verify → start generation N+1 →
// wait until ready → stop generation N (drain) → report. If N+1 exits or is
// not ready in time, its process group is killed and N keeps serving.
//
// What is verified is what runs: a release's binary is opened once, before
// its verification, and every generation of it (restarts and rollbacks
// too) executes that open file through the exec shim, never its path again
// (binary.go, pin.go, docs/security.md). The engine must never start a
// release's binary by path when it holds the open file.
//
// The engine starts every process through the entrypoint package's reaper
// (never exec.Cmd.Wait) and gets listeners and readiness from
// reuseport/activation. Every side effect (processes, signals to
// stragglers, the clock, readiness probes) goes through the Runtime
// interface (runtime.go), so the state machine is tested on a fake with a
// hand-moved clock; it must never call time.Now, time.AfterFunc,
// signal.Notify or /proc itself outside that seam (Run's one signal.Notify
// aside).
// Reporting (hotswap/kube, hotswap/admin) and release sources
// (hotswap/source) plug in through the small Observer and Release types and
// are never imported from here.
package hotswap
