// Package chart tests the Helm chart in charts/hotswap: `helm lint`, golden
// files of `helm template` for the main combinations of values
// (testdata/*.golden, rewritten with -update), values that must fail at
// install, every hotswap flag the chart renders checked against the binary's
// own `hotswap flags-doc`, the Role compared with what hotswap/kube says the
// reporter needs, and every rendered manifest applied with server-side
// dry-run to a real kube-apiserver (e2e/kubetest).
//
// helm and kubectl come from the cache hack/kube-assets.sh builds
// ($HOTSWAP_KUBE_ASSETS, default ~/.cache/hotswap/kube-v1.37.2); a missing
// binary fails the package with the command that builds it.
package chart
