package source

import (
	"errors"
	"slices"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"

	"github.com/hotswap-dev/hotswap/hotswap"
)

const goodSum = "3f1c0e2a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e"

func TestParseManifest(t *testing.T) {
	m, err := ParseManifest([]byte(`
# a release
version: v1.5
binary: /releases/v1.5/server
sha256: ` + strings.ToUpper(goodSum) + `
args: [--port, 8080, "--debug"]
env:
  LOG_LEVEL: debug
  A: "1"
preflight: --version --quiet
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Manifest{
		Version: "v1.5", Binary: "/releases/v1.5/server", SHA256: goodSum,
		Args: []string{"--port", "8080", "--debug"}, Env: []string{"A=1", "LOG_LEVEL=debug"},
		Preflight: []string{"--version", "--quiet"},
	}
	if !manifestEqual(m, want) {
		t.Fatalf("got %+v\nwant %+v", m, want)
	}
	// Numbers as versions keep their spelling.
	m, err = ParseManifest([]byte("version: 1.10\nbinary: bin/server\npreflight: [--version]\nargs: []\n"))
	if err != nil || m.Version != "1.10" || m.Args == nil || len(m.Args) != 0 || !slices.Equal(m.Preflight, []string{"--version"}) {
		t.Fatalf("got %+v, %v", m, err)
	}
}

func TestParseManifestRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "empty"},
		{"comment only", "# nothing\n", "empty"},
		{"garbage", "\x00\x01\x02 :: ][", "not valid YAML"},
		{"not a mapping", "- a\n- b\n", "must be a mapping"},
		{"scalar", "hello", "must be a mapping"},
		{"unknown field", "version: v1\nbinary: /b\nimage: nginx\n", `line 3: image: unknown field; the fields are version, binary, sha256, args, env, preflight`},
		{"typo", "version: v1\nbinray: /b\n", "binray: unknown field"},
		{"missing version", "binary: /b\n", "version: missing"},
		{"missing binary", "version: v1\n", "binary: missing"},
		{"duplicate", "version: v1\nversion: v2\nbinary: /b\n", "version"},
		{"version list", "version: [v1]\nbinary: /b\n", "version: must be a string, not a list"},
		{"version null", "version:\nbinary: /b\n", "version: must be a string, not empty (null)"},
		{"version bool", "version: true\nbinary: /b\n", "not a boolean"},
		{"version blank", "version: v 1\nbinary: /b\n", "without blanks"},
		{"version long", "version: " + strings.Repeat("v", 200) + "\nbinary: /b\n", "1 to 128"},
		{"binary empty", "version: v1\nbinary: \"\"\n", "binary: want a path"},
		{"sha short", "version: v1\nbinary: /b\nsha256: abc\n", `sha256: "abc" is not 64 hex digits`},
		{"sha not hex", "version: v1\nbinary: /b\nsha256: " + strings.Repeat("g", 64) + "\n", "not 64 hex digits"},
		{"args string", "version: v1\nbinary: /b\nargs: --port 80\n", "args: must be a list of strings"},
		{"args nested", "version: v1\nbinary: /b\nargs: [[a]]\n", "args[0]: must be a string, not a list"},
		{"args null item", "version: v1\nbinary: /b\nargs: [a, null]\n", "args[1]: must be a string"},
		{"env list", "version: v1\nbinary: /b\nenv: [A=1]\n", "env: must be a mapping"},
		{"env reserved", "version: v1\nbinary: /b\nenv: {LISTEN_FDS: \"3\"}\n", "env.LISTEN_FDS: set by hotswap"},
		// Issue 13 item 3: a manifest's env must not load code from outside
		// --release-root nor point a generation at another socket.
		{"env LD_PRELOAD", "version: v1\nbinary: /b\nenv: {LD_PRELOAD: /tmp/evil.so}\n", "line 3: env.LD_PRELOAD: read by the dynamic loader"},
		{"env any LD_", "version: v1\nbinary: /b\nenv: {LD_FUTURE_KNOB: x}\n", "env.LD_FUTURE_KNOB: read by the dynamic loader"},
		{"env GCONV_PATH", "version: v1\nbinary: /b\nenv: {GCONV_PATH: /tmp}\n", "env.GCONV_PATH: read by the dynamic loader"},
		{"env GLIBC_TUNABLES", "version: v1\nbinary: /b\nenv: {GLIBC_TUNABLES: x}\n", "env.GLIBC_TUNABLES: read by"},
		{"env handoff socket", "version: v1\nbinary: /b\nenv: {HOTSWAP_HANDOFF_SOCKET: /tmp/h.sock}\n", "env.HOTSWAP_HANDOFF_SOCKET: set by hotswap"},
		{"env any HOTSWAP_", "version: v1\nbinary: /b\nenv: {HOTSWAP_ANYTHING: x}\n", "env.HOTSWAP_ANYTHING: set by hotswap"},
		{"env NOTIFY_SOCKET", "version: v1\nbinary: /b\nenv: {NOTIFY_SOCKET: /run/n}\n", "env.NOTIFY_SOCKET: set by hotswap"},
		{"env any LISTEN_", "version: v1\nbinary: /b\nenv: {LISTEN_PIDFDID: \"1\"}\n", "env.LISTEN_PIDFDID: set by hotswap"},
		{"env bad name", "version: v1\nbinary: /b\nenv: {\"A=B\": x}\n", "not a valid variable name"},
		{"env value map", "version: v1\nbinary: /b\nenv: {A: {b: c}}\n", "env.A: must be a string"},
		{"alias", "v: &x v1\nversion: *x\nbinary: /b\n", "anchors and aliases"},
		{"anchor", "version: &x v1\nbinary: *x\n", "anchors and aliases"},
		{"custom tag", "version: !mytag v1\nbinary: /b\n", "custom tag"},
		{"two documents", "version: v1\nbinary: /b\n---\nversion: v2\nbinary: /c\n", "more than one YAML document"},
		{"too big", "version: v1\nbinary: /b\n#" + strings.Repeat("x", MaxManifestSize), "at most"},
		{"merge key", "<<: {version: v1}\nbinary: /b\n", "no merge keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tc.in))
			if err == nil || !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error with %q, got %v", tc.want, err)
			}
		})
	}
}

func TestManifestRelease(t *testing.T) {
	base := hotswap.Release{Path: "/app/server", Args: []string{"--port", "80"}, Env: []string{"X=1"}}
	m, _ := ParseManifest([]byte("version: v2\nbinary: v2/server\n"))
	if _, err := m.Release(base, "", "manifest:x"); err == nil || !strings.Contains(err.Error(), "--release-root") {
		t.Fatalf("relative binary without root: %v", err)
	}
	r, err := m.Release(base, "/releases", "manifest:x")
	if err != nil {
		t.Fatal(err)
	}
	if r.Path != "/releases/v2/server" || !slices.Equal(r.Args, base.Args) || !slices.Equal(r.Env, base.Env) || r.Version != "v2" || r.Source != "manifest:x" {
		t.Fatalf("got %+v", r)
	}
	m, _ = ParseManifest([]byte("version: v2\nbinary: /r/../r/server\nargs: []\nenv: {Y: \"2\"}\n"))
	r, _ = m.Release(base, "", "s")
	if r.Path != "/r/server" || len(r.Args) != 0 || !slices.Equal(r.Env, []string{"Y=2"}) {
		t.Fatalf("got %+v", r)
	}
}

func manifestEqual(a, b Manifest) bool {
	return a.Version == b.Version && a.Binary == b.Binary && a.SHA256 == b.SHA256 &&
		slices.Equal(a.Args, b.Args) && (a.Args == nil) == (b.Args == nil) &&
		slices.Equal(a.Env, b.Env) && slices.Equal(a.Preflight, b.Preflight)
}

// FuzzParseManifest: the parser never panics, whatever it accepts is valid,
// and an accepted manifest written back as YAML reads the same.
func FuzzParseManifest(f *testing.F) {
	for _, s := range []string{
		"version: v1.5\nbinary: /releases/v1.5/server\n",
		"version: v1\nbinary: /b\nsha256: " + goodSum + "\nargs: [a, 1, \"b c\"]\nenv: {A: x, B: \"2\"}\npreflight: --version\n",
		"version: 1.10\nbinary: rel/server\nargs: []\npreflight: [--version, -q]\n",
		"{version: v, binary: /x}",
		"version: v1\nbinary: /b\nimage: x\n",
		"version: &a v1\nbinary: *a\n",
		"- a\n- b\n",
		"version: v1\nbinary: /b\n---\n",
		"",
		"\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrManifest) {
				t.Fatalf("error does not wrap ErrManifest: %v", err)
			}
			return
		}
		if m.Version == "" || m.Binary == "" || (m.SHA256 != "" && len(m.SHA256) != 64) {
			t.Fatalf("accepted an invalid manifest: %+v", m)
		}
		out := map[string]any{"version": m.Version, "binary": m.Binary}
		if m.SHA256 != "" {
			out["sha256"] = m.SHA256
		}
		if m.Args != nil {
			out["args"] = m.Args
		}
		if m.Env != nil {
			env := map[string]string{}
			for _, kv := range m.Env {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			out["env"] = env
		}
		if m.Preflight != nil {
			out["preflight"] = m.Preflight
		}
		b, err := yaml.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseManifest(b)
		if err != nil {
			t.Fatalf("re-reading %q: %v", b, err)
		}
		if !manifestEqual(m, m2) {
			t.Fatalf("round trip changed it:\n%+v\n%+v\n%s", m, m2, b)
		}
	})
}
