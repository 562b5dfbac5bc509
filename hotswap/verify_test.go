package hotswap

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// copyBin copies src into dir/name with mode and returns its path and sha256.
func copyBin(t *testing.T, src, dir, name string, mode os.FileMode) (string, string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return p, hex.EncodeToString(sum[:])
}

// nativeBin is a real ELF binary of this machine.
func nativeBin(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/true", "/usr/bin/true"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("no /bin/true to copy as a native ELF binary")
	return ""
}

// foreignBin writes a copy of a native binary whose ELF header names
// another machine (arm64, or amd64 on arm64): a real, complete ELF file the
// verifier must refuse, made without running a cross build.
func foreignBin(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(nativeBin(t))
	if err != nil {
		t.Fatal(err)
	}
	m := elf.EM_AARCH64
	if runtime.GOARCH == "arm64" {
		m = elf.EM_X86_64
	}
	if len(b) < 20 || b[elf.EI_DATA] != byte(elf.ELFDATA2LSB) {
		t.Skip("native binary is not little-endian ELF")
	}
	binary.LittleEndian.PutUint16(b[18:20], uint16(m)) // e_machine
	p := filepath.Join(t.TempDir(), "server-foreign")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyRejects(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	native := nativeBin(t)
	good, goodSum := copyBin(t, native, root, "good", 0o755)
	nonexec, _ := copyBin(t, native, root, "nonexec", 0o644)
	worldw, _ := copyBin(t, native, root, "worldw", 0o757)
	groupw, _ := copyBin(t, native, root, "groupw", 0o775)
	arm, _ := copyBin(t, foreignBin(t), root, "foreign", 0o755)
	escapee, _ := copyBin(t, native, outside, "escapee", 0o755)
	escape := filepath.Join(root, "escape")
	if err := os.Symlink(escapee, escape); err != nil {
		t.Fatal(err)
	}
	dotdot := filepath.Join(root, "dotdot")
	if err := os.Symlink("../"+filepath.Base(outside)+"/escapee", dotdot); err != nil {
		t.Fatal(err)
	}
	inside := filepath.Join(root, "current")
	if err := os.Symlink("good", inside); err != nil {
		t.Fatal(err)
	}
	full, _ := os.ReadFile(native)
	truncated := filepath.Join(root, "truncated")
	if err := os.WriteFile(truncated, full[:len(full)/2], 0o755); err != nil {
		t.Fatal(err)
	}
	header := filepath.Join(root, "header")
	if err := os.WriteFile(header, full[:64], 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}

	v, err := NewVerifier(VerifyOptions{Root: root, TrustedSource: "command line"})
	if err != nil {
		t.Fatal(err)
	}
	vReq, err := NewVerifier(VerifyOptions{Root: root, RequireSHA256: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		v     *Verifier
		rel   Release
		check string // "" = accepted
		want  string // in the reason
	}{
		{"good", v, Release{Path: good}, "", ""},
		{"good pinned", v, Release{Path: good, SHA256: strings.ToUpper(goodSum)}, "", ""},
		{"symlink inside root", v, Release{Path: inside}, "", ""},
		{"missing", v, Release{Path: filepath.Join(root, "nope")}, "exists", "no such file"},
		{"directory", v, Release{Path: filepath.Join(root, "dir")}, "regular", "not a regular file"},
		{"not executable", v, Release{Path: nonexec}, "executable", "chmod +x"},
		{"world-writable", v, Release{Path: worldw}, "writable", "chmod go-w"},
		{"group-writable", v, Release{Path: groupw}, "writable", "0775"},
		{"symlink escaping root", v, Release{Path: escape}, "root", "outside the release root"},
		{"relative symlink escaping root", v, Release{Path: dotdot}, "root", "outside the release root"},
		{"wrong architecture", v, Release{Path: arm}, "elf", "build it with GOARCH=" + runtime.GOARCH},
		{"truncated mid-copy", v, Release{Path: truncated}, "elf", "truncated"},
		{"only a header", v, Release{Path: header}, "elf", ""},
		{"script", v, Release{Path: script}, "elf", "script"},
		{"sha256 mismatch", v, Release{Path: good, SHA256: strings.Repeat("ab", 32)}, "sha256", "pins " + strings.Repeat("ab", 32)},
		{"sha256 required", vReq, Release{Path: good}, "sha256", "--require-sha256"},
		{"sha256 required and given", vReq, Release{Path: good, SHA256: goodSum}, "", ""},
		// The command line's own binary came with the image: only what the
		// kernel checks, so a script entrypoint can still be restarted.
		{"trusted script", v, Release{Path: script, Source: "command line"}, "", ""},
		{"trusted outside root", v, Release{Path: escapee, Source: "command line"}, "", ""},
		{"trusted not executable", v, Release{Path: nonexec, Source: "command line"}, "executable", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.v.Verify(context.Background(), tc.rel)
			if tc.check == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			var re *RejectError
			if !errors.As(err, &re) || !errors.Is(err, ErrRejected) {
				t.Fatalf("want a RejectError, got %v", err)
			}
			if re.Check != tc.check || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want check %s with %q, got %s: %v", tc.check, tc.want, re.Check, err)
			}
			t.Logf("reason: %v", err)
		})
	}
}

func TestNewVerifierRoot(t *testing.T) {
	if _, err := NewVerifier(VerifyOptions{Root: "releases"}); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("relative root: %v", err)
	}
	if _, err := NewVerifier(VerifyOptions{Root: "/nonexistent/releases"}); err == nil || !strings.Contains(err.Error(), "--release-root") {
		t.Fatalf("missing root: %v", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	_ = os.WriteFile(f, nil, 0o644)
	if _, err := NewVerifier(VerifyOptions{Root: f}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("file root: %v", err)
	}
}

// TestVerifyPreflight runs real preflight commands through a real reaper.
func TestVerifyPreflight(t *testing.T) {
	reaper := reaper(t) // the package's one reaper (engine_test.go)
	dir := t.TempDir()
	find := func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Fatalf("need %s: %v", name, err)
		}
		real, _ := filepath.EvalSymlinks(p)
		return real
	}
	trueBin, _ := copyBin(t, find("true"), dir, "true", 0o755)
	falseBin, _ := copyBin(t, find("false"), dir, "false", 0o755)
	sleepBin, _ := copyBin(t, find("sleep"), dir, "sleep", 0o755)
	lsBin, _ := copyBin(t, find("ls"), dir, "ls", 0o755)

	v, err := NewVerifier(VerifyOptions{Preflight: []string{"--version"}, PreflightTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	v.SetStarter(reaper)
	for _, tc := range []struct {
		name string
		rel  Release
		want string // "" = accepted
	}{
		{"default preflight passes", Release{Path: trueBin}, ""},
		{"release preflight overrides", Release{Path: sleepBin, Preflight: []string{"0.01"}}, ""},
		{"exit status", Release{Path: falseBin}, "exit status 1"},
		{"output in reason", Release{Path: lsBin, Preflight: []string{"--no-such-option"}}, "no-such-option"},
		{"timeout", Release{Path: sleepBin, Preflight: []string{"30"}}, "did not finish within --preflight-timeout 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := v.Verify(context.Background(), tc.rel)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want rejection with %q, got %v", tc.want, err)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("preflight took %s", time.Since(start))
			}
			t.Logf("reason: %v", err)
		})
	}
	if n := reaper.Live(); n != 0 {
		t.Fatalf("%d preflight processes left unreaped", n)
	}
	noStarter, _ := NewVerifier(VerifyOptions{Preflight: []string{"x"}})
	if err := noStarter.Verify(context.Background(), Release{Path: trueBin}); err == nil {
		t.Fatal("preflight without a starter passed")
	}
}
