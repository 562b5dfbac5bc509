package execplugin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/e2e/kubetest"
	"github.com/hotswap-dev/hotswap/entrypoint"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// childEnv carries the kubeconfig path to the re-executed binary, which then
// runs as PID 1 (see runChild) instead of the tests.
const childEnv = "HOTSWAP_EXECPLUGIN_KUBECONFIG"

// requests is how many authenticated requests the child makes: each runs
// the plugin once (its credential is born expired, so client-go never
// caches it).
const requests = 200

func TestMain(m *testing.M) {
	if kc := os.Getenv(childEnv); kc != "" {
		os.Exit(runChild(kc))
	}
	os.Exit(m.Run())
}

// TestExecCredentialPluginBesidePID1Reaper: a kubeconfig whose user is an
// exec plugin, used by client-go in a process whose reaper runs as PID 1:
// every request gets its credential, none fails with "no child processes".
func TestExecCredentialPluginBesidePID1Reaper(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a PID namespace to run the reaper as PID 1")
	}
	c, err := kubetest.Start(kubetest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns, sa = "execplugin", "plugin-user"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateServiceAccount(ctx, ns, sa); err != nil {
		t.Fatal(err)
	}
	saCfg, err := c.SAConfig(ctx, ns, sa)
	if err != nil {
		t.Fatal(err)
	}

	// The plugin: a script printing an ExecCredential with the token. The
	// credential expired long ago, so client-go runs the plugin again for
	// every request instead of caching it.
	dir := t.TempDir()
	plugin := filepath.Join(dir, "credential-plugin")
	cred := fmt.Sprintf(`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":%q,"expirationTimestamp":"2000-01-01T00:00:00Z"}}`, saCfg.BearerToken)
	count := filepath.Join(dir, "runs")
	script := "#!/bin/sh\necho run >> " + count + "\ncat <<'EOF'\n" + cred + "\nEOF\n"
	if err := os.WriteFile(plugin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData()}
	kc.AuthInfos["plugin"] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
		APIVersion:      "client.authentication.k8s.io/v1",
		Command:         plugin,
		InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
	}}
	kc.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "plugin"}
	kc.CurrentContext = "kubetest"
	kcPath := filepath.Join(dir, "plugin.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kcPath); err != nil {
		t.Fatal(err)
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), childEnv+"="+kcPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	t.Logf("PID 1 child:\n%s", out)
	if err != nil {
		t.Errorf("PID 1 child: %v", err)
	}
	b, _ := os.ReadFile(count)
	if runs := strings.Count(string(b), "run\n"); runs < requests {
		t.Errorf("the plugin ran %d times for %d requests: client-go cached the credential, the test proves nothing", runs, requests)
	}
}

// runChild is PID 1 of its own PID namespace, as hotswap is in a container:
// it runs the reaper, keeps orphans coming, and makes the requests through
// client-go with the plugin kubeconfig. It exits 0 only if every request
// succeeded as the service account and orphans were reaped meanwhile.
func runChild(kubeconfig string) int {
	fail := func(format string, a ...any) int {
		fmt.Printf("FAIL: "+format+"\n", a...)
		return 1
	}
	if os.Getpid() != 1 {
		return fail("pid %d, want 1", os.Getpid())
	}
	// Our own /proc: the reaper reads it to tell its children apart.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fail("mount: %v", err)
	}
	if err := syscall.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		return fail("mount /proc: %v", err)
	}
	r, err := entrypoint.NewReaper(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return fail("reaper: %v", err)
	}
	defer r.Close()

	// Orphans all along: shells that leave two exited subshells to PID 1.
	null, _ := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	stop := make(chan struct{})
	var spawned atomic.Int64
	spawnerDone := make(chan struct{})
	go func() {
		defer close(spawnerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			p, err := r.Start(entrypoint.Spec{Path: "/bin/sh", Argv: []string{"sh", "-c", "(exit 0) & (exit 0) &"}, Files: []*os.File{null, null, null}})
			if err != nil {
				return
			}
			<-p.Done()
			spawned.Add(2)
		}
	}()

	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fail("kubeconfig: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fail("client: %v", err)
	}
	failed := 0
	var first error
	want := "system:serviceaccount:execplugin:plugin-user"
	for i := range requests {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
		cancel()
		if err == nil && res.Status.UserInfo.Username != want {
			err = fmt.Errorf("authenticated as %q, want %q", res.Status.UserInfo.Username, want)
		}
		if err != nil {
			failed++
			if first == nil {
				first = fmt.Errorf("request %d: %w", i, err)
			}
		}
	}
	close(stop)
	<-spawnerDone
	deadline := time.Now().Add(10 * time.Second)
	for r.Orphans() < uint64(spawned.Load()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("%d requests through the exec plugin, %d failed; %d orphans left, %d reaped\n", requests, failed, spawned.Load(), r.Orphans())
	if failed > 0 {
		return fail("%d of %d requests failed; first: %v", failed, requests, first)
	}
	if r.Orphans() < uint64(spawned.Load()) || spawned.Load() == 0 {
		return fail("reaped %d of %d orphans", r.Orphans(), spawned.Load())
	}
	return 0
}
