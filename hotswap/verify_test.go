package hotswap

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
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

	v, err := NewVerifier(VerifyOptions{Preflight: []string{"--version"}, PreflightTimeout: time.Second}) // generous: a loaded CI machine
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
		{"timeout", Release{Path: sleepBin, Preflight: []string{"30"}}, "did not finish within --preflight-timeout 1s"},
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

var (
	loaderBinMu sync.Mutex
	loaderBins  = map[string]string{}
)

// loaderBin builds a tiny dynamically linked (PIE) Go program whose ELF
// headers name interp as its interpreter and runpath as its DT_RUNPATH: a
// binary that asks the dynamic loader to run code from elsewhere.
func loaderBin(t *testing.T, interp, runpath string) string {
	t.Helper()
	key := interp + "\x00" + runpath
	loaderBinMu.Lock()
	p, ok := loaderBins[key]
	loaderBinMu.Unlock()
	if ok {
		return p
	}
	dir, err := os.MkdirTemp("", "hotswap-loader-")
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "main.go")
	_ = os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o644)
	out := filepath.Join(dir, "server")
	ld := "-I " + interp
	if runpath != "" {
		ld += " -r " + runpath
	}
	// Through the package's one reaper: os/exec would race it for the
	// exit status (it reaps every child of this process).
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("need go to build a test binary: %v", err)
	}
	logf, err := os.Create(filepath.Join(dir, "build.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	proc, err := reaper(t).Start(entrypoint.Spec{
		Path:  gobin,
		Argv:  []string{"go", "build", "-buildmode=pie", "-ldflags=" + ld, "-o", out, src},
		Env:   append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GO111MODULE=off"),
		Dir:   dir,
		Files: []*os.File{nil, logf, logf},
	})
	if err != nil {
		t.Fatal(err)
	}
	<-proc.Done()
	if st := proc.Status(); st.Code() != 0 {
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("build a binary with interpreter %s: %s\n%s", interp, st, b)
	}
	loaderBinMu.Lock()
	loaderBins[key] = out
	loaderBinMu.Unlock()
	return out
}

// systemInterp is this machine's dynamic loader, from /bin/true.
func systemInterp(t *testing.T) string {
	t.Helper()
	ef, err := elf.Open(nativeBin(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			b, _ := io.ReadAll(p.Open())
			return strings.TrimRight(string(b), "\x00")
		}
	}
	t.Skip("/bin/true is static: no system dynamic loader to copy")
	return ""
}

// TestVerifyWhoCanWrite: a release someone other than root and hotswap's
// user could change — the file, by owning it, or a directory on its path —
// is refused, not only a file whose mode bits say group- or world-writable.
func TestVerifyWhoCanWrite(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown files to another user")
	}
	top := t.TempDir()
	native := nativeBin(t)
	v, err := NewVerifier(VerifyOptions{Root: top})
	if err != nil {
		t.Fatal(err)
	}
	mkdir := func(name string, mode os.FileMode, uid int) string {
		d := filepath.Join(top, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, 0); err != nil {
			t.Fatal(err)
		}
		return d
	}
	foreignFile, sum := copyBin(t, native, mkdir("ok", 0o755, 0), "foreign-owner", 0o755)
	if err := os.Chown(foreignFile, 4242, 0); err != nil {
		t.Fatal(err)
	}
	ownFile, _ := copyBin(t, native, mkdir("ok", 0o755, 0), "own", 0o755)
	groupDir, _ := copyBin(t, native, mkdir("groupw", 0o775, 0), "server", 0o755)
	worldDir, _ := copyBin(t, native, mkdir("worldw/v1", 0o755, 0), "server", 0o755)
	_ = mkdir("worldw", 0o777, 0) // a directory above the release's
	otherDir, _ := copyBin(t, native, mkdir("other", 0o755, 4242), "server", 0o755)
	sticky, _ := copyBin(t, native, mkdir("sticky", os.ModeSticky|0o777, 0), "server", 0o755)
	// A symlink whose directory anyone may write: the link can be flipped.
	linkDir := mkdir("links", 0o777, 0)
	link := filepath.Join(linkDir, "current")
	if err := os.Symlink(ownFile, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, sha256, want string // want "" = accepted
	}{
		{"owned by root, 0755", ownFile, "", ""},
		{"owned by another user", foreignFile, "", "owned by uid 4242"},
		// Its owner could rewrite the very inode after it was hashed.
		{"pinned, owned by another user", foreignFile, sum, "owned by uid 4242"},
		{"in a group-writable directory", groupDir, "", "groupw on its path is group-writable"},
		{"below a world-writable directory", worldDir, "", "worldw on its path is world-writable"},
		{"in a directory another user owns", otherDir, "", "other on its path is owned by uid 4242"},
		{"in a sticky directory (like /tmp)", sticky, "", ""},
		{"through a symlink in a world-writable directory", link, "", "links on its path is world-writable"},
		// A file put there by someone else would fail the pin, and the open
		// file is what runs: an emptyDir (0777) holds pinned releases.
		{"pinned, below a world-writable directory", worldDir, sum, ""},
		{"pinned, through a symlink in a world-writable directory", link, sum, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Verify(context.Background(), Release{Path: tc.path, SHA256: tc.sha256})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			var re *RejectError
			if !errors.As(err, &re) || re.Check != "writable" || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want a writable rejection with %q, got %v", tc.want, err)
			}
			t.Logf("reason: %v", err)
		})
	}
}

// TestVerifyLoader: an interpreter or a library search path that anyone
// could write loads code the pin never covered; refused unless trusted.
func TestVerifyLoader(t *testing.T) {
	root := t.TempDir()
	// Short, so the interpreter path fits wherever Go's linker puts it.
	open, err := os.MkdirTemp("", "hswld")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(open) })
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	sys := systemInterp(t)
	planted, _ := copyBin(t, sys, open, "ld.so", 0o755)
	if err := os.Chmod(planted, 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifyOptions{Root: root, TrustedSource: "command line"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, interp, runpath string
		source                string
		want                  string // "" = accepted
	}{
		{"system loader", sys, "", "", ""},
		{"system loader, runpath under $ORIGIN", sys, "$ORIGIN/lib:/usr/lib", "", ""},
		{"interpreter in a world-writable directory", planted, "", "", "is world-writable"},
		{"missing interpreter", "/nonexistent/ld.so", "", "", "CGO_ENABLED=0"},
		{"runpath anyone can write", sys, "/usr/lib:" + open, "", "is world-writable"},
		{"relative runpath", sys, "lib", "", "relative entry"},
		{"empty runpath entry", sys, "/usr/lib::/lib", "", "empty entry"},
		{"runpath token", sys, "/usr/$LIB", "", "$LIB"},
		{"trusted release is not checked", planted, open, "command line", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each builds a binary
			bin, _ := copyBin(t, loaderBin(t, tc.interp, tc.runpath), root, strings.ReplaceAll(tc.name, " ", "-"), 0o755)
			err := v.Verify(context.Background(), Release{Path: bin, Source: tc.source})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			var re *RejectError
			if !errors.As(err, &re) || re.Check != "loader" || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want a loader rejection with %q, got %v", tc.want, err)
			}
			t.Logf("reason: %v", err)
		})
	}
}

// TestVerifyEnv: a release's environment may not load code or reach
// hotswap's sockets.
func TestVerifyEnv(t *testing.T) {
	root := t.TempDir()
	good, _ := copyBin(t, nativeBin(t), root, "server", 0o755)
	v, err := NewVerifier(VerifyOptions{Root: root, TrustedSource: "command line"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"GOMAXPROCS=2", "LOG=debug"}, ""},
		{[]string{"LD_PRELOAD=/tmp/evil.so"}, "dynamic loader"},
		{[]string{"LD_ANYTHING_NEW=1"}, "dynamic loader"},
		{[]string{"GCONV_PATH=/tmp"}, "dynamic loader"},
		{[]string{"GLIBC_TUNABLES=x"}, "dynamic loader"},
		{[]string{"HOTSWAP_HANDOFF_SOCKET=/tmp/x.sock"}, "set by hotswap"},
		{[]string{"LISTEN_FDS=3"}, "set by hotswap"},
		{[]string{"NOTIFY_SOCKET=/tmp/n.sock"}, "set by hotswap"},
		{[]string{"A=1", "A=2"}, "given twice"},
	} {
		err := v.Verify(context.Background(), Release{Path: good, Env: tc.env})
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: rejected: %v", tc.env, err)
			}
			continue
		}
		var re *RejectError
		if !errors.As(err, &re) || re.Check != "env" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: want an env rejection with %q, got %v", tc.env, tc.want, err)
		}
	}
	// The command line's own environment is the operator's.
	if err := v.Verify(context.Background(), Release{Path: good, Source: "command line", Env: []string{"LD_LIBRARY_PATH=/opt/lib"}}); err != nil {
		t.Errorf("trusted release with LD_LIBRARY_PATH: %v", err)
	}
}

// TestVerifyPinnedInode: once a binary is open, replacing the file at its
// path (mv over it, as a publisher or an attacker would) changes neither
// what the sha256 check reads nor what the preflight runs.
func TestVerifyPinnedInode(t *testing.T) {
	reaper := reaper(t)
	root := t.TempDir()
	find := func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Fatalf("need %s: %v", name, err)
		}
		real, _ := filepath.EvalSymlinks(p)
		return real
	}
	path, trueSum := copyBin(t, find("true"), root, "server", 0o755)
	impostor, _ := copyBin(t, find("false"), root, ".impostor", 0o755)
	v, err := NewVerifier(VerifyOptions{Root: root, Preflight: []string{"--preflight"}})
	if err != nil {
		t.Fatal(err)
	}
	v.SetStarter(reaper)
	b, err := OpenBinary(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := os.Rename(impostor, path); err != nil {
		t.Fatal(err)
	}
	// By path, the release is now `false`: its pin and its preflight fail.
	if err := v.Verify(context.Background(), Release{Path: path, SHA256: trueSum}); err == nil {
		t.Fatal("the impostor at the path passed verification")
	}
	// The open binary is still `true`.
	if err := v.VerifyBinary(context.Background(), Release{Path: path, SHA256: trueSum}, b); err != nil {
		t.Fatalf("the pinned binary was not what was checked and run: %v", err)
	}
}

// TestGenerationEnv: a release's env wins over hotswap's environment, each
// name once; hotswap's own variables never come from its environment.
func TestGenerationEnv(t *testing.T) {
	base := []string{"PATH=/bin", "LOG=info", "NOTIFY_SOCKET=/run/systemd/notify", "LISTEN_FDS=2", "HOTSWAP_HANDOFF_SOCKET=/x", "HOME=/root", "LOG=dup"}
	got := GenerationEnv(base, Release{Env: []string{"LOG=debug", "NEW=1"}})
	want := []string{"PATH=/bin", "LOG=debug", "HOME=/root", "NEW=1"}
	if !slices.Equal(got, want) {
		t.Fatalf("GenerationEnv = %q, want %q", got, want)
	}
	pre := PreflightEnv(base, Release{Version: "v2"})
	for _, kv := range pre {
		if strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "LISTEN_") || strings.HasPrefix(kv, "HOTSWAP_HANDOFF") {
			t.Fatalf("preflight environment leaks %s: %q", kv, pre)
		}
	}
	if !slices.Contains(pre, "HOTSWAP_PREFLIGHT=1") || !slices.Contains(pre, "HOTSWAP_VERSION=v2") {
		t.Fatalf("preflight environment %q lacks HOTSWAP_PREFLIGHT and HOTSWAP_VERSION", pre)
	}
}

// TestPreflightEnv (issue 13, items 9 and 14): the preflight gets the
// environment its generation would get — never hotswap's own NOTIFY_SOCKET,
// LISTEN_* or HOTSWAP_* — with the release's value winning over the pod's.
func TestPreflightEnv(t *testing.T) {
	root := t.TempDir()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	sh, _ = filepath.EvalSymlinks(sh)
	bin, _ := copyBin(t, sh, root, "server", 0o755)
	v, err := NewVerifier(VerifyOptions{Root: root, Env: []string{
		"PATH=/usr/bin:/bin", "LOG=pod", "NOTIFY_SOCKET=/run/systemd/notify", "LISTEN_FDS=1",
		"HOTSWAP_HANDOFF_SOCKET=/run/hotswap/handoff-1.sock", "HOTSWAP_GENERATION=7",
	}})
	if err != nil {
		t.Fatal(err)
	}
	v.SetStarter(reaper(t))
	script := `test -z "$NOTIFY_SOCKET$LISTEN_FDS$HOTSWAP_HANDOFF_SOCKET$HOTSWAP_GENERATION" || { echo "inherited: $NOTIFY_SOCKET $LISTEN_FDS $HOTSWAP_HANDOFF_SOCKET $HOTSWAP_GENERATION"; exit 1; }
test "$LOG" = release || { echo "LOG=$LOG, want the release's"; exit 1; }
test "$HOTSWAP_PREFLIGHT" = 1 || { echo "no HOTSWAP_PREFLIGHT"; exit 1; }
test "$(env | grep -c '^LOG=')" = 1 || { echo "LOG given twice"; exit 1; }`
	err = v.Verify(context.Background(), Release{Path: bin, Env: []string{"LOG=release"}, Preflight: []string{"-c", script}})
	if err != nil {
		t.Fatal(err)
	}
}
