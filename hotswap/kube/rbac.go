package kube

// Rule is one RBAC policy rule, written without importing k8s.io/api/rbac so
// the binary does not link that group. Fields mean what they mean in
// rbac/v1 PolicyRule.
type Rule struct {
	APIGroups []string
	Resources []string
	Verbs     []string
}

// RequiredRules returns exactly what the Reporter needs in its pod's
// namespace, no more: the Helm chart's Role must grant these (plus what the
// ConfigMap source needs, if enabled), and the tests prove that removing any
// one verb breaks reporting.
//
//   - pods get: read the pod's UID once, so events attach to this pod
//     (kubectl describe finds events by UID).
//   - pods patch: the hotswap.dev/* annotations.
//   - pods/status patch: the hotswap.dev/ready condition.
//   - events create, patch: new events, and the count of a repeated one.
func RequiredRules() []Rule {
	return []Rule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"patch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}
}
