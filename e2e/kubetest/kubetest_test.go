package kubetest

import (
	"context"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

var cluster *Cluster

func TestMain(m *testing.M) { Main(m, &cluster) }

func TestPodAndRBAC(t *testing.T) {
	ctx := context.Background()
	const ns = "kubetest"
	if err := cluster.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.CreatePod(ctx, ns, "p1", PodReadinessGate()); err != nil {
		t.Fatal(err)
	}
	out, err := cluster.Kubectl(ctx, "get", "pod", "-n", ns, "p1", "-o", "jsonpath={.spec.readinessGates[0].conditionType}")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != ReadyCondition {
		t.Fatalf("kubectl readiness gate = %q, want %q", out, ReadyCondition)
	}

	if err := cluster.CreateServiceAccount(ctx, ns, "reader"); err != nil {
		t.Fatal(err)
	}
	cfg, err := cluster.SAConfig(ctx, ns, "reader")
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(cfg)
	_, err = sa.CoreV1().Pods(ns).Get(ctx, "p1", metav1.GetOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("get pod without a role: err = %v, want Forbidden", err)
	}
	if !strings.Contains(err.Error(), "system:serviceaccount:kubetest:reader") {
		t.Fatalf("request did not run as the service account: %v", err)
	}
	rules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}}
	if err := cluster.ApplyRole(ctx, ns, "reader", rules, "reader"); err != nil {
		t.Fatal(err)
	}
	if _, err := sa.CoreV1().Pods(ns).Get(ctx, "p1", metav1.GetOptions{}); err != nil {
		t.Fatalf("get pod with role: %v", err)
	}
	if _, err := sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list pods with a get-only role: err = %v, want Forbidden", err)
	}
	if _, err := cluster.KubectlAs(ctx, cfg, "delete", "pod", "-n", ns, "p1"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("kubectl delete as reader: err = %v, want Forbidden", err)
	}
}

func TestAPIServerRestart(t *testing.T) {
	ctx := context.Background()
	if err := cluster.CreateNamespace(ctx, "restart"); err != nil {
		t.Fatal(err)
	}
	if err := cluster.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Client().CoreV1().Namespaces().Get(ctx, "restart", metav1.GetOptions{}); err == nil {
		t.Fatal("apiserver still answers after StopAPIServer")
	}
	if err := cluster.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Client().CoreV1().Namespaces().Get(ctx, "restart", metav1.GetOptions{}); err != nil {
		t.Fatalf("namespace lost across apiserver restart (etcd should keep it): %v", err)
	}
}
