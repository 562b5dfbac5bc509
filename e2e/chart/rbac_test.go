package chart

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/hotswap-dev/hotswap/e2e/kubetest"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
	"github.com/hotswap-dev/hotswap/hotswap/source/configmap"
)

// ruleKey is a rule without its resourceNames, in a comparable form.
func ruleKey(groups, resources, verbs []string) string {
	return fmt.Sprintf("groups=%v resources=%v verbs=%v", groups, resources, verbs)
}

func wantRules(reporting, informer bool) []string {
	var rules []kube.Rule
	if reporting {
		rules = append(rules, kube.RequiredRules()...)
	}
	if informer {
		rules = append(rules, configmap.RequiredRules()...)
	}
	var out []string
	for _, r := range rules {
		out = append(out, ruleKey(r.APIGroups, r.Resources, r.Verbs))
	}
	return out
}

// The Role grants exactly what hotswap/kube.RequiredRules (the reporter)
// and configmap.RequiredRules (the informer source) say, in that order;
// configmaps only by the release ConfigMap's name. No Role, no binding and
// no token when hotswap talks to no apiserver.
func TestRoleMatchesRequiredRules(t *testing.T) {
	for _, c := range []struct {
		name                string
		values              string
		reporting, informer bool
	}{
		{"default", "", true, false},
		{"informer", "release:\n  configMap:\n    enabled: true\n", true, true},
		{"informer only", "kube: {reporting: \"off\", readinessGate: false}\nrelease:\n  configMap:\n    enabled: true\n", false, true},
		{"mounted manifest", "release:\n  configMap:\n    enabled: true\n    via: mount\n", true, false},
		{"reporting off", "kube: {reporting: \"off\", readinessGate: false}\n", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			manifest := render(t, c.values)
			rules := roleRules(t, manifest)
			var got []string
			for _, r := range rules {
				got = append(got, ruleKey(r.APIGroups, r.Resources, r.Verbs))
				if slices.Contains(r.Resources, "configmaps") {
					if want := []string{releaseName + "-hotswap-release"}; !slices.Equal(r.ResourceNames, want) {
						t.Errorf("configmaps rule resourceNames = %v, want %v", r.ResourceNames, want)
					}
				} else if len(r.ResourceNames) > 0 {
					t.Errorf("rule %v names resources: the pod's name is not known when the chart renders", r)
				}
			}
			if want := wantRules(c.reporting, c.informer); !slices.Equal(got, want) {
				t.Errorf("Role rules:\n got  %q\n want %q", got, want)
			}
			binding := typed[rbacv1.RoleBinding](t, manifest, "RoleBinding")
			sa := typed[corev1.ServiceAccount](t, manifest, "ServiceAccount")
			needAPI := c.reporting || c.informer
			if (binding != nil) != needAPI {
				t.Errorf("RoleBinding rendered = %v, want %v", binding != nil, needAPI)
			}
			if sa == nil || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken != needAPI {
				t.Errorf("ServiceAccount automountServiceAccountToken should be %v: %+v", needAPI, sa)
			}
		})
	}
}

// On a real apiserver, the chart's service account can do exactly what the
// Role says and nothing next to it: the Role is enough for hotswap and is
// not a blank cheque.
func TestRoleOnAPIServer(t *testing.T) {
	c := apiserver(t)
	ctx := context.Background()
	const ns = "rbac-check"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	manifest := renderIn(t, ns, "release:\n  configMap:\n    enabled: true\n    manifest: {version: v1, binary: /releases/v1/server}\n")
	if out, err := c.Kubectl(ctx, "apply", "-n", ns, "-f", writeTemp(t, manifest)); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("kubectl apply:\n%s", out)
	}
	// Other objects next to ours, which the Role must not reach.
	cms := c.Client().CoreV1().ConfigMaps(ns)
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa := releaseName + "-hotswap"
	if _, err := c.CreatePod(ctx, ns, "p1", kubetest.PodServiceAccount(sa)); err != nil {
		t.Fatal(err)
	}
	// The token bound to the pod, as the kubelet mounts it: the chart's
	// admission policy refuses the service account's other tokens.
	cfg, err := c.PodTokenConfig(ctx, ns, sa, "p1")
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	patchAnnotations := func() error {
		_, err := cs.CoreV1().Pods(ns).Patch(ctx, "p1", types.MergePatchType, []byte(`{"metadata":{"annotations":{"hotswap.dev/version":"v1"}}}`), metav1.PatchOptions{})
		return err
	}
	// RBAC is enforced from a cache a few milliseconds behind the API.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := patchAnnotations()
		if err == nil || !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmName := releaseName + "-hotswap-release"
	sel := metav1.ListOptions{FieldSelector: "metadata.name=" + cmName}
	for _, x := range []struct {
		what    string
		allowed bool
		do      func() error
	}{
		{"patch pod annotations", true, patchAnnotations},
		{"patch pod status condition", true, func() error {
			_, err := cs.CoreV1().Pods(ns).Patch(ctx, "p1", types.StrategicMergePatchType,
				[]byte(`{"status":{"conditions":[{"type":"hotswap.dev/ready","status":"True"}]}}`), metav1.PatchOptions{}, "status")
			return err
		}},
		{"create event", true, func() error {
			_, err := cs.CoreV1().Events(ns).Create(ctx, &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{Name: "p1.swap"},
				InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "p1"},
				Reason:         "SwapSucceeded", Message: "test", Type: corev1.EventTypeNormal,
			}, metav1.CreateOptions{})
			return err
		}},
		{"patch event", true, func() error {
			_, err := cs.CoreV1().Events(ns).Patch(ctx, "p1.swap", types.MergePatchType, []byte(`{"count":2}`), metav1.PatchOptions{})
			return err
		}},
		{"get release configmap", true, func() error { _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cmName, metav1.GetOptions{}); return err }},
		{"list release configmap by name", true, func() error { _, err := cs.CoreV1().ConfigMaps(ns).List(ctx, sel); return err }},
		{"watch release configmap by name", true, func() error {
			w, err := cs.CoreV1().ConfigMaps(ns).Watch(ctx, sel)
			if err == nil {
				w.Stop()
			}
			return err
		}},
		// and nothing else
		{"get other configmap", false, func() error { _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "other", metav1.GetOptions{}); return err }},
		{"list all configmaps", false, func() error { _, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); return err }},
		{"update release configmap", false, func() error {
			cm, err := cms.Get(ctx, cmName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
			return err
		}},
		// hotswap knows its pod's UID from $POD_UID: no read of pod specs
		{"get pod", false, func() error { _, err := cs.CoreV1().Pods(ns).Get(ctx, "p1", metav1.GetOptions{}); return err }},
		{"list pods", false, func() error { _, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); return err }},
		{"delete pod", false, func() error { return cs.CoreV1().Pods(ns).Delete(ctx, "p1", metav1.DeleteOptions{}) }},
		{"update pod", false, func() error {
			p, err := c.Client().CoreV1().Pods(ns).Get(ctx, "p1", metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, err = cs.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{})
			return err
		}},
		{"get secrets", false, func() error { _, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); return err }},
		{"get pod in another namespace", false, func() error {
			_, err := cs.CoreV1().Pods("default").Get(ctx, "p1", metav1.GetOptions{})
			return err
		}},
	} {
		err := x.do()
		switch {
		case x.allowed && err != nil:
			t.Errorf("%s: %v, want allowed", x.what, err)
		case !x.allowed && !apierrors.IsForbidden(err):
			t.Errorf("%s: err = %v, want Forbidden", x.what, err)
		}
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := t.TempDir() + "/manifest.yaml"
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
