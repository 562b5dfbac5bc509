package chart

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/hotswap-dev/hotswap/e2e/kubetest"
	"github.com/hotswap-dev/hotswap/e2e/testbin"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current chart")

// releaseName and namespace are those of every rendering.
const (
	releaseName = "demo"
	namespace   = "shop"
)

var (
	clusterOnce sync.Once
	cluster     *kubetest.Cluster
	clusterErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if cluster != nil {
		cluster.Stop()
	}
	testbin.Cleanup()
	os.Exit(code)
}

// apiserver starts the package's one kube-apiserver on first use.
func apiserver(t *testing.T) *kubetest.Cluster {
	t.Helper()
	clusterOnce.Do(func() { cluster, clusterErr = kubetest.Start(kubetest.Options{}) })
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return cluster
}

// helmBin is helm from the kube-assets cache ($HOTSWAP_HELM overrides it).
func helmBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HOTSWAP_HELM"); p != "" {
		return p
	}
	p := filepath.Join(kubetest.AssetsDir(""), "helm")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("helm not found at %s: run hack/kube-assets.sh (or set %s to where it built it)", p, kubetest.AssetsEnv)
	}
	return p
}

func chartDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "charts", "hotswap")
}

// helm runs helm with a private home, so no user configuration leaks in.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home,
		"KUBECONFIG=/dev/null")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// valuesFile writes v to a temporary values file and returns helm's -f args.
func valuesFile(t *testing.T, v string) []string {
	t.Helper()
	if strings.TrimSpace(v) == "" {
		return nil
	}
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"-f", p}
}

func render(t *testing.T, values string) string {
	t.Helper()
	return renderIn(t, namespace, values)
}

// renderIn renders for a release in namespace ns (the RoleBinding names it).
func renderIn(t *testing.T, ns, values string) string {
	t.Helper()
	out, err := helm(t, append([]string{"template", releaseName, chartDir(), "--namespace", ns}, valuesFile(t, values)...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLint(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := helm(t, append([]string{"lint", "--strict", chartDir(), "--namespace", namespace}, valuesFile(t, c.values)...)...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint:\n%s", out)
			}
		})
	}
}

func TestGolden(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := render(t, c.values)
			path := filepath.Join("testdata", c.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./e2e/chart -run TestGolden -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("helm template differs from %s (if the change is intended: go test ./e2e/chart -run TestGolden -update, and review the diff)\n%s",
					path, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff shows the first differing lines, enough to see what moved.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want: %s\n  got:  %s\n", i+1, wl, gl)
			if shown++; shown == 10 {
				b.WriteString("  ...\n")
				break
			}
		}
	}
	return b.String()
}

// Bad values fail at install with a message that says what to fix.
func TestBadValuesRejected(t *testing.T) {
	for _, c := range []struct{ name, values, want string }{
		{"unknown key", "mdoe: reuseport\n", "mdoe"},
		{"bad mode", "mode: fast\n", "mode"},
		{"bad reporting", "kube:\n  reporting: maybe\n", "reporting"},
		{"port out of range", "listeners: [{name: http, port: 70000}]\n", "port"},
		{"port name too long", "listeners: [{name: a-very-long-port-name, port: 8080}]\n", "name"},
		{"grace not below termination period", "terminationGracePeriodSeconds: 20\ntimeouts:\n  graceSeconds: 25\n", "must be above timeouts.graceSeconds"},
		{"migrateReq in handoff mode", "reuseport:\n  migrateReq: true\n", "reuseport.migrateReq is for mode=reuseport"},
		{"readiness gate without reporting", "kube:\n  reporting: \"off\"\n", "kube.readinessGate needs kube.reporting"},
		{"watch without volume", "release:\n  watch: /releases/current\n", "set release.volume.enabled=true"},
		{"relative watch path", "release:\n  volume: {enabled: true}\n  watch: releases/current\n", "watch"},
		{"servicemonitor without admin", "admin:\n  enabled: false\n  serviceMonitor: {enabled: true}\n", "admin.serviceMonitor.enabled needs admin.enabled"},
		{"listener on admin port", "listeners: [{name: http, port: 9090}]\n", "admin.port"},
		{"handoff without listeners", "listeners: []\n", "needs at least one listener"},
		{"bad signal", "signals:\n  stop: term\n", "stop"},
		{"bad binary source", "hotswapBinary:\n  from: sidecar\n", "from"},
		{"no RBAC and no account", "rbac:\n  create: false\n", "serviceAccount.name"},
		{"bad digest", "image:\n  digest: latest\n", "digest"},
		{"string timeout", "timeouts:\n  graceSeconds: 25s\n", "graceSeconds"},
		{"max generations", "maxGenerations: 1\n", "maxGenerations"},
		{"extra arg not a flag", "extraArgs: [debug]\n", "extraArgs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := helm(t, append([]string{"template", releaseName, chartDir(), "--namespace", namespace}, valuesFile(t, c.values)...)...)
			if err == nil {
				t.Fatalf("values accepted, want an error mentioning %q:\n%s", c.want, c.values)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error does not mention %q:\n%v", c.want, err)
			}
		})
	}
}

// objects splits a rendering into objects.
func objects(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("decode rendered manifest: %v", err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// typed converts the object of kind in manifest to T (nil if absent).
func typed[T any](t *testing.T, manifest, kind string) *T {
	t.Helper()
	for _, o := range objects(t, manifest) {
		if o.GetKind() != kind {
			continue
		}
		b, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var v T
		if err := yaml.UnmarshalStrict(b, &v); err != nil {
			t.Fatalf("%s does not decode strictly into the API type: %v", kind, err)
		}
		return &v
	}
	return nil
}

var flagRow = regexp.MustCompile("^\\| `--([a-z0-9-]+)` \\| `(HOTSWAP_[A-Z0-9_]+)`")

// hotswapFlags returns the flag names and HOTSWAP_* variables of the
// hotswap binary built from this tree, from `hotswap flags-doc`.
func hotswapFlags(t *testing.T) (flags, envs map[string]bool) {
	t.Helper()
	bin, err := testbin.Hotswap()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "flags-doc").Output()
	if err != nil {
		t.Fatalf("hotswap flags-doc: %v", err)
	}
	flags, envs = map[string]bool{}, map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		if m := flagRow.FindStringSubmatch(l); m != nil {
			flags[m[1]], envs[m[2]] = true, true
		}
	}
	if len(flags) < 10 {
		t.Fatalf("hotswap flags-doc listed only %d flags:\n%s", len(flags), out)
	}
	return flags, envs
}

// Every flag and HOTSWAP_* variable the chart gives hotswap exists in the
// binary: a renamed flag breaks this test, not a user's pods.
func TestFlagsExistInBinary(t *testing.T) {
	flags, envs := hotswapFlags(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dep := typed[appsv1.Deployment](t, render(t, c.values), "Deployment")
			if dep == nil {
				t.Fatal("no Deployment rendered")
			}
			ctr := dep.Spec.Template.Spec.Containers[0]
			args := ctr.Args
			if len(args) == 0 || args[0] != "run" {
				t.Fatalf("args should start with the run command: %q", args)
			}
			sep := slices.Index(args, "--")
			if sep < 0 || sep == len(args)-1 {
				t.Fatalf("args lack `-- COMMAND`: %q", args)
			}
			var missing []string
			for _, a := range args[1:sep] {
				if !strings.HasPrefix(a, "--") {
					t.Errorf("argument %q before -- is not a --flag=value", a)
					continue
				}
				name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				if !flags[name] {
					missing = append(missing, "--"+name)
				}
			}
			for _, e := range ctr.Env {
				if strings.HasPrefix(e.Name, "HOTSWAP_") && !envs[e.Name] {
					missing = append(missing, e.Name)
				}
			}
			if len(missing) > 0 {
				sort.Strings(missing)
				t.Errorf("the chart passes %s, which `hotswap flags-doc` does not list (renamed? not landed yet?)", strings.Join(slices.Compact(missing), ", "))
			}
		})
	}
}

// The init container's command must be one the hotswap binary knows.
func TestInitCommandExists(t *testing.T) {
	dep := typed[appsv1.Deployment](t, render(t, "hotswapBinary: {from: initContainer}\n"), "Deployment")
	ic := dep.Spec.Template.Spec.InitContainers
	if len(ic) != 1 {
		t.Fatalf("init containers: %d, want 1", len(ic))
	}
	cmd := ic[0].Command
	if len(cmd) < 2 || cmd[0] != "/hotswap" {
		t.Fatalf("init command %q: want /hotswap SUBCOMMAND ...", cmd)
	}
	bin, err := testbin.Hotswap()
	if err != nil {
		t.Fatal(err)
	}
	// Run the init command for real, into a scratch directory instead of the
	// emptyDir mount, and check it leaves a runnable hotswap there.
	dir := filepath.Join(t.TempDir(), "opt-hotswap")
	if out, err := exec.Command(bin, cmd[1], dir).CombinedOutput(); err != nil {
		t.Fatalf("%s %s %s: %v\n%s", bin, cmd[1], dir, err, out)
	}
	if out, err := exec.Command(filepath.Join(dir, "hotswap"), "version").CombinedOutput(); err != nil {
		t.Fatalf("installed hotswap does not run: %v\n%s", err, out)
	}
}

// The pod runs locked down: non-root, read-only root, no capabilities,
// RuntimeDefault seccomp, an emptyDir for the control socket, the downward
// API identity, and a termination grace period above hotswap's.
func TestPodSecurityAndIdentity(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dep := typed[appsv1.Deployment](t, render(t, c.values), "Deployment")
			ps := dep.Spec.Template.Spec
			sc := ps.SecurityContext
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65532 ||
				sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod securityContext: %+v", sc)
			}
			for _, ctr := range append(slices.Clone(ps.InitContainers), ps.Containers...) {
				cs := ctr.SecurityContext
				if cs == nil || cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem ||
					cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation ||
					cs.Capabilities == nil || !slices.Equal(cs.Capabilities.Drop, []corev1.Capability{"ALL"}) {
					t.Errorf("container %s securityContext: %+v", ctr.Name, cs)
				}
			}
			ctr := ps.Containers[0]
			var runtimeMount bool
			for _, m := range ctr.VolumeMounts {
				runtimeMount = runtimeMount || m.MountPath == "/run/hotswap"
			}
			if !runtimeMount {
				t.Error("no volume at /run/hotswap for the control socket")
			}
			env := map[string]string{}
			for _, e := range ctr.Env {
				if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
					env[e.Name] = e.ValueFrom.FieldRef.FieldPath
				}
			}
			if env["POD_NAME"] != "metadata.name" || env["POD_NAMESPACE"] != "metadata.namespace" {
				t.Errorf("downward API env: %v", env)
			}
			grace := graceSeconds(t, ctr.Args)
			if ps.TerminationGracePeriodSeconds == nil || *ps.TerminationGracePeriodSeconds <= grace {
				t.Errorf("terminationGracePeriodSeconds %v not above --grace=%ds", ps.TerminationGracePeriodSeconds, grace)
			}
			gated := slices.ContainsFunc(ps.ReadinessGates, func(g corev1.PodReadinessGate) bool {
				return g.ConditionType == kubetest.ReadyCondition
			})
			reporting := !slices.Contains(ctr.Args, "--kube=off")
			if gated != reporting {
				t.Errorf("readinessGate %s present = %v, reporting on = %v", kubetest.ReadyCondition, gated, reporting)
			}
		})
	}
}

func graceSeconds(t *testing.T, args []string) int64 {
	t.Helper()
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--grace="); ok {
			var n int64
			if _, err := fmt.Sscanf(v, "%ds", &n); err != nil {
				t.Fatalf("--grace=%s: %v", v, err)
			}
			return n
		}
	}
	t.Fatal("no --grace in args")
	return 0
}

// roleRules returns the rendered Role's rules (nil when there is no Role).
func roleRules(t *testing.T, manifest string) []rbacv1.PolicyRule {
	t.Helper()
	r := typed[rbacv1.Role](t, manifest, "Role")
	if r == nil {
		return nil
	}
	return r.Rules
}

// NOTES.txt tells how to swap and how to watch, for the release at hand.
func TestNotes(t *testing.T) {
	for _, c := range []struct {
		name, values string
		want         []string
	}{
		{"default", "", []string{
			"kubectl exec -n shop $POD -- kill -USR2 1",
			"kubectl exec -n shop $POD -- /hotswap swap",
			"kubectl describe pod -n shop $POD",
			"{.metadata.annotations}",
			"hotswap.dev/ready",
		}},
		{"configmap", "release:\n  volume: {enabled: true}\n  configMap: {enabled: true}\n", []string{
			"kubectl create configmap -n shop demo-hotswap-release --from-file=release.yaml=release.yaml",
			"kubectl edit configmap -n shop demo-hotswap-release",
		}},
		{"init container", "hotswapBinary: {from: initContainer}\n", []string{
			"kubectl exec -n shop $POD -- /opt/hotswap/hotswap swap",
			"kubectl exec -n shop $POD -- /opt/hotswap/hotswap kill -USR2 1",
		}},
		{"reuseport sysctl", "mode: reuseport\nreuseport: {migrateReq: true}\n", []string{
			"--allowed-unsafe-sysctls=net.ipv4.tcp_migrate_req",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := helm(t, append([]string{"install", releaseName, chartDir(), "--namespace", namespace, "--dry-run=client"}, valuesFile(t, c.values)...)...)
			if err != nil {
				t.Fatal(err)
			}
			_, notes, ok := strings.Cut(out, "NOTES:")
			if !ok {
				t.Fatalf("no NOTES in:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(notes, w) {
					t.Errorf("NOTES lack %q:\n%s", w, notes)
				}
			}
		})
	}
}
