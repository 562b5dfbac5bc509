//go:build !amd64 && !arm64

package tinyshim

// image is empty where there is no tiny shim yet: Load says so and hotswap
// keeps its self re-exec shim.
var image []byte
