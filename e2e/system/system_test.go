package system

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/hotswap-dev/hotswap/e2e/kubetest"
	"github.com/hotswap-dev/hotswap/e2e/load"
	"github.com/hotswap-dev/hotswap/e2e/testbin"
	"github.com/hotswap-dev/hotswap/hotswap"
)

const (
	namespace   = "shop"
	releaseName = "web"
	// releasesAt is the chart's release.volume.mountPath in this test. The
	// chart's default (/releases) would need a new directory in the
	// machine's root; /mnt exists everywhere and gets a tmpfs of its own.
	releasesAt = "/mnt/releases"
	uid        = 65532
)

// values is the chart configuration under test: the defaults (handoff on
// :8080, admin on :9090, readiness gate, grace 25 s, JSON logs) plus a
// watched release volume and reporting forced on.
const values = `
command: [` + releasesAt + `/current, serve]
release:
  volume:
    enabled: true
    mountPath: ` + releasesAt + `
  watch: ` + releasesAt + `/current
  settle: 300ms
kube:
  reporting: "on"
`

func TestSwapOnAPIServer(t *testing.T) {
	inPrivateNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	c, err := kubetest.Start(kubetest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	bin, err := testbin.Hotswap()
	if err != nil {
		t.Fatal(err)
	}

	// 1. The chart, rendered and applied for real.
	manifest := helmTemplate(t, values)
	if err := c.CreateNamespace(ctx, namespace); err != nil {
		t.Fatal(err)
	}
	mf := filepath.Join(t.TempDir(), "manifest.yaml")
	must(t, os.WriteFile(mf, []byte(manifest), 0o644))
	if out, err := c.Kubectl(ctx, "apply", "-n", namespace, "-f", mf); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("helm template | kubectl apply:\n%s", out)
	}
	dep := deployment(t, manifest)
	tmpl := dep.Spec.Template
	ctr := tmpl.Spec.Containers[0]

	// 2. The Pod the ReplicaSet controller would make (none runs here).
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: dep.Name + "-7d9f8-x2x4q", Labels: tmpl.Labels, Annotations: tmpl.Annotations},
		Spec:       *tmpl.Spec.DeepCopy(),
	}
	pod, err = c.Client().CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// 3. The pod's volumes: the release volume with v1, the token.
	vol := hostDir(t, "releases")
	v1 := writeRelease(t, bin, vol, "v1", 0o755)
	flip(t, vol, "v1/server")
	saDir := hostDir(t, "serviceaccount")
	// A token bound to this pod, as the kubelet mounts it: the chart's
	// admission policy refuses any other token of this service account.
	cfg, err := c.PodTokenConfig(ctx, namespace, tmpl.Spec.ServiceAccountName, pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(saDir, "token"), []byte(cfg.BearerToken), 0o644))
	must(t, os.WriteFile(filepath.Join(saDir, "ca.crt"), c.CAData(), 0o644))
	must(t, os.WriteFile(filepath.Join(saDir, "namespace"), []byte(namespace), 0o644))

	// 4. hotswap as PID 1, with the chart's args and environment.
	if ctr.Command[0] != "/hotswap" {
		t.Fatalf("container command %q: want /hotswap", ctr.Command)
	}
	argv := append([]string{bin}, ctr.Args...)
	env := append(podEnv(t, pod, ctr),
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"KUBERNETES_SERVICE_HOST=127.0.0.1",
		"KUBERNETES_SERVICE_PORT="+port(t, c.Host))
	spec, _ := json.Marshal(podSpec{UID: uid, ReleasesDir: vol, ReleasesAt: releasesAt, SADir: saDir, Argv: argv, Env: env})
	t.Logf("hotswap %s", strings.Join(ctr.Args, " "))
	p := startPod(t, spec)

	serving := waitHTTP(t, ctx, "", p)
	t.Logf("serving: generation %s, pid %s", serving.gen, serving.pid)
	first := waitPod(t, ctx, c, pod.Name, "generation 1 reported, Ready condition True", func(p *corev1.Pod) bool {
		return p.Annotations["hotswap.dev/generation"] == "1" && readyCondition(p) == corev1.ConditionTrue
	})
	t.Logf("annotations: %v", hotswapAnnotations(first))
	checkAdmin(t, ctx)

	// 5. Load for the rest of the run.
	r, err := load.Start(ctx, load.Config{Addr: "127.0.0.1:8080", Duration: 2 * time.Minute,
		KeepAlive: 4, NewConn: 2, IdlePool: 2, IdleFor: 500 * time.Millisecond, SlowFraction: 0.1, Rate: 500})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	time.Sleep(500 * time.Millisecond)

	// 6. A new release dropped onto the watched volume.
	v2 := writeRelease(t, bin, vol, "v2", 0o755)
	r.MarkSwap(time.Now())
	dropped := flip(t, vol, "v2/server")
	t.Logf("v1 %s, v2 %s", v1[:12], v2[:12])
	swapped := waitPod(t, ctx, c, pod.Name, "generation 2 reported", func(p *corev1.Pod) bool {
		return p.Annotations["hotswap.dev/generation"] == "2" && readyCondition(p) == corev1.ConditionTrue
	})
	t.Logf("release dropped -> generation 2 on the apiserver: %s", time.Since(dropped).Round(time.Millisecond))
	t.Logf("annotations: %v", hotswapAnnotations(swapped))
	if v := swapped.Annotations["hotswap.dev/version"]; !strings.Contains(v, v2[:12]) {
		t.Errorf("hotswap.dev/version = %q, want the new release (sha256 %s...)", v, v2[:12])
	}
	var last struct {
		Result string `json:"result"`
	}
	if err := json.Unmarshal([]byte(swapped.Annotations["hotswap.dev/last-swap"]), &last); err != nil || last.Result != string(hotswap.ResultSucceeded) {
		t.Errorf("hotswap.dev/last-swap = %q, want result %q", swapped.Annotations["hotswap.dev/last-swap"], hotswap.ResultSucceeded)
	}
	waitEvents(t, ctx, c, pod.Name, "SwapStarted", "SwapSucceeded")
	after := waitHTTP(t, ctx, serving.gen, p)
	if after.pid == serving.pid {
		t.Errorf("the same pid %s answers after the swap", after.pid)
	}

	// 7. A bad release next: a copy cut short (a transfer that died).
	full, err := os.ReadFile(bin)
	must(t, err)
	must(t, os.MkdirAll(filepath.Join(vol, "v3"), 0o755))
	must(t, os.WriteFile(filepath.Join(vol, "v3", "server"), full[:len(full)/2], 0o755))
	flip(t, vol, "v3/server")
	ev := waitEvents(t, ctx, c, pod.Name, "ReleaseRejected")
	t.Logf("ReleaseRejected: %s", ev["ReleaseRejected"].Message)
	if msg := ev["ReleaseRejected"].Message; !strings.Contains(msg, "truncated") {
		t.Errorf("ReleaseRejected event does not say why (want \"truncated\"): %q", msg)
	}
	time.Sleep(time.Second) // keep serving under load after the refusal
	still := waitHTTP(t, ctx, "", p)
	if still.gen != after.gen || still.pid != after.pid {
		t.Errorf("after the refused release generation %s pid %s answers, want %s pid %s", still.gen, still.pid, after.gen, after.pid)
	}
	now, err := c.Client().CoreV1().Pods(namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	must(t, err)
	if now.Annotations["hotswap.dev/generation"] != "2" || readyCondition(now) != corev1.ConditionTrue {
		t.Errorf("after the refused release the pod says generation %q, ready %q; want 2, True",
			now.Annotations["hotswap.dev/generation"], readyCondition(now))
	}

	r.Stop()
	rep := r.Wait()
	t.Logf("load: %d attempts, %d ok, %.0f/s, generations seen %d", rep.Attempts, rep.OK, rep.Rate, len(rep.Generations))
	if err := rep.Err(); err != nil {
		t.Errorf("failed requests: %v", err)
	}
	if rep.OK == 0 {
		t.Error("no request succeeded")
	}

	// 8. SIGTERM, as the kubelet sends it: exit 0 within the grace period.
	grace := graceFromArgs(t, ctr.Args)
	code, took := p.terminate(t, grace+5*time.Second)
	t.Logf("SIGTERM -> exit %d in %s (grace %s, terminationGracePeriodSeconds %d)", code, took.Round(time.Millisecond), grace, *tmpl.Spec.TerminationGracePeriodSeconds)
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if took > grace {
		t.Errorf("took %s to exit, more than --grace %s", took, grace)
	}
	if t.Failed() {
		t.Logf("hotswap output:\n%s", p.out.String())
	}
}

// --- the chart ---

func chartDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "charts", "hotswap")
}

func helmTemplate(t *testing.T, values string) string {
	t.Helper()
	helm := os.Getenv("HOTSWAP_HELM")
	if helm == "" {
		helm = filepath.Join(kubetest.AssetsDir(""), "helm")
	}
	vf := filepath.Join(t.TempDir(), "values.yaml")
	must(t, os.WriteFile(vf, []byte(values), 0o644))
	home := t.TempDir()
	cmd := exec.Command(helm, "template", releaseName, chartDir(), "--namespace", namespace, "-f", vf)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home, "KUBECONFIG=/dev/null")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr.String())
	}
	return string(out)
}

func deployment(t *testing.T, manifest string) *appsv1.Deployment {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("no Deployment in the chart's output: %v", err)
		}
		o := unstructured.Unstructured{Object: m}
		if o.GetKind() != "Deployment" {
			continue
		}
		b, err := o.MarshalJSON()
		must(t, err)
		var d appsv1.Deployment
		must(t, yaml.Unmarshal(b, &d))
		return &d
	}
}

// podEnv resolves the container's environment as the kubelet does for the
// downward API fields the chart uses.
func podEnv(t *testing.T, pod *corev1.Pod, ctr corev1.Container) []string {
	t.Helper()
	var env []string
	for _, e := range ctr.Env {
		v := e.Value
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil {
				t.Fatalf("env %s: only fieldRef is simulated", e.Name)
			}
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				v = pod.Name
			case "metadata.namespace":
				v = pod.Namespace
			case "metadata.uid":
				v = string(pod.UID)
			default:
				t.Fatalf("env %s: fieldRef %s not simulated", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		}
		env = append(env, e.Name+"="+v)
	}
	return env
}

func graceFromArgs(t *testing.T, args []string) time.Duration {
	t.Helper()
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--grace="); ok {
			d, err := time.ParseDuration(v)
			must(t, err)
			return d
		}
	}
	t.Fatal("no --grace in the chart's args")
	return 0
}

// --- the pod's PID 1 ---

type podProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	code int
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startPod(t *testing.T, spec []byte) *podProc {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{roleEnv + "=" + rolePID1, "HOTSWAP_SYSTEM_POD=" + string(spec)}
	p := &podProc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
		_ = err
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill() // PID 1: the kernel kills the rest of the namespace
			<-p.done
			t.Logf("hotswap killed at cleanup; output:\n%s", p.out.String())
		}
	})
	return p
}

func (p *podProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// terminate sends SIGTERM and waits up to limit.
func (p *podProc) terminate(t *testing.T, limit time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	must(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
		return p.code, time.Since(start)
	case <-time.After(limit):
		t.Fatalf("hotswap still running %s after SIGTERM; output:\n%s", limit, p.out.String())
		return -1, 0
	}
}

// --- checks ---

type answer struct{ gen, pid string }

// waitHTTP polls the chart's listener until a generation other than notGen
// answers.
func waitHTTP(t *testing.T, ctx context.Context, notGen string, p *podProc) answer {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var last error
	for {
		resp, err := hc.Get("http://127.0.0.1:8080/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			a := answer{resp.Header.Get("X-Hotswap-Generation"), resp.Header.Get("X-Hotswap-Pid")}
			if resp.StatusCode == 200 && a.gen != "" && a.gen != notGen {
				return a
			}
			last = fmt.Errorf("status %d generation %q", resp.StatusCode, a.gen)
		} else {
			last = err
		}
		if p.exited() {
			t.Fatalf("hotswap exited (%d) before serving:\n%s", p.code, p.out.String())
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no generation other than %q on :8080: %v\n%s", notGen, last, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func waitPod(t *testing.T, ctx context.Context, c *kubetest.Cluster, name, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	for {
		p, err := c.Client().CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = p
			if ok(p) {
				return p
			}
		}
		select {
		case <-ctx.Done():
			var ann map[string]string
			var conds []corev1.PodCondition
			if last != nil {
				ann, conds = hotswapAnnotations(last), last.Status.Conditions
			}
			t.Fatalf("pod never showed %s: annotations %v, conditions %+v", what, ann, conds)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func readyCondition(p *corev1.Pod) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == kubetest.ReadyCondition {
			return c.Status
		}
	}
	return ""
}

func hotswapAnnotations(p *corev1.Pod) map[string]string {
	out := map[string]string{}
	for k, v := range p.Annotations {
		if strings.HasPrefix(k, "hotswap.dev/") {
			out[k] = v
		}
	}
	return out
}

// waitEvents waits until the pod has an event with each reason and returns
// the latest of each.
func waitEvents(t *testing.T, ctx context.Context, c *kubetest.Cluster, pod string, reasons ...string) map[string]corev1.Event {
	t.Helper()
	sel := "involvedObject.kind=Pod,involvedObject.name=" + pod
	for {
		list, err := c.Client().CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
		got := map[string]corev1.Event{}
		if err == nil {
			for _, e := range list.Items {
				if prev, ok := got[e.Reason]; !ok || e.LastTimestamp.After(prev.LastTimestamp.Time) || e.EventTime.After(prev.EventTime.Time) {
					got[e.Reason] = e
				}
			}
		}
		if !slices.ContainsFunc(reasons, func(r string) bool { _, ok := got[r]; return !ok }) {
			return got
		}
		select {
		case <-ctx.Done():
			var have []string
			for r := range got {
				have = append(have, r)
			}
			t.Fatalf("events %v not all on the pod; it has %v (err %v)", reasons, have, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkAdmin reads the chart's admin endpoint (:9090).
func checkAdmin(t *testing.T, ctx context.Context) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:9090"+path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Errorf("admin %s: %v", path, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("admin %s: %s", path, resp.Status)
		}
		if path == "/metrics" && !bytes.Contains(body, []byte("hotswap_")) {
			t.Errorf("admin /metrics has no hotswap_ metric")
		}
	}
}

// --- files ---

// hostDir makes a directory the pod's user can read.
func hostDir(t *testing.T, name string) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), name)
	must(t, os.MkdirAll(d, 0o755))
	must(t, os.Chmod(filepath.Dir(d), 0o755))
	return d
}

// writeRelease copies the hotswap binary (its example server is the
// server) to vol/NAME/server, made unique by trailing bytes the loader
// ignores, and returns its sha256.
func writeRelease(t *testing.T, bin, vol, name string, mode os.FileMode) string {
	t.Helper()
	b, err := os.ReadFile(bin)
	must(t, err)
	b = append(b, []byte("\nhotswap-system-e2e release "+name+"\n")...)
	dir := filepath.Join(vol, name)
	must(t, os.MkdirAll(dir, 0o755))
	tmp := filepath.Join(dir, ".server.tmp")
	must(t, os.WriteFile(tmp, b, mode))
	must(t, os.Chmod(tmp, mode))
	must(t, os.Rename(tmp, filepath.Join(dir, "server")))
	return sha256Hex(b)
}

// flip points vol/current at target (relative), atomically, as ln -sfn.
func flip(t *testing.T, vol, target string) time.Time {
	t.Helper()
	tmp := filepath.Join(vol, ".current.tmp")
	os.Remove(tmp)
	must(t, os.Symlink(target, tmp))
	at := time.Now()
	must(t, os.Rename(tmp, filepath.Join(vol, "current")))
	return at
}

func port(t *testing.T, host string) string {
	t.Helper()
	u, err := url.Parse(host)
	must(t, err)
	return u.Port()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
