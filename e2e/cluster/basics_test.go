package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestBasics checks the cluster itself with the plainest use of the image:
// a bare pod running the image's own entrypoint (hotswap as PID 1, the
// example server as its child) under a restricted security context. It is
// Ready, the test reaches it on its pod address, `kubectl exec POD -- kill
// -USR2 1` and `kubectl exec POD -- /hotswap swap` swap it, and `kubectl
// logs` shows hotswap's log.
func TestBasics(t *testing.T) {
	needCluster(t)
	ctx := ctxFor(t, 2*time.Minute)
	const ns, name = "basics", "plain"
	c := client(t)
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	})
	// The controller-manager creates "default" in a new namespace shortly.
	waitFor(ctx, t, "service account default in "+ns, func() bool {
		_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	no, yes, uid := false, true, int64(65532)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  &no,
			TerminationGracePeriodSeconds: ptr(int64(10)),
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Volumes: []corev1.Volume{{Name: "run", VolumeSource: corev1.VolumeSource{
				EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}},
			Containers: []corev1.Container{{
				Name: "server", Image: env.image, ImagePullPolicy: corev1.PullNever,
				Args: []string{"/hotswap", "serve", "--version", "basics"},
				// No token and no downward-API env here: reporting is the
				// chart's business (TestHotswapInCluster), this pod is plain.
				Env: []corev1.EnvVar{{Name: "HOTSWAP_KUBE", Value: "off"}},
				// A read-only root: the control and notify sockets need a
				// writable directory, as the chart mounts one.
				VolumeMounts: []corev1.VolumeMount{{Name: "run", MountPath: "/run/hotswap"}},
				ReadinessProbe: &corev1.Probe{PeriodSeconds: 1,
					ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port(8080)}}},
				SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
		},
	}
	start := time.Now()
	if _, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpPod(t, ns, name)
		}
	})
	p := waitPod(ctxFor(t, 60*time.Second), t, ns, name, "Ready", podReady)
	t.Logf("pod Ready %v after create, ip %s", time.Since(start).Round(time.Millisecond), p.Status.PodIP)
	addr := net.JoinHostPort(p.Status.PodIP, "8080")

	gen0 := getHeader(ctx, t, addr, "X-Hotswap-Generation")
	for i, trigger := range [][]string{{"kill", "-USR2", "1"}, {"/hotswap", "swap"}} {
		t0 := time.Now()
		out, err := kubectl(ctx, append([]string{"-n", ns, "exec", name, "--"}, trigger...)...)
		if err != nil {
			dumpPod(t, ns, name)
			t.Fatalf("kubectl exec %s: %v", strings.Join(trigger, " "), err)
		}
		want := fmt.Sprint(atoi(gen0) + i + 1)
		waitFor(ctx, t, "generation "+want+" answering", func() bool {
			return getHeader(ctx, t, addr, "X-Hotswap-Generation") == want
		})
		t.Logf("kubectl exec %s: generation %s answers after %v; output: %s", strings.Join(trigger, " "), want,
			time.Since(t0).Round(time.Millisecond), strings.TrimSpace(out))
	}
	logs, err := kubectl(ctx, "-n", ns, "logs", name)
	if err != nil || !strings.Contains(logs, "generation") {
		t.Fatalf("kubectl logs: %v\n%s", err, logs)
	}
	p, err = c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if restarts(p) != 0 {
		t.Fatalf("container restarted %d times", restarts(p))
	}
	// Deleting the pod: hotswap stops the server and exits 0 within the grace period.
	t0 := time.Now()
	if err := c.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "pod gone", func() bool {
		_, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	t.Logf("pod deleted in %v", time.Since(t0).Round(time.Millisecond))
}

// getHeader does one GET on a new connection and returns header h ("" on error).
func getHeader(ctx context.Context, t testing.TB, addr, h string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	req.Close = true
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Header.Get(h)
}

// waitFor polls cond every 20 ms until it holds or ctx ends (then the test fails).
func waitFor(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
