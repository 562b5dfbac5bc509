package kubetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
)

// ReadyCondition is the readiness-gate condition type hotswap reports;
// PodReadinessGate adds it to a pod.
const ReadyCondition = "hotswap.dev/ready"

// CreateNamespace creates namespace ns and its "default" service account
// (the controller-manager would, but none runs here; the ServiceAccount
// admission plugin refuses pods without it). An existing namespace is fine.
func (c *Cluster) CreateNamespace(ctx context.Context, ns string) error {
	_, err := c.Client().CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubetest: create namespace %s: %w", ns, err)
	}
	return c.CreateServiceAccount(ctx, ns, "default")
}

// CreateServiceAccount creates service account ns/name; an existing one is fine.
func (c *Cluster) CreateServiceAccount(ctx context.Context, ns, name string) error {
	_, err := c.Client().CoreV1().ServiceAccounts(ns).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubetest: create service account %s/%s: %w", ns, name, err)
	}
	return nil
}

// PodOption changes the pod CreatePod is about to create.
type PodOption func(*corev1.Pod)

// PodReadinessGate lists the hotswap.dev/ready condition in the pod's
// readinessGates, as the Helm chart's pods do.
func PodReadinessGate() PodOption {
	return func(p *corev1.Pod) {
		p.Spec.ReadinessGates = append(p.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: ReadyCondition})
	}
}

// PodServiceAccount runs the pod as service account sa.
func PodServiceAccount(sa string) PodOption {
	return func(p *corev1.Pod) { p.Spec.ServiceAccountName = sa }
}

// CreatePod creates a minimal pod ns/name. No kubelet runs, so it is only an
// API object: it never starts, and its status is whatever tests patch in.
func (c *Cluster) CreatePod(ctx context.Context, ns, name string, opts ...PodOption) (*corev1.Pod, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "hotswap-test"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "hotswap.invalid/app:test"}},
		},
	}
	for _, o := range opts {
		o(pod)
	}
	got, err := c.Client().CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubetest: create pod %s/%s: %w", ns, name, err)
	}
	return got, nil
}

// ApplyRole creates or replaces Role ns/name with rules and a RoleBinding
// ns/name granting it to service account ns/serviceAccount, then waits until
// the authorizer allows what the rules grant (RBAC is enforced from a cache,
// a few milliseconds behind the API).
func (c *Cluster) ApplyRole(ctx context.Context, ns, name string, rules []rbacv1.PolicyRule, serviceAccount string) error {
	rbac := c.Client().RbacV1()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}
	if _, err := rbac.Roles(ns).Create(ctx, role, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		old, gerr := rbac.Roles(ns).Get(ctx, name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("kubetest: get role %s/%s: %w", ns, name, gerr)
		}
		old.Rules = rules
		if _, err := rbac.Roles(ns).Update(ctx, old, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("kubetest: update role %s/%s: %w", ns, name, err)
		}
	} else if err != nil {
		return fmt.Errorf("kubetest: create role %s/%s: %w", ns, name, err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: serviceAccount, Namespace: ns}},
	}
	if _, err := rbac.RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubetest: create role binding %s/%s: %w", ns, name, err)
	}
	user := "system:serviceaccount:" + ns + ":" + serviceAccount
	for _, r := range rules {
		for _, attr := range ruleAttributes(ns, r) {
			if err := c.waitAllowed(ctx, user, attr); err != nil {
				return err
			}
		}
	}
	return nil
}

// ruleAttributes lists one concrete request per (group, resource, verb,
// name) that rule grants, skipping wildcards.
func ruleAttributes(ns string, r rbacv1.PolicyRule) []authzv1.ResourceAttributes {
	names := r.ResourceNames
	if len(names) == 0 {
		names = []string{""}
	}
	var out []authzv1.ResourceAttributes
	for _, g := range r.APIGroups {
		for _, res := range r.Resources {
			for _, v := range r.Verbs {
				for _, n := range names {
					if g == "*" || res == "*" || v == "*" {
						continue
					}
					resource, sub, _ := strings.Cut(res, "/")
					out = append(out, authzv1.ResourceAttributes{
						Namespace: ns, Verb: v, Group: g, Resource: resource, Subresource: sub, Name: n,
					})
				}
			}
		}
	}
	return out
}

func (c *Cluster) waitAllowed(ctx context.Context, user string, attr authzv1.ResourceAttributes) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		sar, err := c.Client().AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{
			Spec: authzv1.SubjectAccessReviewSpec{
				User:               user,
				Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + attr.Namespace, "system:authenticated"},
				ResourceAttributes: &attr,
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		last = sar.Status.Reason
		return sar.Status.Allowed, nil
	})
	if err != nil {
		return fmt.Errorf("kubetest: %s still not allowed to %s %s/%s %q (%s): %w",
			user, attr.Verb, attr.Resource, attr.Subresource, attr.Name, last, err)
	}
	return nil
}

// SAConfig returns a rest.Config authenticated only by a real service-account
// token for ns/sa, obtained through the TokenRequest API (valid one hour).
// It carries no client certificate: a certificate would silently win over
// the token and every request would run as admin.
func (c *Cluster) SAConfig(ctx context.Context, ns, sa string) (*rest.Config, error) {
	exp := int64(3600)
	tr, err := c.Client().CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubetest: token for service account %s/%s: %w", ns, sa, err)
	}
	return &rest.Config{
		Host:            c.Host,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAData()},
		BearerToken:     tr.Status.Token,
		QPS:             1000, Burst: 2000,
	}, nil
}

// PodTokenConfig returns a rest.Config authenticated only by a token for
// service account ns/sa bound to pod ns/pod, as the kubelet mounts into the
// pod: the apiserver adds the pod's name and UID to the request's user info
// (extra authentication.kubernetes.io/pod-name and pod-uid), which admission
// policies can check. The pod must run as sa.
func (c *Cluster) PodTokenConfig(ctx context.Context, ns, sa, pod string) (*rest.Config, error) {
	p, err := c.Client().CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubetest: token bound to pod %s/%s: %w", ns, pod, err)
	}
	exp := int64(3600)
	tr, err := c.Client().CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{
			ExpirationSeconds: &exp,
			BoundObjectRef:    &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod, UID: p.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubetest: token for service account %s/%s bound to pod %s: %w", ns, sa, pod, err)
	}
	return &rest.Config{
		Host:            c.Host,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAData()},
		BearerToken:     tr.Status.Token,
		QPS:             1000, Burst: 2000,
	}, nil
}

// WriteKubeconfig writes a kubeconfig file for cfg (admin or service
// account) into the cluster's directory and returns its path.
func (c *Cluster) WriteKubeconfig(name string, cfg *rest.Config) (string, error) {
	p := filepath.Join(c.Dir, name+".kubeconfig")
	return p, writeKubeconfig(p, cfg)
}

// RunError is a failed command with its output, so a failure explains itself.
type RunError struct {
	Command []string
	Output  []byte
	Err     error
}

func (e *RunError) Error() string {
	return fmt.Sprintf("%s: %v\n%s", strings.Join(e.Command, " "), e.Err, e.Output)
}

func (e *RunError) Unwrap() error { return e.Err }

// Kubectl runs the cached kubectl as the admin and returns its stdout. On
// failure the error is a *RunError holding stderr too.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	return c.kubectl(ctx, c.KubeconfigPath, args)
}

// KubectlAs runs the cached kubectl with cfg's credentials (for example an
// SAConfig), through a kubeconfig holding nothing else.
func (c *Cluster) KubectlAs(ctx context.Context, cfg *rest.Config, args ...string) ([]byte, error) {
	f, err := os.CreateTemp(c.Dir, "as-*.kubeconfig")
	if err != nil {
		return nil, fmt.Errorf("kubetest: kubeconfig: %w", err)
	}
	f.Close()
	defer os.Remove(f.Name())
	if err := writeKubeconfig(f.Name(), cfg); err != nil {
		return nil, err
	}
	return c.kubectl(ctx, f.Name(), args)
}

func (c *Cluster) kubectl(ctx context.Context, kubeconfig string, args []string) ([]byte, error) {
	bin := filepath.Join(c.assets, "kubectl")
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HOME="+c.Dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &RunError{Command: append([]string{"kubectl"}, args...), Output: append(stdout.Bytes(), stderr.Bytes()...), Err: err}
	}
	return stdout.Bytes(), nil
}
