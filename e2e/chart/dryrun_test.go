package chart

import (
	"context"
	"strings"
	"testing"
)

// serviceMonitorCRD is a minimal monitoring.coreos.com ServiceMonitor CRD,
// enough for the apiserver to accept the chart's ServiceMonitor (the
// prometheus-operator installs the full one).
const serviceMonitorCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              x-kubernetes-preserve-unknown-fields: true
`

// Every rendering is accepted by a real kube-apiserver (schema validation,
// RBAC objects: an escalation check refuses a Role granting more than the
// applier has) with server-side dry-run and strict field validation.
func TestServerSideDryRun(t *testing.T) {
	c := apiserver(t)
	ctx := context.Background()
	if err := c.CreateNamespace(ctx, namespace); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl(ctx, "apply", "-f", writeTemp(t, serviceMonitorCRD)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=30s", "crd/servicemonitors.monitoring.coreos.com"); err != nil {
		t.Fatal(err)
	}
	for _, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			manifest := render(t, cs.values)
			out, err := c.Kubectl(ctx, "apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", writeTemp(t, manifest))
			if err != nil {
				t.Fatal(err)
			}
			n := len(objects(t, manifest))
			if got := strings.Count(string(out), "(server dry run)"); got != n {
				t.Fatalf("%d of %d objects accepted:\n%s", got, n, out)
			}
		})
	}
}
