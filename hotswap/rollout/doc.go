// Package rollout is the fleet rollout driver behind `hotswap rollout`: it
// takes a release through the pods of a Deployment (or label selector) in
// steps, bakes each step, checks every canary pod's hotswap annotations,
// conditions and restarts, and on the first bad sign rolls every canary pod
// back to stable (docs/rollout.md).
//
// It owns: the reconcile loop (Driver.Drive), starting and steering a
// rollout (Start, Pause, Resume, Abort, Promote), the health verdict on a
// pod (Check), the status table, the optional analysis command, the events
// it records on the ConfigMap, its metrics and the RBAC it needs
// (RequiredRules).
//
// It keeps no state of its own: every decision is made from the ConfigMap
// (the format is package fleet's) and the pods, and every write carries
// the resourceVersion it was decided from, so a killed driver continues
// where the object says and two drivers never both act.
//
// It must never: write to pods (pods move by reading the ConfigMap
// themselves), import k8s.io/client-go/kubernetes or k8s.io/api (pods and
// ConfigMaps are package kube/core's types; the Deployment's selector is
// read as plain JSON), or run
// a command named by the ConfigMap.
package rollout
