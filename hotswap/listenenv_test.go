package hotswap

import (
	"slices"
	"strings"
	"testing"

	"github.com/hotswap-dev/hotswap/hotswap/listenenv"
)

// A generation sees --listen-env rendered from the listeners' descriptors,
// in place of a stale value in hotswap's own environment.
func TestListenEnvReachesGeneration(t *testing.T) {
	v, err := listenenv.Parse("NGINX={{range .}}{{.FD}};{{end}}")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) {
		c.Listeners = []ListenSpec{{Name: "http", URL: "tcp://127.0.0.1:0"}, {Name: "admin", URL: "tcp://127.0.0.1:0"}}
		c.ListenEnv = []listenenv.Var{v}
		c.Env = []string{"PATH=/usr/bin:/bin", "NGINX=9;"}
	}).start()
	env := h.proc(1).spec.Env
	if !slices.Contains(env, "NGINX=3;4;") || slices.Contains(env, "NGINX=9;") {
		t.Fatalf("generation environment %q: want NGINX=3;4; and no stale NGINX", env)
	}
}

// Without listeners there is nothing to present: refused before anything starts.
func TestListenEnvNeedsListeners(t *testing.T) {
	v, err := listenenv.Parse("NGINX={{range .}}{{.FD}};{{end}}")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Mode = ModeReuseport
	cfg.ListenEnv = []listenenv.Var{v}
	if _, err := NewWithRuntime(cfg, newFakeRuntime()); err == nil || !strings.Contains(err.Error(), "needs --listen") {
		t.Fatalf("--listen-env in reuseport mode: %v, want it refused", err)
	}
}
