//go:build nokube

package main

// kubeFeatures: a `-tags nokube` build has no Kubernetes features and links
// no client-go (see feature_kube.go).
func kubeFeatures(*string) (fs []feature, reportErrors func() uint64) { return nil, nil }
