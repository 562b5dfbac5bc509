// Package cluster proves hotswap in a real Kubernetes cluster: a single-node
// cluster on the test machine (etcd, kube-apiserver, controller-manager,
// scheduler, containerd and a kubelet, started by hack/cluster-up.sh), the
// hotswap image built by hack/image.sh and imported into the node's
// containerd, the Helm chart installed with helm, and the example server
// swapped under load through the commands an operator uses:
// `kubectl exec POD -- kill -USR2 1`, `kubectl exec POD -- /hotswap swap`, a
// new release in the ConfigMap, a new binary in the watched volume.
//
// How it runs: TestMain tears down anything a killed earlier run left in
// the work directory, brings the cluster up (hack/cluster-up.sh: installs
// missing Debian packages and builds the kube binaries into ~/.cache on
// first use), runs the tests, and always tears the cluster down again
// (hack/cluster-down.sh: no process, mount, network device or sysctl change
// is left). Pods get addresses on the cluster's own bridge; the load
// generator (package e2e/load) sends its requests to them there, never to
// any other address.
//
// Tests are skipped only when the machine cannot run a cluster at all (not
// root, no overlay file system or cgroups, no bridge devices): a missing
// package or binary is installed or built, never a reason to skip.
//
// Environment: HOTSWAP_CLUSTER_WORKDIR (default $TMPDIR/hotswap-e2e-cluster),
// HOTSWAP_CLUSTER_KEEP=1 leaves the cluster up after the tests for
// inspection (tear it down with hack/cluster-down.sh WORKDIR),
// HOTSWAP_PERF_OUT=FILE writes the measured table (docs/perf-cluster.md is
// made that way).
//
// TestFleetRollout takes releases through an 8-pod Deployment with
// `hotswap rollout` (docs/rollout.md) and compares it with rolling updates of
// the same Deployment: HOTSWAP_FLEET_PODS (default 8) and HOTSWAP_FLEET_BAKE
// (default 5s: the bake per step and minReadySeconds of the second pair) for
// longer variants, HOTSWAP_FLEET_OUT=FILE writes its table.
package cluster
