// Package sources tests hotswap's release sources end to end: the real
// hotswap binary (built by e2e/testbin) serves the built-in example server
// under load while releases appear on a watched volume or in a manifest on a
// kubelet-style atomic-writer volume, and bad releases are refused with the
// serving generation untouched and no failed request. The test talks to
// hotswap only from outside: `hotswap status -o json` over the control
// socket, its JSON log, and HTTP.
//
// The ConfigMap-through-the-API source is tested against a real
// kube-apiserver in hotswap/source/configmap.
package sources
