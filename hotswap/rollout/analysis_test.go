package rollout

import (
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap/fleet"
)

// Who runs a baked step's analysis: the driver whose claim stands, once.
func TestAnalysisClaim(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	claim := func(step int, by string, ago time.Duration) *fleet.AnalysisClaim {
		return &fleet.AnalysisClaim{Step: step, Driver: by, Since: now.Add(-ago)}
	}
	for _, c := range []struct {
		name      string
		analysis  string
		claim     *fleet.AnalysisClaim
		wantClaim bool
		wantWait  bool
	}{
		{"no command, no claim: advance", "", nil, false, false},
		{"command, no claim: claim first", "true", nil, true, false},
		{"my claim: run it", "true", claim(2, "me", time.Second), false, false},
		{"another's claim: wait", "true", claim(2, "other", time.Second), false, true},
		{"another's claim, no command here: wait too", "", claim(2, "other", time.Second), false, true},
		{"another's claim expired: claim again", "true", claim(2, "other", time.Minute+3*time.Second), true, false},
		{"a claim of an earlier step: claim", "true", claim(1, "other", time.Second), true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := &Driver{opts: Options{Name: "me", Analysis: c.analysis, AnalysisTimeout: time.Minute, Interval: time.Second}}
			got, wait := d.analysisClaim(&fleet.Rollout{Step: 2, Analysis: c.claim}, now)
			if (got != nil) != c.wantClaim || wait != c.wantWait {
				t.Fatalf("claim %+v wait %v; want claim %v wait %v", got, wait, c.wantClaim, c.wantWait)
			}
			if got != nil && (got.Step != 2 || got.Driver != "me" || !got.Since.Equal(now)) {
				t.Errorf("claim %+v", got)
			}
		})
	}
}
