package hotswap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap/listenenv"
	// The test binary is the exec shim of generations with listeners.
	_ "github.com/hotswap-dev/hotswap/reuseport/shim"
)

// A generation sees --listen-env rendered from the listeners' descriptors,
// in place of a stale value in hotswap's own environment.
func TestListenEnvReachesGeneration(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	v, err := listenenv.Parse("NGINX={{range .}}{{.FD}};{{end}}")
	if err != nil {
		t.Fatal(err)
	}
	_, _, stop := startEngine(t, sh(`printf %s "$NGINX" > `+out+`; exec sleep 60`, "v1"), func(c *Config) {
		c.Listeners = []ListenSpec{{Name: "http", URL: "tcp://127.0.0.1:0"}, {Name: "admin", URL: "tcp://127.0.0.1:0"}}
		c.ListenEnv = []listenenv.Var{v}
		c.Env = append(os.Environ(), "NGINX=9;")
	})
	defer stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(out)
		if string(b) == "3;4;" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("generation saw NGINX=%q, want 3;4;", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Without listeners there is nothing to present: refused before anything starts.
func TestListenEnvNeedsListeners(t *testing.T) {
	v, err := listenenv.Parse("NGINX={{range .}}{{.FD}};{{end}}")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Release: sh("exec sleep 60", "v1"), Mode: ModeReuseport, ListenEnv: []listenenv.Var{v}, RuntimeDir: t.TempDir()}
	if _, err := New(cfg, reaper(t)); err == nil || !strings.Contains(err.Error(), "needs --listen") {
		t.Fatalf("New with --listen-env in reuseport mode: %v, want it refused", err)
	}
}
