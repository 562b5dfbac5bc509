package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func runFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	addRunFlags(fs)
	fs.Bool("version", false, "cobra's own --version flag")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

// HOTSWAP_VERSION and HOTSWAP_GENERATION are what hotswap sets for its
// children; a hotswap started inside a generation (a preflight, a nested
// init) must not read them as its own --version flag.
func TestGenerationEnvIsNotConfig(t *testing.T) {
	t.Setenv("HOTSWAP_VERSION", "v7")
	t.Setenv("HOTSWAP_GENERATION", "3")
	fs := runFlags(t)
	if err := mergeSources(fs); err != nil {
		t.Fatalf("mergeSources: %v", err)
	}
}

func TestPrecedenceFlagEnvFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hotswap.yaml")
	if err := os.WriteFile(cfg, []byte("stop-signal: QUIT\ngrace: 7s\nmode: reuseport\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOTSWAP_GRACE", "9s")
	fs := runFlags(t, "--config", cfg, "--mode", "handoff")
	if err := mergeSources(fs); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{"stop-signal": "QUIT", "grace": "9s", "mode": "handoff"} {
		if got := fs.Lookup(flag).Value.String(); got != want {
			t.Errorf("--%s = %q, want %q", flag, got, want)
		}
	}
}

func TestBadConfigNamesKeyAndValue(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown key": {"graec: 5s\n", "unknown key(s) graec"},
		"bad value":   {"grace: soon\n", `config file key grace: value "soon" is not a valid duration`},
		"not yaml":    {"grace: [\n", "not valid YAML"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
			if err := os.WriteFile(cfg, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			err := mergeSources(runFlags(t, "--config", cfg))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
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
