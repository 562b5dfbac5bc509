package rollout

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hotswap-dev/hotswap/hotswap/fleet"
)

func steps(t *testing.T, s string) []fleet.Step {
	t.Helper()
	st, err := fleet.ParseSteps(s)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (f *fleetSim) spec(t *testing.T, v string) Spec {
	return Spec{Manifest: []byte(manifest(v)), Selector: f.selector, Steps: steps(t, "1,25%,50%,100%"),
		Bake: 300 * time.Millisecond, MaxSwapping: 2, SwapTimeout: 10 * time.Second, AutoPromote: true}
}

func (f *fleetSim) configMap(t *testing.T) map[string]string {
	t.Helper()
	cm, err := cluster.Client().CoreV1().ConfigMaps(f.ns).Get(context.Background(), f.cm, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data
}

// TestGoodRollout: 8 pods, 1 → 25% → 50% → 100%, at most 2 swapping at
// once; every pod swaps exactly once, the canary is promoted, and the
// events tell the story.
func TestGoodRollout(t *testing.T) {
	f := newFleet(t, "v1", 8)
	d := f.driver(t, nil)
	ctx := t.Context()
	if _, err := d.Start(ctx, f.spec(t, "v2")); err != nil {
		t.Fatal(err)
	}
	r, err := d.Drive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Phase != fleet.Promoted {
		t.Fatalf("phase %s: %s", r.Phase, r.Reason)
	}
	f.waitAll(t, "v2", 10*time.Second)
	for name, served := range f.served() {
		if !slices.Equal(served, []string{"v1", "v2"}) {
			t.Errorf("pod %s served %v, want v1 then v2 only", name, served)
		}
	}
	if m := f.maxIn.Load(); m > 2 || m < 1 {
		t.Errorf("at most %d pods swapped at once, want 1..2", m)
	}
	data := f.configMap(t)
	if data[DefaultKey] != manifest("v2") {
		t.Errorf("stable after promote = %q", data[DefaultKey])
	}
	if _, ok := data[fleet.CanaryKey(DefaultKey)]; ok {
		t.Error("canary key left after promote")
	}
	ev := f.events(t)
	if want := []string{"RolloutStarted", "RolloutStep", "RolloutStep", "RolloutStep", "RolloutPromoted"}; !slices.Equal(ev, want) {
		t.Errorf("events %v, want %v", ev, want)
	}
	var b strings.Builder
	if err := d.Metrics().WriteMetrics(&b); err != nil || !strings.Contains(b.String(), "hotswap_rollout_steps_total 4") {
		t.Errorf("metrics (err %v):\n%s", err, b.String())
	}
	t.Logf("driver: %d writes, %d reads, %d pod lists, %d conflicts", d.Metrics().Writes.Load(), d.Metrics().Reads.Load(), d.Metrics().PodLists.Load(), d.Metrics().Conflicts.Load())
}

// TestBadSignsHalt: each bad sign halts the rollout at the first step, only
// the canary pod ever serves the release, and every pod ends on stable.
func TestBadSignsHalt(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    behaviour
		why  string
	}{
		{"unready", behaviour{unreadyIn: 500 * time.Millisecond}, "not Ready"},
		{"crash", behaviour{crashIn: 500 * time.Millisecond}, "exited 2"},
		{"refused", behaviour{reject: "sha256 mismatch"}, "refused by verification: sha256 mismatch"},
		{"own bake rolled back", behaviour{rollbackIn: 500 * time.Millisecond}, "its bake of v2 rolled back: health check failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, "v1", 4)
			f.behaviour["v2"] = tc.b
			d := f.driver(t, nil)
			spec := f.spec(t, "v2")
			spec.Bake = 3 * time.Second
			if _, err := d.Start(t.Context(), spec); err != nil {
				t.Fatal(err)
			}
			r, err := d.Drive(t.Context())
			if !errors.Is(err, ErrRolledBack) {
				t.Fatalf("Drive = %v, want ErrRolledBack", err)
			}
			// The pod's reporter patches its annotations as its state moves:
			// a pod whose bake failed may show the version it went back to
			// before the bake's own verdict, and the driver halts on
			// whichever bad sign it reads first. Both name the pod and v2.
			why := []string{tc.why}
			if tc.b.rollbackIn > 0 {
				why = append(why, `was healthy on v2 during the bake, now serves "v1"`)
			}
			if !strings.Contains(r.Reason, "halted at step 1/4 (1)") || !slices.ContainsFunc(why, func(w string) bool { return strings.Contains(r.Reason, w) }) {
				t.Errorf("reason %q, want step 1 and one of %q", r.Reason, why)
			}
			f.waitAll(t, "v1", 10*time.Second)
			n := 0
			for _, served := range f.served() {
				if slices.Contains(served, "v2") {
					n++
				}
			}
			want := 1 // only the canary pod
			if tc.b.reject != "" {
				want = 0 // refused: it never served
			}
			if n != want {
				t.Errorf("%d pods served v2, want %d", n, want)
			}
			if ev := f.events(t); !slices.Contains(ev, "RolloutHalted") || !slices.Contains(ev, "RolloutRolledBack") {
				t.Errorf("events %v", ev)
			}
			data := f.configMap(t)
			if data[DefaultKey] != manifest("v1") || data[fleet.KeyCanaryPods] != "" {
				t.Errorf("after rollback: stable %q, canary-pods %q", data[DefaultKey], data[fleet.KeyCanaryPods])
			}
		})
	}
}

// TestDriverKilledAndRerun: a driver stopped in the middle of a step, and
// a new one started with the same command, continue from the ConfigMap; no
// pod swaps twice.
func TestDriverKilledAndRerun(t *testing.T) {
	f := newFleet(t, "v1", 8)
	spec := f.spec(t, "v2")
	spec.Bake = time.Second
	d1 := f.driver(t, nil)
	if _, err := d1.Start(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		// Kill it once the second step is under way.
		for ctx.Err() == nil {
			if data := f.configMap(t); len(fleet.ParsePods(data[fleet.KeyCanaryPods])) >= 2 {
				cancel()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if _, err := d1.Drive(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("first driver: %v", err)
	}
	r, err := fleet.ParseRollout(f.configMap(t)[fleet.KeyRollout])
	if err != nil || r.Phase != fleet.Progressing || r.Step < 1 {
		t.Fatalf("after the kill: %+v, %v", r, err)
	}
	d2 := f.driver(t, nil)
	if _, err := d2.Start(t.Context(), spec); err != nil {
		t.Fatalf("re-run start: %v", err)
	}
	if r, err := d2.Drive(t.Context()); err != nil || r.Phase != fleet.Promoted {
		t.Fatalf("second driver: %v, %+v", err, r)
	}
	f.waitAll(t, "v2", 10*time.Second)
	for name, served := range f.served() {
		if !slices.Equal(served, []string{"v1", "v2"}) {
			t.Errorf("pod %s served %v", name, served)
		}
	}
	// A different release while one is live is refused.
	if _, err := d2.Start(t.Context(), f.spec(t, "v2")); err == nil || !strings.Contains(err.Error(), "already the stable release") {
		t.Errorf("re-start of the promoted release: %v", err)
	}
}

// TestTwoDriversRace: two drivers on one rollout: each step is taken once,
// every pod swaps once, the losers' writes are conflicts, and each step's
// analysis runs once (the driver whose claim was written runs it).
func TestTwoDriversRace(t *testing.T) {
	f := newFleet(t, "v1", 8)
	spec := f.spec(t, "v2")
	log := filepath.Join(t.TempDir(), "analysis")
	analysis := func(name string) func(o *Options) {
		return func(o *Options) {
			o.Name, o.Interval = name, 20*time.Millisecond
			o.Analysis = `echo "$HOTSWAP_ROLLOUT_STEP ` + name + `" >> ` + log
		}
	}
	ds := []*Driver{f.driver(t, analysis("a")), f.driver(t, analysis("b"))}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, d := range ds {
		wg.Go(func() {
			if _, err := d.Start(t.Context(), spec); err != nil {
				errs[i] = err
				return
			}
			r, err := d.Drive(t.Context())
			if err == nil && r.Phase != fleet.Promoted {
				err = errors.New("phase " + string(r.Phase))
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	f.waitAll(t, "v2", 10*time.Second)
	for name, served := range f.served() {
		if !slices.Equal(served, []string{"v1", "v2"}) {
			t.Errorf("pod %s served %v", name, served)
		}
	}
	if m := f.maxIn.Load(); m > 2 {
		t.Errorf("%d pods swapped at once with two drivers, cap 2", m)
	}
	ev := f.events(t)
	if want := []string{"RolloutStarted", "RolloutStep", "RolloutStep", "RolloutStep", "RolloutPromoted"}; !slices.Equal(ev, want) {
		t.Errorf("events %v, want %v (each once)", ev, want)
	}
	t.Logf("conflicts: a %d, b %d", ds[0].Metrics().Conflicts.Load(), ds[1].Metrics().Conflicts.Load())
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		step, by, _ := strings.Cut(l, " ")
		runs[step] = append(runs[step], by)
	}
	for step := range spec.Steps {
		if by := runs[fmt.Sprint(step+1)]; len(by) != 1 {
			t.Errorf("step %d: the analysis ran %d times (by %v), want once", step+1, len(by), by)
		}
	}
	t.Logf("analysis runs: %v", runs)
}

// TestPodsComeAndGo: a canary pod deleted mid-rollout and pods added (scale
// up): the canary count is topped up, a pod started at the 100% step comes
// up on the canary, and the rollout completes.
func TestPodsComeAndGo(t *testing.T) {
	f := newFleet(t, "v1", 4)
	spec := f.spec(t, "v2")
	spec.Bake = time.Second
	spec.AutoPromote = false
	d := f.driver(t, nil)
	if _, err := d.Start(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var final *fleet.Rollout
	go func() {
		r, err := d.Drive(t.Context())
		final = r
		done <- err
	}()
	// Wait for the first canary, delete it, add two pods.
	var first string
	for first == "" {
		if names := fleet.ParsePods(f.configMap(t)[fleet.KeyCanaryPods]); len(names) > 0 {
			first = names[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.deletePod(first)
	f.addPod()
	f.addPod()
	// At the last step, a new pod comes up on the canary.
	for {
		if f.configMap(t)[fleet.KeyCanaryPods] == "*\n" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	late := f.addPod()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if final.Phase != fleet.Completed {
		t.Fatalf("phase %s: %s", final.Phase, final.Reason)
	}
	f.waitAll(t, "v2", 10*time.Second)
	if s := f.served()[late]; !slices.Equal(s, []string{"v2"}) {
		t.Errorf("pod started at 100%% served %v, want only v2", s)
	}
	if _, err := d.Promote(t.Context(), "by the test"); err != nil {
		t.Fatal(err)
	}
	if data := f.configMap(t); data[DefaultKey] != manifest("v2") {
		t.Errorf("after promote stable = %q", data[DefaultKey])
	}
}

// TestSteer: pause holds a rollout, resume continues it, abort sends the
// canary pods back; the calls refuse phases they do not apply to.
func TestSteer(t *testing.T) {
	f := newFleet(t, "v1", 4)
	spec := f.spec(t, "v2")
	spec.Bake = time.Hour // held at step 1 until the test steers
	d := f.driver(t, nil)
	if _, err := d.Resume(t.Context()); !errors.Is(err, ErrNoRollout) {
		t.Fatalf("resume without rollout: %v", err)
	}
	if _, err := d.Start(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Start(t.Context(), f.spec(t, "v3")); !errors.Is(err, ErrInProgress) {
		t.Fatalf("second rollout: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { _, err := d.Drive(ctx); done <- err }()
	for len(fleet.ParsePods(f.configMap(t)[fleet.KeyCanaryPods])) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := d.Pause(t.Context(), "looking at graphs"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pause(t.Context(), "again"); !errors.Is(err, ErrPhase) {
		t.Fatalf("pause twice: %v", err)
	}
	if _, err := d.Resume(t.Context()); err != nil {
		t.Fatal(err)
	}
	rep, err := d.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := rep.WriteTable(&b, time.Now()); err != nil {
		t.Fatal(err)
	}
	t.Logf("status:\n%s", b.String())
	if !strings.Contains(b.String(), "Phase:    Progressing") || strings.Count(b.String(), " canary ") != 1 {
		t.Errorf("status table:\n%s", b.String())
	}
	if _, err := d.Abort(t.Context(), "wrong build"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrAborted) {
		t.Fatalf("Drive after abort: %v", err)
	}
	cancel()
	f.waitAll(t, "v1", 10*time.Second)
	if ev := f.events(t); !slices.Equal(ev, []string{"RolloutStarted", "RolloutPaused", "RolloutResumed", "RolloutAborted", "RolloutRolledBack"}) {
		t.Errorf("events %v", ev)
	}
}
