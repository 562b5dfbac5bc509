// Package kube reports what the swap engine does to Kubernetes: pod
// annotations (hotswap.dev/version, /generation, /phase, /last-swap), the
// pod condition hotswap.dev/ready on pods/status (for readinessGates), and
// events visible in `kubectl describe pod`.
//
// It owns: deciding whether reporting is on (--kube=auto|on|off, in-cluster
// detection, POD_NAME/POD_NAMESPACE), the small core/v1-only client every
// hotswap Kubernetes feature shares (RESTConfig, NewCoreV1Client, Scheme —
// the ConfigMap release source builds its informer on it), and the exact
// RBAC rules reporting needs (RequiredRules; the Helm chart's Role must
// match them).
//
// The Reporter is a hotswap.Observer. Observe only records the latest
// desired state and marks it dirty: a client-go workqueue coalesces (latest
// state wins), patches from a background goroutine and retries failures
// with exponential backoff. An unreachable or forbidding apiserver costs a
// log line and an error count, never a blocked swap; when the apiserver
// comes back the pod catches up with the latest state.
//
// Events are written by its own small event writer (events.go), not
// client-go's tools/record, and the objects are package core's subsets of
// core/v1 (docs/perf-footprint.md says what each costs).
//
// It must never: block the caller of Observe, retry or wait on the serving
// path, import k8s.io/client-go/kubernetes (its scheme registers every API
// group: measured +10.7 MB stripped, +7 MiB RSS), k8s.io/api/... (even
// core/v1 alone keeps every core type's protobuf code: +3.2 MB) or
// client-go's tools/record (strategic merge patch, kube-openapi), or be
// imported by entrypoint or reuseport.
package kube
