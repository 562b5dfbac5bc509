package configmap

import (
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap/fleet"
)

// TestCanaryByPodName: the pods named in canary-pods run the canary
// manifest, the others the stable one; "*" moves every pod, including one
// that starts afterwards; promote (canary becomes the release key) offers
// nothing new to pods already on it; rollback (an empty list) brings the
// canary pods back to stable.
func TestCanaryByPodName(t *testing.T) {
	ns := namespace(t)
	canaryKey := fleet.CanaryKey(DefaultKey)
	data := manifest("v1")
	data[canaryKey] = manifest("v2")[DefaultKey]
	data[fleet.KeyCanaryPods] = "web-a\n"
	apply(t, ns, "release", data)

	a, alog := runPod(t, cluster.Admin(), ns, "release", "web-a")
	b, _ := runPod(t, cluster.Admin(), ns, "release", "web-b")
	if r := a.next(t, 5*time.Second); r.Version != "v2" || r.Source != "configmap:"+ns+"/release#canary" {
		t.Fatalf("canary pod offered %+v", r)
	}
	alog.wait(t, "this pod is on the rollout's canary", time.Second)
	if r := b.next(t, 5*time.Second); r.Version != "v1" {
		t.Fatalf("stable pod offered %+v", r)
	}

	data[fleet.KeyCanaryPods] = fleet.AllPods
	apply(t, ns, "release", data)
	if r := b.next(t, 5*time.Second); r.Version != "v2" {
		t.Fatalf("stable pod after * offered %+v", r)
	}
	a.none(t, 300*time.Millisecond)
	// A pod that starts mid-rollout at "*" comes up on the canary.
	c, _ := runPod(t, cluster.Admin(), ns, "release", "web-c")
	if r := c.next(t, 5*time.Second); r.Version != "v2" {
		t.Fatalf("new pod offered %+v", r)
	}

	// Promote: the canary manifest becomes the release; no pod swaps.
	promoted := manifest("v2")
	apply(t, ns, "release", promoted)
	a.none(t, 300*time.Millisecond)
	b.none(t, 0)
	c.none(t, 0)

	// A new canary on one pod, then rolled back: that pod returns to stable.
	promoted[canaryKey] = manifest("v3")[DefaultKey]
	promoted[fleet.KeyCanaryPods] = "web-b"
	apply(t, ns, "release", promoted)
	if r := b.next(t, 5*time.Second); r.Version != "v3" {
		t.Fatalf("second canary offered %+v", r)
	}
	a.none(t, 300*time.Millisecond)
	promoted[fleet.KeyCanaryPods] = ""
	apply(t, ns, "release", promoted)
	if r := b.next(t, 5*time.Second); r.Version != "v2" {
		t.Fatalf("rollback offered %+v", r)
	}
	// A pod without a name (not in a pod) never runs a canary.
	promoted[fleet.KeyCanaryPods] = fleet.AllPods
	apply(t, ns, "release", promoted)
	n, _ := runPod(t, cluster.Admin(), ns, "release", "")
	if r := n.next(t, 5*time.Second); r.Version != "v2" {
		t.Fatalf("nameless pod offered %+v", r)
	}
}
