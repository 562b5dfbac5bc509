// Package execplugin is an end-to-end test: hotswap's reaper, running as
// PID 1 of a PID namespace and reaping a stream of orphans, must leave every
// exit status of os/exec inside the process to its Cmd.Wait — the way
// client-go runs exec credential plugins (kubeconfig users with `exec:`, as
// managed clusters use). It drives a real kube-apiserver (e2e/kubetest) with
// a real plugin that prints a service-account token.
//
// It has its own package because the reaper is process-wide: the test
// re-executes its binary as PID 1 of a new PID namespace, where TestMain runs
// the client instead of the tests. It must never start a cluster in that
// child, nor pass without the real apiserver.
package execplugin
