// Package kubetest runs a real etcd and kube-apiserver on loopback for tests.
//
// It owns: starting and stopping those two processes (built by
// hack/kube-assets.sh into a cache), the certificates they need (made in Go,
// no openssl), and small helpers that tests of hotswap's Kubernetes code
// share — namespaces, bare pods, service accounts, Roles bound to them,
// clients authenticated as a service account through a real TokenRequest,
// and kubectl.
//
// Start costs about 3 s, so start one Cluster per test package, from
// TestMain (see Main). There is no kubelet, controller-manager or scheduler:
// pods exist only as API objects and nothing creates service accounts for
// you (CreateNamespace creates "default", as the controller-manager would).
//
// It must never: listen on or talk to anything but 127.0.0.1, download
// anything (missing binaries are an error telling to run
// hack/kube-assets.sh, never a silent skip), or leave a process running
// after Stop. It is test-only code: production packages must not import it.
package kubetest
