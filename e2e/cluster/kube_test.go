package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// RunError keeps a failed command, its output and the cause together.
type RunError struct {
	Command string
	Output  string
	Err     error
}

func (e *RunError) Error() string {
	return fmt.Sprintf("%s: %v\n%s", e.Command, e.Err, strings.TrimSpace(e.Output))
}

func (e *RunError) Unwrap() error { return e.Err }

// kubectl runs the cluster's kubectl (the one built with the cluster, never
// one on PATH) against the test cluster and returns its stdout.
func kubectl(ctx context.Context, args ...string) (string, error) {
	return runTool(ctx, filepath.Join(env.kubeBin, "kubectl"), args, nil)
}

// kubectlIn is kubectl with stdin.
func kubectlIn(ctx context.Context, stdin []byte, args ...string) (string, error) {
	return runTool(ctx, filepath.Join(env.kubeBin, "kubectl"), args, stdin)
}

// helm runs the helm built by hack/kube-assets.sh against the test cluster.
func helm(ctx context.Context, args ...string) (string, error) {
	return runTool(ctx, filepath.Join(env.kubeBin, "helm"), args, nil)
}

func runTool(ctx context.Context, bin string, args []string, stdin []byte) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.kubeconfig,
		// helm keeps caches and config per user: keep them in the work dir.
		"HELM_CACHE_HOME="+filepath.Join(env.workDir, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(env.workDir, "helm", "config"),
		"HELM_DATA_HOME="+filepath.Join(env.workDir, "helm", "data"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return out.String(), &RunError{Command: filepath.Base(bin) + " " + strings.Join(args, " "),
			Output: out.String() + errb.String(), Err: err}
	}
	return out.String(), nil
}

var clientset kubernetes.Interface

// client is a clientset for the cluster, as the admin.
func client(t testing.TB) kubernetes.Interface {
	t.Helper()
	if clientset == nil {
		cfg, err := clientcmd.BuildConfigFromFlags("", env.kubeconfig)
		if err != nil {
			t.Fatalf("kubeconfig: %v", err)
		}
		cfg.QPS, cfg.Burst = 100, 200
		clientset, err = kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatalf("client: %v", err)
		}
	}
	return clientset
}

// waitPod polls pod ns/name every 50 ms until ok says so, and returns it.
func waitPod(ctx context.Context, t testing.TB, ns, name, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	c := client(t)
	var last *corev1.Pod
	var lastErr error
	for {
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = p
			if ok(p) {
				return p
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s: %s: not within the deadline; last error %v; last state:\n%s", ns, name, what, lastErr, describe(last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func podReady(p *corev1.Pod) bool { return conditionTrue(p, corev1.PodReady) }

func conditionTrue(p *corev1.Pod, typ corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, s := range p.Status.ContainerStatuses {
		n += s.RestartCount
	}
	return n
}

func describe(p *corev1.Pod) string {
	if p == nil {
		return "(no pod)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s, ip %s, uid %s\n", p.Status.Phase, p.Status.PodIP, p.UID)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, "  condition %s=%s %s %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	for _, s := range p.Status.ContainerStatuses {
		fmt.Fprintf(&b, "  container %s ready=%v restarts=%d state=%+v\n", s.Name, s.Ready, s.RestartCount, s.State)
	}
	for k, v := range p.Annotations {
		fmt.Fprintf(&b, "  annotation %s=%s\n", k, v)
	}
	return b.String()
}

// dumpPod logs what an operator would look at when a pod misbehaves.
func dumpPod(t testing.TB, ns, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := kubectl(ctx, "-n", ns, "describe", "pod", name)
	t.Logf("kubectl describe pod %s: %v\n%s", name, err, out)
	out, err = kubectl(ctx, "-n", ns, "logs", name, "--tail=60")
	t.Logf("kubectl logs %s: %v\n%s", name, err, out)
}
