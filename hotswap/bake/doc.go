// Package bake is the per-pod post-swap health bake: after a new generation
// takes over, it keeps checking it for a configured time — an HTTP health
// URL and the generation's survival — and on failure offers the previous
// release again, so the pod rolls back in place on its own (docs/rollout.md).
//
// It owns: the bake timer and health checks, remembering which release each
// version was (from the engine's Verify hook, which sees every release
// before it starts), and telling the pod's reporters how the bake went
// (Reporter).
//
// It sits beside the engine, not in it: it sees the engine only through
// its events (it is an Observer), its Verify hook and its trigger door
// (Offer, like a source). It must never block Observe (checks run on its
// own goroutine), roll back a rollback, or import Kubernetes packages.
package bake
