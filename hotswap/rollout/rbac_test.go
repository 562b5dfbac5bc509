package rollout

import (
	"context"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/hotswap-dev/hotswap/hotswap/fleet"
)

// TestDriveWithRequiredRules: a driver holding exactly RequiredRules (the
// in-cluster driver's Role) takes a rollout to the end, and its pod informer
// lists once and then watches: without the watch verb it would be refused
// the watch and list every pod again after each backoff.
func TestDriveWithRequiredRules(t *testing.T) {
	f := newFleet(t, "v1", 4)
	ctx := context.Background()
	if err := cluster.CreateServiceAccount(ctx, f.ns, "driver"); err != nil {
		t.Fatal(err)
	}
	var rules []rbacv1.PolicyRule
	for _, r := range RequiredRules() {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: r.Resources, Verbs: r.Verbs})
	}
	if err := cluster.ApplyRole(ctx, f.ns, "driver", rules, "driver"); err != nil {
		t.Fatal(err)
	}
	cfg, err := cluster.SAConfig(ctx, f.ns, "driver")
	if err != nil {
		t.Fatal(err)
	}
	d := f.driver(t, func(o *Options) { o.REST = cfg })
	// RBAC is enforced from a cache a moment behind the API.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = d.Start(ctx, f.spec(t, "v2"))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.Drive(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r.Phase != fleet.Promoted {
		t.Fatalf("phase %s: %s", r.Phase, r.Reason)
	}
	m := d.Metrics()
	t.Logf("with exactly RequiredRules: %d pod lists, %d API errors, %d reads, %d writes",
		m.PodLists.Load(), m.APIErrors.Load(), m.Reads.Load(), m.Writes.Load())
	if n := m.PodLists.Load(); n > 1 {
		t.Errorf("the driver listed the pods %d times: its informer should list once and then watch", n)
	}
	if n := m.APIErrors.Load(); n > 0 {
		t.Errorf("%d API errors with exactly RequiredRules", n)
	}
}
