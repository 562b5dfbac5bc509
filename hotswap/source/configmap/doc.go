// Package configmap is the release source that reads a release manifest
// from a ConfigMap through the Kubernetes API: a client-go informer on that
// one object (field selector metadata.name), so `kubectl apply` of the
// ConfigMap is seen within a second instead of after the kubelet's volume
// refresh (a minute or more).
//
// It owns: the informer, reading the manifest key out of the ConfigMap and
// handing it to source.OfferManifest (so the manifest means the same here as
// in a file), and saying clearly when the informer cannot list or watch
// (no RBAC, no apiserver) while serving goes on.
//
// It needs get, list and watch on configmaps in its namespace, nothing more
// (RequiredRules). It must never import k8s.io/client-go/kubernetes (the
// typed clientset links every API group) or k8s.io/api: it uses
// hotswap/kube's core/v1 REST client and package kube/core's ConfigMap. It lives apart from package source so a binary without the
// Kubernetes features links no client-go.
package configmap
