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
// namespace when it knows its pod's UID (Config.PodUID, $POD_UID, which the
// Helm chart always sets), no more: the chart's Role must grant these (plus
// what the ConfigMap source needs, if enabled), and the tests prove that
// removing any one verb breaks reporting.
//
//   - pods patch: the hotswap.dev/* annotations.
//   - pods/status patch: the hotswap.dev/ready condition.
//   - events create, patch: new events, and the count of a repeated one.
//
// Without $POD_UID the Reporter also reads its pod once (pods get) to learn
// the UID events attach to (kubectl describe finds events by UID). The
// chart does not grant it: get cannot be limited to one pod, and would let
// the token read every pod spec of the namespace.
func RequiredRules() []Rule {
	return []Rule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"patch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}
}
