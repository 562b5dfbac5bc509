package hotswap

import (
	"fmt"
	"slices"
	"strings"
)

// A release's environment (Release.Env, a manifest's env:) may change how
// the server behaves, never which code runs or which sockets it trusts: that
// is what --release-root and the sha256 pin decide (docs/security.md).

// loaderEnv are the variables the C libraries' dynamic loaders and start-up
// code read to load code or data from a path: glibc's secure-execution list
// (sysdeps/generic/unsecvars.h: UNSECURE_ENVVARS and GLIBC_TUNABLES) and
// musl's (LD_PRELOAD, LD_LIBRARY_PATH, MUSL_LOCPATH; musl ignores them for
// setuid programs). Every LD_* name is refused besides (see EnvRefusal).
var loaderEnv = []string{
	"GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES",
	"LOCALDOMAIN", "LOCPATH", "MALLOC_TRACE", "NIS_PATH", "NLSPATH",
	"RESOLV_HOST_CONF", "RES_OPTIONS", "TMPDIR", "TZDIR",
	"MUSL_LOCPATH",
}

// hotswapEnv are the variables hotswap sets for each generation (or its
// preflight, or the exec shim). They are never taken from hotswap's own
// environment, and a release may not set them.
var hotswapEnv = []string{"NOTIFY_SOCKET"}

// IsHotswapEnv reports whether name is hotswap's to set for a generation:
// NOTIFY_SOCKET, every LISTEN_* (systemd's socket activation) and every
// HOTSWAP_* name. A generation never inherits these from hotswap's own
// environment (they describe hotswap's supervisor, if any, or configure
// hotswap itself), and a release may not set them.
func IsHotswapEnv(name string) bool {
	return slices.Contains(hotswapEnv, name) || strings.HasPrefix(name, "LISTEN_") || strings.HasPrefix(name, "HOTSWAP_")
}

// EnvRefusal says why a release may not set the variable name (hotswap's
// own, or read by the dynamic loader or the C library), or "" if it may.
func EnvRefusal(name string) string {
	switch {
	case IsHotswapEnv(name):
		return "set by hotswap for each generation (NOTIFY_SOCKET, LISTEN_*, HOTSWAP_*); remove it"
	case strings.HasPrefix(name, "LD_") || slices.Contains(loaderEnv, name):
		return "read by the dynamic loader or the C library to load code or data from a path, which would bypass --release-root and the sha256 pin; build it into the binary or the image instead"
	}
	return ""
}

// CheckReleaseEnv refuses an environment a release may not set (see
// EnvRefusal) or that names a variable twice; entries are "NAME=value".
// Sources check manifests with it, and the verifier checks every release
// that is not the command line's.
func CheckReleaseEnv(env []string) error {
	seen := map[string]bool{}
	for _, kv := range env {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return fmt.Errorf("env %q: want NAME=value", clipName(kv))
		}
		if why := EnvRefusal(name); why != "" {
			return fmt.Errorf("env %s: %s", clipName(name), why)
		}
		if seen[name] {
			return fmt.Errorf("env %s: given twice", clipName(name))
		}
		seen[name] = true
	}
	return nil
}

// GenerationEnv is the environment a release runs with, before hotswap adds
// its own per-generation variables: base (hotswap's environment, or
// Config.Env) without the names hotswap sets (IsHotswapEnv), then the
// release's Env. The release wins: a name in both keeps the release's value,
// once, in base's position; the release's other names follow in order. Each
// name appears once, so the server's getenv and the C library's agree
// (with two entries, glibc returns the first, other code the last).
func GenerationEnv(base []string, r Release) []string {
	over := map[string]string{}
	for _, kv := range r.Env {
		k, v, _ := strings.Cut(kv, "=")
		over[k] = v
	}
	out := make([]string, 0, len(base)+len(r.Env))
	done := map[string]bool{}
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if IsHotswapEnv(k) || done[k] {
			continue
		}
		done[k] = true
		if v, ok := over[k]; ok {
			kv = k + "=" + v
		}
		out = append(out, kv)
	}
	for _, kv := range r.Env {
		k, _, _ := strings.Cut(kv, "=")
		if !done[k] {
			done[k] = true
			out = append(out, k+"="+over[k])
		}
	}
	return out
}

// PreflightEnv is the environment of r's preflight: the one its generation
// gets (GenerationEnv), with HOTSWAP_PREFLIGHT=1 and HOTSWAP_VERSION instead
// of a generation's sockets, so a preflight can never reach hotswap's own
// supervisor or a generation's handoff socket.
func PreflightEnv(base []string, r Release) []string {
	return append(GenerationEnv(base, r), "HOTSWAP_PREFLIGHT=1", "HOTSWAP_VERSION="+r.Version)
}
