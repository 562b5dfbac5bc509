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
	// "writable", "env", "root", "elf", "loader", "sha256" or
	// "preflight".
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

// SetStarter gives the verifier the process starter (the reaper cmd/hotswap
// builds and hands the engine too) used to run preflights.
func (v *Verifier) SetStarter(s ProcessStarter) { v.starter = s }

// Verify runs every check on r's binary and returns nil or an error
// wrapping ErrRejected (a *RejectError) that says why. It is a VerifyFunc:
// the engine hands it releases whose binary it has opened, and Verify checks
// that open file (VerifyBinary), the one the generation will execute. A
// release the engine did not open is opened here, checked and closed.
func (v *Verifier) Verify(ctx context.Context, r Release) error {
	if r.bin != nil {
		return v.VerifyBinary(ctx, r, r.bin)
	}
	b, err := OpenBinary(r.Path)
	if err != nil {
		return err
	}
	defer b.Close()
	return v.VerifyBinary(ctx, r, b)
}

// VerifyBinary runs every check on b, the open binary of r: its file, its
// directories, its ELF headers and loader, its sha256 and its preflight all
// read this one open file, and the preflight executes it, so nothing
// replaced at r.Path meanwhile can slip in. It returns nil or a *RejectError.
func (v *Verifier) VerifyBinary(ctx context.Context, r Release, b *Binary) error {
	trusted := v.opts.TrustedSource != "" && r.Source == v.opts.TrustedSource
	reject := func(check, path, reason string, err error) error {
		return &RejectError{Check: check, Path: path, Reason: reason, Err: err}
	}
	real, fi := b.Path(), b.Info()
	if fi.Mode().Perm()&0o111 == 0 {
		return reject("executable", real, fmt.Sprintf("not executable (mode %04o); chmod +x it before it is published", fi.Mode().Perm()), nil)
	}
	if !trusted {
		// Whoever can write the file could change it after it was hashed,
		// on the very inode that runs: always refused. Whoever can write a
		// directory on its path could only have put another file there
		// before it was opened; a sha256 pin catches that, so the
		// directories matter for an unpinned release only — and an
		// emptyDir (mode 0777) stays usable for pinned ones.
		var why string
		if r.SHA256 == "" {
			why = checkUnwritable(fi, r.Path, real)
		} else {
			why = checkUnwritable(fi)
		}
		if why != "" {
			return reject("writable", real, why, nil)
		}
		if err := CheckReleaseEnv(r.Env); err != nil {
			return reject("env", real, err.Error(), err)
		}
		if v.root != "" && !within(v.root, real) {
			return reject("root", real, fmt.Sprintf("resolves outside the release root %s (from %s); publish releases under the root, and make symlinks point inside it", v.root, r.Path), nil)
		}
		ef, err := checkELF(b.f, fi.Size())
		if err != nil {
			return reject("elf", real, err.Error(), err)
		}
		err = checkLoader(ef, real)
		ef.Close()
		if err != nil {
			return reject("loader", real, err.Error(), err)
		}
	}
	want := strings.ToLower(r.SHA256)
	if want == "" && v.opts.RequireSHA256 && !trusted {
		return reject("sha256", real, "the release pins no sha256 and --require-sha256 is set; add sha256: <hex> to the manifest", nil)
	}
	if want != "" {
		h := sha256.New()
		if _, err := io.Copy(h, b.reader()); err != nil {
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
		if err := v.preflight(ctx, b, r, pre); err != nil {
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
// like). It returns the parsed file for checkLoader; close it.
func checkELF(f io.ReaderAt, size int64) (*elf.File, error) {
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || !bytes.Equal(magic[:], []byte(elf.ELFMAG)) {
		if bytes.HasPrefix(magic[:], []byte("#!")) {
			return nil, errors.New("a script (#!), not an ELF binary; sources may only publish native binaries")
		}
		return nil, fmt.Errorf("not an ELF binary (%d bytes; truncated or not a program)", size)
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("damaged or truncated ELF file: %w", err)
	}
	fail := func(err error) (*elf.File, error) {
		ef.Close()
		return nil, err
	}
	want, ok := elfMachines[runtime.GOARCH]
	if ok && ef.Machine != want {
		return fail(fmt.Errorf("built for %s, this machine runs %s (%s); build it with GOARCH=%s", machineName(ef.Machine), machineName(want), runtime.GOARCH, runtime.GOARCH))
	}
	wantClass := elf.ELFCLASS64
	if strings.HasSuffix(runtime.GOARCH, "386") || runtime.GOARCH == "arm" {
		wantClass = elf.ELFCLASS32
	}
	if ef.Class != wantClass {
		return fail(fmt.Errorf("ELF class %s, this machine needs %s", ef.Class, wantClass))
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return fail(fmt.Errorf("ELF type %s is not an executable", ef.Type))
	}
	loads := 0
	for _, p := range ef.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		loads++
		if end := p.Off + p.Filesz; end > uint64(size) || end < p.Off {
			return fail(fmt.Errorf("truncated: a loadable segment ends at byte %d but the file has %d (copy still in progress?)", end, size))
		}
	}
	if loads == 0 {
		return fail(errors.New("ELF file has no loadable segment; not a program"))
	}
	return ef, nil
}

// checkLoader refuses a binary that would make the dynamic loader run code
// that is neither in the verified file nor in a file only root (or hotswap's
// user) can change: an interpreter (PT_INTERP), a library named by path, or
// a library search path (DT_RUNPATH, DT_RPATH) someone else can write to,
// and audit libraries (DT_AUDIT). The system's loader and /usr/lib pass; a
// static binary has none of these. bin is the binary's resolved path, for
// $ORIGIN.
func checkLoader(ef *elf.File, bin string) error {
	for _, p := range ef.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		raw, err := io.ReadAll(io.LimitReader(p.Open(), 4096))
		if err != nil {
			return fmt.Errorf("read its interpreter (PT_INTERP): %w", err)
		}
		interp := strings.TrimRight(string(raw), "\x00")
		if !filepath.IsAbs(interp) {
			return fmt.Errorf("its interpreter (PT_INTERP) %q is not an absolute path: it would be looked up from the working directory", clipName(interp))
		}
		fi, err := os.Stat(interp)
		if err != nil {
			return fmt.Errorf("its interpreter %s: %w (built against another C library? build it static, e.g. CGO_ENABLED=0)", interp, err)
		}
		real, _ := filepath.EvalSymlinks(interp)
		if why := checkUnwritable(fi, interp, real); why != "" {
			return fmt.Errorf("its interpreter %s: %s", interp, why)
		}
	}
	for _, tag := range []elf.DynTag{elf.DT_AUDIT, elf.DT_DEPAUDIT} {
		if v, _ := ef.DynValue(tag); len(v) > 0 {
			return fmt.Errorf("asks the dynamic loader for an audit library (%s), which runs before the program; rebuild without it", tag)
		}
	}
	needed, _ := ef.DynString(elf.DT_NEEDED)
	for _, lib := range needed {
		if !strings.Contains(lib, "/") {
			continue // searched in the trusted system directories
		}
		if !filepath.IsAbs(lib) {
			return fmt.Errorf("needs library %q by a relative path: it would be looked up from the working directory", clipName(lib))
		}
		fi, err := os.Stat(lib)
		if err != nil {
			return fmt.Errorf("needs library %s: %w", lib, err)
		}
		real, _ := filepath.EvalSymlinks(lib)
		if why := checkUnwritable(fi, lib, real); why != "" {
			return fmt.Errorf("needs library %s: %s", lib, why)
		}
	}
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		paths, _ := ef.DynString(tag)
		for _, list := range paths {
			for _, dir := range strings.Split(list, ":") {
				if err := checkSearchDir(dir, filepath.Dir(bin)); err != nil {
					return fmt.Errorf("library search path (%s) %q: %w", strings.TrimPrefix(tag.String(), "DT_"), clipName(list), err)
				}
			}
		}
	}
	return nil
}

// checkSearchDir checks one DT_RUNPATH/DT_RPATH entry: absolute (or under
// $ORIGIN, the binary's directory), and writable by nobody but root and
// hotswap's user, sticky bit or not (anyone may add a library to /tmp). A
// directory that does not exist yet is judged by the nearest one above it:
// whoever can write there can create it.
func checkSearchDir(dir, origin string) error {
	if dir == "" {
		return errors.New("an empty entry means the working directory")
	}
	for _, tok := range []string{"${ORIGIN}", "$ORIGIN"} {
		dir = strings.ReplaceAll(dir, tok, origin)
	}
	if strings.Contains(dir, "$") {
		return errors.New("a loader token other than $ORIGIN ($LIB, $PLATFORM) is not supported; use an absolute path or $ORIGIN")
	}
	if !filepath.IsAbs(dir) {
		return errors.New("a relative entry is looked up from the working directory; use an absolute path or $ORIGIN")
	}
	dir = filepath.Clean(dir)
	at := firstExisting(dir)
	fi, err := os.Stat(at)
	if err != nil {
		return err
	}
	if why := writableBy(fi, false); why != "" {
		return fmt.Errorf("%s is %s: anyone who can write it can add a library the binary loads; chown root and chmod go-w it", at, why)
	}
	real, _ := filepath.EvalSymlinks(at)
	if why := checkUnwritable(fi, at, real); why != "" {
		return errors.New(why)
	}
	return nil
}

// clipName keeps a name from a hostile binary short in a message.
func clipName(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}

func machineName(m elf.Machine) string {
	return strings.TrimPrefix(m.String(), "EM_")
}

// preflightOutputMax bounds what a preflight's output adds to a reason.
const preflightOutputMax = 2048

// preflight runs the release's binary with args through the reaper, with
// the environment its generation would get; it must exit 0 within the
// timeout. Its output is kept to explain a failure. The process executes
// b's open file (fd 3, as /proc/self/fd/3), not the path: the preflight
// vets the very inode that will serve. A trusted #! script runs by path
// (see Binary.Script).
func (v *Verifier) preflight(ctx context.Context, b *Binary, r Release, args []string) error {
	if v.starter == nil {
		return errors.New("no process starter for the preflight (hotswap bug: Verifier.SetStarter not called)")
	}
	path := b.Path()
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
	env = PreflightEnv(env, r)
	spec := entrypoint.Spec{
		Path:  path,
		Argv:  append([]string{path}, args...),
		Env:   env,
		Files: []*os.File{devnull, pw, pw},
	}
	if !b.Script() {
		// fd 3 stays open in the preflight (the reaper clears close-on-exec
		// on what it passes); it is its own binary, read-only. A generation
		// never keeps it: the exec shim closes it on exec.
		spec.Path = "/proc/self/fd/3"
		spec.Files = append(spec.Files, b.File())
	}
	p, err := v.starter.Start(spec)
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
