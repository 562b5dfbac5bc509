package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/hotswap-dev/hotswap/hotswap"
)

// parseRun parses args as `hotswap run` does (with cobra's --version) and
// returns the command and its flags.
func parseRun(t *testing.T, args ...string) (*runCommand, *pflag.FlagSet) {
	t.Helper()
	rc := newRunCommand()
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	rc.addFlags(fs)
	fs.Bool("version", false, "cobra's own --version flag")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return rc, fs
}

// load runs the whole path from flags to a checked Config and the
// features' setup.
func load(t *testing.T, args ...string) (hotswap.Config, error) {
	t.Helper()
	rc, fs := parseRun(t, args...)
	cfg, d, err := rc.load(fs, []string{"sh"})
	if err != nil {
		return cfg, err
	}
	d.group = newGroup(context.Background())
	defer d.group.stop(time.Second)
	for _, f := range rc.features {
		if _, err := f.setup(d, &cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hotswap.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// HOTSWAP_VERSION and HOTSWAP_GENERATION are what hotswap sets for its
// children; a hotswap started inside a generation (a preflight, a nested
// init) must not read them as its own --version flag.
func TestGenerationEnvIsNotConfig(t *testing.T) {
	t.Setenv("HOTSWAP_VERSION", "v7")
	t.Setenv("HOTSWAP_GENERATION", "3")
	if _, err := load(t); err != nil {
		t.Fatal(err)
	}
}

// With nothing set, the Config is hotswap.Defaults: the flags' defaults
// are that table, not a copy of it.
func TestFlagDefaultsAreConfigDefaults(t *testing.T) {
	cfg, err := load(t)
	if err != nil {
		t.Fatal(err)
	}
	d := hotswap.Defaults()
	if cfg.Mode != d.Mode || cfg.StopSignal != d.StopSignal || cfg.SwapSignal != d.SwapSignal ||
		cfg.StartTimeout != d.StartTimeout || cfg.DrainTimeout != d.DrainTimeout || cfg.Grace != d.Grace ||
		cfg.OnExit != d.OnExit || cfg.RollbackWindow != d.RollbackWindow || cfg.MaxGenerations != d.MaxGenerations {
		t.Fatalf("config from default flags\n%+v\ndiffers from hotswap.Defaults()\n%+v", cfg, d)
	}
}

// Every setting is decided flag > HOTSWAP_* > config file > default, for
// core and feature settings alike, and --config itself flag > env.
func TestPrecedence(t *testing.T) {
	file := writeConfig(t, "grace: 7s\nstop-signal: QUIT\nmax-generations: 5\nlisten: [a=tcp://:1, b=tcp://:2]\nhandoff-keepalive: true\n")
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		check func(hotswap.Config) bool
	}{
		{"default", nil, nil, func(c hotswap.Config) bool { return c.Grace == 25*time.Second && !c.HandoffKeepAlive }},
		{"file", map[string]string{"HOTSWAP_CONFIG": file}, nil, func(c hotswap.Config) bool {
			return c.Grace == 7*time.Second && c.StopSignal == syscall.SIGQUIT && c.MaxGenerations == 5 && len(c.Listeners) == 2 && c.HandoffKeepAlive
		}},
		{"env over file", map[string]string{"HOTSWAP_CONFIG": file, "HOTSWAP_GRACE": "9s", "HOTSWAP_LISTEN": "c=tcp://:3", "HOTSWAP_HANDOFF_KEEPALIVE": "false"}, nil, func(c hotswap.Config) bool {
			return c.Grace == 9*time.Second && c.StopSignal == syscall.SIGQUIT && len(c.Listeners) == 1 && c.Listeners[0].Name == "c" && !c.HandoffKeepAlive
		}},
		{"flag over env", map[string]string{"HOTSWAP_CONFIG": file, "HOTSWAP_GRACE": "9s"}, []string{"--grace", "3s", "--handoff-keepalive=false"}, func(c hotswap.Config) bool {
			return c.Grace == 3*time.Second && c.MaxGenerations == 5 && !c.HandoffKeepAlive
		}},
		{"config flag over env", map[string]string{"HOTSWAP_CONFIG": "/nonexistent.yaml"}, []string{"--config", file}, func(c hotswap.Config) bool {
			return c.Grace == 7*time.Second
		}},
		{"empty env is unset", map[string]string{"HOTSWAP_CONFIG": file, "HOTSWAP_GRACE": ""}, nil, func(c hotswap.Config) bool {
			return c.Grace == 7*time.Second
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg, err := load(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(cfg) {
				t.Fatalf("wrong winner: %+v", cfg)
			}
		})
	}
}

// A bad value is reported with where it came from, whether the flag's
// parser, a hotswap parser, Config.Validate or a feature rejects it.
func TestBadValueNamesItsSource(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		file string
		args []string
		want string
	}{
		{"flag parser, env", map[string]string{"HOTSWAP_GRACE": "soon"}, "", nil, `environment variable HOTSWAP_GRACE: value "soon" is not a valid duration`},
		{"flag parser, file", nil, "grace: soon\n", nil, `config file key grace: value "soon" is not a valid duration`},
		{"signal, flag", nil, "", []string{"--stop-signal", "NOPE"}, "--stop-signal: "},
		{"signal, env", map[string]string{"HOTSWAP_STOP_SIGNAL": "NOPE"}, "", nil, "environment variable HOTSWAP_STOP_SIGNAL: "},
		{"signal, file", nil, "stop-signal: NOPE\n", nil, "config file key stop-signal: "},
		{"validate, flag", nil, "", []string{"--max-generations", "1"}, "--max-generations: 1: must be at least 2"},
		{"validate, env", map[string]string{"HOTSWAP_MAX_GENERATIONS": "1"}, "", nil, "environment variable HOTSWAP_MAX_GENERATIONS: 1: must be at least 2"},
		{"validate, file", nil, "max-generations: 1\n", nil, "config file key max-generations: 1: must be at least 2"},
		{"validate duration, env", map[string]string{"HOTSWAP_DRAIN_TIMEOUT": "0s"}, "", nil, "environment variable HOTSWAP_DRAIN_TIMEOUT: 0s: must be positive"},
		{"cross-field, file", nil, "swap-signal: TERM\n", nil, "config file key swap-signal: TERM: must differ"},
		{"feature, env", map[string]string{"HOTSWAP_SETTLE": "-1s"}, "", nil, "environment variable HOTSWAP_SETTLE: -1s must not be negative"},
		{"feature, file", nil, "preflight-timeout: 0s\n", nil, "config file key preflight-timeout: 0s: must be positive"},
		{"logger, env", map[string]string{"HOTSWAP_LOG_LEVEL": "loud"}, "", nil, `environment variable HOTSWAP_LOG_LEVEL: "loud": want debug`},
		{"logger, file", nil, "log-format: xml\n", nil, `config file key log-format: "xml": want text or json`},
		{"unknown key", nil, "graec: 5s\n", nil, "unknown key(s) graec"},
		{"config key in file", nil, "config: other.yaml\n", nil, "unknown key(s) config"},
		{"not yaml", nil, "grace: [\n", nil, "not valid YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeConfig(t, tc.file)}, args...)
			}
			_, err := load(t, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if ee, ok := err.(*exitError); !ok || ee.code != 2 {
				t.Fatalf("error %#v, want a usage error (exit 2)", err)
			}
		})
	}
}

// The lifecycle group cancels and awaits every goroutine, and gives up
// waiting after its limit.
func TestGroupAwaitsGoroutines(t *testing.T) {
	g := newGroup(context.Background())
	var done atomic.Int32
	for range 3 {
		g.Go(func(ctx context.Context) {
			<-ctx.Done()
			time.Sleep(10 * time.Millisecond) // a last act after cancel
			done.Add(1)
		})
	}
	if !g.stop(10*time.Second) || done.Load() != 3 {
		t.Fatalf("stop returned before all goroutines: %d of 3 done", done.Load())
	}
	stuck := newGroup(context.Background())
	release := make(chan struct{})
	defer close(release)
	stuck.Go(func(context.Context) { <-release })
	if stuck.stop(10 * time.Millisecond) {
		t.Fatal("stop reported success while a goroutine still runs")
	}
}

func TestInstallSelf(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "opt", "hotswap")
	dst, err := installSelf(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Mode().Perm() != 0o555 || fi.Size() == 0 {
		t.Fatalf("installed binary: %v %v", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "kill")); err != nil || target != "hotswap" {
		t.Fatalf("kill link: %q %v", target, err)
	}
	if _, err := installSelf(dir); err != nil { // idempotent: an init container may run twice
		t.Fatal(err)
	}
}

// --listen-env keeps each value whole (a template may hold commas), from a
// list in the config file and from HOTSWAP_LISTEN_ENV, and a bad one is a
// usage error naming the flag.
func TestListenEnvValues(t *testing.T) {
	nginx := "NGINX={{range .}}{{.FD}};{{end}}"
	fds := "FDS={{range $i, $l := .}}{{if $i}},{{end}}{{$l.FD}}{{end}}"
	strs := func(cfg hotswap.Config) string {
		var got []string
		for _, v := range cfg.ListenEnv {
			got = append(got, v.String())
		}
		return strings.Join(got, " ")
	}
	file := writeConfig(t, "listen: [http=tcp://127.0.0.1:0]\nlisten-env:\n  - '"+nginx+"'\n  - '"+fds+"'\n")
	cfg, err := load(t, "--config", file)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strs(cfg), nginx+" "+fds; got != want {
		t.Errorf("listen-env from the file = %q, want %q", got, want)
	}
	t.Setenv("HOTSWAP_LISTEN_ENV", fds)
	if cfg, err = load(t, "--listen", "http=tcp://127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if got := strs(cfg); got != fds {
		t.Errorf("listen-env from the environment = %q, want %q", got, fds)
	}
	for _, tc := range []struct {
		args []string
		why  string
	}{
		{[]string{"--listen-env", "LISTEN_PID=1"}, "hotswap sets LISTEN_PID"},
		{[]string{"--listen", "http=tcp://127.0.0.1:0", "--listen-env", `A={{fd "admin"}}`}, `no --listen named "admin"`},
		{[]string{"--mode", "reuseport", "--listen-env", nginx}, "needs --listen"},
	} {
		_, err = load(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), "listen-env") || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%q: %v, want a usage error naming listen-env and saying %q", tc.args, err, tc.why)
		}
	}
}
