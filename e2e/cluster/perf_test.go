package cluster

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// writeTable logs the measured table and, with HOTSWAP_PERF_OUT=FILE, writes
// it there as the body of docs/perf-cluster.md.
func (s *scenario) writeTable(roll rolloutResult) {
	ms := func(d time.Duration) string {
		if d == 0 {
			return "—"
		}
		return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Measured by `go test ./e2e/cluster` on %s, %d cores, %s.\n\n", hostKernel(), runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))
	b.WriteString("### In-place swaps (one pod, under load the whole time)\n\n")
	b.WriteString("| swap | trigger → new version answering | trigger → annotation visible | trigger command took | requests during step | failed |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	for _, r := range s.records {
		if strings.HasPrefix(r.Name, "broken") {
			continue
		}
		fmt.Fprintf(&b, "| %s → gen %s (`%s`) | %s | %s | %s | %d | %d |\n", r.Name, r.Generation, r.Version,
			ms(r.Answering), ms(r.Annotated), ms(r.TriggerCmd), r.Requests, r.Failed)
	}
	for _, r := range s.records {
		if strings.HasPrefix(r.Name, "broken") {
			fmt.Fprintf(&b, "| %s | — (%s) | %s (SwapFailed event) | %s | %d | %d |\n", r.Name, r.Note, ms(r.Annotated), ms(r.TriggerCmd), r.Requests, r.Failed)
		}
	}
	fmt.Fprintf(&b, "\nPod deletion: hotswap exited %d after %s (terminationGracePeriodSeconds %v).\n\n",
		s.deleted.exitCode, ms(s.deleted.took), s.deleted.grace)
	b.WriteString("### The same version change as a rolling update of the Deployment\n\n")
	b.WriteString("| | time to new version answering | time to complete | requests | failed |\n|---|---:|---:|---:|---:|\n")
	// The in-place row of the comparison: the first swap to a new version
	// (the ConfigMap release).
	var hsAnswer, hsAnn time.Duration
	for _, r := range s.records {
		if r.Version != "" && !strings.HasPrefix(r.Name, "broken") && !strings.HasPrefix(r.Version, "v1") {
			hsAnswer, hsAnn = r.Answering, r.Annotated
			break
		}
	}
	var hsReq, hsFail int64
	for _, r := range s.records {
		hsReq += r.Requests
		hsFail += r.Failed
	}
	fmt.Fprintf(&b, "| hotswap, ConfigMap release (same pod) | %s | %s (annotation) | %d (all swap steps) | %d |\n", ms(hsAnswer), ms(hsAnn), hsReq, hsFail)
	fmt.Fprintf(&b, "| rolling update, `helm upgrade` (new pod) | %s | %s (old pod gone) | %d | %d%s |\n",
		ms(roll.Answering), ms(roll.Complete), roll.Requests, roll.Failed, failureKinds(roll))
	out := b.String()
	s.t.Logf("measured:\n%s", out)
	if path := os.Getenv("HOTSWAP_PERF_OUT"); path != "" {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			s.t.Errorf("HOTSWAP_PERF_OUT: %v", err)
		}
	}
}

func failureKinds(r rolloutResult) string {
	if r.Failed == 0 {
		return ""
	}
	return " (" + r.Failures + ")"
}

func hostKernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "Linux"
	}
	return "Linux " + strings.TrimSpace(string(b))
}
