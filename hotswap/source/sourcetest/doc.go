// Package sourcetest holds test helpers for release sources: an exact
// reproduction of the kubelet's atomic writer, which updates ConfigMap and
// Secret volumes, so sources are tested against the layout they meet in a
// pod. It is test-only code: production packages must not import it.
package sourcetest
