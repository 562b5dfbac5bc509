// Package fleet is the shape of a fleet's desired state as it is stored in
// the release ConfigMap every hotswap pod already watches (docs/rollout.md):
// the stable manifest under the release key, the canary manifest under
// CanaryKey, the pods that run the canary under KeyCanaryPods, and the
// rollout driver's record under KeyRollout.
//
// It owns: the key names, which manifest a pod should run (ReleaseFor), the
// rollout record (Rollout) and its steps (ParseSteps). Both sides use it:
// the ConfigMap source in each pod (hotswap/source/configmap) and the
// rollout driver (hotswap/rollout), so they can never disagree about the
// format.
//
// It must never: import k8s.io (it is plain data and works on a ConfigMap's
// Data map), talk to anything, or keep state.
package fleet
