package hotswap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
)

// ErrRejected is wrapped by every refusal of Verifier.Verify, so callers can
// tell a bad release (errors.Is(err, ErrRejected)) from a broken verifier.
var ErrRejected = errors.New("release rejected")

// RejectError says which check refused a release and why, in words an
// operator can act on. It is what `hotswap status` shows as the reason.
type RejectError struct {
	// Check is the check that failed: "exists", "regular", "executable",
	// "elf", "writable", "root", "sha256" or "preflight".
	Check string
	// Path is the file the check looked at (symlinks resolved when known).
	Path string
	// Reason says what is wrong and what to do about it.
	Reason string
	// Err is the underlying error, if any.
	Err error
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("verify %s: %s: %s", e.Path, e.Check, e.Reason)
}

// Unwrap returns ErrRejected and the underlying error.
func (e *RejectError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrRejected}
	}
	return []error{ErrRejected, e.Err}
}

// ProcessStarter starts a child through the one reaper; *entrypoint.Reaper
// is one. The verifier never waits for a process itself.
type ProcessStarter interface {
	Start(entrypoint.Spec) (*entrypoint.Process, error)
}

// VerifyOptions configure a Verifier (the --release-root, --require-sha256,
// --preflight and --preflight-timeout flags).
type VerifyOptions struct {
	// Root is the directory every release must resolve into (symlinks
	// resolved on both sides). Empty: no root check.
	Root string
	// RequireSHA256 refuses a release that does not pin its content.
	RequireSHA256 bool
	// Preflight is run as `BINARY Preflight...` when the release names no
	// preflight of its own. Empty: no preflight unless the release has one.
	Preflight []string
	// PreflightTimeout bounds the preflight (default 10s); its process group
	// is killed when it runs out.
	PreflightTimeout time.Duration
	// TrustedSource is the Release.Source of the command line's release
	// (cmd/hotswap uses "command line"). A forced swap that restarts it gets
	// only the checks the kernel would make anyway (exists, regular,
	// executable) plus its pin, if any: it came with the image, may be a
	// script, and need not live under Root.
	TrustedSource string
	// Env is the environment a preflight starts from (default os.Environ());
	// the release's Env is added to it.
	Env []string
}

// Verifier checks releases before anything starts. It is safe for
// concurrent use; set the starter with SetStarter before the first preflight.
type Verifier struct {
	opts    VerifyOptions
	root    string // Root with symlinks resolved, "" when unset
	starter ProcessStarter
}

// NewVerifier checks opts and returns a Verifier. A Root that does not exist
// is an error: every release would be refused.
func NewVerifier(opts VerifyOptions) (*Verifier, error) {
	if opts.PreflightTimeout <= 0 {
		opts.PreflightTimeout = 10 * time.Second
	}
	v := &Verifier{opts: opts}
	if opts.Root != "" {
		if !filepath.IsAbs(opts.Root) {
			return nil, fmt.Errorf("release root %q: must be an absolute path, e.g. /releases", opts.Root)
		}
		real, err := filepath.EvalSymlinks(opts.Root)
		if err != nil {
			return nil, fmt.Errorf("release root %s: %w (create or mount it, or leave --release-root empty)", opts.Root, err)
		}
		fi, err := os.Stat(real)
		if err != nil {
			return nil, fmt.Errorf("release root %s: %w", opts.Root, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("release root %s: not a directory", opts.Root)
		}
		v.root = real
	}
	return v, nil
}

// SetStarter gives the verifier the process starter (the engine's reaper,
// see Engine.Reaper) used to run preflights.
func (v *Verifier) SetStarter(s ProcessStarter) { v.starter = s }

// Verify runs every check on r and returns nil or an error wrapping
// ErrRejected (a *RejectError) that says why. It is a VerifyFunc.
func (v *Verifier) Verify(ctx context.Context, r Release) error {
	trusted := v.opts.TrustedSource != "" && r.Source == v.opts.TrustedSource
	reject := func(check, path, reason string, err error) error {
		return &RejectError{Check: check, Path: path, Reason: reason, Err: err}
	}
	if r.Path == "" {
		return reject("exists", "(no path)", "the release names no binary", nil)
	}
	real, err := filepath.EvalSymlinks(r.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return reject("exists", r.Path, "no such file (or a symlink on the way points nowhere); is the volume mounted and the copy finished?", err)
		}
		return reject("exists", r.Path, err.Error(), err)
	}
	f, err := os.Open(real)
	if err != nil {
		return reject("exists", real, err.Error(), err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return reject("exists", real, err.Error(), err)
	}
	if !fi.Mode().IsRegular() {
		return reject("regular", real, fmt.Sprintf("not a regular file (%s)", fi.Mode().Type()), nil)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return reject("executable", real, fmt.Sprintf("not executable (mode %04o); chmod +x it before it is published", fi.Mode().Perm()), nil)
	}
	if !trusted {
		if fi.Mode().Perm()&0o022 != 0 {
			return reject("writable", real, fmt.Sprintf("group- or world-writable (mode %04o): anyone could change it between verification and start; chmod go-w it", fi.Mode().Perm()), nil)
		}
		if v.root != "" && !within(v.root, real) {
			return reject("root", real, fmt.Sprintf("resolves outside the release root %s (from %s); publish releases under the root, and make symlinks point inside it", v.root, r.Path), nil)
		}
		if err := checkELF(f, fi.Size()); err != nil {
			return reject("elf", real, err.Error(), err)
		}
	}
	want := strings.ToLower(r.SHA256)
	if want == "" && v.opts.RequireSHA256 && !trusted {
		return reject("sha256", real, "the release pins no sha256 and --require-sha256 is set; add sha256: <hex> to the manifest", nil)
	}
	if want != "" {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return reject("sha256", real, err.Error(), err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return reject("sha256", real, "read: "+err.Error(), err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return reject("sha256", real, fmt.Sprintf("content is sha256 %s, the release pins %s (a different or unfinished file?)", got, want), nil)
		}
	}
	pre := r.Preflight
	if len(pre) == 0 && !trusted {
		pre = v.opts.Preflight
	}
	if len(pre) > 0 {
		if err := v.preflight(ctx, real, r, pre); err != nil {
			return reject("preflight", real, err.Error(), err)
		}
	}
	return nil
}

// within reports whether path is root or below it; both are resolved.
func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return false
	}
	return rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// elfMachines maps GOARCH to the ELF machine the kernel here can run.
var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"386":     elf.EM_386,
	"arm":     elf.EM_ARM,
	"riscv64": elf.EM_RISCV,
	"ppc64le": elf.EM_PPC64,
	"ppc64":   elf.EM_PPC64,
	"s390x":   elf.EM_S390,
	"loong64": elf.EM_LOONGARCH,
	"mips64":  elf.EM_MIPS,
}

// checkELF refuses anything that is not a complete executable ELF file for
// this machine: scripts, other architectures, and files cut short (a loaded
// segment past the end of the file is what a copy still in progress looks
// like).
func checkELF(f *os.File, size int64) error {
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || !bytes.Equal(magic[:], []byte(elf.ELFMAG)) {
		if bytes.HasPrefix(magic[:], []byte("#!")) {
			return errors.New("a script (#!), not an ELF binary; sources may only publish native binaries")
		}
		return fmt.Errorf("not an ELF binary (%d bytes; truncated or not a program)", size)
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return fmt.Errorf("damaged or truncated ELF file: %w", err)
	}
	defer ef.Close()
	want, ok := elfMachines[runtime.GOARCH]
	if ok && ef.Machine != want {
		return fmt.Errorf("built for %s, this machine runs %s (%s); build it with GOARCH=%s", machineName(ef.Machine), machineName(want), runtime.GOARCH, runtime.GOARCH)
	}
	wantClass := elf.ELFCLASS64
	if strings.HasSuffix(runtime.GOARCH, "386") || runtime.GOARCH == "arm" {
		wantClass = elf.ELFCLASS32
	}
	if ef.Class != wantClass {
		return fmt.Errorf("ELF class %s, this machine needs %s", ef.Class, wantClass)
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return fmt.Errorf("ELF type %s is not an executable", ef.Type)
	}
	loads := 0
	for _, p := range ef.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		loads++
		if end := p.Off + p.Filesz; end > uint64(size) || end < p.Off {
			return fmt.Errorf("truncated: a loadable segment ends at byte %d but the file has %d (copy still in progress?)", end, size)
		}
	}
	if loads == 0 {
		return errors.New("ELF file has no loadable segment; not a program")
	}
	return nil
}

func machineName(m elf.Machine) string {
	return strings.TrimPrefix(m.String(), "EM_")
}

// preflightOutputMax bounds what a preflight's output adds to a reason.
const preflightOutputMax = 2048

// preflight runs `path args...` through the reaper with the release's
// environment; it must exit 0 within the timeout. Its output is kept to
// explain a failure.
func (v *Verifier) preflight(ctx context.Context, path string, r Release, args []string) error {
	if v.starter == nil {
		return errors.New("no process starter for the preflight (hotswap bug: Verifier.SetStarter not called)")
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	defer pr.Close()
	env := v.opts.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(append([]string(nil), env...), r.Env...)
	env = append(env, "HOTSWAP_PREFLIGHT=1", "HOTSWAP_VERSION="+r.Version)
	p, err := v.starter.Start(entrypoint.Spec{
		Path:  path,
		Argv:  append([]string{path}, args...),
		Env:   env,
		Files: []*os.File{devnull, pw, pw},
	})
	pw.Close()
	if err != nil {
		return fmt.Errorf("cannot start `%s`: %w", preflightCmd(path, args), err)
	}
	out := make(chan []byte, 1)
	go func() {
		// Read to EOF so a chatty preflight never blocks on a full pipe;
		// keep only the head. EOF comes when every holder of the write end
		// (the preflight and anything it started) has gone.
		var buf bytes.Buffer
		_, _ = io.Copy(&limitWriter{w: &buf, n: preflightOutputMax}, pr)
		out <- buf.Bytes()
	}()
	timer := time.NewTimer(v.opts.PreflightTimeout)
	defer timer.Stop()
	select {
	case <-p.Done():
	case <-timer.C:
		_ = p.Kill()
		<-p.Done()
		return fmt.Errorf("`%s` did not finish within --preflight-timeout %s; killed", preflightCmd(path, args), v.opts.PreflightTimeout)
	case <-ctx.Done():
		_ = p.Kill()
		<-p.Done()
		return fmt.Errorf("`%s`: %w", preflightCmd(path, args), ctx.Err())
	}
	// The leader is gone; anything left in its group holds the pipe open.
	_ = p.Signal(syscall.SIGKILL)
	var output []byte
	select {
	case output = <-out:
	case <-time.After(time.Second):
	}
	if st := p.Status(); st.Code() != 0 {
		msg := oneLine(output)
		if msg == "" {
			return fmt.Errorf("`%s` failed: %s", preflightCmd(path, args), st)
		}
		return fmt.Errorf("`%s` failed: %s: %s", preflightCmd(path, args), st, msg)
	}
	return nil
}

// oneLine turns a preflight's output into one line for a log or a status
// reason: non-empty lines joined with " / ", at most 512 bytes.
func oneLine(b []byte) string {
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	s := strings.Join(lines, " / ")
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}

func preflightCmd(path string, args []string) string {
	return strings.Join(append([]string{filepath.Base(path)}, args...), " ")
}

// limitWriter keeps the first n bytes and discards the rest.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		_, _ = l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// Reaper is the engine's reaper: the one process starter of hotswap, for
// features that must run a helper process (the release verifier's
// preflight). Never wait for a process any other way.
func (e *Engine) Reaper() *entrypoint.Reaper { return e.reaper }
