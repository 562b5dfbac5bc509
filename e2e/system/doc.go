// Package system is hotswap's whole-system end-to-end test without a
// cluster: everything a pod of the Helm chart has, except the kubelet.
//
//   - A private network namespace for the whole test binary (TestMain
//     re-executes it there), so the apiserver, hotswap's listeners, its
//     admin endpoint and the load are on a loopback of the test's own, at
//     the chart's default ports.
//   - A real etcd + kube-apiserver (e2e/kubetest) holding what `helm
//     template` renders (ServiceAccount, Role, RoleBinding, Service,
//     Deployment) and a Pod made from the Deployment's pod template.
//   - hotswap as PID 1 of fresh PID and mount namespaces, run with exactly
//     the container args the chart renders, as user 65532 on a read-only
//     root, with a tmpfs at /run/hotswap, the release volume mounted where
//     the chart mounts it, the downward-API environment resolved from the
//     Pod object, and the in-cluster service-account token of the chart's
//     ServiceAccount (so reports are authorised by the chart's Role only).
//   - Load from e2e/load during all of it.
//
// The scenario: a new release dropped onto the watched volume is swapped in
// with zero failed requests and the pod's annotations, hotswap.dev/ready
// condition and events on the apiserver follow; a bad release next is
// refused, the old one still serves, and the event says why; SIGTERM ends
// hotswap with exit code 0 within the grace period.
//
// Needs root (namespaces) and the binaries of hack/kube-assets.sh.
package system
