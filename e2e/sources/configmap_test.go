package sources

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hotswap-dev/hotswap/hotswap"
)

// TestConfigMapAPI: the real hotswap reads its release from a ConfigMap
// through a real kube-apiserver, under load: an update swaps, a bad one is
// refused, a deletion keeps serving, a re-creation swaps again.
func TestConfigMapAPI(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := "e2e-sources"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join(t.TempDir(), "releases")
	v1, _ := release(t, rel, "v1/hotswap", "v1", 0o755)
	release(t, rel, "v2/hotswap", "v2", 0o755)
	release(t, rel, "v3/hotswap", "v3", 0o755)
	cms := c.Client().CoreV1().ConfigMaps(ns)
	data := func(v string) map[string]string {
		return map[string]string{"release.yaml": fmt.Sprintf("version: %s\nbinary: %s/hotswap\nargs: [serve]\n", v, v)}
	}
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "myapp-release"}, Data: data("v1")}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := startPodEnv(t, []string{"KUBECONFIG=" + c.KubeconfigPath, "POD_NAMESPACE=" + ns},
		[]string{"--configmap", "myapp-release", "--release-root", rel, "--release-version", "v1"}, v1, "serve")
	ld, stopLoad := startLoad(t, p.Addr)
	time.Sleep(time.Second)
	if s := serving(t, p, 1); s.Swaps != 0 {
		t.Fatalf("swapped at start to the release already serving")
	}

	update := func(v string, d map[string]string) time.Time {
		t.Helper()
		cm.Data = d
		at := time.Now()
		if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return at
	}
	var lat []time.Duration
	for _, v := range []string{"v2", "v3", "v2", "v3", "v2"} {
		mark := p.logLen()
		at := update(v, data(v))
		ld.MarkSwap(at)
		p.waitStatus(20*time.Second, v+" serving", func(s hotswap.Status) bool { return s.Version == v && s.Phase == hotswap.PhaseServing })
		started := p.waitLog(mark, time.Second, "SwapStarted", eventIs("SwapStarted"))
		lat = append(lat, started.Time.Sub(at))
	}
	t.Logf("LATENCY configmap via informer (real apiserver): update -> swap start %v", lat)
	s := p.mustStatus(t)

	// A release the verifier refuses.
	before := s
	update("v9", data("v9"))
	p.rejectedAfter(before.LastRejected, "no such file")
	serving(t, p, s.Generation)

	// Deleted: serving goes on. Re-created: read afresh and swapped to.
	mark := p.logLen()
	if err := cms.Delete(ctx, "myapp-release", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	p.waitLog(mark, 10*time.Second, "deletion", msgHas("the ConfigMap was deleted"))
	time.Sleep(500 * time.Millisecond)
	serving(t, p, s.Generation)
	if cm, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "myapp-release"}, Data: data("v3")}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p.waitStatus(20*time.Second, "v3 serving after re-create", func(s hotswap.Status) bool { return s.Version == "v3" && s.Phase == hotswap.PhaseServing })
	stopLoad()
}

func (p *pod) mustStatus(t *testing.T) hotswap.Status {
	t.Helper()
	s, err := p.status()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
