//go:build typedclient

package main

import (
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// typedClientset links client-go's typed clientset, whose scheme registers
// every API group, to show what hotswap avoids.
func typedClientset() {
	_, _ = kubernetes.NewForConfig(&rest.Config{Host: "https://127.0.0.1:1"})
}
