package fleet

import (
	"reflect"
	"testing"
	"time"
)

func TestReleaseFor(t *testing.T) {
	data := map[string]string{
		"release.yaml":        "stable",
		"release.canary.yaml": "canary",
		KeyCanaryPods:         "web-a\nweb-b\n",
	}
	for _, tc := range []struct {
		name  string
		data  map[string]string
		pod   string
		want  string
		track Track
		ok    bool
	}{
		{"listed pod runs the canary", data, "web-b", "canary", Canary, true},
		{"other pod runs stable", data, "web-c", "stable", Stable, true},
		{"prefix is not a name", data, "web", "stable", Stable, true},
		{"no pod name is stable", data, "", "stable", Stable, true},
		{"star is every pod", map[string]string{"release.yaml": "s", "release.canary.yaml": "c", KeyCanaryPods: "*"}, "new-pod", "c", Canary, true},
		{"listed without canary manifest stays stable", map[string]string{"release.yaml": "s", KeyCanaryPods: "*"}, "p", "s", Stable, true},
		{"commas work too", map[string]string{"release.yaml": "s", "release.canary.yaml": "c", KeyCanaryPods: "a, p,b"}, "p", "c", Canary, true},
		{"nothing at all", map[string]string{}, "p", "", Stable, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, track, ok := ReleaseFor(tc.data, "release.yaml", tc.pod)
			if got != tc.want || track != tc.track || ok != tc.ok {
				t.Fatalf("ReleaseFor = %q %s %v, want %q %s %v", got, track, ok, tc.want, tc.track, tc.ok)
			}
		})
	}
}

func TestCanaryKey(t *testing.T) {
	for in, want := range map[string]string{"release.yaml": "release.canary.yaml", "app": "app.canary", "a.yml": "a.yml.canary"} {
		if got := CanaryKey(in); got != want {
			t.Errorf("CanaryKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSteps(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Step
		err  bool
	}{
		{"1,25%,50%,100%", []Step{{Pods: 1}, {Percent: 25}, {Percent: 50}, {Percent: 100}}, false},
		{"1,2", []Step{{Pods: 1}, {Pods: 2}, {Percent: 100}}, false},
		{"100%", []Step{{Percent: 100}}, false},
		{"50%,25%", nil, true},
		{"0", nil, true},
		{"101%", nil, true},
		{"1,x", nil, true},
		{"", nil, true},
		{"5%%", nil, true},
	} {
		got, err := ParseSteps(tc.in)
		if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSteps(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestStepOf(t *testing.T) {
	for _, tc := range []struct {
		s           Step
		total, want int
	}{
		{Step{Pods: 1}, 8, 1}, {Step{Percent: 25}, 8, 2}, {Step{Percent: 50}, 8, 4}, {Step{Percent: 100}, 8, 8},
		{Step{Percent: 25}, 9, 3}, {Step{Percent: 1}, 8, 1}, {Step{Pods: 20}, 8, 8}, {Step{Percent: 50}, 0, 0},
	} {
		if got := tc.s.Of(tc.total); got != tc.want {
			t.Errorf("%s of %d = %d, want %d", tc.s, tc.total, got, tc.want)
		}
	}
}

func TestRolloutRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC)
	r := &Rollout{Target: Target{Deployment: "web", Selector: "app=web"}, Steps: []Step{{Pods: 1}, {Percent: 100}},
		Bake: Duration(30 * time.Second), MaxSwapping: 2, Phase: Progressing, BakeSince: &now, Started: now, Updated: now}
	got, err := ParseRollout(r.Format())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip:\n%+v\n%+v", got, r)
	}
	if r, err := ParseRollout(""); r != nil || err != nil {
		t.Fatalf("empty = %v, %v", r, err)
	}
	if _, err := ParseRollout("{"); err == nil {
		t.Fatal("broken JSON accepted")
	}
}

func TestFormatPods(t *testing.T) {
	if got := FormatPods([]string{"b", "a", "b"}); got != "a\nb\n" {
		t.Fatalf("FormatPods = %q", got)
	}
	if got := ParsePods(FormatPods([]string{"x", "y"})); !reflect.DeepEqual(got, []string{"x", "y"}) {
		t.Fatalf("ParsePods = %q", got)
	}
}
