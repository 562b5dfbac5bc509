package rollout

import "github.com/hotswap-dev/hotswap/hotswap/kube"

// RequiredRules is exactly what the driver needs in the ConfigMap's
// namespace — its own Role, never the pods':
//
//   - configmaps get, update: read the rollout and write it, conditioned on
//     its resourceVersion.
//   - pods list, watch: the target pods' annotations, conditions and
//     restarts, through one informer while Drive runs (a list, then a
//     watch). Without watch the informer's watch is refused and it lists
//     every pod again and again, each time after a backoff.
//   - events create: the rollout's events on the ConfigMap.
//   - deployments get (apps): resolve --deployment to its selector at start.
func RequiredRules() []kube.Rule {
	return []kube.Rule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "update"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}},
	}
}
