package hotswap

import (
	"strings"
	"testing"
)

// TestExecSpecReleaseEnvWins (issue 13, item 9): a release's env overrides
// a variable the pod already sets — one entry, the release's — and
// hotswap's own variables never come from the pod's environment.
func TestExecSpecReleaseEnvWins(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Env = []string{"LOG=pod", "KEEP=1", "HOTSWAP_HANDOFF_SOCKET=/elsewhere.sock", "LISTEN_FDNAMES=x"}
		c.Release.Env = []string{"LOG=release"}
	}).start()
	env := h.proc(1).spec.Env
	var logs []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "LOG":
			logs = append(logs, kv)
		case kv == "HOTSWAP_HANDOFF_SOCKET=/elsewhere.sock", k == "LISTEN_FDNAMES":
			t.Errorf("generation inherited %s from hotswap's environment", kv)
		}
	}
	if len(logs) != 1 || logs[0] != "LOG=release" {
		t.Fatalf("LOG entries %q, want exactly the release's: env %q", logs, env)
	}
}
