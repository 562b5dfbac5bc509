// Package core holds the few core/v1 objects hotswap reads and writes —
// Pod (read), ConfigMap (read and written back by the rollout driver) and
// Event (written) — as JSON-compatible subsets of k8s.io/api/core/v1 with
// the same field names and JSON keys, and registers them (AddToScheme).
//
// Why not k8s.io/api/core/v1 itself: importing it runs its scheme builder,
// which keeps the protobuf, deep-copy and String code of all ~240 core/v1
// types in the binary, used or not: 3.2 MB of the stripped binary
// (docs/perf-footprint.md). hotswap talks JSON to the apiserver, so the
// protobuf code was dead weight too.
//
// It owns only types and their deep copies. It must never import
// k8s.io/api/... (a test checks the binary's dependencies), and a type
// written back to the apiserver (ConfigMap) must keep every field of the
// real one, or an update would drop what it does not know.
package core
